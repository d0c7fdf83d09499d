//! The audit chain head this host witnessed, kept so that a control plane whose log no
//! longer extends it is refused.
//!
//! The agent keeps the last head it accepted (`witnessed-head` in the state directory,
//! written atomically, so it survives restarts). A new head is accepted only when the links
//! sent with it run from the held head to it and every link's hash recomputes
//! ([`signoff_proto::audit_chain::extends`]); otherwise the held head stays and the caller
//! must refuse the control plane and say so loudly. [`Witness::line`] is the line
//! `signoff-server audit verify --witness FILE` reads: `{"host":…,"seq":N,"hash":"HEX"}`.
//!
//! The daemon checks each host view's head through [`crate::guards`]; `signoff-agent
//! status` shows the held head.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use signoff_proto::audit_chain::{GENESIS, Head, Link, NotExtended, extends};

use crate::atomic::{AtomicWriteError, write_atomic};

/// The witnessed head's file in the state directory.
pub const WITNESS_FILE: &str = "witnessed-head";

/// Why the witnessed head cannot be used or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// It cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It is not what this agent writes.
    #[error(
        "{path} is corrupt: {message}; the control plane's audit log can no longer be checked against it"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// It cannot be serialized.
    #[error("cannot serialize the witnessed head: {0}")]
    Serialize(String),
    /// It cannot be written.
    #[error("cannot write the witnessed head")]
    Write(#[from] AtomicWriteError),
    /// The control plane's log does not extend the head this host holds.
    #[error(
        "the control plane's audit log no longer extends the head this host witnessed (row {held_seq}, hash {held_hash}): {reason}"
    )]
    NotExtended {
        /// The held row.
        held_seq: i64,
        /// The held hash.
        held_hash: String,
        /// Why.
        reason: NotExtended,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    seq: i64,
    hash: String,
}

/// The head this host holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    head: Head,
}

impl Default for Witness {
    fn default() -> Self {
        Witness {
            head: Head {
                seq: 0,
                hash: GENESIS.to_owned(),
            },
        }
    }
}

/// A witnessed head as `audit verify --witness` reads it.
#[derive(Debug, Serialize)]
struct Line<'a> {
    host: &'a str,
    seq: i64,
    hash: &'a str,
}

