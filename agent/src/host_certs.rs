//! SSH host certificates for this host's own host keys (issue 19): the agent sends the
//! public host keys to the control plane (`AgentSync.SignHostKeys`, the host named by the
//! agent's mTLS certificate), writes each certificate it gets back atomically where sshd's
//! `HostCertificate` points, and runs the configured reload command when a certificate
//! changed. Clients then trust the fleet with one `@cert-authority` line in known_hosts.
//!
//! When: at enrollment, on start when a certificate is missing, does not match its key or
//! is due, and at two thirds of each certificate's validity. A failure never touches sshd:
//! the old certificates stay, the error is logged, and the agent retries with a backoff.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use signoff_proto::v1;
use signoff_proto::v1::agent_sync_client::AgentSyncClient;
use tracing::{info, warn};

use crate::atomic::{AtomicWriteError, write_atomic};
use crate::identity::{Identity, IdentityError};
use crate::transport::{self, TransportError};

/// Default for [`HostCertsConfig::host_keys`]: sshd's host keys on Debian and most others.
pub const DEFAULT_HOST_KEYS: &str = "/etc/ssh/ssh_host_*_key.pub";
/// Default for [`HostCertsConfig::reload_command`]: Debian's unit of sshd.
pub const DEFAULT_RELOAD_COMMAND: [&str; 3] = ["systemctl", "reload", "ssh.service"];
/// Certificates are written with this mode: sshd reads them, they hold no secret.
const CERT_MODE: u32 = 0o644;
/// The longest wait between two failed attempts.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// In `certificate_dir`: a certificate changed and sshd has not been reloaded since.
const RELOAD_MARKER: &str = ".signoff-host-certificates-reload-pending";

/// `[host_certificates]` as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCertsFile {
    host_keys: Option<Vec<String>>,
    certificate_dir: Option<PathBuf>,
    reload_command: Option<Vec<String>>,
}

/// Which host keys to certify, where the certificates go, and how sshd learns of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCertsConfig {
    /// Public host key files; `*` in a file name matches any run of characters
    /// (`/etc/ssh/ssh_host_*_key.pub`). Files that do not exist are skipped.
    pub host_keys: Vec<PathBuf>,
    /// Where `NAME-cert.pub` is written for each `NAME.pub` (sshd's `HostCertificate`).
    pub certificate_dir: PathBuf,
    /// Run (no shell) after a certificate changed, so sshd loads it; empty: nothing runs.
    pub reload_command: Vec<String>,
}

impl HostCertsFile {
    /// Applies the defaults and checks each value; `state_dir` is the default directory.
    pub(crate) fn resolve(self, state_dir: &Path) -> Result<HostCertsConfig, String> {
        let host_keys: Vec<PathBuf> = self
            .host_keys
            .unwrap_or_else(|| vec![DEFAULT_HOST_KEYS.to_owned()])
            .into_iter()
            .map(PathBuf::from)
            .collect();
        if host_keys.is_empty() {
            return Err("host_keys lists no file; leave it out for the default".to_owned());
        }
        for p in &host_keys {
            if !p.is_absolute() || !p.to_string_lossy().ends_with(".pub") {
                return Err(format!(
                    "host key {p:?} must be an absolute path to a public key file (*.pub)"
                ));
            }
            if p.parent()
                .is_some_and(|d| d.to_string_lossy().contains('*'))
            {
                return Err(format!("host key {p:?}: `*` may only be in the file name"));
            }
        }
        let certificate_dir = self.certificate_dir.unwrap_or_else(|| state_dir.to_owned());
        if !certificate_dir.is_absolute() {
            return Err(format!(
                "certificate_dir {certificate_dir:?} must be an absolute path"
            ));
        }
        let reload_command = self.reload_command.unwrap_or_else(|| {
            DEFAULT_RELOAD_COMMAND
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        });
        if reload_command.first().is_some_and(String::is_empty) {
            return Err("reload_command's program is empty; use [] for none".to_owned());
        }
        Ok(HostCertsConfig {
            host_keys,
            certificate_dir,
            reload_command,
        })
    }
}

