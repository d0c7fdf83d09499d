//! Where each delivery sink (webhook, syslog) is in the events feed.

use super::{Db, on};

/// Starts a cursor for `sink` after the newest event, unless it has one. Returns whether
/// one was created.
pub async fn create_cursor(db: Db<'_>, sink: &str) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query(
        "INSERT INTO delivery_cursors (sink, cursor)
         SELECT $1, coalesce((SELECT max(id) FROM events), 0)
         WHERE NOT EXISTS (SELECT 1 FROM delivery_cursors WHERE sink = $1)
         ON CONFLICT (sink) DO NOTHING",
    )
    .bind(sink)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() > 0))
}

/// The last event `sink` delivered, if it has a cursor.
pub async fn cursor(db: Db<'_>, sink: &str) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar("SELECT cursor FROM delivery_cursors WHERE sink = $1")
        .bind(sink)
        .fetch_optional(&mut *c)
        .await)
}

/// Records that `sink` delivered every event up to `cursor`. Returns whether it had a
/// cursor.
pub async fn save_cursor(db: Db<'_>, sink: &str, cursor: i64) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query("UPDATE delivery_cursors SET cursor = $1 WHERE sink = $2")
        .bind(cursor)
        .bind(sink)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected() > 0))
}
