//! Approvals of grants and of re-enables: the control plane collects approvers'
//! signatures and ships them in host views; it cannot make one, and it does not decide
//! whether they suffice.
//!
//! Re-enabling a signed-off person (`Service::reenable_user`) is the proposal: from its
//! revision every host view carries the sign-off's statement and the approvals collected
//! for its re-enable bytes ([`ReenableApproval`]), and a host with `[approvals]` keeps the
//! person out until k of its approvers signed them (`signoff_agent::holds`). Approvals may
//! be added before the re-enable, too.
//!
//! Hosts decide (`signoff_agent::approvals`): which accounts are privileged, how many
//! approvals (k) a grant to one needs, and who the approvers are come from each host's own
//! configuration. So a signature is checked here only for early feedback — that it is an
//! SSHSIG in the `signoff-approval` namespace over this grant's canonical bytes, by the key
//! it names — never against a list of approvers.

use serde::Serialize;
use signoff_proto::approvals::{GrantApproval, NAMESPACE, ReenableApproval};
use ssh_key::{HashAlg, PublicKey, SshSig};

use super::{Actor, Result, Service, ServiceError, conflict_on_unique};
use crate::model::{Grant, Invalid};
use crate::store;

/// One approver's signature of a grant, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApprovalRecord {
    /// Approval id.
    pub id: i64,
    /// `SHA256:…` of the key that signed.
    pub fingerprint: String,
    /// The key that signed, OpenSSH format.
    pub public_key: String,
    /// The armored SSHSIG.
    pub signature: String,
    /// Who submitted it (the signer is the key).
    pub submitted_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A grant with what approvers must sign and what they have signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GrantApprovals {
    /// The grant.
    pub grant: Grant,
    /// Whether it was proposed for approval (it is listed as pending while it lasts).
    pub approval_requested: bool,
    /// The exact text to sign (`signoff-server approval show ID` prints it).
    pub bytes: String,
    /// The command an approver runs on those bytes, saved as `FILE`.
    pub sign_command: String,
    /// The approvals collected so far. Hosts count only those by their approvers.
    pub approvals: Vec<ApprovalRecord>,
}

/// The canonical bytes of `g` (see [`signoff_proto::approvals`]).
pub fn grant_bytes(g: &Grant) -> Result<Vec<u8>> {
    GrantApproval {
        grant_id: u64::try_from(g.id).unwrap_or(0),
        person: &g.user,
        account: &g.account,
        host_group: &g.group,
        not_after: g.not_after.map_or(0, |t| u64::try_from(t).unwrap_or(0)),
    }
    .canonical_bytes()
    .map_err(|e| Invalid::new("grant", e.to_string()).into())
}

/// The `ssh-keygen` command that signs the bytes saved in `file`.
pub fn sign_command(file: &str) -> String {
    format!("ssh-keygen -Y sign -n {NAMESPACE} -f ~/.ssh/id_ed25519 {file}")
}

fn record(r: store::approvals::ApprovalRow) -> ApprovalRecord {
    ApprovalRecord {
        id: r.id,
        fingerprint: r.fingerprint,
        public_key: r.public_key,
        signature: r.signature,
        submitted_by: r.actor,
        created_at: r.created_at,
    }
}

impl Service {
    /// A live grant with its approvals.
    pub async fn grant_approvals(&self, grant_id: i64) -> Result<GrantApprovals> {
        let r = store::grants::live_by_id(self.store().conn().await?.db(), grant_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("grant", grant_id.to_string()))?;
        let requested = r.approval_requested;
        self.with_approvals(super::grants::grant(r), requested)
            .await
    }

