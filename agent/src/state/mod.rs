//! This host's view of the control plane's data, in memory and on disk.
//!
//! The sync loop keeps a [`State`]: it applies the snapshots and deltas the control plane
//! pushes ([`State::apply_snapshot`], [`State::apply_delta`]), then [`State::persist`]s it
//! (host view file, then KRL, each replaced atomically) before acking the revision. On
//! start it [`load`]s the last persisted view.
//!
//! The commands sshd runs never load a [`State`]: they open the file with
//! [`StateFile::open`] and ask it one question with a few positioned reads (see
//! [`mod@format`] for the layout). Freshness is kept apart, in the small
//! [`CONTACT_FILE`] that [`record_contact`] rewrites on every contact with the control
//! plane, so that heartbeats never rewrite the large view.

pub mod format;
pub mod lookup;
mod table;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};

use signoff_proto::v1;

pub use format::{ApprovedGrantRecord, FormatError, decode, encode};
pub use lookup::{ApprovalGate, CertificateQuery, Matches, Revoked, StateFile};
pub use writer::{
    CONTACT_FILE, ContactError, PersistError, STATE_FILE, load, read_contact, record_contact,
};

/// One grant: `user` may log in as unix `account` on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unix account (`%u`).
    pub account: String,
    /// The control plane's user name.
    pub user: String,
    /// Certificate key IDs that identify the user.
    pub key_ids: Vec<String>,
    /// Certificate principals to print for this grant.
    pub principals: Vec<String>,
    /// Plain public keys (OpenSSH one-line format) for `authorized-keys`.
    pub authorized_keys: Vec<String>,
    /// Unix seconds after which the grant no longer applies; 0 for never.
    pub not_after: u64,
    /// Approvals of the grants behind the entry (see [`ApprovedGrant`]); what admits it to
    /// a privileged account.
    pub approvals: Vec<ApprovedGrant>,
}

/// One grant behind an entry, with the approvals collected for it. With the entry's user
/// and account these are the fields approvers signed
/// ([`signoff_proto::approvals::GrantApproval`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedGrant {
    /// The control plane's grant id.
    pub grant_id: u64,
    /// The host group of the grant.
    pub host_group: String,
    /// Unix seconds after which the grant lets nobody in; 0 for never.
    pub not_after: u64,
    /// Armored SSHSIGs, namespace `signoff-approval`.
    pub signatures: Vec<String>,
}

impl From<v1::ApprovedGrant> for ApprovedGrant {
    fn from(g: v1::ApprovedGrant) -> Self {
        ApprovedGrant {
            grant_id: g.grant_id,
            host_group: g.host_group,
            not_after: g.not_after,
            signatures: g.signatures,
        }
    }
}

impl From<&ApprovedGrant> for v1::ApprovedGrant {
    fn from(g: &ApprovedGrant) -> Self {
        v1::ApprovedGrant {
            grant_id: g.grant_id,
            host_group: g.host_group.clone(),
            not_after: g.not_after,
            signatures: g.signatures.clone(),
        }
    }
}

impl From<v1::PrincipalsEntry> for Entry {
    fn from(e: v1::PrincipalsEntry) -> Self {
        Entry {
            account: e.account,
            user: e.user,
            key_ids: e.key_ids,
            principals: e.principals,
            authorized_keys: e.authorized_keys,
            not_after: e.not_after,
            approvals: e.approvals.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<&Entry> for v1::PrincipalsEntry {
    fn from(e: &Entry) -> Self {
        v1::PrincipalsEntry {
            account: e.account.clone(),
            user: e.user.clone(),
            key_ids: e.key_ids.clone(),
            principals: e.principals.clone(),
            authorized_keys: e.authorized_keys.clone(),
            not_after: e.not_after,
            approvals: e.approvals.iter().map(Into::into).collect(),
        }
    }
}

/// Revoked serials and key IDs for the certificates of one CA (or of any CA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateRevocations {
    /// Serial ranges `(lo, hi)`, inclusive, exactly as received.
    pub serials: BTreeSet<(u64, u64)>,
    /// Key IDs.
    pub key_ids: BTreeSet<String>,
}

impl CertificateRevocations {
    fn is_empty(&self) -> bool {
        self.serials.is_empty() && self.key_ids.is_empty()
    }
}

/// The revocation set, as sets of the values received, so that a delta can remove exactly
/// what an earlier one added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Per CA key wire blob; the empty blob stands for "any CA".
    pub certificates: BTreeMap<Vec<u8>, CertificateRevocations>,
    /// Revoked plain keys, wire blobs.
    pub keys: BTreeSet<Vec<u8>>,
    /// SHA-256 of revoked plain key wire blobs.
    pub sha256: BTreeSet<Vec<u8>>,
}

impl Revocations {
    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty() && self.keys.is_empty() && self.sha256.is_empty()
    }

