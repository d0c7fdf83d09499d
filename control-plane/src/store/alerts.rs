//! Alerts (events of kind `alert`), their acknowledgements, and the waits on offline hosts
//! that raise the offline half of the `incomplete_action` rule.

use super::{Db, on, postgres, sqlite};

/// An alert as listed: its event's (id, at, data) and who acknowledged it, when.
#[derive(Debug, sqlx::FromRow)]
pub struct Listed {
    /// The event's id (the alert's cursor).
    pub id: i64,
    /// Unix seconds it was raised.
    pub at: i64,
    /// The alert, JSON text.
    pub data: String,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// Unix seconds of the acknowledgement.
    pub acked_at: Option<i64>,
}

/// The latest alerts, newest first, at most `limit`; only unacknowledged ones when
/// `unacknowledged_only`.
pub async fn list(db: Db<'_>, unacknowledged_only: bool, limit: i64) -> sqlx::Result<Vec<Listed>> {
    on!(db, c => sqlx::query_as(
        "SELECT e.id, e.at, e.data, a.by AS acked_by, a.at AS acked_at FROM events e
         LEFT JOIN alert_acks a ON a.event_id = e.id
         WHERE e.kind = 'alert' AND (CAST($1 AS BOOLEAN) = FALSE OR a.event_id IS NULL)
         ORDER BY e.id DESC LIMIT $2",
    )
    .bind(unacknowledged_only)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// Whether an alert of rule `rule` about `subject` (JSON text) is raised and not yet
/// acknowledged.
pub async fn raised_unacknowledged(db: Db<'_>, rule: &str, subject: &str) -> sqlx::Result<bool> {
    let sql = match db {
        Db::Sqlite(_) => sqlite::ALERT_RAISED_UNACKNOWLEDGED,
        Db::Postgres(_) => postgres::ALERT_RAISED_UNACKNOWLEDGED,
    };
    on!(db, c => sqlx::query_scalar(sql)
        .bind(rule)
        .bind(subject)
        .fetch_one(&mut *c)
        .await)
}

/// The rule of the alert whose event is `id`; `None` when that event is no alert.
pub async fn rule_of(db: Db<'_>, id: i64) -> sqlx::Result<Option<String>> {
    let sql = match db {
        Db::Sqlite(_) => sqlite::ALERT_RULE,
        Db::Postgres(_) => postgres::ALERT_RULE,
    };
    on!(db, c => sqlx::query_scalar(sql)
        .bind(id)
        .fetch_optional(&mut *c)
        .await)
}

/// Records `by`'s acknowledgement of alert `id` at `at`; returns 0 when it was
/// acknowledged already, 1 otherwise.
pub async fn acknowledge(db: Db<'_>, id: i64, by: &str, at: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "INSERT INTO alert_acks (event_id, by, at) VALUES ($1, $2, $3)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(id)
    .bind(by)
    .bind(at)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// The later of a host's disconnection (0 if never) and `created`, in SQL.
macro_rules! since {
    ($created:literal) => {
        concat!(
            "CASE WHEN coalesce(h.offline_since, 0) >= ",
            $created,
            " THEN coalesce(h.offline_since, 0) ELSE ",
            $created,
            " END"
        )
    };
}

/// Sign-offs in force that a live host, offline now, has not confirmed and was not alerted
/// about, waiting more than `after` seconds at `now` (counted from the host's
/// disconnection or the sign-off, whichever is later): (sign-off id, host, person, since).
pub async fn offline_signoff_waits(
    db: Db<'_>,
    now: i64,
    after: i64,
) -> sqlx::Result<Vec<(i64, String, String, i64)>> {
    const SQL: &str = concat!(
        "SELECT sh.signoff_id, sh.host_id, u.name, ",
        since!("s.created_at"),
        " AS since
         FROM signoff_hosts sh
         JOIN signoffs s ON s.id = sh.signoff_id
         JOIN users u ON u.id = s.user_id
         JOIN hosts h ON h.id = sh.host_id
         WHERE sh.confirmed_at IS NULL AND sh.offline_alerted_at IS NULL
           AND s.until_rev IS NULL AND h.online = FALSE AND h.removed_rev IS NULL
           AND $1 - ",
        since!("s.created_at"),
        " > $2
         ORDER BY sh.signoff_id, sh.host_id"
    );
    on!(db, c => sqlx::query_as(SQL)
        .bind(now)
        .bind(after)
        .fetch_all(&mut *c)
        .await)
}

/// Marks (sign-off, host) as alerted at `now`, unless it was already; returns 1 if marked.
pub async fn mark_signoff_wait_alerted(
    db: Db<'_>,
    signoff: i64,
    host: &str,
    now: i64,
) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE signoff_hosts SET offline_alerted_at = $1
         WHERE signoff_id = $2 AND host_id = $3 AND offline_alerted_at IS NULL",
    )
    .bind(now)
    .bind(signoff)
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Kill orders without a result on a live host offline now, not alerted about, waiting
/// more than `after` seconds at `now` (from the host's disconnection or the order,
/// whichever is later); an undelivered one only while its host has stayed offline since
/// the order: (nonce, host, session, since).
pub async fn offline_kill_waits(
    db: Db<'_>,
    now: i64,
    after: i64,
) -> sqlx::Result<Vec<(String, String, String, i64)>> {
    const SQL: &str = concat!(
        "SELECT k.nonce, k.host_id, k.session_id, ",
        since!("k.created_at"),
        " AS since
         FROM kill_orders k JOIN hosts h ON h.id = k.host_id
         WHERE k.state IN ('sent', 'undelivered') AND k.offline_alerted_at IS NULL
           AND h.online = FALSE AND h.removed_rev IS NULL
           AND (k.state = 'sent' OR coalesce(h.offline_since, 0) <= k.created_at)
           AND $1 - ",
        since!("k.created_at"),
        " > $2
         ORDER BY k.created_at, k.nonce"
    );
    on!(db, c => sqlx::query_as(SQL)
        .bind(now)
        .bind(after)
        .fetch_all(&mut *c)
        .await)
}

/// Marks kill order `nonce` as alerted at `now`, unless it was already; returns 1 if
/// marked.
pub async fn mark_kill_wait_alerted(db: Db<'_>, nonce: &str, now: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE kill_orders SET offline_alerted_at = $1
         WHERE nonce = $2 AND offline_alerted_at IS NULL",
    )
    .bind(now)
    .bind(nonce)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}
