//! The audit log's hash chain, shared by the control plane (which writes and verifies it)
//! and the agents (which witness its head).
//!
//! Row `seq`'s hash is SHA-256, hex, over the previous row's hash, a newline, and the JSON
//! array `[seq, at, actor, action, target, reason, details, revision]`; row 1's previous
//! hash is [`GENESIS`]. A host that holds a head (`seq`, `hash`) it accepted earlier checks
//! that a newer head extends it by recomputing the links between them ([`extends`]): a log
//! rewritten at or before the held row, even with every later hash recomputed, does not.

use sha2::{Digest, Sha256};

/// The previous hash of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of one row that its hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    /// Position in the log, from 1.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// To what.
    pub target: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Details as JSON text.
    pub details: &'a str,
    /// Revision created, if any.
    pub revision: Option<i64>,
}

/// The hash of a row whose previous row's hash is `prev_hash`.
pub fn row_hash(prev_hash: &str, f: &Fields<'_>) -> String {
    let canonical = serde_json::json!([
        f.seq, f.at, f.actor, f.action, f.target, f.reason, f.details, f.revision
    ]);
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// A chain head: row `seq` has hash `hash` (seq 0 is the empty log, hash [`GENESIS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The last row.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// The bytes the control plane signs (order key, namespace `signoff-order`) to vouch for
/// a head it sends to hosts: `signoff audit head v1`, then `seq: N` and `hash: HEX`, each
/// line ending with a newline.
pub fn head_bytes(head: &Head) -> Vec<u8> {
    format!(
        "signoff audit head v1\nseq: {}\nhash: {}\n",
        head.seq, head.hash
    )
    .into_bytes()
}

/// One row as sent to a witness: its fields and the hashes the log stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link<'a> {
    /// What the hash covers.
    pub fields: Fields<'a>,
    /// The stored previous hash.
    pub prev_hash: &'a str,
    /// The stored hash.
    pub hash: &'a str,
}

impl<'a> From<&'a crate::v1::AuditLink> for Link<'a> {
    /// A row as the sync stream carries it (a `seq` past `i64` cannot be a row: it reads
    /// as `i64::MAX`, which no chain reaches, so it fails the check).
    fn from(l: &'a crate::v1::AuditLink) -> Link<'a> {
        Link {
            fields: Fields {
                seq: i64::try_from(l.seq).unwrap_or(i64::MAX),
                at: l.at,
                actor: &l.actor,
                action: &l.action,
                target: &l.target,
                reason: &l.reason,
                details: &l.details,
                revision: l.revision,
            },
            prev_hash: &l.prev_hash,
            hash: &l.hash,
        }
    }
}

/// Why a new head does not extend a held one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotExtended {
    /// The new head is older than the held one.
    #[error("the new head is row {new}, older than the witnessed row {held}")]
    Backwards {
        /// The held head's row.
        held: i64,
        /// The new head's row.
        new: i64,
    },
    /// Same row, another hash: the log was rewritten at or before it.
    #[error("row {seq} now has hash {new}, this host witnessed {held}")]
    Rewritten {
        /// The row.
        seq: i64,
        /// The witnessed hash.
        held: String,
        /// The new hash.
        new: String,
    },
    /// The links sent do not run from the held row to the new one.
    #[error("links do not run from row {from} to row {to}: {problem}")]
    Gap {
        /// The held row.
        from: i64,
        /// The new row.
        to: i64,
        /// What is missing.
        problem: String,
    },
    /// A link does not hold.
    #[error("row {seq}: {problem}")]
    Broken {
        /// The row.
        seq: i64,
        /// What does not hold.
        problem: String,
    },
}

