//! The store: a SQLite database (embedded, in the data directory) reached through sqlx,
//! with the schema in `migrations/`. Queries use portable SQL so that a PostgreSQL backend
//! can follow behind the same service layer.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// A store that could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database URL does not parse.
    #[error("database URL {url:?} is not valid")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why sqlx refused it.
        #[source]
        source: sqlx::Error,
    },
    /// The database cannot be opened or created.
    #[error("cannot open database {url:?}")]
    Connect {
        /// The URL given.
        url: String,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations failed.
    #[error("cannot migrate database {url:?}")]
    Migrate {
        /// The URL given.
        url: String,
        /// The underlying error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// The database URL of the default store inside `data_dir`.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("signoff.db").display())
}

/// Opens (creating if needed) and migrates the store at `url`.
///
/// Every commit is fsynced (`synchronous = FULL`): a change acknowledged to a caller must
/// survive a crash of the process or the machine.
pub async fn open(url: &str) -> Result<SqlitePool, OpenError> {
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

/// Opens a private in-memory store, for tests.
#[cfg(test)]
pub async fn open_memory() -> SqlitePool {
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
