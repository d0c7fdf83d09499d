//! signoff's own user CA: short-lived certificates for registered keys of people who may
//! log in, and nothing for anyone else.
//!
//! One rule for every way to ask (API, CLI, SSH): the key must be a live registered key of
//! the person, the person active and not signed off, and neither the key nor the key ID
//! revoked. The certificate's key ID is the person's name (so revoke-by-key-ID and session
//! attribution work as for any CA), its principals are theirs, its serial is the row id of
//! the issuance record, and its validity comes from policy. Every issuance and every
//! refusal is audited.

use std::sync::Arc;

use serde::Serialize;

use super::users::{load_user, user_id};
use super::{Actor, Service, ServiceError};
use crate::model::{Invalid, UserStatus, parse_public_key};
use crate::store::{self, Db};

/// The server-wide validity policy (`[ca]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertPolicy {
    /// Validity when the request names none, in seconds.
    pub default_ttl: u64,
    /// The longest validity issued, in seconds.
    pub max_ttl: u64,
}

impl Default for CertPolicy {
    fn default() -> Self {
        CertPolicy {
            default_ttl: 8 * 3600,
            max_ttl: 24 * 3600,
        }
    }
}

/// Certificates are valid from a little before they are issued, for hosts whose clocks lag.
pub const BACKDATE_SECS: i64 = 60;

/// The CA key in use and the policy it issues under.
pub struct UserCa {
    key: ssh_key::PrivateKey,
    /// `SHA256:…` of the CA public key.
    pub fingerprint: String,
    /// The CA public key, one OpenSSH line.
    pub public_openssh: String,
    /// Validity policy.
    pub policy: CertPolicy,
}

impl std::fmt::Debug for UserCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCa")
            .field("fingerprint", &self.fingerprint)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl UserCa {
    /// A CA over `key` (its public half must be encodable).
    pub fn new(key: ssh_key::PrivateKey, policy: CertPolicy) -> Result<Self, ssh_key::Error> {
        let public = key.public_key();
        let public_openssh = ssh_key::PublicKey::new(public.key_data().clone(), "").to_openssh()?;
        Ok(UserCa {
            fingerprint: public.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
            public_openssh,
            key,
            policy,
        })
    }
}

/// What is asked for.
#[derive(Debug, Clone, Default)]
pub struct IssueRequest {
    /// The public key to certify, one OpenSSH line.
    pub public_key: String,
    /// Validity in seconds; the policy's default when `None`.
    pub ttl: Option<u64>,
    /// A `source-address` list (`10.0.0.0/8,192.0.2.7`); the person's policy's when `None`.
    pub source_address: Option<String>,
}

/// An issued certificate, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IssuedCertificate {
    /// Serial, allocated by the control plane.
    pub serial: u64,
    /// The person (also the key ID).
    pub user: String,
    /// `SHA256:…` of the certified key.
    pub key_fingerprint: String,
    /// The certified key, one OpenSSH line.
    pub public_key: String,
    /// Principals it carries.
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: i64,
    /// Unix seconds.
    pub valid_before: i64,
    /// Its `source-address` option, if any.
    pub source_address: Option<String>,
    /// `SHA256:…` of the CA that signed it.
    pub ca_fingerprint: String,
    /// Whether its serial is revoked now (listings only; false when issued).
    #[serde(default)]
    pub revoked: bool,
    /// The certificate, one OpenSSH line (`ssh-ed25519-cert-v01@openssh.com AAAA… name`);
    /// empty in listings (it is not kept).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificate: String,
}

/// Why a certificate is refused. Each is audited as `certificate.refuse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The person is disabled.
    #[error("{0:?} is disabled; no certificate is issued")]
    Disabled(String),
    /// The person is signed off.
    #[error("{0:?} is signed off; no certificate is issued")]
    SignedOff(String),
    /// The key is not one of the person's registered keys (nor anyone's).
    #[error("key {0} is not registered to anyone; register it first")]
    KeyNotRegistered(String),
    /// The key is registered to somebody else.
    #[error("key {0} is registered to another person")]
    KeyOfAnotherPerson(String),
    /// The key is revoked.
    #[error("key {0} is revoked")]
    KeyRevoked(String),
    /// Certificates with this person's key ID are revoked.
    #[error("key ID {0:?} is revoked")]
    KeyIdRevoked(String),
    /// The key ID (the person's name) belongs to another person.
    #[error("key ID {0:?} is another person's; certificates carry the person's name as key ID")]
    KeyIdTaken(String),
    /// Longer than policy allows.
    #[error("a validity of {asked}s is longer than the {max}s allowed")]
    TooLong {
        /// Seconds asked.
        asked: u64,
        /// Seconds allowed.
        max: u64,
    },
}

