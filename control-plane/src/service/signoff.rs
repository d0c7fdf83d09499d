//! Single sign-off: one request ends a person's access everywhere.
//!
//! A sign-off, in one transaction with its audit row and one new revision: disables the
//! person (their principals entries leave every host's view), revokes their key IDs (under
//! any CA) and plain keys (the KRL), and records a signed sign-off statement that every
//! host's view carries from that revision until the person is re-enabled. Each agent, once
//! it has applied the revision, ends every session of the identities the statement names and
//! reports what it ended; the sign-off is complete when every host enrolled at the time has
//! confirmed. A host that is offline receives the statement whenever it comes back, so
//! nothing depends on a one-shot order arriving before it expires.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use signoff_proto::orders::{self, SignoffStatement};
use signoff_proto::v1;
use sqlx::{Row, SqliteConnection};

use super::users::user_id;
use super::{Actor, Result, Service, ServiceError, stored_json, unsigned};
use crate::model::{Invalid, User, UserStatus, validate_text};

/// Where one host stands on one sign-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignoffHostState {
    /// The host applied the revision and ended every session of the person.
    Confirmed,
    /// The host is connected and has not confirmed yet.
    Pending,
    /// The host's agent is not connected; it converges when it comes back.
    Offline,
}

/// One host's part in a sign-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignoffHost {
    /// The host id.
    pub host: String,
    /// Where it stands.
    pub state: SignoffHostState,
    /// Unix seconds of its confirmation, once confirmed.
    pub confirmed_at: Option<i64>,
    /// Sessions it ended for this sign-off.
    pub killed_sessions: Vec<String>,
    /// What it reported when it could not enforce the statement.
    pub last_error: Option<String>,
}

/// A sign-off and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignoffRecord {
    /// Its id.
    pub id: i64,
    /// The person.
    pub user: String,
    /// Why.
    pub reason: String,
    /// Who signed them off.
    pub actor: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds at which every host had confirmed.
    pub completed_at: Option<i64>,
    /// The revision that carries it; a host that acked it has it.
    pub revision: i64,
    /// False once the person was re-enabled.
    pub in_force: bool,
    /// Key IDs the statement names.
    pub key_ids: Vec<String>,
    /// Plain-key fingerprints the statement names.
    pub key_fingerprints: Vec<String>,
    /// The hosts it waits for (every host enrolled when it was made, less removed ones).
    pub hosts: Vec<SignoffHost>,
}

impl SignoffRecord {
    /// How many hosts are in each state: (confirmed, pending, offline).
    pub fn tally(&self) -> (usize, usize, usize) {
        let count = |s| self.hosts.iter().filter(|h| h.state == s).count();
        (
            count(SignoffHostState::Confirmed),
            count(SignoffHostState::Pending),
            count(SignoffHostState::Offline),
        )
    }
}

impl Service {
    /// Signs a person off everywhere (see the module docs). Idempotent: for a person who is
    /// signed off already, returns the existing record and changes nothing.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, user))]
    pub async fn sign_off(&self, actor: &Actor, user: &str, reason: &str) -> Result<SignoffRecord> {
        Ok(self.sign_off_once(actor, user, reason).await?.0)
    }

