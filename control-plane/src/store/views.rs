//! What hosts must know at a revision: the versioned rows (`since_rev`, `until_rev`) a view
//! or a delta between two revisions is made of. A row is live at `rev` when
//! `since_rev <= rev AND (until_rev IS NULL OR until_rev > rev)`, and changed in
//! `(from, to]` when either bound falls in it.

use super::{Db, on};

/// A revocation row: kind, CA fingerprint, value, serial range, and when it was live.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RevocationRow {
    /// `key_id`, `serial`, `key` or `sha256`.
    pub kind: String,
    /// The CA it applies to, if any.
    pub ca_fingerprint: Option<String>,
    /// The revoked value (key ID, key, fingerprint).
    pub value: String,
    /// First revoked serial.
    pub serial_lo: Option<i64>,
    /// Last revoked serial.
    pub serial_hi: Option<i64>,
    /// The revision it came into force.
    pub since_rev: i64,
    /// The revision it was withdrawn, if it was.
    pub until_rev: Option<i64>,
}

/// A sign-off row: id, statement bytes, signature, and when it was in force.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SignoffRow {
    /// The sign-off's id.
    pub id: i64,
    /// Canonical statement bytes.
    pub statement: Vec<u8>,
    /// Armored SSHSIG over them.
    pub signature: String,
    /// The revision it came into force.
    pub since_rev: i64,
    /// The revision the person was re-enabled, if they were.
    pub until_rev: Option<i64>,
}

/// A re-enabled sign-off: id, statement bytes, signature and the person's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReenabledRow {
    /// The sign-off's id.
    pub id: i64,
    /// Canonical statement bytes.
    pub statement: Vec<u8>,
    /// Armored SSHSIG over them.
    pub signature: String,
    /// The person's name.
    pub person: String,
}

/// A live grant with what a principals entry needs of it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    /// The Unix account.
    pub account: String,
    /// The user's name.
    pub user_name: String,
    /// The user's id.
    pub user_id: i64,
    /// When the grant expires; `None` for never.
    pub not_after: Option<i64>,
    /// The grant's id.
    pub grant_id: i64,
    /// The grant's host group's name.
    pub group_name: String,
}

/// Whether `host` joined or left a group in `(from, to]`.
pub async fn host_membership_changed(
    db: Db<'_>,
    host: &str,
    from: i64,
    to: i64,
) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM host_group_members WHERE host_id = $1
           AND ((since_rev > $2 AND since_rev <= $3) OR (until_rev > $2 AND until_rev <= $3)))",
    )
    .bind(host)
    .bind(from)
    .bind(to)
    .fetch_one(&mut *c)
    .await)
}

/// The hosts that joined or left a group in `(from, to]`.
pub async fn hosts_with_membership_change(
    db: Db<'_>,
    from: i64,
    to: i64,
) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT DISTINCT host_id FROM host_group_members
         WHERE (since_rev > $1 AND since_rev <= $2) OR (until_rev > $1 AND until_rev <= $2)",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *c)
    .await)
}

/// The hosts removed in `(from, to]`.
pub async fn hosts_removed(db: Db<'_>, from: i64, to: i64) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar("SELECT id FROM hosts WHERE removed_rev > $1 AND removed_rev <= $2")
        .bind(from)
        .bind(to)
        .fetch_all(&mut *c)
        .await)
}

/// Every (host, group) membership live at `rev`, ordered by host then group.
pub async fn memberships_at(db: Db<'_>, rev: i64) -> sqlx::Result<Vec<(String, i64)>> {
    on!(db, c => sqlx::query_as(
        "SELECT host_id, group_id FROM host_group_members
         WHERE since_rev <= $1 AND (until_rev IS NULL OR until_rev > $1)
         ORDER BY host_id, group_id",
    )
    .bind(rev)
    .fetch_all(&mut *c)
    .await)
}

/// Whether a trusted user CA was added or withdrawn in `(from, to]`.
pub async fn trusted_cas_changed(db: Db<'_>, from: i64, to: i64) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM trusted_cas
           WHERE (since_rev > $1 AND since_rev <= $2) OR (until_rev > $1 AND until_rev <= $2))",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *c)
    .await)
}

