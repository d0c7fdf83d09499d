//! The audit log: append-only and hash-chained.
//!
//! Each row's hash is SHA-256 over the previous row's hash and the row's own canonical
//! encoding, so altering a row breaks its own link and deleting one breaks the next.
//! Every revision must also have its audit row, which catches a deleted last row of a
//! change. `verify` walks the chain and reports the first link that does not hold.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqliteConnection, SqlitePool};

/// The `prev_hash` of the first row.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What is appended: who did what to what, and why.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Token name or operator, e.g. `token:hr-feed` or `operator:alice`.
    pub actor: &'a str,
    /// Dotted action name, e.g. `user.create`.
    pub action: &'a str,
    /// What it was done to, e.g. `user:alice`.
    pub target: &'a str,
    /// Why, as given by the caller; may be empty.
    pub reason: &'a str,
    /// Structured details.
    pub details: serde_json::Value,
    /// The revision the change created, if it changed what hosts must know.
    pub revision: Option<i64>,
}

/// A row of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Record {
    /// Position in the log, from 1.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// To what.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Details as JSON text.
    pub details: String,
    /// Revision created, if any.
    pub revision: Option<i64>,
    /// Hash of the previous row.
    pub prev_hash: String,
    /// This row's hash.
    pub hash: String,
}

/// The fields a row's hash covers, besides the previous hash.
struct Fields<'a> {
    seq: i64,
    at: i64,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    reason: &'a str,
    details: &'a str,
    revision: Option<i64>,
}

fn row_hash(prev_hash: &str, f: &Fields<'_>) -> String {
    let canonical = serde_json::json!([
        f.seq, f.at, f.actor, f.action, f.target, f.reason, f.details, f.revision
    ]);
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Appends an entry inside the caller's transaction, so the change and its record commit
/// together or not at all.
pub async fn append(
    conn: &mut SqliteConnection,
    at: i64,
    entry: &Entry<'_>,
) -> Result<i64, sqlx::Error> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (seq, prev) = match last {
        Some(row) => (row.get::<i64, _>(0) + 1, row.get::<String, _>(1)),
        None => (1, GENESIS.to_owned()),
    };
    let details = entry.details.to_string();
    let hash = row_hash(
        &prev,
        &Fields {
            seq,
            at,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            reason: entry.reason,
            details: &details,
            revision: entry.revision,
        },
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, target, reason, details, revision, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(at)
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.reason)
    .bind(&details)
    .bind(entry.revision)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    let event = serde_json::json!({
        "seq": seq,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "reason": entry.reason,
        "details": entry.details,
        "revision": entry.revision,
        "hash": hash,
    });
    crate::events::record(conn, at, crate::events::Kind::Audit, &event).await?;
    Ok(seq)
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Rows checked.
    pub rows: i64,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
}

/// Where the chain breaks and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BrokenLink {
    /// The row at which the chain no longer holds.
    pub seq: i64,
    /// What is wrong there.
    pub problem: String,
}

/// Checks every link of the chain, and that every revision has its audit row.
pub async fn verify(pool: &SqlitePool) -> Result<Verification, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, target, reason, details, revision, prev_hash, hash
         FROM audit_log ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    let mut expected_prev = GENESIS.to_owned();
    let mut expected_seq = 1i64;
    let mut checked = 0;
    let mut broken = None;
    for row in &rows {
        let seq: i64 = row.get(0);
        let prev: String = row.get(8);
        let hash: String = row.get(9);
        let problem = if seq != expected_seq {
            Some(format!(
                "row {expected_seq} is missing (next row present is {seq})"
            ))
        } else if prev != expected_prev {
            Some("its prev_hash does not match the previous row's hash (a row before it was altered or removed)".to_owned())
        } else if hash
            != row_hash(
                &prev,
                &Fields {
                    seq,
                    at: row.get(1),
                    actor: row.get(2),
                    action: row.get(3),
                    target: row.get(4),
                    reason: row.get(5),
                    details: row.get(6),
                    revision: row.get(7),
                },
            )
        {
            Some("its contents do not match its hash (the row was altered)".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            broken = Some(BrokenLink {
                seq: expected_seq.min(seq),
                problem,
            });
            break;
        }
        checked += 1;
        expected_prev = hash;
        expected_seq += 1;
    }
    if broken.is_none() {
        let orphan = sqlx::query(
            "SELECT r.revision FROM revisions r
             WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.revision = r.revision)
             ORDER BY r.revision LIMIT 1",
        )
        .fetch_optional(pool)
        .await?;
        if let Some(row) = orphan {
            let revision: i64 = row.get(0);
            broken = Some(BrokenLink {
                seq: expected_seq,
                problem: format!("revision {revision} has no audit row (audit rows were removed)"),
            });
        }
    }
    Ok(Verification {
        rows: checked,
        broken,
    })
}

