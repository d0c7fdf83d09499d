//! Replicas' leases: which servers on this database hold agents' streams now (issue 18).

use super::{Db, on};

/// Renews replica `id`'s lease to `until`; returns whether it still held at `now` (false:
/// it had lapsed or never existed, and was taken again from `now`: the other replicas may
/// have counted this replica's hosts offline meanwhile).
pub async fn renew(db: Db<'_>, id: &str, now: i64, until: i64) -> sqlx::Result<bool> {
    let mut db = db;
    let held = on!(db.re(), c => sqlx::query(
        "UPDATE replicas SET lease_until = $1 WHERE id = $2 AND lease_until >= $3",
    )
    .bind(until)
    .bind(id)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() > 0))?;
    if held {
        return Ok(true);
    }
    on!(db, c => sqlx::query(
        "INSERT INTO replicas (id, started_at, lease_until) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at,
             lease_until = excluded.lease_until",
    )
    .bind(id)
    .bind(now)
    .bind(until)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(false)
}

/// Ends replica `id`'s lease (a clean stop).
pub async fn end(db: Db<'_>, id: &str) -> sqlx::Result<()> {
    on!(db, c => sqlx::query("DELETE FROM replicas WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Forgets leases that lapsed before `before` (replicas gone for good).
pub async fn forget_lapsed(db: Db<'_>, before: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("DELETE FROM replicas WHERE lease_until < $1")
        .bind(before)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}
