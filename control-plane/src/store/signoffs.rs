//! Sign-offs: the statements, the hosts each waits for, the revocations each keeps in
//! force, and the person's status they change.

use super::{Db, on};

/// The id of the person named `name`, if there is one.
pub async fn user_id(db: Db<'_>, name: &str) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await)
}

/// The id of person `uid`'s sign-off in force, if there is one.
pub async fn live(db: Db<'_>, uid: i64) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar("SELECT id FROM signoffs WHERE user_id = $1 AND until_rev IS NULL")
        .bind(uid)
        .fetch_optional(&mut *c)
        .await)
}

/// The id of person `uid`'s latest sign-off, in force or not.
pub async fn latest(db: Db<'_>, uid: i64) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar("SELECT id FROM signoffs WHERE user_id = $1 ORDER BY id DESC LIMIT 1")
        .bind(uid)
        .fetch_optional(&mut *c)
        .await)
}

/// The names of the people a sign-off is in force for.
pub async fn signed_off_names(db: Db<'_>) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT u.name FROM signoffs s JOIN users u ON u.id = s.user_id
         WHERE s.until_rev IS NULL",
    )
    .fetch_all(&mut *c)
    .await)
}

/// The name of the person sign-off `id` is about.
pub async fn person(db: Db<'_>, id: i64) -> sqlx::Result<Option<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT u.name FROM signoffs s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

/// Person `uid`'s live certificate key IDs.
pub async fn live_key_ids(db: Db<'_>, uid: i64) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT key_id FROM user_key_ids WHERE user_id = $1 AND until_rev IS NULL",
    )
    .bind(uid)
    .fetch_all(&mut *c)
    .await)
}

/// Person `uid`'s live plain keys: (SHA256 fingerprint, OpenSSH line).
pub async fn live_plain_keys(db: Db<'_>, uid: i64) -> sqlx::Result<Vec<(String, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT fingerprint, public_key FROM user_keys WHERE user_id = $1 AND until_rev IS NULL",
    )
    .bind(uid)
    .fetch_all(&mut *c)
    .await)
}

/// Person `uid`'s status now (`active` or `disabled`).
pub async fn status(db: Db<'_>, uid: i64) -> sqlx::Result<String> {
    on!(db, c => sqlx::query_scalar(
        "SELECT status FROM user_status WHERE user_id = $1 AND until_rev IS NULL",
    )
    .bind(uid)
    .fetch_one(&mut *c)
    .await)
}

