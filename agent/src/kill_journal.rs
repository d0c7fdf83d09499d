//! The kill journal: a kill is written down before its first signal and finished after a
//! restart.
//!
//! A kill freezes the login's processes before it kills them (see [`crate::kill`]). An
//! agent that dies between the two would leave them frozen, or, for a kill it never
//! wrote down, running; and the control plane would wait for a result that never comes.
//! So each kill (of a kill order, or for a sign-off) is journaled in the state directory,
//! atomically, before anything is signalled, with what it goes after ([`KillTarget`]).
//! On start the daemon finishes every kill without a result, and then reports the results
//! of kill orders on every connection until they are old: the control plane records the
//! first result of each order and ignores repeats, so a result lost in a crash on either
//! side is still told, and an order is never executed twice.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::{AtomicWriteError, write_atomic};
use crate::kill::{KillReport, KillTarget};

/// The journal file in the state directory.
pub const KILLS_FILE: &str = "kills";
/// How long a finished kill is kept (and its result re-reported) after it was journaled.
pub const KEEP_SECS: u64 = 3600;

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
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
    #[error("{path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// It cannot be written: the kill is not attempted.
    #[error("cannot write the kill journal")]
    Write(#[from] AtomicWriteError),
}

/// What a journaled kill found at its final scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Processes that ended.
    pub ended_pids: Vec<u32>,
    /// Processes of the login alive at the final scan.
    pub remaining_pids: Vec<u32>,
    /// Why the kill could not be carried out, if it could not.
    pub error: Option<String>,
}

impl Outcome {
    /// The outcome a report gives.
    pub fn of(report: &KillReport) -> Outcome {
        Outcome {
            ended_pids: report.ended_pids(),
            remaining_pids: report.remaining_pids(),
            error: None,
        }
    }
}

/// One kill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What it is for: `order:NONCE_HEX`, or `signoff:ID:SESSION`.
    pub key: String,
    /// What it goes after.
    pub target: KillTarget,
    /// Unix seconds it was journaled at.
    pub journaled_at: u64,
    /// Its outcome, once it has one.
    pub outcome: Option<Outcome>,
}

/// The journal, as loaded; every change is persisted before it returns.
#[derive(Debug)]
pub struct KillJournal {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl KillJournal {
    /// The journal in `state_dir` (none yet: empty).
    pub fn load(state_dir: &Path) -> Result<KillJournal, JournalError> {
        let path = state_dir.join(KILLS_FILE);
        let entries = match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| JournalError::Corrupt {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(JournalError::Read { path, source }),
        };
        Ok(KillJournal { path, entries })
    }

    /// An empty journal at `state_dir` that overwrites whatever is there at its first
    /// change (after a corrupt one could not be loaded).
    pub fn empty(state_dir: &Path) -> KillJournal {
        KillJournal {
            path: state_dir.join(KILLS_FILE),
            entries: Vec::new(),
        }
    }

    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Kills journaled but not finished (the agent stopped in the middle).
    pub fn unfinished(&self) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| e.outcome.is_none())
            .cloned()
            .collect()
    }

    /// Every entry.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Writes a kill down before its first signal; drops finished entries older than
    /// [`KEEP_SECS`].
    pub fn begin(&mut self, key: &str, target: &KillTarget, now: u64) -> Result<(), JournalError> {
        self.entries
            .retain(|e| e.outcome.is_none() || e.journaled_at + KEEP_SECS > now);
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry {
            key: key.to_owned(),
            target: target.clone(),
            journaled_at: now,
            outcome: None,
        });
        self.persist()
    }

    /// [`KillJournal::begin`] for many kills in one write (a person's hundred logins killed
    /// together must not wait for a hundred fsyncs).
    pub fn begin_many(
        &mut self,
        kills: &[(String, KillTarget)],
        now: u64,
    ) -> Result<(), JournalError> {
        self.entries
            .retain(|e| e.outcome.is_none() || e.journaled_at + KEEP_SECS > now);
        self.entries
            .retain(|e| !kills.iter().any(|(key, _)| *key == e.key));
        self.entries.extend(kills.iter().map(|(key, target)| Entry {
            key: key.clone(),
            target: target.clone(),
            journaled_at: now,
            outcome: None,
        }));
        self.persist()
    }

    /// [`KillJournal::finish`] for many kills in one write.
    pub fn finish_many(&mut self, outcomes: Vec<(String, Outcome)>) -> Result<(), JournalError> {
        for (key, outcome) in outcomes {
            if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
                e.outcome = Some(outcome);
            }
        }
        self.persist()
    }

    /// Records the outcome of the kill `key`.
    pub fn finish(&mut self, key: &str, outcome: Outcome) -> Result<(), JournalError> {
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            e.outcome = Some(outcome);
        }
        self.persist()
    }

    fn persist(&self) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(&self.entries).unwrap_or_else(|_| b"[]".to_vec());
        write_atomic(&self.path, &bytes, 0o600)?;
        Ok(())
    }
}

/// The journal key of a kill order.
pub fn order_key(nonce: &[u8]) -> String {
    format!("order:{}", hex::encode(nonce))
}

/// The journal key of a sign-off's kill of one session.
pub fn signoff_key(signoff_id: u64, session: &crate::sessions::SessionId) -> String {
    format!("signoff:{signoff_id}:{session}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::SessionId;
    use crate::sessions::procfs::ProcessRef;

    fn target(pid: u32) -> KillTarget {
        let p = ProcessRef {
            pid,
            start_ticks: 7,
        };
        KillTarget {
            session: SessionId(p),
            monitor: p,
            audit_session: Some(42),
            known: vec![p],
            listeners: vec![],
            cgroup: None,
        }
    }

    #[test]
    fn a_kill_is_on_disk_before_it_starts_and_its_outcome_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = KillJournal::load(dir.path()).unwrap();
        j.begin("order:01", &target(10), 1000).unwrap();
        let reloaded = KillJournal::load(dir.path()).unwrap();
        assert_eq!(reloaded.unfinished().len(), 1);
        assert_eq!(reloaded.unfinished()[0].target, target(10));
        j.finish(
            "order:01",
            Outcome {
                ended_pids: vec![10],
                remaining_pids: vec![],
                error: None,
            },
        )
        .unwrap();
        let reloaded = KillJournal::load(dir.path()).unwrap();
        assert!(reloaded.unfinished().is_empty());
        assert_eq!(
            reloaded
                .get("order:01")
                .unwrap()
                .outcome
                .as_ref()
                .unwrap()
                .ended_pids,
            [10]
        );
    }

    #[test]
    fn old_finished_kills_are_dropped_unfinished_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = KillJournal::load(dir.path()).unwrap();
        j.begin("a", &target(1), 1000).unwrap();
        j.finish(
            "a",
            Outcome {
                ended_pids: vec![],
                remaining_pids: vec![],
                error: None,
            },
        )
        .unwrap();
        j.begin("b", &target(2), 1000).unwrap();
        j.begin("c", &target(3), 1000 + KEEP_SECS).unwrap();
        let keys: Vec<&str> = j.entries().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["b", "c"]);
    }

    #[test]
    fn a_corrupt_journal_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KILLS_FILE), b"[{").unwrap();
        assert!(matches!(
            KillJournal::load(dir.path()),
            Err(JournalError::Corrupt { .. })
        ));
    }
}