    fn add(&mut self, set: &v1::RevocationSet) {
        for c in &set.certificates {
            let target = self.certificates.entry(c.ca_key.clone()).or_default();
            target
                .serials
                .extend(c.serials.iter().map(|r| (r.lo, r.hi)));
            target.key_ids.extend(c.key_ids.iter().cloned());
            if target.is_empty() {
                self.certificates.remove(&c.ca_key);
            }
        }
        self.keys.extend(set.keys.iter().cloned());
        self.sha256.extend(set.sha256.iter().cloned());
    }

    fn remove(&mut self, set: &v1::RevocationSet) {
        for c in &set.certificates {
            if let Some(target) = self.certificates.get_mut(&c.ca_key) {
                for r in &c.serials {
                    target.serials.remove(&(r.lo, r.hi));
                }
                for id in &c.key_ids {
                    target.key_ids.remove(id);
                }
                if target.is_empty() {
                    self.certificates.remove(&c.ca_key);
                }
            }
        }
        for k in &set.keys {
            self.keys.remove(k);
        }
        for h in &set.sha256 {
            self.sha256.remove(h);
        }
    }

    /// The set in protocol form.
    pub fn to_proto(&self) -> v1::RevocationSet {
        v1::RevocationSet {
            certificates: self
                .certificates
                .iter()
                .map(|(ca, c)| v1::CaRevocations {
                    ca_key: ca.clone(),
                    serials: c
                        .serials
                        .iter()
                        .map(|&(lo, hi)| v1::SerialRange { lo, hi })
                        .collect(),
                    key_ids: c.key_ids.iter().cloned().collect(),
                })
                .collect(),
            keys: self.keys.iter().cloned().collect(),
            sha256: self.sha256.iter().cloned().collect(),
        }
    }
}

/// A snapshot or delta that cannot be applied. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The delta starts from another revision than ours: ask for a snapshot.
    #[error("delta from revision {from} does not apply to revision {have}; a snapshot is needed")]
    RevisionMismatch {
        /// The delta's `from_revision`.
        from: u64,
        /// Our revision.
        have: u64,
    },
    /// The delta's target revision is not after its base.
    #[error("delta goes from revision {from} to {to}, which is not forward")]
    NotForward {
        /// The delta's `from_revision`.
        from: u64,
        /// The delta's `revision`.
        to: u64,
    },
    /// An entry names no account or no user.
    #[error("entry ({account:?}, {user:?}) lacks an account or a user")]
    IncompleteEntry {
        /// Account.
        account: String,
        /// User.
        user: String,
    },
    /// An entry is too large to store.
    #[error(
        "entry ({account}, {user}) is larger than the {} bytes a record may hold",
        format::MAX_RECORD_LEN
    )]
    EntryTooLarge {
        /// Account.
        account: String,
        /// User.
        user: String,
    },
}

fn check_entry(e: &v1::PrincipalsEntry) -> Result<(), ApplyError> {
    if e.account.is_empty() || e.user.is_empty() {
        return Err(ApplyError::IncompleteEntry {
            account: e.account.clone(),
            user: e.user.clone(),
        });
    }
    let list_len = |l: &[String]| l.iter().map(|s| 4 + s.len()).sum::<usize>() + 4;
    let payload = list_len(&e.key_ids) + list_len(&e.principals) + list_len(&e.authorized_keys);
    let approvals: usize = e
        .approvals
        .iter()
        .map(|g| 24 + g.host_group.len() + list_len(&g.signatures))
        .sum();
    if payload > format::MAX_RECORD_LEN
        || e.account.len() + e.user.len() + 25 + approvals > format::MAX_RECORD_LEN
    {
        return Err(ApplyError::EntryTooLarge {
            account: e.account.clone(),
            user: e.user.clone(),
        });
    }
    Ok(())
}

