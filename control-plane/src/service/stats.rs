//! Counts for metrics and the overview.

use serde::Serialize;
use sqlx::Row;

use super::{Result, Service};

/// How much of everything there is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// People who may log in.
    pub active_users: i64,
    /// People signed off.
    pub disabled_users: i64,
    /// Hosts not removed.
    pub hosts: i64,
    /// Live grants.
    pub grants: i64,
    /// Live revocations.
    pub revocations: i64,
}

impl Service {
    /// Counts of the live model.
    pub async fn counts(&self) -> Result<Counts> {
        let r = sqlx::query(
            "SELECT
               (SELECT count(*) FROM user_status WHERE until_rev IS NULL AND status = 'active'),
               (SELECT count(*) FROM user_status WHERE until_rev IS NULL AND status = 'disabled'),
               (SELECT count(*) FROM hosts WHERE removed_rev IS NULL),
               (SELECT count(*) FROM grants WHERE until_rev IS NULL),
               (SELECT count(*) FROM revocations WHERE until_rev IS NULL)",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(Counts {
            active_users: r.get(0),
            disabled_users: r.get(1),
            hosts: r.get(2),
            grants: r.get(3),
            revocations: r.get(4),
        })
    }
}
