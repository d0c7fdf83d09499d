//! The events feed.

use super::{Db, on};

/// Appends an event.
pub async fn insert(db: Db<'_>, at: i64, kind: &str, data: &str) -> sqlx::Result<()> {
    on!(db, c => sqlx::query("INSERT INTO events (at, kind, data) VALUES ($1, $2, $3)")
        .bind(at)
        .bind(kind)
        .bind(data)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Events after cursor `since`, oldest first: (id, at, kind, data).
pub async fn after(
    db: Db<'_>,
    since: i64,
    limit: i64,
) -> sqlx::Result<Vec<(i64, i64, String, String)>> {
    on!(db, c => sqlx::query_as("SELECT id, at, kind, data FROM events WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(since)
        .bind(limit)
        .fetch_all(&mut *c)
        .await)
}