/// Checks that `new` extends `held` through `links` (rows `held.seq + 1` to `new.seq`, in
/// order): the first link's previous hash is the held hash, each link's hash is recomputed
/// from its fields and its previous hash, and the last is the new head's.
pub fn extends(held: &Head, links: &[Link<'_>], new: &Head) -> Result<(), NotExtended> {
    if new.seq < held.seq {
        return Err(NotExtended::Backwards {
            held: held.seq,
            new: new.seq,
        });
    }
    if new.seq == held.seq {
        if new.hash != held.hash {
            return Err(NotExtended::Rewritten {
                seq: held.seq,
                held: held.hash.clone(),
                new: new.hash.clone(),
            });
        }
        return Ok(());
    }
    let gap = |problem: String| NotExtended::Gap {
        from: held.seq,
        to: new.seq,
        problem,
    };
    let wanted = new.seq - held.seq;
    if i64::try_from(links.len()).ok() != Some(wanted) {
        return Err(gap(format!(
            "{} link(s) sent, {wanted} needed",
            links.len()
        )));
    }
    let mut prev = held.hash.as_str();
    for (i, l) in links.iter().enumerate() {
        let seq = held.seq + 1 + i64::try_from(i).unwrap_or(i64::MAX);
        if l.fields.seq != seq {
            return Err(gap(format!(
                "row {seq} expected, row {} sent",
                l.fields.seq
            )));
        }
        if l.prev_hash != prev {
            return Err(NotExtended::Broken {
                seq,
                problem: format!(
                    "its previous hash {} is not {prev} (the log was rewritten at or before row {})",
                    l.prev_hash,
                    seq - 1
                ),
            });
        }
        if row_hash(prev, &l.fields) != l.hash {
            return Err(NotExtended::Broken {
                seq,
                problem: "its contents do not match its hash".to_owned(),
            });
        }
        prev = l.hash;
    }
    if prev != new.hash {
        return Err(NotExtended::Broken {
            seq: new.seq,
            problem: format!("the links end at hash {prev}, the head says {}", new.hash),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        seq: i64,
        actor: String,
        prev: String,
        hash: String,
    }

    fn fields(r: &Row) -> Fields<'_> {
        Fields {
            seq: r.seq,
            at: 100 + r.seq,
            actor: &r.actor,
            action: "user.create",
            target: "user:a",
            reason: "",
            details: "{}",
            revision: Some(r.seq),
        }
    }

    fn chain(actors: &[&str]) -> Vec<Row> {
        let mut prev = GENESIS.to_owned();
        let mut rows = Vec::new();
        for (i, a) in actors.iter().enumerate() {
            let mut r = Row {
                seq: i64::try_from(i).unwrap() + 1,
                actor: (*a).to_owned(),
                prev: prev.clone(),
                hash: String::new(),
            };
            r.hash = row_hash(&prev, &fields(&r));
            prev = r.hash.clone();
            rows.push(r);
        }
        rows
    }

    fn links(rows: &[Row]) -> Vec<Link<'_>> {
        rows.iter()
            .map(|r| Link {
                fields: fields(r),
                prev_hash: &r.prev,
                hash: &r.hash,
            })
            .collect()
    }

    fn head(r: &Row) -> Head {
        Head {
            seq: r.seq,
            hash: r.hash.clone(),
        }
    }

    #[test]
    fn an_appended_log_extends_the_held_head() {
        let rows = chain(&["a", "b", "c", "d"]);
        extends(&head(&rows[1]), &links(&rows[2..]), &head(&rows[3])).unwrap();
        let empty = Head {
            seq: 0,
            hash: GENESIS.to_owned(),
        };
        extends(&empty, &links(&rows), &head(&rows[3])).unwrap();
        extends(&head(&rows[3]), &[], &head(&rows[3])).unwrap();
    }

    #[test]
    fn a_rewritten_and_rehashed_log_does_not_extend_a_head_witnessed_after_the_rewrite() {
        let rows = chain(&["a", "b", "c", "d"]);
        let forged = chain(&["a", "forger", "c", "d", "e"]);
        // Held row 3; the forged log's rows 4-5 do not start from the held hash.
        let err = extends(&head(&rows[2]), &links(&forged[3..]), &head(&forged[4])).unwrap_err();
        assert!(matches!(err, NotExtended::Broken { seq: 4, .. }), "{err}");
        // Same row, other hash.
        let err = extends(&head(&rows[2]), &[], &head(&forged[2])).unwrap_err();
        assert!(
            matches!(err, NotExtended::Rewritten { seq: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn each_other_break_is_its_own_refusal() {
        let rows = chain(&["a", "b", "c", "d"]);
        let err = extends(&head(&rows[3]), &[], &head(&rows[1])).unwrap_err();
        assert!(
            matches!(err, NotExtended::Backwards { held: 4, new: 2 }),
            "{err}"
        );
        let err = extends(&head(&rows[0]), &links(&rows[2..]), &head(&rows[3])).unwrap_err();
        assert!(matches!(err, NotExtended::Gap { .. }), "{err}");
        let mut l = links(&rows[1..]);
        l[1].fields.actor = "someone-else";
        let err = extends(&head(&rows[0]), &l, &head(&rows[3])).unwrap_err();
        assert!(
            matches!(&err, NotExtended::Broken { seq: 3, problem } if problem.contains("contents")),
            "{err}"
        );
        let other = Head {
            seq: 4,
            hash: "00".to_owned(),
        };
        let err = extends(&head(&rows[0]), &links(&rows[1..]), &other).unwrap_err();
        assert!(matches!(err, NotExtended::Broken { seq: 4, .. }), "{err}");
    }
}
