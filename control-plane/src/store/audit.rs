//! The audit log's rows and the revisions they record.

use super::{Db, on};
use crate::audit::Record;

const COLUMNS: &str = "seq, at, actor, action, target, reason, details, revision, prev_hash, hash";

/// The last row's position and hash.
pub async fn last_link(db: Db<'_>) -> sqlx::Result<Option<(i64, String)>> {
    on!(db, c => sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *c)
        .await)
}

/// Appends a row (the caller has computed its link).
pub async fn insert(db: Db<'_>, r: &Record) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, target, reason, details, revision, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(r.seq)
    .bind(r.at)
    .bind(&r.actor)
    .bind(&r.action)
    .bind(&r.target)
    .bind(&r.reason)
    .bind(&r.details)
    .bind(r.revision)
    .bind(&r.prev_hash)
    .bind(&r.hash)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Every row, in order.
pub async fn all(db: Db<'_>) -> sqlx::Result<Vec<Record>> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq");
    on!(db, c => sqlx::query_as(&sql).fetch_all(&mut *c).await)
}

/// The first revision no audit row records.
pub async fn first_revision_unrecorded(db: Db<'_>) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT r.revision FROM revisions r
         WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.revision = r.revision)
         ORDER BY r.revision LIMIT 1",
    )
    .fetch_optional(&mut *c)
    .await)
}

/// The hash of row `seq`.
pub async fn hash_at(db: Db<'_>, seq: i64) -> sqlx::Result<Option<String>> {
    on!(db, c => sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
        .bind(seq)
        .fetch_optional(&mut *c)
        .await)
}

/// A page, newest first: rows before `before_seq` whose actor, action or target is LIKE
/// `like` (escaped with `\`), or every row when `filter` is empty.
pub async fn page(
    db: Db<'_>,
    filter: &str,
    like: &str,
    before_seq: i64,
    limit: i64,
) -> sqlx::Result<Vec<Record>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log
         WHERE ($1 = '' OR actor LIKE $2 ESCAPE '\\' OR action LIKE $2 ESCAPE '\\'
                OR target LIKE $2 ESCAPE '\\')
           AND seq < $3
         ORDER BY seq DESC LIMIT $4"
    );
    on!(db, c => sqlx::query_as(&sql)
        .bind(filter)
        .bind(like)
        .bind(before_seq)
        .bind(limit)
        .fetch_all(&mut *c)
        .await)
}

/// The latest revision, 0 before the first.
pub async fn latest_revision(db: Db<'_>) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar("SELECT coalesce(max(revision), 0) FROM revisions")
        .fetch_one(&mut *c)
        .await)
}

/// Allocates the next revision, one more than the latest: inside a change transaction
/// (`Store::begin_change`) numbers have no gaps and no duplicates.
pub async fn new_revision(db: Db<'_>, at: i64, actor: &str, summary: &str) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "INSERT INTO revisions (revision, created_at, actor, summary)
         SELECT coalesce(max(revision), 0) + 1, $1, $2, $3 FROM revisions
         RETURNING revision",
    )
    .bind(at)
    .bind(actor)
    .bind(summary)
    .fetch_one(&mut *c)
    .await)
}

/// Every revision number in order, duplicates included (for tests of the sequence).
#[cfg(test)]
pub async fn revision_numbers(db: Db<'_>) -> sqlx::Result<Vec<i64>> {
    on!(db, c => sqlx::query_scalar("SELECT revision FROM revisions ORDER BY revision")
        .fetch_all(&mut *c)
        .await)
}
