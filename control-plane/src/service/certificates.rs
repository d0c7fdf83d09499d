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
use sqlx::{Row, SqliteConnection};

use super::users::{load_user, user_id};
use super::{Actor, Service, ServiceError};
use crate::model::{Invalid, UserStatus, parse_public_key};

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
        let policy = person_policy(&mut w.tx, uid, ca.policy, w.now).await?;
        let ttl = request.ttl.unwrap_or(policy.0.default_ttl);
        let refusal = check(&mut w.tx, uid, &person, &key, ttl, policy.0).await?;
        if refusal.is_none() && needs_key_id && !person.key_ids.iter().any(|k| k == user) {
            if w.revision.is_none() {
                // Another process removed the key ID between the two reads.
                return Err(ServiceError::Conflict(
                    "the person changed meanwhile; ask again".to_owned(),
                )
                .into());
            }
            let rev = w.rev();
            sqlx::query("INSERT INTO user_key_ids (user_id, key_id, since_rev) VALUES (?, ?, ?)")
                .bind(uid)
                .bind(user)
                .bind(rev)
                .execute(&mut *w.tx)
                .await?;
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
        let serial = sqlx::query(
            "INSERT INTO issued_certificates (user_id, ca_fingerprint, key_fingerprint, public_key,
               principals, valid_after, valid_before, source_address, issued_at, issued_by)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(uid)
        .bind(&ca.fingerprint)
        .bind(&key.fingerprint)
        .bind(&key.openssh)
        .bind(&principals_json)
        .bind(valid_after)
        .bind(valid_before)
        .bind(&source_address)
        .bind(w.now)
        .bind(&actor.0)
        .execute(&mut *w.tx)
        .await?
        .last_insert_rowid();
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
        let mut conn = self.pool().acquire().await?;
        Ok(sqlx::query(
            "SELECT u.name FROM user_keys k JOIN users u ON u.id = k.user_id
             WHERE k.fingerprint = ? AND k.until_rev IS NULL",
        )
        .bind(fingerprint)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.get(0)))
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
        let mut conn = self.pool().acquire().await?;
        let uid = user_id(crate::store::Db::Sqlite(&mut conn), user).await?;
        let rows = sqlx::query(
            "SELECT c.serial, c.key_fingerprint, c.public_key, c.principals, c.valid_after,
                    c.valid_before, c.source_address, c.ca_fingerprint,
                    EXISTS (SELECT 1 FROM revocations r WHERE r.until_rev IS NULL
                              AND r.kind = 'serial' AND r.ca_fingerprint = c.ca_fingerprint
                              AND c.serial BETWEEN r.serial_lo AND r.serial_hi)
             FROM issued_certificates c WHERE c.user_id = ? AND c.valid_before > ?
             ORDER BY c.serial DESC",
        )
        .bind(uid)
        .bind(self.now())
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IssuedCertificate {
                    serial: u64::try_from(r.get::<i64, _>(0))
                        .map_err(|e| ServiceError::corrupt("certificate serial", e))?,
                    user: user.to_owned(),
                    key_fingerprint: r.get(1),
                    public_key: r.get(2),
                    principals: serde_json::from_str(&r.get::<String, _>(3))
                        .map_err(|e| ServiceError::corrupt("certificate principals", e))?,
                    valid_after: r.get(4),
                    valid_before: r.get(5),
                    source_address: r.get(6),
                    ca_fingerprint: r.get(7),
                    revoked: r.get::<i64, _>(8) != 0,
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
            let mut conn = self.pool().acquire().await?;
            let uid = user_id(crate::store::Db::Sqlite(&mut conn), user).await?;
            sqlx::query(
                "SELECT ca_fingerprint FROM issued_certificates WHERE serial = ? AND user_id = ?",
            )
            .bind(i64::try_from(serial).unwrap_or(i64::MAX))
            .bind(uid)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.get(0))
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
        let gid = super::hosts::group_ids(&mut w.tx, &[group.to_owned()])
            .await?
            .remove(0);
        sqlx::query(
            "INSERT INTO group_certificate_policies (group_id, default_ttl, max_ttl)
             VALUES (?, ?, ?)
             ON CONFLICT (group_id) DO UPDATE SET default_ttl = excluded.default_ttl,
               max_ttl = excluded.max_ttl",
        )
        .bind(gid)
        .bind(i64::try_from(default_ttl).unwrap_or(i64::MAX))
        .bind(i64::try_from(max_ttl).unwrap_or(i64::MAX))
        .execute(&mut *w.tx)
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
        sqlx::query(
            "INSERT INTO certificate_policies (user_id, default_ttl, max_ttl, source_address)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id) DO UPDATE SET default_ttl = excluded.default_ttl,
               max_ttl = excluded.max_ttl, source_address = excluded.source_address",
        )
        .bind(uid)
        .bind(i64::try_from(default_ttl).unwrap_or(i64::MAX))
        .bind(i64::try_from(max_ttl).unwrap_or(i64::MAX))
        .bind(source_address)
        .execute(&mut *w.tx)
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
    conn: &mut SqliteConnection,
    uid: i64,
    server: CertPolicy,
    now: i64,
) -> Result<(CertPolicy, Option<String>), sqlx::Error> {
    let (own, source_address) = own_policy(conn, uid, server).await?;
    let groups = sqlx::query(
        "SELECT min(p.default_ttl), min(p.max_ttl) FROM group_certificate_policies p
         WHERE p.group_id IN (SELECT g.group_id FROM grants g WHERE g.user_id = ?
                                AND g.until_rev IS NULL
                                AND (g.not_after IS NULL OR g.not_after > ?))",
    )
    .bind(uid)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let secs = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    let max_ttl = secs(groups.get(1)).map_or(own.max_ttl, |g| g.min(own.max_ttl));
    let default_ttl = secs(groups.get(0))
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
    conn: &mut SqliteConnection,
    uid: i64,
    server: CertPolicy,
) -> Result<(CertPolicy, Option<String>), sqlx::Error> {
    let row = sqlx::query(
        "SELECT default_ttl, max_ttl, source_address FROM certificate_policies WHERE user_id = ?",
    )
    .bind(uid)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        None => (server, None),
        Some(r) => {
            let secs = |v: i64| u64::try_from(v).unwrap_or(0);
            // The server's maximum still bounds a person's policy set under a larger one.
            let max_ttl = secs(r.get(1)).min(server.max_ttl);
            (
                CertPolicy {
                    default_ttl: secs(r.get(0)).min(max_ttl),
                    max_ttl,
                },
                r.get(2),
            )
        }
    })
}