    /// Live grants proposed for approval, or holding any approval, oldest first.
    pub async fn pending_approvals(&self) -> Result<Vec<GrantApprovals>> {
        let rows = store::grants::pending_approval(self.store().conn().await?.db()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let requested = r.approval_requested;
            out.push(
                self.with_approvals(super::grants::grant(r), requested)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn with_approvals(&self, grant: Grant, requested: bool) -> Result<GrantApprovals> {
        let bytes = String::from_utf8(grant_bytes(&grant)?).unwrap_or_default();
        let approvals = store::approvals::of_grant(self.store().conn().await?.db(), grant.id)
            .await?
            .into_iter()
            .map(record)
            .collect();
        let file = format!("grant-{}.approval", grant.id);
        Ok(GrantApprovals {
            sign_command: sign_command(&file),
            grant,
            approval_requested: requested,
            bytes,
            approvals,
        })
    }

    /// Adds an approver's signature to a live grant: a new revision, so every host that
    /// has the grant receives it. Refused (422) when it is not an SSHSIG in the approval
    /// namespace over this grant's bytes; 409 when that key approved the grant already.
    pub async fn approve_grant(
        &self,
        actor: &Actor,
        grant_id: i64,
        signature: &str,
    ) -> Result<ApprovalRecord> {
        let mut w = self.write(actor, "grant.approve", true).await?;
        let rev = w.rev();
        let r = store::grants::live_by_id(w.tx.db(), grant_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("grant", grant_id.to_string()))?;
        let user_id = r.user_id;
        let grant = super::grants::grant(r);
        let bytes = grant_bytes(&grant)?;
        let key = check_signature(
            &bytes,
            &format!("grant {grant_id}"),
            &grant_id.to_string(),
            signature,
        )?;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let public_key = key
            .to_openssh()
            .map_err(|_| Invalid::new("signature", "names a key that cannot be written"))?;
        let id = store::approvals::insert_grant_approval(
            w.tx.db(),
            grant_id,
            user_id,
            &fingerprint,
            &public_key,
            signature.trim(),
            &actor.0,
            w.now,
            rev,
        )
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!("key {fingerprint} has already approved grant {grant_id}")
            })
        })?;
        let record = ApprovalRecord {
            id,
            fingerprint: fingerprint.clone(),
            public_key,
            signature: signature.trim().to_owned(),
            submitted_by: actor.0.clone(),
            created_at: w.now,
        };
        w.commit(
            "grant.approve",
            &format!("user:{}", grant.user),
            "",
            serde_json::json!({
                "grant": grant,
                "approval": id,
                "fingerprint": fingerprint,
            }),
        )
        .await?;
        Ok(record)
    }

    /// Marks a live grant as proposed for approval (listed as pending). Audited; no
    /// revision, since hosts do not see the mark.
    pub async fn request_approval(&self, actor: &Actor, grant_id: i64) -> Result<()> {
        let w = self.write(actor, "grant.approval_requested", false).await?;
        let mut w = w;
        let done = store::grants::request_approval(w.tx.db(), grant_id).await?;
        if done == 0 {
            return Err(ServiceError::not_found("grant", grant_id.to_string()));
        }
        w.commit(
            "grant.approval_requested",
            &format!("grant:{grant_id}"),
            "",
            serde_json::json!({ "grant": grant_id }),
        )
        .await
    }
}

/// A sign-off with the re-enable bytes approvers sign and what they have signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReenableApprovals {
    /// The sign-off.
    pub signoff_id: i64,
    /// The person it signed off.
    pub user: String,
    /// Whether the person was re-enabled from it (hosts with approvals then wait for them).
    pub reenabled: bool,
    /// The exact text to sign (`signoff-server approval show reenable-ID` prints it).
    pub bytes: String,
    /// The command an approver runs on those bytes, saved as `FILE`.
    pub sign_command: String,
    /// The approvals collected so far. Hosts count only those by their approvers.
    pub approvals: Vec<ApprovalRecord>,
}

/// The canonical re-enable bytes of sign-off `signoff_id` of `user`.
pub fn reenable_bytes(signoff_id: i64, user: &str) -> Result<Vec<u8>> {
    ReenableApproval {
        signoff_id: u64::try_from(signoff_id).unwrap_or(0),
        person: user,
    }
    .canonical_bytes()
    .map_err(|e| Invalid::new("user", e.to_string()).into())
}

impl Service {
    /// A sign-off with its re-enable approvals.
    pub async fn reenable_approvals(&self, signoff_id: i64) -> Result<ReenableApprovals> {
        let (id, user, reenabled) =
            store::approvals::signoff(self.store().conn().await?.db(), signoff_id)
                .await?
                .ok_or_else(|| ServiceError::not_found("sign-off", signoff_id.to_string()))?;
        self.with_reenable_approvals(id, user, reenabled).await
    }

