//! The admin CLI end to end: each command against a real store, its `--json` output
//! parsed back into the model types, its tables, its errors and exit codes.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::Env;
use serde_json::Value;
use signoff_control_plane::model::{Grant, Host, HostGroup, TrustedCa, User, UserStatus};

const ALICE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT alice@laptop";

fn key_file(env: &Env, name: &str, line: &str) -> String {
    let path = env.tmp.path().join(name);
    std::fs::write(&path, format!("{line}\n")).unwrap();
    path.display().to_string()
}

fn new_key() -> String {
    let seed: [u8; 32] = rand::random();
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    ssh_key::PublicKey::from(pair.public).to_openssh().unwrap()
}

#[test]
fn users_groups_hosts_grants() {
    let env = Env::new("");
    let alice_pub = key_file(&env, "alice.pub", ALICE_KEY);

    let group: HostGroup = env.json(&["group", "add", "web"]);
    assert_eq!(group.name, "web");
    let user: User = env.json(&[
        "user",
        "add",
        "alice",
        "--key-id",
        "alice@corp",
        "--key-id",
        "alice-2",
        "--principal",
        "alice",
        "--principal",
        "ops",
        "--key-file",
        &alice_pub,
        "--reason",
        "hired",
    ]);
    assert_eq!(user.key_ids, vec!["alice-2", "alice@corp"]);
    assert_eq!(user.principals, vec!["alice", "ops"]);
    assert_eq!(user.public_keys.len(), 1);
    assert_eq!(user.status, UserStatus::Active);

    let host: Host = env.json(&[
        "host",
        "add",
        "web1",
        "--hostname",
        "web1.example.com",
        "--group",
        "web",
    ]);
    assert_eq!(
        (host.hostname.as_str(), host.groups.clone()),
        ("web1.example.com", vec!["web".to_owned()])
    );
    env.ok(&["group", "add", "db"]);
    let host: Host = env.json(&["host", "groups", "web1", "db", "web"]);
    assert_eq!(host.groups, vec!["db", "web"]);
    env.ok(&["host", "add", "db1"]);
    let hosts: Vec<Host> = env.json(&["host", "list"]);
    assert_eq!(
        hosts.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["db1", "web1"]
    );

    let grant: Grant = env.json(&[
        "grant",
        "add",
        "alice",
        "deploy",
        "web",
        "--until",
        "2100-01-01T00:00:00Z",
    ]);
    assert_eq!(grant.not_after, Some(4_102_444_800));
    let second: Grant = env.json(&["grant", "add", "alice", "root", "db"]);
    assert_eq!(second.not_after, None);
    let grants: Vec<Grant> = env.json(&["grant", "list", "--user", "alice"]);
    assert_eq!(grants.len(), 2);
    let removed: Grant = env.json(&["grant", "remove", &second.id.to_string()]);
    assert_eq!(removed, second);
    let grants: Vec<Grant> = env.json(&["grant", "list"]);
    assert_eq!(grants, vec![grant]);

    let user: User = env.json(&["user", "disable", "alice", "--reason", "left"]);
    assert_eq!(user.status, UserStatus::Disabled);
    let users: Vec<User> = env.json(&["user", "list"]);
    assert_eq!(users, vec![user]);
    let user: User = env.json(&["user", "enable", "alice", "--reason", "back"]);
    assert_eq!(user.status, UserStatus::Active);

    let host: Host = env.json(&["host", "remove", "db1"]);
    assert_eq!(host.id, "db1");
    let groups: Vec<HostGroup> = env.json(&["group", "list"]);
    assert_eq!(
        groups,
        vec![
            HostGroup {
                name: "db".into(),
                hosts: vec!["web1".into()]
            },
            HostGroup {
                name: "web".into(),
                hosts: vec!["web1".into()]
            },
        ]
    );

    // Every change is in the audit log under the CLI user's name.
    let log: Vec<Value> = env.json(&["audit", "list", "--limit", "100"]);
    assert!(log.len() >= 10, "{log:?}");
    assert!(log.iter().all(|r| r["actor"] == "cli:tester"), "{log:?}");
    let hired = log.iter().find(|r| r["action"] == "user.create").unwrap();
    assert_eq!(hired["reason"], "hired");
    assert_eq!(
        env.ok(&["audit", "verify"]),
        format!("audit log intact: {} rows\n", log.len())
    );
}

#[test]
fn tables_are_aligned() {
    let env = Env::new("");
    env.ok(&["user", "add", "alice", "--key-id", "alice@corp"]);
    env.ok(&["user", "add", "bartholomew"]);
    let table = env.ok(&["user", "list"]);
    assert_eq!(
        table,
        "NAME         STATUS  KEY IDS     PRINCIPALS   KEYS\n\
         alice        active  alice@corp  alice        0\n\
         bartholomew  active  -           bartholomew  0\n"
    );
    let show = env.ok(&["user", "show", "alice"]);
    assert!(
        show.starts_with("name:        alice\nstatus:      active\n"),
        "{show}"
    );
    assert!(show.contains("key ids:     alice@corp\n"), "{show}");
}

