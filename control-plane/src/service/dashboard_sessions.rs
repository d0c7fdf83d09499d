//! The dashboard's web sessions and its login limiter, kept in the store (issue 18) so that
//! several servers behind a load balancer without stickiness agree: a session made on one
//! is honoured by all, a logout on one ends it on all, and failed logins counted on one
//! delay the next try on any. The dashboard decides what a session and a delay are; this
//! keeps them.
//!
//! The session id (the cookie's value) is a bearer secret: only its SHA-256 is stored, as
//! for API tokens, so reading the database does not log anyone in.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use super::{Result, Service};
use crate::store;
use crate::store::dashboard_sessions::Live;
pub use crate::store::dashboard_sessions::{FailureRow as LoginFailures, SessionRow as WebSession};

/// More stored sessions than this and the least recently used is dropped when one is made
/// (the table stays bounded whatever clients do; only a good password makes a session).
pub const MAX_WEB_SESSIONS: i64 = 10_000;

/// How long a web session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSessionLimits {
    /// Unused for this long (seconds), it ends.
    pub idle_secs: i64,
    /// This long (seconds) after login it ends, however active.
    pub max_secs: i64,
}

impl WebSessionLimits {
    /// What is live at `now`.
    fn at(self, now: i64) -> Live {
        Live {
            idle_before: now.saturating_sub(self.idle_secs),
            made_before: now.saturating_sub(self.max_secs),
        }
    }
}

/// The stored form of a session id.
fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The stored form of a client address: `""` when it is not known.
fn address(ip: Option<IpAddr>) -> String {
    ip.map(|ip| ip.to_string()).unwrap_or_default()
}

impl Service {
    /// Stores web session `id` (the cookie's value) of `operator` with its CSRF token, made
    /// at `now`. Sessions that have expired by then are deleted first.
    pub async fn create_web_session(
        &self,
        id: &str,
        operator: &str,
        csrf: &str,
        now: i64,
        limits: WebSessionLimits,
    ) -> Result<()> {
        let mut tx = self.store().begin_write().await?;
        store::dashboard_sessions::delete_expired(tx.db(), limits.at(now)).await?;
        if store::dashboard_sessions::count(tx.db()).await? >= MAX_WEB_SESSIONS {
            store::dashboard_sessions::delete_least_recent(tx.db()).await?;
        }
        let row = WebSession {
            operator: operator.to_owned(),
            csrf: csrf.to_owned(),
            created_at: now,
            last_seen: now,
        };
        store::dashboard_sessions::insert(tx.db(), &id_hash(id), &row).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Web session `id` if it is live at `now`, marked used then; `None` if there is no
    /// such session or it has expired.
    pub async fn web_session(
        &self,
        id: &str,
        now: i64,
        limits: WebSessionLimits,
    ) -> Result<Option<WebSession>> {
        let mut c = self.store().conn().await?;
        Ok(store::dashboard_sessions::touch(c.db(), &id_hash(id), now, limits.at(now)).await?)
    }

    /// Whether web session `id` is live at `now` (without marking it used).
    pub async fn web_session_is_live(
        &self,
        id: &str,
        now: i64,
        limits: WebSessionLimits,
    ) -> Result<bool> {
        let mut c = self.store().conn().await?;
        Ok(store::dashboard_sessions::is_live(c.db(), &id_hash(id), limits.at(now)).await?)
    }

    /// Ends web session `id` on every server (a logout, a new login in the same browser).
    pub async fn end_web_session(&self, id: &str) -> Result<()> {
        let mut c = self.store().conn().await?;
        Ok(store::dashboard_sessions::delete(c.db(), &id_hash(id)).await?)
    }

    /// The failed dashboard logins of `name` from `ip`, if any are recorded.
    pub async fn login_failures(
        &self,
        name: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<LoginFailures>> {
        let mut c = self.store().conn().await?;
        Ok(store::dashboard_sessions::failures(c.db(), name, &address(ip)).await?)
    }

    /// Counts a failed dashboard login of `name` from `ip` at `now`; failures at or before
    /// `forget_before` no longer count (that pair starts again, and every such pair is
    /// deleted). Returns the pair's failures with this one.
    pub async fn record_login_failure(
        &self,
        name: &str,
        ip: Option<IpAddr>,
        now: i64,
        forget_before: i64,
    ) -> Result<LoginFailures> {
        let mut c = self.store().conn().await?;
        store::dashboard_sessions::forget_failures(c.db(), forget_before).await?;
        Ok(store::dashboard_sessions::record_failure(
            c.db(),
            name,
            &address(ip),
            now,
            forget_before,
        )
        .await?)
    }

    /// A dashboard login of `name` from `ip` succeeded: that pair's failures are forgotten.
    pub async fn clear_login_failures(&self, name: &str, ip: Option<IpAddr>) -> Result<()> {
        let mut c = self.store().conn().await?;
        Ok(store::dashboard_sessions::clear_failures(c.db(), name, &address(ip)).await?)
    }
}