impl Refusal {
    /// A stable code for the audit log and the API.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Disabled(_) => "disabled",
            Refusal::SignedOff(_) => "signed_off",
            Refusal::KeyNotRegistered(_) => "key_not_registered",
            Refusal::KeyOfAnotherPerson(_) => "key_of_another_person",
            Refusal::KeyRevoked(_) => "key_revoked",
            Refusal::KeyIdRevoked(_) => "key_id_revoked",
            Refusal::KeyIdTaken(_) => "key_id_taken",
            Refusal::TooLong { .. } => "too_long",
        }
    }
}

/// Why no certificate came out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// Policy refuses it (audited).
    #[error(transparent)]
    Refused(Refusal),
    /// This server has no user CA key loaded.
    #[error("this server has no user CA loaded")]
    NoCa,
    /// Signing failed.
    #[error("cannot sign the certificate")]
    Sign(#[source] ssh_key::Error),
    /// The input, the person or the store.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<Invalid> for IssueError {
    fn from(e: Invalid) -> Self {
        IssueError::Service(e.into())
    }
}

impl From<sqlx::Error> for IssueError {
    fn from(e: sqlx::Error) -> Self {
        IssueError::Service(e.into())
    }
}

impl Service {
    /// Loads the user CA that [`Service::issue_certificate`] signs with.
    pub fn set_user_ca(&self, ca: UserCa) {
        if let Ok(mut slot) = self.inner.user_ca.lock() {
            *slot = Some(Arc::new(ca));
        }
    }

    /// The user CA in use, if one is loaded.
    pub fn user_ca(&self) -> Option<Arc<UserCa>> {
        self.inner.user_ca.lock().ok().and_then(|s| s.clone())
    }

    /// Trusts `public_key` under `name` unless a CA with its fingerprint is trusted already.
    /// Returns whether it was added.
    pub async fn ensure_trusted_ca(
        &self,
        actor: &Actor,
        name: &str,
        public_key: &str,
        reason: &str,
    ) -> Result<bool, ServiceError> {
        let key = parse_public_key("public_key", public_key)?;
        if self
            .list_cas()
            .await?
            .iter()
            .any(|c| c.fingerprint == key.fingerprint)
        {
            return Ok(false);
        }
        self.add_ca(actor, name, &key.openssh, reason).await?;
        Ok(true)
    }

    /// Issues a certificate to `user` for `request.public_key`, or refuses and audits why.
    pub async fn issue_certificate(
        &self,
        actor: &Actor,
        user: &str,
        request: &IssueRequest,
    ) -> Result<IssuedCertificate, IssueError> {
        let ca = self.user_ca().ok_or(IssueError::NoCa)?;
        let key = parse_public_key("public_key", &request.public_key)?;
        if request.ttl == Some(0) {
            return Err(
                Invalid::new("ttl", "a validity of 0 issues nothing; give e.g. \"8h\"").into(),
            );
        }
        if let Some(sa) = &request.source_address {
            validate_source_address("source_address", sa)?;
        }
        // A person whose key ID is not yet their name gets it in the issuance's revision,
        // so hosts know whose certificate it is before it is used.
        let needs_key_id = !self.get_user(user).await?.key_ids.iter().any(|k| k == user);
        let mut w = self.write(actor, "certificate.issue", needs_key_id).await?;
        let uid = user_id(w.tx.db(), user).await?;
        let person = load_user(w.tx.db(), uid).await?;
        let signed_off = super::signoff::is_signed_off(w.tx.db(), uid).await?;
        let policy = person_policy(w.tx.db(), uid, ca.policy, w.now).await?;
        let ttl = request.ttl.unwrap_or(policy.0.default_ttl);
        let refusal = check(w.tx.db(), uid, signed_off, &person, &key, ttl, policy.0).await?;
        if refusal.is_none() && needs_key_id && !person.key_ids.iter().any(|k| k == user) {
            if w.revision.is_none() {
                // Another process removed the key ID between the two reads.
                return Err(ServiceError::Conflict(
                    "the person changed meanwhile; ask again".to_owned(),
                )
                .into());
            }
            let rev = w.rev();
            store::certificates::insert_key_id(w.tx.db(), uid, user, rev).await?;
        }
        if let Some(refusal) = refusal {
            let details = serde_json::json!({
                "refusal": refusal.code(),
                "key_fingerprint": key.fingerprint,
            });
            w.commit(
                "certificate.refuse",
                &format!("user:{user}"),
                &refusal.to_string(),
                details,
            )
            .await?;
            return Err(IssueError::Refused(refusal));
        }

        let source_address = request.source_address.clone().or(policy.1);
        let valid_after = w.now - BACKDATE_SECS;
        let valid_before = w.now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let principals_json = serde_json::to_string(&person.principals)
            .map_err(|e| ServiceError::corrupt("certificate principals", e))?;
        let serial = store::certificates::insert_issued(
            w.tx.db(),
            &store::certificates::NewIssued {
                user_id: uid,
                ca_fingerprint: &ca.fingerprint,
                key_fingerprint: &key.fingerprint,
                public_key: &key.openssh,
                principals: &principals_json,
                valid_after,
                valid_before,
                source_address: source_address.as_deref(),
                issued_at: w.now,
                issued_by: &actor.0,
            },
        )
        .await?;
        let mut issued = IssuedCertificate {
            serial: u64::try_from(serial).unwrap_or(0),
            user: user.to_owned(),
            key_fingerprint: key.fingerprint.clone(),
            public_key: key.openssh.clone(),
            principals: person.principals.clone(),
            valid_after,
            valid_before,
            source_address,
            ca_fingerprint: ca.fingerprint.clone(),
            revoked: false,
            certificate: String::new(),
        };
        let cert = sign(&ca, &key.key, &issued).map_err(IssueError::Sign)?;
        let details = super::audit_details(&issued)?;
        issued.certificate = cert;
        w.commit(
            "certificate.issue",
            &format!("user:{user}"),
            "certificate issued",
            details,
        )
        .await?;
        Ok(issued)
    }

