//! The data directory and the server's own keys: made on first start, checked on every
//! start.
//!
//! | file | what | mode |
//! | --- | --- | --- |
//! | `agent-ca.key` | agent CA private key, PKCS#8 PEM (ECDSA P-256) | 0600 |
//! | `agent-ca.crt` | agent CA certificate, PEM, self-signed, valid 10 years | 0644 |
//! | `order-signing.key` | Ed25519 key that signs kill and sign-off orders, OpenSSH format | 0600 |
//! | `order-signing.key.pub` | its public key, for the agents' `allowed_signers` | 0644 |
//! | `user-ca.key` | Ed25519 user CA that signs people's SSH certificates, OpenSSH format (not made when `[ca] key_file` names one) | 0600 |
//! | `user-ca.key.pub` | its public key, for sshd's `TrustedUserCAKeys` | 0644 |
//!
//! The server refuses to start when a private key file may be read or written by group or
//! others, when the data directory may be written by group or others, or when only half
//! of a pair is present: a new CA or signing key would silently lock out every enrolled
//! agent, so that is left to the operator.
//!
//! The **CA pin** agents are enrolled with is `SHA256:` followed by the SHA-256 digest of
//! the DER encoding of the agent CA certificate (the bytes inside the single `CERTIFICATE`
//! block of `agent-ca.crt`), in standard base64 without `=` padding, as OpenSSH writes
//! fingerprints. The same value by hand:
//!
//! ```text
//! openssl x509 -in agent-ca.crt -outform DER | openssl dgst -sha256 -binary | base64 | tr -d =
//! ```

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::service::{Actor, NewOperator, Service, ServiceError, Token, UserCa};

/// The agent CA private key, in the data directory.
pub const AGENT_CA_KEY: &str = "agent-ca.key";
/// The agent CA certificate, in the data directory.
pub const AGENT_CA_CERT: &str = "agent-ca.crt";
/// The order-signing private key, in the data directory.
pub const ORDER_SIGNING_KEY: &str = "order-signing.key";
/// The order-signing public key, in the data directory.
pub const ORDER_SIGNING_PUB: &str = "order-signing.key.pub";

/// How long the agent CA certificate is valid: ten years.
const CA_VALIDITY_SECS: i64 = 3653 * 86400;
/// The CA certificate is valid from a little before now, for clocks that lag.
const CA_BACKDATE_SECS: i64 = 3600;
/// The comment of the order-signing key.
const ORDER_KEY_COMMENT: &str = "signoff order signing";
/// The user CA private key, in the data directory (unless `[ca] key_file` names another).
pub const USER_CA_KEY: &str = "user-ca.key";
/// The user CA public key, in the data directory: what sshd's `TrustedUserCAKeys` holds.
pub const USER_CA_PUB: &str = "user-ca.key.pub";
/// The SSH host key of the certificate listener (`[ca] ssh_listen`), in the data directory.
pub const CERT_SSH_HOST_KEY: &str = "cert-ssh-host.key";
/// Its public half.
pub const CERT_SSH_HOST_PUB: &str = "cert-ssh-host.key.pub";
const CERT_SSH_HOST_COMMENT: &str = "signoff certificate listener";
/// The comment of the user CA key.
const USER_CA_COMMENT: &str = "signoff user CA";
/// The host CA's private key (Ed25519, OpenSSH format), made on first start; an operator
/// who brings a host CA puts its key here before the first start.
pub const HOST_CA_KEY: &str = "host-ca.key";
/// Its public half: `@cert-authority *.example.com` followed by this line trusts the fleet.
pub const HOST_CA_PUB: &str = "host-ca.key.pub";
/// This server's replica id ([`replica_id`]); never copied to another replica.
pub const REPLICA_ID: &str = "replica-id";
const HOST_CA_COMMENT: &str = "signoff host CA";

