//! The offline half of the `incomplete_action` alert rule: a sign-off or kill order that a
//! host has not carried out because its agent is offline, past
//! `[alerts.incomplete_action] offline_after`. (The other half, a host that refused or left
//! processes, is raised where the host's result is recorded.)
//!
//! The wait is counted from when the host's agent disconnected (`hosts.offline_since`) or
//! from the sign-off or order, whichever is later. Each (sign-off or order, host) raises at
//! most one alert, ever: `offline_alerted_at` marks it in the transaction that records it.

use sqlx::Row;

use super::{Result, Service};

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
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        // Sign-offs in force, not confirmed by a live host that is offline now.
        let signoffs = sqlx::query(
            "SELECT sh.signoff_id, sh.host_id, u.name,
                    max(ifnull(h.offline_since, 0), s.created_at) AS since
             FROM signoff_hosts sh
             JOIN signoffs s ON s.id = sh.signoff_id
             JOIN users u ON u.id = s.user_id
             JOIN hosts h ON h.id = sh.host_id
             WHERE sh.confirmed_at IS NULL AND sh.offline_alerted_at IS NULL
               AND s.until_rev IS NULL AND h.online = 0 AND h.removed_rev IS NULL
               AND ?1 - since > ?2
             ORDER BY sh.signoff_id, sh.host_id",
        )
        .bind(now)
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        let mut raised = Vec::new();
        for r in &signoffs {
            let (id, host, person, since): (i64, String, String, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let Some(alert) = rules.on_offline(
                &host,
                Some(&person),
                &format!("sign-off {id} of {person}"),
                now - since,
                serde_json::json!({"signoff": id, "offline_since": since}),
            ) else {
                continue;
            };
            sqlx::query(
                "UPDATE signoff_hosts SET offline_alerted_at = ?
                 WHERE signoff_id = ? AND host_id = ? AND offline_alerted_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .bind(&host)
            .execute(&mut *tx)
            .await?;
            raised.push(alert);
        }
        // Kill orders without a result on a host offline now. An undelivered order counts
        // only while its host has stayed offline since: one that came back and went again
        // never had the order, and will not.
        let orders = sqlx::query(
            "SELECT k.nonce, k.host_id, k.session_id,
                    max(ifnull(h.offline_since, 0), k.created_at) AS since
             FROM kill_orders k JOIN hosts h ON h.id = k.host_id
             WHERE k.state IN ('sent', 'undelivered') AND k.offline_alerted_at IS NULL
               AND h.online = 0 AND h.removed_rev IS NULL
               AND (k.state = 'sent' OR ifnull(h.offline_since, 0) <= k.created_at)
               AND ?1 - since > ?2
             ORDER BY k.created_at, k.nonce",
        )
        .bind(now)
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        for r in &orders {
            let (nonce, host, session, since): (String, String, String, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let Some(alert) = rules.on_offline(
                &host,
                None,
                &format!("the kill of session {session}"),
                now - since,
                serde_json::json!({"order": nonce, "session": session, "offline_since": since}),
            ) else {
                continue;
            };
            sqlx::query(
                "UPDATE kill_orders SET offline_alerted_at = ?
                 WHERE nonce = ? AND offline_alerted_at IS NULL",
            )
            .bind(now)
            .bind(&nonce)
            .execute(&mut *tx)
            .await?;
            raised.push(alert);
        }
        crate::alerts::record(&mut tx, now, &raised).await?;
        tx.commit().await?;
        Ok(raised.len())
    }
}

#[cfg(test)]
mod tests;
