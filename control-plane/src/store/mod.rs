//! The store: every SQL statement of the control plane, one typed function each, over
//! SQLite (embedded, the default) or PostgreSQL (`database_url = "postgres://…"`).
//!
//! A statement is written once, in SQL both engines read (`$n` placeholders, `coalesce`,
//! `RETURNING`, `CASE` for a two-value maximum), and the [`on!`] macro runs it on
//! whichever backend the connection belongs to: each function's body is compiled for both
//! drivers, so a type that one of them cannot bind or decode fails the build. What cannot be
//! said in both lives in one place per backend: `sqlite.rs` (pragmas, `BEGIN IMMEDIATE`,
//! `json_extract`) and `postgres.rs` (the advisory lock that serialises changes, `->>`).
//! The service layer keeps the rules and holds no SQL text.

pub mod alerts;
pub mod approvals;
pub mod audit;
pub mod certificates;
pub mod dashboard;
pub mod dashboard_sessions;
pub mod delivery;
pub mod enroll;
pub mod events;
pub mod grants;
pub mod hosts;
pub mod operators;
mod postgres;
pub mod refused;
pub mod replicas;
pub mod revocations;
pub mod scim;
pub mod sessions;
pub mod signoffs;
mod sqlite;
pub mod stats;
pub mod tokens;
pub mod users;
pub mod views;
pub mod webhooks;
pub mod witness;

use std::path::Path;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

/// Runs `$body` with `$c` bound to the backend's connection (`&mut SqliteConnection` or
/// `&mut PgConnection`): the body is compiled once per backend.
macro_rules! on {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($c) => $body,
            $crate::store::Db::Postgres($c) => $body,
        }
    };
}
pub(crate) use on;

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

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, embedded.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if it names one.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// An open, migrated store: a pool of connections to one database.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// A connection taken from the store's pool, for reads outside a transaction.
#[derive(Debug)]
pub enum Conn {
    /// SQLite.
    Sqlite(PoolConnection<Sqlite>),
    /// PostgreSQL.
    Postgres(PoolConnection<Postgres>),
}

/// An open transaction. Dropping it without [`Tx::commit`] rolls it back.
#[derive(Debug)]
pub enum Tx {
    /// SQLite.
    Sqlite(Transaction<'static, Sqlite>),
    /// PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
}

/// Where a statement runs: a connection of one backend, borrowed from a [`Conn`] or a
/// [`Tx`]. The store's functions take it by value; [`Db::re`] lends it again.
#[derive(Debug)]
pub enum Db<'c> {
    /// SQLite.
    Sqlite(&'c mut SqliteConnection),
    /// PostgreSQL.
    Postgres(&'c mut PgConnection),
}

impl Db<'_> {
    /// The same connection, borrowed again for one more statement.
    pub fn re(&mut self) -> Db<'_> {
        match self {
            Db::Sqlite(c) => Db::Sqlite(c),
            Db::Postgres(c) => Db::Postgres(c),
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }
}

impl Conn {
    /// The connection, for one statement.
    pub fn db(&mut self) -> Db<'_> {
        match self {
            Conn::Sqlite(c) => Db::Sqlite(c),
            Conn::Postgres(c) => Db::Postgres(c),
        }
    }
}

impl Tx {
    /// Tells every process on the database, once this transaction commits, that it made
    /// `revision` (PostgreSQL: NOTIFY; SQLite: nothing, other processes poll).
    pub async fn announce_revision(&mut self, revision: i64) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(_) => Ok(()),
            Tx::Postgres(t) => postgres::notify_revision(t, revision).await,
        }
    }

    /// Tells every process on the database, once this transaction commits, that `host`
    /// has kill orders forwarded to whichever holds its stream (PostgreSQL: NOTIFY;
    /// SQLite: nothing, servers look for them as they poll).
    pub async fn announce_orders(&mut self, host: &str) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(_) => Ok(()),
            Tx::Postgres(t) => postgres::notify(t, postgres::ORDER_CHANNEL, host).await,
        }
    }

    /// The transaction's connection, for one statement.
    pub fn db(&mut self) -> Db<'_> {
        match self {
            Tx::Sqlite(t) => Db::Sqlite(t),
            Tx::Postgres(t) => Db::Postgres(t),
        }
    }

    /// Commits; on SQLite and PostgreSQL alike the commit is durable when this returns.
    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }
}

impl Store {
    /// The backend.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// A connection for reads outside a transaction.
    pub async fn conn(&self) -> sqlx::Result<Conn> {
        Ok(match self {
            Store::Sqlite(p) => Conn::Sqlite(p.acquire().await?),
            Store::Postgres(p) => Conn::Postgres(p.acquire().await?),
        })
    }

