//! Several servers on one database (issue 18): each one that holds agents' streams is a
//! replica with a lease in the store. A host is online at the replica that holds its
//! stream while that replica's lease holds; a kill order made on another replica is handed
//! to it through the store (`forwarded`, then `sent` by the holder, exactly once).

use std::time::Duration;

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
        let mut tx = self.store().begin_write().await?;
        store::replicas::renew(tx.db(), id, now, now + LEASE_SECS).await?;
        let offline = store::hosts::offline_unheld(tx.db(), Some(id), now).await?;
        for host in &offline {
            store::sessions::host_unknown(tx.db(), host).await?;
        }
        tx.commit().await?;
        self.hosts_went_offline(offline);
        Ok(())
    }

    /// Renews this replica's lease. If it had lapsed (the database was out of reach), the
    /// hosts whose streams this replica still holds are recorded as held here again. Then
    /// counts offline the hosts of replicas whose leases lapsed, and gives up forwarded
    /// kill orders nobody claimed in time.
    pub async fn renew_lease(&self) -> Result<()> {
        let now = self.now();
        let me = self.replica().to_owned();
        let mut tx = self.store().begin_write().await?;
        if !store::replicas::renew(tx.db(), &me, now, now + LEASE_SECS).await? {
            for host in self.inner.outboxes.held() {
                store::hosts::held_by(tx.db(), &host, &me).await?;
            }
        }
        let offline = store::hosts::offline_unheld(tx.db(), None, now).await?;
        for host in &offline {
            store::sessions::host_unknown(tx.db(), host).await?;
        }
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
