//! What hosts need to witness the audit log (issue 20), and what they say when they
//! refuse it.
//!
//! Each host view and delta carries the chain head when it was sent — the last audit row's
//! number and hash, signed with the order key ([`signoff_proto::audit_chain::head_bytes`])
//! — and the rows from the head the agent holds to it, so that the agent recomputes them
//! ([`signoff_proto::audit_chain::extends`]). An agent whose held head the log no longer
//! extends refuses this control plane and reports it; the report is audited here.

use signoff_proto::audit_chain::{Head, head_bytes};
use signoff_proto::{orders, v1};
use sqlx::Row;

use super::{Actor, Result, Service};

/// Most rows sent with one head. An agent further behind is sent the head alone and, as
/// it cannot check it, keeps its own head and refuses (see the agent README).
pub const MAX_LINKS: i64 = 100_000;

impl Service {
    /// The current chain head signed with the order key, and the rows after `held_seq` up
    /// to it (none when `held_seq` is 0: a host's first head is taken on first use).
    pub async fn audit_head(
        &self,
        held_seq: i64,
    ) -> Result<(v1::SignedAuditHead, Vec<v1::AuditLink>)> {
        let mut conn = self.pool().acquire().await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?
            .map_or(
                Head {
                    seq: 0,
                    hash: signoff_proto::audit_chain::GENESIS.to_owned(),
                },
                |r| Head {
                    seq: r.get(0),
                    hash: r.get(1),
                },
            );
        let signer = self.order_signer()?;
        // The same head under the same key: the signature made for the previous agent.
        let key = format!(
            "{} {}",
            signer.public_key().fingerprint(ssh_key::HashAlg::Sha256),
            head.hash
        );
        let cached = self
            .inner
            .signed_head
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .filter(|(k, _)| *k == key)
            .map(|(_, sig)| sig);
        let signature = match cached {
            Some(sig) => sig,
            None => {
                let sig = orders::sign(&signer, &head_bytes(&head)).map_err(|e| {
                    super::ServiceError::Conflict(format!("cannot sign the audit head: {e}"))
                })?;
                if let Ok(mut c) = self.inner.signed_head.lock() {
                    *c = Some((key, sig.clone()));
                }
                sig
            }
        };
        let mut links = Vec::new();
        if held_seq > 0 && held_seq < head.seq && head.seq - held_seq <= MAX_LINKS {
            for r in sqlx::query(
                "SELECT seq, at, actor, action, target, reason, details, revision, prev_hash, hash
                 FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq",
            )
            .bind(held_seq)
            .bind(head.seq)
            .fetch_all(&mut *conn)
            .await?
            {
                links.push(v1::AuditLink {
                    seq: u64::try_from(r.get::<i64, _>(0)).unwrap_or(0),
                    at: r.get(1),
                    actor: r.get(2),
                    action: r.get(3),
                    target: r.get(4),
                    reason: r.get(5),
                    details: r.get(6),
                    revision: r.get(7),
                    prev_hash: r.get(8),
                    hash: r.get(9),
                });
            }
        }
        Ok((
            v1::SignedAuditHead {
                seq: u64::try_from(head.seq).unwrap_or(0),
                hash: head.hash,
                signature,
            },
            links,
        ))
    }

    /// Records that `host` refused this control plane's audit log: it no longer extends
    /// the head the host witnessed. Audited and logged as an error.
    pub async fn record_witness_refusal(&self, host: &str, r: &v1::WitnessRefusal) -> Result<()> {
        tracing::error!(
            host,
            held_seq = r.held_seq,
            held_hash = %r.held_hash,
            reason = %r.reason,
            "a host refuses this control plane: the audit log no longer extends the head it witnessed"
        );
        let actor = Actor(format!("host:{host}"));
        let mut w = self.write(&actor, "audit.witness_refused", false).await?;
        let subject = serde_json::json!({
            "host": host,
            "held_seq": r.held_seq,
            "held_hash": r.held_hash,
        });
        if let Some(alert) = self.alert_rules().on_witness_refused(host, subject) {
            // Once while unacknowledged: the agent says it again on every reconnect.
            crate::alerts::record_once(&mut w.tx, w.now, alert).await?;
        }
        w.commit(
            "audit.witness_refused",
            &format!("host:{host}"),
            "",
            serde_json::json!({
                "held_seq": r.held_seq,
                "held_hash": r.held_hash,
                "reason": r.reason,
            }),
        )
        .await
    }
}