/// Sets person `uid`'s status to `status` from revision `rev`: ends the live status row
/// and adds the new one (two statements that only make sense together).
pub async fn set_status(mut db: Db<'_>, uid: i64, status: &str, rev: i64) -> sqlx::Result<()> {
    on!(db.re(), c => sqlx::query(
        "UPDATE user_status SET until_rev = $1 WHERE user_id = $2 AND until_rev IS NULL",
    )
    .bind(rev)
    .bind(uid)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    on!(db, c => sqlx::query("INSERT INTO user_status (user_id, status, since_rev) VALUES ($1, $2, $3)")
        .bind(uid)
        .bind(status)
        .bind(rev)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The next sign-off id, one more than the latest (inside a change transaction, unique).
pub async fn next_id(db: Db<'_>) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar("SELECT coalesce(max(id), 0) + 1 FROM signoffs")
        .fetch_one(&mut *c)
        .await)
}

/// A sign-off's row as it is written.
#[derive(Debug, Clone, Copy)]
pub struct New<'a> {
    /// Its id ([`next_id`]).
    pub id: i64,
    /// The person's id.
    pub uid: i64,
    /// Why.
    pub reason: &'a str,
    /// Who.
    pub actor: &'a str,
    /// Unix seconds.
    pub created_at: i64,
    /// The canonical statement bytes.
    pub statement: &'a [u8],
    /// Its SSHSIG.
    pub signature: &'a str,
    /// The revision that carries it.
    pub rev: i64,
}

/// Records a sign-off.
pub async fn insert(db: Db<'_>, s: &New<'_>) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "INSERT INTO signoffs (id, user_id, reason, actor, created_at, statement, signature, since_rev)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(s.id)
    .bind(s.uid)
    .bind(s.reason)
    .bind(s.actor)
    .bind(s.created_at)
    .bind(s.statement)
    .bind(s.signature)
    .bind(s.rev)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Records that sign-off `id` keeps revocation `revocation` in force; `added` when the
/// sign-off added it (and withdraws it on re-enable).
pub async fn keep_revocation(
    db: Db<'_>,
    id: i64,
    revocation: i64,
    added: bool,
) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "INSERT INTO signoff_revocations (signoff_id, revocation_id, added) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(revocation)
    .bind(added)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Makes every live host one that sign-off `id` waits for; returns how many.
pub async fn wait_for_live_hosts(db: Db<'_>, id: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "INSERT INTO signoff_hosts (signoff_id, host_id)
         SELECT CAST($1 AS BIGINT), id FROM hosts WHERE removed_rev IS NULL",
    )
    .bind(id)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Marks sign-off `id` complete at `at`.
pub async fn set_completed(db: Db<'_>, id: i64, at: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE signoffs SET completed_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Marks sign-off `id` complete at `at` if it is not yet and every live host it waits for
/// has confirmed; returns 1 if it did.
pub async fn complete_if_confirmed(db: Db<'_>, id: i64, at: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE signoffs SET completed_at = $1 WHERE id = $2 AND completed_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM signoff_hosts sh JOIN hosts h ON h.id = sh.host_id
                           WHERE sh.signoff_id = $2 AND sh.confirmed_at IS NULL
                             AND h.removed_rev IS NULL)",
    )
    .bind(at)
    .bind(id)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Ends sign-off `id` from revision `rev` (the person is re-enabled).
pub async fn withdraw(db: Db<'_>, id: i64, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE signoffs SET until_rev = $1 WHERE id = $2")
        .bind(rev)
        .bind(id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Withdraws, from revision `rev`, the live revocations sign-off `id` added; returns how
/// many.
pub async fn withdraw_added_revocations(db: Db<'_>, id: i64, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE revocations SET until_rev = $1 WHERE until_rev IS NULL AND id IN
           (SELECT revocation_id FROM signoff_revocations
            WHERE signoff_id = $2 AND added = TRUE)",
    )
    .bind(rev)
    .bind(id)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Where host `host` stands on sign-off `id`, if the sign-off waits for it: (confirmed at,
/// ended sessions as JSON text, the sign-off's revision, the host's acked revision).
pub async fn host_progress(
    db: Db<'_>,
    id: i64,
    host: &str,
) -> sqlx::Result<Option<(Option<i64>, String, i64, i64)>> {
    on!(db, c => sqlx::query_as(
        "SELECT sh.confirmed_at, sh.ended_sessions, s.since_rev, h.acked_revision
         FROM signoff_hosts sh JOIN signoffs s ON s.id = sh.signoff_id
         JOIN hosts h ON h.id = sh.host_id
         WHERE sh.signoff_id = $1 AND sh.host_id = $2",
    )
    .bind(id)
    .bind(host)
    .fetch_optional(&mut *c)
    .await)
}

/// Records host `host`'s result for sign-off `id`: the sessions it ended (JSON text), its
/// error, and its confirmation time unless it had confirmed before.
pub async fn record_host_result(
    db: Db<'_>,
    id: i64,
    host: &str,
    ended_sessions: &str,
    error: Option<&str>,
    confirmed_at: Option<i64>,
) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE signoff_hosts SET ended_sessions = $1, last_error = $2,
           confirmed_at = coalesce(confirmed_at, $3)
         WHERE signoff_id = $4 AND host_id = $5",
    )
    .bind(ended_sessions)
    .bind(error)
    .bind(confirmed_at)
    .bind(id)
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// A sign-off as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct Row {
    /// Its id.
    pub id: i64,
    /// The person.
    pub user_name: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When every host had confirmed, as recorded.
    pub completed_at: Option<i64>,
    /// The revision that carries it.
    pub since_rev: i64,
    /// False once the person was re-enabled.
    pub in_force: bool,
    /// The canonical statement bytes.
    pub statement: Vec<u8>,
}

/// Sign-off `only` (or, with `None`, the newest `limit`), newest first.
pub async fn page(db: Db<'_>, only: Option<i64>, limit: i64) -> sqlx::Result<Vec<Row>> {
    on!(db, c => sqlx::query_as(
        "SELECT s.id, u.name AS user_name, s.reason, s.actor, s.created_at, s.completed_at,
                s.since_rev, s.until_rev IS NULL AS in_force, s.statement
         FROM signoffs s JOIN users u ON u.id = s.user_id
         WHERE CAST($1 AS BIGINT) IS NULL OR s.id = $1 ORDER BY s.id DESC LIMIT $2",
    )
    .bind(only)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// A live host a sign-off waits for, as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct HostRow {
    /// The sign-off.
    pub signoff_id: i64,
    /// The host.
    pub host_id: String,
    /// When it confirmed.
    pub confirmed_at: Option<i64>,
    /// Sessions it ended, JSON text.
    pub ended_sessions: String,
    /// Its last error.
    pub last_error: Option<String>,
    /// Whether its agent is connected.
    pub online: bool,
}

/// The live hosts the sign-offs of [`page`] (same `only` and `limit`) wait for, by
/// sign-off and host.
pub async fn page_hosts(db: Db<'_>, only: Option<i64>, limit: i64) -> sqlx::Result<Vec<HostRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT sh.signoff_id, sh.host_id, sh.confirmed_at, sh.ended_sessions, sh.last_error,
                h.online
         FROM signoff_hosts sh JOIN hosts h ON h.id = sh.host_id
         WHERE sh.signoff_id IN
               (SELECT id FROM signoffs WHERE CAST($1 AS BIGINT) IS NULL OR id = $1
                ORDER BY id DESC LIMIT $2)
           AND h.removed_rev IS NULL
         ORDER BY sh.signoff_id, sh.host_id",
    )
    .bind(only)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}