    /// The person a live registered key belongs to, by its `SHA256:` fingerprint.
    pub async fn key_owner(&self, fingerprint: &str) -> Result<Option<String>, ServiceError> {
        let mut c = self.store().conn().await?;
        Ok(store::certificates::key_holder_name(c.db(), fingerprint).await?)
    }

    /// Issues a certificate to whoever holds the registered key `authenticated` (its
    /// `SHA256:` fingerprint; the caller checked its possession, as the SSH listener does),
    /// for `request.public_key`: that key or another of theirs. The issuance is theirs
    /// (actor `ssh:NAME`); a key registered to nobody is refused and audited too.
    pub async fn issue_certificate_to_key_holder(
        &self,
        authenticated: &str,
        request: &IssueRequest,
    ) -> Result<IssuedCertificate, IssueError> {
        let Some(person) = self.key_owner(authenticated).await? else {
            let refusal = Refusal::KeyNotRegistered(authenticated.to_owned());
            let actor = Actor(format!("ssh:{authenticated}"));
            let w = self.write(&actor, "certificate.refuse", false).await?;
            w.commit(
                "certificate.refuse",
                &format!("key:{authenticated}"),
                &refusal.to_string(),
                serde_json::json!({
                    "refusal": refusal.code(),
                    "key_fingerprint": authenticated,
                }),
            )
            .await?;
            return Err(IssueError::Refused(refusal));
        };
        self.issue_certificate(&Actor(format!("ssh:{person}")), &person, request)
            .await
    }

    /// A person's certificates that have not expired, newest first.
    pub async fn list_certificates(
        &self,
        user: &str,
    ) -> Result<Vec<IssuedCertificate>, ServiceError> {
        // The user's id and their certificates, read in one state.
        let mut tx = self.store().begin_read().await?;
        let uid = user_id(tx.db(), user).await?;
        let rows = store::certificates::live_issued(tx.db(), uid, self.now()).await?;
        rows.into_iter()
            .map(|r| {
                Ok(IssuedCertificate {
                    serial: u64::try_from(r.serial)
                        .map_err(|e| ServiceError::corrupt("certificate serial", e))?,
                    user: user.to_owned(),
                    key_fingerprint: r.key_fingerprint,
                    public_key: r.public_key,
                    principals: serde_json::from_str(&r.principals)
                        .map_err(|e| ServiceError::corrupt("certificate principals", e))?,
                    valid_after: r.valid_after,
                    valid_before: r.valid_before,
                    source_address: r.source_address,
                    ca_fingerprint: r.ca_fingerprint,
                    revoked: r.revoked,
                    certificate: String::new(),
                })
            })
            .collect()
    }

