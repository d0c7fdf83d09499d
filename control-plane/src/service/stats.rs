//! Counts for metrics and the overview.

use serde::Serialize;

use super::{Result, Service};
use crate::store;

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
        let (active_users, disabled_users, hosts, grants, revocations) =
            store::stats::counts(self.store().conn().await?.db()).await?;
        Ok(Counts {
            active_users,
            disabled_users,
            hosts,
            grants,
            revocations,
        })
    }
}