/// The host view: grants, revocations and disabled users at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    revision: u64,
    entries: BTreeMap<(String, String), Entry>,
    revocations: Revocations,
    disabled_users: BTreeSet<String>,
}

impl State {
    /// The empty view at revision 0 (what an agent has before its first sync).
    pub fn new() -> State {
        State::default()
    }

    /// The view a snapshot describes.
    pub fn from_snapshot(view: v1::HostView) -> Result<State, ApplyError> {
        let mut state = State::new();
        state.apply_snapshot(view)?;
        Ok(state)
    }

    /// The control plane's revision of this view.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Grants, sorted by (account, user).
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.entries.values()
    }

    /// The grant of `user` for `account`.
    pub fn entry(&self, account: &str, user: &str) -> Option<&Entry> {
        self.entries.get(&(account.to_owned(), user.to_owned()))
    }

    /// The revocation set.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Users who are signed off.
    pub fn disabled_users(&self) -> &BTreeSet<String> {
        &self.disabled_users
    }

    /// Whether `user` is signed off.
    pub fn is_disabled(&self, user: &str) -> bool {
        self.disabled_users.contains(user)
    }

    fn insert_entry(&mut self, e: Entry) {
        self.entries.insert((e.account.clone(), e.user.clone()), e);
    }

    /// Replaces the whole view with a snapshot. Of two entries for one (account, user),
    /// the later wins.
    pub fn apply_snapshot(&mut self, view: v1::HostView) -> Result<(), ApplyError> {
        view.principals.iter().try_for_each(check_entry)?;
        let mut next = State {
            revision: view.revision,
            ..State::default()
        };
        for e in view.principals {
            next.insert_entry(e.into());
        }
        if let Some(r) = &view.revocations {
            next.revocations.add(r);
        }
        next.disabled_users.extend(view.disabled_users);
        *self = next;
        Ok(())
    }

    /// Applies a delta from our revision. Withdrawals are applied before additions, so an
    /// (account, user) both removed and upserted ends up upserted, and a revocation or a
    /// disabled user both removed and added ends up added (the safe side).
    pub fn apply_delta(&mut self, delta: &v1::HostViewDelta) -> Result<(), ApplyError> {
        if delta.from_revision != self.revision {
            return Err(ApplyError::RevisionMismatch {
                from: delta.from_revision,
                have: self.revision,
            });
        }
        if delta.revision <= delta.from_revision {
            return Err(ApplyError::NotForward {
                from: delta.from_revision,
                to: delta.revision,
            });
        }
        delta.upsert_principals.iter().try_for_each(check_entry)?;

        for k in &delta.remove_principals {
            self.entries.remove(&(k.account.clone(), k.user.clone()));
        }
        for e in &delta.upsert_principals {
            self.insert_entry(e.clone().into());
        }
        if let Some(r) = &delta.remove_revocations {
            self.revocations.remove(r);
        }
        if let Some(r) = &delta.add_revocations {
            self.revocations.add(r);
        }
        for u in &delta.remove_disabled_users {
            self.disabled_users.remove(u);
        }
        self.disabled_users
            .extend(delta.add_disabled_users.iter().cloned());
        self.revision = delta.revision;
        Ok(())
    }

    /// The view in protocol form (a snapshot of it).
    pub fn to_host_view(&self) -> v1::HostView {
        v1::HostView {
            revision: self.revision,
            principals: self.entries.values().map(Into::into).collect(),
            revocations: Some(self.revocations.to_proto()),
            disabled_users: self.disabled_users.iter().cloned().collect(),
            // Sign-off statements live beside the host view (`signoffs.rs`), trusted CA
            // keys in sshd's TrustedUserCAKeys file (`trusted_cas.rs`).
            signoffs: Vec::new(),
            trusted_user_ca_keys: Vec::new(),
            // Re-enables and audit heads are kept as holds and the witnessed head.
            ..Default::default()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
