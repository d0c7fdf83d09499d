//! Dashboard operator accounts.

use super::{Db, on};

/// An operator account as stored (without its password hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperatorRow {
    /// Login name.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once disabled.
    pub disabled_at: Option<i64>,
}

/// An operator account with its argon2id password hash (PHC string), for a login.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credentials {
    /// The account.
    #[sqlx(flatten)]
    pub account: OperatorRow,
    /// The PHC string.
    pub password_hash: String,
}

const SELECT: &str = "SELECT name, role, created_at, disabled_at FROM operators";

/// How many operator accounts exist, enabled or not.
pub async fn count(db: Db<'_>) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar("SELECT count(*) FROM operators")
        .fetch_one(&mut *c)
        .await)
}

/// Creates an account. Fails with a unique violation when the name is taken.
pub async fn insert(
    db: Db<'_>,
    name: &str,
    role: &str,
    password_hash: &str,
    created_at: i64,
) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO operators (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(name)
    .bind(role)
    .bind(password_hash)
    .bind(created_at)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Every account, by name.
pub async fn all(db: Db<'_>) -> sqlx::Result<Vec<OperatorRow>> {
    let sql = format!("{SELECT} ORDER BY name");
    on!(db, c => sqlx::query_as(&sql).fetch_all(&mut *c).await)
}

/// The account named `name`, if there is one.
pub async fn by_name(db: Db<'_>, name: &str) -> sqlx::Result<Option<OperatorRow>> {
    let sql = format!("{SELECT} WHERE name = $1");
    on!(db, c => sqlx::query_as(&sql).bind(name).fetch_optional(&mut *c).await)
}

/// The account named `name` with its password hash, if there is one.
pub async fn credentials(db: Db<'_>, name: &str) -> sqlx::Result<Option<Credentials>> {
    on!(db, c => sqlx::query_as(
        "SELECT name, role, created_at, disabled_at, password_hash FROM operators WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&mut *c)
    .await)
}

/// Sets the role of the account named `name`; returns the rows changed (0 or 1).
pub async fn set_role(db: Db<'_>, name: &str, role: &str) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE operators SET role = $1 WHERE name = $2")
        .bind(role)
        .bind(name)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Marks the account named `name` disabled at `at`; returns the rows changed (0 or 1).
pub async fn disable(db: Db<'_>, name: &str, at: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE operators SET disabled_at = $1 WHERE name = $2")
        .bind(at)
        .bind(name)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Replaces the password hash of the account named `name` and enables it; returns the
/// rows changed (0 when there is no such account).
pub async fn reset_password(db: Db<'_>, name: &str, password_hash: &str) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE operators SET password_hash = $1, disabled_at = NULL WHERE name = $2",
    )
    .bind(password_hash)
    .bind(name)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// How many enabled admins there are other than `name`.
pub async fn other_enabled_admins(db: Db<'_>, name: &str) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "SELECT count(*) FROM operators WHERE role = 'admin' AND disabled_at IS NULL AND name != $1",
    )
    .bind(name)
    .fetch_one(&mut *c)
    .await)
}
