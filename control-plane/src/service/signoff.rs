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

use super::users::user_id;
use super::{Actor, Result, Service, ServiceError, stored_json, unsigned};
use crate::model::{Invalid, User, UserStatus, validate_text};
use crate::store::{self, Db};

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
        if let Some(existing) = store::signoffs::live(w.tx.db(), uid).await? {
            // Dropping the write rolls back the revision it allocated.
            drop(w);
            return Ok((self.get_signoff(existing).await?, false));
        }

        let key_ids: BTreeSet<String> = store::signoffs::live_key_ids(w.tx.db(), uid)
            .await?
            .into_iter()
            .collect();
        let keys = store::signoffs::live_plain_keys(w.tx.db(), uid).await?;
        // Disabled (unless an admin already did): principals entries leave every view.
        disable(w.tx.db(), uid, rev).await?;

        let id = store::signoffs::next_id(w.tx.db()).await?;
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
        let row = store::signoffs::New {
            id,
            uid,
            reason,
            actor: &actor.0,
            created_at: now,
            statement: &bytes,
            signature: &signature,
            rev,
        };
        store::signoffs::insert(w.tx.db(), &row).await?;
        // Every key ID under any CA and every plain key, unless already revoked.
        let revocations: Vec<(&str, &str)> = key_ids
            .iter()
            .map(|k| ("key_id", k.as_str()))
            .chain(keys.iter().map(|(_, line)| ("key", line.as_str())))
            .collect();
        let added = revoke_for_signoff(w.tx.db(), &row, &revocations).await?;
        let hosts = wait_for_hosts(w.tx.db(), id, now).await?;
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
        let mut conn = self.store().conn().await?;
        load(conn.db(), id).await
    }

    /// The latest sign-off of a person, if they were ever signed off.
    pub async fn latest_signoff(&self, user: &str) -> Result<Option<SignoffRecord>> {
        let mut conn = self.store().conn().await?;
        let uid = user_id(conn.db(), user).await?;
        match store::signoffs::latest(conn.db(), uid).await? {
            Some(id) => Ok(Some(load(conn.db(), id).await?)),
            None => Ok(None),
        }
    }

    /// The people a sign-off is in force for (signed off, not re-enabled since), however
    /// old the sign-off: the People page filters by it.
    pub async fn signed_off_users(&self) -> Result<std::collections::HashSet<String>> {
        let mut conn = self.store().conn().await?;
        Ok(store::signoffs::signed_off_names(conn.db())
            .await?
            .into_iter()
            .collect())
    }

    /// The newest 500 sign-offs, newest first, in two queries whatever their number (the
    /// dashboard reads this on every live refresh).
    pub async fn list_signoffs(&self) -> Result<Vec<SignoffRecord>> {
        let mut conn = self.store().conn().await?;
        load_many(conn.db(), None, LIST_SIGNOFFS_LIMIT).await
    }

    /// A receiver whose value changes whenever any sign-off's progress does.
    pub fn watch_signoffs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.signoff_progress.subscribe()
    }

    pub(crate) fn signoff_progressed(&self) {
        self.signoff_progressed_here();
        self.relay_signoffs();
    }

    /// Tells this process's watchers only (what another replica relayed).
    pub(super) fn signoff_progressed_here(&self) {
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
        let signoff = store::signoffs::live(w.tx.db(), uid).await?;
        let status = store::users::status(w.tx.db(), uid).await?;
        if signoff.is_none() && status == UserStatus::Active.as_str() {
            return Err(ServiceError::Conflict(format!(
                "user {user:?} is active and not signed off"
            )));
        }
        let mut withdrawn = 0;
        if let Some(id) = signoff {
            store::signoffs::withdraw(w.tx.db(), id, rev).await?;
            withdrawn = store::signoffs::withdraw_added_revocations(w.tx.db(), id, rev).await?;
        }
        if status != UserStatus::Active.as_str() {
            store::users::end_status(w.tx.db(), uid, rev).await?;
            store::users::insert_status(w.tx.db(), uid, UserStatus::Active.as_str(), rev).await?;
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
        let mut conn = self.store().conn().await?;
        let progress = store::signoffs::host_progress(conn.db(), id, host).await?;
        // A host enrolled after the sign-off enforces it too, but it is not waited for.
        let Some((confirmed_at, ended, since_rev, acked)) = progress else {
            return Ok(None);
        };
        let mut ended: BTreeSet<String> = stored_json("signoff_hosts.ended_sessions", &ended)?;
        let new_kills: Vec<&String> = r
            .ended_sessions
            .iter()
            .filter(|s| !ended.contains(*s))
            .collect();
        let acked = acked.max(buffered);
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
        store::signoffs::record_host_result(
            conn.db(),
            id,
            host,
            &serde_json::to_string(&ended).unwrap_or_else(|_| "[]".into()),
            error.as_deref(),
            done.then_some(now),
        )
        .await?;
        if done {
            store::signoffs::complete_if_confirmed(conn.db(), id, now).await?;
        }
        drop(conn);
        if !new_kills.is_empty() || error.is_some() {
            // What a host ended, or could not, belongs in the audit log.
            let actor = Actor(format!("agent:{host}"));
            let mut w = self.write(&actor, "signoff.enforced", false).await?;
            // A refusal or processes left: the sign-off could not complete on this host.
            if !r.refusal.is_empty() || !r.remaining_pids.is_empty() {
                let person = store::signoffs::person(w.tx.db(), id).await?;
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
                crate::alerts::record(w.tx.db(), w.now, alert.as_slice()).await?;
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
pub(super) async fn is_signed_off(db: Db<'_>, uid: i64) -> Result<bool> {
    Ok(store::signoffs::live(db, uid).await?.is_some())
}

/// The id of the person named `name`; not found when there is none.
/// Disables the person from `rev`, unless they are disabled already.
async fn disable(mut db: Db<'_>, uid: i64, rev: i64) -> Result<()> {
    let status = store::users::status(db.re(), uid).await?;
    if status != UserStatus::Disabled.as_str() {
        store::users::end_status(db.re(), uid, rev).await?;
        store::users::insert_status(db, uid, UserStatus::Disabled.as_str(), rev).await?;
    }
    Ok(())
}

/// Revokes each (kind, value) under any CA for the sign-off, unless a live revocation
/// already does; either way the sign-off keeps it in force (`signoff_revocations`), and
/// withdraws on re-enable only those it added. Returns how many it added.
async fn revoke_for_signoff(
    mut db: Db<'_>,
    signoff: &store::signoffs::New<'_>,
    revocations: &[(&str, &str)],
) -> Result<usize> {
    let mut added = 0usize;
    let reason = format!("sign-off #{}: {}", signoff.id, signoff.reason);
    for &(kind, value) in revocations {
        let existing = store::revocations::live_any_ca(db.re(), kind, value).await?;
        let (rid, ours) = match existing {
            // Not ours to withdraw on re-enable, but ours to keep while in force.
            Some(rid) => (rid, false),
            None => {
                let new = store::revocations::New {
                    kind,
                    ca: None,
                    value,
                    lo: None,
                    hi: None,
                    reason: &reason,
                    rev: signoff.rev,
                    valid_before: None,
                };
                let rid = store::revocations::insert(db.re(), &new).await?;
                added += 1;
                (rid, true)
            }
        };
        store::signoffs::keep_revocation(db.re(), signoff.id, rid, ours).await?;
    }
    Ok(added)
}

/// Records every live host as one the sign-off waits for; with none, it is complete now.
/// Returns how many.
async fn wait_for_hosts(mut db: Db<'_>, id: i64, now: i64) -> Result<u64> {
    let hosts = store::signoffs::wait_for_live_hosts(db.re(), id).await?;
    if hosts == 0 {
        store::signoffs::set_completed(db, id, now).await?;
    }
    Ok(hosts)
}

/// How many sign-offs a list shows: the newest.
const LIST_SIGNOFFS_LIMIT: i64 = 500;

async fn load(db: Db<'_>, id: i64) -> Result<SignoffRecord> {
    load_many(db, Some(id), 1)
        .await?
        .pop()
        .ok_or_else(|| ServiceError::not_found("sign-off", id.to_string()))
}

/// The sign-off `only` (or, with `None`, the newest `limit`), newest first, in two queries
/// whatever their number: the sign-offs, then the hosts of all of them.
async fn load_many(mut db: Db<'_>, only: Option<i64>, limit: i64) -> Result<Vec<SignoffRecord>> {
    let rows = store::signoffs::page(db.re(), only, limit).await?;
    let host_rows = store::signoffs::page_hosts(db, only, limit).await?;
    let mut hosts: std::collections::HashMap<i64, Vec<SignoffHost>> =
        std::collections::HashMap::new();
    for h in host_rows {
        hosts.entry(h.signoff_id).or_default().push(SignoffHost {
            host: h.host_id,
            state: match (h.confirmed_at, h.online) {
                (Some(_), _) => SignoffHostState::Confirmed,
                (None, true) => SignoffHostState::Pending,
                (None, false) => SignoffHostState::Offline,
            },
            confirmed_at: h.confirmed_at,
            killed_sessions: stored_json("signoff_hosts.ended_sessions", &h.ended_sessions)?,
            last_error: h.last_error,
        });
    }
    rows.into_iter()
        .map(|r| {
            let statement = SignoffStatement::decode(&r.statement)
                .map_err(|e| ServiceError::corrupt("signoffs.statement", e))?;
            let hosts = hosts.remove(&r.id).unwrap_or_default();
            let mut completed_at = r.completed_at;
            if completed_at.is_none() && hosts.iter().all(|h| h.confirmed_at.is_some()) {
                // Every host still enrolled has confirmed (the others were removed since).
                completed_at = hosts
                    .iter()
                    .filter_map(|h| h.confirmed_at)
                    .max()
                    .or(Some(r.created_at));
            }
            Ok(SignoffRecord {
                id: r.id,
                user: r.user_name,
                reason: r.reason,
                actor: r.actor,
                created_at: r.created_at,
                completed_at,
                revision: r.since_rev,
                in_force: r.in_force,
                key_ids: statement.key_ids,
                key_fingerprints: statement.key_fingerprints,
                hosts,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
