//! Keys and certificates, made by the real `ssh-keygen`.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::command::run_ok;
use crate::tools::SSH_KEYGEN;

/// Key algorithms the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `ssh-ed25519`.
    Ed25519,
    /// `ecdsa-sha2-nistp256`.
    Ecdsa256,
    /// `ecdsa-sha2-nistp384`.
    Ecdsa384,
    /// `ssh-rsa`, 2048 bits (the smallest ssh-keygen makes, to keep key generation quick).
    Rsa2048,
}

impl KeyType {
    fn args(self) -> &'static [&'static str] {
        match self {
            KeyType::Ed25519 => &["-t", "ed25519"],
            KeyType::Ecdsa256 => &["-t", "ecdsa", "-b", "256"],
            KeyType::Ecdsa384 => &["-t", "ecdsa", "-b", "384"],
            KeyType::Rsa2048 => &["-t", "rsa", "-b", "2048"],
        }
    }
}

/// A key pair on disk: `private` and `private.pub`.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// Private key file (mode 0600, no passphrase).
    pub private: PathBuf,
    /// Public key file.
    pub public: PathBuf,
}

impl KeyPair {
    /// `ssh-keygen -t TYPE -N '' -q -C NAME -f DIR/NAME`.
    pub fn generate(dir: &Path, name: &str, kind: KeyType) -> Result<KeyPair> {
        let private = dir.join(name);
        run_ok(
            SSH_KEYGEN
                .command()?
                .args(kind.args())
                .args(["-N", "", "-q", "-C", name, "-f"])
                .arg(&private),
        )?;
        let public = with_suffix(&private, ".pub");
        Ok(KeyPair { private, public })
    }

    /// The public key line (`TYPE BASE64 COMMENT`), without the newline.
    pub fn public_line(&self) -> Result<String> {
        public_line(&self.public)
    }

    /// The `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
    pub fn sha256_fingerprint(&self) -> Result<String> {
        sha256_fingerprint(&self.public)
    }
}

/// The first line of a public key or certificate file.
pub fn public_line(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{} is empty", path.display()))
}

/// `ssh-keygen -l -E sha256 -f PUB`: the `SHA256:…` fingerprint of a public key file.
pub fn sha256_fingerprint(public: &Path) -> Result<String> {
    let out = run_ok(
        SSH_KEYGEN
            .command()?
            .args(["-l", "-E", "sha256", "-f"])
            .arg(public),
    )?;
    out.stdout
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no SHA256 fingerprint in `{}`: {}", out.command, out.stdout))
}

/// One certificate to sign.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// The CA that signs.
    pub ca: KeyPair,
    /// The key being certified.
    pub subject: KeyPair,
    /// Where the certificate goes: `OUT-cert.pub` next to a copy `OUT.pub` of the subject.
    pub out: PathBuf,
    /// `-I`.
    pub key_id: String,
    /// `-n`, comma-separated.
    pub principals: String,
    /// `-z`.
    pub serial: u64,
}

/// Signs a user certificate with
/// `ssh-keygen -s CA -I KEYID -n PRINCIPALS -z SERIAL -V -5m:+1h OUT.pub`
/// and returns the path of `OUT-cert.pub`. Validity starts five minutes back so that a
/// certificate is valid at once even if the second ticks over.
pub fn sign(req: &CertRequest) -> Result<PathBuf> {
    let public_copy = with_suffix(&req.out, ".pub");
    fs::copy(&req.subject.public, &public_copy)
        .with_context(|| format!("copying {}", req.subject.public.display()))?;
    run_ok(
        SSH_KEYGEN
            .command()?
            .arg("-q")
            .arg("-s")
            .arg(&req.ca.private)
            .args(["-I", &req.key_id, "-n", &req.principals])
            .args(["-z", &req.serial.to_string(), "-V", "-5m:+1h"])
            .arg(&public_copy),
    )?;
    let cert = with_suffix(&req.out, "-cert.pub");
    if !cert.is_file() {
        bail!("ssh-keygen -s did not write {}", cert.display());
    }
    Ok(cert)
}

/// Signs every request, in parallel on the machine's cores; certificate paths in order.
pub fn sign_all(requests: &[CertRequest]) -> Result<Vec<PathBuf>> {
    let workers = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let chunk = requests.len().div_ceil(workers).max(1);
    thread::scope(|scope| {
        let handles: Vec<_> = requests
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(sign).collect::<Result<Vec<_>>>()))
            .collect();
        let mut out = Vec::with_capacity(requests.len());
        for handle in handles {
            let part = handle
                .join()
                .map_err(|_| anyhow!("a certificate-signing thread panicked"))??;
            out.extend(part);
        }
        Ok(out)
    })
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
