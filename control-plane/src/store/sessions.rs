//! Sessions as agents report them, and kill orders.

use super::{Db, on};

/// A session as stored, with the person it belongs to.
#[derive(Debug, sqlx::FromRow)]
pub struct SessionRow {
    /// The host.
    pub host_id: String,
    /// Unique on the host.
    pub id: String,
    /// The Unix account.
    pub account: String,
    /// The person its key belongs to, if known.
    pub user: Option<String>,
    /// Certificate key ID, or empty.
    pub key_id: String,
    /// Certificate serial, or 0.
    pub serial: i64,
    /// CA fingerprint, or empty.
    pub ca_fingerprint: String,
    /// Key fingerprint.
    pub key_fingerprint: String,
    /// Client address.
    pub source_address: String,
    /// Client port.
    pub source_port: i64,
    /// Unix seconds.
    pub started_at: i64,
    /// `pts/N`, or empty.
    pub tty: String,
    /// JSON array of PIDs.
    pub pids: String,
    /// `live`, `lingering`, `unknown` or `ended`.
    pub state: String,
    /// JSON array of the processes a lingering login left.
    pub lingering: String,
    /// Unix seconds, once ended.
    pub ended_at: Option<i64>,
}

/// What a session's report may change, as stored.
#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Reported {
    /// `live`, `lingering`, `unknown` or `ended`.
    pub state: String,
    /// JSON array of PIDs.
    pub pids: String,
    /// JSON array of lingering processes.
    pub lingering: String,
    /// Certificate key ID, or empty.
    pub key_id: String,
    /// Certificate serial, or 0.
    pub serial: i64,
    /// CA fingerprint, or empty.
    pub ca_fingerprint: String,
    /// Key fingerprint.
    pub key_fingerprint: String,
    /// `pts/N`, or empty.
    pub tty: String,
}

/// A session to record (or record again) as an agent reported it.
#[derive(Debug)]
pub struct NewSession<'a> {
    /// The host.
    pub host_id: &'a str,
    /// Unique on the host.
    pub id: &'a str,
    /// The Unix account.
    pub account: &'a str,
    /// Unix seconds.
    pub started_at: i64,
    /// Client address.
    pub source_address: &'a str,
    /// Client port.
    pub source_port: i64,
    /// What a later report may change.
    pub reported: &'a Reported,
}

/// Which sessions to list; `None` leaves a criterion out.
#[derive(Debug)]
pub struct Filter<'a> {
    /// Only on this host.
    pub host: Option<&'a str>,
    /// Only as this account.
    pub account: Option<&'a str>,
    /// Only this person's.
    pub user: Option<&'a str>,
    /// Only in this state; `None`: every state but `ended`; `any_state`: every state.
    pub state: Option<&'a str>,
    /// The state value that means every state.
    pub any_state: &'a str,
    /// Only from this client address.
    pub source: Option<&'a str>,
    /// Only started at or after this.
    pub started_after: Option<i64>,
    /// Only started before this.
    pub started_before: Option<i64>,
    /// Only those after this one (started_at, host, id) in the list's order.
    pub after: Option<(i64, &'a str, &'a str)>,
}

/// Sessions with the person they belong to: a certificate login by its key ID; a plain-key
/// login (no key ID) by the SHA256 fingerprint of the person's registered plain key. The
/// key a person has now is looked up first (through the partial index of live keys), and
/// only then one they had: a session outlives a key removed since it logged in.
const SELECT: &str = "SELECT s.*, coalesce(
        (SELECT u.name FROM user_key_ids k JOIN users u ON u.id = k.user_id
          WHERE k.key_id = s.key_id AND s.key_id != ''
          ORDER BY k.until_rev IS NULL DESC, k.since_rev DESC LIMIT 1),
        (SELECT u.name FROM user_keys k JOIN users u ON u.id = k.user_id
          WHERE k.fingerprint = s.key_fingerprint AND k.until_rev IS NULL
            AND s.key_id = '' AND s.key_fingerprint != ''),
        (SELECT u.name FROM user_keys k JOIN users u ON u.id = k.user_id
          WHERE k.fingerprint = s.key_fingerprint AND s.key_id = '' AND s.key_fingerprint != ''
          ORDER BY k.since_rev DESC LIMIT 1)) AS \"user\"
     FROM sessions s";

