//! Host certificates (issue 19): the control plane's host CA signs an enrolled host's own
//! host keys, with the host's enrolled names as principals, so that clients trust the
//! fleet with one `@cert-authority` line in known_hosts.
//!
//! The host is named by the caller, which must take it from the host's authenticated
//! identity (the agent's mTLS certificate), never from the request: a host gets
//! certificates only for itself. Every issuance and every refusal is audited
//! (`host_certificate.issue`, `host_certificate.refuse`).

use std::sync::Arc;

use super::{Actor, Service, ServiceError};
use crate::model::{Invalid, parse_public_key};
use crate::store::{self, Db};

/// How long a host certificate is valid unless configured otherwise: 30 days. Agents renew
/// at two thirds of it.
pub const DEFAULT_HOST_CERT_TTL: u64 = 30 * 24 * 3600;

/// Issued this long before now, so a host whose clock is a little behind accepts it.
const BACKDATE_SECS: i64 = 300;

/// The host CA: signs host keys only, never a user certificate. Separate from the user CA.
pub struct HostCa {
    key: ssh_key::PrivateKey,
    /// `SHA256:…` of the CA public key.
    pub fingerprint: String,
    /// The CA public key, one OpenSSH line.
    pub public_openssh: String,
    /// Validity of each certificate, seconds.
    pub ttl: u64,
}

impl std::fmt::Debug for HostCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCa")
            .field("fingerprint", &self.fingerprint)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl HostCa {
    /// A host CA over `key`, certificates valid `ttl` seconds.
    pub fn new(key: ssh_key::PrivateKey, ttl: u64) -> Result<Self, ssh_key::Error> {
        let public = key.public_key();
        let public_openssh = ssh_key::PublicKey::new(public.key_data().clone(), "").to_openssh()?;
        Ok(HostCa {
            fingerprint: public.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
            public_openssh,
            key,
            ttl,
        })
    }

    /// The one known_hosts line that makes clients trust every host of the fleet whose name
    /// matches `pattern` (e.g. `*.example.com`).
    pub fn known_hosts_line(&self, pattern: &str) -> String {
        format!("@cert-authority {pattern} {}", self.public_openssh)
    }
}

/// Checks the host-name field of a `@cert-authority` line: known_hosts patterns,
/// comma-separated, with no whitespace or control character (which would end the field,
/// or the line, and let the rest be read as a key).
pub fn validate_known_hosts_patterns(field: &str, hosts: &str) -> Result<(), Invalid> {
    if hosts.is_empty() || hosts.len() > 1024 {
        return Err(Invalid::new(
            field,
            "give 1 to 1024 characters of known_hosts patterns, e.g. *.example.com",
        ));
    }
    if hosts.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::new(
            field,
            "known_hosts patterns are separated by commas, without spaces or control characters",
        ));
    }
    Ok(())
}

/// Why a host certificate is refused (audited as `host_certificate.refuse`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostRefusal {
    /// A name asked for is not one the host was enrolled with.
    #[error(
        "host {host:?} was not enrolled as {name:?}; a host certificate names only {enrolled:?}"
    )]
    NameNotEnrolled {
        /// The host asking.
        host: String,
        /// The name asked for.
        name: String,
        /// The names it was enrolled with.
        enrolled: Vec<String>,
    },
    /// The key was certified for another host.
    #[error(
        "key {key} is host {owner:?}'s host key; a host gets certificates only for its own keys"
    )]
    KeyOfAnotherHost {
        /// `SHA256:…` of the key.
        key: String,
        /// The host it belongs to.
        owner: String,
    },
    /// The host did not prove it holds the key.
    #[error("key {key}: {why}; a host gets certificates only for keys it holds")]
    NoPossession {
        /// `SHA256:…` of the key.
        key: String,
        /// What is wrong with the proof.
        why: signoff_proto::host_keys::ProofError,
    },
}

impl HostRefusal {
    /// A stable code for the audit log and the wire.
    pub fn code(&self) -> &'static str {
        match self {
            HostRefusal::NameNotEnrolled { .. } => "name_not_enrolled",
            HostRefusal::KeyOfAnotherHost { .. } => "key_of_another_host",
            HostRefusal::NoPossession { .. } => "no_possession",
        }
    }
}

/// Why no host certificate came out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostCertError {
    /// Policy refuses it (audited).
    #[error(transparent)]
    Refused(HostRefusal),
    /// This server has no host CA loaded.
    #[error("this server has no host CA loaded")]
    NoCa,
    /// Signing failed.
    #[error("cannot sign the host certificate")]
    Sign(#[source] ssh_key::Error),
    /// The input, the host or the store.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<Invalid> for HostCertError {
    fn from(e: Invalid) -> Self {
        HostCertError::Service(e.into())
    }
}

impl From<sqlx::Error> for HostCertError {
    fn from(e: sqlx::Error) -> Self {
        HostCertError::Service(e.into())
    }
}

/// A signed host certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCertificate {
    /// One OpenSSH line (`ssh-ed25519-cert-v01@openssh.com AAAA… host:ID`).
    pub certificate: String,
    /// Principals: the host's enrolled names.
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: i64,
    /// Unix seconds.
    pub valid_before: i64,
}

