//! signoff's own certificates: the user certificates it issued, the validity policies they
//! are issued under, what is checked before issuing, and the host keys it certified.

use super::{Db, on};

/// A certificate about to be recorded; its serial is allocated by the insert.
#[derive(Debug, Clone)]
pub struct NewIssued<'a> {
    /// The person's id.
    pub user_id: i64,
    /// The signing CA's fingerprint.
    pub ca_fingerprint: &'a str,
    /// The certified key's `SHA256:` fingerprint.
    pub key_fingerprint: &'a str,
    /// The certified key, OpenSSH line.
    pub public_key: &'a str,
    /// JSON array of the principals.
    pub principals: &'a str,
    /// Unix seconds.
    pub valid_after: i64,
    /// Unix seconds.
    pub valid_before: i64,
    /// The source-address critical option, if any.
    pub source_address: Option<&'a str>,
    /// Unix seconds.
    pub issued_at: i64,
    /// The actor.
    pub issued_by: &'a str,
}

/// An issued certificate as stored, with whether a live serial revocation covers it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IssuedRow {
    /// The serial.
    pub serial: i64,
    /// The certified key's `SHA256:` fingerprint.
    pub key_fingerprint: String,
    /// The certified key, OpenSSH line.
    pub public_key: String,
    /// JSON array of the principals.
    pub principals: String,
    /// Unix seconds.
    pub valid_after: i64,
    /// Unix seconds.
    pub valid_before: i64,
    /// The source-address critical option, if any.
    pub source_address: Option<String>,
    /// The signing CA's fingerprint.
    pub ca_fingerprint: String,
    /// Whether a live revocation by serial covers it.
    pub revoked: bool,
}

/// Gives `user` the key ID `key_id` from revision `rev`.
pub async fn insert_key_id(db: Db<'_>, user: i64, key_id: &str, rev: i64) -> sqlx::Result<()> {
    on!(db, c => sqlx::query("INSERT INTO user_key_ids (user_id, key_id, since_rev) VALUES ($1, $2, $3)")
        .bind(user)
        .bind(key_id)
        .bind(rev)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Records an issued certificate; returns its serial.
pub async fn insert_issued(db: Db<'_>, n: &NewIssued<'_>) -> sqlx::Result<i64> {
    on!(db, c => sqlx::query_scalar(
        "INSERT INTO issued_certificates (user_id, ca_fingerprint, key_fingerprint, public_key,
           principals, valid_after, valid_before, source_address, issued_at, issued_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         RETURNING serial",
    )
    .bind(n.user_id)
    .bind(n.ca_fingerprint)
    .bind(n.key_fingerprint)
    .bind(n.public_key)
    .bind(n.principals)
    .bind(n.valid_after)
    .bind(n.valid_before)
    .bind(n.source_address)
    .bind(n.issued_at)
    .bind(n.issued_by)
    .fetch_one(&mut *c)
    .await)
}

/// The name of the person a live registered key belongs to, by its fingerprint.
pub async fn key_holder_name(db: Db<'_>, fingerprint: &str) -> sqlx::Result<Option<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT u.name FROM user_keys k JOIN users u ON u.id = k.user_id
         WHERE k.fingerprint = $1 AND k.until_rev IS NULL",
    )
    .bind(fingerprint)
    .fetch_optional(&mut *c)
    .await)
}

/// The id of the person a live registered key belongs to, by its fingerprint.
pub async fn key_holder_id(db: Db<'_>, fingerprint: &str) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT user_id FROM user_keys WHERE fingerprint = $1 AND until_rev IS NULL",
    )
    .bind(fingerprint)
    .fetch_optional(&mut *c)
    .await)
}

/// The id of the person who holds the live key ID `key_id`.
pub async fn key_id_holder(db: Db<'_>, key_id: &str) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT user_id FROM user_key_ids WHERE key_id = $1 AND until_rev IS NULL",
    )
    .bind(key_id)
    .fetch_optional(&mut *c)
    .await)
}

/// Whether a live revocation names the key, by its OpenSSH line or its fingerprint.
pub async fn key_revoked(db: Db<'_>, openssh: &str, fingerprint: &str) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM revocations WHERE until_rev IS NULL AND
           ((kind = 'key' AND value = $1) OR (kind = 'sha256' AND value = $2)))",
    )
    .bind(openssh)
    .bind(fingerprint)
    .fetch_one(&mut *c)
    .await)
}

/// Whether a live revocation names the key ID `key_id` (under any CA).
pub async fn key_id_revoked(db: Db<'_>, key_id: &str) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM revocations
           WHERE until_rev IS NULL AND kind = 'key_id' AND value = $1)",
    )
    .bind(key_id)
    .fetch_one(&mut *c)
    .await)
}