/// Why the data directory or the keys in it cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The data directory does not exist and cannot be made.
    #[error("cannot create the data directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The data directory path names something else.
    #[error("data directory {} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Others could replace the keys.
    #[error(
        "data directory {path} is writable by group or others (mode {mode:04o}); run `chmod 700 {path}`",
        path = path.display()
    )]
    InsecureDir {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A private key file may be read or written by group or others.
    #[error(
        "{path} is readable or writable by group or others (mode {mode:04o}); run `chmod 600 {path}`",
        path = path.display()
    )]
    InsecureKey {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key path names a directory or a device.
    #[error("{} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// One half of a key pair is there, the other is not.
    #[error(
        "{present} exists but {missing} does not: restore {missing} from a backup, or move {present} away to make a new {what} ({consequence})",
        present = present.display(),
        missing = missing.display()
    )]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
        /// `agent CA` or `order-signing key`.
        what: &'static str,
        /// What replacing it costs.
        consequence: &'static str,
    },
    /// A file does not hold what it should.
    #[error("{} is not {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// Why it does not, if known.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Both halves of a pair are present but do not belong together.
    #[error(
        "{public} does not belong to the private key in {private}: restore the matching pair from a backup",
        public = public.display(),
        private = private.display()
    )]
    Mismatch {
        /// The certificate or public key file.
        public: PathBuf,
        /// The private key file.
        private: PathBuf,
    },
    /// Key generation failed.
    #[error("cannot generate the {what}")]
    Generate {
        /// What was being made.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The first admin token cannot be stored.
    #[error("cannot create the bootstrap admin token")]
    Token(#[source] ServiceError),
    /// The first dashboard admin cannot be stored.
    #[error("cannot create the bootstrap dashboard admin")]
    Operator(#[source] ServiceError),
    /// The user CA (or its backup) cannot be registered as trusted.
    #[error("cannot register the user CA as trusted")]
    TrustUserCa(#[source] ServiceError),
}

type Result<T, E = BootstrapError> = std::result::Result<T, E>;

/// The agent CA, as loaded from the data directory.
#[derive(Clone)]
pub struct AgentCa {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    key_pem: String,
    /// `SHA256:…` over `cert_der`; see the module documentation.
    pub pin: String,
}

impl AgentCa {
    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl fmt::Debug for AgentCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentCa")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

/// The order-signing key, as loaded from the data directory.
#[derive(Clone)]
pub struct OrderSigner {
    key: ssh_key::PrivateKey,
    /// The public key, one OpenSSH line (`ssh-ed25519 AAAA… signoff order signing`).
    pub public_openssh: String,
}

impl OrderSigner {
    /// The private key.
    pub fn private_key(&self) -> &ssh_key::PrivateKey {
        &self.key
    }
}

impl fmt::Debug for OrderSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderSigner")
            .field("public", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

/// The server's own keys, and which of them this start made.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    /// Issues agents' client certificates.
    pub agent_ca: AgentCa,
    /// Signs orders.
    pub order_signer: OrderSigner,
    /// Whether the agent CA was made by this start.
    pub created_agent_ca: bool,
    /// Whether the order-signing key was made by this start.
    pub created_order_signer: bool,
}

/// The pin of a CA certificate: `SHA256:` and the unpadded base64 of SHA-256 over its DER.
pub use signoff_proto::pin::ca_pin;

/// The pin of the agent CA in `data_dir`, without creating anything.
pub fn agent_ca_pin(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(AGENT_CA_CERT);
    let pem = fs::read(&path).map_err(|source| BootstrapError::Read {
        path: path.clone(),
        source,
    })?;
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem).map_err(|_| {
        BootstrapError::Read {
            path,
            source: io::Error::other(
                "not a PEM certificate; start `signoff-server serve` once to create the agent CA",
            ),
        }
    })?;
    Ok(ca_pin(&der))
}

/// Makes the data directory (mode 0700) if it does not exist; refuses one that group or
/// others may write.
pub fn ensure_data_dir(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(BootstrapError::NotADirectory {
            path: path.to_owned(),
        }),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(BootstrapError::InsecureDir {
                    path: path.to_owned(),
                    mode,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| BootstrapError::CreateDir {
                path: path.to_owned(),
                source,
            }),
        Err(source) => Err(BootstrapError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Refuses a private key file that is not a regular file or that group or others may
/// read or write.
pub fn check_private_file(path: &Path) -> Result<()> {
    let m = fs::metadata(path).map_err(|source| BootstrapError::Read {
        path: path.to_owned(),
        source,
    })?;
    if !m.is_file() {
        return Err(BootstrapError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = m.permissions().mode() & 0o7777;
    if mode & 0o066 != 0 {
        return Err(BootstrapError::InsecureKey {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Loads the server's keys from `data_dir`, making those that do not exist yet. `now`
/// (Unix seconds) dates a new CA certificate. The directory must exist
/// ([`ensure_data_dir`]).
pub fn prepare_keys(data_dir: &Path, now: i64) -> Result<ServerKeys> {
    let (agent_ca, created_agent_ca) = agent_ca(data_dir, now)?;
    let (order_signer, created_order_signer) = order_signer(data_dir)?;
    Ok(ServerKeys {
        agent_ca,
        order_signer,
        created_agent_ca,
        created_order_signer,
    })
}

/// Loads the user CA (making it on first start), trusts it and the configured offline
/// backup CA, and gives it to `service` to issue with. Returns the CA's public key line
/// when this call made the key.
pub async fn install_user_ca(
    service: &Service,
    data_dir: &Path,
    config: &crate::config::CaConfig,
) -> Result<Option<String>> {
    let (key, created) = user_ca_key(data_dir, config.key_file.as_deref())?;
    let what = "user CA key";
    let ca = UserCa::new(key, config.policy()).map_err(|e| BootstrapError::Generate {
        what,
        source: Box::new(e),
    })?;
    let actor = Actor("bootstrap".to_owned());
    let trust = |e| BootstrapError::TrustUserCa(e);
    let taken = service.list_cas().await.map_err(trust)?;
    // A rotated CA is trusted beside the one it replaces until that one is removed.
    let name = |base: &str, fingerprint: &str| {
        if taken.iter().any(|c| c.name == base) {
            let short: String = fingerprint
                .trim_start_matches("SHA256:")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect();
            format!("{base}-{short}")
        } else {
            base.to_owned()
        }
    };
    service
        .ensure_trusted_ca(
            &actor,
            &name("signoff", &ca.fingerprint),
            &ca.public_openssh,
            "signoff's own user CA",
        )
        .await
        .map_err(trust)?;
    if let Some(backup) = &config.backup_public_key {
        let fingerprint = crate::model::parse_public_key("backup_public_key", backup)
            .map_err(|e| trust(e.into()))?
            .fingerprint;
        service
            .ensure_trusted_ca(
                &actor,
                &name("signoff-backup", &fingerprint),
                backup,
                "offline backup of signoff's user CA ([ca] backup_public_key)",
            )
            .await
            .map_err(trust)?;
    }
    let public = created.then(|| ca.public_openssh.clone());
    service.set_user_ca(ca);
    Ok(public)
}

/// Creates the first admin API token if the store has no token at all.
pub async fn admin_token(service: &Service) -> Result<Option<Token>> {
    service
        .bootstrap_token()
        .await
        .map_err(BootstrapError::Token)
}

/// Creates the first dashboard admin (`admin`, random password) if there is no operator
/// account at all.
pub async fn admin_operator(service: &Service) -> Result<Option<NewOperator>> {
    service
        .bootstrap_operator()
        .await
        .map_err(BootstrapError::Operator)
}

/// This server's replica id: which server on the database holds an agent's stream (issue
/// 18). Made once, random, in `data_dir/replica-id`, so a restarted server knows the
/// streams recorded under its id ended with its last run. Servers sharing a database must
/// not share this file (copy the keys to a new replica, not this).
pub fn replica_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(REPLICA_ID);
    if exists(&path)? {
        let id = read_text(&path)?.trim().to_owned();
        if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(id);
        }
        return Err(BootstrapError::Read {
            path,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                "not a replica id (1 to 64 printable ASCII characters); remove it to make a new one",
            ),
        });
    }
    let mut bytes = [0u8; 8];
    random_bytes(&mut bytes).map_err(|e| BootstrapError::Generate {
        what: "replica id",
        source: Box::new(e),
    })?;
    let id = hex::encode(bytes);
    write_new(&path, format!("{id}\n").as_bytes(), 0o644)?;
    sync_dir(data_dir)?;
    Ok(id)
}

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(BootstrapError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| BootstrapError::Read {
        path: path.to_owned(),
        source,
    })
}

fn agent_ca(dir: &Path, now: i64) -> Result<(AgentCa, bool)> {
    let key_path = dir.join(AGENT_CA_KEY);
    let cert_path = dir.join(AGENT_CA_CERT);
    const CONSEQUENCE: &str = "every agent must then be enrolled again";
    match (exists(&key_path)?, exists(&cert_path)?) {
        (false, false) => {
            let ca = generate_agent_ca(now)?;
            write_new(&cert_path, ca.cert_pem.as_bytes(), 0o644)?;
            write_new(&key_path, ca.key_pem.as_bytes(), 0o600)?;
            sync_dir(dir)?;
            Ok((ca, true))
        }
        (true, false) => Err(BootstrapError::Incomplete {
            present: key_path,
            missing: cert_path,
            what: "agent CA",
            consequence: CONSEQUENCE,
        }),
        (false, true) => Err(BootstrapError::Incomplete {
            present: cert_path,
            missing: key_path,
            what: "agent CA",
            consequence: CONSEQUENCE,
        }),
        (true, true) => Ok((load_agent_ca(&key_path, &cert_path)?, false)),
    }
}

fn generate_agent_ca(now: i64) -> Result<AgentCa> {
    let generate = |source: Box<dyn std::error::Error + Send + Sync>| BootstrapError::Generate {
        what: "agent CA",
        source,
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| generate(Box::new(e)))?;
    let mut params = rcgen::CertificateParams::default();
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::OrganizationName, "signoff");
    name.push(rcgen::DnType::CommonName, "signoff agent CA");
    params.distinguished_name = name;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(now - CA_BACKDATE_SECS)
        .map_err(|e| generate(Box::new(e)))?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(now + CA_VALIDITY_SECS)
        .map_err(|e| generate(Box::new(e)))?;
    let mut serial = [0u8; 16];
    random_bytes(&mut serial).map_err(|e| generate(Box::new(e)))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params
        .self_signed(&key)
        .map_err(|e| generate(Box::new(e)))?;
    let cert_der = cert.der().to_vec();
    Ok(AgentCa {
        cert_pem: cert.pem(),
        pin: ca_pin(&cert_der),
        cert_der,
        key_pem: key.serialize_pem(),
    })
}

fn load_agent_ca(key_path: &Path, cert_path: &Path) -> Result<AgentCa> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    check_private_file(key_path)?;
    let key_pem = read_text(key_path)?;
    let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| BootstrapError::Corrupt {
        path: key_path.to_owned(),
        what: "a PEM private key",
        source: Some(Box::new(e)),
    })?;
    let cert_pem = read_text(cert_path)?;
    let corrupt_cert =
        |source: Option<Box<dyn std::error::Error + Send + Sync>>| BootstrapError::Corrupt {
            path: cert_path.to_owned(),
            what: "one PEM certificate",
            source,
        };
    let mut blocks = CertificateDer::pem_slice_iter(cert_pem.as_bytes());
    let der = match (blocks.next(), blocks.next()) {
        (Some(Ok(der)), None) => der,
        (Some(Err(e)), _) => return Err(corrupt_cert(Some(Box::new(e)))),
        _ => return Err(corrupt_cert(None)),
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| corrupt_cert(Some(Box::new(e))))?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(BootstrapError::Mismatch {
            public: cert_path.to_owned(),
            private: key_path.to_owned(),
        });
    }
    let cert_der = der.to_vec();
    Ok(AgentCa {
        pin: ca_pin(&cert_der),
        cert_der,
        cert_pem,
        key_pem,
    })
}

fn order_signer(dir: &Path) -> Result<(OrderSigner, bool)> {
    let (key, created) = ed25519_pair(
        &dir.join(ORDER_SIGNING_KEY),
        &dir.join(ORDER_SIGNING_PUB),
        &Ed25519Pair {
            what: "order-signing key",
            comment: ORDER_KEY_COMMENT,
            consequence: "every agent's allowed_signers must then be updated",
        },
    )?;
    Ok((signer_from(key)?, created))
}

/// What an Ed25519 key pair in the data directory is for.
struct Ed25519Pair {
    /// `order-signing key`, `user CA key`.
    what: &'static str,
    /// The comment of a new key.
    comment: &'static str,
    /// What replacing it costs.
    consequence: &'static str,
}

/// Loads the Ed25519 key pair at `key_path` and `pub_path`, making it when neither exists.
/// Returns the key and whether this call made it.
fn ed25519_pair(
    key_path: &Path,
    pub_path: &Path,
    pair: &Ed25519Pair,
) -> Result<(ssh_key::PrivateKey, bool)> {
    let dir = key_path.parent().unwrap_or(Path::new("."));
    if !exists(key_path)? {
        if exists(pub_path)? {
            return Err(BootstrapError::Incomplete {
                present: pub_path.to_owned(),
                missing: key_path.to_owned(),
                what: pair.what,
                consequence: pair.consequence,
            });
        }
        let key = generate_ed25519(pair.what, pair.comment)?;
        let public = public_line(pair.what, &key)?;
        let private =
            key.to_openssh(ssh_key::LineEnding::LF)
                .map_err(|e| BootstrapError::Generate {
                    what: pair.what,
                    source: Box::new(e),
                })?;
        write_new(pub_path, format!("{public}\n").as_bytes(), 0o644)?;
        write_new(key_path, private.as_bytes(), 0o600)?;
        sync_dir(dir)?;
        return Ok((key, true));
    }
    let key = load_ed25519(key_path)?;
    if exists(pub_path)? {
        let on_disk =
            ssh_key::PublicKey::from_openssh(read_text(pub_path)?.trim()).map_err(|e| {
                BootstrapError::Corrupt {
                    path: pub_path.to_owned(),
                    what: "an OpenSSH public key",
                    source: Some(Box::new(e)),
                }
            })?;
        if on_disk.key_data() != key.public_key().key_data() {
            return Err(BootstrapError::Mismatch {
                public: pub_path.to_owned(),
                private: key_path.to_owned(),
            });
        }
    } else {
        // The public half is derived from the private one: put it back.
        let public = public_line(pair.what, &key)?;
        write_new(pub_path, format!("{public}\n").as_bytes(), 0o644)?;
        sync_dir(dir)?;
    }
    Ok((key, false))
}

/// Reads an unencrypted Ed25519 OpenSSH private key that only its owner may read.
fn load_ed25519(key_path: &Path) -> Result<ssh_key::PrivateKey> {
    check_private_file(key_path)?;
    let text = read_text(key_path)?;
    let corrupt =
        |what, source: Option<Box<dyn std::error::Error + Send + Sync>>| BootstrapError::Corrupt {
            path: key_path.to_owned(),
            what,
            source,
        };
    let key = ssh_key::PrivateKey::from_openssh(&text)
        .map_err(|e| corrupt("an OpenSSH private key", Some(Box::new(e))))?;
    if key.is_encrypted() {
        return Err(corrupt(
            "an unencrypted OpenSSH private key (the server signs unattended)",
            None,
        ));
    }
    if key.algorithm() != ssh_key::Algorithm::Ed25519 {
        return Err(corrupt("an Ed25519 key", None));
    }
    Ok(key)
}

fn public_line(what: &'static str, key: &ssh_key::PrivateKey) -> Result<String> {
    key.public_key()
        .to_openssh()
        .map_err(|e| BootstrapError::Generate {
            what,
            source: Box::new(e),
        })
}

fn generate_ed25519(what: &'static str, comment: &str) -> Result<ssh_key::PrivateKey> {
    let mut seed = [0u8; 32];
    random_bytes(&mut seed).map_err(|e| BootstrapError::Generate {
        what,
        source: Box::new(e),
    })?;
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    seed.fill(0);
    ssh_key::PrivateKey::new(ssh_key::private::KeypairData::Ed25519(pair), comment).map_err(|e| {
        BootstrapError::Generate {
            what,
            source: Box::new(e),
        }
    })
}

/// The user CA key: `key_file` when the configuration names one (it must exist: the
/// operator brought it), else `user-ca.key` in `data_dir`, made on first start. Returns
/// the key and whether this call made it.
pub fn user_ca_key(
    data_dir: &Path,
    key_file: Option<&Path>,
) -> Result<(ssh_key::PrivateKey, bool)> {
    if let Some(path) = key_file {
        return Ok((load_ed25519(path)?, false));
    }
    ed25519_pair(
        &data_dir.join(USER_CA_KEY),
        &data_dir.join(USER_CA_PUB),
        &Ed25519Pair {
            what: "user CA key",
            comment: USER_CA_COMMENT,
            consequence: "certificates it issued stop working once hosts learn the new CA",
        },
    )
}

/// Loads the host CA (`host-ca.key` in `data_dir`, made 0600 on first start) and gives it
/// to `service` to sign hosts' keys with. Separate from the user CA: a host certificate
/// never logs anyone in, and a user certificate never vouches for a host.
pub fn install_host_ca(service: &Service, data_dir: &Path) -> Result<()> {
    let what = "host CA key";
    let (key, _) = ed25519_pair(
        &data_dir.join(HOST_CA_KEY),
        &data_dir.join(HOST_CA_PUB),
        &Ed25519Pair {
            what,
            comment: HOST_CA_COMMENT,
            consequence: "clients' @cert-authority line must then be replaced",
        },
    )?;
    let ca =
        crate::service::HostCa::new(key, crate::service::DEFAULT_HOST_CERT_TTL).map_err(|e| {
            BootstrapError::Generate {
                what,
                source: Box::new(e),
            }
        })?;
    service.set_host_ca(ca);
    Ok(())
}

/// The `@cert-authority` known_hosts line of the host CA in `data_dir`, for host names
/// matching `hosts`. Reads only the public half (`host-ca.key.pub`), which `serve` makes on
/// first start; never makes a key, so it is safe to run as any user that can read it.
pub fn host_ca_known_hosts_line(data_dir: &Path, hosts: &str) -> Result<String> {
    let path = data_dir.join(HOST_CA_PUB);
    let text = fs::read_to_string(&path).map_err(|source| BootstrapError::Read {
        path: path.clone(),
        source,
    })?;
    let key =
        ssh_key::PublicKey::from_openssh(text.trim()).map_err(|e| BootstrapError::Corrupt {
            path: path.clone(),
            what: "an OpenSSH public key",
            source: Some(Box::new(e)),
        })?;
    let line = ssh_key::PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .map_err(|e| BootstrapError::Corrupt {
            path,
            what: "an OpenSSH public key",
            source: Some(Box::new(e)),
        })?;
    Ok(format!("@cert-authority {hosts} {line}"))
}

/// The host key of the certificate listener (`[ca] ssh_listen`): `cert-ssh-host.key` in
/// `data_dir`, made on first start. People pin its public half in `known_hosts`.
pub fn cert_ssh_host_key(data_dir: &Path) -> Result<ssh_key::PrivateKey> {
    Ok(ed25519_pair(
        &data_dir.join(CERT_SSH_HOST_KEY),
        &data_dir.join(CERT_SSH_HOST_PUB),
        &Ed25519Pair {
            what: "certificate listener's SSH host key",
            comment: CERT_SSH_HOST_COMMENT,
            consequence: "every person's known_hosts entry for the listener must then be updated",
        },
    )?
    .0)
}

fn signer_from(key: ssh_key::PrivateKey) -> Result<OrderSigner> {
    let public_openssh = key
        .public_key()
        .to_openssh()
        .map_err(|e| BootstrapError::Generate {
            what: "order-signing public key",
            source: Box::new(e),
        })?;
    Ok(OrderSigner {
        key,
        public_openssh,
    })
}

fn random_bytes(buf: &mut [u8]) -> Result<(), rand::rand_core::OsError> {
    use rand::TryRngCore as _;
    rand::rngs::OsRng.try_fill_bytes(buf)
}

/// Writes a new file through a temporary one, fsynced, with `mode`; an existing `path`
/// is replaced.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let write_err = |source| BootstrapError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(e)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write_err)?;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(write_err)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| BootstrapError::Write {
            path: dir.to_owned(),
            source,
        })
}

/// What a first start made and must tell the operator once, on stdout.
#[derive(Debug)]
pub struct FirstStart {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The HTTP base URL (`http://127.0.0.1:8080`).
    pub url: String,
    /// The admin token, if this start made it.
    pub token: Option<Token>,
    /// The CA pin, if this start made the agent CA.
    pub ca_pin: Option<String>,
    /// The order-signing public key, if this start made it.
    pub order_key: Option<String>,
    /// The dashboard admin, if this start made it.
    pub operator: Option<NewOperator>,
    /// The SSH user CA's public key, if this start made it.
    pub user_ca: Option<String>,
}

impl FirstStart {
    /// The notice for what this start made, or `None` if it made nothing.
    pub fn new(
        data_dir: &Path,
        url: String,
        keys: &ServerKeys,
        token: Option<Token>,
        operator: Option<NewOperator>,
        user_ca: Option<String>,
    ) -> Option<Self> {
        let notice = FirstStart {
            user_ca,
            data_dir: data_dir.to_owned(),
            url,
            token,
            ca_pin: keys.created_agent_ca.then(|| keys.agent_ca.pin.clone()),
            order_key: keys
                .created_order_signer
                .then(|| keys.order_signer.public_openssh.clone()),
            operator,
        };
        (notice.token.is_some()
            || notice.ca_pin.is_some()
            || notice.order_key.is_some()
            || notice.operator.is_some()
            || notice.user_ca.is_some())
        .then_some(notice)
    }
}

impl fmt::Display for FirstStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.data_dir.display();
        writeln!(f, "signoff-server: first start in {dir}")?;
        if let Some(token) = &self.token {
            writeln!(f)?;
            writeln!(
                f,
                "Admin API token \"{}\" (scopes {}). It is shown only this once:",
                token.info.name,
                token
                    .info
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            writeln!(f)?;
            writeln!(f, "    {}", token.secret)?;
            writeln!(f)?;
            writeln!(f, "Send it as a bearer token:")?;
            writeln!(
                f,
                "    curl -H 'Authorization: Bearer {}' {}/api/v1/users",
                token.secret, self.url
            )?;
            writeln!(
                f,
                "More tokens: signoff-server api-token create NAME --scope read,write,signoff,admin,krl,issue|scim"
            )?;
        }
        if let Some(op) = &self.operator {
            writeln!(f)?;
            writeln!(
                f,
                "Dashboard admin \"{}\" created. Log in at {}/login with this password, shown only this once:",
                op.account.name, self.url
            )?;
            writeln!(f)?;
            writeln!(f, "    {}", op.password)?;
            writeln!(f)?;
            writeln!(
                f,
                "More operators: signoff-server operator create NAME --role viewer|operator|admin"
            )?;
        }
        if let Some(pin) = &self.ca_pin {
            writeln!(f)?;
            writeln!(
                f,
                "Agent CA created: {dir}/{AGENT_CA_CERT} (key {AGENT_CA_KEY}). Agents enroll with its pin:"
            )?;
            writeln!(f)?;
            writeln!(f, "    {pin}")?;
            writeln!(f)?;
            writeln!(
                f,
                "    signoff-agent enroll --server URL --token JOIN_TOKEN --ca-pin {pin}"
            )?;
            writeln!(
                f,
                "(`signoff-server token create --groups GROUP` makes a join token and prints this command in full.)"
            )?;
            writeln!(
                f,
                "The pin is SHA-256 over the DER bytes of the certificate, base64 without padding:"
            )?;
            writeln!(
                f,
                "    openssl x509 -in {dir}/{AGENT_CA_CERT} -outform DER | openssl dgst -sha256 -binary | base64 | tr -d ="
            )?;
        }
        if let Some(key) = &self.order_key {
            writeln!(f)?;
            writeln!(
                f,
                "Order-signing key created: {dir}/{ORDER_SIGNING_KEY}. Agents trust orders signed by:"
            )?;
            writeln!(f, "    {key}")?;
        }
        if let Some(key) = &self.user_ca {
            writeln!(f)?;
            writeln!(
                f,
                "SSH user CA created: {dir}/{USER_CA_KEY}. sshd trusts its certificates with this line in TrustedUserCAKeys ({dir}/{USER_CA_PUB}):"
            )?;
            writeln!(f, "    {key}")?;
            writeln!(
                f,
                "Certificates: signoff-server cert issue USER KEY.pub [--ttl 8h] > KEY-cert.pub"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn data_dir() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        ensure_data_dir(&dir).unwrap();
        (tmp, dir)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn first_start_makes_everything_with_private_modes() {
        let (_tmp, dir) = data_dir();
        assert_eq!(mode(&dir), 0o700);
        let keys = prepare_keys(&dir, NOW).unwrap();
        assert!(keys.created_agent_ca && keys.created_order_signer);
        assert_eq!(mode(&dir.join(AGENT_CA_KEY)), 0o600);
        assert_eq!(mode(&dir.join(ORDER_SIGNING_KEY)), 0o600);
        assert!(keys.agent_ca.pin.starts_with("SHA256:") && !keys.agent_ca.pin.ends_with('='));
        assert_eq!(keys.agent_ca.pin.len(), "SHA256:".len() + 43);
        assert!(keys.order_signer.public_openssh.starts_with("ssh-ed25519 "));
        assert!(!format!("{keys:?}").contains("PRIVATE KEY"));

        // The CA is a CA, dated from the clock given.
        let (_, cert) = x509_parser::parse_x509_certificate(&keys.agent_ca.cert_der).unwrap();
        assert!(cert.is_ca());
        assert_eq!(
            cert.validity().not_before.timestamp(),
            NOW - CA_BACKDATE_SECS
        );
        assert_eq!(
            cert.validity().not_after.timestamp(),
            NOW + CA_VALIDITY_SECS
        );

        // A second start loads the same keys and makes nothing.
        let again = prepare_keys(&dir, NOW + 10).unwrap();
        assert!(!again.created_agent_ca && !again.created_order_signer);
        assert_eq!(again.agent_ca.pin, keys.agent_ca.pin);
        assert_eq!(
            again.order_signer.public_openssh,
            keys.order_signer.public_openssh
        );
        assert!(FirstStart::new(&dir, "http://x".into(), &again, None, None, None).is_none());
    }

    #[test]
    fn the_pin_is_sha256_of_the_certificate_der() {
        use base64::Engine as _;
        use sha2::{Digest as _, Sha256};
        let (_tmp, dir) = data_dir();
        let keys = prepare_keys(&dir, NOW).unwrap();
        let pem = fs::read_to_string(dir.join(AGENT_CA_CERT)).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let digest = Sha256::digest(&der);
        let expected = format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD
                .encode(digest)
                .trim_end_matches('=')
        );
        assert_eq!(keys.agent_ca.pin, expected);
    }

    fn ca_config(key_file: Option<PathBuf>, backup: Option<String>) -> crate::config::CaConfig {
        crate::config::CaConfig {
            key_file,
            backup_public_key: backup,
            default_ttl: crate::config::DEFAULT_CA_TTL,
            max_ttl: crate::config::MAX_CA_TTL,
            ssh_listen: None,
        }
    }

    async fn memory_service() -> Service {
        Service::new(
            crate::store::open_memory().await,
            std::sync::Arc::new(crate::service::SystemClock),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn first_start_makes_and_trusts_the_user_ca_once() {
        let (_tmp, dir) = data_dir();
        let svc = memory_service().await;
        let backup = public_line("backup", &generate_ed25519("backup", "backup").unwrap()).unwrap();
        let config = ca_config(None, Some(backup.clone()));
        let made = install_user_ca(&svc, &dir, &config).await.unwrap();
        assert_eq!(mode(&dir.join(USER_CA_KEY)), 0o600);
        let public = fs::read_to_string(dir.join(USER_CA_PUB)).unwrap();
        assert!(public.starts_with(made.as_deref().unwrap()));
        let cas = svc.list_cas().await.unwrap();
        let names: Vec<&str> = cas.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["signoff", "signoff-backup"]);
        assert_eq!(cas[0].fingerprint, svc.user_ca().unwrap().fingerprint);
        // The next start loads the same key and trusts nothing new.
        let svc2 = svc.clone();
        assert_eq!(install_user_ca(&svc2, &dir, &config).await.unwrap(), None);
        assert_eq!(svc2.list_cas().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_given_ca_key_is_used_and_a_rotation_is_trusted_beside_the_old_one() {
        let (_tmp, dir) = data_dir();
        let svc = memory_service().await;
        install_user_ca(&svc, &dir, &ca_config(None, None))
            .await
            .unwrap();
        let own = dir.join("own-ca.key");
        let key = generate_ed25519("own", "own").unwrap();
        write_new(
            &own,
            key.to_openssh(ssh_key::LineEnding::LF).unwrap().as_bytes(),
            0o600,
        )
        .unwrap();
        let made = install_user_ca(&svc, &dir, &ca_config(Some(own.clone()), None))
            .await
            .unwrap();
        assert_eq!(made, None);
        let fp = key
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string();
        assert_eq!(svc.user_ca().unwrap().fingerprint, fp);
        let cas = svc.list_cas().await.unwrap();
        assert_eq!(cas.len(), 2);
        assert!(
            cas.iter()
                .any(|c| c.fingerprint == fp && c.name.starts_with("signoff-"))
        );

        chmod(&own, 0o644);
        assert!(matches!(
            install_user_ca(&svc, &dir, &ca_config(Some(own), None)).await,
            Err(BootstrapError::InsecureKey { .. })
        ));
    }

    #[test]
    fn a_user_ca_key_that_is_not_ed25519_is_refused() {
        let (_tmp, dir) = data_dir();
        let path = dir.join("ecdsa.key");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(matches!(
            user_ca_key(&dir, Some(&path)),
            Err(BootstrapError::Corrupt {
                what: "an Ed25519 key",
                ..
            })
        ));
    }

    #[test]
    fn group_readable_ca_key_is_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        chmod(&dir.join(AGENT_CA_KEY), 0o640);
        let err = prepare_keys(&dir, NOW).unwrap_err();
        assert!(
            matches!(err, BootstrapError::InsecureKey { mode: 0o640, .. }),
            "{err}"
        );
        let path = dir.join(AGENT_CA_KEY);
        assert_eq!(
            err.to_string(),
            format!(
                "{p} is readable or writable by group or others (mode 0640); run `chmod 600 {p}`",
                p = path.display()
            )
        );
    }

    #[test]
    fn world_writable_ca_key_is_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        chmod(&dir.join(AGENT_CA_KEY), 0o602);
        assert!(matches!(
            prepare_keys(&dir, NOW),
            Err(BootstrapError::InsecureKey { mode: 0o602, .. })
        ));
    }

    #[test]
    fn world_readable_order_key_is_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        chmod(&dir.join(ORDER_SIGNING_KEY), 0o644);
        let err = prepare_keys(&dir, NOW).unwrap_err();
        assert!(
            matches!(&err, BootstrapError::InsecureKey { path, .. } if path.ends_with(ORDER_SIGNING_KEY)),
            "{err}"
        );
    }

    #[test]
    fn key_path_that_is_a_directory_is_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        fs::remove_file(dir.join(ORDER_SIGNING_KEY)).unwrap();
        fs::create_dir(dir.join(ORDER_SIGNING_KEY)).unwrap();
        chmod(&dir.join(ORDER_SIGNING_KEY), 0o700);
        assert!(matches!(
            prepare_keys(&dir, NOW),
            Err(BootstrapError::NotAFile { .. })
        ));
    }

    #[test]
    fn group_writable_data_dir_is_refused() {
        let (_tmp, dir) = data_dir();
        chmod(&dir, 0o770);
        let err = ensure_data_dir(&dir).unwrap_err();
        assert!(
            matches!(err, BootstrapError::InsecureDir { mode: 0o770, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 700"), "{err}");
        // Readable by others is fine: the key files are private themselves.
        chmod(&dir, 0o755);
        ensure_data_dir(&dir).unwrap();
    }

    #[test]
    fn data_dir_that_is_a_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("data");
        fs::write(&file, "").unwrap();
        assert!(matches!(
            ensure_data_dir(&file),
            Err(BootstrapError::NotADirectory { .. })
        ));
    }

    #[test]
    fn ca_key_without_certificate_is_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        fs::remove_file(dir.join(AGENT_CA_CERT)).unwrap();
        let err = prepare_keys(&dir, NOW).unwrap_err();
        assert!(matches!(err, BootstrapError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains("enrolled again"), "{err}");
    }

    #[test]
    fn ca_certificate_without_key_is_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        fs::remove_file(dir.join(AGENT_CA_KEY)).unwrap();
        assert!(matches!(
            prepare_keys(&dir, NOW),
            Err(BootstrapError::Incomplete { .. })
        ));
    }

    #[test]
    fn order_public_key_without_private_key_is_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        fs::remove_file(dir.join(ORDER_SIGNING_KEY)).unwrap();
        let err = prepare_keys(&dir, NOW).unwrap_err();
        assert!(err.to_string().contains("allowed_signers"), "{err}");
    }

    #[test]
    fn missing_order_public_key_is_restored() {
        let (_tmp, dir) = data_dir();
        let keys = prepare_keys(&dir, NOW).unwrap();
        fs::remove_file(dir.join(ORDER_SIGNING_PUB)).unwrap();
        prepare_keys(&dir, NOW).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(ORDER_SIGNING_PUB)).unwrap(),
            format!("{}\n", keys.order_signer.public_openssh)
        );
    }

    #[test]
    fn certificate_of_another_ca_is_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        let other = generate_agent_ca(NOW).unwrap();
        fs::write(dir.join(AGENT_CA_CERT), other.cert_pem).unwrap();
        let err = prepare_keys(&dir, NOW).unwrap_err();
        assert!(matches!(err, BootstrapError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn order_public_key_of_another_key_is_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        let other = generate_ed25519("other", "other").unwrap();
        fs::write(
            dir.join(ORDER_SIGNING_PUB),
            public_line("other", &other).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            prepare_keys(&dir, NOW),
            Err(BootstrapError::Mismatch { .. })
        ));
    }

    #[test]
    fn garbage_files_are_refused() {
        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        fs::write(dir.join(AGENT_CA_CERT), "not a certificate").unwrap();
        assert!(matches!(
            prepare_keys(&dir, NOW),
            Err(BootstrapError::Corrupt { .. })
        ));

        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        fs::write(dir.join(AGENT_CA_KEY), "not a key").unwrap();
        assert!(matches!(
            prepare_keys(&dir, NOW),
            Err(BootstrapError::Corrupt { .. })
        ));

        let (_tmp, dir) = data_dir();
        prepare_keys(&dir, NOW).unwrap();
        fs::write(dir.join(ORDER_SIGNING_KEY), "not a key").unwrap();
        assert!(matches!(
            prepare_keys(&dir, NOW),
            Err(BootstrapError::Corrupt { .. })
        ));
    }

    #[test]
    fn the_order_key_signs_sshsig() {
        let (_tmp, dir) = data_dir();
        let keys = prepare_keys(&dir, NOW).unwrap();
        let sig = keys
            .order_signer
            .private_key()
            .sign("signoff", ssh_key::HashAlg::Sha512, b"order")
            .unwrap();
        let public = ssh_key::PublicKey::from_openssh(&keys.order_signer.public_openssh).unwrap();
        public.verify("signoff", b"order", &sig).unwrap();
    }

    #[tokio::test]
    async fn admin_token_only_once() {
        let (svc, _) = crate::service::testing::service().await;
        let token = admin_token(&svc).await.unwrap().unwrap();
        assert!(token.secret.starts_with("so_"));
        assert!(admin_token(&svc).await.unwrap().is_none());
    }

    #[test]
    fn notice_names_the_token_and_pin() {
        let (_tmp, dir) = data_dir();
        let keys = prepare_keys(&dir, NOW).unwrap();
        let notice = FirstStart::new(
            &dir,
            "http://127.0.0.1:8080".into(),
            &keys,
            None,
            None,
            None,
        )
        .unwrap()
        .to_string();
        assert!(
            notice.contains(&format!("    {}\n", keys.agent_ca.pin)),
            "{notice}"
        );
        assert!(!notice.contains("Admin API token"), "{notice}");
    }
}
