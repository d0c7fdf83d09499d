//! What one host must know at one revision, and the change between two revisions.
//!
//! Rows of the store are versioned (`since_rev`, `until_rev`), so the view at any revision
//! is a query, and a delta looks only at rows that changed between the two revisions: its
//! cost follows the change, not the fleet.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::model::Revocation;
use crate::service::{Result, Service};
use crate::store::{self, Db};
use serde::Serialize;

/// Key of a principals entry: (Unix account, user name).
pub type EntryKey = (String, String);

/// Who may log in as one account: one user's identities and the grant's expiry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Entry {
    /// Certificate key IDs of the user.
    pub key_ids: BTreeSet<String>,
    /// Principals the certificate must carry one of.
    pub principals: BTreeSet<String>,
    /// Plain public keys, for AuthorizedKeysCommand.
    pub authorized_keys: BTreeSet<String>,
    /// Unix seconds after which the grant expires; `None` for never.
    pub not_after: Option<i64>,
    /// The grants behind the entry that have approvals, by grant id: what a host checks
    /// before admitting anyone to one of its privileged accounts.
    pub approvals: BTreeMap<i64, ApprovedGrant>,
}

/// One grant with the approvals collected for it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ApprovedGrant {
    /// The grant's host group.
    pub host_group: String,
    /// The grant's expiry; `None` for never.
    pub not_after: Option<i64>,
    /// Armored SSHSIGs, namespace `signoff-approval`.
    pub signatures: BTreeSet<String>,
}

/// Everything one host must know at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HostView {
    /// The revision this view is at.
    pub revision: i64,
    /// Principals entries for users with a live grant on this host.
    pub entries: BTreeMap<EntryKey, Entry>,
    /// The whole revocation set.
    pub revocations: BTreeSet<Revocation>,
    /// Names of users who are signed off.
    pub disabled_users: BTreeSet<String>,
    /// Signed sign-off statements in force, by sign-off id.
    pub signoffs: BTreeMap<i64, Statement>,
    /// Trusted user CA keys, OpenSSH lines: what sshd's `TrustedUserCAKeys` holds.
    pub trusted_cas: BTreeSet<String>,
    /// Re-enabled sign-offs with their re-enable approvals, by sign-off id.
    pub reenables: BTreeMap<i64, Reenable>,
}

/// A re-enabled sign-off as hosts receive it: what was enforced, and who approved undoing
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reenable {
    /// The person.
    pub person: String,
    /// The sign-off's statement.
    pub statement: Statement,
    /// Armored SSHSIGs over the re-enable bytes, namespace `signoff-approval`.
    pub signatures: BTreeSet<String>,
}

/// A signed sign-off statement as hosts receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// Canonical bytes (`signoff_proto::orders::SignoffStatement`).
    pub statement: Vec<u8>,
    /// Armored SSHSIG over them.
    pub signature: String,
}

/// The change from one view to a later one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Delta {
    /// Revision the delta applies to.
    pub from: i64,
    /// Revision it produces.
    pub to: i64,
    /// Entries added or changed.
    pub upsert: BTreeMap<EntryKey, Entry>,
    /// Entries withdrawn.
    pub remove: BTreeSet<EntryKey>,
    /// Revocations added.
    pub add_revocations: BTreeSet<Revocation>,
    /// Revocations withdrawn.
    pub remove_revocations: BTreeSet<Revocation>,
    /// Users newly disabled.
    pub add_disabled: BTreeSet<String>,
    /// Users re-enabled.
    pub remove_disabled: BTreeSet<String>,
    /// Sign-off statements that came into force.
    pub add_signoffs: BTreeMap<i64, Statement>,
    /// Sign-offs withdrawn (the person was re-enabled).
    pub remove_signoffs: BTreeSet<i64>,
    /// User CA keys newly trusted.
    pub add_trusted_cas: BTreeSet<String>,
    /// User CA keys no longer trusted.
    pub remove_trusted_cas: BTreeSet<String>,
    /// Re-enables that appeared or whose approvals changed, whole.
    pub upsert_reenables: BTreeMap<i64, Reenable>,
}

impl Delta {
    /// True when applying it changes nothing but the revision.
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty()
            && self.remove.is_empty()
            && self.add_revocations.is_empty()
            && self.remove_revocations.is_empty()
            && self.add_disabled.is_empty()
            && self.remove_disabled.is_empty()
            && self.add_signoffs.is_empty()
            && self.remove_signoffs.is_empty()
            && self.add_trusted_cas.is_empty()
            && self.remove_trusted_cas.is_empty()
            && self.upsert_reenables.is_empty()
    }
}

