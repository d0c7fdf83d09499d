//! The audit log: append-only and hash-chained.
//!
//! Each row's hash is SHA-256 over the previous row's hash and the row's own canonical
//! encoding, so altering a row breaks its own link and deleting one breaks the next.
//! Every revision must also have its audit row, which catches a deleted last row of a
//! change. `verify` walks the chain and reports the first link that does not hold.

use crate::store::{self, Db, Store};
use serde::Serialize;
use signoff_proto::audit_chain::{Fields, GENESIS, row_hash};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
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

/// Appends an entry inside the caller's transaction, so the change and its record commit
/// together or not at all.
pub async fn append(mut db: Db<'_>, at: i64, entry: &Entry<'_>) -> Result<i64, sqlx::Error> {
    let (seq, prev) = match store::audit::last_link(db.re()).await? {
        Some((seq, hash)) => (seq + 1, hash),
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
    let record = Record {
        seq,
        at,
        actor: entry.actor.to_owned(),
        action: entry.action.to_owned(),
        target: entry.target.to_owned(),
        reason: entry.reason.to_owned(),
        details,
        revision: entry.revision,
        prev_hash: prev,
        hash,
    };
    store::audit::insert(db.re(), &record).await?;
    let event = serde_json::json!({
        "seq": seq,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "reason": entry.reason,
        "details": entry.details,
        "revision": entry.revision,
        "hash": record.hash,
    });
    crate::events::record(db, at, crate::events::Kind::Audit, &event).await?;
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
pub async fn verify(store: &Store) -> Result<Verification, sqlx::Error> {
    let mut conn = store.conn().await?;
    let rows = store::audit::all(conn.db()).await?;
    let mut expected_prev = GENESIS.to_owned();
    let mut expected_seq = 1i64;
    let mut checked = 0;
    let mut broken = None;
    for row in &rows {
        let seq = row.seq;
        let prev = &row.prev_hash;
        let hash = &row.hash;
        let problem = if seq != expected_seq {
            Some(format!(
                "row {expected_seq} is missing (next row present is {seq})"
            ))
        } else if *prev != expected_prev {
            Some("its prev_hash does not match the previous row's hash (a row before it was altered or removed)".to_owned())
        } else if *hash
            != row_hash(
                prev,
                &Fields {
                    seq,
                    at: row.at,
                    actor: &row.actor,
                    action: &row.action,
                    target: &row.target,
                    reason: &row.reason,
                    details: &row.details,
                    revision: row.revision,
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
        expected_prev = hash.clone();
        expected_seq += 1;
    }
    if broken.is_none()
        && let Some(revision) = store::audit::first_revision_unrecorded(conn.db()).await?
    {
        broken = Some(BrokenLink {
            seq: expected_seq,
            problem: format!("revision {revision} has no audit row (audit rows were removed)"),
        });
    }
    Ok(Verification {
        rows: checked,
        broken,
    })
}

/// An audit chain head a host witnessed: row `seq` had hash `hash` when the host accepted
/// it. One JSON object a line in a witness file, e.g.
/// `{"host":"web1","seq":42,"hash":"9f…"}` (`host` is optional and only named in reports).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessedHead {
    /// Which host witnessed it.
    #[serde(default)]
    pub host: String,
    /// The row.
    pub seq: i64,
    /// Its hash, hex.
    pub hash: String,
}

/// Reads a witness file: one [`WitnessedHead`] a line; blank lines and `#` lines skipped.
pub fn parse_witness(text: &str) -> Result<Vec<WitnessedHead>, String> {
    let mut heads = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let head: WitnessedHead = serde_json::from_str(line).map_err(|e| {
            format!(
                "line {}: not {{\"host\":…,\"seq\":N,\"hash\":\"HEX\"}}: {e}",
                i + 1
            )
        })?;
        if head.seq < 1 {
            return Err(format!("line {}: seq must be 1 or more", i + 1));
        }
        heads.push(head);
    }
    Ok(heads)
}

/// [`verify`], then checks that the log still holds every head hosts witnessed. A log
/// rewritten with every later hash recomputed passes [`verify`], but no longer has the
/// hash a host witnessed at or after the rewritten row; the first such head is reported.
pub async fn verify_witnessed(
    store: &Store,
    heads: &[WitnessedHead],
) -> Result<Verification, sqlx::Error> {
    let mut v = verify(store).await?;
    if v.broken.is_some() {
        return Ok(v);
    }
    let mut first: Option<BrokenLink> = None;
    let mut conn = store.conn().await?;
    for h in heads {
        let stored = store::audit::hash_at(conn.db(), h.seq).await?;
        let who = if h.host.is_empty() {
            "a host".to_owned()
        } else {
            format!("host {}", h.host)
        };
        let problem = match stored {
            None => format!(
                "{who} witnessed row {} with hash {}, and the log has no such row (rows were removed)",
                h.seq, h.hash
            ),
            Some(stored) if stored != h.hash => format!(
                "{who} witnessed hash {} here, the log now has {stored} (the log was rewritten at or before this row)",
                h.hash
            ),
            Some(_) => continue,
        };
        if first.as_ref().is_none_or(|b| h.seq < b.seq) {
            first = Some(BrokenLink {
                seq: h.seq,
                problem,
            });
        }
    }
    v.broken = first;
    Ok(v)
}

/// A page of the log, newest first, optionally filtered by actor, action or target prefix.
pub async fn list(
    store: &Store,
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
    let mut conn = store.conn().await?;
    store::audit::page(
        conn.db(),
        filter,
        &like,
        before_seq.unwrap_or(i64::MAX),
        limit,
    )
    .await
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
        svc.store()
            .exec_for_test("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
            .await;
        let broken = svc.verify_audit().await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(broken.problem.contains("altered"), "{}", broken.problem);
    }

    #[tokio::test]
    async fn a_removed_row_is_found() {
        let svc = three_changes().await;
        svc.store()
            .exec_for_test("DELETE FROM audit_log WHERE seq = 2")
            .await;
        let broken = svc.verify_audit().await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(broken.problem.contains("missing"), "{}", broken.problem);
    }

    #[tokio::test]
    async fn a_removed_last_row_is_found() {
        let svc = three_changes().await;
        svc.store()
            .exec_for_test("DELETE FROM audit_log WHERE seq = 3")
            .await;
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
        let rows = super::list(svc.store(), "", None, 10).await.unwrap();
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
        svc.store()
            .exec_for_test(&format!(
                "UPDATE audit_log SET actor = 'forger', hash = '{forged}' WHERE seq = 1"
            ))
            .await;
        let broken = svc.verify_audit().await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 2);
    }

    /// A row rewritten with every later hash recomputed passes `verify`, not a witness.
    #[tokio::test]
    async fn a_rewritten_and_rehashed_log_passes_verify_but_not_a_witness() {
        let svc = three_changes().await;
        let mut rows = super::list(svc.store(), "", None, 10).await.unwrap();
        rows.sort_by_key(|r| r.seq);
        let witnessed = super::parse_witness(&format!(
            "# gathered from hosts\n{{\"host\":\"web1\",\"seq\":3,\"hash\":\"{}\"}}\n\n{{\"seq\":1,\"hash\":\"{}\"}}\n",
            rows[2].hash, rows[0].hash
        ))
        .unwrap();
        let v = super::verify_witnessed(svc.store(), &witnessed)
            .await
            .unwrap();
        assert_eq!((v.rows, v.broken), (3, None));
        // Rewrite row 2 and recompute its hash and every later one.
        let mut prev = rows[0].hash.clone();
        for r in &rows[1..] {
            let actor = if r.seq == 2 {
                "forger"
            } else {
                r.actor.as_str()
            };
            let hash = super::row_hash(
                &prev,
                &super::Fields {
                    seq: r.seq,
                    at: r.at,
                    actor,
                    action: &r.action,
                    target: &r.target,
                    reason: &r.reason,
                    details: &r.details,
                    revision: r.revision,
                },
            );
            svc.store()
                .exec_for_test(&format!(
                    "UPDATE audit_log SET actor = '{actor}', prev_hash = '{prev}', hash = '{hash}' WHERE seq = {}",
                    r.seq
                ))
                .await;
            prev = hash;
        }
        assert_eq!(svc.verify_audit().await.unwrap().broken, None);
        let broken = super::verify_witnessed(svc.store(), &witnessed)
            .await
            .unwrap()
            .broken
            .unwrap();
        assert_eq!(broken.seq, 3);
        assert!(
            broken.problem.contains("host web1 witnessed"),
            "{}",
            broken.problem
        );
        // A witness of a row the log no longer has.
        let gone = super::parse_witness("{\"seq\":9,\"hash\":\"00\"}").unwrap();
        let broken = super::verify_witnessed(svc.store(), &gone)
            .await
            .unwrap()
            .broken
            .unwrap();
        assert!(broken.problem.contains("no such row"), "{}", broken.problem);
    }

    #[test]
    fn a_witness_line_that_does_not_parse_is_named() {
        let err = super::parse_witness("{\"seq\":1,\"hash\":\"ab\"}\nnot json\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = super::parse_witness("{\"seq\":0,\"hash\":\"ab\"}").unwrap_err();
        assert!(err.contains("seq must be 1"), "{err}");
    }
}