#[test]
fn cas_and_revocations() {
    let env = Env::new("");
    let ca_pub = key_file(&env, "ca.pub", &new_key());
    let ca: TrustedCa = env.json(&["ca", "add", "corp", &ca_pub]);
    assert!(ca.fingerprint.starts_with("SHA256:"));
    let cas: Vec<TrustedCa> = env.json(&["ca", "list"]);
    assert_eq!(cas, vec![ca.clone()]);

    let by_id: Value = env.json(&["revoke", "key-id", "alice@corp", "--reason", "left"]);
    assert_eq!(by_id["kind"], "key_id");
    assert_eq!(by_id["key_id"], "alice@corp");
    assert_eq!(by_id["reason"], "left");
    let scoped: Value = env.json(&["revoke", "key-id", "bob@corp", "--ca", "corp"]);
    assert_eq!(scoped["ca"], ca.fingerprint.as_str());
    let serials: Value = env.json(&["revoke", "serial", "100-199", "--ca", "corp"]);
    assert_eq!(
        (serials["lo"].as_u64(), serials["hi"].as_u64()),
        (Some(100), Some(199))
    );
    let one: Value = env.json(&["revoke", "serial", "7", "--ca", &ca.fingerprint]);
    assert_eq!((one["lo"].as_u64(), one["hi"].as_u64()), (Some(7), Some(7)));
    let leaked = new_key();
    let key: Value = env.json(&["revoke", "key", &key_file(&env, "leaked.pub", &leaked)]);
    assert_eq!(key["kind"], "key");
    let fp = ssh_key::PublicKey::from_openssh(&new_key())
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    let by_fp: Value = env.json(&["revoke", "sha256", &fp]);
    assert_eq!(by_fp["fingerprint"], fp.as_str());

    let list: Vec<Value> = env.json(&["revoke", "list"]);
    assert_eq!(list.len(), 6);
    let removed: Value = env.json(&["revoke", "remove", &by_id["id"].to_string()]);
    assert_eq!(removed["key_id"], "alice@corp");
    let list: Vec<Value> = env.json(&["revoke", "list"]);
    assert_eq!(list.len(), 5);

    // A CA that is no longer trusted keeps its revocations.
    let removed: TrustedCa = env.json(&["ca", "remove", "corp"]);
    assert_eq!(removed, ca);
    let cas: Vec<TrustedCa> = env.json(&["ca", "list"]);
    assert!(cas.is_empty());
    let list: Vec<Value> = env.json(&["revoke", "list"]);
    assert_eq!(list.len(), 5);
}

#[test]
fn tokens() {
    let env = Env::new("");
    let token: Value = env.json(&[
        "api-token",
        "create",
        "hr-feed",
        "--scope",
        "signoff",
        "--scope",
        "read",
        "--ttl",
        "30d",
    ]);
    assert!(token["secret"].as_str().unwrap().starts_with("so_"));
    assert_eq!(token["scopes"], serde_json::json!(["read", "signoff"]));
    let ttl = token["expires_at"].as_i64().unwrap() - token["created_at"].as_i64().unwrap();
    assert_eq!(ttl, 30 * 86400);
    let ci: Value = env.json(&["api-token", "create", "ci", "--scope", "read,write"]);
    assert_eq!(ci["expires_at"], Value::Null);

    let list: Vec<Value> = env.json(&["api-token", "list"]);
    assert_eq!(list.len(), 2);
    assert!(
        list.iter().all(|t| t.get("secret").is_none()),
        "no secrets listed"
    );
    let revoked: Value = env.json(&["api-token", "revoke", &ci["id"].to_string()]);
    assert!(revoked["revoked_at"].is_i64());

    // The human form shows the secret once, on its own line.
    let text = env.ok(&["api-token", "create", "ops", "--scope", "write"]);
    assert!(
        text.lines()
            .any(|l| l.trim().starts_with("so_") && l.starts_with("    ")),
        "{text}"
    );
}

#[test]
fn service_errors_exit_1_with_the_message() {
    let env = Env::new("");
    let out = env.run(&["user", "show", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "signoff-server: error: user \"nobody\" does not exist\n"
    );
    assert!(out.stdout.is_empty());

    env.ok(&["user", "add", "alice"]);
    let out = env.run(&["user", "add", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("user \"alice\" already exists"));

    let out = env.run(&["host", "add", "web1", "--group", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("host group \"nope\" does not exist"));

    let out = env.run(&["user", "add", "<script>"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name: \"<script>\" is not valid"));

    let out = env.run(&["user", "add", "bob", "--key-file", "/nonexistent.pub"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent.pub"));
}

#[test]
fn bad_arguments_exit_64() {
    let env = Env::new("");
    env.ok(&["user", "add", "alice"]);
    env.ok(&["group", "add", "web"]);
    for (args, expected) in [
        (
            &["grant", "add", "alice", "deploy", "web", "--until", "soon"][..],
            "--until: \"soon\" is not a time",
        ),
        (
            &["revoke", "serial", "1-x", "--ca", "c"][..],
            "is not a serial or a range",
        ),
        (&["revoke", "serial", "5"][..], "--ca"),
        (&["api-token", "create", "t"][..], "--scope"),
        (&["api-token", "create", "t", "--scope", "root"][..], "root"),
        (
            &[
                "api-token",
                "create",
                "t",
                "--scope",
                "read",
                "--ttl",
                "forever",
            ][..],
            "--ttl: \"forever\" is not a duration",
        ),
        (&["grant", "remove", "x"][..], "invalid digit"),
    ] {
        let out = env.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
    }
}
