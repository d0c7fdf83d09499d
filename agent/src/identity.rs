//! The agent's identity: its key, the client certificate the agent CA issued for its host
//! id, and the agent CA certificate. Enrollment creates them; renewal replaces key and
//! certificate together, well before the certificate expires.
//!
//! Files in the identity directory (root-owned, the directory 0700):
//! `key.pem` (0600), `cert.pem`, `ca.pem`, `host_id`, `server` (the control plane URL).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use signoff_proto::v1;
use signoff_proto::v1::agent_sync_client::AgentSyncClient;
use signoff_proto::v1::enrollment_client::EnrollmentClient;

use crate::atomic::{AtomicWriteError, write_atomic};
use crate::transport::{self, TransportError};

/// Why enrollment or loading the identity failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Already enrolled; re-enrolling would replace a working identity.
    #[error(
        "this host is already enrolled as {host_id:?} (identity in {dir}); pass --force to enroll again"
    )]
    AlreadyEnrolled {
        /// The current host id.
        host_id: String,
        /// The identity directory.
        dir: PathBuf,
    },
    /// Not enrolled.
    #[error("not enrolled: no identity in {0}; run `signoff-agent enroll`")]
    NotEnrolled(PathBuf),
    /// A file of the identity cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The key file is readable by others.
    #[error("{path} is readable by group or others; run `chmod 600 {path}`")]
    KeyMode {
        /// The key file.
        path: PathBuf,
    },
    /// Writing a file failed.
    #[error("cannot store the identity")]
    Write(#[from] AtomicWriteError),
    /// Creating the directory failed.
    #[error("cannot create {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Key or CSR generation failed.
    #[error("cannot generate a key and certificate request")]
    Keygen(#[from] rcgen::Error),
    /// Connecting failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The call failed: the control plane refused, or could not be reached (see
    /// [`crate::transport::describe_status`]).
    #[error("{}", crate::transport::describe_status(.0))]
    Refused(tonic::Status),
    /// The certificate the control plane sent does not parse.
    #[error("the control plane sent a certificate that does not parse")]
    BadCertificate,
}

/// A loaded identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The directory it lives in.
    pub dir: PathBuf,
    /// The host id in the certificate.
    pub host_id: String,
    /// The control plane's agent URL.
    pub server: String,
    /// Client certificate, PEM.
    pub cert_pem: String,
    /// Client key, PEM.
    pub key_pem: String,
    /// Agent CA certificate, PEM.
    pub ca_pem: String,
    /// Unix seconds from which the certificate is valid.
    pub not_before: i64,
    /// Unix seconds at which the certificate expires.
    pub not_after: i64,
}

fn read(dir: &Path, name: &str) -> Result<String, IdentityError> {
    let path = dir.join(name);
    fs::read_to_string(&path)
        .map(|s| s.trim_end().to_owned() + if name.ends_with(".pem") { "\n" } else { "" })
        .map_err(|source| IdentityError::Read { path, source })
}

/// Unix seconds between which a PEM certificate is valid.
pub fn validity(cert_pem: &str) -> Option<(i64, i64)> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

impl Identity {
    /// Loads the identity in `dir`, refusing a key file others can read.
    pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
        if !dir.join("cert.pem").exists() {
            return Err(IdentityError::NotEnrolled(dir.to_owned()));
        }
        let key_path = dir.join("key.pem");
        let mode = fs::metadata(&key_path)
            .map_err(|source| IdentityError::Read {
                path: key_path.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(IdentityError::KeyMode { path: key_path });
        }
        let cert_pem = read(dir, "cert.pem")?;
        let (not_before, not_after) = validity(&cert_pem).ok_or(IdentityError::BadCertificate)?;
        Ok(Identity {
            dir: dir.to_owned(),
            host_id: read(dir, "host_id")?,
            server: read(dir, "server")?,
            not_before,
            not_after,
            cert_pem,
            key_pem: read(dir, "key.pem")?,
            ca_pem: read(dir, "ca.pem")?,
        })
    }

