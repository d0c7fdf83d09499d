//! What only SQLite says: how the embedded database is opened (WAL, `synchronous = FULL`,
//! foreign keys, the busy timeout), `BEGIN IMMEDIATE`, and its migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::OpenError;

pub(super) fn default_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("signoff.db").display())
}

/// Every commit is fsynced (`synchronous = FULL`): a change acknowledged to a caller must
/// survive a crash of the process or the machine.
pub(super) async fn open(url: &str) -> Result<SqlitePool, OpenError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|source| OpenError::BadUrl {
            url: url.to_owned(),
            source,
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(|source| OpenError::Connect {
            url: url.to_owned(),
            source,
        })?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .map_err(|source| OpenError::Migrate {
            url: url.to_owned(),
            source,
        })?;
    Ok(pool)
}

/// IMMEDIATE takes SQLite's write lock at once, so a writer in another process (the admin
/// CLI) waits on the busy timeout instead of failing when it first writes.
pub(super) async fn begin_immediate(
    pool: &SqlitePool,
) -> sqlx::Result<Transaction<'static, Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

#[cfg(test)]
pub(super) async fn open_memory() -> SqlitePool {
    let options = SqliteConnectOptions::from_str("sqlite::memory:")
        .expect("static URL")
        .foreign_keys(true);
    // One connection: every connection to :memory: is its own database.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("in-memory sqlite");
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .expect("migrations");
    pool
}

/// Whether an unacknowledged alert of rule `$1` about subject `$2` (JSON text) is raised.
pub(super) const ALERT_RAISED_UNACKNOWLEDGED: &str = "SELECT EXISTS(
    SELECT 1 FROM events e LEFT JOIN alert_acks a ON a.event_id = e.id
    WHERE e.kind = 'alert' AND a.event_id IS NULL
      AND json_extract(e.data, '$.rule') = $1
      AND json_extract(e.data, '$.subject') = json($2))";

/// The rule of alert event `$1`.
pub(super) const ALERT_RULE: &str =
    "SELECT json_extract(data, '$.rule') FROM events WHERE id = $1 AND kind = 'alert'";

/// Person `$1`'s timeline (audit target `$2`), newest first, at most `$3`.
pub(super) const PERSON_TIMELINE: &str = "SELECT id, at, kind, data FROM events
    WHERE (kind = 'session_started' AND json_extract(data, '$.user') = $1)
       OR (kind = 'refused_attempt' AND json_extract(data, '$.person') = $1)
       OR (kind = 'alert' AND json_extract(data, '$.person') = $1)
       OR (kind = 'audit' AND json_extract(data, '$.target') = $2)
    ORDER BY id DESC LIMIT $3";