/// The trusted user CA keys (OpenSSH lines) at `rev`.
pub async fn trusted_cas_at(db: Db<'_>, rev: i64) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT public_key FROM trusted_cas
         WHERE since_rev <= $1 AND (until_rev IS NULL OR until_rev > $1)",
    )
    .bind(rev)
    .fetch_all(&mut *c)
    .await)
}

/// The revocations added or withdrawn in `(from, to]`.
pub async fn revocations_changed(
    db: Db<'_>,
    from: i64,
    to: i64,
) -> sqlx::Result<Vec<RevocationRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT kind, ca_fingerprint, value, serial_lo, serial_hi, since_rev, until_rev
         FROM revocations
         WHERE (since_rev > $1 AND since_rev <= $2) OR (until_rev > $1 AND until_rev <= $2)",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *c)
    .await)
}

/// The revocations in force at `rev`.
pub async fn revocations_at(db: Db<'_>, rev: i64) -> sqlx::Result<Vec<RevocationRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT kind, ca_fingerprint, value, serial_lo, serial_hi, since_rev, until_rev
         FROM revocations
         WHERE since_rev <= $1 AND (until_rev IS NULL OR until_rev > $1)",
    )
    .bind(rev)
    .fetch_all(&mut *c)
    .await)
}

/// The users whose status changed in `(from, to]` (a user may appear more than once).
pub async fn status_changed(db: Db<'_>, from: i64, to: i64) -> sqlx::Result<Vec<i64>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT user_id FROM user_status
         WHERE (since_rev > $1 AND since_rev <= $2) OR (until_rev > $1 AND until_rev <= $2)",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *c)
    .await)
}

/// The disabled users at `rev`: (id, name).
pub async fn disabled_at(db: Db<'_>, rev: i64) -> sqlx::Result<Vec<(i64, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT u.id, u.name FROM user_status s JOIN users u ON u.id = s.user_id
         WHERE s.status = 'disabled' AND s.since_rev <= $1
           AND (s.until_rev IS NULL OR s.until_rev > $1)",
    )
    .bind(rev)
    .fetch_all(&mut *c)
    .await)
}

/// The sign-offs that came into force or were withdrawn in `(from, to]`.
pub async fn signoffs_changed(db: Db<'_>, from: i64, to: i64) -> sqlx::Result<Vec<SignoffRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, statement, signature, since_rev, until_rev FROM signoffs
         WHERE (since_rev > $1 AND since_rev <= $2) OR (until_rev > $1 AND until_rev <= $2)",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *c)
    .await)
}

/// The sign-offs in force at `rev`.
pub async fn signoffs_at(db: Db<'_>, rev: i64) -> sqlx::Result<Vec<SignoffRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, statement, signature, since_rev, until_rev FROM signoffs
         WHERE since_rev <= $1 AND (until_rev IS NULL OR until_rev > $1)",
    )
    .bind(rev)
    .fetch_all(&mut *c)
    .await)
}

/// The sign-offs whose re-enable happened, or whose re-enable approvals changed, in
/// `(from, to]`.
pub async fn reenables_changed(db: Db<'_>, from: i64, to: i64) -> sqlx::Result<Vec<i64>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT id FROM signoffs WHERE until_rev > $1 AND until_rev <= $2
         UNION SELECT signoff_id FROM reenable_approvals
         WHERE (since_rev > $1 AND since_rev <= $2) OR (until_rev > $1 AND until_rev <= $2)",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *c)
    .await)
}

/// The sign-offs re-enabled at or before `rev`, with the person's name.
pub async fn reenabled_at(db: Db<'_>, rev: i64) -> sqlx::Result<Vec<ReenabledRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT s.id, s.statement, s.signature, u.name AS person FROM signoffs s
         JOIN users u ON u.id = s.user_id WHERE s.until_rev IS NOT NULL AND s.until_rev <= $1",
    )
    .bind(rev)
    .fetch_all(&mut *c)
    .await)
}

/// The re-enable approvals live at `rev`: (sign-off id, signature).
pub async fn reenable_approvals_at(db: Db<'_>, rev: i64) -> sqlx::Result<Vec<(i64, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT signoff_id, signature FROM reenable_approvals
         WHERE since_rev <= $1 AND (until_rev IS NULL OR until_rev > $1)",
    )
    .bind(rev)
    .fetch_all(&mut *c)
    .await)
}

