//! What this host keeps against the control plane's word (issue 20): the holds of people
//! it saw signed off ([`crate::holds`]) and the audit head it witnessed
//! ([`crate::witness`]).
//!
//! The daemon asks [`Guards::check_head`] before it applies a host view or delta: the
//! head must be signed with the order key (a key of `allowed_signers`) and, once this host
//! holds a head, extend it through the rows sent with it. A control plane whose log no
//! longer extends the held head is refused: nothing it sends is applied, the refusal is
//! logged as an error, shown by `signoff-agent status` and reported on the stream, and the
//! host keeps its last view (which strict mode lets go stale and then refuses). The first
//! head a host sees is taken on first use; until then a head whose signature does not
//! verify (an `allowed_signers` without the order key) is not witnessed, and the view is
//! applied as before.
//!
//! After applying a view, [`Guards::update_holds`] records and releases holds and writes
//! them before the KRL and the view are written and the revision acked.

use std::collections::BTreeSet;
use std::path::Path;

use signoff_proto::approvals::Approver;
use signoff_proto::audit_chain::{Head, Link, head_bytes};
use signoff_proto::{orders, v1};
use ssh_key::PublicKey;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::holds::{Hold, Holds, HoldsError, Update};
use crate::signoffs::Enforceable;
use crate::witness::{Witness, WitnessError};

