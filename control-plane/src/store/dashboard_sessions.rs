//! Dashboard web sessions and failed dashboard logins (issue 18): in the database, so that
//! every server on it honours a login, a logout and the login limiter's counts alike.
//!
//! A session is found by the SHA-256 of its id (the caller hashes; the id itself is never
//! stored). Whether a session is still live is decided here, in each query, from the
//! bounds the caller gives: idle since before `idle_before`, or made before `made_before`,
//! and it is gone.

use super::{Db, on};

/// A live web session as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    /// The operator logged in.
    pub operator: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// Unix seconds of the login.
    pub created_at: i64,
    /// Unix seconds of its latest use.
    pub last_seen: i64,
}

/// Where a session's life ends: it must have been used after `idle_before` and made after
/// `made_before` (both Unix seconds) to be live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// Used at or before this, it is idle too long.
    pub idle_before: i64,
    /// Made at or before this, it is too old.
    pub made_before: i64,
}

/// Deletes every session that is no longer live; returns how many.
pub async fn delete_expired(db: Db<'_>, live: Live) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "DELETE FROM dashboard_sessions WHERE last_seen <= $1 OR created_at <= $2",
    )
    .bind(live.idle_before)
    .bind(live.made_before)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// How many sessions are stored.
pub async fn count(db: Db<'_>) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar("SELECT count(*) FROM dashboard_sessions")
        .fetch_one(&mut *c)
        .await)
}

/// Deletes the session used longest ago (to keep the table bounded).
pub async fn delete_least_recent(db: Db<'_>) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "DELETE FROM dashboard_sessions WHERE id_hash IN
             (SELECT id_hash FROM dashboard_sessions ORDER BY last_seen LIMIT 1)",
    )
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Stores a new session under the hash of its id.
pub async fn insert(db: Db<'_>, id_hash: &str, row: &SessionRow) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO dashboard_sessions (id_hash, operator, csrf, created_at, last_seen)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id_hash)
    .bind(&row.operator)
    .bind(&row.csrf)
    .bind(row.created_at)
    .bind(row.last_seen)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The session whose id hashes to `id_hash`, if it is live, marked used at `now` (never
/// earlier than a use another server recorded); `None` if there is none or it expired.
pub async fn touch(
    db: Db<'_>,
    id_hash: &str,
    now: i64,
    live: Live,
) -> sqlx::Result<Option<SessionRow>> {
    on!(db, c => sqlx::query_as(
        "UPDATE dashboard_sessions
         SET last_seen = CASE WHEN last_seen > $1 THEN last_seen ELSE $1 END
         WHERE id_hash = $2 AND last_seen > $3 AND created_at > $4
         RETURNING operator, csrf, created_at, last_seen",
    )
    .bind(now)
    .bind(id_hash)
    .bind(live.idle_before)
    .bind(live.made_before)
    .fetch_optional(&mut *c)
    .await)
}

/// Whether the session whose id hashes to `id_hash` is live (it is not touched).
pub async fn is_live(db: Db<'_>, id_hash: &str, live: Live) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM dashboard_sessions
         WHERE id_hash = $1 AND last_seen > $2 AND created_at > $3",
    )
    .bind(id_hash)
    .bind(live.idle_before)
    .bind(live.made_before)
    .fetch_one(&mut *c)
    .await
    .map(|n| n > 0))
}

/// Deletes the session whose id hashes to `id_hash` (a logout; nothing if there is none).
pub async fn delete(db: Db<'_>, id_hash: &str) -> sqlx::Result<()> {
    on!(db, c => sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The failed logins of one name from one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct FailureRow {
    /// How many since the pair was last forgotten or succeeded.
    pub failures: i64,
    /// Unix seconds of the latest.
    pub last_failure: i64,
}

/// The failures of `name` from `address` (`""` when unknown), if any are stored.
pub async fn failures(db: Db<'_>, name: &str, address: &str) -> sqlx::Result<Option<FailureRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT failures, last_failure FROM dashboard_login_failures
         WHERE name = $1 AND address = $2",
    )
    .bind(name)
    .bind(address)
    .fetch_optional(&mut *c)
    .await)
}

/// Counts one failure of `name` from `address` at `now`, in one statement, so servers
/// counting at once each add theirs (the row is locked by the upsert on PostgreSQL; SQLite
/// has one writer). A pair whose latest failure was at or before `forget_before` starts
/// again from one. Returns the pair's count and latest failure after this one.
pub async fn record_failure(
    db: Db<'_>,
    name: &str,
    address: &str,
    now: i64,
    forget_before: i64,
) -> sqlx::Result<FailureRow> {
    on!(db, c => sqlx::query_as(
        "INSERT INTO dashboard_login_failures (name, address, failures, last_failure)
         VALUES ($1, $2, 1, $3)
         ON CONFLICT (name, address) DO UPDATE SET
             failures = CASE WHEN dashboard_login_failures.last_failure <= $4 THEN 1
                             ELSE dashboard_login_failures.failures + 1 END,
             last_failure = CASE
                 WHEN dashboard_login_failures.last_failure > excluded.last_failure
                 THEN dashboard_login_failures.last_failure
                 ELSE excluded.last_failure END
         RETURNING failures, last_failure",
    )
    .bind(name)
    .bind(address)
    .bind(now)
    .bind(forget_before)
    .fetch_one(&mut *c)
    .await)
}

/// Forgets the failures of `name` from `address` (a login succeeded).
pub async fn clear_failures(db: Db<'_>, name: &str, address: &str) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "DELETE FROM dashboard_login_failures WHERE name = $1 AND address = $2",
    )
    .bind(name)
    .bind(address)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Forgets every pair whose latest failure was at or before `before`; returns how many.
pub async fn forget_failures(db: Db<'_>, before: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("DELETE FROM dashboard_login_failures WHERE last_failure <= $1")
        .bind(before)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}