/// The users any of whose status, key ID, principal, key, grant or grant approval rows
/// changed in `(from, to]`, each once.
pub async fn touched_users(db: Db<'_>, from: i64, to: i64) -> sqlx::Result<Vec<i64>> {
    const CHANGED: &str =
        "WHERE (since_rev > $1 AND since_rev <= $2) OR (until_rev > $1 AND until_rev <= $2)";
    let sql = format!(
        "SELECT user_id FROM user_status {CHANGED}
         UNION SELECT user_id FROM user_key_ids {CHANGED}
         UNION SELECT user_id FROM user_principals {CHANGED}
         UNION SELECT user_id FROM user_keys {CHANGED}
         UNION SELECT user_id FROM grants {CHANGED}
         UNION SELECT user_id FROM grant_approvals {CHANGED}"
    );
    on!(db, c => sqlx::query_scalar(&sql)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *c)
        .await)
}

/// The grant columns and joins of a principals entry: grants live at `$1` of users active
/// at `$1`.
const GRANTS_AT: &str = "SELECT g.account, u.name AS user_name, u.id AS user_id, g.not_after,
           g.id AS grant_id, hg.name AS group_name
         FROM grants g
         JOIN users u ON u.id = g.user_id
         JOIN host_groups hg ON hg.id = g.group_id
         JOIN user_status s ON s.user_id = u.id AND s.status = 'active'
              AND s.since_rev <= $1 AND (s.until_rev IS NULL OR s.until_rev > $1)
         WHERE g.since_rev <= $1 AND (g.until_rev IS NULL OR g.until_rev > $1)";

/// The grants live at `rev`, of active users, in the groups `host` is a member of at `rev`.
pub async fn grants_of_host_at(db: Db<'_>, host: &str, rev: i64) -> sqlx::Result<Vec<GrantRow>> {
    let sql = format!(
        "{GRANTS_AT} AND g.group_id IN (SELECT group_id FROM host_group_members
           WHERE host_id = $2 AND since_rev <= $1 AND (until_rev IS NULL OR until_rev > $1))"
    );
    on!(db, c => sqlx::query_as(&sql)
        .bind(rev)
        .bind(host)
        .fetch_all(&mut *c)
        .await)
}

/// The grants live at `rev`, of active users, in any of `groups` (one statement per 1,000
/// groups; none when `groups` is empty).
pub async fn grants_of_groups_at(
    mut db: Db<'_>,
    groups: &[i64],
    rev: i64,
) -> sqlx::Result<Vec<GrantRow>> {
    let mut out = Vec::new();
    for chunk in groups.chunks(1000) {
        let list = (2..chunk.len() + 2)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("{GRANTS_AT} AND g.group_id IN ({list})");
        let rows: Vec<GrantRow> = on!(db.re(), c => {
            let mut q = sqlx::query_as(&sql).bind(rev);
            for g in chunk {
                q = q.bind(*g);
            }
            q.fetch_all(&mut *c).await
        })?;
        out.extend(rows);
    }
    Ok(out)
}

/// The grant approval signatures live at `rev`: (grant id, signature).
pub async fn grant_approvals_at(db: Db<'_>, rev: i64) -> sqlx::Result<Vec<(i64, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT grant_id, signature FROM grant_approvals
         WHERE since_rev <= $1 AND (until_rev IS NULL OR until_rev > $1)",
    )
    .bind(rev)
    .fetch_all(&mut *c)
    .await)
}

/// What identifies `user` at `rev`, each value tagged with its kind: `key_id`,
/// `principal` or `public_key`.
pub async fn identity_at(db: Db<'_>, user: i64, rev: i64) -> sqlx::Result<Vec<(String, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT CAST('key_id' AS TEXT), key_id FROM user_key_ids
           WHERE user_id = $1 AND since_rev <= $2 AND (until_rev IS NULL OR until_rev > $2)
         UNION ALL SELECT CAST('principal' AS TEXT), principal FROM user_principals
           WHERE user_id = $1 AND since_rev <= $2 AND (until_rev IS NULL OR until_rev > $2)
         UNION ALL SELECT CAST('public_key' AS TEXT), public_key FROM user_keys
           WHERE user_id = $1 AND since_rev <= $2 AND (until_rev IS NULL OR until_rev > $2)",
    )
    .bind(user)
    .bind(rev)
    .fetch_all(&mut *c)
    .await)
}