    /// Revokes the certificate with `serial` that was issued to `user` (by serial under the
    /// CA that signed it; hosts drop it from their KRL once it has expired).
    pub async fn revoke_certificate(
        &self,
        actor: &Actor,
        user: &str,
        serial: u64,
        reason: &str,
    ) -> Result<crate::service::RevocationRecord, ServiceError> {
        let ca: Option<String> = {
            let mut tx = self.store().begin_read().await?;
            let uid = user_id(tx.db(), user).await?;
            let serial = i64::try_from(serial).unwrap_or(i64::MAX);
            store::certificates::issuing_ca(tx.db(), serial, uid).await?
        };
        let Some(ca) = ca else {
            return Err(ServiceError::not_found(
                "certificate of this person with serial",
                serial.to_string(),
            ));
        };
        self.revoke(
            actor,
            crate::model::Revocation::Serial {
                ca,
                lo: serial,
                hi: serial,
            },
            reason,
        )
        .await
    }

    /// Sets a host group's validity policy (seconds), within the server's maximum: a person
    /// holding a live grant in the group gets certificates no longer than it allows.
    pub async fn set_group_certificate_policy(
        &self,
        actor: &Actor,
        group: &str,
        default_ttl: u64,
        max_ttl: u64,
        reason: &str,
    ) -> Result<(), ServiceError> {
        self.check_policy(default_ttl, max_ttl)?;
        let mut w = self.write(actor, "certificate.group_policy", false).await?;
        let gid = super::hosts::group_ids(w.tx.db(), &[group.to_owned()])
            .await?
            .remove(0);
        store::certificates::set_group_policy(
            w.tx.db(),
            gid,
            i64::try_from(default_ttl).unwrap_or(i64::MAX),
            i64::try_from(max_ttl).unwrap_or(i64::MAX),
        )
        .await?;
        w.commit(
            "certificate.group_policy",
            &format!("group:{group}"),
            reason,
            serde_json::json!({ "default_ttl": default_ttl, "max_ttl": max_ttl }),
        )
        .await
    }

    /// A default and maximum validity are each 1 s or more, the default within the
    /// maximum, the maximum within the server's.
    fn check_policy(&self, default_ttl: u64, max_ttl: u64) -> Result<(), Invalid> {
        let server = self.user_ca().map(|c| c.policy).unwrap_or_default();
        if max_ttl == 0 || max_ttl > server.max_ttl {
            return Err(Invalid::new(
                "max_ttl",
                format!("give 1s to {}s (the server's [ca] max_ttl)", server.max_ttl),
            ));
        }
        if default_ttl == 0 || default_ttl > max_ttl {
            return Err(Invalid::new(
                "default_ttl",
                format!("give 1s to {max_ttl}s (the policy's max_ttl)"),
            ));
        }
        Ok(())
    }

    /// Sets a person's own validity policy (seconds), within the server's maximum.
    pub async fn set_certificate_policy(
        &self,
        actor: &Actor,
        user: &str,
        default_ttl: u64,
        max_ttl: u64,
        source_address: Option<&str>,
        reason: &str,
    ) -> Result<(), ServiceError> {
        self.check_policy(default_ttl, max_ttl)?;
        if let Some(sa) = source_address {
            validate_source_address("source_address", sa)?;
        }
        let mut w = self.write(actor, "certificate.policy", false).await?;
        let uid = user_id(w.tx.db(), user).await?;
        store::certificates::set_person_policy(
            w.tx.db(),
            uid,
            i64::try_from(default_ttl).unwrap_or(i64::MAX),
            i64::try_from(max_ttl).unwrap_or(i64::MAX),
            source_address,
        )
        .await?;
        w.commit(
            "certificate.policy",
            &format!("user:{user}"),
            reason,
            serde_json::json!({ "default_ttl": default_ttl, "max_ttl": max_ttl, "source_address": source_address }),
        )
        .await
    }
}

/// The policy a person's certificates are issued under: the strictest of the server's,
/// their own and those of the host groups they hold a live grant in (a certificate reaches
/// all those hosts); and their default source-address.
async fn person_policy(
    mut db: Db<'_>,
    uid: i64,
    server: CertPolicy,
    now: i64,
) -> Result<(CertPolicy, Option<String>), sqlx::Error> {
    let (own, source_address) = own_policy(db.re(), uid, server).await?;
    let (group_default, group_max) =
        store::certificates::strictest_group_policy(db, uid, now).await?;
    let secs = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    let max_ttl = secs(group_max).map_or(own.max_ttl, |g| g.min(own.max_ttl));
    let default_ttl = secs(group_default)
        .map_or(own.default_ttl, |g| g.min(own.default_ttl))
        .min(max_ttl);
    Ok((
        CertPolicy {
            default_ttl,
            max_ttl,
        },
        source_address,
    ))
}

