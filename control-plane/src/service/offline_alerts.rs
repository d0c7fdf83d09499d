//! The offline half of the `incomplete_action` alert rule: a sign-off or kill order that a
//! host has not carried out because its agent is offline, past
//! `[alerts.incomplete_action] offline_after`. (The other half, a host that refused or left
//! processes, is raised where the host's result is recorded.)
//!
//! The wait is counted from when the host's agent disconnected (`hosts.offline_since`) or
//! from the sign-off or order, whichever is later. Each (sign-off or order, host) raises at
//! most one alert, ever: `offline_alerted_at` marks it in the transaction that records it.

use super::{Result, Service};
use crate::store;

impl Service {
    /// Raises the alerts for sign-offs and kill orders waiting past the threshold on a host
    /// whose agent is offline, once each. Returns how many it raised. The server calls it
    /// periodically; with the rule off it reads nothing.
    pub async fn alert_offline_waits(&self) -> Result<usize> {
        let rules = self.alert_rules();
        let Some(after) = rules.offline_after() else {
            return Ok(0);
        };
        let now = self.now();
        let mut tx = self.store().begin_write().await?;
        // Sign-offs in force, not confirmed by a live host that is offline now.
        let signoffs = store::alerts::offline_signoff_waits(tx.db(), now, after).await?;
        let mut raised = Vec::new();
        for (id, host, person, since) in signoffs {
            let Some(alert) = rules.on_offline(
                &host,
                Some(&person),
                &format!("sign-off {id} of {person}"),
                now - since,
                serde_json::json!({"signoff": id, "offline_since": since}),
            ) else {
                continue;
            };
            store::alerts::mark_signoff_wait_alerted(tx.db(), id, &host, now).await?;
            raised.push(alert);
        }
        // Kill orders without a result on a host offline now. An undelivered order counts
        // only while its host has stayed offline since: one that came back and went again
        // never had the order, and will not.
        let orders = store::alerts::offline_kill_waits(tx.db(), now, after).await?;
        for (nonce, host, session, since) in orders {
            let Some(alert) = rules.on_offline(
                &host,
                None,
                &format!("the kill of session {session}"),
                now - since,
                serde_json::json!({"order": nonce, "session": session, "offline_since": since}),
            ) else {
                continue;
            };
            store::alerts::mark_kill_wait_alerted(tx.db(), &nonce, now).await?;
            raised.push(alert);
        }
        crate::alerts::record(tx.db(), now, &raised).await?;
        tx.commit().await?;
        Ok(raised.len())
    }
}

#[cfg(test)]
mod tests;
