//! API tokens (stored by the hash of their secret).

use super::{Db, on};

/// A token as stored (its secret never is).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Scopes, comma-separated.
    pub scopes: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<i64>,
    /// Unix seconds at which it was revoked.
    pub revoked_at: Option<i64>,
}

const SELECT: &str = "SELECT id, name, scopes, created_at, expires_at, revoked_at FROM api_tokens";

/// Stores a new token (the hex SHA-256 of its secret); returns its id.
pub async fn insert(
    db: Db<'_>,
    name: &str,
    hash: &str,
    scopes: &str,
    created_at: i64,
    expires_at: Option<i64>,
) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "INSERT INTO api_tokens (name, hash, scopes, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(name)
    .bind(hash)
    .bind(scopes)
    .bind(created_at)
    .bind(expires_at)
    .fetch_one(&mut *c)
    .await)
}

/// How many tokens exist, revoked or not.
pub async fn count(db: Db<'_>) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&mut *c)
        .await)
}

/// The token whose secret hashes to `hash`, if there is one.
pub async fn by_hash(db: Db<'_>, hash: &str) -> sqlx::Result<Option<TokenRow>> {
    let sql = format!("{SELECT} WHERE hash = $1");
    on!(db, c => sqlx::query_as(&sql).bind(hash).fetch_optional(&mut *c).await)
}

/// Every token, by id.
pub async fn all(db: Db<'_>) -> sqlx::Result<Vec<TokenRow>> {
    let sql = format!("{SELECT} ORDER BY id");
    on!(db, c => sqlx::query_as(&sql).fetch_all(&mut *c).await)
}

/// Revokes token `id` at `at` unless it is revoked already; returns the rows changed (0
/// when there is no such token or it was revoked before).
pub async fn revoke(db: Db<'_>, id: i64, at: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(at)
        .bind(id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}
