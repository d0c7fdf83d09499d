//! Trusted user CAs and the revocation set.

use super::{Db, on};

/// Trusts CA `name` (its OpenSSH line and SHA256 fingerprint) from revision `rev`; a
/// live CA of that name or key already trusted is a unique violation.
pub async fn insert_ca(
    db: Db<'_>,
    name: &str,
    public_key: &str,
    fingerprint: &str,
    rev: i64,
) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "INSERT INTO trusted_cas (name, public_key, fingerprint, since_rev) VALUES ($1, $2, $3, $4)",
    )
    .bind(name)
    .bind(public_key)
    .bind(fingerprint)
    .bind(rev)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// The trusted CAs, by name: (name, OpenSSH line, fingerprint).
pub async fn live_cas(db: Db<'_>) -> sqlx::Result<Vec<(String, String, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT name, public_key, fingerprint FROM trusted_cas WHERE until_rev IS NULL ORDER BY name",
    )
    .fetch_all(&mut *c)
    .await)
}

/// Stops trusting CA `name` from revision `rev`; returns 0 when no such CA is trusted.
pub async fn withdraw_ca(db: Db<'_>, name: &str, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE trusted_cas SET until_rev = $1 WHERE name = $2 AND until_rev IS NULL",
    )
    .bind(rev)
    .bind(name)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Every CA key ever trusted, oldest first: (fingerprint, OpenSSH line).
pub async fn every_ca_key(db: Db<'_>) -> sqlx::Result<Vec<(String, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT fingerprint, public_key FROM trusted_cas ORDER BY since_rev",
    )
    .fetch_all(&mut *c)
    .await)
}

/// The OpenSSH line of the CA with fingerprint `fingerprint`, trusted now or last (a CA no
/// longer trusted keeps its revocations).
pub async fn ca_key(db: Db<'_>, fingerprint: &str) -> sqlx::Result<Option<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT public_key FROM trusted_cas WHERE fingerprint = $1 ORDER BY since_rev DESC LIMIT 1",
    )
    .bind(fingerprint)
    .fetch_optional(&mut *c)
    .await)
}

/// The trusted CA named `ca` or with fingerprint `ca`: (fingerprint, name).
pub async fn resolve_ca(db: Db<'_>, ca: &str) -> sqlx::Result<Option<(String, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT fingerprint, name FROM trusted_cas
         WHERE (name = $1 OR fingerprint = $1) AND until_rev IS NULL",
    )
    .bind(ca)
    .fetch_optional(&mut *c)
    .await)
}

/// The latest `valid_before` of the certificates issued under CA `ca` with serials in
/// `lo..=hi`; `None` when none was.
pub async fn issued_until(db: Db<'_>, ca: &str, lo: i64, hi: i64) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT max(valid_before) FROM issued_certificates
         WHERE ca_fingerprint = $1 AND serial BETWEEN $2 AND $3",
    )
    .bind(ca)
    .bind(lo)
    .bind(hi)
    .fetch_one(&mut *c)
    .await)
}

/// A revocation as it is written.
#[derive(Debug, Clone, Copy)]
pub struct New<'a> {
    /// `key_id`, `serial`, `key` or `sha256`.
    pub kind: &'a str,
    /// The CA's fingerprint, `None` for any CA (or none that applies).
    pub ca: Option<&'a str>,
    /// The key ID, key line or fingerprint revoked (empty for serials).
    pub value: &'a str,
    /// The serial range, for serials.
    pub lo: Option<i64>,
    /// The serial range's end, for serials.
    pub hi: Option<i64>,
    /// Why.
    pub reason: &'a str,
    /// The revision that adds it.
    pub rev: i64,
    /// Unix seconds after which it withdraws itself.
    pub valid_before: Option<i64>,
}

/// Adds a revocation; returns its id. The same live revocation already present is a unique
/// violation.
pub async fn insert(db: Db<'_>, r: &New<'_>) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "INSERT INTO revocations (kind, ca_fingerprint, value, serial_lo, serial_hi, reason, since_rev, valid_before)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id",
    )
    .bind(r.kind)
    .bind(r.ca)
    .bind(r.value)
    .bind(r.lo)
    .bind(r.hi)
    .bind(r.reason)
    .bind(r.rev)
    .bind(r.valid_before)
    .fetch_one(&mut *c)
    .await)
}