/// Why the guards cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardsError {
    /// The holds file is unusable: who is held out is unknown, and the sshd commands
    /// refuse every login until it is repaired (delete it only knowing that this releases
    /// every hold).
    #[error("the holds file is unusable")]
    Holds(#[from] HoldsError),
    /// The witnessed head is unusable.
    #[error("the witnessed audit head is unusable")]
    Witness(#[from] WitnessError),
}

/// The host's holds and witnessed head.
#[derive(Debug)]
pub struct Guards {
    /// `Some` when `[approvals]` is configured: only such hosts hold people out.
    holds: Option<Holds>,
    witness: Witness,
    /// Why the control plane was refused, while it is.
    pub refused: Option<String>,
    /// The approvers file as [`Guards::recheck_holds`] last read it.
    approvers_seen: Option<Vec<u8>>,
}

impl Guards {
    /// Loads what `config.state_dir` holds.
    pub fn load(config: &Config) -> Result<Guards, GuardsError> {
        let holds = match &config.approvals {
            Some(_) => Some(Holds::load(&config.state_dir)?),
            None => None,
        };
        Ok(Guards {
            holds,
            witness: Witness::load(&config.state_dir)?,
            refused: None,
            approvers_seen: None,
        })
    }

    /// The audit row of the held head (0 before the first).
    pub fn witnessed_seq(&self) -> u64 {
        u64::try_from(self.witness.head().seq).unwrap_or(0)
    }

    /// The held head.
    pub fn witnessed(&self) -> &Head {
        self.witness.head()
    }

    /// Checks and keeps the head a view or delta carries; on refusal, what to report.
    pub fn check_head(
        &mut self,
        config: &Config,
        head: Option<&v1::SignedAuditHead>,
        links: &[v1::AuditLink],
    ) -> Result<(), v1::WitnessRefusal> {
        let held = self.witness.head().clone();
        let refuse = |reason: String| v1::WitnessRefusal {
            held_seq: u64::try_from(held.seq).unwrap_or(0),
            held_hash: held.hash.clone(),
            reason,
        };
        let Some(head) = head else {
            if held.seq > 0 {
                return Err(refuse(
                    "the control plane sent no audit head, and this host witnessed one".into(),
                ));
            }
            return Ok(());
        };
        let new = Head {
            seq: i64::try_from(head.seq).map_err(|_| refuse("head row out of range".into()))?,
            hash: head.hash.clone(),
        };
        let signers = match &config.allowed_signers {
            Some(path) => match crate::orders::load_allowed_signers(path) {
                Ok(keys) => keys,
                Err(e) if held.seq == 0 => {
                    warn!(error = %e, "audit head not witnessed: allowed_signers unusable");
                    return Ok(());
                }
                Err(e) => return Err(refuse(format!("cannot check the head's signature: {e}"))),
            },
            // Without allowed_signers nothing the control plane signs can be checked:
            // there is nothing to witness with.
            None => return Ok(()),
        };
        if let Err(e) = orders::verify(&head_bytes(&new), &head.signature, &signers) {
            let why = format!("the audit head's signature is refused: {e}");
            if held.seq == 0 {
                // Nothing witnessed yet: this host cannot witness (its allowed_signers does
                // not hold the order key), which refuses nothing it did not refuse before.
                warn!(reason = %why, "audit head not witnessed");
                return Ok(());
            }
            return Err(refuse(why));
        }
        let result = if held.seq == 0 {
            // First use: nothing held to extend.
            self.witness.accept_first(&config.state_dir, new)
        } else {
            let fields: Vec<Link<'_>> = links.iter().map(Link::from).collect();
            self.witness.accept(&config.state_dir, &fields, new)
        };
        result.map_err(|e| refuse(signoff_core::error::chain(&e)))
    }

    /// Records and releases holds for a view just applied: `enforced` are the statements
    /// it brought that verified, `reenables` its re-enables. Writes the holds when they
    /// changed. Without `[approvals]`, does nothing.
    pub fn update_holds(
        &mut self,
        config: &Config,
        enforced: &[Enforceable],
        reenables: &[v1::Reenable],
    ) -> Result<Option<Update>, HoldsError> {
        let (Some(holds), Some(a)) = (self.holds.as_mut(), config.approvals.as_ref()) else {
            return Ok(None);
        };
        if enforced.is_empty() && reenables.is_empty() {
            return Ok(None);
        }
        let signers: Result<Vec<PublicKey>, String> = match &config.allowed_signers {
            Some(path) => crate::orders::load_allowed_signers(path)
                .map_err(|e| signoff_core::error::chain(&e)),
            None => Err("no allowed_signers file is configured".to_owned()),
        };
        let approvers: Result<Vec<Approver>, String> = crate::approvals::load_approvers(a);
        let update = holds.update(
            enforced,
            reenables,
            signers.as_deref().map_err(String::as_str),
            approvers.as_deref().map_err(String::as_str),
            a.required,
        );
        for h in &update.added {
            info!(signoff = h.signoff_id, person = %h.person, "held: re-enabling this person here needs approvals");
        }
        for h in &update.released {
            info!(signoff = h.signoff_id, person = %h.person, "hold released: the re-enable carries enough approvals");
        }
        for why in &update.kept {
            warn!(reason = %why, "re-enable not approved here; the person stays held out");
        }
        for (id, why) in &update.refused {
            error!(signoff = id, reason = %why, "re-enable refused");
        }
        if update.changed() {
            holds.persist(&config.state_dir)?;
        }
        Ok(Some(update))
    }

    /// Releases the holds whose kept approvals suffice for the approvers file as it is now,
    /// when it changed since the last look (Ansible added an approver, or the file was
    /// fixed); writes the holds when any was released and returns those. Without
    /// `[approvals]`, or with an approvers file that cannot be read, releases nothing.
    pub fn recheck_holds(&mut self, config: &Config) -> Result<Vec<Hold>, HoldsError> {
        let (Some(holds), Some(a)) = (self.holds.as_mut(), config.approvals.as_ref()) else {
            return Ok(Vec::new());
        };
        let Ok(bytes) = std::fs::read(&a.approvers) else {
            return Ok(Vec::new());
        };
        if self.approvers_seen.as_ref() == Some(&bytes) {
            return Ok(Vec::new());
        }
        self.approvers_seen = Some(bytes);
        let approvers = match crate::approvals::load_approvers(a) {
            Ok(approvers) => approvers,
            Err(why) => {
                warn!(reason = %why, "approvers file unusable: no hold is released");
                return Ok(Vec::new());
            }
        };
        let released = holds.reevaluate(&approvers, a.required);
        for h in &released {
            info!(signoff = h.signoff_id, person = %h.person, "hold released: with the approvers file as it is now, its re-enable's approvals suffice");
        }
        if !released.is_empty() {
            holds.persist(&config.state_dir)?;
        }
        Ok(released)
    }

    /// What the holds keep revoked in the KRL, when there are any.
    pub fn held_revocations(&self) -> Option<(BTreeSet<String>, BTreeSet<Vec<u8>>)> {
        self.holds
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(Holds::revocations)
    }
}

/// Whether `state_dir` holds `person` (or this certificate key ID or key fingerprint)
/// out, for the sshd commands. A holds file that cannot be read is an error: the caller
/// refuses the login.
pub fn held_out(state_dir: &Path, config: &Config) -> Result<Option<Holds>, HoldsError> {
    if config.approvals.is_none() {
        return Ok(None);
    }
    let holds = Holds::load(state_dir)?;
    Ok((!holds.is_empty()).then_some(holds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holds::tests::{approve, enforced, key, reenable};

    fn signers_file(keys: &[(&str, u8)]) -> String {
        keys.iter()
            .map(|(who, seed)| format!("{who} {}\n", key(*seed).public_key().to_openssh().unwrap()))
            .collect()
    }

    #[test]
    fn an_unusable_approvers_file_releases_no_hold_and_the_fixed_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let order = key(7);
        let allowed = dir.path().join("allowed_signers");
        fs_write(&allowed, &signers_file(&[("orders", 7)]));
        let approvers = dir.path().join("approvers");
        // ann signs mallory's re-enable, but only bob and cy are approvers.
        fs_write(&approvers, &signers_file(&[("bob", 2), ("cy", 3)]));
        let config = Config::parse(
            &format!(
                "state_dir = {:?}\nallowed_signers = {:?}\n\
                 [approvals]\nprivileged_accounts = [\"root\"]\nrequired = 1\napprovers = {:?}\n",
                dir.path(),
                allowed,
                approvers
            ),
            Path::new("agent.toml"),
        )
        .unwrap();
        let mut guards = Guards::load(&config).unwrap();
        guards
            .update_holds(&config, &[enforced(3, "mallory")], &[])
            .unwrap();
        let u = guards
            .update_holds(
                &config,
                &[],
                &[reenable(
                    &order,
                    3,
                    "mallory",
                    vec![approve(&key(1), 3, "mallory")],
                )],
            )
            .unwrap()
            .unwrap();
        assert!(u.released.is_empty(), "ann is no approver: {u:?}");
        let holding = |g: &Guards| g.holds.as_ref().unwrap().holding("mallory");
        assert_eq!(holding(&guards), BTreeSet::from([3]));
        // First look: the file as it is releases nothing; unchanged, it is not read again.
        assert!(guards.recheck_holds(&config).unwrap().is_empty());
        assert!(guards.recheck_holds(&config).unwrap().is_empty());

        // A broken file (a half-written edit, a bad key) is unusable as a whole, even
        // with ann's good line in it: nothing released, no error.
        fs_write(
            &approvers,
            &format!("{}cy ssh-ed25519 not-base64\n", signers_file(&[("ann", 1)])),
        );
        assert!(guards.recheck_holds(&config).unwrap().is_empty());
        assert_eq!(holding(&guards), BTreeSet::from([3]));
        // Gone altogether: the same.
        std::fs::remove_file(&approvers).unwrap();
        assert!(guards.recheck_holds(&config).unwrap().is_empty());
        assert_eq!(holding(&guards), BTreeSet::from([3]));

        // Fixed, with ann added: ann's kept approval releases mallory, and the release is
        // written, so a restart does not hold her again.
        fs_write(&approvers, &signers_file(&[("ann", 1), ("bob", 2)]));
        let released = guards.recheck_holds(&config).unwrap();
        assert_eq!(
            released.iter().map(|h| h.signoff_id).collect::<Vec<_>>(),
            [3]
        );
        assert!(holding(&guards).is_empty());
        let reloaded = Guards::load(&config).unwrap();
        assert!(holding(&reloaded).is_empty());
    }

    fn fs_write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }
}