/// Up to `limit` sessions matching `f`, newest first (then by host and id).
pub async fn list(db: Db<'_>, f: &Filter<'_>, limit: i64) -> sqlx::Result<Vec<SessionRow>> {
    let sql = format!(
        "SELECT * FROM ({SELECT}) q
         WHERE ($1 IS NULL OR host_id = $1) AND ($2 IS NULL OR account = $2)
           AND ($3 IS NULL OR \"user\" = $3)
           AND (CASE WHEN $4 IS NULL THEN state != 'ended' WHEN $4 = $5 THEN TRUE
                ELSE state = $4 END)
           AND ($6 IS NULL OR source_address = $6)
           AND ($7 IS NULL OR started_at >= $7) AND ($8 IS NULL OR started_at < $8)
           AND ($9 IS NULL OR started_at < $9
                OR (started_at = $9 AND (host_id, id) > ($10, $11)))
         ORDER BY started_at DESC, host_id, id LIMIT $12"
    );
    let after = f.after;
    on!(db, c => sqlx::query_as(&sql)
        .bind(f.host)
        .bind(f.account)
        .bind(f.user)
        .bind(f.state)
        .bind(f.any_state)
        .bind(f.source)
        .bind(f.started_after)
        .bind(f.started_before)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(after.map(|a| a.2))
        .bind(limit)
        .fetch_all(&mut *c)
        .await)
}

/// Session `id` of `host`, if known.
pub async fn get(db: Db<'_>, host: &str, id: &str) -> sqlx::Result<Option<SessionRow>> {
    let sql = format!("{SELECT} WHERE s.host_id = $1 AND s.id = $2");
    on!(db, c => sqlx::query_as(&sql)
        .bind(host)
        .bind(id)
        .fetch_optional(&mut *c)
        .await)
}

/// What is stored of session `id` of `host` that a report may change, if it is known.
pub async fn reported(db: Db<'_>, host: &str, id: &str) -> sqlx::Result<Option<Reported>> {
    on!(db, c => sqlx::query_as(
        "SELECT state, pids, lingering, key_id, serial, ca_fingerprint, key_fingerprint, tty
         FROM sessions WHERE host_id = $1 AND id = $2",
    )
    .bind(host)
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

/// Records a reported session: a new one, or a known one (ended or not) with what it
/// reports now (its state, processes, attribution and tty; no longer ended).
pub async fn upsert(db: Db<'_>, s: &NewSession<'_>) -> sqlx::Result<()> {
    let r = s.reported;
    on!(db, c => sqlx::query(
        "INSERT INTO sessions (host_id, id, account, key_id, serial, ca_fingerprint,
            key_fingerprint, source_address, source_port, started_at, tty, pids, state, lingering)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (host_id, id) DO UPDATE SET state = excluded.state, ended_at = NULL,
            pids = excluded.pids, lingering = excluded.lingering, key_id = excluded.key_id,
            serial = excluded.serial, ca_fingerprint = excluded.ca_fingerprint,
            key_fingerprint = excluded.key_fingerprint, tty = excluded.tty",
    )
    .bind(s.host_id)
    .bind(s.id)
    .bind(s.account)
    .bind(&r.key_id)
    .bind(r.serial)
    .bind(&r.ca_fingerprint)
    .bind(&r.key_fingerprint)
    .bind(s.source_address)
    .bind(s.source_port)
    .bind(s.started_at)
    .bind(&r.tty)
    .bind(&r.pids)
    .bind(&r.state)
    .bind(&r.lingering)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Ends session `id` of `host` at `ended_at` unless it has ended already; returns whether
/// it ended now.
pub async fn end(db: Db<'_>, host: &str, id: &str, ended_at: i64) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query(
        "UPDATE sessions SET state = 'ended', ended_at = $1, lingering = '[]'
         WHERE host_id = $2 AND id = $3 AND state != 'ended'",
    )
    .bind(ended_at)
    .bind(host)
    .bind(id)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() > 0))
}

/// Marks `host`'s live and lingering sessions of unknown state (its agent disconnected);
/// returns how many.
pub async fn host_unknown(db: Db<'_>, host: &str) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE sessions SET state = 'unknown'
         WHERE host_id = $1 AND state IN ('live', 'lingering')",
    )
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// The ids of `host`'s sessions that have not ended.
pub async fn not_ended(db: Db<'_>, host: &str) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar("SELECT id FROM sessions WHERE host_id = $1 AND state != 'ended'")
        .bind(host)
        .fetch_all(&mut *c)
        .await)
}

