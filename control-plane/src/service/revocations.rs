//! Trusted user CAs and the revocation set, and the KRL built from it.

use serde::Serialize;
use signoff_proto::krl::{CaScope, KrlBuilder};

use super::{Actor, Result, Service, ServiceError, conflict_on_unique};
use crate::model::{
    Invalid, Revocation, TrustedCa, parse_public_key, parse_sha256_fingerprint, validate_key_id,
    validate_user_name,
};
use crate::store::{self, Db};

/// How many ids of the revocations one expiry sweep withdrew its audit row lists; the rest
/// are found by the row's revision (`until_rev`).
const EXPIRE_AUDIT_IDS: i64 = 1000;

/// A live revocation with its id and provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RevocationRecord {
    /// Id, for withdrawing it.
    pub id: i64,
    /// What is revoked.
    #[serde(flatten)]
    pub revocation: Revocation,
    /// Why.
    pub reason: String,
    /// The revision that added it.
    pub revision: i64,
    /// Unix seconds after which it is withdrawn by itself (what it revokes has expired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<i64>,
}

impl Service {
    /// Trusts a user CA.
    pub async fn add_ca(
        &self,
        actor: &Actor,
        name: &str,
        public_key: &str,
        reason: &str,
    ) -> Result<TrustedCa> {
        validate_user_name("name", name)?;
        let key = parse_public_key("public_key", public_key)?;
        let mut w = self.write(actor, "ca.add", true).await?;
        let rev = w.rev();
        store::revocations::insert_ca(w.tx.db(), name, &key.openssh, &key.fingerprint, rev)
            .await
            .map_err(|e| {
                conflict_on_unique(e, || {
                    format!(
                        "a CA named {name:?} or with key {} is already trusted",
                        key.fingerprint
                    )
                })
            })?;
        let ca = TrustedCa {
            name: name.to_owned(),
            public_key: key.openssh,
            fingerprint: key.fingerprint,
        };
        w.commit(
            "ca.add",
            &format!("ca:{name}"),
            reason,
            super::audit_details(&ca)?,
        )
        .await?;
        Ok(ca)
    }

    /// Trusted CAs.
    pub async fn list_cas(&self) -> Result<Vec<TrustedCa>> {
        let mut conn = self.store().conn().await?;
        Ok(store::revocations::live_cas(conn.db())
            .await?
            .into_iter()
            .map(|(name, public_key, fingerprint)| TrustedCa {
                name,
                public_key,
                fingerprint,
            })
            .collect())
    }

    /// Stops trusting a CA.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, ca = name))]
    pub async fn remove_ca(&self, actor: &Actor, name: &str, reason: &str) -> Result<()> {
        let mut w = self.write(actor, "ca.remove", true).await?;
        let rev = w.rev();
        let n = store::revocations::withdraw_ca(w.tx.db(), name, rev).await?;
        if n == 0 {
            return Err(ServiceError::not_found("CA", name));
        }
        w.commit(
            "ca.remove",
            &format!("ca:{name}"),
            reason,
            serde_json::json!({}),
        )
        .await
    }

    /// Adds a revocation. `ca` in the request may be a trusted CA's name or fingerprint;
    /// it is stored as the fingerprint.
    pub async fn revoke(
        &self,
        actor: &Actor,
        revocation: Revocation,
        reason: &str,
    ) -> Result<RevocationRecord> {
        self.revoke_until(actor, revocation, None, reason).await
    }

    /// [`Service::revoke`], withdrawn by itself after `valid_before` (Unix seconds): for an
    /// outside certificate whose expiry the caller knows. Serials of certificates this
    /// control plane issued get the latest end of their validity whatever is given.
    #[tracing::instrument(skip_all, fields(actor = %actor.0))]
    pub async fn revoke_until(
        &self,
        actor: &Actor,
        revocation: Revocation,
        valid_before: Option<i64>,
        reason: &str,
    ) -> Result<RevocationRecord> {
        // A revocation that ends before it starts would be acknowledged and never in
        // force: refused, not taken.
        if let Some(before) = valid_before
            && before <= self.now()
        {
            return Err(Invalid::new(
                "valid_before",
                format!("{before} is not in the future (unix seconds when the revocation may end)"),
            )
            .into());
        }
        let mut w = self.write(actor, "revocation.add", true).await?;
        let rev = w.rev();
        let normalized = normalize(w.tx.db(), revocation).await?;
        let (kind, ca, value, lo, hi) = columns(&normalized);
        let valid_before = match (&normalized, lo, hi) {
            (Revocation::Serial { ca, .. }, Some(lo), Some(hi)) => {
                store::revocations::issued_until(w.tx.db(), ca, lo, hi)
                    .await?
                    .or(valid_before)
            }
            _ => valid_before,
        };
        let new = store::revocations::New {
            kind,
            ca: ca.as_deref(),
            value: &value,
            lo,
            hi,
            reason,
            rev,
            valid_before,
        };
        let id = store::revocations::insert(w.tx.db(), &new)
            .await
            .map_err(|e| conflict_on_unique(e, || "this is already revoked".to_owned()))?;
        let record = RevocationRecord {
            id,
            revocation: normalized,
            reason: reason.to_owned(),
            revision: rev,
            valid_before,
        };
        w.commit(
            "revocation.add",
            &format!("revocation:{id}"),
            reason,
            super::audit_details(&record)?,
        )
        .await?;
        Ok(record)
    }