/// A person's certificates valid after `now`, newest first.
pub async fn live_issued(db: Db<'_>, user: i64, now: i64) -> sqlx::Result<Vec<IssuedRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT c.serial, c.key_fingerprint, c.public_key, c.principals, c.valid_after,
                c.valid_before, c.source_address, c.ca_fingerprint,
                EXISTS (SELECT 1 FROM revocations r WHERE r.until_rev IS NULL
                          AND r.kind = 'serial' AND r.ca_fingerprint = c.ca_fingerprint
                          AND c.serial BETWEEN r.serial_lo AND r.serial_hi) AS revoked
         FROM issued_certificates c WHERE c.user_id = $1 AND c.valid_before > $2
         ORDER BY c.serial DESC",
    )
    .bind(user)
    .bind(now)
    .fetch_all(&mut *c)
    .await)
}

/// The fingerprint of the CA that signed the certificate `serial` issued to `user`, if
/// there is one.
pub async fn issuing_ca(db: Db<'_>, serial: i64, user: i64) -> sqlx::Result<Option<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT ca_fingerprint FROM issued_certificates WHERE serial = $1 AND user_id = $2",
    )
    .bind(serial)
    .bind(user)
    .fetch_optional(&mut *c)
    .await)
}

/// Sets a host group's validity policy (seconds), replacing any.
pub async fn set_group_policy(
    db: Db<'_>,
    group: i64,
    default_ttl: i64,
    max_ttl: i64,
) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO group_certificate_policies (group_id, default_ttl, max_ttl)
         VALUES ($1, $2, $3)
         ON CONFLICT (group_id) DO UPDATE SET default_ttl = excluded.default_ttl,
           max_ttl = excluded.max_ttl",
    )
    .bind(group)
    .bind(default_ttl)
    .bind(max_ttl)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sets a person's own validity policy (seconds) and default source-address, replacing
/// any.
pub async fn set_person_policy(
    db: Db<'_>,
    user: i64,
    default_ttl: i64,
    max_ttl: i64,
    source_address: Option<&str>,
) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO certificate_policies (user_id, default_ttl, max_ttl, source_address)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO UPDATE SET default_ttl = excluded.default_ttl,
           max_ttl = excluded.max_ttl, source_address = excluded.source_address",
    )
    .bind(user)
    .bind(default_ttl)
    .bind(max_ttl)
    .bind(source_address)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A person's own policy: (default validity, maximum validity, default source-address),
/// if they have one.
pub async fn person_policy(
    db: Db<'_>,
    user: i64,
) -> sqlx::Result<Option<(i64, i64, Option<String>)>> {
    on!(db, c => sqlx::query_as(
        "SELECT default_ttl, max_ttl, source_address FROM certificate_policies WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(&mut *c)
    .await)
}

/// The strictest (smallest default, smallest maximum) validity policy among the host
/// groups `user` holds a grant in that is live and unexpired at `now`; `None`s when none of
/// those groups has one.
pub async fn strictest_group_policy(
    db: Db<'_>,
    user: i64,
    now: i64,
) -> sqlx::Result<(Option<i64>, Option<i64>)> {
    on!(db, c => sqlx::query_as(
        "SELECT min(p.default_ttl), min(p.max_ttl) FROM group_certificate_policies p
         WHERE p.group_id IN (SELECT g.group_id FROM grants g WHERE g.user_id = $1
                                AND g.until_rev IS NULL
                                AND (g.not_after IS NULL OR g.not_after > $2))",
    )
    .bind(user)
    .bind(now)
    .fetch_one(&mut *c)
    .await)
}

/// The hostname of the live host `host`, if there is one.
pub async fn live_hostname(db: Db<'_>, host: &str) -> sqlx::Result<Option<String>> {
    on!(db, c => sqlx::query_scalar("SELECT hostname FROM hosts WHERE id = $1 AND removed_rev IS NULL")
        .bind(host)
        .fetch_optional(&mut *c)
        .await)
}

/// Binds the host key `fingerprint` to `host`, signed at `now` (first signed then, if it
/// is new).
pub async fn bind_host_key(
    db: Db<'_>,
    fingerprint: &str,
    host: &str,
    now: i64,
) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO host_ssh_keys (fingerprint, host_id, first_signed, last_signed)
         VALUES ($1, $2, $3, $3)
         ON CONFLICT (fingerprint) DO UPDATE
         SET host_id = excluded.host_id, last_signed = excluded.last_signed",
    )
    .bind(fingerprint)
    .bind(host)
    .bind(now)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The live host the host key `fingerprint` is bound to, if any.
pub async fn host_key_holder(db: Db<'_>, fingerprint: &str) -> sqlx::Result<Option<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT k.host_id FROM host_ssh_keys k JOIN hosts h ON h.id = k.host_id
         WHERE k.fingerprint = $1 AND h.removed_rev IS NULL",
    )
    .bind(fingerprint)
    .fetch_optional(&mut *c)
    .await)
}

#[cfg(test)]
mod tests {
    use crate::store::views::tests::seeded;