    /// [`Service::sign_off`], also saying whether this call made the sign-off (`true`) or
    /// found one in force (`false`). Decided inside the write transaction, so of concurrent
    /// repeats exactly one is told it made it — an adapter comparing "before" and "after"
    /// reads would tell several.
    pub async fn sign_off_once(
        &self,
        actor: &Actor,
        user: &str,
        reason: &str,
    ) -> Result<(SignoffRecord, bool)> {
        validate_text("reason", reason, 1024)?;
        if reason.trim().is_empty() {
            return Err(Invalid::new("reason", "say why the person is signed off").into());
        }
        let signer = self.order_signer()?;
        let mut w = self.write(actor, &format!("sign off {user}"), true).await?;
        let rev = w.rev();
        let now = w.now;
        let uid = user_id(w.tx.db(), user).await?;
        if let Some(existing) = live_signoff(&mut w.tx, uid).await? {
            // Dropping the write rolls back the revision it allocated.
            drop(w);
            return Ok((self.get_signoff(existing).await?, false));
        }

        let key_ids: BTreeSet<String> = live_values(&mut w.tx, "user_key_ids", "key_id", uid)
            .await?
            .into_iter()
            .collect();
        let keys = live_plain_keys(&mut w.tx, uid).await?;
        // Disabled (unless an admin already did): principals entries leave every view.
        disable(&mut w.tx, uid, rev).await?;

        let id = next_signoff_id(&mut w.tx).await?;
        let statement = SignoffStatement {
            signoff_id: unsigned("signoff id", id)?,
            user: user.to_owned(),
            reason: reason.to_owned(),
            operator: actor.0.clone(),
            issued_at: unsigned("clock", now)?,
            key_ids: key_ids.iter().cloned().collect(),
            key_fingerprints: keys.iter().map(|(fp, _)| fp.clone()).collect(),
        };
        let bytes = statement
            .encode()
            .map_err(|e| Invalid::new("sign-off", e.to_string()))?;
        let signature = orders::sign(&signer, &bytes)
            .map_err(|e| ServiceError::Conflict(format!("cannot sign the statement: {e}")))?;
        let row = NewSignoff {
            id,
            uid,
            reason,
            actor,
            now,
            statement: &bytes,
            signature: &signature,
            rev,
        };
        insert_signoff(&mut w.tx, &row).await?;
        // Every key ID under any CA and every plain key, unless already revoked.
        let revocations: Vec<(&str, &str)> = key_ids
            .iter()
            .map(|k| ("key_id", k.as_str()))
            .chain(keys.iter().map(|(_, line)| ("key", line.as_str())))
            .collect();
        let added = revoke_for_signoff(&mut w.tx, &row, &revocations).await?;
        let hosts = wait_for_hosts(&mut w.tx, id, now).await?;
        w.commit(
            "user.signoff",
            &format!("user:{user}"),
            reason,
            serde_json::json!({
                "signoff": id,
                "key_ids": key_ids,
                "key_fingerprints": statement.key_fingerprints,
                "revocations_added": added,
                "hosts": hosts,
            }),
        )
        .await?;
        self.signoff_progressed();
        Ok((self.get_signoff(id).await?, true))
    }

    /// A sign-off by id.
    pub async fn get_signoff(&self, id: i64) -> Result<SignoffRecord> {
        let mut conn = self.pool().acquire().await?;
        load(&mut conn, id).await
    }