    /// Withdraws a revocation. One that enforces a sign-off in force is refused (a
    /// conflict naming the sign-off): withdrawing it would let the person's key back into
    /// the KRL while the sign-off record still says they are out. Re-enabling the person
    /// is the one way to withdraw it.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, revocation = id))]
    pub async fn unrevoke(&self, actor: &Actor, id: i64, reason: &str) -> Result<()> {
        let mut w = self.write(actor, "revocation.remove", true).await?;
        let rev = w.rev();
        let owner = store::revocations::enforced_signoff(w.tx.db(), id).await?;
        if let Some((signoff, user)) = owner {
            return Err(ServiceError::Conflict(format!(
                "revocation {id} enforces sign-off #{signoff} of {user:?}; it is withdrawn only \
                 by re-enabling {user:?} (POST /api/v1/users/{user}/reenable with a reason)"
            )));
        }
        let n = store::revocations::withdraw(w.tx.db(), id, rev).await?;
        if n == 0 {
            return Err(ServiceError::not_found("revocation", id.to_string()));
        }
        w.commit(
            "revocation.remove",
            &format!("revocation:{id}"),
            reason,
            serde_json::json!({}),
        )
        .await
    }

    /// Withdraws every revocation whose `valid_before` has passed, in one revision
    /// (audited as `revocation.expire`), so hosts' KRLs hold only what can still be used.
    /// One that enforces a sign-off in force stays. Returns how many were withdrawn.
    ///
    /// One set-based `UPDATE` (a million rows in seconds, where one statement per row took
    /// 46 s: BENCHMARKS.md). The revocations withdrawn are exactly those whose `until_rev`
    /// is the audit row's revision; its details carry the count and the first
    /// `EXPIRE_AUDIT_IDS` ids.
    pub async fn expire_revocations(&self, actor: &Actor) -> Result<usize> {
        let now = self.now();
        // A read first: most calls find nothing and must not take the writer lock.
        let any = {
            let mut conn = self.store().conn().await?;
            store::revocations::any_due(conn.db(), now).await?
        };
        if !any {
            return Ok(0);
        }
        let mut w = self.write(actor, "revocation.expire", true).await?;
        let rev = w.rev();
        let count = store::revocations::expire_due(w.tx.db(), now, rev).await?;
        let ids = store::revocations::withdrawn_by(w.tx.db(), rev, EXPIRE_AUDIT_IDS).await?;
        w.commit(
            "revocation.expire",
            "revocations",
            "what they revoke has expired",
            serde_json::json!({ "count": count, "until_rev": rev, "ids": ids }),
        )
        .await?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// Wire blobs of every CA key ever trusted, by fingerprint: revocations name CAs by
    /// fingerprint, and a CA that is no longer trusted keeps its revocations.
    pub async fn ca_blobs(&self) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
        let mut conn = self.store().conn().await?;
        Ok(store::revocations::every_ca_key(conn.db())
            .await?
            .into_iter()
            .filter_map(|(fingerprint, line)| {
                let key = ssh_key::PublicKey::from_openssh(&line).ok()?;
                Some((fingerprint, signoff_proto::krl::key_blob(key.key_data())))
            })
            .collect())
    }

    /// Live revocations.
    pub async fn list_revocations(&self) -> Result<Vec<RevocationRecord>> {
        let mut conn = self.store().conn().await?;
        Ok(store::revocations::live(conn.db())
            .await?
            .into_iter()
            .map(|r| RevocationRecord {
                id: r.id,
                revocation: from_columns(
                    r.kind,
                    r.ca_fingerprint,
                    r.value,
                    r.serial_lo,
                    r.serial_hi,
                ),
                reason: r.reason,
                revision: r.since_rev,
                valid_before: r.valid_before,
            })
            .collect())
    }

