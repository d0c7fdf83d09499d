//! Grants: a person may log in as a Unix account on the hosts of a group.

use super::{Db, on};

/// A grant with its person's and group's names.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    /// Id.
    pub id: i64,
    /// The person's name.
    pub user_name: String,
    /// The Unix account.
    pub account: String,
    /// The host group's name.
    pub group_name: String,
    /// Unix seconds after which it lets nobody in.
    pub not_after: Option<i64>,
    /// Whether it was proposed for approval.
    pub approval_requested: bool,
    /// The person's id.
    pub user_id: i64,
}

const SELECT: &str = "SELECT g.id, u.name AS user_name, g.account, hg.name AS group_name,
     g.not_after, g.approval_requested, g.user_id FROM grants g
     JOIN users u ON u.id = g.user_id JOIN host_groups hg ON hg.id = g.group_id";

/// Creates a live grant from revision `rev`; returns its id. Fails with a unique
/// violation when the person holds a live grant for that account and group already.
pub async fn insert(
    db: Db<'_>,
    user: i64,
    account: &str,
    group: i64,
    not_after: Option<i64>,
    approval_requested: bool,
    rev: i64,
) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "INSERT INTO grants (user_id, account, group_id, not_after, approval_requested, since_rev)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(user)
    .bind(account)
    .bind(group)
    .bind(not_after)
    .bind(approval_requested)
    .bind(rev)
    .fetch_one(&mut *c)
    .await)
}

/// Live grants, of the person named `user` or of everyone, by person, account and group.
pub async fn live(db: Db<'_>, user: Option<&str>) -> sqlx::Result<Vec<GrantRow>> {
    let sql = format!(
        "{SELECT} WHERE g.until_rev IS NULL AND (CAST($1 AS TEXT) IS NULL OR u.name = $1)
         ORDER BY u.name, g.account, hg.name"
    );
    on!(db, c => sqlx::query_as(&sql).bind(user).fetch_all(&mut *c).await)
}

/// Live grant `id`, if it is live.
pub async fn live_by_id(db: Db<'_>, id: i64) -> sqlx::Result<Option<GrantRow>> {
    let sql = format!("{SELECT} WHERE g.id = $1 AND g.until_rev IS NULL");
    on!(db, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)
}

/// Ends grant `id` at revision `rev`; returns the rows changed.
pub async fn end(db: Db<'_>, id: i64, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE grants SET until_rev = $1 WHERE id = $2")
        .bind(rev)
        .bind(id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Live grants proposed for approval or holding a live approval, by id.
pub async fn pending_approval(db: Db<'_>) -> sqlx::Result<Vec<GrantRow>> {
    let sql = format!(
        "{SELECT} WHERE g.until_rev IS NULL AND (g.approval_requested
           OR EXISTS (SELECT 1 FROM grant_approvals a WHERE a.grant_id = g.id
                      AND a.until_rev IS NULL))
         ORDER BY g.id"
    );
    on!(db, c => sqlx::query_as(&sql).fetch_all(&mut *c).await)
}

/// Marks live grant `id` as proposed for approval; returns the rows changed (0 when it is
/// not live).
pub async fn request_approval(db: Db<'_>, id: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE grants SET approval_requested = TRUE WHERE id = $1 AND until_rev IS NULL",
    )
    .bind(id)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}
