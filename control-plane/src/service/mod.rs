//! The service layer: every action on the model, authorized by the caller's adapter and
//! audited here, in one place. HTTP, SCIM, the CLI and the dashboard are thin adapters.
//!
//! Writes are serialized by one lock and run in one transaction each: the change, its new
//! revision (if it changes what hosts must know) and its audit row commit together, and the
//! commit is fsynced before the call returns. Subscribers learn the new revision after.
//! What agents report (connections, sessions) is telemetry, not a change of the model: it
//! is group-committed (`reports.rs`), still durable before each call returns.

mod approvals;
mod certificates;
mod dashboard_sessions;
#[cfg(test)]
mod dashboard_sessions_tests;
mod enroll;
mod grants;
mod host_certificates;
mod hosts;
mod offline_alerts;
mod operators;
mod refresh;
mod refused;
mod replicas;
#[cfg(test)]
mod replicas_tests;
mod reports;
mod revocations;
mod scim;
mod sessions;
mod signoff;
mod stats;
mod tokens;
mod users;
mod webhook;
mod witness;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, MutexGuard, watch};

use crate::audit;
use crate::model::Invalid;
use crate::store::{self, Store, Tx};

pub use approvals::{
    ApprovalRecord, GrantApprovals, ReenableApprovals, grant_bytes, reenable_bytes, sign_command,
};
pub use certificates::{
    CertPolicy, IssueError, IssueRequest, IssuedCertificate, Refusal, UserCa,
    validate_source_address,
};
pub use dashboard_sessions::{LoginFailures, MAX_WEB_SESSIONS, WebSession, WebSessionLimits};
pub use enroll::{EnrollError, HostKeyProof, JoinToken};
pub use grants::NewGrant;
pub use host_certificates::{
    DEFAULT_HOST_CERT_TTL, HostCa, HostCertError, HostCertificate, HostRefusal,
    validate_known_hosts_patterns,
};
pub use hosts::NewHost;
pub use operators::{NewOperator, OperatorAccount, Role};
pub use replicas::{LEASE_SECS, RENEW_EVERY};
pub use revocations::RevocationRecord;
pub(crate) use revocations::from_columns as revocation_from_columns;
pub use scim::{MAX_EXTERNAL_ID, ScimUser};
pub use sessions::{
    ANY_STATE, Connection, KillOrderRecord, SESSION_PAGE_MAX, SessionCursor, SessionEvent,
    SessionFilter, SessionPage, SessionRecord,
};
pub use signoff::{SignoffHost, SignoffHostState, SignoffRecord};
pub use stats::Counts;
pub use tokens::{AuthError, MintError, Scope, Token, TokenInfo};
pub use users::{NewUser, UserUpdate};

/// Where time comes from; tests move it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix seconds.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// Who is acting, as recorded in the audit log (`token:NAME`, `operator:NAME`, `cli`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// The admin CLI on the server machine.
    pub fn cli() -> Self {
        Actor("cli".to_owned())
    }
}

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The input is not acceptable.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The thing named does not exist.
    #[error("{kind} {name:?} does not exist")]
    NotFound {
        /// `user`, `host`, `host group`, …
        kind: &'static str,
        /// Its name or id.
        name: String,
    },
    /// The change conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error("store error")]
    Store(#[from] sqlx::Error),
    /// A stored value the service cannot read (a JSON column that does not parse, an id or
    /// time out of range): an error, never read as empty or zero.
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// The column or value (`sessions.pids`, `signoff id`, …).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl ServiceError {
    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        ServiceError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        ServiceError::NotFound {
            kind,
            name: name.into(),
        }
    }
}

/// Result of a service call.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The service layer over one store.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    writer: Mutex<()>,
    revision: watch::Sender<i64>,
    session_events: tokio::sync::broadcast::Sender<SessionEvent>,
    outboxes: sessions::Outboxes,
    order_signer: std::sync::Mutex<Option<ssh_key::PrivateKey>>,
    /// signoff's own user CA, once loaded (`certificates.rs`).
    user_ca: std::sync::Mutex<Option<Arc<UserCa>>>,
    host_ca: std::sync::Mutex<Option<Arc<HostCa>>>,
    signoff_progress: watch::Sender<u64>,
    /// Acks not yet written: host → (acked revision, Unix seconds).
    contacts: std::sync::Mutex<std::collections::HashMap<String, (i64, i64)>>,
    /// Agents' reports waiting for their group commit.
    reports: reports::ReportQueue,
    /// The `[alerts]` rules in force.
    alert_rules: std::sync::RwLock<Arc<crate::alerts::Rules>>,
    /// The last audit head signed for hosts, (order key fingerprint and hash, signature):
    /// every agent's view of a
    /// revision carries the same head, signed once (`witness.rs`).
    signed_head: std::sync::Mutex<Option<(String, String)>>,
    /// Readings of the audit head under way, by the row the asking host holds
    /// (`witness.rs`).
    heads_in_flight: witness::HeadsInFlight,
    /// This server's replica id, once started as one (`replicas.rs`).
    replica: std::sync::OnceLock<String>,
    /// A relay of sign-off progress to other replicas is scheduled (`replicas.rs`).
    signoffs_relay_pending: std::sync::atomic::AtomicBool,
}