impl Service {
    /// Loads the host CA that [`Service::sign_host_key`] signs with.
    pub fn set_host_ca(&self, ca: HostCa) {
        if let Ok(mut slot) = self.inner.host_ca.lock() {
            *slot = Some(Arc::new(ca));
        }
    }

    /// The host CA in use, if one is loaded.
    pub fn host_ca(&self) -> Option<Arc<HostCa>> {
        self.inner.host_ca.lock().ok().and_then(|s| s.clone())
    }

    /// Signs `public_key` as a host key of `host`, which the caller took from the host's
    /// authenticated identity. Principals are the host's enrolled names (its hostname and
    /// its id); `names`, when not empty, must all be among them (else refused, audited).
    /// `proof`: the key's possession proof for `host` (`signoff_proto::host_keys`), which
    /// must verify (else refused, audited); `None` only where an operator vouches for the
    /// key themselves (the CLI, tests), never for a request from a host.
    pub async fn sign_host_key(
        &self,
        actor: &Actor,
        host: &str,
        public_key: &str,
        proof: Option<&str>,
        names: &[String],
    ) -> Result<HostCertificate, HostCertError> {
        let ca = self.host_ca().ok_or(HostCertError::NoCa)?;
        let key = parse_public_key("public_key", public_key)?;
        let mut w = self.write(actor, "host_certificate.issue", false).await?;
        let hostname = store::certificates::live_hostname(w.tx.db(), host)
            .await?
            .ok_or_else(|| ServiceError::not_found("host", host))?;
        let mut enrolled = vec![hostname];
        if !enrolled.iter().any(|n| n == host) {
            enrolled.push(host.to_owned());
        }
        let owner = key_owner(w.tx.db(), &key.fingerprint).await?;
        let possession = proof
            .map(|p| signoff_proto::host_keys::verify(&key.key, host, p))
            .transpose();
        let refusal = if let Err(why) = possession {
            Some(HostRefusal::NoPossession {
                key: key.fingerprint.clone(),
                why,
            })
        } else if let Some(name) = names.iter().find(|n| !enrolled.contains(n)) {
            Some(HostRefusal::NameNotEnrolled {
                host: host.to_owned(),
                name: name.clone(),
                enrolled: enrolled.clone(),
            })
        } else {
            owner
                .filter(|o| o != host)
                .map(|owner| HostRefusal::KeyOfAnotherHost {
                    key: key.fingerprint.clone(),
                    owner,
                })
        };
        if let Some(refusal) = refusal {
            w.commit(
                "host_certificate.refuse",
                &format!("host:{host}"),
                &refusal.to_string(),
                serde_json::json!({
                    "refusal": refusal.code(),
                    "key_fingerprint": key.fingerprint,
                    "names": names,
                }),
            )
            .await?;
            return Err(HostCertError::Refused(refusal));
        }
        let valid_after = w.now - BACKDATE_SECS;
        let valid_before = w
            .now
            .saturating_add(i64::try_from(ca.ttl).unwrap_or(i64::MAX));
        store::certificates::bind_host_key(w.tx.db(), &key.fingerprint, host, w.now).await?;
        let certificate = sign(&ca, &key.key, host, &enrolled, valid_after, valid_before)
            .map_err(HostCertError::Sign)?;
        w.commit(
            "host_certificate.issue",
            &format!("host:{host}"),
            "",
            serde_json::json!({
                "key_fingerprint": key.fingerprint,
                "ca_fingerprint": ca.fingerprint,
                "principals": enrolled,
                "valid_after": valid_after,
                "valid_before": valid_before,
            }),
        )
        .await?;
        Ok(HostCertificate {
            certificate,
            principals: enrolled,
            valid_after,
            valid_before,
        })
    }
}

/// The live host `fingerprint` is bound to, if any. A removed host's keys are free again
/// (a host reinstalled under a new id keeps its keys), for whoever proves holding them.
pub(crate) async fn key_owner(
    db: Db<'_>,
    fingerprint: &str,
) -> Result<Option<String>, sqlx::Error> {
    store::certificates::host_key_holder(db, fingerprint).await
}

fn sign(
    ca: &HostCa,
    key: &ssh_key::PublicKey,
    host: &str,
    principals: &[String],
    valid_after: i64,
    valid_before: i64,
) -> Result<String, ssh_key::Error> {
    let mut nonce = [0u8; ssh_key::certificate::Builder::RECOMMENDED_NONCE_SIZE];
    let mut serial = [0u8; 8];
    {
        use rand::TryRngCore as _;
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .and_then(|()| rand::rngs::OsRng.try_fill_bytes(&mut serial))
            .map_err(|_| ssh_key::Error::Crypto)?;
    }
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    let mut b = ssh_key::certificate::Builder::new(
        nonce.to_vec(),
        key.key_data().clone(),
        secs(valid_after),
        secs(valid_before),
    )?;
    b.serial(u64::from_be_bytes(serial))?
        .cert_type(ssh_key::certificate::CertType::Host)?
        .key_id(format!("host:{host}"))?
        .comment(format!("host:{host}"))?;
    for p in principals {
        b.valid_principal(p.clone())?;
    }
    b.sign(&ca.key)?.to_openssh()
}

#[cfg(test)]
#[path = "host_certificates_tests.rs"]
mod tests;
