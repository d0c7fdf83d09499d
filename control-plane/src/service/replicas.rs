//! Several servers on one database (issue 18): each one that holds agents' streams is a
//! replica with a lease in the store. A host is online at the replica that holds its
//! stream while that replica's lease holds; a kill order made on another replica is handed
//! to it through the store (`forwarded`, then `sent` by the holder, exactly once).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use signoff_proto::v1;

use super::sessions::SessionEvent;
use super::{Result, Service};
use crate::store;

/// How long a replica's lease lasts without renewal: a replica silent this long (killed,
/// cut off from the database) has its hosts counted offline by the others.
pub const LEASE_SECS: i64 = 15;
/// How often a replica renews its lease, sweeps lapsed replicas' hosts offline and claims
/// orders forwarded to it that it missed.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How long a forwarded kill order may wait for the replica holding its host's stream to
/// send it; after that it is `undelivered` (that replica is gone, or lost the stream).
pub(super) const FORWARD_WAIT: Duration = Duration::from_secs(2);
/// The replica id of a service that was never started as a replica (the admin CLI, tests).
const LOCAL: &str = "local";
/// Progress of sign-offs is relayed at most this often (a reconnecting fleet changes
/// hosts' state thousands of times a second; watchers only need to know "it changed").
const SIGNOFFS_RELAY_EVERY: Duration = Duration::from_millis(100);
/// A session event larger than this is relayed by its key and read from the store by the
/// receiver (PostgreSQL's notification payloads stop at 8000 bytes).
const MAX_INLINE_EVENT: usize = 7000;

/// What one replica tells the others' live views (dashboards, the session event feed):
/// the changes it saw happen on the agents' streams it holds.
#[derive(Debug, Serialize, Deserialize)]
struct Live {
    /// The replica that saw it (its own notifications are ignored).
    from: String,
    #[serde(flatten)]
    what: LiveChange,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LiveChange {
    /// A session event.
    Session(SessionEvent),
    /// A session started or changed, too large to carry: read it.
    SessionChanged { host_id: String, id: String },
    /// Some sign-off's progress changed.
    Signoffs,
}

impl Service {
    /// This server's replica id.
    pub fn replica(&self) -> &str {
        self.inner.replica.get().map_or(LOCAL, String::as_str)
    }

    /// Starts this server as replica `id`: takes its lease, and counts offline every host
    /// whose stream no live replica holds — those recorded under `id` ended with this
    /// replica's last run.
    pub async fn start_replica(&self, id: &str) -> Result<()> {
        let _ = self.inner.replica.set(id.to_owned());
        let now = self.now();
        let mut tx = self.store().begin_liveness().await?;
        store::replicas::renew(tx.db(), id, now, now + LEASE_SECS).await?;
        let offline = store::hosts::offline_unheld(tx.db(), Some(id), now).await?;
        for host in &offline {
            store::sessions::host_unknown(tx.db(), host).await?;
        }
        tx.commit().await?;
        self.hosts_went_offline(offline);
        Ok(())
    }

    /// Renews this replica's lease, and makes the database say which streams it holds:
    /// a host whose stream it holds is recorded held here, and one recorded here whose
    /// stream it no longer holds is offline. Either can be out of step after the database
    /// was out of reach: another replica's sweep counted this replica's hosts offline when
    /// its lease lapsed, or a stream's connect or end could not be written. Then counts
    /// offline the hosts of replicas whose leases lapsed, and gives up forwarded kill
    /// orders nobody claimed in time.
    pub async fn renew_lease(&self) -> Result<()> {
        let now = self.now();
        let me = self.replica().to_owned();
        let mut tx = self.store().begin_liveness().await?;
        store::replicas::renew(tx.db(), &me, now, now + LEASE_SECS).await?;
        let recorded: HashSet<String> = store::hosts::online_at(tx.db(), &me)
            .await?
            .into_iter()
            .collect();
        // Read after the rows: a stream is registered here before its connect is written,
        // so a host recorded above and not held now has really ended.
        let held: HashSet<String> = self.inner.outboxes.held().into_iter().collect();
        for host in held.difference(&recorded) {
            store::hosts::held_by(tx.db(), host, &me).await?;
        }
        let mut offline = Vec::new();
        for host in recorded.difference(&held) {
            if store::hosts::disconnected(tx.db(), host, &me, now).await? {
                store::sessions::host_unknown(tx.db(), host).await?;
                offline.push(host.clone());
            }
        }
        let lapsed = store::hosts::offline_unheld(tx.db(), None, now).await?;
        for host in &lapsed {
            store::sessions::host_unknown(tx.db(), host).await?;
        }
        offline.extend(lapsed);
        store::replicas::forget_lapsed(tx.db(), now - 24 * 3600).await?;
        let stale = now - i64::try_from(FORWARD_WAIT.as_secs()).unwrap_or(2) - 1;
        store::sessions::undeliver_forwarded(tx.db(), None, stale).await?;
        tx.commit().await?;
        self.hosts_went_offline(offline);
        Ok(())
    }

