//! The durable events feed: one row per audit entry, session start and end (and, later,
//! alert), written in the transaction of the change it records. `GET /api/v1/events` reads
//! it by cursor (the row id), so a SIEM collector resumes where it stopped, across
//! restarts of either side.

use crate::store::{self, Db, Store};
use serde::Serialize;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An audit log entry (its data is the entry).
    Audit,
    /// A session became known (its data is the session).
    SessionStarted,
    /// A session ended (`{host_id, id}`).
    SessionEnded,
    /// sshd refused a login attempt (its data: host, account, source, key, reason, and
    /// the person when the key names one).
    RefusedAttempt,
    /// An agent could not send this many refused attempts (over its rate bound).
    RefusedAttemptsDropped,
    /// An alert (see [`crate::alerts`]).
    Alert,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Audit => "audit",
            Kind::SessionStarted => "session_started",
            Kind::SessionEnded => "session_ended",
            Kind::RefusedAttempt => "refused_attempt",
            Kind::RefusedAttemptsDropped => "refused_attempts_dropped",
            Kind::Alert => "alert",
        }
    }
}

/// One event of the feed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// Its cursor: pass it as `since` to read the events after it.
    pub cursor: i64,
    /// When it happened (Unix seconds).
    pub at: i64,
    /// `audit`, `session_started`, `session_ended`, `refused_attempt`,
    /// `refused_attempts_dropped` or `alert`.
    pub kind: String,
    /// The audit entry, the session, or `{host_id, id}`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Records an event inside the caller's transaction.
pub async fn record(
    db: Db<'_>,
    at: i64,
    kind: Kind,
    data: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    store::events::insert(db, at, kind.as_str(), &data.to_string()).await
}

/// A stored event whose data is not JSON.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The store failed.
    #[error("cannot read the events")]
    Store(#[from] sqlx::Error),
    /// A row's data does not parse.
    #[error("event {cursor} holds data that is not JSON")]
    Corrupt {
        /// The row.
        cursor: i64,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// The events after `since`, oldest first, at most `limit`.
pub async fn list(store: &Store, since: i64, limit: i64) -> Result<Vec<Event>, ListError> {
    let mut conn = store.conn().await?;
    let rows = store::events::after(conn.db(), since, limit).await?;
    rows.into_iter()
        .map(|(cursor, at, kind, data)| {
            Ok(Event {
                cursor,
                at,
                kind,
                data: serde_json::from_str(&data)
                    .map_err(|source| ListError::Corrupt { cursor, source })?,
            })
        })
        .collect()
}