impl HostView {
    /// Applies a delta that starts at this view's revision.
    pub fn apply(&mut self, d: &Delta) {
        for k in &d.remove {
            self.entries.remove(k);
        }
        for (k, e) in &d.upsert {
            self.entries.insert(k.clone(), e.clone());
        }
        for r in &d.remove_revocations {
            self.revocations.remove(r);
        }
        self.revocations.extend(d.add_revocations.iter().cloned());
        for u in &d.remove_disabled {
            self.disabled_users.remove(u);
        }
        self.disabled_users.extend(d.add_disabled.iter().cloned());
        for id in &d.remove_signoffs {
            self.signoffs.remove(id);
        }
        for (id, st) in &d.add_signoffs {
            self.signoffs.insert(*id, st.clone());
        }
        for k in &d.remove_trusted_cas {
            self.trusted_cas.remove(k);
        }
        self.trusted_cas.extend(d.add_trusted_cas.iter().cloned());
        for (id, r) in &d.upsert_reenables {
            self.reenables.insert(*id, r.clone());
        }
        self.revision = d.to;
    }
}

/// Diffs two maps of entries restricted to the same users.
fn diff_entries(
    old: &BTreeMap<EntryKey, Entry>,
    new: &BTreeMap<EntryKey, Entry>,
    delta: &mut Delta,
) {
    for (k, e) in new {
        if old.get(k) != Some(e) {
            delta.upsert.insert(k.clone(), e.clone());
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            delta.remove.insert(k.clone());
        }
    }
}

impl Service {
    /// The view of `host` at revision `rev`.
    pub async fn host_view(&self, host: &str, rev: i64) -> Result<HostView> {
        let mut tx = self.store().begin_read().await?;
        Ok(HostView {
            revision: rev,
            entries: entries(tx.db(), Scope::Host(host), rev, None).await?,
            revocations: revocations_at(tx.db(), rev).await?,
            disabled_users: disabled_at(tx.db(), rev, None).await?,
            signoffs: signoffs_at(tx.db(), rev).await?,
            trusted_cas: trusted_cas_at(tx.db(), rev).await?,
            reenables: reenables_at(tx.db(), rev, None).await?,
        })
    }

    /// The delta that turns the view of `host` at `from` into its view at `to`.
    pub async fn host_delta(&self, host: &str, from: i64, to: i64) -> Result<Delta> {
        let mut tx = self.store().begin_read().await?;
        let mut delta = Delta {
            from,
            to,
            ..Delta::default()
        };
        let membership_changed =
            store::views::host_membership_changed(tx.db(), host, from, to).await?;
        let users = if membership_changed {
            None
        } else {
            Some(touched_users(tx.db(), from, to).await?)
        };
        let old = entries(tx.db(), Scope::Host(host), from, users.as_ref()).await?;
        let new = entries(tx.db(), Scope::Host(host), to, users.as_ref()).await?;
        diff_entries(&old, &new, &mut delta);
        global_delta(tx.db(), &mut delta).await?;
        Ok(delta)
    }

    /// What every host's delta from `from` to `to` shares, computed once for a whole
    /// fan-out: the revocation, disabled-user and sign-off changes, which hosts changed
    /// group membership or were removed meanwhile, and every live host's groups. The rest
    /// of a host's delta depends only on its groups ([`Service::plan_delta`]), so hosts
    /// in the same groups share it: a revision costs per group combination, not per host.
    pub async fn fanout_plan(&self, from: i64, to: i64) -> Result<FanoutPlan> {
        let mut tx = self.store().begin_read().await?;
        let mut global = Delta {
            from,
            to,
            ..Delta::default()
        };
        global_delta(tx.db(), &mut global).await?;
        let membership_changed = store::views::hosts_with_membership_change(tx.db(), from, to)
            .await?
            .into_iter()
            .collect();
        let removed = store::views::hosts_removed(tx.db(), from, to)
            .await?
            .into_iter()
            .collect();
        let mut groups: HashMap<String, Vec<i64>> = HashMap::new();
        for (host, group) in store::views::memberships_at(tx.db(), to).await? {
            groups.entry(host).or_default().push(group);
        }
        Ok(FanoutPlan {
            global,
            membership_changed,
            removed,
            groups,
            touched: touched_users(tx.db(), from, to).await?,
        })
    }

    /// The delta of any host in `groups` (sorted) whose membership did not change within
    /// the plan's range; equal to [`Service::host_delta`] for each such host.
    pub async fn plan_delta(&self, plan: &FanoutPlan, groups: &[i64]) -> Result<Delta> {
        let mut tx = self.store().begin_read().await?;
        let mut delta = plan.global.clone();
        let scope = Scope::Groups(groups);
        let old = entries(tx.db(), scope, delta.from, Some(&plan.touched)).await?;
        let new = entries(tx.db(), scope, delta.to, Some(&plan.touched)).await?;
        diff_entries(&old, &new, &mut delta);
        Ok(delta)
    }
}

