//! What the dashboard reads beside the model: agents' own reports and the feed's newest
//! alert.

use super::{Db, on};

/// What a live host's agent reports about itself.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentFacts {
    /// The host's id.
    pub id: String,
    /// Whether its agent is connected.
    pub online: bool,
    /// The agent's version, once reported.
    pub agent_version: Option<String>,
    /// When the agent's client certificate expires (Unix seconds), once known.
    pub cert_not_after: Option<i64>,
}

/// What every live host's agent reports about itself.
pub async fn agent_facts(db: Db<'_>) -> sqlx::Result<Vec<AgentFacts>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, online, agent_version, cert_not_after FROM hosts WHERE removed_rev IS NULL",
    )
    .fetch_all(&mut *c)
    .await)
}

/// The id of the newest refused attempt or alert in the events feed, 0 when there is none.
pub async fn newest_refusal_or_alert(db: Db<'_>) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "SELECT coalesce(max(id), 0) FROM events WHERE kind IN ('refused_attempt', 'alert')",
    )
    .fetch_one(&mut *c)
    .await)
}

#[cfg(test)]
mod tests {
    use crate::store::views::tests::seeded;

    #[tokio::test]
    async fn agents_facts_and_the_newest_alert_are_read() {
        let store = seeded().await;
        store
            .exec_for_test(
                "INSERT INTO events (at, kind, data) VALUES (1, 'audit', '{}'),
                   (2, 'alert', '{}'), (3, 'audit', '{}')",
            )
            .await;
        let mut c = store.conn().await.unwrap();
        let mut facts = super::agent_facts(c.db()).await.unwrap();
        facts.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(facts.len(), 1);
        assert_eq!((facts[0].id.as_str(), facts[0].online), ("h1", true));
        assert_eq!(
            (facts[0].agent_version.as_deref(), facts[0].cert_not_after),
            (Some("1.0"), None)
        );
        let newest = super::newest_refusal_or_alert(c.db()).await.unwrap();
        assert_eq!(newest, 2, "the alert, not the later audit event");
    }
}
