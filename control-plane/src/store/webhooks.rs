//! The HR webhook's replay cache.

use super::{Db, on};

/// Forgets the deliveries that expired before `now`; returns how many.
pub async fn prune_expired(db: Db<'_>, now: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("DELETE FROM webhook_deliveries WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Remembers delivery `signature` until `expires_at`; returns 1 when it is new, 0 when it
/// was remembered already.
pub async fn claim(db: Db<'_>, signature: &str, expires_at: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "INSERT INTO webhook_deliveries (signature, expires_at) VALUES ($1, $2)
         ON CONFLICT (signature) DO NOTHING",
    )
    .bind(signature)
    .bind(expires_at)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Forgets delivery `signature`; returns how many were forgotten (0 or 1).
pub async fn release(db: Db<'_>, signature: &str) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("DELETE FROM webhook_deliveries WHERE signature = $1")
        .bind(signature)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}