/// See [`Service::fanout_plan`].
#[derive(Debug, Clone)]
pub struct FanoutPlan {
    /// The part of the delta every host shares (no principals entries).
    pub global: Delta,
    /// Hosts whose group membership changed in the range: their delta is their own.
    pub membership_changed: HashSet<String>,
    /// Hosts removed in the range.
    pub removed: HashSet<String>,
    /// Each host's groups at the end of the range, sorted; hosts in none are absent.
    pub groups: HashMap<String, Vec<i64>>,
    touched: BTreeSet<i64>,
}

impl FanoutPlan {
    /// The groups `host` is in at the end of the range (none: empty).
    pub fn groups_of(&self, host: &str) -> &[i64] {
        self.groups.get(host).map_or(&[], Vec::as_slice)
    }
}

/// Live in `[since, until)`: whether a row was in force at `rev`.
fn live_at(since: i64, until: Option<i64>, rev: i64) -> bool {
    since <= rev && until.is_none_or(|u| u > rev)
}

/// Adds to `delta` the changes every host shares: revocations, disabled users, sign-offs,
/// trusted CAs.
async fn global_delta(mut db: Db<'_>, delta: &mut Delta) -> Result<()> {
    let (from, to) = (delta.from, delta.to);
    if store::views::trusted_cas_changed(db.re(), from, to).await? {
        // A handful of rows: the two sets are compared whole.
        let old = trusted_cas_at(db.re(), from).await?;
        let new = trusted_cas_at(db.re(), to).await?;
        delta.add_trusted_cas = new.difference(&old).cloned().collect();
        delta.remove_trusted_cas = old.difference(&new).cloned().collect();
    }
    for r in store::views::revocations_changed(db.re(), from, to).await? {
        let (since, until) = (r.since_rev, r.until_rev);
        let rev = revocation(r);
        match (live_at(since, until, from), live_at(since, until, to)) {
            (false, true) => {
                delta.add_revocations.insert(rev);
            }
            (true, false) => {
                delta.remove_revocations.insert(rev);
            }
            _ => {}
        }
    }

    let changed_status: BTreeSet<i64> = store::views::status_changed(db.re(), from, to)
        .await?
        .into_iter()
        .collect();
    if !changed_status.is_empty() {
        let old = disabled_at(db.re(), from, Some(&changed_status)).await?;
        let new = disabled_at(db.re(), to, Some(&changed_status)).await?;
        delta.add_disabled = new.difference(&old).cloned().collect();
        delta.remove_disabled = old.difference(&new).cloned().collect();
    }

    for r in store::views::signoffs_changed(db.re(), from, to).await? {
        match (
            live_at(r.since_rev, r.until_rev, from),
            live_at(r.since_rev, r.until_rev, to),
        ) {
            (false, true) => {
                delta.add_signoffs.insert(
                    r.id,
                    Statement {
                        statement: r.statement,
                        signature: r.signature,
                    },
                );
            }
            (true, false) => {
                delta.remove_signoffs.insert(r.id);
            }
            _ => {}
        }
    }

    let changed_reenables: BTreeSet<i64> = store::views::reenables_changed(db.re(), from, to)
        .await?
        .into_iter()
        .collect();
    if !changed_reenables.is_empty() {
        delta.upsert_reenables = reenables_at(db, to, Some(&changed_reenables)).await?;
    }
    Ok(())
}

/// The re-enabled sign-offs at `rev` (only `only`, when given) with the approvals of their
/// re-enable live at `rev`.
async fn reenables_at(
    mut db: Db<'_>,
    rev: i64,
    only: Option<&BTreeSet<i64>>,
) -> Result<BTreeMap<i64, Reenable>> {
    let mut out = BTreeMap::new();
    for r in store::views::reenabled_at(db.re(), rev).await? {
        if only.is_some_and(|o| !o.contains(&r.id)) {
            continue;
        }
        out.insert(
            r.id,
            Reenable {
                person: r.person,
                statement: Statement {
                    statement: r.statement,
                    signature: r.signature,
                },
                signatures: BTreeSet::new(),
            },
        );
    }
    if out.is_empty() {
        return Ok(out);
    }
    for (id, signature) in store::views::reenable_approvals_at(db, rev).await? {
        if let Some(e) = out.get_mut(&id) {
            e.signatures.insert(signature);
        }
    }
    Ok(out)
}