/// Why a round of host certificates failed (the old certificates stay in place).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostCertsError {
    /// A host key directory cannot be listed or a key read.
    #[error("cannot read host key {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No host key file matched.
    #[error("no host public key found at {0}; set [host_certificates] host_keys")]
    NoKeys(String),
    /// The agent is not enrolled or its identity is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Connecting failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The control plane refused or could not be reached.
    #[error("{}", crate::transport::describe_status(.0))]
    Refused(tonic::Status),
    /// What came back is not a host certificate for the key sent.
    #[error("the control plane sent for {key} something that is not its host certificate: {why}")]
    BadCertificate {
        /// The public key file.
        key: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Writing a certificate failed.
    #[error("cannot write the host certificate")]
    Write(#[from] AtomicWriteError),
    /// The possession proof could not be made with the private host key.
    #[error("cannot sign the possession proof with {key}: {why}")]
    Prove {
        /// The private key file.
        key: PathBuf,
        /// What ssh-keygen said.
        why: String,
    },
    /// The reload command could not run or failed.
    #[error("the reload command {command:?} failed: {why}")]
    Reload {
        /// The command.
        command: Vec<String>,
        /// Exit status or spawn error, and its stderr.
        why: String,
    },
}

/// One host public key and the certificate file beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `…/ssh_host_ed25519_key.pub`.
    pub public_path: PathBuf,
    /// `…/ssh_host_ed25519_key`: signs the possession proof.
    pub private_path: PathBuf,
    /// The key, one OpenSSH line (comment dropped).
    pub public_key: String,
    /// `certificate_dir/ssh_host_ed25519_key-cert.pub`.
    pub certificate_path: PathBuf,
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len()
                && name.starts_with(head)
                && matches_rest(tail, &name[head.len()..])
        }
    }
}

fn matches_rest(pattern: &str, rest: &str) -> bool {
    // `pattern` follows a `*`: try every split point.
    (0..=rest.len())
        .filter(|&i| rest.is_char_boundary(i))
        .any(|i| matches(pattern, &rest[i..]))
}

/// The host keys named by `config`, in a stable order (path), each with its certificate
/// path. A pattern that matches nothing is skipped; no key at all is an error.
pub fn host_keys(config: &HostCertsConfig) -> Result<Vec<HostKey>, HostCertsError> {
    let mut paths = Vec::new();
    for pattern in &config.host_keys {
        let text = pattern.to_string_lossy();
        if !text.contains('*') {
            if pattern.exists() {
                paths.push(pattern.clone());
            }
            continue;
        }
        let (Some(dir), Some(file)) = (pattern.parent(), pattern.file_name()) else {
            continue;
        };
        let file = file.to_string_lossy();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(HostCertsError::Read {
                    path: dir.to_owned(),
                    source,
                });
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Never a certificate of ours, were it to lie in the key directory.
            if matches(&file, &name) && !name.ends_with("-cert.pub") {
                paths.push(entry.path());
            }
        }
    }
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        let all: Vec<String> = config
            .host_keys
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        return Err(HostCertsError::NoKeys(all.join(", ")));
    }
    paths
        .into_iter()
        .map(|public_path| {
            let text = fs::read_to_string(&public_path).map_err(|source| HostCertsError::Read {
                path: public_path.clone(),
                source,
            })?;
            let key = ssh_key::PublicKey::from_openssh(text.trim()).map_err(|e| {
                HostCertsError::Read {
                    path: public_path.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                }
            })?;
            let public_key = ssh_key::PublicKey::new(key.key_data().clone(), "")
                .to_openssh()
                .map_err(|e| HostCertsError::Read {
                    path: public_path.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                })?;
            let stem = public_path
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".pub").to_owned())
                .unwrap_or_default();
            Ok(HostKey {
                certificate_path: config.certificate_dir.join(format!("{stem}-cert.pub")),
                private_path: public_path.with_file_name(&stem),
                public_path,
                public_key,
            })
        })
        .collect()
}

