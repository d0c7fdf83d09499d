//! People: their rows, statuses and identity sets (key IDs, principals, plain keys), each
//! set valid from one revision until another (`until_rev` NULL while live).

use super::{Db, on};

/// A person's row with their live status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// `active` or `disabled`.
    pub status: String,
}

/// Creates a person's row; returns their id. Fails with a unique violation when the name
/// is taken.
pub async fn insert(db: Db<'_>, name: &str, created_at: i64) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar("INSERT INTO users (name, created_at) VALUES ($1, $2) RETURNING id")
        .bind(name)
        .bind(created_at)
        .fetch_one(&mut *c)
        .await)
}

/// The id of the person named `name`, if there is one.
pub async fn id_by_name(db: Db<'_>, name: &str) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await)
}

/// Person `id` with their live status (an error if there is no such person).
pub async fn by_id(db: Db<'_>, id: i64) -> sqlx::Result<UserRow> {
    on!(db, c => sqlx::query_as(
        "SELECT u.id, u.name, u.created_at, s.status FROM users u
         JOIN user_status s ON s.user_id = u.id AND s.until_rev IS NULL
         WHERE u.id = $1",
    )
    .bind(id)
    .fetch_one(&mut *c)
    .await)
}

/// Every person with their live status, by name.
pub async fn all(db: Db<'_>) -> sqlx::Result<Vec<UserRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT u.id, u.name, u.created_at, s.status FROM users u
         JOIN user_status s ON s.user_id = u.id AND s.until_rev IS NULL
         ORDER BY u.name",
    )
    .fetch_all(&mut *c)
    .await)
}

/// Gives person `user` the status `status` from revision `rev` on (after
/// [`end_status`]).
pub async fn insert_status(db: Db<'_>, user: i64, status: &str, rev: i64) -> sqlx::Result<()> {
    on!(db, c => sqlx::query("INSERT INTO user_status (user_id, status, since_rev) VALUES ($1, $2, $3)")
        .bind(user)
        .bind(status)
        .bind(rev)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Ends person `user`'s live status at revision `rev`; returns the rows ended.
pub async fn end_status(db: Db<'_>, user: i64, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE user_status SET until_rev = $1 WHERE user_id = $2 AND until_rev IS NULL")
        .bind(rev)
        .bind(user)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Person `uid`'s status now (`active` or `disabled`).
pub async fn status(db: Db<'_>, uid: i64) -> sqlx::Result<String> {
    on!(db, c => sqlx::query_scalar(
        "SELECT status FROM user_status WHERE user_id = $1 AND until_rev IS NULL",
    )
    .bind(uid)
    .fetch_one(&mut *c)
    .await)
}

/// Adds a live key ID to person `user` from revision `rev`. Fails with a unique violation
/// when another person holds it.
pub async fn insert_key_id(db: Db<'_>, user: i64, key_id: &str, rev: i64) -> sqlx::Result<()> {
    on!(db, c => sqlx::query("INSERT INTO user_key_ids (user_id, key_id, since_rev) VALUES ($1, $2, $3)")
        .bind(user)
        .bind(key_id)
        .bind(rev)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Ends every live key ID of person `user` at revision `rev`; returns how many.
pub async fn end_key_ids(db: Db<'_>, user: i64, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE user_key_ids SET until_rev = $1 WHERE user_id = $2 AND until_rev IS NULL")
        .bind(rev)
        .bind(user)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Adds a live principal to person `user` from revision `rev`.
pub async fn insert_principal(
    db: Db<'_>,
    user: i64,
    principal: &str,
    rev: i64,
) -> sqlx::Result<()> {
    on!(db, c => sqlx::query("INSERT INTO user_principals (user_id, principal, since_rev) VALUES ($1, $2, $3)")
        .bind(user)
        .bind(principal)
        .bind(rev)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Ends every live principal of person `user` at revision `rev`; returns how many.
pub async fn end_principals(db: Db<'_>, user: i64, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE user_principals SET until_rev = $1 WHERE user_id = $2 AND until_rev IS NULL")
        .bind(rev)
        .bind(user)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Adds a live plain key (OpenSSH line and its fingerprint) to person `user` from revision
/// `rev`. Fails with a unique violation when another person holds it.
pub async fn insert_key(
    db: Db<'_>,
    user: i64,
    public_key: &str,
    fingerprint: &str,
    rev: i64,
) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO user_keys (user_id, public_key, fingerprint, since_rev) VALUES ($1, $2, $3, $4)",
    )
    .bind(user)
    .bind(public_key)
    .bind(fingerprint)
    .bind(rev)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Ends every live plain key of person `user` at revision `rev`; returns how many.
pub async fn end_keys(db: Db<'_>, user: i64, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE user_keys SET until_rev = $1 WHERE user_id = $2 AND until_rev IS NULL")
        .bind(rev)
        .bind(user)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Person `user`'s live key IDs, sorted.
pub async fn key_ids(db: Db<'_>, user: i64) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT key_id FROM user_key_ids WHERE user_id = $1 AND until_rev IS NULL ORDER BY key_id",
    )
    .bind(user)
    .fetch_all(&mut *c)
    .await)
}

/// Person `user`'s live principals, sorted.
pub async fn principals(db: Db<'_>, user: i64) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT principal FROM user_principals WHERE user_id = $1 AND until_rev IS NULL ORDER BY principal",
    )
    .bind(user)
    .fetch_all(&mut *c)
    .await)
}

/// Person `user`'s live plain keys (OpenSSH lines), by fingerprint.
pub async fn public_keys(db: Db<'_>, user: i64) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT public_key FROM user_keys WHERE user_id = $1 AND until_rev IS NULL ORDER BY fingerprint",
    )
    .bind(user)
    .fetch_all(&mut *c)
    .await)
}

/// Everyone's live key IDs as (person id, key ID), sorted by key ID.
pub async fn all_key_ids(db: Db<'_>) -> sqlx::Result<Vec<(i64, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT user_id, key_id FROM user_key_ids WHERE until_rev IS NULL ORDER BY key_id",
    )
    .fetch_all(&mut *c)
    .await)
}

/// Everyone's live principals as (person id, principal), sorted by principal.
pub async fn all_principals(db: Db<'_>) -> sqlx::Result<Vec<(i64, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT user_id, principal FROM user_principals WHERE until_rev IS NULL ORDER BY principal",
    )
    .fetch_all(&mut *c)
    .await)
}

/// Everyone's live plain keys as (person id, OpenSSH line), by fingerprint.
pub async fn all_public_keys(db: Db<'_>) -> sqlx::Result<Vec<(i64, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT user_id, public_key FROM user_keys WHERE until_rev IS NULL ORDER BY fingerprint",
    )
    .fetch_all(&mut *c)
    .await)
}