/// Users any of whose rows changed in `(from, to]`.
async fn touched_users(db: Db<'_>, from: i64, to: i64) -> Result<BTreeSet<i64>> {
    Ok(store::views::touched_users(db, from, to)
        .await?
        .into_iter()
        .collect())
}

/// The trusted user CA keys at `rev`.
async fn trusted_cas_at(db: Db<'_>, rev: i64) -> Result<BTreeSet<String>> {
    Ok(store::views::trusted_cas_at(db, rev)
        .await?
        .into_iter()
        .collect())
}

fn revocation(r: store::views::RevocationRow) -> Revocation {
    crate::service::revocation_from_columns(
        r.kind,
        r.ca_fingerprint,
        r.value,
        r.serial_lo,
        r.serial_hi,
    )
}

async fn revocations_at(db: Db<'_>, rev: i64) -> Result<BTreeSet<Revocation>> {
    Ok(store::views::revocations_at(db, rev)
        .await?
        .into_iter()
        .map(revocation)
        .collect())
}

async fn signoffs_at(db: Db<'_>, rev: i64) -> Result<BTreeMap<i64, Statement>> {
    Ok(store::views::signoffs_at(db, rev)
        .await?
        .into_iter()
        .map(|r| {
            (
                r.id,
                Statement {
                    statement: r.statement,
                    signature: r.signature,
                },
            )
        })
        .collect())
}

async fn disabled_at(
    db: Db<'_>,
    rev: i64,
    only: Option<&BTreeSet<i64>>,
) -> Result<BTreeSet<String>> {
    Ok(store::views::disabled_at(db, rev)
        .await?
        .into_iter()
        .filter(|(id, _)| only.is_none_or(|o| o.contains(id)))
        .map(|(_, name)| name)
        .collect())
}

/// Whose principals entries: one host's (through its group membership at the revision),
/// or those of any host in exactly these groups.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Host(&'a str),
    Groups(&'a [i64]),
}

/// Principals entries of `scope` at `rev`, for all users or only `only`.
async fn entries(
    mut db: Db<'_>,
    scope: Scope<'_>,
    rev: i64,
    only: Option<&BTreeSet<i64>>,
) -> Result<BTreeMap<EntryKey, Entry>> {
    if only.is_some_and(BTreeSet::is_empty) {
        return Ok(BTreeMap::new());
    }
    let grants = match scope {
        Scope::Host(host) => store::views::grants_of_host_at(db.re(), host, rev).await?,
        Scope::Groups(groups) => store::views::grants_of_groups_at(db.re(), groups, rev).await?,
    };

    let mut out: BTreeMap<EntryKey, Entry> = BTreeMap::new();
    let mut identities: BTreeMap<i64, Entry> = BTreeMap::new();
    let mut signatures = approvals_at(db.re(), rev).await?;
    for g in grants {
        let user_id = g.user_id;
        if only.is_some_and(|o| !o.contains(&user_id)) {
            continue;
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = identities.entry(user_id) {
            slot.insert(identity(db.re(), user_id, rev).await?);
        }
        let not_after = g.not_after;
        let key = (g.account, g.user_name);
        let approved = signatures.remove(&g.grant_id).map(|sigs| {
            (
                g.grant_id,
                ApprovedGrant {
                    host_group: g.group_name,
                    not_after,
                    signatures: sigs,
                },
            )
        });
        match out.get_mut(&key) {
            // Two grants for one account through two groups: the longer one counts.
            Some(e) => {
                e.not_after = match (e.not_after, not_after) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                }
            }
            None => {
                let mut e = identities.get(&user_id).cloned().unwrap_or_default();
                e.not_after = not_after;
                out.insert(key.clone(), e);
            }
        }
        if let (Some((id, a)), Some(e)) = (approved, out.get_mut(&key)) {
            e.approvals.insert(id, a);
        }
    }
    Ok(out)
}

/// The approval signatures of every live grant at `rev`, by grant id. Approvals are few
/// (privileged grants only), so one query serves a whole view.
async fn approvals_at(db: Db<'_>, rev: i64) -> Result<BTreeMap<i64, BTreeSet<String>>> {
    let mut out: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for (grant, signature) in store::views::grant_approvals_at(db, rev).await? {
        out.entry(grant).or_default().insert(signature);
    }
    Ok(out)
}

async fn identity(db: Db<'_>, user: i64, rev: i64) -> Result<Entry> {
    let mut e = Entry::default();
    for (kind, value) in store::views::identity_at(db, user, rev).await? {
        match kind.as_str() {
            "key_id" => e.key_ids.insert(value),
            "principal" => e.principals.insert(value),
            _ => e.authorized_keys.insert(value),
        };
    }
    Ok(e)
}

#[cfg(test)]
mod tests;
