//! Persisting the host view: the view file and the KRL, each replaced atomically, and the
//! small contact file that says when the control plane was last heard from.
//!
//! All three files are written by the agent (root) with mode 0644, in a directory that
//! only root can write and that the `AuthorizedPrincipalsCommandUser` can read.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use crate::atomic::{AtomicWriteError, write_atomic};
use crate::krl_writer::{self, KrlReport, KrlWriteError};

use super::State;
use super::format::{self, EncodeError, FormatError};

/// File name of the host view in the state directory.
pub const STATE_FILE: &str = "hostview";
/// File name of the last-contact time in the state directory.
pub const CONTACT_FILE: &str = "contact";
/// Mode of every file written here: readable by the principals command's user, writable by
/// root only.
pub const FILE_MODE: u32 = 0o644;
/// A contact file is one decimal number; anything longer is not one.
const MAX_CONTACT_LEN: u64 = 32;

/// The state could not be persisted. When the view file was written but the KRL was not,
/// the view is durable but sshd still reads the previous KRL (the principals command
/// already enforces the new revocations).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The state cannot be encoded.
    #[error("cannot encode the host view")]
    Encode(#[source] EncodeError),
    /// Writing the view file failed; the previous one is still in place.
    #[error("cannot write the host view")]
    Write(#[source] AtomicWriteError),
    /// The view file was written, the KRL was not.
    #[error("wrote the host view, but not the KRL")]
    Krl(#[source] KrlWriteError),
}

/// A persisted view could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Reading the file failed.
    #[error("cannot read the host view {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid host view.
    #[error("the host view {path} is unusable")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
}

/// The contact file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContactError {
    /// No contact has been recorded.
    #[error("no contact with the control plane has been recorded ({path} is missing)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Reading failed.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file does not hold a Unix time.
    #[error("{path} does not hold a Unix time")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// Writing failed.
    #[error("cannot record the contact time")]
    Write(#[source] AtomicWriteError),
}

/// What [`State::persist`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistReport {
    /// Size of the view file.
    pub state_bytes: u64,
    /// What went into the KRL.
    pub krl: KrlReport,
}

/// Encodes `state` and atomically replaces `path` with it. Returns the size written.
pub fn write_state_file(path: &Path, state: &State, now: u64) -> Result<u64, PersistError> {
    let bytes = format::encode(state, now).map_err(PersistError::Encode)?;
    write_atomic(path, &bytes, FILE_MODE).map_err(PersistError::Write)?;
    Ok(bytes.len() as u64)
}

impl State {
    /// Writes the KRL built from the revocation set to `krl_path`, then the view to
    /// `STATE_DIR/hostview`, each atomically and durably, stamped with `now` (Unix
    /// seconds). Only once this returns may the revision be acked. The KRL goes first: a
    /// crash between the two leaves the view at the older revision, which the agent
    /// reports on reconnect and so receives the change again; the other order would leave
    /// the KRL behind with nothing to bring it forward.
    pub fn persist(
        &self,
        state_dir: &Path,
        krl_path: &Path,
        now: u64,
    ) -> Result<PersistReport, PersistError> {
        self.persist_holding(state_dir, krl_path, now, None)
    }

    /// [`State::persist`], with `held` (key IDs under any CA, SHA-256 key fingerprints:
    /// what [`crate::holds`] keeps out) revoked in the KRL beside the view's revocations.
    pub fn persist_holding(
        &self,
        state_dir: &Path,
        krl_path: &Path,
        now: u64,
        held: Option<&(BTreeSet<String>, BTreeSet<Vec<u8>>)>,
    ) -> Result<PersistReport, PersistError> {
        let merged;
        let revocations = match held {
            Some((key_ids, sha256)) if !key_ids.is_empty() || !sha256.is_empty() => {
                let mut r = self.revocations.clone();
                r.certificates
                    .entry(Vec::new())
                    .or_default()
                    .key_ids
                    .extend(key_ids.iter().cloned());
                r.sha256.extend(sha256.iter().cloned());
                merged = r;
                &merged
            }
            _ => &self.revocations,
        };
        let krl = krl_writer::write_krl(krl_path, revocations, self.revision, now)
            .map_err(PersistError::Krl)?;
        let state_bytes = write_state_file(&state_dir.join(STATE_FILE), self, now)?;
        Ok(PersistReport { state_bytes, krl })
    }
}

/// Loads the view persisted in `state_dir`, checking every byte of it; `None` if none has
/// been persisted yet.
pub fn load(state_dir: &Path) -> Result<Option<State>, LoadError> {
    let path = state_dir.join(STATE_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    format::decode(&bytes)
        .map(|d| Some(d.state))
        .map_err(|source| LoadError::Format { path, source })
}

/// Records that the control plane was heard from at `now` (Unix seconds).
pub fn record_contact(state_dir: &Path, now: u64) -> Result<(), ContactError> {
    write_atomic(
        &state_dir.join(CONTACT_FILE),
        format!("{now}\n").as_bytes(),
        FILE_MODE,
    )
    .map_err(ContactError::Write)
}

/// When the control plane was last heard from (Unix seconds).
pub fn read_contact(state_dir: &Path) -> Result<u64, ContactError> {
    let path = state_dir.join(CONTACT_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ContactError::Missing { path });
        }
        Err(source) => return Err(ContactError::Read { path, source }),
    };
    let mut text = String::new();
    if let Err(source) = file.take(MAX_CONTACT_LEN).read_to_string(&mut text) {
        return Err(ContactError::Read { path, source });
    }
    text.trim_end_matches('\n')
        .parse()
        .map_err(|_| ContactError::Malformed { path })
}