    /// A transaction for several reads that must see one state.
    pub async fn begin_read(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Store::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Store::Postgres(p) => Tx::Postgres(postgres::begin_snapshot(p).await?),
        })
    }

    /// A transaction that writes: on SQLite it takes the database's write lock now, so a
    /// writer in another process waits on the busy timeout instead of failing midway.
    pub async fn begin_write(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Store::Sqlite(p) => Tx::Sqlite(sqlite::begin_immediate(p).await?),
            Store::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A transaction that changes the model: serialised with every other such transaction
    /// of every process on this database (SQLite's write lock; a PostgreSQL advisory lock
    /// held until commit), so revisions and the audit chain have one writer at a time.
    pub async fn begin_change(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Store::Sqlite(p) => Tx::Sqlite(sqlite::begin_immediate(p).await?),
            Store::Postgres(p) => Tx::Postgres(postgres::begin_change(p).await?),
        })
    }

    /// A transaction that renews a replica's lease or sweeps hosts offline by leases:
    /// serialised with every other such transaction of every process on this database
    /// (SQLite's write lock; a PostgreSQL advisory lock of its own, apart from changes').
    pub async fn begin_liveness(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Store::Sqlite(p) => Tx::Sqlite(sqlite::begin_immediate(p).await?),
            Store::Postgres(p) => Tx::Postgres(postgres::begin_liveness(p).await?),
        })
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(p) => p.close().await,
            Store::Postgres(p) => p.close().await,
        }
    }

    /// What other processes commit, as they commit, where the backend announces it
    /// (PostgreSQL's LISTEN/NOTIFY): a listener on its own connection. `None` on SQLite,
    /// whose other writers (the admin CLI) are found by polling. Read what a notification
    /// says with [`Announcement::of`].
    pub async fn listener(&self) -> sqlx::Result<Option<sqlx::postgres::PgListener>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(p) => {
                let mut l = sqlx::postgres::PgListener::connect_with(p).await?;
                l.listen_all([
                    postgres::REVISION_CHANNEL,
                    postgres::ORDER_CHANNEL,
                    postgres::LIVE_CHANNEL,
                ])
                .await?;
                Ok(Some(l))
            }
        }
    }
}

/// Tells the other processes' live views what changed (`payloads`, one notification
/// each; PostgreSQL only, where several servers share the database).
pub async fn announce_live(db: Db<'_>, payloads: &[String]) -> sqlx::Result<()> {
    match db {
        Db::Sqlite(_) => Ok(()),
        Db::Postgres(c) => postgres::notify_all(c, postgres::LIVE_CHANNEL, payloads).await,
    }
}

/// What another process announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// A revision committed.
    Revision,
    /// Kill orders forwarded for this host.
    Orders(String),
    /// A change for live views (read by `Service::receive_live`).
    Live(String),
}

impl Announcement {
    /// What `n` announces (`None`: a channel this version does not know).
    pub fn of(n: &sqlx::postgres::PgNotification) -> Option<Announcement> {
        match n.channel() {
            postgres::REVISION_CHANNEL => Some(Announcement::Revision),
            postgres::ORDER_CHANNEL => Some(Announcement::Orders(n.payload().to_owned())),
            postgres::LIVE_CHANNEL => Some(Announcement::Live(n.payload().to_owned())),
            _ => None,
        }
    }
}

/// The database URL of the default store inside `data_dir`.
pub fn default_url(data_dir: &Path) -> String {
    sqlite::default_url(data_dir)
}

/// Opens (creating if needed) and migrates the store at `url`: SQLite for `sqlite:` URLs,
/// PostgreSQL for `postgres://` ones.
///
/// A change acknowledged to a caller survives a crash of the process or the machine: SQLite
/// fsyncs every commit (`synchronous = FULL`), PostgreSQL its WAL (`synchronous_commit`
/// left on).
pub async fn open(url: &str) -> Result<Store, OpenError> {
    match Backend::of_url(url) {
        Some(Backend::Postgres) => postgres::open(url).await.map(Store::Postgres),
        _ => sqlite::open(url).await.map(Store::Sqlite),
    }
}

/// Opens a private, empty store for a test: PostgreSQL when `SIGNOFF_TEST_POSTGRES` names a
/// server (`scripts/test` starts one and runs the control plane's tests on each backend), a
/// SQLite database in memory otherwise.
#[cfg(test)]
pub async fn open_memory() -> Store {
    match std::env::var("SIGNOFF_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Store::Postgres(postgres::open_test(&url).await),
        _ => Store::Sqlite(sqlite::open_memory().await),
    }
}

/// The URL of a private, empty store for a test that opens it more than once (a restart,
/// a second process): a new schema on the PostgreSQL server named by
/// `SIGNOFF_TEST_POSTGRES`, else a SQLite file in `dir`.
#[cfg(test)]
pub async fn test_url(dir: &Path) -> String {
    match std::env::var("SIGNOFF_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => postgres::test_schema_url(&url).await,
        _ => default_url(dir),
    }
}

impl Store {
    /// Runs one literal statement, for tests that play an attacker with write access to
    /// the database (a row edited behind the service's back). Returns the rows affected.
    #[cfg(test)]
    pub async fn exec_for_test(&self, sql: &str) -> u64 {
        match self {
            Store::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
            Store::Postgres(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::audit::{latest_revision, new_revision};

    /// Revisions are one more than the latest: a change rolled back leaves no gap.
    #[tokio::test]
    async fn revisions_have_no_gaps_when_a_change_is_rolled_back() {
        let store = super::open_memory().await;
        let mut tx = store.begin_change().await.unwrap();
        assert_eq!(new_revision(tx.db(), 1, "cli", "one").await.unwrap(), 1);
        tx.commit().await.unwrap();

        let mut tx = store.begin_change().await.unwrap();
        assert_eq!(new_revision(tx.db(), 2, "cli", "dropped").await.unwrap(), 2);
        drop(tx);

        let mut tx = store.begin_change().await.unwrap();
        assert_eq!(new_revision(tx.db(), 3, "cli", "two").await.unwrap(), 2);
        tx.commit().await.unwrap();
        let mut c = store.conn().await.unwrap();
        assert_eq!(latest_revision(c.db()).await.unwrap(), 2);
    }
}
