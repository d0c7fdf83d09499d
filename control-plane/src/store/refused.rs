//! What refused attempts are matched against (the person a key names), and the events the
//! refused-attempt and timeline views read.

use super::{Db, on, postgres, sqlite};

/// The person a refused certificate's key ID (or, failing that, a plain key's fingerprint)
/// names, live or not (the live or latest holder first): (name, live status, `active` when
/// none is recorded). An empty key ID or fingerprint matches nothing.
pub async fn person(
    db: Db<'_>,
    key_id: &str,
    fingerprint: &str,
) -> sqlx::Result<Option<(String, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT u.name, coalesce((SELECT status FROM user_status s
                 WHERE s.user_id = u.id AND s.until_rev IS NULL), 'active')
         FROM users u WHERE u.id = coalesce(
            (SELECT k.user_id FROM user_key_ids k WHERE k.key_id = $1 AND $1 <> ''
              ORDER BY k.until_rev IS NULL DESC, k.since_rev DESC LIMIT 1),
            (SELECT k.user_id FROM user_keys k WHERE k.fingerprint = $2 AND $2 <> ''
              ORDER BY k.until_rev IS NULL DESC, k.since_rev DESC LIMIT 1))",
    )
    .bind(key_id)
    .bind(fingerprint)
    .fetch_optional(&mut *c)
    .await)
}

/// The latest events of kind `kind`, newest first, at most `limit`: (id, at, kind, data).
pub async fn latest_of_kind(
    db: Db<'_>,
    kind: &str,
    limit: i64,
) -> sqlx::Result<Vec<(i64, i64, String, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, at, kind, data FROM events WHERE kind = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(kind)
    .bind(limit)
    .fetch_all(&mut *c)
    .await)
}

/// A person's timeline, newest first, at most `limit`: the sessions started as `name`,
/// the refused attempts and alerts naming them, and the audit events whose target is
/// `target`: (id, at, kind, data).
pub async fn timeline(
    db: Db<'_>,
    name: &str,
    target: &str,
    limit: i64,
) -> sqlx::Result<Vec<(i64, i64, String, String)>> {
    let sql = match db {
        Db::Sqlite(_) => sqlite::PERSON_TIMELINE,
        Db::Postgres(_) => postgres::PERSON_TIMELINE,
    };
    on!(db, c => sqlx::query_as(sql)
        .bind(name)
        .bind(target)
        .bind(limit)
        .fetch_all(&mut *c)
        .await)
}