    /// The OpenSSH KRL of the live revocation set, for sshd's `RevokedKeys` on hosts
    /// without an agent. With `ca` (name or fingerprint), certificate sections are limited
    /// to that CA and to any-CA revocations.
    pub async fn krl(&self, ca: Option<&str>) -> Result<Vec<u8>> {
        let revision = self.revision();
        let records = self.list_revocations().await?;
        let mut conn = self.store().conn().await?;
        let only = match ca {
            Some(ca) => Some(resolve_ca(conn.db(), "ca", ca).await?.0),
            None => None,
        };
        let mut b = KrlBuilder::new();
        b.version(u64::try_from(revision).unwrap_or(0))
            .generated_date(u64::try_from(self.now()).unwrap_or(0));
        for r in &records {
            match &r.revocation {
                Revocation::KeyId { ca, key_id } => {
                    if let Some(scope) =
                        scope_for(conn.db(), ca.as_deref(), only.as_deref()).await?
                    {
                        // Validated on the way in: no NUL.
                        let _ = b.revoke_key_id(&scope, key_id.as_bytes());
                    }
                }
                Revocation::Serial { ca, lo, hi } => {
                    if let Some(scope) = scope_for(conn.db(), Some(ca), only.as_deref()).await? {
                        let _ = b.revoke_serial_range(&scope, *lo, *hi);
                    }
                }
                Revocation::Key { public_key } => {
                    if let Ok(k) = ssh_key::PublicKey::from_openssh(public_key) {
                        b.revoke_key(k.key_data());
                    }
                }
                Revocation::Sha256 { fingerprint } => {
                    if let Ok(ssh_key::Fingerprint::Sha256(h)) =
                        fingerprint.parse::<ssh_key::Fingerprint>()
                    {
                        b.revoke_sha256(h);
                    }
                }
            }
        }
        Ok(b.build().encode())
    }
}

/// The KRL scope for a revocation under CA fingerprint `ca` (None: any CA), or None when
/// `only` excludes it.
async fn scope_for(db: Db<'_>, ca: Option<&str>, only: Option<&str>) -> Result<Option<CaScope>> {
    let Some(fp) = ca else {
        return Ok(Some(CaScope::Any));
    };
    if only.is_some_and(|o| o != fp) {
        return Ok(None);
    }
    // A CA that is no longer trusted keeps its revocations: look at every row ever.
    let line = store::revocations::ca_key(db, fp).await?;
    Ok(line
        .and_then(|l| ssh_key::PublicKey::from_openssh(&l).ok())
        .map(|k| CaScope::key(k.key_data())))
}

/// Resolves a CA given by name or fingerprint to (fingerprint, name).
async fn resolve_ca(db: Db<'_>, field: &str, ca: &str) -> Result<(String, String)> {
    store::revocations::resolve_ca(db, ca)
        .await?
        .ok_or_else(|| {
            Invalid::new(
                field,
                format!("{ca:?} is not a trusted CA (give its name or SHA256 fingerprint)"),
            )
            .into()
        })
}

async fn normalize(db: Db<'_>, r: Revocation) -> Result<Revocation> {
    Ok(match r {
        Revocation::KeyId { ca, key_id } => {
            validate_key_id("key_id", &key_id)?;
            let ca = match ca {
                Some(ca) => Some(resolve_ca(db, "ca", &ca).await?.0),
                None => None,
            };
            Revocation::KeyId { ca, key_id }
        }
        Revocation::Serial { ca, lo, hi } => {
            if lo == 0 {
                return Err(Invalid::new(
                    "lo",
                    "serial 0 means \"no serial\" and cannot be revoked; revoke the key ID",
                )
                .into());
            }
            if lo > hi {
                return Err(Invalid::new("hi", format!("range {lo}-{hi} is empty")).into());
            }
            if i64::try_from(hi).is_err() {
                return Err(Invalid::new("hi", "serials above 2^63-1 are not supported").into());
            }
            Revocation::Serial {
                ca: resolve_ca(db, "ca", &ca).await?.0,
                lo,
                hi,
            }
        }
        Revocation::Key { public_key } => Revocation::Key {
            public_key: parse_public_key("public_key", &public_key)?.openssh,
        },
        Revocation::Sha256 { fingerprint } => Revocation::Sha256 {
            fingerprint: parse_sha256_fingerprint("fingerprint", &fingerprint)?,
        },
    })
}

type Columns = (
    &'static str,
    Option<String>,
    String,
    Option<i64>,
    Option<i64>,
);

fn columns(r: &Revocation) -> Columns {
    match r {
        Revocation::KeyId { ca, key_id } => ("key_id", ca.clone(), key_id.clone(), None, None),
        Revocation::Serial { ca, lo, hi } => (
            "serial",
            Some(ca.clone()),
            String::new(),
            i64::try_from(*lo).ok(),
            i64::try_from(*hi).ok(),
        ),
        Revocation::Key { public_key } => ("key", None, public_key.clone(), None, None),
        Revocation::Sha256 { fingerprint } => ("sha256", None, fingerprint.clone(), None, None),
    }
}

pub(crate) fn from_columns(
    kind: String,
    ca: Option<String>,
    value: String,
    lo: Option<i64>,
    hi: Option<i64>,
) -> Revocation {
    let serial = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
    match kind.as_str() {
        "key_id" => Revocation::KeyId { ca, key_id: value },
        "serial" => Revocation::Serial {
            ca: ca.unwrap_or_default(),
            lo: serial(lo),
            hi: serial(hi),
        },
        "key" => Revocation::Key { public_key: value },
        _ => Revocation::Sha256 { fingerprint: value },
    }
}
