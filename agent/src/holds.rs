//! Holds: people this host saw signed off, kept out until k approvers re-enable them.
//!
//! On a host with `[approvals]`, the control plane's word is not enough to let a signed-off
//! person back in. Once the agent has enforced a sign-off statement that verified (see
//! [`crate::signoffs`]), it records a hold — the sign-off's id, the person, and the key IDs
//! and fingerprints the statement named — in the state directory (`holds`, written
//! atomically, so it survives restarts). A hold is released only by approvals: SSHSIGs,
//! namespace `signoff-approval`, from `k` distinct approvers of the host's own
//! `allowed_signers` (`[approvals]`, set by Ansible), over the canonical re-enable bytes
//! ([`signoff_proto::approvals::ReenableApproval`]), which name the sign-off's id and the
//! person, so an approval of one sign-off cannot release another.
//!
//! While a hold stands, the host refuses the person whatever its host view says, and keeps
//! their key IDs revoked. Hosts without `[approvals]` keep no holds: a re-enable takes
//! effect there as soon as the control plane drops the statement.
//!
//! The daemon ([`Holds::update`]) holds every person of a statement that verified when a
//! host view brings it, and of every re-enabled sign-off the view lists
//! ([`v1::Reenable`], with the statement, so that a host that never saw the sign-off holds
//! the person too) unless its approvals suffice; it releases a hold when they do. The
//! holds file is written before the host view and the KRL, where the held key IDs stay
//! revoked ([`Holds::revocations`]); both sshd commands read it at every login
//! ([`crate::sshd_commands`]) and refuse a held person, failing closed on a corrupt file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use signoff_proto::approvals::{Approver, ReenableApproval, Tally, tally};
use signoff_proto::v1;
use ssh_key::PublicKey;

use crate::atomic::{AtomicWriteError, write_atomic};
use crate::signoffs::{Enforceable, check_one};

/// The holds file in the state directory.
pub const HOLDS_FILE: &str = "holds";

/// Why the holds file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoldsError {
    /// It cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It is not what this agent writes (the host then refuses everyone it cannot rule
    /// out: callers must fail closed).
    #[error("{path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// It cannot be serialized.
    #[error("cannot serialize the holds: {0}")]
    Serialize(String),
    /// It cannot be written.
    #[error("cannot write the holds")]
    Write(#[from] AtomicWriteError),
}

/// One person held out by one sign-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The sign-off's id.
    pub signoff_id: u64,
    /// The person's name.
    pub person: String,
    /// Certificate key IDs the statement named: they stay revoked while the hold stands.
    pub key_ids: Vec<String>,
    /// `SHA256:…` fingerprints of plain keys the statement named.
    pub key_fingerprints: Vec<String>,
    /// The approvals (armored SSHSIGs) of the last re-enable that did not release the
    /// hold: counted again when the host's approvers change ([`Holds::reevaluate`]), so
    /// that an approver added by Ansible counts without a new revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<String>,
}

/// Why a release did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseRefused {
    /// No hold for that sign-off.
    #[error("no hold for sign-off {0}")]
    NoHold(u64),
    /// The approvals are for another person than the hold's.
    #[error("sign-off {signoff_id} held {held:?}, the re-enable names {named:?}")]
    OtherPerson {
        /// The sign-off.
        signoff_id: u64,
        /// Who the hold is for.
        held: String,
        /// Who the re-enable names.
        named: String,
    },
    /// The canonical bytes cannot be made.
    #[error("sign-off {signoff_id}: {message}")]
    BadBytes {
        /// The sign-off.
        signoff_id: u64,
        /// Why.
        message: String,
    },
    /// Fewer than k distinct approvers signed these bytes.
    #[error(
        "sign-off {signoff_id} of {person}: {valid} valid approval(s) of {required} required{details}"
    )]
    NotEnough {
        /// The sign-off.
        signoff_id: u64,
        /// The person.
        person: String,
        /// Distinct approvers whose signatures verify.
        valid: usize,
        /// k.
        required: usize,
        /// Why the other signatures did not count, as `" (…)"`, or empty.
        details: String,
    },
}