/// The refusal, if any, for certifying `key` for `person` for `ttl` seconds.
async fn check(
    conn: &mut SqliteConnection,
    uid: i64,
    person: &crate::model::User,
    key: &crate::model::PlainKey,
    ttl: u64,
    policy: CertPolicy,
) -> Result<Option<Refusal>, ServiceError> {
    let name = &person.name;
    if super::signoff::is_signed_off(crate::store::Db::Sqlite(&mut *conn), uid).await? {
        return Ok(Some(Refusal::SignedOff(name.clone())));
    }
    if person.status != UserStatus::Active {
        return Ok(Some(Refusal::Disabled(name.clone())));
    }
    let owner: Option<i64> =
        sqlx::query("SELECT user_id FROM user_keys WHERE fingerprint = ? AND until_rev IS NULL")
            .bind(&key.fingerprint)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.get(0));
    match owner {
        None => return Ok(Some(Refusal::KeyNotRegistered(key.fingerprint.clone()))),
        Some(o) if o != uid => {
            return Ok(Some(Refusal::KeyOfAnotherPerson(key.fingerprint.clone())));
        }
        Some(_) => {}
    }
    let revoked: i64 = sqlx::query(
        "SELECT count(*) FROM revocations WHERE until_rev IS NULL AND
           ((kind = 'key' AND value = ?) OR (kind = 'sha256' AND value = ?))",
    )
    .bind(&key.openssh)
    .bind(&key.fingerprint)
    .fetch_one(&mut *conn)
    .await?
    .get(0);
    if revoked > 0 {
        return Ok(Some(Refusal::KeyRevoked(key.fingerprint.clone())));
    }
    let key_id_revoked: i64 = sqlx::query(
        "SELECT count(*) FROM revocations WHERE until_rev IS NULL AND kind = 'key_id' AND value = ?",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?
    .get(0);
    if key_id_revoked > 0 {
        return Ok(Some(Refusal::KeyIdRevoked(name.clone())));
    }
    let key_id_owner: Option<i64> =
        sqlx::query("SELECT user_id FROM user_key_ids WHERE key_id = ? AND until_rev IS NULL")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.get(0));
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
