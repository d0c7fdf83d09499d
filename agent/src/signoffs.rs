//! Sign-off statements: the people this host must keep out, and whose sessions it ends.
//!
//! The control plane puts a signed statement in every host's view for each person signed
//! off, until they are re-enabled. The agent keeps the statements on disk beside the host
//! view (`signoffs`, written atomically before the host view that carries the revision, so
//! a crash between the two makes the control plane send them again), and enforces each one
//! whose SSHSIG verifies against its `allowed_signers`: every live session whose
//! certificate key ID or plain key the statement names is ended, at once and whenever such
//! a session shows up later (one that started while this host was cut off included). A
//! statement that does not verify kills nothing and is reported back with why.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use signoff_proto::orders::{self, SignoffStatement};
use signoff_proto::v1;
use ssh_key::PublicKey;

use crate::atomic::{AtomicWriteError, write_atomic};

/// The statements file in the state directory.
pub const SIGNOFFS_FILE: &str = "signoffs";

/// Why the statements file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignoffsError {
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
    #[error("{path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// It cannot be written.
    #[error("cannot write the sign-off statements")]
    Write(#[from] AtomicWriteError),
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    id: u64,
    /// Base64 of the canonical statement bytes.
    statement: String,
    signature: String,
}

/// The statements in force on this host, by sign-off id.
#[derive(Debug, Clone, Default)]
pub struct Signoffs {
    by_id: BTreeMap<u64, v1::SignedStatement>,
    /// What checking each statement gave, for the signers it was checked against. A new
    /// login is looked up against every statement the host holds (a fleet keeps one per
    /// person signed off, for good): without it each login paid a signature verification
    /// per statement, so its cost grew with the host's history, not with the login.
    checked: Arc<Mutex<Checked>>,
}

impl PartialEq for Signoffs {
    fn eq(&self, other: &Signoffs) -> bool {
        self.by_id == other.by_id
    }
}

impl Eq for Signoffs {}

/// Results of [`check_one`], valid for `signers`; each kept with the exact bytes it was
/// for, so a statement replaced under the same id is checked again.
#[derive(Debug, Default)]
struct Checked {
    signers: Vec<PublicKey>,
    results: HashMap<u64, (v1::SignedStatement, CheckResult)>,
}

/// What [`check_one`] gives.
type CheckResult = Result<Enforceable, (u64, String)>;

/// A statement that verified: whose sessions to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforceable {
    /// The sign-off id.
    pub id: u64,
    /// What it says.
    pub statement: SignoffStatement,
}

impl Signoffs {
    /// The statements persisted in `state_dir`; none when the file does not exist.
    pub fn load(state_dir: &Path) -> Result<Signoffs, SignoffsError> {
        let path = state_dir.join(SIGNOFFS_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Signoffs::default()),
            Err(source) => return Err(SignoffsError::Read { path, source }),
        };
        let corrupt = |message: String| SignoffsError::Corrupt {
            path: path.clone(),
            message,
        };
        let stored: Vec<Stored> =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut by_id = BTreeMap::new();
        for s in stored {
            let statement = base64::engine::general_purpose::STANDARD
                .decode(&s.statement)
                .map_err(|e| corrupt(format!("statement {}: {e}", s.id)))?;
            by_id.insert(
                s.id,
                v1::SignedStatement {
                    id: s.id,
                    statement,
                    signature: s.signature,
                },
            );
        }
        Ok(Signoffs {
            by_id,
            checked: Arc::default(),
        })
    }

    /// Writes the statements atomically (readable by the principals command's user, like
    /// the host view).
    pub fn persist(&self, state_dir: &Path) -> Result<(), SignoffsError> {
        let stored: Vec<Stored> = self
            .by_id
            .values()
            .map(|s| Stored {
                id: s.id,
                statement: base64::engine::general_purpose::STANDARD.encode(&s.statement),
                signature: s.signature.clone(),
            })
            .collect();
        let bytes = serde_json::to_vec(&stored).unwrap_or_else(|_| b"[]".to_vec());
        write_atomic(
            &state_dir.join(SIGNOFFS_FILE),
            &bytes,
            crate::state::writer::FILE_MODE,
        )?;
        Ok(())
    }

    /// Replaces every statement (a snapshot).
    pub fn replace(&mut self, statements: &[v1::SignedStatement]) {
        self.by_id = statements.iter().map(|s| (s.id, s.clone())).collect();
    }

    /// Applies a delta's statements; returns the ids it added.
    pub fn apply(&mut self, add: &[v1::SignedStatement], remove: &[u64]) -> BTreeSet<u64> {
        for id in remove {
            self.by_id.remove(id);
        }
        let mut added = BTreeSet::new();
        for s in add {
            self.by_id.insert(s.id, s.clone());
            added.insert(s.id);
        }
        added
    }

    /// Ids of every statement in force.
    pub fn ids(&self) -> BTreeSet<u64> {
        self.by_id.keys().copied().collect()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Checks the statements `ids` (all when `None`) against the trusted signers: each
    /// either verifies, parses and carries its own id, or is refused with why. A statement
    /// already checked against the same signers is not verified again.
    pub fn check(
        &self,
        ids: Option<&BTreeSet<u64>>,
        signers: Result<&[PublicKey], &str>,
    ) -> Vec<Result<Enforceable, (u64, String)>> {
        let wanted = self
            .by_id
            .values()
            .filter(|s| ids.is_none_or(|ids| ids.contains(&s.id)));
        let Ok(keys) = signers else {
            return wanted.map(|s| check_one(s, signers)).collect();
        };
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if checked.signers != keys {
            checked.signers = keys.to_vec();
            checked.results.clear();
        }
        // Statements no longer held are forgotten.
        checked.results.retain(|id, _| self.by_id.contains_key(id));
        wanted
            .map(|s| match checked.results.get(&s.id) {
                Some((seen, result)) if seen == s => result.clone(),
                _ => {
                    let result = check_one(s, signers);
                    checked.results.insert(s.id, (s.clone(), result.clone()));
                    result
                }
            })
            .collect()
    }
}