/// The holds on this host, by sign-off id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    by_id: BTreeMap<u64, Hold>,
}

/// What one host view did to the holds.
#[derive(Debug, Default)]
pub struct Update {
    /// Holds recorded.
    pub added: Vec<Hold>,
    /// Holds released by enough approvals.
    pub released: Vec<Hold>,
    /// Re-enables that did not release their hold, and why.
    pub kept: Vec<ReleaseRefused>,
    /// Re-enables whose statement was refused (nothing was held or released for them).
    pub refused: Vec<(u64, String)>,
    /// Whether a hold's kept approvals changed.
    pub approvals_changed: bool,
}

impl Update {
    /// Whether the holds changed (and must be written before the view is acked).
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.released.is_empty() || self.approvals_changed
    }
}

impl Holds {
    /// Applies what a host view says: every statement in `enforced` (verified already) is
    /// held; every re-enable whose statement verifies against `signers` is held unless
    /// `required` distinct `approvers` signed its re-enable bytes, and a held one is
    /// released when they did.
    pub fn update(
        &mut self,
        enforced: &[Enforceable],
        reenables: &[v1::Reenable],
        signers: Result<&[PublicKey], &str>,
        approvers: Result<&[Approver], &str>,
        required: usize,
    ) -> Update {
        let mut u = Update::default();
        for e in enforced {
            if self.hold(e) {
                u.added.extend(self.by_id.get(&e.id).cloned());
            }
        }
        for r in reenables {
            let Some(statement) = &r.statement else {
                u.refused.push((
                    r.signoff_id,
                    "the re-enable carries no statement".to_owned(),
                ));
                continue;
            };
            let e = match check_one(statement, signers) {
                Ok(e) => e,
                Err((id, why)) => {
                    u.refused.push((id, why));
                    continue;
                }
            };
            if e.id != r.signoff_id || e.statement.user != r.person {
                u.refused.push((
                    r.signoff_id,
                    format!(
                        "the re-enable names sign-off {} of {:?}, its statement sign-off {} of {:?}",
                        r.signoff_id, r.person, e.id, e.statement.user
                    ),
                ));
                continue;
            }
            let was_held = self.by_id.contains_key(&e.id);
            if !was_held {
                self.hold(&e);
            }
            let outcome = match approvers {
                Ok(a) => self.release(e.id, &r.person, &r.signatures, a, required),
                Err(why) => Err(ReleaseRefused::NotEnough {
                    signoff_id: e.id,
                    person: r.person.clone(),
                    valid: 0,
                    required,
                    details: format!(" ({why})"),
                }),
            };
            match outcome {
                Ok((hold, _)) if was_held => u.released.push(hold),
                // Approved before this host held anything: nothing changed.
                Ok(_) => {}
                Err(why) => {
                    if let Some(h) = self.by_id.get_mut(&e.id)
                        && h.approvals != r.signatures
                    {
                        h.approvals.clone_from(&r.signatures);
                        u.approvals_changed = true;
                    }
                    if !was_held {
                        u.added.extend(self.by_id.get(&e.id).cloned());
                    }
                    u.kept.push(why);
                }
            }
        }
        u
    }

    /// The key IDs (any CA) and key fingerprints the holds keep revoked, as the KRL
    /// carries them beside the host view's.
    pub fn revocations(&self) -> (BTreeSet<String>, BTreeSet<Vec<u8>>) {
        let key_ids = self.held_key_ids().into_iter().map(str::to_owned).collect();
        let sha256 = self
            .by_id
            .values()
            .flat_map(|h| h.key_fingerprints.iter())
            .filter_map(|f| {
                signoff_core::fingerprint::Sha256Fingerprint::parse_bytes(f.as_bytes()).ok()
            })
            .map(|d| d.0.to_vec())
            .collect();
        (key_ids, sha256)
    }

