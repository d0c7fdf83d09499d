//! The host's own check of k-of-n approvals, for grants to privileged accounts.
//!
//! Which accounts are privileged, `k`, and who the approvers are come from the agent's
//! configuration (`[approvals]`, set by Ansible), never from the control plane. A host-view
//! entry for a privileged account admits a login only through one of its grants whose
//! approvals — SSHSIGs over the grant's canonical bytes
//! ([`signoff_proto::approvals::GrantApproval`], rebuilt here from the entry's user and
//! account and the grant's id, host group and expiry) — come from `k` distinct approvers,
//! and which has not expired by its own signed expiry. Anything else fails closed: an
//! approvers file that is missing or does not parse admits nothing privileged.
//!
//! Both sshd commands (`principals`, `authorized-keys`) apply it, in `signoff-agent` and in
//! `signoff-sshd` alike, at every login: a changed approvers file or `k` takes effect at
//! once.

use std::cell::RefCell;
use std::fmt;

use signoff_proto::approvals::{Approver, GrantApproval, parse_allowed_signers, tally};

use crate::config::{ApprovalsConfig, Config};
use crate::state::ApprovedGrantRecord;

/// The approval check for one privileged account at one moment.
#[derive(Debug)]
pub struct ApprovalCheck<'a> {
    account: &'a str,
    required: usize,
    now: u64,
    approvers: Result<Vec<Approver>, String>,
    /// Why entries were refused, for the log line.
    refusals: RefCell<Vec<String>>,
}

impl<'a> ApprovalCheck<'a> {
    /// The check for `account`, or `None` when it is not privileged.
    pub fn for_account(cfg: &'a Config, account: &'a str, now: u64) -> Option<Self> {
        let a = cfg
            .approvals
            .as_ref()
            .filter(|a| a.is_privileged(account))?;
        Some(ApprovalCheck {
            account,
            required: a.required,
            now,
            approvers: load_approvers(a),
            refusals: RefCell::new(Vec::new()),
        })
    }

    /// Whether an entry of `user` with these grants is admitted.
    pub fn admits(&self, user: &str, grants: &[ApprovedGrantRecord<'_>]) -> bool {
        let approvers = match &self.approvers {
            Ok(a) => a,
            Err(e) => {
                self.refuse(format!("{user}: {e}"));
                return false;
            }
        };
        if grants.is_empty() {
            self.refuse(format!("{user}: no approvals"));
            return false;
        }
        for g in grants {
            let grant = GrantApproval {
                grant_id: g.grant_id,
                person: user,
                account: self.account,
                host_group: g.host_group,
                not_after: g.not_after,
            };
            let bytes = match grant.canonical_bytes() {
                Ok(b) => b,
                Err(e) => {
                    self.refuse(format!("{user}: grant {}: {e}", g.grant_id));
                    continue;
                }
            };
            if g.not_after != 0 && g.not_after <= self.now {
                self.refuse(format!(
                    "{user}: grant {} expired at {}",
                    g.grant_id, g.not_after
                ));
                continue;
            }
            let t = tally(&bytes, &g.signatures, approvers);
            if t.count() >= self.required {
                return true;
            }
            let mut why = format!(
                "{user}: grant {} has {} valid approval(s) of {} required",
                g.grant_id,
                t.count(),
                self.required
            );
            if !t.refused.is_empty() {
                let reasons: Vec<String> = t.refused.iter().map(ToString::to_string).collect();
                why.push_str(&format!(" ({})", reasons.join("; ")));
            }
            self.refuse(why);
        }
        false
    }

    fn refuse(&self, why: String) {
        self.refusals.borrow_mut().push(why);
    }

    /// What was refused, for [`crate::sshd_commands::Denial::NotApproved`].
    pub fn into_refusal(self) -> NotApproved {
        NotApproved {
            account: self.account.to_owned(),
            reasons: self.refusals.into_inner(),
        }
    }
}

/// The approvers of `[approvals]`, or why they cannot be read (nothing is approved then).
pub fn load_approvers(a: &ApprovalsConfig) -> Result<Vec<Approver>, String> {
    let text = std::fs::read_to_string(&a.approvers)
        .map_err(|e| format!("cannot read approvers {}: {e}", a.approvers.display()))?;
    parse_allowed_signers(&text).map_err(|e| format!("approvers {}: {e}", a.approvers.display()))
}

/// Why a privileged account's grants admitted nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApproved {
    /// The account.
    pub account: String,
    /// One reason per refused grant.
    pub reasons: Vec<String>,
}

impl fmt::Display for NotApproved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "account {:?} is privileged and no matching grant carries enough approvals",
            self.account
        )?;
        if !self.reasons.is_empty() {
            write!(f, ": {}", self.reasons.join("; "))?;
        }
        Ok(())
    }
}
