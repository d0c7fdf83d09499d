//! Sign-offs: the statements, the hosts each waits for, the revocations each keeps in
//! force.

use super::{Db, on};

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

/// Every statement of the stores this file's sign-offs touch (signoffs, revocations,
/// refused, alerts, webhooks, witness), run once on the test backend: with
/// `SIGNOFF_TEST_POSTGRES` set, on PostgreSQL, which the service's tests cannot reach yet
/// while other files still hold SQLite-only code.
#[cfg(test)]
mod tests {
    use super::super::{Backend, alerts, open_memory, refused, revocations, webhooks, witness};
    use super::*;

    #[tokio::test]
    async fn every_statement_runs_on_the_test_backend() {
        let store = open_memory().await;
        let blob = match store.backend() {
            Backend::Sqlite => "x'00'",
            Backend::Postgres => "'\\x00'::bytea",
        };
        for sql in [
            "INSERT INTO users (id, name, created_at) VALUES (1, 'mallory', 0)".to_owned(),
            "INSERT INTO user_status (user_id, status, since_rev) VALUES (1, 'active', 1)".into(),
            "INSERT INTO user_key_ids (user_id, key_id, since_rev) VALUES (1, 'm@corp', 1)".into(),
            "INSERT INTO user_keys (user_id, public_key, fingerprint, since_rev)
             VALUES (1, 'ssh-ed25519 AAAA', 'SHA256:m', 1)"
                .into(),
            "INSERT INTO hosts (id, hostname, created_at, acked_revision, online, offline_since)
             VALUES ('h1', '', 0, 3, FALSE, 10)"
                .into(),
            format!(
                "INSERT INTO kill_orders (nonce, host_id, session_id, operator, reason, created_at,
                   not_after, order_bytes, signature, state)
                 VALUES ('n1', 'h1', '1:1', 'cli', 'r', 20, 99, {blob}, 'sig', 'sent')"
            ),
            "INSERT INTO issued_certificates (serial, user_id, ca_fingerprint, key_fingerprint,
               public_key, principals, valid_after, valid_before, issued_at, issued_by)
             VALUES (7, 1, 'SHA256:ca', 'SHA256:m', 'k', '[]', 0, 500, 0, 'cli')"
                .into(),
        ] {
            store.exec_for_test(&sql).await;
        }
        let mut tx = store.begin_change().await.unwrap();

        // Sign-offs.
        let t = &mut tx;
        assert_eq!(
            crate::store::users::id_by_name(t.db(), "mallory")
                .await
                .unwrap(),
            Some(1)
        );
        assert_eq!(
            crate::store::users::id_by_name(t.db(), "nobody")
                .await
                .unwrap(),
            None
        );
        assert_eq!(live_key_ids(t.db(), 1).await.unwrap(), ["m@corp"]);
        assert_eq!(
            live_plain_keys(t.db(), 1).await.unwrap(),
            [("SHA256:m".to_owned(), "ssh-ed25519 AAAA".to_owned())]
        );
        use crate::store::users::{end_status, insert_status, status};
        assert_eq!(status(t.db(), 1).await.unwrap(), "active");
        end_status(t.db(), 1, 2).await.unwrap();
        insert_status(t.db(), 1, "disabled", 2).await.unwrap();
        assert_eq!(status(t.db(), 1).await.unwrap(), "disabled");
        let id = next_id(t.db()).await.unwrap();
        assert_eq!(id, 1);
        let new = New {
            id,
            uid: 1,
            reason: "left",
            actor: "cli",
            created_at: 5,
            statement: &[1, 2],
            signature: "sig",
            rev: 2,
        };
        assert_eq!(insert(t.db(), &new).await.unwrap(), 1);
        assert_eq!(live(t.db(), 1).await.unwrap(), Some(1));
        assert_eq!(latest(t.db(), 1).await.unwrap(), Some(1));
        assert_eq!(signed_off_names(t.db()).await.unwrap(), ["mallory"]);
        assert_eq!(person(t.db(), 1).await.unwrap().as_deref(), Some("mallory"));
        let r = revocations::New {
            kind: "key_id",
            ca: None,
            value: "m@corp",
            lo: None,
            hi: None,
            reason: "sign-off",
            rev: 2,
            valid_before: None,
        };
        let rid = revocations::insert(t.db(), &r).await.unwrap();
        assert_eq!(
            revocations::live_any_ca(t.db(), "key_id", "m@corp")
                .await
                .unwrap(),
            Some(rid)
        );
        assert_eq!(keep_revocation(t.db(), 1, rid, true).await.unwrap(), 1);
        assert_eq!(wait_for_live_hosts(t.db(), 1).await.unwrap(), 1);
        assert_eq!(
            revocations::enforced_signoff(t.db(), rid).await.unwrap(),
            Some((1, "mallory".to_owned()))
        );
        let (confirmed, ended, since, acked) =
            host_progress(t.db(), 1, "h1").await.unwrap().unwrap();
        assert_eq!(
            (confirmed, ended.as_str(), since, acked),
            (None, "[]", 2, 3)
        );
        assert_eq!(
            record_host_result(t.db(), 1, "h1", "[\"1:1\"]", Some("no"), None)
                .await
                .unwrap(),
            1
        );
        assert_eq!(complete_if_confirmed(t.db(), 1, 9).await.unwrap(), 0);
        let rows = page(t.db(), None, 500).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].in_force && rows[0].statement == [1, 2] && rows[0].user_name == "mallory");
        assert_eq!(page(t.db(), Some(1), 1).await.unwrap().len(), 1);
        let hosts = page_hosts(t.db(), Some(1), 1).await.unwrap();
        assert!(!hosts[0].online && hosts[0].last_error.as_deref() == Some("no"));
        record_host_result(t.db(), 1, "h1", "[]", None, Some(8))
            .await
            .unwrap();
        assert_eq!(complete_if_confirmed(t.db(), 1, 9).await.unwrap(), 1);
        assert_eq!(set_completed(t.db(), 1, 10).await.unwrap(), 1);

        // Alerts: the offline waits (the sign-off is confirmed now; the kill order is not).
        assert!(
            alerts::offline_signoff_waits(t.db(), 100, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            alerts::offline_kill_waits(t.db(), 100, 10).await.unwrap(),
            [("n1".to_owned(), "h1".to_owned(), "1:1".to_owned(), 20)]
        );
        assert!(
            alerts::offline_kill_waits(t.db(), 30, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            alerts::mark_kill_wait_alerted(t.db(), "n1", 100)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            alerts::mark_signoff_wait_alerted(t.db(), 1, "h1", 100)
                .await
                .unwrap(),
            1
        );
        let subject = serde_json::json!({"host": "h1", "n": 1});
        let data = serde_json::json!({"rule": "r", "person": "mallory", "subject": subject});
        crate::events::record(t.db(), 50, crate::events::Kind::Alert, &data)
            .await
            .unwrap();
        let listed = alerts::list(t.db(), true, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        let cursor = listed[0].id;
        assert!(
            alerts::raised_unacknowledged(t.db(), "r", &subject.to_string())
                .await
                .unwrap()
        );
        assert!(
            !alerts::raised_unacknowledged(t.db(), "r", "{\"n\":2}")
                .await
                .unwrap()
        );
        assert_eq!(
            alerts::rule_of(t.db(), cursor).await.unwrap().as_deref(),
            Some("r")
        );
        assert_eq!(alerts::rule_of(t.db(), cursor + 1).await.unwrap(), None);
        assert_eq!(
            alerts::acknowledge(t.db(), cursor, "soc", 60)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            alerts::acknowledge(t.db(), cursor, "soc", 61)
                .await
                .unwrap(),
            0
        );
        assert!(alerts::list(t.db(), true, 10).await.unwrap().is_empty());
        let all = alerts::list(t.db(), false, 10).await.unwrap();
        assert_eq!(
            (all[0].acked_by.as_deref(), all[0].acked_at),
            (Some("soc"), Some(60))
        );
        assert!(
            !alerts::raised_unacknowledged(t.db(), "r", &subject.to_string())
                .await
                .unwrap()
        );

        // Refused attempts and the timeline.
        assert_eq!(
            refused::person(t.db(), "m@corp", "").await.unwrap(),
            Some(("mallory".to_owned(), "disabled".to_owned()))
        );
        assert_eq!(
            refused::person(t.db(), "", "SHA256:m")
                .await
                .unwrap()
                .map(|p| p.0)
                .as_deref(),
            Some("mallory")
        );
        assert_eq!(refused::person(t.db(), "", "").await.unwrap(), None);
        assert_eq!(
            refused::latest_of_kind(t.db(), "alert", 5)
                .await
                .unwrap()
                .len(),
            1
        );
        let timeline = refused::timeline(t.db(), "mallory", "user:mallory", 5)
            .await
            .unwrap();
        assert_eq!(timeline.len(), 1);

        // Re-enable.
        assert_eq!(withdraw(t.db(), 1, 3).await.unwrap(), 1);
        assert_eq!(withdraw_added_revocations(t.db(), 1, 3).await.unwrap(), 1);
        assert_eq!(live(t.db(), 1).await.unwrap(), None);

        // Revocations and CAs.
        assert_eq!(
            revocations::insert_ca(t.db(), "ca", "ssh-ed25519 CA", "SHA256:ca", 3)
                .await
                .unwrap(),
            1
        );
        assert!(
            revocations::insert_ca(t.db(), "ca", "x", "y", 3)
                .await
                .is_err()
        );
        drop(tx);
        let mut tx = store.begin_change().await.unwrap();
        let t = &mut tx;
        revocations::insert_ca(t.db(), "ca", "ssh-ed25519 CA", "SHA256:ca", 3)
            .await
            .unwrap();
        assert_eq!(revocations::live_cas(t.db()).await.unwrap().len(), 1);
        assert_eq!(revocations::every_ca_key(t.db()).await.unwrap().len(), 1);
        assert_eq!(
            revocations::ca_key(t.db(), "SHA256:ca")
                .await
                .unwrap()
                .as_deref(),
            Some("ssh-ed25519 CA")
        );
        assert_eq!(
            revocations::resolve_ca(t.db(), "ca").await.unwrap(),
            Some(("SHA256:ca".to_owned(), "ca".to_owned()))
        );
        assert_eq!(
            revocations::issued_until(t.db(), "SHA256:ca", 1, 10)
                .await
                .unwrap(),
            Some(500)
        );
        assert_eq!(
            revocations::issued_until(t.db(), "SHA256:ca", 8, 10)
                .await
                .unwrap(),
            None
        );
        let serial = revocations::New {
            kind: "serial",
            ca: Some("SHA256:ca"),
            value: "",
            lo: Some(1),
            hi: Some(10),
            reason: "r",
            rev: 3,
            valid_before: Some(500),
        };
        let sid = revocations::insert(t.db(), &serial).await.unwrap();
        assert_eq!(revocations::live(t.db()).await.unwrap().len(), 1);
        assert!(!revocations::any_due(t.db(), 499).await.unwrap());
        assert!(revocations::any_due(t.db(), 500).await.unwrap());
        assert_eq!(revocations::expire_due(t.db(), 500, 4).await.unwrap(), 1);
        assert_eq!(
            revocations::withdrawn_by(t.db(), 4, 1000).await.unwrap(),
            [sid]
        );
        assert_eq!(revocations::withdraw(t.db(), sid, 5).await.unwrap(), 0);
        assert_eq!(revocations::withdraw_ca(t.db(), "ca", 5).await.unwrap(), 1);
        tx.commit().await.unwrap();

        // The webhook cache.
        let mut c = store.conn().await.unwrap();
        let db = c.db();
        assert_eq!(webhooks::claim(db, "aa", 10).await.unwrap(), 1);
        assert_eq!(webhooks::claim(c.db(), "aa", 10).await.unwrap(), 0);
        assert_eq!(webhooks::prune_expired(c.db(), 11).await.unwrap(), 1);
        assert_eq!(webhooks::claim(c.db(), "aa", 10).await.unwrap(), 1);
        assert_eq!(webhooks::release(c.db(), "aa").await.unwrap(), 1);

        // The witnessed head.
        assert_eq!(witness::latest_seq(c.db()).await.unwrap(), None);
        assert_eq!(witness::head_at(c.db(), 5).await.unwrap(), None);
        drop(c);
        for seq in 1..=3 {
            store
                .exec_for_test(&format!(
                    "INSERT INTO audit_log (seq, at, actor, action, target, reason, details,
                       revision, prev_hash, hash)
                     VALUES ({seq}, 0, 'a', 'x', 't', '', '{{}}', NULL, 'p{seq}', 'h{seq}')"
                ))
                .await;
        }
        let mut c = store.conn().await.unwrap();
        assert_eq!(witness::latest_seq(c.db()).await.unwrap(), Some(3));
        assert_eq!(
            witness::head_at(c.db(), 2).await.unwrap(),
            Some((2, "h2".to_owned()))
        );
        let links = witness::links(c.db(), 1, 3).await.unwrap();
        assert_eq!(links.iter().map(|l| l.seq).collect::<Vec<_>>(), [2, 3]);
    }
}
