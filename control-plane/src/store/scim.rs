//! What SCIM keeps about a person: the identity provider's `externalId` and whether the
//! SCIM resource was deleted (`scim_users`).

use super::{Db, on};

/// Every person SCIM has a row for: (name, externalId, whether the resource was deleted).
pub async fn all(db: Db<'_>) -> sqlx::Result<Vec<(String, Option<String>, bool)>> {
    on!(db, c => sqlx::query_as(
        "SELECT u.name, s.external_id, s.deleted_at IS NOT NULL
         FROM scim_users s JOIN users u ON u.id = s.user_id",
    )
    .fetch_all(&mut *c)
    .await)
}

/// Person `user`'s SCIM row, if any: (externalId, whether the resource was deleted).
pub async fn of_user(db: Db<'_>, user: i64) -> sqlx::Result<Option<(Option<String>, bool)>> {
    on!(db, c => sqlx::query_as(
        "SELECT external_id, deleted_at IS NOT NULL FROM scim_users WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(&mut *c)
    .await)
}

/// Sets (or clears) person `user`'s externalId and makes their resource visible again.
pub async fn set(db: Db<'_>, user: i64, external_id: Option<&str>) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO scim_users (user_id, external_id, deleted_at) VALUES ($1, $2, NULL)
         ON CONFLICT (user_id) DO UPDATE SET external_id = excluded.external_id,
                                              deleted_at = NULL",
    )
    .bind(user)
    .bind(external_id)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Marks person `user`'s SCIM resource deleted at `at` (their externalId is kept).
pub async fn mark_deleted(db: Db<'_>, user: i64, at: i64) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO scim_users (user_id, deleted_at) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET deleted_at = excluded.deleted_at",
    )
    .bind(user)
    .bind(at)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}