    /// Re-enables awaiting approvals, oldest first: every sign-off a person was re-enabled
    /// from, and the one in force when it holds approvals already, unless a later
    /// sign-off of theirs is in force. Whether hosts have enough is theirs to say (k is
    /// theirs): they stay listed until the person is signed off again.
    pub async fn pending_reenables(&self) -> Result<Vec<ReenableApprovals>> {
        let rows = store::approvals::pending_reenables(self.store().conn().await?.db()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, user, reenabled) in rows {
            out.push(self.with_reenable_approvals(id, user, reenabled).await?);
        }
        Ok(out)
    }

    async fn with_reenable_approvals(
        &self,
        signoff_id: i64,
        user: String,
        reenabled: bool,
    ) -> Result<ReenableApprovals> {
        let bytes = String::from_utf8(reenable_bytes(signoff_id, &user)?).unwrap_or_default();
        let approvals = store::approvals::of_reenable(self.store().conn().await?.db(), signoff_id)
            .await?
            .into_iter()
            .map(record)
            .collect();
        Ok(ReenableApprovals {
            sign_command: sign_command(&format!("reenable-{signoff_id}.approval")),
            signoff_id,
            user,
            reenabled,
            bytes,
            approvals,
        })
    }

    /// Adds an approver's signature of re-enabling the person of sign-off `signoff_id`: a
    /// new revision, so every host receives it with the re-enable. Refused (422) when it is
    /// not an SSHSIG in the approval namespace over these re-enable bytes; 409 when that
    /// key approved this re-enable already.
    pub async fn approve_reenable(
        &self,
        actor: &Actor,
        signoff_id: i64,
        signature: &str,
    ) -> Result<ApprovalRecord> {
        let mut w = self.write(actor, "signoff.reenable_approve", true).await?;
        let rev = w.rev();
        let (_, user, _) = store::approvals::signoff(w.tx.db(), signoff_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("sign-off", signoff_id.to_string()))?;
        let bytes = reenable_bytes(signoff_id, &user)?;
        let key = check_signature(
            &bytes,
            &format!("the re-enable of sign-off {signoff_id}"),
            &format!("reenable-{signoff_id}"),
            signature,
        )?;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let public_key = key
            .to_openssh()
            .map_err(|_| Invalid::new("signature", "names a key that cannot be written"))?;
        let id = store::approvals::insert_reenable_approval(
            w.tx.db(),
            signoff_id,
            &fingerprint,
            &public_key,
            signature.trim(),
            &actor.0,
            w.now,
            rev,
        )
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!(
                    "key {fingerprint} has already approved the re-enable of sign-off {signoff_id}"
                )
            })
        })?;
        let record = ApprovalRecord {
            id,
            fingerprint: fingerprint.clone(),
            public_key,
            signature: signature.trim().to_owned(),
            submitted_by: actor.0.clone(),
            created_at: w.now,
        };
        w.commit(
            "signoff.reenable_approve",
            &format!("user:{user}"),
            "",
            serde_json::json!({
                "signoff": signoff_id,
                "approval": id,
                "fingerprint": fingerprint,
            }),
        )
        .await?;
        Ok(record)
    }
}

/// Checks that `signature` is an SSHSIG in the approval namespace over `bytes` (the
/// canonical bytes of `what`, which `signoff-server approval show ID` prints), by the key
/// it carries; returns that key.
fn check_signature(bytes: &[u8], what: &str, id: &str, signature: &str) -> Result<PublicKey> {
    let sig = SshSig::from_pem(signature.trim()).map_err(|_| {
        Invalid::new(
            "signature",
            "is not an armored SSH signature (-----BEGIN SSH SIGNATURE-----, from ssh-keygen -Y sign)",
        )
    })?;
    if sig.namespace() != NAMESPACE {
        return Err(Invalid::new(
            "signature",
            format!(
                "is for namespace {:?}; sign with -n {NAMESPACE}",
                sig.namespace()
            ),
        )
        .into());
    }
    let key = PublicKey::from(sig.public_key().clone());
    key.verify(NAMESPACE, bytes, &sig).map_err(|_| {
        Invalid::new(
            "signature",
            format!(
                "does not match {what}'s bytes (signoff-server approval show {id} prints them)"
            ),
        )
    })?;
    Ok(key)
}
