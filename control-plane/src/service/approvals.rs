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
use sqlx::Row;
use ssh_key::{HashAlg, PublicKey, SshSig};

use super::{Actor, Result, Service, ServiceError, conflict_on_unique};
use crate::model::{Grant, Invalid};

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

const SELECT_GRANT: &str = "SELECT g.id, u.name, g.account, hg.name, g.not_after,
     g.approval_requested, g.user_id FROM grants g
     JOIN users u ON u.id = g.user_id JOIN host_groups hg ON hg.id = g.group_id";

fn grant_of(r: &sqlx::sqlite::SqliteRow) -> Grant {
    Grant {
        id: r.get(0),
        user: r.get(1),
        account: r.get(2),
        group: r.get(3),
        not_after: r.get(4),
    }
}

impl Service {
    /// A live grant with its approvals.
    pub async fn grant_approvals(&self, grant_id: i64) -> Result<GrantApprovals> {
        let r = sqlx::query(&format!(
            "{SELECT_GRANT} WHERE g.id = ? AND g.until_rev IS NULL"
        ))
        .bind(grant_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| ServiceError::not_found("grant", grant_id.to_string()))?;
        self.with_approvals(grant_of(&r), r.get::<i64, _>(5) != 0)
            .await
    }

    /// Live grants proposed for approval, or holding any approval, oldest first.
    pub async fn pending_approvals(&self) -> Result<Vec<GrantApprovals>> {
        let rows = sqlx::query(&format!(
            "{SELECT_GRANT} WHERE g.until_rev IS NULL AND (g.approval_requested != 0
               OR EXISTS (SELECT 1 FROM grant_approvals a WHERE a.grant_id = g.id
                          AND a.until_rev IS NULL))
             ORDER BY g.id"
        ))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(
                self.with_approvals(grant_of(&r), r.get::<i64, _>(5) != 0)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn with_approvals(&self, grant: Grant, requested: bool) -> Result<GrantApprovals> {
        let bytes = String::from_utf8(grant_bytes(&grant)?).unwrap_or_default();
        let approvals = sqlx::query(
            "SELECT id, fingerprint, public_key, signature, actor, created_at
             FROM grant_approvals WHERE grant_id = ? AND until_rev IS NULL ORDER BY id",
        )
        .bind(grant.id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| ApprovalRecord {
            id: r.get(0),
            fingerprint: r.get(1),
            public_key: r.get(2),
            signature: r.get(3),
            submitted_by: r.get(4),
            created_at: r.get(5),
        })
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
        let r = sqlx::query(&format!(
            "{SELECT_GRANT} WHERE g.id = ? AND g.until_rev IS NULL"
        ))
        .bind(grant_id)
        .fetch_optional(&mut *w.tx)
        .await?
        .ok_or_else(|| ServiceError::not_found("grant", grant_id.to_string()))?;
        let grant = grant_of(&r);
        let user_id: i64 = r.get(6);
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
        let id = sqlx::query(
            "INSERT INTO grant_approvals (grant_id, user_id, fingerprint, public_key, signature,
               actor, created_at, since_rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(grant_id)
        .bind(user_id)
        .bind(&fingerprint)
        .bind(&public_key)
        .bind(signature.trim())
        .bind(&actor.0)
        .bind(w.now)
        .bind(rev)
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!("key {fingerprint} has already approved grant {grant_id}")
            })
        })?
        .last_insert_rowid();
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
        let done = sqlx::query(
            "UPDATE grants SET approval_requested = 1 WHERE id = ? AND until_rev IS NULL",
        )
        .bind(grant_id)
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
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

const SELECT_SIGNOFF: &str = "SELECT s.id, u.name, s.until_rev IS NOT NULL FROM signoffs s
     JOIN users u ON u.id = s.user_id";

impl Service {
    /// A sign-off with its re-enable approvals.
    pub async fn reenable_approvals(&self, signoff_id: i64) -> Result<ReenableApprovals> {
        let r = sqlx::query(&format!("{SELECT_SIGNOFF} WHERE s.id = ?"))
            .bind(signoff_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| ServiceError::not_found("sign-off", signoff_id.to_string()))?;
        self.with_reenable_approvals(r.get(0), r.get(1), r.get(2))
            .await
    }

    /// Re-enables awaiting approvals: each person's latest sign-off, when they were
    /// re-enabled from it or it holds approvals already, oldest first. Whether hosts have
    /// enough is theirs to say: they are listed while the sign-off is the person's latest.
    pub async fn pending_reenables(&self) -> Result<Vec<ReenableApprovals>> {
        let rows = sqlx::query(&format!(
            "{SELECT_SIGNOFF} WHERE s.id = (SELECT MAX(id) FROM signoffs l WHERE l.user_id = s.user_id)
               AND (s.until_rev IS NOT NULL OR EXISTS (SELECT 1 FROM reenable_approvals a
                    WHERE a.signoff_id = s.id AND a.until_rev IS NULL))
             ORDER BY s.id"
        ))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(
                self.with_reenable_approvals(r.get(0), r.get(1), r.get(2))
                    .await?,
            );
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
        let approvals = sqlx::query(
            "SELECT id, fingerprint, public_key, signature, actor, created_at
             FROM reenable_approvals WHERE signoff_id = ? AND until_rev IS NULL ORDER BY id",
        )
        .bind(signoff_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| ApprovalRecord {
            id: r.get(0),
            fingerprint: r.get(1),
            public_key: r.get(2),
            signature: r.get(3),
            submitted_by: r.get(4),
            created_at: r.get(5),
        })
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
        let r = sqlx::query(&format!("{SELECT_SIGNOFF} WHERE s.id = ?"))
            .bind(signoff_id)
            .fetch_optional(&mut *w.tx)
            .await?
            .ok_or_else(|| ServiceError::not_found("sign-off", signoff_id.to_string()))?;
        let user: String = r.get(1);
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
        let id = sqlx::query(
            "INSERT INTO reenable_approvals (signoff_id, fingerprint, public_key, signature,
               actor, created_at, since_rev) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(signoff_id)
        .bind(&fingerprint)
        .bind(&public_key)
        .bind(signature.trim())
        .bind(&actor.0)
        .bind(w.now)
        .bind(rev)
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!(
                    "key {fingerprint} has already approved the re-enable of sign-off {signoff_id}"
                )
            })
        })?
        .last_insert_rowid();
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
