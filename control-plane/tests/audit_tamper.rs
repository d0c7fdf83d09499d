//! `signoff-server audit verify` finds rows altered or deleted behind its back, directly
//! in the SQLite file.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::Env;
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

fn three_changes() -> Env {
    let env = Env::new("");
    env.ok(&["group", "add", "web"]);
    env.ok(&["user", "add", "alice"]);
    env.ok(&["user", "add", "bob"]);
    assert_eq!(env.ok(&["audit", "verify"]), "audit log intact: 3 rows\n");
    env
}

/// Runs one statement on the store, as someone with write access to the file would.
fn tamper(env: &Env, sql: &str) {
    let path = env.database();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut conn = SqliteConnectOptions::new()
                .filename(&path)
                .connect()
                .await
                .unwrap();
            let changed = sqlx::query(sql)
                .execute(&mut conn)
                .await
                .unwrap()
                .rows_affected();
            assert_eq!(changed, 1, "{sql}");
            conn.close().await.unwrap();
        });
}

#[test]
fn an_altered_row_is_named() {
    let env = three_changes();
    tamper(
        &env,
        "UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 2",
    );
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("audit log BROKEN at row 2: its contents do not match its hash"),
        "{text}"
    );

    let out = env.run(&["--json", "audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["broken"]["seq"], 2);
    assert_eq!(v["rows"], 1);
}

#[test]
fn a_deleted_row_is_named() {
    let env = three_changes();
    tamper(&env, "DELETE FROM audit_log WHERE seq = 2");
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("audit log BROKEN at row 2: row 2 is missing"),
        "{text}"
    );
}

#[test]
fn a_deleted_last_row_is_found() {
    let env = three_changes();
    tamper(&env, "DELETE FROM audit_log WHERE seq = 3");
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("has no audit row"), "{text}");
}
