//! The audit chain's head and rows as hosts witness them.

use super::{Db, on};
use crate::audit::Record;

/// The last audit row's number, `None` while the log is empty.
pub async fn latest_seq(db: Db<'_>) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar("SELECT max(seq) FROM audit_log")
        .fetch_one(&mut *c)
        .await)
}

/// The number and hash of the last row at or before `seq`, if any.
pub async fn head_at(db: Db<'_>, seq: i64) -> sqlx::Result<Option<(i64, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT seq, hash FROM audit_log WHERE seq <= $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(seq)
    .fetch_optional(&mut *c)
    .await)
}

/// The rows after `after` up to `upto`, in order.
pub async fn links(db: Db<'_>, after: i64, upto: i64) -> sqlx::Result<Vec<Record>> {
    on!(db, c => sqlx::query_as(
        "SELECT seq, at, actor, action, target, reason, details, revision, prev_hash, hash
         FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq",
    )
    .bind(after)
    .bind(upto)
    .fetch_all(&mut *c)
    .await)
}