impl Service {
    /// A service over an opened, migrated store.
    pub async fn new(store: Store, clock: Arc<dyn Clock>) -> Result<Self> {
        let current = store::audit::latest_revision(store.conn().await?.db()).await?;
        let (revision, _) = watch::channel(current);
        Ok(Service {
            inner: Arc::new(Inner {
                store,
                clock,
                writer: Mutex::new(()),
                revision,
                session_events: tokio::sync::broadcast::channel(1024).0,
                outboxes: sessions::Outboxes::default(),
                order_signer: std::sync::Mutex::new(None),
                user_ca: std::sync::Mutex::new(None),
                host_ca: std::sync::Mutex::new(None),
                signoff_progress: watch::channel(0).0,
                contacts: std::sync::Mutex::new(std::collections::HashMap::new()),
                reports: reports::ReportQueue::default(),
                alert_rules: std::sync::RwLock::default(),
                signed_head: std::sync::Mutex::new(None),
                heads_in_flight: witness::HeadsInFlight::default(),
                replica: std::sync::OnceLock::new(),
                signoffs_relay_pending: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Unix seconds now, by the service's clock.
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// The latest committed revision.
    pub fn revision(&self) -> i64 {
        *self.inner.revision.borrow()
    }

    /// A receiver that sees each new revision once it is durable.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.inner.revision.subscribe()
    }

    /// Checks the audit chain.
    pub async fn verify_audit(&self) -> Result<audit::Verification> {
        let v = audit::verify(&self.inner.store).await?;
        if let Some(broken) = &v.broken {
            self.alert_audit_broken(serde_json::json!({"broken": broken}))
                .await?;
        }
        Ok(v)
    }

    /// Checks the audit chain and that it still holds every head hosts witnessed.
    pub async fn verify_audit_witnessed(
        &self,
        heads: &[audit::WitnessedHead],
    ) -> Result<audit::Verification> {
        Ok(audit::verify_witnessed(&self.inner.store, heads).await?)
    }

    /// A page of the audit log.
    pub async fn audit_log(
        &self,
        filter: &str,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<audit::Record>> {
        Ok(audit::list(&self.inner.store, filter, before_seq, limit.clamp(1, 1000)).await?)
    }

    /// The events feed after cursor `since`, oldest first (`limit` taken as 1 to 1000).
    pub async fn events_since(&self, since: i64, limit: i64) -> Result<Vec<crate::events::Event>> {
        crate::events::list(&self.inner.store, since, limit.clamp(1, 1000))
            .await
            .map_err(|e| match e {
                crate::events::ListError::Store(e) => ServiceError::Store(e),
                e @ crate::events::ListError::Corrupt { .. } => ServiceError::corrupt("event", e),
            })
    }

    /// Starts a write: takes the writer lock, opens a transaction and, when the change
    /// affects what hosts must know, allocates the next revision.
    async fn write<'a>(
        &'a self,
        actor: &'a Actor,
        summary: &str,
        new_revision: bool,
    ) -> Result<Write<'a>> {
        let guard = self.inner.writer.lock().await;
        // Serialised with every other change of every process on the database (the admin
        // CLI, other replicas): revisions and the audit chain have one writer at a time.
        let mut tx = self.inner.store.begin_change().await?;
        let now = self.now();
        let revision = if new_revision {
            Some(store::audit::new_revision(tx.db(), now, &actor.0, summary).await?)
        } else {
            None
        };
        Ok(Write {
            service: self,
            _guard: guard,
            tx,
            actor,
            now,
            revision,
        })
    }
}

/// One write in progress. Dropping it without [`Write::commit`] rolls everything back.
struct Write<'a> {
    service: &'a Service,
    _guard: MutexGuard<'a, ()>,
    tx: Tx,
    actor: &'a Actor,
    now: i64,
    revision: Option<i64>,
}

impl Write<'_> {
    /// The revision this write creates; only valid for writes that create one.
    fn rev(&self) -> i64 {
        self.revision.unwrap_or(0)
    }

    /// Records the audit entry and commits. The revision is published only after the
    /// commit is durable.
    async fn commit(
        mut self,
        action: &str,
        target: &str,
        reason: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        crate::model::validate_text("reason", reason, 1024)?;
        let entry = audit::Entry {
            actor: &self.actor.0,
            action,
            target,
            reason,
            details,
            revision: self.revision,
        };
        audit::append(self.tx.db(), self.now, &entry).await?;
        if let Some(revision) = self.revision {
            self.tx.announce_revision(revision).await?;
        }
        self.tx.commit().await?;
        if let Some(revision) = self.revision {
            // Another process may have committed and published a later revision already;
            // subscribers never see the number go back.
            self.service.inner.revision.send_if_modified(|r| {
                let newer = revision > *r;
                if newer {
                    *r = revision;
                }
                newer
            });
        }
        Ok(())
    }
}

/// A stored JSON column, parsed; one that does not parse is [`ServiceError::Corrupt`].
pub(crate) fn stored_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|e| ServiceError::corrupt(what, e))
}

/// A stored integer that must not be negative (an id, a Unix time), as `u64`.
pub(crate) fn unsigned(what: &'static str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| ServiceError::corrupt(what, format!("{v} is negative")))
}

/// An audit row's details: a value that does not serialize is an error, never an empty row.
pub(crate) fn audit_details<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| ServiceError::corrupt("audit details", e))
}

/// Maps a unique-constraint violation to a conflict with `message`; passes other errors on.
fn conflict_on_unique(e: sqlx::Error, message: impl FnOnce() -> String) -> ServiceError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => ServiceError::Conflict(message()),
        _ => ServiceError::Store(e),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::{Clock, Service};

    /// A clock tests set by hand.
    #[derive(Debug, Default)]
    pub struct ManualClock(pub AtomicI64);

    impl Clock for ManualClock {
        fn now(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A service over a fresh in-memory store, with its clock.
    pub async fn service() -> (Service, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock(AtomicI64::new(1_800_000_000)));
        let svc = Service::new(crate::store::open_memory().await, clock.clone())
            .await
            .expect("service");
        (svc, clock)
    }
}