/// The person's own policy over the server's, and their default source-address.
async fn own_policy(
    db: Db<'_>,
    uid: i64,
    server: CertPolicy,
) -> Result<(CertPolicy, Option<String>), sqlx::Error> {
    Ok(match store::certificates::person_policy(db, uid).await? {
        None => (server, None),
        Some((default_ttl, max_ttl, source_address)) => {
            let secs = |v: i64| u64::try_from(v).unwrap_or(0);
            // The server's maximum still bounds a person's policy set under a larger one.
            let max_ttl = secs(max_ttl).min(server.max_ttl);
            (
                CertPolicy {
                    default_ttl: secs(default_ttl).min(max_ttl),
                    max_ttl,
                },
                source_address,
            )
        }
    })
}

/// The refusal, if any, for certifying `key` for `person` (`signed_off` when a sign-off of
/// theirs is in force) for `ttl` seconds.
async fn check(
    mut db: Db<'_>,
    uid: i64,
    signed_off: bool,
    person: &crate::model::User,
    key: &crate::model::PlainKey,
    ttl: u64,
    policy: CertPolicy,
) -> Result<Option<Refusal>, ServiceError> {
    let name = &person.name;
    if signed_off {
        return Ok(Some(Refusal::SignedOff(name.clone())));
    }
    if person.status != UserStatus::Active {
        return Ok(Some(Refusal::Disabled(name.clone())));
    }
    match store::certificates::key_holder_id(db.re(), &key.fingerprint).await? {
        None => return Ok(Some(Refusal::KeyNotRegistered(key.fingerprint.clone()))),
        Some(o) if o != uid => {
            return Ok(Some(Refusal::KeyOfAnotherPerson(key.fingerprint.clone())));
        }
        Some(_) => {}
    }
    if store::certificates::key_revoked(db.re(), &key.openssh, &key.fingerprint).await? {
        return Ok(Some(Refusal::KeyRevoked(key.fingerprint.clone())));
    }
    if store::certificates::key_id_revoked(db.re(), name).await? {
        return Ok(Some(Refusal::KeyIdRevoked(name.clone())));
    }
    let key_id_owner = store::certificates::key_id_holder(db, name).await?;
    if key_id_owner.is_some_and(|o| o != uid) {
        return Ok(Some(Refusal::KeyIdTaken(name.clone())));
    }
    if ttl > policy.max_ttl {
        return Ok(Some(Refusal::TooLong {
            asked: ttl,
            max: policy.max_ttl,
        }));
    }
    Ok(None)
}

/// A `source-address` value as sshd reads it: comma-separated addresses or CIDR networks.
pub fn validate_source_address(field: &str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > 1024 {
        return Err(Invalid::new(
            field,
            "give 1 to 1024 bytes of addresses or networks",
        ));
    }
    for part in s.split(',') {
        part.parse::<signoff_dashboard::IpNet>()
            .map_err(|e| Invalid::new(field, e.to_string()))?;
    }
    Ok(())
}

/// The extensions `ssh-keygen -s` grants by default: a certificate is a login like a key.
const EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

fn sign(
    ca: &UserCa,
    key: &ssh_key::PublicKey,
    issued: &IssuedCertificate,
) -> Result<String, ssh_key::Error> {
    let mut nonce = [0u8; ssh_key::certificate::Builder::RECOMMENDED_NONCE_SIZE];
    {
        use rand::TryRngCore as _;
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| ssh_key::Error::Crypto)?;
    }
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    let mut b = ssh_key::certificate::Builder::new(
        nonce.to_vec(),
        key.key_data().clone(),
        secs(issued.valid_after),
        secs(issued.valid_before),
    )?;
    b.serial(issued.serial)?
        .cert_type(ssh_key::certificate::CertType::User)?
        .key_id(issued.user.clone())?
        .comment(issued.user.clone())?;
    for p in &issued.principals {
        b.valid_principal(p.clone())?;
    }
    if let Some(sa) = &issued.source_address {
        b.critical_option("source-address", sa.clone())?;
    }
    for e in EXTENSIONS {
        b.extension(e, "")?;
    }
    let cert = b.sign(&ca.key)?;
    cert.to_openssh()
}

#[cfg(test)]
#[path = "certificates_tests.rs"]
mod tests;
