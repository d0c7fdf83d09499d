//! What only PostgreSQL says: how a pool is opened, the advisory lock that serialises
//! changes across every process on the database, snapshot reads, and its migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::OpenError;

/// The advisory lock every change takes until it commits: revisions and the audit chain
/// then have one writer at a time however many control planes share the database.
/// (`0x5349474e4f4646` is "SIGNOFF" in ASCII.)
const CHANGE_LOCK: i64 = 0x53_4947_4e4f_4646;
/// The advisory lock a replica takes to renew its lease and sweep lapsed replicas' hosts
/// offline: one at a time, so a sweep never judges a lease another replica is renewing in
/// that moment. (Under READ COMMITTED a sweep blocked on a host row that the renewing
/// replica re-records re-checks the row, but not the lease subquery it read before: it
/// would mark the host offline just after its replica, back from an outage, claimed it.)
const LIVENESS_LOCK: i64 = CHANGE_LOCK + 1;

fn options(url: &str) -> Result<PgConnectOptions, OpenError> {
    PgConnectOptions::from_str(url).map_err(|source| OpenError::BadUrl {
        url: url.to_owned(),
        source,
    })
}

pub(super) async fn open(url: &str) -> Result<PgPool, OpenError> {
    open_with(url, options(url)?).await
}

async fn open_with(url: &str, options: PgConnectOptions) -> Result<PgPool, OpenError> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|source| OpenError::Connect {
            url: url.to_owned(),
            source,
        })?;
    // The migrator takes its own advisory lock: replicas started together migrate once.
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .map_err(|source| OpenError::Migrate {
            url: url.to_owned(),
            source,
        })?;
    Ok(pool)
}

pub(super) async fn begin_change(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CHANGE_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

pub(super) async fn begin_liveness(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LIVENESS_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Several reads that see one state (PostgreSQL's default gives each statement its own).
pub(super) async fn begin_snapshot(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
    pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
}

/// A fresh schema in the test server's database at `url`, and a URL whose connections
/// use it: every store opened with that URL (two "processes" of one test) shares it, and
/// nothing else does.
#[cfg(test)]
pub(super) async fn test_schema_url(url: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let schema = format!(
        "t_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = PgPool::connect(url).await.expect("test PostgreSQL server");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("test schema");
    admin.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A store of its own for one test: a fresh schema in the server's database, migrated.
#[cfg(test)]
pub(super) async fn open_test(url: &str) -> PgPool {
    open(&test_schema_url(url).await).await.expect("test store")
}

/// Whether an unacknowledged alert of rule `$1` about subject `$2` (JSON text) is raised.
pub(super) const ALERT_RAISED_UNACKNOWLEDGED: &str = "SELECT EXISTS(
    SELECT 1 FROM events e LEFT JOIN alert_acks a ON a.event_id = e.id
    WHERE e.kind = 'alert' AND a.event_id IS NULL
      AND CAST(e.data AS jsonb) ->> 'rule' = $1
      AND CAST(e.data AS jsonb) -> 'subject' = CAST($2 AS jsonb))";

/// The rule of alert event `$1`.
pub(super) const ALERT_RULE: &str =
    "SELECT CAST(data AS jsonb) ->> 'rule' FROM events WHERE id = $1 AND kind = 'alert'";

/// Person `$1`'s timeline (audit target `$2`), newest first, at most `$3`.
pub(super) const PERSON_TIMELINE: &str = "SELECT id, at, kind, data FROM events
    WHERE (kind = 'session_started' AND CAST(data AS jsonb) ->> 'user' = $1)
       OR (kind = 'refused_attempt' AND CAST(data AS jsonb) ->> 'person' = $1)
       OR (kind = 'alert' AND CAST(data AS jsonb) ->> 'person' = $1)
       OR (kind = 'audit' AND CAST(data AS jsonb) ->> 'target' = $2)
    ORDER BY id DESC LIMIT $3";

/// The channel on which every committed revision is announced to every control plane on
/// the database (payload: the revision number).
pub(super) const REVISION_CHANNEL: &str = "signoff_revision";

/// The channel on which a host's forwarded kill orders are announced (payload: the host).
pub(super) const ORDER_CHANNEL: &str = "signoff_orders";

/// The channel on which replicas relay changes for live views (payload: JSON).
pub(super) const LIVE_CHANNEL: &str = "signoff_live";

/// Sends each of `payloads` on `channel`, in one statement.
pub(super) async fn notify_all(
    c: &mut sqlx::PgConnection,
    channel: &str,
    payloads: &[String],
) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, p) FROM unnest(CAST($2 AS TEXT[])) AS p")
        .bind(channel)
        .bind(payloads)
        .execute(c)
        .await?;
    Ok(())
}

/// Announces `revision` on [`REVISION_CHANNEL`].
pub(super) async fn notify_revision(c: &mut sqlx::PgConnection, revision: i64) -> sqlx::Result<()> {
    notify(c, REVISION_CHANNEL, &revision.to_string()).await
}

/// Sends `payload` on `channel`; PostgreSQL delivers it when (and only if) the transaction
/// commits.
pub(super) async fn notify(
    c: &mut sqlx::PgConnection,
    channel: &str,
    payload: &str,
) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(c)
        .await?;
    Ok(())
}