    /// The latest sign-off of a person, if they were ever signed off.
    pub async fn latest_signoff(&self, user: &str) -> Result<Option<SignoffRecord>> {
        let mut conn = self.pool().acquire().await?;
        let uid = user_id(crate::store::Db::Sqlite(&mut conn), user).await?;
        let id: Option<i64> =
            sqlx::query("SELECT id FROM signoffs WHERE user_id = ? ORDER BY id DESC LIMIT 1")
                .bind(uid)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.get(0));
        match id {
            Some(id) => Ok(Some(load(&mut conn, id).await?)),
            None => Ok(None),
        }
    }

    /// The people a sign-off is in force for (signed off, not re-enabled since), however
    /// old the sign-off: the People page filters by it.
    pub async fn signed_off_users(&self) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query(
            "SELECT u.name FROM signoffs s JOIN users u ON u.id = s.user_id
             WHERE s.until_rev IS NULL",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The newest 500 sign-offs, newest first, in two queries whatever their number (the
    /// dashboard reads this on every live refresh).
    pub async fn list_signoffs(&self) -> Result<Vec<SignoffRecord>> {
        let mut conn = self.pool().acquire().await?;
        load_many(&mut conn, None, LIST_SIGNOFFS_LIMIT).await
    }

    /// A receiver whose value changes whenever any sign-off's progress does.
    pub fn watch_signoffs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.signoff_progress.subscribe()
    }

    pub(crate) fn signoff_progressed(&self) {
        self.inner
            .signoff_progress
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Re-enables a signed-off (or disabled) person: withdraws the sign-off statement and
    /// the revocations the sign-off added, and makes them active again. Its own, audited
    /// action; nothing else re-enables a signed-off person.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, user))]
    pub async fn reenable_user(&self, actor: &Actor, user: &str, reason: &str) -> Result<User> {
        validate_text("reason", reason, 1024)?;
        if reason.trim().is_empty() {
            return Err(Invalid::new("reason", "say why the person is re-enabled").into());
        }
        let mut w = self
            .write(actor, &format!("re-enable {user}"), true)
            .await?;
        let rev = w.rev();
        let uid = user_id(w.tx.db(), user).await?;
        let signoff = live_signoff(&mut w.tx, uid).await?;
        let status: String =
            sqlx::query("SELECT status FROM user_status WHERE user_id = ? AND until_rev IS NULL")
                .bind(uid)
                .fetch_one(&mut *w.tx)
                .await?
                .get(0);
        if signoff.is_none() && status == UserStatus::Active.as_str() {
            return Err(ServiceError::Conflict(format!(
                "user {user:?} is active and not signed off"
            )));
        }
        let mut withdrawn = 0;
        if let Some(id) = signoff {
            sqlx::query("UPDATE signoffs SET until_rev = ? WHERE id = ?")
                .bind(rev)
                .bind(id)
                .execute(&mut *w.tx)
                .await?;
            withdrawn = sqlx::query(
                "UPDATE revocations SET until_rev = ? WHERE until_rev IS NULL AND id IN
                   (SELECT revocation_id FROM signoff_revocations
                    WHERE signoff_id = ? AND added = 1)",
            )
            .bind(rev)
            .bind(id)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        }
        if status != UserStatus::Active.as_str() {
            set_status(&mut w.tx, uid, UserStatus::Active, rev).await?;
        }
        w.commit(
            "user.reenable",
            &format!("user:{user}"),
            reason,
            serde_json::json!({ "signoff": signoff, "revocations_withdrawn": withdrawn }),
        )
        .await?;
        self.signoff_progressed();
        self.get_user(user).await
    }

    /// Records what a host did about a sign-off statement. The host confirms once it has
    /// applied the sign-off's revision (its ack comes first on the stream) and ended every
    /// matching session; the sign-off completes with the last host's confirmation.
    /// Returns the sign-off's revision when this result is the one that confirmed the host.
    #[tracing::instrument(skip_all, fields(host, signoff = r.signoff_id))]
    pub async fn record_signoff_result(
        &self,
        host: &str,
        r: &v1::SignoffResult,
    ) -> Result<Option<i64>> {
        let Ok(id) = i64::try_from(r.signoff_id) else {
            return Ok(None);
        };
        // The buffered ack is read before the store: a flush commits the ack and only then
        // drops it from the buffer, so read in this order one of the two always has it.
        // (Read the other way round, a flush between the two reads loses the ack, and the
        // host's confirmation with it.)
        let buffered = self.buffered_ack(host).unwrap_or(0);
        let mut conn = self.pool().acquire().await?;
        let row = sqlx::query(
            "SELECT sh.confirmed_at, sh.ended_sessions, s.since_rev, h.acked_revision
             FROM signoff_hosts sh JOIN signoffs s ON s.id = sh.signoff_id
             JOIN hosts h ON h.id = sh.host_id
             WHERE sh.signoff_id = ? AND sh.host_id = ?",
        )
        .bind(id)
        .bind(host)
        .fetch_optional(&mut *conn)
        .await?;
        // A host enrolled after the sign-off enforces it too, but it is not waited for.
        let Some(row) = row else { return Ok(None) };
        let confirmed_at: Option<i64> = row.get(0);
        let mut ended: BTreeSet<String> =
            stored_json("signoff_hosts.ended_sessions", &row.get::<String, _>(1))?;
        let new_kills: Vec<&String> = r
            .ended_sessions
            .iter()
            .filter(|s| !ended.contains(*s))
            .collect();
        let since_rev: i64 = row.get(2);
        let acked: i64 = row.get::<i64, _>(3).max(buffered);
        let done = r.enforced && r.remaining_pids.is_empty() && acked >= since_rev;
        if confirmed_at.is_some() && new_kills.is_empty() {
            return Ok(None);
        }
        let now = self.now();
        ended.extend(r.ended_sessions.iter().cloned());
        let error = (!done).then(|| {
            if !r.refusal.is_empty() {
                r.refusal.clone()
            } else if !r.remaining_pids.is_empty() {
                format!("processes still running: {:?}", r.remaining_pids)
            } else {
                format!("reported before acking revision {since_rev} (acked {acked})")
            }
        });
        sqlx::query(
            "UPDATE signoff_hosts SET ended_sessions = ?, last_error = ?,
               confirmed_at = coalesce(confirmed_at, ?)
             WHERE signoff_id = ? AND host_id = ?",
        )
        .bind(serde_json::to_string(&ended).unwrap_or_else(|_| "[]".into()))
        .bind(&error)
        .bind(done.then_some(now))
        .bind(id)
        .bind(host)
        .execute(&mut *conn)
        .await?;
        if done {
            sqlx::query(
                "UPDATE signoffs SET completed_at = ? WHERE id = ? AND completed_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM signoff_hosts sh JOIN hosts h ON h.id = sh.host_id
                                   WHERE sh.signoff_id = ? AND sh.confirmed_at IS NULL
                                     AND h.removed_rev IS NULL)",
            )
            .bind(now)
            .bind(id)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        drop(conn);
        if !new_kills.is_empty() || error.is_some() {
            // What a host ended, or could not, belongs in the audit log.
            let actor = Actor(format!("agent:{host}"));
            let mut w = self.write(&actor, "signoff.enforced", false).await?;
            // A refusal or processes left: the sign-off could not complete on this host.
            if !r.refusal.is_empty() || !r.remaining_pids.is_empty() {
                let person: Option<String> = sqlx::query_scalar(
                    "SELECT u.name FROM signoffs s JOIN users u ON u.id = s.user_id WHERE s.id = ?",
                )
                .bind(id)
                .fetch_optional(&mut *w.tx)
                .await?;
                let summary = format!(
                    "sign-off {id} could not complete on {host}: {}",
                    error.as_deref().unwrap_or("")
                );
                let alert = self.alert_rules().on_incomplete(
                    host,
                    person.as_deref(),
                    summary,
                    serde_json::json!({"signoff": id, "refusal": r.refusal,
                        "remaining_pids": r.remaining_pids}),
                );
                crate::alerts::record(&mut w.tx, w.now, alert.as_slice()).await?;
            }
            w.commit(
                "signoff.enforced",
                &format!("signoff:{id}"),
                &r.refusal,
                serde_json::json!({
                    "host": host, "ended_sessions": r.ended_sessions,
                    "ended_pids": r.ended_pids, "remaining_pids": r.remaining_pids,
                    "enforced": r.enforced,
                }),
            )
            .await?;
        }
        self.signoff_progressed();
        Ok((done && confirmed_at.is_none()).then_some(since_rev))
    }

    pub(super) fn order_signer(&self) -> Result<ssh_key::PrivateKey> {
        self.inner
            .order_signer
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| {
                ServiceError::Conflict("this server has no order-signing key loaded".into())
            })
    }
}