/// The possession proof of `key` for `host_id` (`signoff_proto::host_keys`), signed by
/// `ssh-keygen -Y sign` with the private host key: ssh-keygen signs with every key type
/// sshd has (the Rust SSH library cannot sign with RSA), and is there wherever sshd is.
pub fn prove(key: &HostKey, host_id: &str) -> Result<String, HostCertsError> {
    use std::io::Write as _;
    let fail = |why: String| HostCertsError::Prove {
        key: key.private_path.clone(),
        why,
    };
    let mut child = Command::new("ssh-keygen")
        .args([
            "-q",
            "-Y",
            "sign",
            "-n",
            signoff_proto::host_keys::NAMESPACE,
            "-f",
        ])
        .arg(&key.private_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run ssh-keygen: {e}")))?;
    let message = signoff_proto::host_keys::possession_message(host_id);
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(&message));
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("ssh-keygen: {e}")))?;
    if !out.status.success() || !matches!(written, Some(Ok(()))) {
        return Err(fail(format!(
            "ssh-keygen {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8(out.stdout).map_err(|_| fail("ssh-keygen printed no text".into()))
}

/// Every host key of `config` with its possession proof for `host_id`, as enrollment
/// sends them.
pub fn proven_keys(
    config: &HostCertsConfig,
    host_id: &str,
) -> Result<Vec<v1::HostKeyProof>, HostCertsError> {
    host_keys(config)?
        .iter()
        .map(|k| {
            Ok(v1::HostKeyProof {
                public_key: k.public_key.clone(),
                proof: prove(k, host_id)?,
            })
        })
        .collect()
}

/// When the certificate at `key.certificate_path` should be replaced: Unix seconds of two
/// thirds of its validity; 0 (now) when it is missing, unreadable, or not a host
/// certificate of this key.
pub fn renewal_time(key: &HostKey) -> u64 {
    let Ok(text) = fs::read_to_string(&key.certificate_path) else {
        return 0;
    };
    let Ok(cert) = ssh_key::Certificate::from_openssh(text.trim()) else {
        return 0;
    };
    if !certifies(&cert, key) {
        return 0;
    }
    renew_at(cert.valid_after(), cert.valid_before())
}

/// Two thirds of the way from `valid_after` to `valid_before`.
pub fn renew_at(valid_after: u64, valid_before: u64) -> u64 {
    valid_after + valid_before.saturating_sub(valid_after) / 3 * 2
}

fn certifies(cert: &ssh_key::Certificate, key: &HostKey) -> bool {
    cert.cert_type() == ssh_key::certificate::CertType::Host
        && ssh_key::PublicKey::from_openssh(&key.public_key)
            .is_ok_and(|k| k.key_data() == cert.public_key())
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// Certificate files whose content changed.
    pub changed: Vec<PathBuf>,
    /// Unix seconds at which the earliest certificate is due for renewal.
    pub next_renewal: u64,
}

/// Asks the control plane for a certificate of every host key, writes each one that
/// differs from the file on disk, and runs the reload command if any changed (or an
/// earlier reload is still pending). On any error before the writes, nothing on disk
/// changes; a failed reload stays pending ([`reload_if_pending`]).
pub async fn renew_all(
    config: &HostCertsConfig,
    identity: &Identity,
) -> Result<Round, HostCertsError> {
    let keys = host_keys(config)?;
    let proofs = keys
        .iter()
        .map(|k| prove(k, &identity.host_id))
        .collect::<Result<Vec<_>, _>>()?;
    let mut client = AgentSyncClient::new(transport::channel(&identity.server, identity.tls()?)?);
    let resp = client
        .sign_host_keys(v1::SignHostKeysRequest {
            public_keys: keys.iter().map(|k| k.public_key.clone()).collect(),
            names: Vec::new(),
            proofs,
        })
        .await
        .map_err(HostCertsError::Refused)?
        .into_inner();
    if resp.certificates.len() != keys.len() {
        return Err(HostCertsError::BadCertificate {
            key: keys[0].public_path.clone(),
            why: format!(
                "{} certificates for {} keys",
                resp.certificates.len(),
                keys.len()
            ),
        });
    }
    // Every certificate checked before any is written.
    let mut lines = Vec::with_capacity(keys.len());
    let mut next_renewal = u64::MAX;
    for (key, c) in keys.iter().zip(&resp.certificates) {
        let bad = |why: String| HostCertsError::BadCertificate {
            key: key.public_path.clone(),
            why,
        };
        let cert = ssh_key::Certificate::from_openssh(c.certificate.trim())
            .map_err(|e| bad(format!("does not parse: {e}")))?;
        if !certifies(&cert, key) {
            return Err(bad("a certificate of another key, or not a host one".into()));
        }
        let ca = ssh_key::PublicKey::from_openssh(resp.ca_public_key.trim())
            .map_err(|e| bad(format!("the host CA key does not parse: {e}")))?;
        if cert.signature_key() != ca.key_data() {
            return Err(bad(
                "not signed by the host CA the control plane names".into()
            ));
        }
        next_renewal = next_renewal.min(renew_at(cert.valid_after(), cert.valid_before()));
        lines.push(format!("{}\n", c.certificate.trim()));
    }
    let mut changed = Vec::new();
    if let Some(dir) = keys.first().and_then(|k| k.certificate_path.parent()) {
        fs::create_dir_all(dir).map_err(|source| HostCertsError::Read {
            path: dir.to_owned(),
            source,
        })?;
    }
    for (key, line) in keys.iter().zip(&lines) {
        if fs::read_to_string(&key.certificate_path).is_ok_and(|old| old == *line) {
            continue;
        }
        if changed.is_empty() {
            // Before the first write: a crash or a failed reload from here on leaves the
            // marker, and the reload is retried (also by the next start) until it runs.
            write_atomic(&config.reload_marker(), b"", CERT_MODE)?;
        }
        write_atomic(&key.certificate_path, line.as_bytes(), CERT_MODE)?;
        info!(certificate = %key.certificate_path.display(), "host certificate written");
        changed.push(key.certificate_path.clone());
    }
    reload_if_pending(config)?;
    Ok(Round {
        changed,
        next_renewal,
    })
}

impl HostCertsConfig {
    /// Present while sshd has not been reloaded since a certificate changed.
    pub fn reload_marker(&self) -> PathBuf {
        self.certificate_dir.join(RELOAD_MARKER)
    }
}

/// Runs the reload command if a certificate changed since the last reload that succeeded
/// (the marker file is there), then removes the marker; without the marker, nothing runs.
pub fn reload_if_pending(config: &HostCertsConfig) -> Result<bool, HostCertsError> {
    let marker = config.reload_marker();
    if !marker.exists() {
        return Ok(false);
    }
    reload(&config.reload_command)?;
    fs::remove_file(&marker).map_err(|source| HostCertsError::Read {
        path: marker,
        source,
    })?;
    Ok(true)
}

/// Runs the reload command (no shell), waiting for it.
pub fn reload(command: &[String]) -> Result<(), HostCertsError> {
    let Some((program, args)) = command.split_first() else {
        return Ok(());
    };
    let fail = |why: String| HostCertsError::Reload {
        command: command.to_vec(),
        why,
    };
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    info!(command = ?command, "sshd reloaded for its new host certificates");
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The daemon's task: renews when due (now, if a certificate is missing or does not match
/// its key), retries failures with a backoff, forever.
pub async fn keep(config: HostCertsConfig, identity_dir: PathBuf) {
    let mut backoff = crate::daemon::Backoff::with_cap(MAX_RETRY);
    loop {
        // A certificate written but sshd not reloaded (a failed reload, or a crash in
        // between): the reload alone is retried, not the signing.
        if let Err(e) = reload_if_pending(&config) {
            let delay = backoff.next_delay();
            warn!(
                error = %signoff_core::error::chain(&e),
                retry_in_ms = delay.as_millis() as u64,
                "cannot reload sshd for its new host certificates; retrying"
            );
            tokio::time::sleep(delay).await;
            continue;
        }
        let due = match host_keys(&config) {
            Ok(keys) => keys.iter().map(renewal_time).min().unwrap_or(0),
            Err(_) => 0,
        };
        let wait = due.saturating_sub(now());
        if wait > 0 {
            info!(
                in_secs = wait,
                "host certificates valid; next renewal scheduled"
            );
            // Woken every hour at most, so a clock change or a replaced key is noticed.
            tokio::time::sleep(Duration::from_secs(wait.min(3600))).await;
            continue;
        }
        let result = match Identity::load(&identity_dir) {
            Ok(identity) => renew_all(&config, &identity).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(round) => {
                backoff.reset();
                info!(
                    changed = round.changed.len(),
                    next_renewal = round.next_renewal,
                    "host certificates renewed"
                );
            }
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(
                    error = %signoff_core::error::chain(&e),
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot renew the host certificates; sshd keeps the ones it has"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, pattern: &str) -> HostCertsConfig {
        HostCertsFile {
            host_keys: Some(vec![dir.join(pattern).display().to_string()]),
            certificate_dir: Some(dir.join("certs")),
            reload_command: Some(vec![]),
        }
        .resolve(dir)
        .unwrap()
    }

    fn keygen(dir: &Path, name: &str) {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "root@host", "-f"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    #[test]
    fn the_pattern_matches_within_the_file_name() {
        assert!(matches("ssh_host_*_key.pub", "ssh_host_ed25519_key.pub"));
        assert!(matches("ssh_host_*_key.pub", "ssh_host__key.pub"));
        assert!(!matches("ssh_host_*_key.pub", "ssh_host_ed25519_key"));
        assert!(!matches("ssh_host_*_key.pub", "other_ed25519_key.pub"));
        assert!(matches("a.pub", "a.pub"));
        assert!(!matches("a.pub", "b.pub"));
    }

    #[test]
    fn every_matching_key_gets_a_certificate_path_in_the_certificate_dir() {
        let dir = tempfile::tempdir().unwrap();
        keygen(dir.path(), "ssh_host_ed25519_key");
        keygen(dir.path(), "ssh_host_ecdsa_key");
        // A certificate lying beside the keys is not a key.
        fs::write(dir.path().join("ssh_host_ed25519_key-cert.pub"), "x").unwrap();
        let keys = host_keys(&config(dir.path(), "ssh_host_*_key.pub")).unwrap();
        let certs: Vec<_> = keys.iter().map(|k| k.certificate_path.clone()).collect();
        assert_eq!(
            certs,
            vec![
                dir.path().join("certs/ssh_host_ecdsa_key-cert.pub"),
                dir.path().join("certs/ssh_host_ed25519_key-cert.pub"),
            ]
        );
        // The comment is not sent.
        assert!(keys.iter().all(|k| !k.public_key.contains("root@host")));
    }

    #[test]
    fn no_key_at_all_is_an_error_naming_the_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let e = host_keys(&config(dir.path(), "ssh_host_*_key.pub")).unwrap_err();
        assert!(e.to_string().contains("ssh_host_*_key.pub"), "{e}");
    }

    #[test]
    fn a_missing_or_foreign_certificate_is_due_now() {
        let dir = tempfile::tempdir().unwrap();
        keygen(dir.path(), "ssh_host_ed25519_key");
        keygen(dir.path(), "other");
        let cfg = config(dir.path(), "ssh_host_*_key.pub");
        let key = host_keys(&cfg).unwrap().remove(0);
        assert_eq!(renewal_time(&key), 0);
        // A host certificate of another key.
        keygen(dir.path(), "ca");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(dir.path().join("ca"))
            .args(["-h", "-I", "host:x", "-V", "+30d"])
            .arg(dir.path().join("other.pub"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        fs::create_dir_all(dir.path().join("certs")).unwrap();
        fs::copy(dir.path().join("other-cert.pub"), &key.certificate_path).unwrap();
        assert_eq!(renewal_time(&key), 0);
        // Its own: due at two thirds.
        let out = Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(dir.path().join("ca"))
            .args(["-h", "-I", "host:x", "-V", "20300101:20300131"])
            .arg(dir.path().join("ssh_host_ed25519_key.pub"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        fs::copy(
            dir.path().join("ssh_host_ed25519_key-cert.pub"),
            &key.certificate_path,
        )
        .unwrap();
        let due = renewal_time(&key);
        let cert = ssh_key::Certificate::from_openssh(
            fs::read_to_string(&key.certificate_path).unwrap().trim(),
        )
        .unwrap();
        assert_eq!(
            due,
            cert.valid_after() + (cert.valid_before() - cert.valid_after()) / 3 * 2
        );
    }

    #[test]
    fn the_proof_is_the_host_keys_signature_for_this_host() {
        let dir = tempfile::tempdir().unwrap();
        keygen(dir.path(), "ssh_host_ed25519_key");
        let key = host_keys(&config(dir.path(), "ssh_host_*_key.pub"))
            .unwrap()
            .remove(0);
        let proof = prove(&key, "web1").unwrap();
        let public = ssh_key::PublicKey::from_openssh(&key.public_key).unwrap();
        assert_eq!(
            signoff_proto::host_keys::verify(&public, "web1", &proof),
            Ok(())
        );
        assert!(signoff_proto::host_keys::verify(&public, "db1", &proof).is_err());
        // Without the private half: an error naming the file.
        fs::remove_file(&key.private_path).unwrap();
        let e = prove(&key, "web1").unwrap_err();
        assert!(e.to_string().contains("ssh_host_ed25519_key"), "{e}");
    }

    #[test]
    fn a_failing_reload_command_is_an_error_with_its_stderr() {
        let e = reload(&["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()]).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        reload(&["true".into()]).unwrap();
        reload(&[]).unwrap();
    }

    #[test]
    fn a_pending_reload_runs_until_it_succeeds_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let mut cfg = config(dir.path(), "ssh_host_*_key.pub");
        fs::create_dir_all(&cfg.certificate_dir).unwrap();
        cfg.reload_command = vec!["touch".into(), ran.display().to_string()];
        // Nothing changed: nothing runs.
        assert!(!reload_if_pending(&cfg).unwrap());
        assert!(!ran.exists());
        // A change whose reload fails stays pending.
        fs::write(cfg.reload_marker(), "").unwrap();
        let failing = HostCertsConfig {
            reload_command: vec!["false".into()],
            ..cfg.clone()
        };
        assert!(reload_if_pending(&failing).is_err());
        assert!(cfg.reload_marker().exists());
        // The next attempt runs it, once.
        assert!(reload_if_pending(&cfg).unwrap());
        assert!(ran.exists());
        assert!(!cfg.reload_marker().exists());
        fs::remove_file(&ran).unwrap();
        assert!(!reload_if_pending(&cfg).unwrap());
        assert!(!ran.exists());
    }

    #[test]
    fn config_defaults_and_refusals() {
        let state = Path::new("/var/lib/signoff");
        let c = HostCertsFile::default().resolve(state).unwrap();
        assert_eq!(c.host_keys, vec![PathBuf::from(DEFAULT_HOST_KEYS)]);
        assert_eq!(c.certificate_dir, state);
        assert_eq!(c.reload_command, DEFAULT_RELOAD_COMMAND.to_vec());
        let bad = |f: HostCertsFile| f.resolve(state).unwrap_err();
        assert!(
            bad(HostCertsFile {
                host_keys: Some(vec!["ssh_host_ed25519_key.pub".into()]),
                ..Default::default()
            })
            .contains("absolute")
        );
        assert!(
            bad(HostCertsFile {
                host_keys: Some(vec!["/etc/ssh/ssh_host_ed25519_key".into()]),
                ..Default::default()
            })
            .contains("*.pub")
        );
        assert!(
            bad(HostCertsFile {
                host_keys: Some(vec!["/etc/*/ssh_host_ed25519_key.pub".into()]),
                ..Default::default()
            })
            .contains("file name")
        );
        assert!(
            bad(HostCertsFile {
                certificate_dir: Some("certs".into()),
                ..Default::default()
            })
            .contains("absolute")
        );
        assert!(
            bad(HostCertsFile {
                reload_command: Some(vec![String::new()]),
                ..Default::default()
            })
            .contains("empty")
        );
    }
}
