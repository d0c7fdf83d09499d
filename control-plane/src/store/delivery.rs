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

#[cfg(test)]
mod tests {
    use crate::store::views::tests::seeded;

    #[tokio::test]
    async fn a_cursor_starts_after_the_newest_event_once_and_moves() {
        let store = seeded().await;
        store
            .exec_for_test(
                "INSERT INTO events (at, kind, data) VALUES (1, 'audit', '{}'), (2, 'alert', '{}')",
            )
            .await;
        let mut c = store.conn().await.unwrap();
        assert_eq!(super::cursor(c.db(), "webhook").await.unwrap(), None);
        assert!(super::create_cursor(c.db(), "webhook").await.unwrap());
        assert!(!super::create_cursor(c.db(), "webhook").await.unwrap());
        let start = super::cursor(c.db(), "webhook").await.unwrap().unwrap();
        assert_eq!(start, 2, "a new sink starts after the newest event");
        assert!(super::save_cursor(c.db(), "webhook", 1).await.unwrap());
        assert_eq!(super::cursor(c.db(), "webhook").await.unwrap(), Some(1));
        assert!(!super::save_cursor(c.db(), "syslog", 1).await.unwrap());
    }
}
