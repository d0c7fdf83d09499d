//! Hosts, host groups and their memberships, and what agents' contact records of a host
//! (acks, online, version).

use super::{Db, on};

/// A host's row, without its groups.
#[derive(Debug, sqlx::FromRow)]
pub struct HostRow {
    /// Id.
    pub id: String,
    /// Display name.
    pub hostname: String,
    /// Last revision its agent acked.
    pub acked_revision: i64,
    /// Unix seconds of its agent's last contact.
    pub last_contact: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Adds a host group; a name already taken fails with a unique violation.
pub async fn insert_group(db: Db<'_>, name: &str, now: i64) -> sqlx::Result<()> {
    on!(db, c => sqlx::query("INSERT INTO host_groups (name, created_at) VALUES ($1, $2)")
        .bind(name)
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Every group with each of its live members, (group, host), by group then host; a group
/// with no members comes once with no host.
pub async fn groups_with_members(db: Db<'_>) -> sqlx::Result<Vec<(String, Option<String>)>> {
    on!(db, c => sqlx::query_as(
        "SELECT g.name, m.host_id FROM host_groups g
         LEFT JOIN host_group_members m ON m.group_id = g.id AND m.until_rev IS NULL
         ORDER BY g.name, m.host_id",
    )
    .fetch_all(&mut *c)
    .await)
}

/// The id of the group named `name`, if there is one.
pub async fn group_id(db: Db<'_>, name: &str) -> sqlx::Result<Option<i64>> {
    on!(db, c => sqlx::query_scalar("SELECT id FROM host_groups WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await)
}

/// Adds a host; an id already used (even by a removed host) fails with a unique violation.
pub async fn insert(db: Db<'_>, id: &str, hostname: &str, now: i64) -> sqlx::Result<()> {
    on!(db, c => sqlx::query("INSERT INTO hosts (id, hostname, created_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(hostname)
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Makes host `host` a member of group `group_id` from revision `rev`.
pub async fn join_group(db: Db<'_>, host: &str, group_id: i64, rev: i64) -> sqlx::Result<()> {
    on!(db, c => sqlx::query(
        "INSERT INTO host_group_members (host_id, group_id, since_rev) VALUES ($1, $2, $3)",
    )
    .bind(host)
    .bind(group_id)
    .bind(rev)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Ends every live group membership of `host` at revision `rev`; returns how many ended.
pub async fn leave_groups(db: Db<'_>, host: &str, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE host_group_members SET until_rev = $1 WHERE host_id = $2 AND until_rev IS NULL",
    )
    .bind(rev)
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Marks `host` removed at revision `rev`; returns the rows changed (0: no such host).
pub async fn remove(db: Db<'_>, host: &str, rev: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query("UPDATE hosts SET removed_rev = $1 WHERE id = $2")
        .bind(rev)
        .bind(host)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
}

/// Whether host `id` exists and has not been removed.
pub async fn is_live(db: Db<'_>, id: &str) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM hosts WHERE id = $1 AND removed_rev IS NULL)",
    )
    .bind(id)
    .fetch_one(&mut *c)
    .await)
}

/// Host `id`'s row, removed or not.
pub async fn get(db: Db<'_>, id: &str) -> sqlx::Result<Option<HostRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, hostname, acked_revision, last_contact, created_at FROM hosts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await)
}

/// The names of host `id`'s live groups, by name.
pub async fn group_names(db: Db<'_>, id: &str) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "SELECT g.name FROM host_group_members m JOIN host_groups g ON g.id = m.group_id
         WHERE m.host_id = $1 AND m.until_rev IS NULL ORDER BY g.name",
    )
    .bind(id)
    .fetch_all(&mut *c)
    .await)
}

/// Every live host's live group memberships, (host, group), by host then group.
pub async fn live_memberships(db: Db<'_>) -> sqlx::Result<Vec<(String, String)>> {
    on!(db, c => sqlx::query_as(
        "SELECT m.host_id, g.name FROM host_group_members m
         JOIN host_groups g ON g.id = m.group_id
         JOIN hosts h ON h.id = m.host_id
         WHERE m.until_rev IS NULL AND h.removed_rev IS NULL
         ORDER BY m.host_id, g.name",
    )
    .fetch_all(&mut *c)
    .await)
}

/// Every live host's row, by id.
pub async fn live(db: Db<'_>) -> sqlx::Result<Vec<HostRow>> {
    on!(db, c => sqlx::query_as(
        "SELECT id, hostname, acked_revision, last_contact, created_at FROM hosts
         WHERE removed_rev IS NULL ORDER BY id",
    )
    .fetch_all(&mut *c)
    .await)
}

/// Marks `host`'s agent connected or not; a host going offline keeps the time it first
/// went offline (`now` if it was online). Returns the rows changed (0: no such host).
pub async fn set_online(db: Db<'_>, host: &str, online: bool, now: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE hosts SET online = $1,
            offline_since = CASE WHEN $1 THEN NULL ELSE coalesce(offline_since, $2) END
         WHERE id = $3",
    )
    .bind(online)
    .bind(now)
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Marks offline, since `now`, every online host whose stream no live replica holds: held
/// by `restarted` (this replica's previous run, whose streams ended with it), by a replica
/// whose lease lapsed before `now`, or by none. Returns their ids.
pub async fn offline_unheld(
    db: Db<'_>,
    restarted: Option<&str>,
    now: i64,
) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar(
        "UPDATE hosts SET online = FALSE, offline_since = coalesce(offline_since, $1)
         WHERE online AND (replica IS NULL OR replica = $2
             OR replica NOT IN (SELECT id FROM replicas WHERE lease_until >= $1))
         RETURNING id",
    )
    .bind(now)
    .bind(restarted)
    .fetch_all(&mut *c)
    .await)
}

/// Marks `host` offline since `now` unless another replica than `replica` holds its
/// stream (a stream that ended after the agent connected elsewhere changes nothing).
/// Returns whether the host's row was changed.
pub async fn disconnected(db: Db<'_>, host: &str, replica: &str, now: i64) -> sqlx::Result<bool> {
    on!(db, c => sqlx::query(
        "UPDATE hosts SET online = FALSE, offline_since = coalesce(offline_since, $1)
         WHERE id = $2 AND NOT (online AND replica IS NOT NULL AND replica <> $3)",
    )
    .bind(now)
    .bind(host)
    .bind(replica)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected() > 0))
}

/// Marks `host` online at `replica` (it holds the host's stream) unless it was removed or
/// is online at another replica (the agent connected there since: this stream is a dead
/// one that has not noticed yet).
pub async fn held_by(db: Db<'_>, host: &str, replica: &str) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE hosts SET online = TRUE, offline_since = NULL, replica = $1
         WHERE id = $2 AND removed_rev IS NULL
           AND NOT (online AND replica IS NOT NULL AND replica <> $1)",
    )
    .bind(replica)
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// The hosts recorded online with their stream held by `replica`.
pub async fn online_at(db: Db<'_>, replica: &str) -> sqlx::Result<Vec<String>> {
    on!(db, c => sqlx::query_scalar("SELECT id FROM hosts WHERE online AND replica = $1")
        .bind(replica)
        .fetch_all(&mut *c)
        .await)
}

/// The replica holding `host`'s stream, if it is online.
pub async fn holder(db: Db<'_>, host: &str) -> sqlx::Result<Option<String>> {
    on!(db, c => sqlx::query_scalar("SELECT replica FROM hosts WHERE id = $1 AND online")
        .bind(host)
        .fetch_optional(&mut *c)
        .await)
    .map(Option::flatten)
}

/// Records a buffered ack: the host's last contact and acked revision only move forward.
/// Returns the rows changed (0: no such host).
pub async fn note_ack(db: Db<'_>, host: &str, revision: i64, at: i64) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE hosts SET
            last_contact = CASE WHEN coalesce(last_contact, 0) >= $1
                THEN coalesce(last_contact, 0) ELSE $1 END,
            acked_revision = CASE WHEN acked_revision >= $2 THEN acked_revision ELSE $2 END
         WHERE id = $3",
    )
    .bind(at)
    .bind(revision)
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Records an agent's contact at `now`: its acked revision (never going back), version
/// and certificate expiry, each only when given. Returns the rows changed (0: no such host).
pub async fn record_contact(
    db: Db<'_>,
    host: &str,
    now: i64,
    acked_revision: Option<i64>,
    agent_version: Option<&str>,
    cert_not_after: Option<i64>,
) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE hosts SET last_contact = $1,
            acked_revision = CASE WHEN acked_revision >= coalesce($2, acked_revision)
                THEN acked_revision ELSE $2 END,
            agent_version = coalesce($3, agent_version),
            cert_not_after = coalesce($4, cert_not_after)
         WHERE id = $5",
    )
    .bind(now)
    .bind(acked_revision)
    .bind(agent_version)
    .bind(cert_not_after)
    .bind(host)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Records that `host`'s agent connected at `now` to `replica`: online there, its applied
/// revision (never going back), its version, and its certificate expiry when given. Returns the rows
/// changed (0: no such host).
pub async fn connected(
    db: Db<'_>,
    host: &str,
    (replica, now): (&str, i64),
    applied_revision: i64,
    agent_version: &str,
    cert_not_after: Option<i64>,
) -> sqlx::Result<u64> {
    on!(db, c => sqlx::query(
        "UPDATE hosts SET last_contact = $1, online = TRUE, offline_since = NULL,
            acked_revision = CASE WHEN acked_revision >= $2 THEN acked_revision ELSE $2 END,
            agent_version = $3,
            cert_not_after = coalesce($4, cert_not_after),
            replica = $6
         WHERE id = $5",
    )
    .bind(now)
    .bind(applied_revision)
    .bind(agent_version)
    .bind(cert_not_after)
    .bind(host)
    .bind(replica)
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))
}

/// Whether `host`'s agent is marked online (`None`: no such host).
#[cfg(test)]
pub async fn online(db: Db<'_>, host: &str) -> sqlx::Result<Option<bool>> {
    on!(db, c => sqlx::query_scalar("SELECT online FROM hosts WHERE id = $1")
        .bind(host)
        .fetch_optional(&mut *c)
        .await)
}
