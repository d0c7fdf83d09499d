//! Approvers' signatures of grants and of re-enables.

use super::{Db, on};

/// One approval as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApprovalRow {
    /// Id.
    pub id: i64,
    /// `SHA256:…` of the key that signed.
    pub fingerprint: String,
    /// The key, OpenSSH format.
    pub public_key: String,
    /// The armored SSHSIG.
    pub signature: String,
    /// Who submitted it.
    pub actor: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Grant `grant`'s live approvals, by id.
pub async fn of_grant(db: Db<'_>, grant: i64) -> sqlx::Result<Vec<ApprovalRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, fingerprint, public_key, signature, actor, created_at
         FROM grant_approvals WHERE grant_id = $1 AND until_rev IS NULL ORDER BY id",
    )
    .bind(grant)
    .fetch_all(&mut *c)
    .await)
}

/// A new approval of grant `grant` (of person `user`), live from revision `rev`; returns
/// its id. Fails with a unique violation when that key approved the grant already.
#[allow(clippy::too_many_arguments)]
pub async fn insert_grant_approval(
    db: Db<'_>,
    grant: i64,
    user: i64,
    fingerprint: &str,
    public_key: &str,
    signature: &str,
    actor: &str,
    created_at: i64,
    rev: i64,
) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "INSERT INTO grant_approvals (grant_id, user_id, fingerprint, public_key, signature,
           actor, created_at, since_rev) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(grant)
    .bind(user)
    .bind(fingerprint)
    .bind(public_key)
    .bind(signature)
    .bind(actor)
    .bind(created_at)
    .bind(rev)
    .fetch_one(&mut *c)
    .await)
}

const SELECT_SIGNOFF: &str = "SELECT s.id, u.name, s.until_rev IS NOT NULL FROM signoffs s
     JOIN users u ON u.id = s.user_id";

/// Sign-off `id`, if it exists: (id, the person's name, whether they were re-enabled from
/// it).
pub async fn signoff(db: Db<'_>, id: i64) -> sqlx::Result<Option<(i64, String, bool)>> {
    let sql = format!("{SELECT_SIGNOFF} WHERE s.id = $1");
    on!(db, c => sqlx::query_as(&sql).bind(id).fetch_optional(&mut *c).await)
}

/// The sign-offs whose re-enable hosts may still hold out, oldest first: (id, the
/// person's name, whether they were re-enabled). Each sign-off the person was re-enabled
/// from, and the one in force when it holds a live approval already, unless a later
/// sign-off of theirs is in force (that one must be withdrawn first). Every such sign-off,
/// not only the latest: a host holds a person out until each sign-off it enforced has its
/// approvals.
pub async fn pending_reenables(db: Db<'_>) -> sqlx::Result<Vec<(i64, String, bool)>> {
    let sql = format!(
        "{SELECT_SIGNOFF} WHERE NOT EXISTS (SELECT 1 FROM signoffs l
                WHERE l.user_id = s.user_id AND l.id > s.id AND l.until_rev IS NULL)
           AND (s.until_rev IS NOT NULL OR EXISTS (SELECT 1 FROM reenable_approvals a
                WHERE a.signoff_id = s.id AND a.until_rev IS NULL))
         ORDER BY s.id"
    );
    on!(db, c => sqlx::query_as(&sql).fetch_all(&mut *c).await)
}

/// The live approvals of re-enabling the person of sign-off `signoff`, by id.
pub async fn of_reenable(db: Db<'_>, signoff: i64) -> sqlx::Result<Vec<ApprovalRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, fingerprint, public_key, signature, actor, created_at
         FROM reenable_approvals WHERE signoff_id = $1 AND until_rev IS NULL ORDER BY id",
    )
    .bind(signoff)
    .fetch_all(&mut *c)
    .await)
}

/// A new approval of the re-enable from sign-off `signoff`, live from revision `rev`;
/// returns its id. Fails with a unique violation when that key approved it already.
#[allow(clippy::too_many_arguments)]
pub async fn insert_reenable_approval(
    db: Db<'_>,
    signoff: i64,
    fingerprint: &str,
    public_key: &str,
    signature: &str,
    actor: &str,
    created_at: i64,
    rev: i64,
) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "INSERT INTO reenable_approvals (signoff_id, fingerprint, public_key, signature,
           actor, created_at, since_rev) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(signoff)
    .bind(fingerprint)
    .bind(public_key)
    .bind(signature)
    .bind(actor)
    .bind(created_at)
    .bind(rev)
    .fetch_one(&mut *c)
    .await)
}