    /// Ends this replica's lease (a clean stop: its streams have ended).
    pub async fn end_replica(&self) -> Result<()> {
        let mut c = self.store().conn().await?;
        store::replicas::end(c.db(), self.replica()).await?;
        Ok(())
    }

    fn hosts_went_offline(&self, hosts: Vec<String>) {
        if hosts.is_empty() {
            return;
        }
        for host_id in hosts {
            let _ = self
                .inner
                .session_events
                .send(SessionEvent::HostUnknown { host_id });
        }
        self.signoff_progressed();
    }

    /// Relays the session events this replica recorded to the other replicas' live views.
    pub(super) fn relay_sessions(&self, events: &[SessionEvent]) {
        if events.is_empty() || self.store().backend() != store::Backend::Postgres {
            return;
        }
        let from = self.replica().to_owned();
        let payloads: Vec<String> = events
            .iter()
            .filter_map(|e| {
                let live = Live {
                    from: from.clone(),
                    what: LiveChange::Session(e.clone()),
                };
                let text = serde_json::to_string(&live).ok()?;
                if text.len() <= MAX_INLINE_EVENT {
                    return Some(text);
                }
                let (host_id, id) = match e {
                    SessionEvent::Started(r) | SessionEvent::Updated(r) => {
                        (r.host_id.clone(), r.id.clone())
                    }
                    _ => return None,
                };
                serde_json::to_string(&Live {
                    from: from.clone(),
                    what: LiveChange::SessionChanged { host_id, id },
                })
                .ok()
            })
            .collect();
        self.relay(payloads);
    }

    /// Relays that some sign-off's progress changed (at most every
    /// [`SIGNOFFS_RELAY_EVERY`]).
    pub(super) fn relay_signoffs(&self) {
        if self.store().backend() != store::Backend::Postgres
            || self
                .inner
                .signoffs_relay_pending
                .swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner
                .signoffs_relay_pending
                .store(false, Ordering::Release);
            return;
        };
        let svc = self.clone();
        rt.spawn(async move {
            tokio::time::sleep(SIGNOFFS_RELAY_EVERY).await;
            svc.inner
                .signoffs_relay_pending
                .store(false, Ordering::Release);
            let live = Live {
                from: svc.replica().to_owned(),
                what: LiveChange::Signoffs,
            };
            if let Ok(text) = serde_json::to_string(&live) {
                svc.send_live(vec![text]).await;
            }
        });
    }

    fn relay(&self, payloads: Vec<String>) {
        if payloads.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let svc = self.clone();
            rt.spawn(async move { svc.send_live(payloads).await });
        }
    }

    async fn send_live(&self, payloads: Vec<String>) {
        let sent = async {
            let mut c = self.store().conn().await?;
            store::announce_live(c.db(), &payloads).await
        };
        // Live views are refreshed by other means too (every revision, every second):
        // a relay lost is a refresh late, not a change lost.
        if let Err(e) = sent.await {
            tracing::debug!("cannot relay live changes to other replicas: {e}");
        }
    }

    /// Takes in what another replica relayed (a notification's payload) as if this
    /// replica had seen it. Its own relays, and what it cannot read, are ignored.
    pub async fn receive_live(&self, payload: &str) -> Result<()> {
        let Ok(live) = serde_json::from_str::<Live>(payload) else {
            tracing::debug!("ignored a live change this version does not read");
            return Ok(());
        };
        if live.from == self.replica() {
            return Ok(());
        }
        match live.what {
            LiveChange::Session(e) => {
                let _ = self.inner.session_events.send(e);
            }
            LiveChange::SessionChanged { host_id, id } => {
                let record = self.get_session(&host_id, &id).await?;
                let _ = self
                    .inner
                    .session_events
                    .send(SessionEvent::Updated(Box::new(record)));
            }
            LiveChange::Signoffs => self.signoff_progressed_here(),
        }
        Ok(())
    }

    /// Claims and sends the kill orders forwarded to this replica: those of `host`, or of
    /// every host whose stream it holds. Each order is claimed (`forwarded` → `sent`) by one
    /// replica only. Returns how many were sent.
    pub async fn deliver_forwarded(&self, host: Option<&str>) -> Result<usize> {
        let hosts: Vec<String> = match host {
            Some(h) if self.inner.outboxes.holds(h) => vec![h.to_owned()],
            Some(_) => return Ok(0),
            None => {
                let mut c = self.store().conn().await?;
                store::sessions::forwarded_hosts(c.db())
                    .await?
                    .into_iter()
                    .filter(|h| self.inner.outboxes.holds(h))
                    .collect()
            }
        };
        let mut sent = 0;
        for host in hosts {
            let claimed = {
                let mut tx = self.store().begin_write().await?;
                let claimed = store::sessions::claim_forwarded(tx.db(), &host, self.now()).await?;
                tx.commit().await?;
                claimed
            };
            for (order, signature) in claimed {
                // Recorded as sent: if the stream ended just now, the reconnected agent gets
                // it again from `settle_orders`, as any sent order without a result.
                self.inner
                    .outboxes
                    .send(&host, v1::SignedOrder { order, signature });
                sent += 1;
            }
        }
        Ok(sent)
    }
}