    /// TLS for the sync stream with this identity.
    pub fn tls(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, TransportError> {
        transport::mtls_config(&self.ca_pem, Some((&self.cert_pem, &self.key_pem)))
    }

    /// Whether the certificate should be renewed now: a third or less of its lifetime is
    /// left (8 hours of a day's certificate), so there is time to retry.
    pub fn renewal_due(&self, now: i64) -> bool {
        self.not_after - now <= (self.not_after - self.not_before) / 3
    }

    /// Renews key and certificate over an mTLS connection, storing both.
    pub async fn renew(
        &mut self,
        client: &mut AgentSyncClient<tonic::transport::Channel>,
    ) -> Result<(), IdentityError> {
        let (key, csr) = key_and_csr(&self.host_id)?;
        let resp = client
            .renew(v1::RenewRequest { csr_der: csr })
            .await
            .map_err(IdentityError::Refused)?
            .into_inner();
        let (not_before, not_after) =
            validity(&resp.certificate_pem).ok_or(IdentityError::BadCertificate)?;
        // Key first: a crash between the two leaves a new key with the old certificate,
        // which fails TLS and is fixed by re-enrolling, never a key others can read.
        write_atomic(&self.dir.join("key.pem"), key.as_bytes(), 0o600)?;
        write_atomic(
            &self.dir.join("cert.pem"),
            resp.certificate_pem.as_bytes(),
            0o644,
        )?;
        self.key_pem = key;
        self.cert_pem = resp.certificate_pem;
        self.not_before = not_before;
        self.not_after = not_after;
        Ok(())
    }
}

/// A new key (PEM) and a certificate signing request (DER) naming `host_id`, as enrollment
/// and renewal send them.
pub fn key_and_csr(host_id: &str) -> Result<(String, Vec<u8>), IdentityError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host_id);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// What `signoff-agent enroll` needs.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// `https://HOST:PORT` of the control plane's agent listener.
    pub server: String,
    /// The single-use join token.
    pub token: String,
    /// `SHA256:…` pin of the agent CA.
    pub ca_pin: String,
    /// The host id to ask for.
    pub host_id: String,
    /// The host's name.
    pub hostname: String,
    /// Where to store the identity.
    pub dir: PathBuf,
    /// Replace an existing identity.
    pub force: bool,
    /// The host's SSH host keys with their possession proofs, bound to it at enrollment.
    pub host_keys: Vec<v1::HostKeyProof>,
}

/// Enrolls this host and stores its identity.
pub async fn enroll(opts: &EnrollOptions) -> Result<Identity, IdentityError> {
    if !opts.force
        && let Ok(current) = Identity::load(&opts.dir)
    {
        return Err(IdentityError::AlreadyEnrolled {
            host_id: current.host_id,
            dir: opts.dir.clone(),
        });
    }
    let (key, csr) = key_and_csr(&opts.host_id)?;
    let channel = transport::channel(&opts.server, transport::enroll_config(&opts.ca_pin)?)?;
    let resp = EnrollmentClient::new(channel)
        .enroll(v1::EnrollRequest {
            join_token: opts.token.clone(),
            host_id: opts.host_id.clone(),
            hostname: opts.hostname.clone(),
            csr_der: csr,
            host_keys: opts.host_keys.clone(),
        })
        .await
        .map_err(IdentityError::Refused)?
        .into_inner();
    let (not_before, not_after) =
        validity(&resp.certificate_pem).ok_or(IdentityError::BadCertificate)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&opts.dir)
        .map_err(|source| IdentityError::CreateDir {
            path: opts.dir.clone(),
            source,
        })?;
    write_atomic(&opts.dir.join("key.pem"), key.as_bytes(), 0o600)?;
    write_atomic(
        &opts.dir.join("ca.pem"),
        resp.ca_certificate_pem.as_bytes(),
        0o644,
    )?;
    write_atomic(&opts.dir.join("server"), opts.server.as_bytes(), 0o644)?;
    write_atomic(&opts.dir.join("host_id"), resp.host_id.as_bytes(), 0o644)?;
    // The certificate last: its presence is what "enrolled" means.
    write_atomic(
        &opts.dir.join("cert.pem"),
        resp.certificate_pem.as_bytes(),
        0o644,
    )?;
    Ok(Identity {
        dir: opts.dir.clone(),
        host_id: resp.host_id,
        server: opts.server.clone(),
        cert_pem: resp.certificate_pem,
        key_pem: key,
        ca_pem: resp.ca_certificate_pem,
        not_before,
        not_after,
    })
}