    /// The holds persisted in `state_dir`; none when the file does not exist.
    pub fn load(state_dir: &Path) -> Result<Holds, HoldsError> {
        let path = state_dir.join(HOLDS_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Holds::default()),
            Err(source) => return Err(HoldsError::Read { path, source }),
        };
        let holds: Vec<Hold> = serde_json::from_slice(&bytes).map_err(|e| HoldsError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Holds {
            by_id: holds.into_iter().map(|h| (h.signoff_id, h)).collect(),
        })
    }

    /// Writes the holds atomically (readable by the sshd commands' user).
    pub fn persist(&self, state_dir: &Path) -> Result<(), HoldsError> {
        let holds: Vec<&Hold> = self.by_id.values().collect();
        let bytes = serde_json::to_vec(&holds).map_err(|e| HoldsError::Serialize(e.to_string()))?;
        write_atomic(
            &state_dir.join(HOLDS_FILE),
            &bytes,
            crate::state::writer::FILE_MODE,
        )?;
        Ok(())
    }

    /// Records a hold for an enforced sign-off; true when it is new.
    pub fn hold(&mut self, e: &Enforceable) -> bool {
        if self.by_id.contains_key(&e.id) {
            return false;
        }
        self.by_id.insert(
            e.id,
            Hold {
                signoff_id: e.id,
                person: e.statement.user.clone(),
                key_ids: e.statement.key_ids.clone(),
                key_fingerprints: e.statement.key_fingerprints.clone(),
                approvals: Vec::new(),
            },
        );
        true
    }

    /// The sign-off ids holding `person` out, if any.
    pub fn holding(&self, person: &str) -> BTreeSet<u64> {
        self.by_id
            .values()
            .filter(|h| h.person == person)
            .map(|h| h.signoff_id)
            .collect()
    }

    /// Whether a login with this certificate key ID or key fingerprint is held out.
    pub fn holds_key(&self, key_id: &str, fingerprint: &str) -> bool {
        self.by_id.values().any(|h| {
            (!key_id.is_empty() && h.key_ids.iter().any(|k| k == key_id))
                || (!fingerprint.is_empty() && h.key_fingerprints.iter().any(|f| f == fingerprint))
        })
    }

    /// Key IDs that must stay in the KRL while their holds stand.
    pub fn held_key_ids(&self) -> BTreeSet<&str> {
        self.by_id
            .values()
            .flat_map(|h| h.key_ids.iter().map(String::as_str))
            .collect()
    }

    /// Counts the approvals each hold kept from its last re-enable again, against
    /// `approvers` and `required` as they are now (the approvers file changed), and
    /// releases the holds they now suffice for; returns those.
    pub fn reevaluate(&mut self, approvers: &[Approver], required: usize) -> Vec<Hold> {
        let pending: Vec<(u64, String, Vec<String>)> = self
            .by_id
            .values()
            .filter(|h| !h.approvals.is_empty())
            .map(|h| (h.signoff_id, h.person.clone(), h.approvals.clone()))
            .collect();
        pending
            .into_iter()
            .filter_map(|(id, person, approvals)| {
                self.release(id, &person, &approvals, approvers, required)
                    .ok()
                    .map(|(hold, _)| hold)
            })
            .collect()
    }

    /// Every hold.
    pub fn iter(&self) -> impl Iterator<Item = &Hold> {
        self.by_id.values()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Releases the hold of `signoff_id` when `signatures` hold `required` valid approvals
    /// from distinct `approvers` over the re-enable bytes of that sign-off and `person`.
    /// On success returns the released hold and the tally; otherwise the hold stays.
    pub fn release<S: AsRef<str>>(
        &mut self,
        signoff_id: u64,
        person: &str,
        signatures: &[S],
        approvers: &[Approver],
        required: usize,
    ) -> Result<(Hold, Tally), ReleaseRefused> {
        let hold = self
            .by_id
            .get(&signoff_id)
            .ok_or(ReleaseRefused::NoHold(signoff_id))?;
        if hold.person != person {
            return Err(ReleaseRefused::OtherPerson {
                signoff_id,
                held: hold.person.clone(),
                named: person.to_owned(),
            });
        }
        let bytes = ReenableApproval { signoff_id, person }
            .canonical_bytes()
            .map_err(|e| ReleaseRefused::BadBytes {
                signoff_id,
                message: e.to_string(),
            })?;
        let t = tally(&bytes, signatures, approvers);
        // k = 0 would release on nothing: the config refuses it, and so does this.
        if required == 0 || t.count() < required {
            let details = if t.refused.is_empty() {
                String::new()
            } else {
                let reasons: Vec<String> = t.refused.iter().map(ToString::to_string).collect();
                format!(" ({})", reasons.join("; "))
            };
            return Err(ReleaseRefused::NotEnough {
                signoff_id,
                person: person.to_owned(),
                valid: t.count(),
                required,
                details,
            });
        }
        let hold = self
            .by_id
            .remove(&signoff_id)
            .ok_or(ReleaseRefused::NoHold(signoff_id))?;
        Ok((hold, t))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use signoff_proto::approvals::{NAMESPACE, parse_allowed_signers};
    use signoff_proto::orders::SignoffStatement;
    use ssh_key::{HashAlg, LineEnding, PrivateKey};

    use super::*;

    pub(crate) fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    pub(crate) fn approve(k: &PrivateKey, signoff_id: u64, person: &str) -> String {
        let bytes = ReenableApproval { signoff_id, person }
            .canonical_bytes()
            .unwrap();
        k.sign(NAMESPACE, HashAlg::Sha512, &bytes)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }

    fn approvers() -> Vec<Approver> {
        let text: String = [("ann", 1u8), ("bob", 2), ("cy", 3)]
            .iter()
            .map(|(who, seed)| format!("{who} {}\n", key(*seed).public_key().to_openssh().unwrap()))
            .collect();
        parse_allowed_signers(&text).unwrap()
    }

    pub(crate) fn enforced(id: u64, user: &str) -> Enforceable {
        Enforceable {
            id,
            statement: SignoffStatement {
                signoff_id: id,
                user: user.into(),
                reason: "left".into(),
                operator: "token:hr".into(),
                issued_at: 1,
                key_ids: vec![format!("{user}@corp")],
                key_fingerprints: vec![],
            },
        }
    }

    pub(crate) fn reenable(
        order_key: &PrivateKey,
        id: u64,
        user: &str,
        sigs: Vec<String>,
    ) -> v1::Reenable {
        let statement = enforced(id, user).statement.encode().unwrap();
        let signature = signoff_proto::orders::sign(order_key, &statement).unwrap();
        v1::Reenable {
            signoff_id: id,
            person: user.into(),
            statement: Some(v1::SignedStatement {
                id,
                statement,
                signature,
            }),
            signatures: sigs,
        }
    }

    #[test]
    fn approvals_kept_from_a_reenable_count_again_when_the_approvers_change() {
        let order = key(7);
        let signers = [order.public_key().clone()];
        let mut h = Holds::default();
        h.update(
            &[enforced(3, "mallory")],
            &[],
            Ok(&signers),
            Ok(&approvers()),
            2,
        );
        h.update(
            &[],
            &[reenable(&order, 4, "eve", vec![])],
            Ok(&signers),
            Ok(&approvers()),
            2,
        );
        // ann, and dee, who is not an approver (yet).
        let sigs = vec![
            approve(&key(1), 3, "mallory"),
            approve(&key(4), 3, "mallory"),
        ];
        let u = h.update(
            &[],
            &[reenable(&order, 3, "mallory", sigs.clone())],
            Ok(&signers),
            Ok(&approvers()),
            2,
        );
        assert!(u.approvals_changed && u.released.is_empty(), "{u:?}");
        // The same re-enable again changes nothing.
        let u = h.update(
            &[],
            &[reenable(&order, 3, "mallory", sigs)],
            Ok(&signers),
            Ok(&approvers()),
            2,
        );
        assert!(!u.changed(), "{u:?}");
        // Unchanged approvers release nothing; the kept approvals survive a restart.
        assert!(h.reevaluate(&approvers(), 2).is_empty());
        let dir = tempfile::tempdir().unwrap();
        h.persist(dir.path()).unwrap();
        let mut h = Holds::load(dir.path()).unwrap();
        // dee added to the approvers file (as Ansible does): released, mallory only.
        let with_dee = {
            let mut text: String = [("ann", 1u8), ("bob", 2), ("cy", 3), ("dee", 4)]
                .iter()
                .map(|(who, seed)| {
                    format!("{who} {}\n", key(*seed).public_key().to_openssh().unwrap())
                })
                .collect();
            text.push('\n');
            parse_allowed_signers(&text).unwrap()
        };
        // k raised to 3 at the same time: still not enough.
        assert!(h.reevaluate(&with_dee, 3).is_empty());
        let released = h.reevaluate(&with_dee, 2);
        assert_eq!(
            released.iter().map(|r| r.signoff_id).collect::<Vec<_>>(),
            [3]
        );
        assert!(h.holding("mallory").is_empty());
        assert_eq!(
            h.holding("eve"),
            BTreeSet::from([4]),
            "no approvals: still held"
        );
    }

    #[test]
    fn a_view_holds_enforced_and_unapproved_reenables_and_releases_approved_ones() {
        let a = approvers();
        let order = key(7);
        let signers = [order.public_key().clone()];
        let mut h = Holds::default();
        // The statement in force: held.
        let u = h.update(&[enforced(3, "mallory")], &[], Ok(&signers), Ok(&a), 2);
        assert_eq!(u.added.len(), 1);
        // A re-enable this host never saw the sign-off of, without approvals: held too.
        let u = h.update(
            &[],
            &[reenable(&order, 4, "eve", vec![])],
            Ok(&signers),
            Ok(&a),
            2,
        );
        assert_eq!(u.added.len(), 1, "{u:?}");
        assert_eq!(h.holding("eve"), BTreeSet::from([4]));
        // One approval: kept.
        let one = vec![approve(&key(1), 3, "mallory")];
        let u = h.update(
            &[],
            &[reenable(&order, 3, "mallory", one)],
            Ok(&signers),
            Ok(&a),
            2,
        );
        assert!(u.added.is_empty() && u.released.is_empty(), "{u:?}");
        assert!(
            u.kept.len() == 1 && u.approvals_changed,
            "the approval is kept: {u:?}"
        );
        // Two: released.
        let two = vec![
            approve(&key(1), 3, "mallory"),
            approve(&key(2), 3, "mallory"),
        ];
        let u = h.update(
            &[],
            &[reenable(&order, 3, "mallory", two.clone())],
            Ok(&signers),
            Ok(&a),
            2,
        );
        assert_eq!(u.released.len(), 1, "{u:?}");
        assert!(h.holding("mallory").is_empty());
        // The same re-enable again (a later snapshot): nothing held again.
        let u = h.update(
            &[],
            &[reenable(&order, 3, "mallory", two)],
            Ok(&signers),
            Ok(&a),
            2,
        );
        assert!(!u.changed(), "{u:?}");
        // A re-enable whose statement is not signed by the order key holds nothing.
        let u = h.update(
            &[],
            &[reenable(&key(9), 5, "zed", vec![])],
            Ok(&signers),
            Ok(&a),
            2,
        );
        assert!(!u.changed() && u.refused.len() == 1, "{u:?}");
        let (key_ids, _) = h.revocations();
        assert_eq!(key_ids, BTreeSet::from(["eve@corp".to_owned()]));
    }

    #[test]
    fn holds_persist_across_restarts_and_a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Holds::load(dir.path()).unwrap().is_empty());
        let mut h = Holds::default();
        assert!(h.hold(&enforced(3, "mallory")));
        assert!(!h.hold(&enforced(3, "mallory")));
        h.persist(dir.path()).unwrap();
        let loaded = Holds::load(dir.path()).unwrap();
        assert_eq!(loaded, h);
        assert_eq!(loaded.holding("mallory"), BTreeSet::from([3]));
        assert!(loaded.holds_key("mallory@corp", ""));
        assert!(!loaded.holds_key("alice@corp", ""));
        assert_eq!(loaded.held_key_ids(), BTreeSet::from(["mallory@corp"]));
        fs::write(dir.path().join(HOLDS_FILE), b"[{").unwrap();
        assert!(matches!(
            Holds::load(dir.path()),
            Err(HoldsError::Corrupt { .. })
        ));
    }

    #[test]
    fn k_minus_one_approvals_keep_the_hold_and_k_release_it() {
        let a = approvers();
        let mut h = Holds::default();
        h.hold(&enforced(3, "mallory"));
        let one = [approve(&key(1), 3, "mallory")];
        let err = h.release(3, "mallory", &one, &a, 2).unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseRefused::NotEnough {
                    valid: 1,
                    required: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(h.holding("mallory"), BTreeSet::from([3]));
        let two = [
            approve(&key(1), 3, "mallory"),
            approve(&key(2), 3, "mallory"),
        ];
        let (released, t) = h.release(3, "mallory", &two, &a, 2).unwrap();
        assert_eq!(released.person, "mallory");
        assert_eq!(t.count(), 2);
        assert!(h.holding("mallory").is_empty());
    }

    #[test]
    fn one_approver_twice_counts_once() {
        let a = approvers();
        let mut h = Holds::default();
        h.hold(&enforced(3, "mallory"));
        let twice = [
            approve(&key(1), 3, "mallory"),
            approve(&key(1), 3, "mallory"),
        ];
        let err = h.release(3, "mallory", &twice, &a, 2).unwrap_err();
        assert!(err.to_string().contains("second approval by ann"), "{err}");
    }

    #[test]
    fn approvals_of_another_sign_off_or_by_strangers_do_not_release() {
        let a = approvers();
        let mut h = Holds::default();
        h.hold(&enforced(3, "mallory"));
        h.hold(&enforced(4, "mallory"));
        // Approvals of sign-off 4 replayed for sign-off 3.
        let other = [
            approve(&key(1), 4, "mallory"),
            approve(&key(2), 4, "mallory"),
        ];
        let err = h.release(3, "mallory", &other, &a, 2).unwrap_err();
        assert!(
            err.to_string().contains("does not match these bytes"),
            "{err}"
        );
        // Signed by keys that are not approvers' (forged).
        let forged = [
            approve(&key(8), 3, "mallory"),
            approve(&key(9), 3, "mallory"),
        ];
        let err = h.release(3, "mallory", &forged, &a, 2).unwrap_err();
        assert!(err.to_string().contains("not an approver"), "{err}");
        // Approvals for another person on the same sign-off id.
        let eve = [approve(&key(1), 3, "eve"), approve(&key(2), 3, "eve")];
        let err = h.release(3, "eve", &eve, &a, 2).unwrap_err();
        assert!(matches!(err, ReleaseRefused::OtherPerson { .. }), "{err}");
        // Releasing sign-off 4 leaves sign-off 3 holding mallory out.
        let four = [
            approve(&key(1), 4, "mallory"),
            approve(&key(3), 4, "mallory"),
        ];
        h.release(4, "mallory", &four, &a, 2).unwrap();
        assert_eq!(h.holding("mallory"), BTreeSet::from([3]));
        assert!(matches!(
            h.release(9, "mallory", &four, &a, 2),
            Err(ReleaseRefused::NoHold(9))
        ));
    }
}
