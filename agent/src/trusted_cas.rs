//! sshd's `TrustedUserCAKeys` file, kept from the host view: the user CAs whose
//! certificates this host accepts (signoff's own CA, its offline backup, outside CAs), so
//! that a CA rotation reaches every host the way a revocation does.
//!
//! The file itself is the persisted form: one OpenSSH public key line per CA, sorted,
//! written atomically (`atomic.rs`) before the host view that carries the revision, so a
//! crash between the two makes the control plane send the change again. sshd reads it at
//! every authentication; a rename replaces it whole, never half-written.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::atomic::{AtomicWriteError, write_atomic};

/// Mode of the file: sshd (root) reads it; the keys are public.
pub const FILE_MODE: u32 = 0o644;

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedCasError {
    /// It cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It cannot be written.
    #[error("cannot write the trusted user CA keys")]
    Write(#[from] AtomicWriteError),
}

/// The trusted user CA keys and whether they changed since the last write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedCas {
    keys: BTreeSet<String>,
    changed: bool,
}

impl TrustedCas {
    /// The keys in the file at `path`, or `None` when it does not exist (then the host
    /// view must come again whole, as a snapshot, to know them).
    pub fn load(path: &Path) -> Result<Option<TrustedCas>, TrustedCasError> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Some(TrustedCas {
                keys: text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned)
                    .collect(),
                changed: false,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TrustedCasError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// No keys yet, and no file: the next [`TrustedCas::persist`] writes one, even empty.
    pub fn unwritten() -> TrustedCas {
        TrustedCas {
            keys: BTreeSet::new(),
            changed: true,
        }
    }

    /// Replaces every key (a snapshot).
    pub fn replace(&mut self, keys: &[String]) {
        let keys: BTreeSet<String> = keys.iter().cloned().collect();
        self.changed |= keys != self.keys;
        self.keys = keys;
    }

    /// Applies a delta's additions and withdrawals.
    pub fn apply(&mut self, add: &[String], remove: &[String]) {
        for k in remove {
            self.changed |= self.keys.remove(k);
        }
        for k in add {
            self.changed |= self.keys.insert(k.clone());
        }
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    /// Writes the file if the keys changed since the last write (or `force`).
    pub fn persist(&mut self, path: &Path, force: bool) -> Result<(), TrustedCasError> {
        if !self.changed && !force {
            return Ok(());
        }
        let mut text = String::new();
        for k in &self.keys {
            text.push_str(k);
            text.push('\n');
        }
        write_atomic(path, text.as_bytes(), FILE_MODE)?;
        self.changed = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted-user-ca-keys.pub");
        assert_eq!(TrustedCas::load(&path).unwrap(), None);
        let mut cas = TrustedCas::default();
        cas.replace(&["ssh-ed25519 AAAA-old".to_owned()]);
        cas.persist(&path, false).unwrap();
        cas.apply(
            &["ssh-ed25519 AAAA-new".to_owned()],
            &["ssh-ed25519 AAAA-old".to_owned()],
        );
        cas.persist(&path, false).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "ssh-ed25519 AAAA-new\n");
        let loaded = TrustedCas::load(&path).unwrap().unwrap();
        assert_eq!(loaded.keys().collect::<Vec<_>>(), ["ssh-ed25519 AAAA-new"]);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}
