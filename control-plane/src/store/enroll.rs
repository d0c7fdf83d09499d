//! Join tokens, and the host keys an agent binds to its host when it enrolls.

use super::{Db, on};

/// A join token as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct TokenRow {
    /// Id.
    pub id: i64,
    /// The groups the host joins, a JSON array of names.
    pub groups: String,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// The host that spent it, once spent.
    pub used_by_host: Option<String>,
}

/// Stores a new join token by the hash of its secret; returns its id.
pub async fn insert_token(
    db: Db<'_>,
    hash: &str,
    groups_json: &str,
    now: i64,
    expires_at: i64,
) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "INSERT INTO join_tokens (hash, groups, created_at, expires_at) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(hash)
    .bind(groups_json)
    .bind(now)
    .bind(expires_at)
    .fetch_one(&mut *c)
    .await)
}

/// The join token whose secret hashes to `hash`, if any.
pub async fn token_by_hash(db: Db<'_>, hash: &str) -> sqlx::Result<Option<TokenRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, groups, expires_at, used_by_host FROM join_tokens WHERE hash = $1",
    )
    .bind(hash)
    .fetch_optional(&mut *c)
    .await)
}

/// Marks join token `id` spent by `host` at `now`; returns the rows changed (0: no such token).
pub async fn spend_token(db: Db<'_>, id: i64, host: &str, now: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE join_tokens SET used_at = $1, used_by_host = $2 WHERE id = $3")
        .bind(now)
        .bind(host)
        .bind(id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Binds host key `fingerprint` to `host` as of `now` (taking it over from a removed host
/// that had it).
pub async fn bind_host_key(
    db: Db<'_>,
    fingerprint: &str,
    host: &str,
    now: i64,
) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO host_ssh_keys (fingerprint, host_id, first_signed, last_signed)
         VALUES ($1, $2, $3, $3)
         ON CONFLICT (fingerprint) DO UPDATE
         SET host_id = excluded.host_id, last_signed = excluded.last_signed",
    )
    .bind(fingerprint)
    .bind(host)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}