impl Witness {
    /// The head persisted in `state_dir`; the empty log's when none was witnessed yet.
    pub fn load(state_dir: &Path) -> Result<Witness, WitnessError> {
        let path = state_dir.join(WITNESS_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Witness::default()),
            Err(source) => return Err(WitnessError::Read { path, source }),
        };
        let s: Stored = serde_json::from_slice(&bytes).map_err(|e| WitnessError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if s.seq < 0 || s.hash.len() != 64 || !s.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(WitnessError::Corrupt {
                path,
                message: "not a row number and a SHA-256 hash".to_owned(),
            });
        }
        Ok(Witness {
            head: Head {
                seq: s.seq,
                hash: s.hash,
            },
        })
    }

    /// The held head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Accepts `new` if `links` show it extends the held head, and persists it before
    /// returning; otherwise keeps the held head and says why.
    pub fn accept(
        &mut self,
        state_dir: &Path,
        links: &[Link<'_>],
        new: Head,
    ) -> Result<(), WitnessError> {
        extends(&self.head, links, &new).map_err(|reason| WitnessError::NotExtended {
            held_seq: self.head.seq,
            held_hash: self.head.hash.clone(),
            reason,
        })?;
        if new == self.head {
            return Ok(());
        }
        self.persist(state_dir, &new)?;
        self.head = new;
        Ok(())
    }

    /// Accepts `new` as the first head this host witnesses (nothing held to extend: taken
    /// on first use), and persists it.
    pub fn accept_first(&mut self, state_dir: &Path, new: Head) -> Result<(), WitnessError> {
        if self.head.seq != 0 {
            return self.accept(state_dir, &[], new);
        }
        self.persist(state_dir, &new)?;
        self.head = new;
        Ok(())
    }

    fn persist(&self, state_dir: &Path, new: &Head) -> Result<(), WitnessError> {
        let bytes = serde_json::to_vec(&Stored {
            seq: new.seq,
            hash: new.hash.clone(),
        })
        .map_err(|e| WitnessError::Serialize(e.to_string()))?;
        write_atomic(
            &state_dir.join(WITNESS_FILE),
            &bytes,
            crate::state::writer::FILE_MODE,
        )?;
        Ok(())
    }

    /// The line for a witness file, naming this host.
    pub fn line(&self, host: &str) -> String {
        serde_json::to_string(&Line {
            host,
            seq: self.head.seq,
            hash: &self.head.hash,
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use signoff_proto::audit_chain::{Fields, row_hash};

    use super::*;

    struct Row {
        seq: i64,
        actor: String,
        prev: String,
        hash: String,
    }

    fn fields(r: &Row) -> Fields<'_> {
        Fields {
            seq: r.seq,
            at: 1,
            actor: &r.actor,
            action: "user.create",
            target: "user:a",
            reason: "",
            details: "{}",
            revision: Some(r.seq),
        }
    }

    fn chain(actors: &[&str]) -> Vec<Row> {
        let mut prev = GENESIS.to_owned();
        let mut rows = Vec::new();
        for (i, a) in actors.iter().enumerate() {
            let mut r = Row {
                seq: i64::try_from(i).unwrap() + 1,
                actor: (*a).to_owned(),
                prev: prev.clone(),
                hash: String::new(),
            };
            r.hash = row_hash(&prev, &fields(&r));
            prev = r.hash.clone();
            rows.push(r);
        }
        rows
    }

    fn links(rows: &[Row]) -> Vec<Link<'_>> {
        rows.iter()
            .map(|r| Link {
                fields: fields(r),
                prev_hash: &r.prev,
                hash: &r.hash,
            })
            .collect()
    }

    fn head(r: &Row) -> Head {
        Head {
            seq: r.seq,
            hash: r.hash.clone(),
        }
    }

    #[test]
    fn an_extending_head_is_kept_across_restarts_and_a_rewrite_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rows = chain(&["a", "b", "c"]);
        let mut w = Witness::load(dir.path()).unwrap();
        assert_eq!(w.head().seq, 0);
        w.accept(dir.path(), &links(&rows[..2]), head(&rows[1]))
            .unwrap();
        let mut w = Witness::load(dir.path()).unwrap();
        assert_eq!(w.head(), &head(&rows[1]));
        assert_eq!(
            w.line("web1"),
            format!(
                "{{\"host\":\"web1\",\"seq\":2,\"hash\":\"{}\"}}",
                rows[1].hash
            )
        );
        // Row 2 rewritten and every later hash recomputed.
        let forged = chain(&["a", "forger", "c", "d"]);
        let err = w
            .accept(dir.path(), &links(&forged[2..]), head(&forged[3]))
            .unwrap_err();
        assert!(
            matches!(err, WitnessError::NotExtended { held_seq: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("no longer extends"), "{err}");
        assert_eq!(Witness::load(dir.path()).unwrap().head(), &head(&rows[1]));
        w.accept(dir.path(), &links(&rows[2..]), head(&rows[2]))
            .unwrap();
        assert_eq!(Witness::load(dir.path()).unwrap().head(), &head(&rows[2]));
    }

    #[test]
    fn a_corrupt_head_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(WITNESS_FILE),
            b"{\"seq\":3,\"hash\":\"zz\"}",
        )
        .unwrap();
        assert!(matches!(
            Witness::load(dir.path()),
            Err(WitnessError::Corrupt { .. })
        ));
        fs::write(dir.path().join(WITNESS_FILE), b"{").unwrap();
        assert!(matches!(
            Witness::load(dir.path()),
            Err(WitnessError::Corrupt { .. })
        ));
    }
}