    #[tokio::test]
    async fn the_certificate_statements_read_and_write() {
        let store = seeded().await;
        store
            .exec_for_test(
                "INSERT INTO revocations (kind, ca_fingerprint, value, since_rev)
                 VALUES ('key', NULL, 'ssh-ed25519 GONE', 3), ('sha256', NULL, 'SHA256:gone', 3),
                        ('key_id', NULL, 'mallory', 3)",
            )
            .await;
        let mut c = store.conn().await.unwrap();
        assert_eq!(
            super::key_holder_name(c.db(), "SHA256:a").await.unwrap(),
            Some("alice".to_owned())
        );
        assert_eq!(
            super::key_holder_id(c.db(), "SHA256:a").await.unwrap(),
            Some(1)
        );
        assert_eq!(
            super::key_holder_id(c.db(), "SHA256:z").await.unwrap(),
            None
        );
        assert_eq!(
            super::key_id_holder(c.db(), "alice").await.unwrap(),
            Some(1)
        );
        assert!(
            !super::key_revoked(c.db(), "ssh-ed25519 AAAA", "SHA256:a")
                .await
                .unwrap()
        );
        assert!(!super::key_id_revoked(c.db(), "alice").await.unwrap());
        super::insert_key_id(c.db(), 2, "bob", 3).await.unwrap();
        assert_eq!(super::key_id_holder(c.db(), "bob").await.unwrap(), Some(2));
        let issue = |valid_before| super::NewIssued {
            user_id: 1,
            ca_fingerprint: "SHA256:ca",
            key_fingerprint: "SHA256:a",
            public_key: "ssh-ed25519 AAAA",
            principals: "[\"alice\"]",
            valid_after: 0,
            valid_before,
            source_address: Some("10.0.0.0/8"),
            issued_at: 0,
            issued_by: "cli",
        };
        let mut serials = Vec::new();
        for _ in 0..6 {
            serials.push(super::insert_issued(c.db(), &issue(100)).await.unwrap());
        }
        assert!(serials.windows(2).all(|w| w[0] < w[1]), "{serials:?}");
        let live = super::live_issued(c.db(), 1, 50).await.unwrap();
        assert_eq!(live.len(), 6);
        assert_eq!(live[0].serial, serials[5], "newest first");
        // The seeded revocation covers serials 5 to 7 of SHA256:ca.
        for r in &live {
            assert_eq!(r.revoked, (5..=7).contains(&r.serial), "{}", r.serial);
            assert_eq!(r.source_address.as_deref(), Some("10.0.0.0/8"));
            assert_eq!((r.valid_after, r.valid_before), (0, 100));
        }
        assert!(super::live_issued(c.db(), 1, 100).await.unwrap().is_empty());
        assert_eq!(
            super::issuing_ca(c.db(), serials[0], 1).await.unwrap(),
            Some("SHA256:ca".to_owned())
        );
        assert_eq!(
            super::issuing_ca(c.db(), serials[0], 2).await.unwrap(),
            None
        );
        assert_eq!(super::person_policy(c.db(), 1).await.unwrap(), None);
        super::set_person_policy(c.db(), 1, 60, 600, None)
            .await
            .unwrap();
        super::set_person_policy(c.db(), 1, 30, 300, Some("10.0.0.1"))
            .await
            .unwrap();
        assert_eq!(
            super::person_policy(c.db(), 1).await.unwrap(),
            Some((30, 300, Some("10.0.0.1".to_owned())))
        );
        assert_eq!(
            super::strictest_group_policy(c.db(), 1, 0).await.unwrap(),
            (None, None)
        );
        super::set_group_policy(c.db(), 1, 90, 900).await.unwrap();
        super::set_group_policy(c.db(), 2, 80, 1000).await.unwrap();
        super::set_group_policy(c.db(), 2, 70, 2000).await.unwrap();
        assert_eq!(
            super::strictest_group_policy(c.db(), 1, 0).await.unwrap(),
            (Some(70), Some(900))
        );
        // The grant in db expires at 5000.
        assert_eq!(
            super::strictest_group_policy(c.db(), 1, 5000)
                .await
                .unwrap(),
            (Some(90), Some(900))
        );
        assert_eq!(
            super::live_hostname(c.db(), "h1").await.unwrap(),
            Some("web1".to_owned())
        );
        assert_eq!(super::live_hostname(c.db(), "h2").await.unwrap(), None);
        super::bind_host_key(c.db(), "SHA256:h", "h2", 1)
            .await
            .unwrap();
        assert_eq!(
            super::host_key_holder(c.db(), "SHA256:h").await.unwrap(),
            None
        );
        super::bind_host_key(c.db(), "SHA256:h", "h1", 2)
            .await
            .unwrap();
        assert_eq!(
            super::host_key_holder(c.db(), "SHA256:h").await.unwrap(),
            Some("h1".to_owned())
        );
        assert!(
            super::key_revoked(c.db(), "ssh-ed25519 GONE", "SHA256:other")
                .await
                .unwrap()
        );
        assert!(
            super::key_revoked(c.db(), "ssh-ed25519 other", "SHA256:gone")
                .await
                .unwrap()
        );
        assert!(super::key_id_revoked(c.db(), "mallory").await.unwrap());
    }
}
