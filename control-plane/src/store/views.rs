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

#[cfg(test)]
pub(super) mod tests {
    use crate::store::{Backend, Store, open_memory};

    /// Rows over revisions 1 to 3: alice active with a grant in group web (host h1) and,
    /// from 2, one in group db (host h2, removed at 3); bob disabled at 2, signed off at 2
    /// and re-enabled at 3; CA `old` withdrawn at 2; a serial revocation from 2.
    pub(in crate::store) async fn seeded() -> Store {
        let store = open_memory().await;
        let bytes = match store.backend() {
            Backend::Sqlite => "X'0102'",
            Backend::Postgres => "'\\x0102'",
        };
        for sql in [
            "INSERT INTO revisions (revision, created_at, actor, summary)
             VALUES (1, 0, 'cli', ''), (2, 0, 'cli', ''), (3, 0, 'cli', '')",
            "INSERT INTO users (id, name, created_at) VALUES (1, 'alice', 0), (2, 'bob', 0)",
            "INSERT INTO user_status (user_id, status, since_rev, until_rev)
             VALUES (1, 'active', 1, NULL), (2, 'active', 1, 2), (2, 'disabled', 2, NULL)",
            "INSERT INTO hosts (id, hostname, created_at, removed_rev, online, agent_version)
             VALUES ('h1', 'web1', 0, NULL, TRUE, '1.0'), ('h2', 'db1', 0, 3, FALSE, NULL)",
            "INSERT INTO host_groups (id, name, created_at) VALUES (1, 'web', 0), (2, 'db', 0)",
            "INSERT INTO host_group_members (host_id, group_id, since_rev, until_rev)
             VALUES ('h1', 1, 1, NULL), ('h2', 2, 1, 3)",
            "INSERT INTO grants (id, user_id, account, group_id, not_after, since_rev)
             VALUES (1, 1, 'root', 1, NULL, 1), (2, 1, 'deploy', 2, 5000, 2)",
            "INSERT INTO grant_approvals (grant_id, user_id, fingerprint, public_key, signature,
               actor, created_at, since_rev) VALUES (1, 1, 'fp', 'pk', 'sig1', 'cli', 0, 2)",
            "INSERT INTO user_key_ids (user_id, key_id, since_rev) VALUES (1, 'alice', 1)",
            "INSERT INTO user_principals (user_id, principal, since_rev) VALUES (1, 'alice', 1)",
            "INSERT INTO user_keys (user_id, public_key, fingerprint, since_rev)
             VALUES (1, 'ssh-ed25519 AAAA', 'SHA256:a', 1)",
            "INSERT INTO trusted_cas (name, public_key, fingerprint, since_rev, until_rev)
             VALUES ('ca', 'ssh-ed25519 CA', 'SHA256:ca', 1, NULL),
                    ('old', 'ssh-ed25519 OLD', 'SHA256:old', 1, 2)",
            "INSERT INTO revocations (kind, ca_fingerprint, value, serial_lo, serial_hi, since_rev)
             VALUES ('serial', 'SHA256:ca', '', 5, 7, 2)",
        ] {
            store.exec_for_test(sql).await;
        }
        store
            .exec_for_test(&format!(
                "INSERT INTO signoffs (id, user_id, reason, actor, created_at, statement,
                   signature, since_rev, until_rev)
                 VALUES (1, 2, 'left', 'cli', 0, {bytes}, 'ssig', 2, 3)"
            ))
            .await;
        store
            .exec_for_test(
                "INSERT INTO reenable_approvals (signoff_id, fingerprint, public_key, signature,
                   actor, created_at, since_rev) VALUES (1, 'fp', 'pk', 'rsig', 'cli', 0, 3)",
            )
            .await;
        store
    }

    #[tokio::test]
    async fn every_view_statement_reads_its_rows() {
        let store = seeded().await;
        let mut c = store.conn().await.unwrap();
        let v = |mut x: Vec<i64>| {
            x.sort();
            x
        };
        assert!(
            super::host_membership_changed(c.db(), "h2", 2, 3)
                .await
                .unwrap()
        );
        assert!(
            !super::host_membership_changed(c.db(), "h1", 1, 3)
                .await
                .unwrap()
        );
        assert_eq!(
            super::hosts_with_membership_change(c.db(), 2, 3)
                .await
                .unwrap(),
            ["h2"]
        );
        assert_eq!(super::hosts_removed(c.db(), 2, 3).await.unwrap(), ["h2"]);
        assert_eq!(
            super::memberships_at(c.db(), 2).await.unwrap(),
            [("h1".to_owned(), 1), ("h2".to_owned(), 2)]
        );
        assert!(super::trusted_cas_changed(c.db(), 1, 2).await.unwrap());
        assert!(!super::trusted_cas_changed(c.db(), 2, 3).await.unwrap());
        assert_eq!(
            super::trusted_cas_at(c.db(), 2).await.unwrap(),
            ["ssh-ed25519 CA"]
        );
        let changed = super::revocations_changed(c.db(), 1, 2).await.unwrap();
        assert_eq!(changed.len(), 1);
        let r = &changed[0];
        assert_eq!(
            (
                r.kind.as_str(),
                r.ca_fingerprint.as_deref(),
                r.value.as_str()
            ),
            ("serial", Some("SHA256:ca"), "")
        );
        assert_eq!(
            (r.serial_lo, r.serial_hi, r.since_rev, r.until_rev),
            (Some(5), Some(7), 2, None)
        );
        assert_eq!(super::revocations_at(c.db(), 1).await.unwrap().len(), 0);
        assert_eq!(super::revocations_at(c.db(), 2).await.unwrap().len(), 1);
        assert_eq!(
            v(super::status_changed(c.db(), 1, 2).await.unwrap()),
            [2, 2]
        );
        assert_eq!(
            super::disabled_at(c.db(), 2).await.unwrap(),
            [(2, "bob".to_owned())]
        );
        let s = super::signoffs_changed(c.db(), 1, 2).await.unwrap();
        assert_eq!(
            (s[0].id, s[0].statement.as_slice(), s[0].signature.as_str()),
            (1, &[1u8, 2][..], "ssig")
        );
        assert_eq!((s[0].since_rev, s[0].until_rev), (2, Some(3)));
        assert_eq!(super::signoffs_at(c.db(), 2).await.unwrap().len(), 1);
        assert_eq!(super::signoffs_at(c.db(), 3).await.unwrap().len(), 0);
        assert_eq!(super::reenables_changed(c.db(), 2, 3).await.unwrap(), [1]);
        assert!(
            super::reenables_changed(c.db(), 1, 2)
                .await
                .unwrap()
                .is_empty()
        );
        let re = super::reenabled_at(c.db(), 3).await.unwrap();
        assert_eq!((re[0].id, re[0].person.as_str()), (1, "bob"));
        assert_eq!(re[0].statement, [1, 2]);
        assert_eq!(
            super::reenable_approvals_at(c.db(), 3).await.unwrap(),
            [(1, "rsig".to_owned())]
        );
        assert_eq!(v(super::touched_users(c.db(), 1, 2).await.unwrap()), [1, 2]);
        assert_eq!(v(super::touched_users(c.db(), 0, 1).await.unwrap()), [1, 2]);
        assert!(super::touched_users(c.db(), 3, 4).await.unwrap().is_empty());
        let g = super::grants_of_host_at(c.db(), "h1", 2).await.unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(
            (g[0].account.as_str(), g[0].user_name.as_str(), g[0].user_id),
            ("root", "alice", 1)
        );
        assert_eq!(
            (g[0].not_after, g[0].grant_id, g[0].group_name.as_str()),
            (None, 1, "web")
        );
        let mut g = super::grants_of_groups_at(c.db(), &[1, 2], 2)
            .await
            .unwrap();
        g.sort_by_key(|g| g.grant_id);
        assert_eq!(
            g.iter()
                .map(|g| (g.grant_id, g.not_after))
                .collect::<Vec<_>>(),
            [(1, None), (2, Some(5000))]
        );
        assert!(
            super::grants_of_groups_at(c.db(), &[], 2)
                .await
                .unwrap()
                .is_empty()
        );
        // More groups than one statement takes: the lists are chunked.
        let many: Vec<i64> = (3..2503).chain([2]).collect();
        assert_eq!(
            super::grants_of_groups_at(c.db(), &many, 2)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            super::grant_approvals_at(c.db(), 2).await.unwrap(),
            [(1, "sig1".to_owned())]
        );
        let mut id = super::identity_at(c.db(), 1, 1).await.unwrap();
        id.sort();
        let tagged = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            id,
            [
                tagged("key_id", "alice"),
                tagged("principal", "alice"),
                tagged("public_key", "ssh-ed25519 AAAA"),
            ]
        );
    }
}