/// Deletes at most `batch` sessions that ended before `before`; returns how many.
pub async fn prune_ended(db: Db<'_>, before: i64, batch: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "DELETE FROM sessions WHERE (host_id, id) IN
           (SELECT host_id, id FROM sessions WHERE state = 'ended' AND ended_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(batch)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Sessions started from `start` to `end` (both included), counted per hour since `start`
/// (hour, count); the hour is at most `hours - 1`, so `end` itself counts in the last one.
/// Hours with no session are left out.
pub async fn logins_per_hour(
    db: Db<'_>,
    start: i64,
    end: i64,
    hours: i64,
) -> sqlx::Result<Vec<(i64, i64)>> {
    on!(db, c => sqlx::query_as(
        "SELECT CASE WHEN (started_at - $1) / 3600 <= $3 - 1 THEN (started_at - $1) / 3600
                     ELSE $3 - 1 END AS hour,
                count(*)
         FROM sessions WHERE started_at >= $1 AND started_at <= $2 GROUP BY hour",
    )
    .bind(start)
    .bind(end)
    .bind(hours)
    .fetch_all(&mut *c)
    .await)
}

/// A kill order to record.
#[derive(Debug)]
pub struct NewKillOrder<'a> {
    /// The nonce, hex.
    pub nonce: &'a str,
    /// The host.
    pub host_id: &'a str,
    /// The session.
    pub session_id: &'a str,
    /// Who ordered it.
    pub operator: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which it is refused.
    pub not_after: i64,
    /// The signed bytes.
    pub order_bytes: &'a [u8],
    /// The signature, armored.
    pub signature: &'a str,
    /// `sent`, `forwarded` (to the replica holding the host's stream) or `undelivered`.
    pub state: &'a str,
}

/// Records a kill order.
pub async fn insert_kill_order(db: Db<'_>, o: &NewKillOrder<'_>) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO kill_orders (nonce, host_id, session_id, operator, reason, created_at,
            not_after, order_bytes, signature, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(o.nonce)
    .bind(o.host_id)
    .bind(o.session_id)
    .bind(o.operator)
    .bind(o.reason)
    .bind(o.created_at)
    .bind(o.not_after)
    .bind(o.order_bytes)
    .bind(o.signature)
    .bind(o.state)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Whether `host`'s kill order `nonce` awaits its result (it is `sent` or `undelivered`).
pub async fn order_pending(db: Db<'_>, nonce: &str, host: &str) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM kill_orders
          WHERE nonce = $1 AND host_id = $2 AND state IN ('sent', 'undelivered'))",
    )
    .bind(nonce)
    .bind(host)
    .fetch_one(&mut *c)
    .await)
}

/// Records the result of `host`'s kill order `nonce` if it still awaits one (`sent` or
/// `undelivered`): its new state and the result as JSON. Returns whether it was recorded.
pub async fn record_order_result(
    db: Db<'_>,
    nonce: &str,
    host: &str,
    state: &str,
    result: &str,
) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query(
        "UPDATE kill_orders SET state = $1, result = $2
         WHERE nonce = $3 AND host_id = $4 AND state IN ('sent', 'undelivered')",
    )
    .bind(state)
    .bind(result)
    .bind(nonce)
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() > 0))
}

/// `host`'s kill orders sent and without a result: (nonce, order bytes, signature,
/// not_after).
pub async fn sent_orders(
    db: Db<'_>,
    host: &str,
) -> sqlx::Result<Vec<(String, Vec<u8>, String, i64)>> {
    on!(db, c => sqlx::query_as(
        "SELECT nonce, order_bytes, signature, not_after FROM kill_orders
         WHERE host_id = $1 AND state = 'sent'",
    )
    .bind(host)
    .fetch_all(&mut *c)
    .await)
}

/// Records `host`'s sent kill order `nonce` as expired, with `result` as JSON, unless a
/// result came meanwhile; returns whether it was recorded.
pub async fn expire_order(db: Db<'_>, nonce: &str, host: &str, result: &str) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query(
        "UPDATE kill_orders SET state = 'expired', result = $1
         WHERE nonce = $2 AND host_id = $3 AND state = 'sent'",
    )
    .bind(result)
    .bind(nonce)
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() > 0))
}

/// The hosts with kill orders forwarded to the replica holding their stream, not yet
/// claimed.
pub async fn forwarded_hosts(db: Db<'_>) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT DISTINCT host_id FROM kill_orders WHERE state = 'forwarded'",
    )
    .fetch_all(&mut *c)
    .await)
}

/// Claims `host`'s forwarded kill orders still valid at `now` for sending (`forwarded` →
/// `sent`): of replicas claiming at once, each order goes to one. Returns (order bytes,
/// signature) of each.
pub async fn claim_forwarded(
    db: Db<'_>,
    host: &str,
    now: i64,
) -> sqlx::Result<Vec<(Vec<u8>, String)>> {
    on!(db, c => sqlx::query_as(
        "UPDATE kill_orders SET state = 'sent'
         WHERE host_id = $1 AND state = 'forwarded' AND not_after > $2
         RETURNING order_bytes, signature",
    )
    .bind(host)
    .bind(now)
    .fetch_all(&mut *c)
    .await)
}

/// Gives up forwarded kill orders nobody claimed (`forwarded` → `undelivered`): order
/// `nonce`, or every one made at or before `made_by`. Returns how many.
pub async fn undeliver_forwarded(
    db: Db<'_>,
    nonce: Option<&str>,
    made_by: i64,
) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE kill_orders SET state = 'undelivered'
         WHERE state = 'forwarded' AND (nonce = $1 OR $1 IS NULL) AND created_at <= $2",
    )
    .bind(nonce)
    .bind(made_by)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// The state of kill order `nonce`.
pub async fn order_state(db: Db<'_>, nonce: &str) -> sqlx::Result<Option<String>> {
    on!(db, c => sqlx::query_scalar("SELECT state FROM kill_orders WHERE nonce = $1")
        .bind(nonce)
        .fetch_optional(&mut *c)
        .await)
}