/// A page of the log, newest first, optionally filtered by actor, action or target prefix.
pub async fn list(
    pool: &SqlitePool,
    filter: &str,
    before_seq: Option<i64>,
    limit: i64,
) -> Result<Vec<Record>, sqlx::Error> {
    // The filter is text, not a pattern: LIKE's wildcards in it are escaped, so a name
    // with `_` or `%` matches itself.
    let escaped = filter
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let like = format!("%{escaped}%");
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, target, reason, details, revision, prev_hash, hash
         FROM audit_log
         WHERE (? = '' OR actor LIKE ? ESCAPE '\\' OR action LIKE ? ESCAPE '\\'
                OR target LIKE ? ESCAPE '\\')
           AND seq < ?
         ORDER BY seq DESC LIMIT ?",
    )
    .bind(filter)
    .bind(&like)
    .bind(&like)
    .bind(&like)
    .bind(before_seq.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Record {
            seq: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            target: r.get(4),
            reason: r.get(5),
            details: r.get(6),
            revision: r.get(7),
            prev_hash: r.get(8),
            hash: r.get(9),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::service::testing::service;
    use crate::service::{Actor, NewUser};

    async fn three_changes() -> crate::service::Service {
        let (svc, _) = service().await;
        for name in ["a", "b", "c"] {
            let u = NewUser {
                name: name.into(),
                ..Default::default()
            };
            svc.create_user(&Actor::cli(), u, "test").await.unwrap();
        }
        svc
    }

    /// The search is text: a name with `_` finds itself, and `_` or `%` match nothing
    /// else.
    #[tokio::test]
    async fn a_search_with_like_wildcards_matches_them_literally() {
        let (svc, _) = service().await;
        for name in ["svc_deploy", "svcxdeploy", "a100pct"] {
            let u = NewUser {
                name: name.into(),
                ..Default::default()
            };
            svc.create_user(&Actor::cli(), u, "test").await.unwrap();
        }
        let targets = |rows: Vec<super::Record>| -> Vec<String> {
            rows.into_iter().map(|r| r.target).collect()
        };
        let found = targets(svc.audit_log("svc_deploy", None, 10).await.unwrap());
        assert_eq!(found, ["user:svc_deploy"]);
        assert!(svc.audit_log("100%", None, 10).await.unwrap().is_empty());
        assert!(svc.audit_log("a_00", None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_untouched_chain_verifies() {
        let svc = three_changes().await;
        let v = svc.verify_audit().await.unwrap();
        assert_eq!((v.rows, v.broken), (3, None));
    }

    #[tokio::test]
    async fn an_altered_row_is_found() {
        let svc = three_changes().await;
        sqlx::query("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
            .execute(svc.pool())
            .await
            .unwrap();
        let broken = svc.verify_audit().await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(broken.problem.contains("altered"), "{}", broken.problem);
    }

    #[tokio::test]
    async fn a_removed_row_is_found() {
        let svc = three_changes().await;
        sqlx::query("DELETE FROM audit_log WHERE seq = 2")
            .execute(svc.pool())
            .await
            .unwrap();
        let broken = svc.verify_audit().await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(broken.problem.contains("missing"), "{}", broken.problem);
    }

    #[tokio::test]
    async fn a_removed_last_row_is_found() {
        let svc = three_changes().await;
        sqlx::query("DELETE FROM audit_log WHERE seq = 3")
            .execute(svc.pool())
            .await
            .unwrap();
        let broken = svc.verify_audit().await.unwrap().broken.unwrap();
        assert!(
            broken.problem.contains("revision 3 has no audit row"),
            "{}",
            broken.problem
        );
    }

    #[tokio::test]
    async fn a_rehashed_row_still_breaks_the_next_link() {
        let svc = three_changes().await;
        // Alter row 1 and recompute its own hash: row 2's prev_hash no longer matches.
        let rows = super::list(svc.pool(), "", None, 10).await.unwrap();
        let first = rows.iter().find(|r| r.seq == 1).unwrap();
        let forged = super::row_hash(
            &first.prev_hash,
            &super::Fields {
                seq: 1,
                at: first.at,
                actor: "forger",
                action: &first.action,
                target: &first.target,
                reason: &first.reason,
                details: &first.details,
                revision: first.revision,
            },
        );
        sqlx::query("UPDATE audit_log SET actor = 'forger', hash = ? WHERE seq = 1")
            .bind(forged)
            .execute(svc.pool())
            .await
            .unwrap();
        let broken = svc.verify_audit().await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 2);
    }
}
