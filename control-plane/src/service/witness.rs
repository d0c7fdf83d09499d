//! What hosts need to witness the audit log (issue 20), and what they say when they
//! refuse it.
//!
//! Each host view and delta carries the chain head when it was sent — the last audit row's
//! number and hash, signed with the order key ([`signoff_proto::audit_chain::head_bytes`])
//! — and the rows from the head the agent holds to it, so that the agent recomputes them
//! ([`signoff_proto::audit_chain::extends`]). An agent whose held head the log no longer
//! extends refuses this control plane and reports it; the report is audited here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use signoff_proto::audit_chain::{Head, head_bytes};
use signoff_proto::{orders, v1};
use tokio::sync::OnceCell;

use super::{Actor, Result, Service};
use crate::store;

/// Most rows sent with one head. An agent further behind (a host offline while the log
/// grew) is sent the head `MAX_LINKS` rows on from its own, with those rows: it witnesses
/// the log one view at a time until it holds the current head.
pub const MAX_LINKS: i64 = 100_000;

/// A signed audit head and the rows up to it from the one a host holds.
pub type HeadReading = (v1::SignedAuditHead, Vec<v1::AuditLink>);

/// Readings of the audit head under way, by the row the asking host holds
/// ([`Service::audit_head`]).
#[derive(Debug, Default)]
pub(crate) struct HeadsInFlight(Mutex<HashMap<i64, Arc<OnceCell<HeadReading>>>>);

impl Service {
    /// The current chain head signed with the order key, and the rows after `held_seq` up
    /// to it (none when `held_seq` is 0: a host's first head is taken on first use).
    ///
    /// Hosts that ask while a reading for the same held row is under way share its answer:
    /// a revision sent to 10,000 streams asks 10,000 times within a moment, and each asking
    /// alone held a pooled connection for three statements (fan-out p99 ~4 s at 10,000
    /// agents, `fleet-load`). An answer is never older than a reading that was under way
    /// when the host asked.
    pub async fn audit_head(&self, held_seq: i64) -> Result<HeadReading> {
        let cell = {
            let mut m = self
                .inner
                .heads_in_flight
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            m.entry(held_seq).or_default().clone()
        };
        let answer = cell
            .get_or_try_init(|| self.audit_head_within(held_seq, MAX_LINKS))
            .await
            .cloned();
        // Done: whoever asks next reads again.
        if let Ok(mut m) = self.inner.heads_in_flight.0.lock()
            && m.get(&held_seq).is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            m.remove(&held_seq);
        }
        answer
    }

    /// [`Service::audit_head`], with at most `max_links` rows: a head further on than that
    /// from `held_seq` is not the current one but the row `max_links` on.
    pub(crate) async fn audit_head_within(
        &self,
        held_seq: i64,
        max_links: i64,
    ) -> Result<(v1::SignedAuditHead, Vec<v1::AuditLink>)> {
        let mut conn = self.store().conn().await?;
        let latest = store::witness::latest_seq(conn.db()).await?;
        let seq = match latest {
            Some(latest) if held_seq > 0 && latest - held_seq > max_links => held_seq + max_links,
            Some(latest) => latest,
            None => 0,
        };
        let head = store::witness::head_at(conn.db(), seq).await?.map_or(
            Head {
                seq: 0,
                hash: signoff_proto::audit_chain::GENESIS.to_owned(),
            },
            |(seq, hash)| Head { seq, hash },
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
        if held_seq > 0 && held_seq < head.seq {
            for r in store::witness::links(conn.db(), held_seq, head.seq).await? {
                links.push(v1::AuditLink {
                    seq: u64::try_from(r.seq).unwrap_or(0),
                    at: r.at,
                    actor: r.actor,
                    action: r.action,
                    target: r.target,
                    reason: r.reason,
                    details: r.details,
                    revision: r.revision,
                    prev_hash: r.prev_hash,
                    hash: r.hash,
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
            crate::alerts::record_once(w.tx.db(), w.now, alert).await?;
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

#[cfg(test)]
mod tests {
    use signoff_proto::audit_chain::{Head, Link, extends};

    use super::*;
    use crate::service::testing::service;
    use crate::service::{Actor, NewUser};

    fn links(links: &[v1::AuditLink]) -> Vec<Link<'_>> {
        links.iter().map(Link::from).collect()
    }

    #[tokio::test]
    async fn a_host_far_behind_witnesses_the_log_a_bounded_step_at_a_time() {
        let (svc, _) = service().await;
        svc.set_order_signer(ssh_key::PrivateKey::from(
            ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]),
        ));
        for i in 0..7 {
            let new = NewUser {
                name: format!("u{i}"),
                ..Default::default()
            };
            svc.create_user(&Actor::cli(), new, "").await.unwrap();
        }
        let (latest, _) = svc.audit_head(0).await.unwrap();
        assert!(latest.seq >= 7, "{latest:?}");
        // What a host holds after its first view: the first row.
        let (first, _) = svc.audit_head_within(0, 0).await.unwrap();
        assert_eq!(first.seq, latest.seq, "a first head is the current one");
        let log = svc.audit_log("", None, 1000).await.unwrap();
        let oldest = log.last().unwrap();
        let first_row = (oldest.seq, oldest.hash.clone());
        let mut held = Head {
            seq: first_row.0,
            hash: first_row.1,
        };
        let mut steps = 0;
        while u64::try_from(held.seq).unwrap() < latest.seq {
            let (head, rows) = svc.audit_head_within(held.seq, 3).await.unwrap();
            assert!(rows.len() <= 3, "{} rows", rows.len());
            let new = Head {
                seq: i64::try_from(head.seq).unwrap(),
                hash: head.hash.clone(),
            };
            extends(&held, &links(&rows), &new).expect("each step extends the held head");
            held = new;
            steps += 1;
        }
        assert_eq!(held.hash, latest.hash);
        assert!(steps >= 2, "{steps} steps");
        // Within reach, the current head at once.
        let (head, rows) = svc.audit_head(first_row.0).await.unwrap();
        assert_eq!(head.seq, latest.seq);
        assert_eq!(
            u64::try_from(rows.len()).unwrap(),
            latest.seq - u64::try_from(first_row.0).unwrap()
        );
    }
}