/// True when the person has a sign-off in force (only `reenable_user` lifts it).
pub(super) async fn is_signed_off(conn: &mut SqliteConnection, uid: i64) -> Result<bool> {
    Ok(live_signoff(conn, uid).await?.is_some())
}

async fn live_signoff(conn: &mut SqliteConnection, uid: i64) -> Result<Option<i64>> {
    Ok(
        sqlx::query("SELECT id FROM signoffs WHERE user_id = ? AND until_rev IS NULL")
            .bind(uid)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.get(0)),
    )
}

async fn live_values(
    conn: &mut SqliteConnection,
    table: &str,
    column: &str,
    uid: i64,
) -> Result<Vec<String>> {
    let sql = format!("SELECT {column} FROM {table} WHERE user_id = ? AND until_rev IS NULL");
    Ok(sqlx::query(&sql)
        .bind(uid)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn set_status(
    conn: &mut SqliteConnection,
    uid: i64,
    status: UserStatus,
    rev: i64,
) -> Result<()> {
    sqlx::query("UPDATE user_status SET until_rev = ? WHERE user_id = ? AND until_rev IS NULL")
        .bind(rev)
        .bind(uid)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO user_status (user_id, status, since_rev) VALUES (?, ?, ?)")
        .bind(uid)
        .bind(status.as_str())
        .bind(rev)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The live plain keys of a person: (SHA256 fingerprint, OpenSSH line).
async fn live_plain_keys(conn: &mut SqliteConnection, uid: i64) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query(
        "SELECT fingerprint, public_key FROM user_keys WHERE user_id = ? AND until_rev IS NULL",
    )
    .bind(uid)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// Disables the person from `rev`, unless they are disabled already.
async fn disable(conn: &mut SqliteConnection, uid: i64, rev: i64) -> Result<()> {
    let status: String =
        sqlx::query("SELECT status FROM user_status WHERE user_id = ? AND until_rev IS NULL")
            .bind(uid)
            .fetch_one(&mut *conn)
            .await?
            .get(0);
    if status != UserStatus::Disabled.as_str() {
        set_status(conn, uid, UserStatus::Disabled, rev).await?;
    }
    Ok(())
}

async fn next_signoff_id(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(sqlx::query("SELECT ifnull(max(id), 0) + 1 FROM signoffs")
        .fetch_one(&mut *conn)
        .await?
        .get(0))
}

/// A sign-off's row as it is written.
struct NewSignoff<'a> {
    id: i64,
    uid: i64,
    reason: &'a str,
    actor: &'a Actor,
    now: i64,
    statement: &'a [u8],
    signature: &'a str,
    rev: i64,
}

async fn insert_signoff(conn: &mut SqliteConnection, s: &NewSignoff<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO signoffs (id, user_id, reason, actor, created_at, statement, signature, since_rev)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(s.id)
    .bind(s.uid)
    .bind(s.reason)
    .bind(&s.actor.0)
    .bind(s.now)
    .bind(s.statement)
    .bind(s.signature)
    .bind(s.rev)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes each (kind, value) under any CA for the sign-off, unless a live revocation
/// already does; either way the sign-off keeps it in force (`signoff_revocations`), and
/// withdraws on re-enable only those it added. Returns how many it added.
async fn revoke_for_signoff(
    conn: &mut SqliteConnection,
    signoff: &NewSignoff<'_>,
    revocations: &[(&str, &str)],
) -> Result<usize> {
    let mut added = 0usize;
    for &(kind, value) in revocations {
        let existing: Option<i64> = sqlx::query(
            "SELECT id FROM revocations WHERE kind = ? AND ca_fingerprint IS NULL
               AND value = ? AND until_rev IS NULL",
        )
        .bind(kind)
        .bind(value)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.get(0));
        let (rid, ours) = match existing {
            // Not ours to withdraw on re-enable, but ours to keep while in force.
            Some(rid) => (rid, false),
            None => {
                let rid = sqlx::query(
                    "INSERT INTO revocations (kind, ca_fingerprint, value, reason, since_rev)
                     VALUES (?, NULL, ?, ?, ?)",
                )
                .bind(kind)
                .bind(value)
                .bind(format!("sign-off #{}: {}", signoff.id, signoff.reason))
                .bind(signoff.rev)
                .execute(&mut *conn)
                .await?
                .last_insert_rowid();
                added += 1;
                (rid, true)
            }
        };
        sqlx::query(
            "INSERT INTO signoff_revocations (signoff_id, revocation_id, added) VALUES (?, ?, ?)",
        )
        .bind(signoff.id)
        .bind(rid)
        .bind(ours)
        .execute(&mut *conn)
        .await?;
    }
    Ok(added)
}

/// Records every live host as one the sign-off waits for; with none, it is complete now.
/// Returns how many.
async fn wait_for_hosts(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<u64> {
    let hosts = sqlx::query(
        "INSERT INTO signoff_hosts (signoff_id, host_id)
         SELECT ?, id FROM hosts WHERE removed_rev IS NULL",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if hosts == 0 {
        sqlx::query("UPDATE signoffs SET completed_at = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(hosts)
}

/// How many sign-offs a list shows: the newest.
const LIST_SIGNOFFS_LIMIT: i64 = 500;

async fn load(conn: &mut SqliteConnection, id: i64) -> Result<SignoffRecord> {
    load_many(conn, Some(id), 1)
        .await?
        .pop()
        .ok_or_else(|| ServiceError::not_found("sign-off", id.to_string()))
}

/// The sign-off `only` (or, with `None`, the newest `limit`), newest first, in two queries
/// whatever their number: the sign-offs, then the hosts of all of them.
async fn load_many(
    conn: &mut SqliteConnection,
    only: Option<i64>,
    limit: i64,
) -> Result<Vec<SignoffRecord>> {
    let rows = sqlx::query(
        "SELECT s.id, u.name, s.reason, s.actor, s.created_at, s.completed_at, s.since_rev,
                s.until_rev IS NULL, s.statement
         FROM signoffs s JOIN users u ON u.id = s.user_id
         WHERE ?1 IS NULL OR s.id = ?1 ORDER BY s.id DESC LIMIT ?2",
    )
    .bind(only)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let host_rows = sqlx::query(
        "SELECT sh.signoff_id, sh.host_id, sh.confirmed_at, sh.ended_sessions, sh.last_error,
                h.online
         FROM signoff_hosts sh JOIN hosts h ON h.id = sh.host_id
         WHERE sh.signoff_id IN
               (SELECT id FROM signoffs WHERE ?1 IS NULL OR id = ?1 ORDER BY id DESC LIMIT ?2)
           AND h.removed_rev IS NULL
         ORDER BY sh.signoff_id, sh.host_id",
    )
    .bind(only)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut hosts: std::collections::HashMap<i64, Vec<SignoffHost>> =
        std::collections::HashMap::new();
    for h in &host_rows {
        let confirmed_at: Option<i64> = h.get(2);
        let online: bool = h.get(5);
        hosts.entry(h.get(0)).or_default().push(SignoffHost {
            host: h.get(1),
            state: match (confirmed_at, online) {
                (Some(_), _) => SignoffHostState::Confirmed,
                (None, true) => SignoffHostState::Pending,
                (None, false) => SignoffHostState::Offline,
            },
            confirmed_at,
            killed_sessions: stored_json("signoff_hosts.ended_sessions", &h.get::<String, _>(3))?,
            last_error: h.get(4),
        });
    }
    rows.iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let statement = SignoffStatement::decode(&r.get::<Vec<u8>, _>(8))
                .map_err(|e| ServiceError::corrupt("signoffs.statement", e))?;
            let hosts = hosts.remove(&id).unwrap_or_default();
            let mut completed_at: Option<i64> = r.get(5);
            if completed_at.is_none() && hosts.iter().all(|h| h.confirmed_at.is_some()) {
                // Every host still enrolled has confirmed (the others were removed since).
                completed_at = hosts
                    .iter()
                    .filter_map(|h| h.confirmed_at)
                    .max()
                    .or(Some(r.get(4)));
            }
            Ok(SignoffRecord {
                id,
                user: r.get(1),
                reason: r.get(2),
                actor: r.get(3),
                created_at: r.get(4),
                completed_at,
                revision: r.get(6),
                in_force: r.get(7),
                key_ids: statement.key_ids,
                key_fingerprints: statement.key_fingerprints,
                hosts,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