/// Checks one signed statement against the trusted signers (see [`Signoffs::check`]).
pub fn check_one(
    s: &v1::SignedStatement,
    signers: Result<&[PublicKey], &str>,
) -> Result<Enforceable, (u64, String)> {
    let signers = signers.map_err(|why| (s.id, why.to_owned()))?;
    orders::verify(&s.statement, &s.signature, signers)
        .map_err(|e| (s.id, format!("statement refused: {e}")))?;
    let statement = SignoffStatement::decode(&s.statement)
        .map_err(|e| (s.id, format!("statement does not parse: {e}")))?;
    if statement.signoff_id != s.id {
        return Err((
            s.id,
            format!(
                "statement is signed for sign-off {}, delivered as {}",
                statement.signoff_id, s.id
            ),
        ));
    }
    Ok(Enforceable {
        id: s.id,
        statement,
    })
}

#[cfg(test)]
mod tests {
    use signoff_proto::orders::SignoffStatement;

    use super::*;

    fn key(seed: u8) -> ssh_key::PrivateKey {
        ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn signed(id: u64, by: &ssh_key::PrivateKey) -> v1::SignedStatement {
        let st = SignoffStatement {
            signoff_id: id,
            user: "mallory".into(),
            reason: "left".into(),
            operator: "token:hr".into(),
            issued_at: 1,
            key_ids: vec!["mallory@corp".into()],
            key_fingerprints: vec![],
        };
        let statement = st.encode().unwrap();
        let signature = orders::sign(by, &statement).unwrap();
        v1::SignedStatement {
            id,
            statement,
            signature,
        }
    }

    #[test]
    fn statements_persist_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Signoffs::load(dir.path()).unwrap().is_empty());
        let mut s = Signoffs::default();
        s.replace(&[signed(1, &key(1)), signed(2, &key(1))]);
        assert_eq!(s.apply(&[signed(3, &key(1))], &[1]), BTreeSet::from([3]));
        s.persist(dir.path()).unwrap();
        let loaded = Signoffs::load(dir.path()).unwrap();
        assert_eq!(loaded, s);
        assert_eq!(loaded.ids(), BTreeSet::from([2, 3]));
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SIGNOFFS_FILE), b"[{\"id\": 1").unwrap();
        let err = Signoffs::load(dir.path()).unwrap_err();
        assert!(matches!(err, SignoffsError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn only_statements_from_a_trusted_signer_for_their_own_id_are_enforceable() {
        let trusted = [key(1).public_key().clone()];
        let mut s = Signoffs::default();
        let mut relabelled = signed(5, &key(1));
        relabelled.id = 6;
        let mut forged = signed(7, &key(1));
        forged.statement.push(0);
        s.replace(&[signed(4, &key(1)), relabelled, forged, signed(8, &key(2))]);
        let checked = s.check(None, Ok(&trusted));
        assert!(
            matches!(&checked[0], Ok(e) if e.id == 4 && e.statement.covers("mallory@corp", ""))
        );
        assert!(matches!(&checked[1], Err((6, why)) if why.contains("signed for sign-off 5")));
        assert!(matches!(&checked[2], Err((7, why)) if why.contains("refused")));
        assert!(matches!(&checked[3], Err((8, why)) if why.contains("allowed_signers")));
        let none = s.check(
            Some(&BTreeSet::from([4])),
            Err("no allowed_signers configured"),
        );
        assert_eq!(none.len(), 1);
        assert!(matches!(&none[0], Err((4, why)) if why.contains("no allowed_signers")));
    }

    /// Checks are remembered, but never past what they were for: a statement replaced
    /// under the same id, or other signers, are checked afresh.
    #[test]
    fn a_remembered_check_holds_only_for_the_same_bytes_and_signers() {
        let trusted = [key(1).public_key().clone()];
        let mut s = Signoffs::default();
        s.replace(&[signed(4, &key(1))]);
        assert!(matches!(&s.check(None, Ok(&trusted))[0], Ok(e) if e.id == 4));
        assert!(matches!(&s.check(None, Ok(&trusted))[0], Ok(e) if e.id == 4));
        // The same id, other bytes: refused, not the verdict on the old bytes.
        let mut forged = signed(4, &key(1));
        forged.statement.push(0);
        s.apply(&[forged], &[]);
        assert!(
            matches!(&s.check(None, Ok(&trusted))[0], Err((4, why)) if why.contains("refused"))
        );
        // Back to the signed bytes, then the signer is no longer trusted.
        s.apply(&[signed(4, &key(1))], &[]);
        assert!(s.check(None, Ok(&trusted))[0].is_ok());
        let others = [key(2).public_key().clone()];
        assert!(matches!(&s.check(None, Ok(&others))[0], Err((4, why)) if why.contains("refused")));
        // A clone (the daemon's copy) answers the same.
        let copy = s.clone();
        assert!(copy.check(None, Ok(&trusted))[0].is_ok());
        assert!(copy.check(None, Ok(&others))[0].is_err());
    }
}