/// The live revocation of `kind` `value` under any CA, if there is one: its id.
pub async fn live_any_ca(db: Db<'_>, kind: &str, value: &str) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT id FROM revocations WHERE kind = $1 AND ca_fingerprint IS NULL
           AND value = $2 AND until_rev IS NULL",
    )
    .bind(kind)
    .bind(value)
    .fetch_optional(&mut *c)
    .await)
}

/// The sign-off in force that revocation `id` enforces, the oldest if several:
/// (sign-off id, person).
pub async fn enforced_signoff(db: Db<'_>, id: i64) -> sqlx::Result<Option<(i64, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT s.id, u.name FROM signoff_revocations sr
           JOIN signoffs s ON s.id = sr.signoff_id
           JOIN users u ON u.id = s.user_id
         WHERE sr.revocation_id = $1 AND s.until_rev IS NULL
         ORDER BY s.id LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

/// Withdraws live revocation `id` from revision `rev`; returns 0 when it is not live.
pub async fn withdraw(db: Db<'_>, id: i64, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE revocations SET until_rev = $1 WHERE id = $2 AND until_rev IS NULL")
        .bind(rev)
        .bind(id)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Live revocations (of `r`) whose `valid_before` is at or before `$1`, and which enforce
/// no sign-off in force.
const DUE: &str = "r.until_rev IS NULL AND r.valid_before IS NOT NULL AND r.valid_before <= $1
    AND NOT EXISTS (SELECT 1 FROM signoff_revocations sr JOIN signoffs s ON s.id = sr.signoff_id
                    WHERE sr.revocation_id = r.id AND s.until_rev IS NULL)";

/// Whether any revocation is due to expire at `now` (see [`expire_due`]).
pub async fn any_due(db: Db<'_>, now: i64) -> sqlx::Result<bool> {
    let sql = format!("SELECT EXISTS(SELECT 1 FROM revocations r WHERE {DUE})");
    on!(db, c => sqlx::query_scalar(&sql).bind(now).fetch_one(&mut *c).await)
}

/// Withdraws, from revision `rev`, every live revocation whose `valid_before` is at or
/// before `now` and that enforces no sign-off in force; returns how many.
pub async fn expire_due(db: Db<'_>, now: i64, rev: i64) -> sqlx::Result<u64> {
    let sql = format!("UPDATE revocations AS r SET until_rev = $2 WHERE {DUE}");
    on!(db, c => sqlx::query(&sql)
        .bind(now)
        .bind(rev)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// The ids of the revocations withdrawn by revision `rev`, the first `limit`.
pub async fn withdrawn_by(db: Db<'_>, rev: i64, limit: i64) -> sqlx::Result<Vec<i64>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT id FROM revocations WHERE until_rev = $1 ORDER BY id LIMIT $2",
    )
    .bind(rev)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// A live revocation as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct Live {
    /// Its id.
    pub id: i64,
    /// `key_id`, `serial`, `key` or `sha256`.
    pub kind: String,
    /// The CA's fingerprint, if it names one.
    pub ca_fingerprint: Option<String>,
    /// The key ID, key line or fingerprint.
    pub value: String,
    /// The serial range's start.
    pub serial_lo: Option<i64>,
    /// The serial range's end.
    pub serial_hi: Option<i64>,
    /// Why.
    pub reason: String,
    /// The revision that added it.
    pub since_rev: i64,
    /// When it withdraws itself.
    pub valid_before: Option<i64>,
}

/// The live revocations, by id.
pub async fn live(db: Db<'_>) -> sqlx::Result<Vec<Live>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, kind, ca_fingerprint, value, serial_lo, serial_hi, reason, since_rev,
                valid_before
         FROM revocations WHERE until_rev IS NULL ORDER BY id",
    )
    .fetch_all(&mut *c)
    .await)
}
