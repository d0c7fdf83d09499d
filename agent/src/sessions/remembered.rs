//! What the agent remembers of sessions across its own restart.
//!
//! A login whose connection ended while processes of it remain (lingering) has no sshd
//! process left to find it by: an agent that restarts would lose it, and with it the
//! person it belongs to, so a sign-off could no longer end what it left behind. The daemon
//! writes the watcher's sessions to the state directory as they change, and a starting
//! watcher takes back those that still have processes. Only within the same boot: after a
//! reboot audit session ids and PIDs start over and name other processes.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::Session;
use crate::atomic::write_atomic;

/// The file in the state directory.
pub const SESSIONS_FILE: &str = "sessions";

#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    /// Boot time (unix seconds) of the boot the sessions are of.
    boot: u64,
    sessions: Vec<Session>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Writes `sessions` (of the boot at `boot`) to `state_dir`, atomically.
pub fn save(state_dir: &Path, boot: SystemTime, sessions: &[Session]) -> io::Result<()> {
    let bytes = serde_json::to_vec(&Remembered {
        boot: unix(boot),
        sessions: sessions.to_vec(),
    })
    .map_err(io::Error::other)?;
    write_atomic(&state_dir.join(SESSIONS_FILE), &bytes, 0o600).map_err(io::Error::other)
}

/// The sessions remembered in `state_dir` for the boot at `boot`: none when there is no
/// file, it is of another boot, or it cannot be read (said in the log).
pub fn load(state_dir: &Path, boot: SystemTime) -> Vec<Session> {
    let path = state_dir.join(SESSIONS_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the remembered sessions");
            return Vec::new();
        }
    };
    match serde_json::from_slice::<Remembered>(&bytes) {
        Ok(r) if r.boot == unix(boot) => r.sessions,
        Ok(_) => Vec::new(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "remembered sessions unreadable; ignored");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sessions::procfs::ProcessRef;
    use crate::sessions::{Attribution, LingeringProcess, SessionId, Ttys};

    fn session() -> Session {
        let p = ProcessRef {
            pid: 10,
            start_ticks: 20,
        };
        Session {
            id: SessionId(p),
            account: "alice".into(),
            source: "127.0.0.1:4000".parse().unwrap(),
            local: "127.0.0.1:22".parse().unwrap(),
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ttys: Ttys::NoTty,
            attribution: Attribution::Unknown,
            monitor: p,
            session_process: None,
            audit_session: Some(3),
            processes: vec![p],
            listeners: vec![],
            lingering: Some(vec![LingeringProcess {
                process: p,
                uid: 1000,
                account: Some("alice".into()),
                command: "sleep 600".into(),
            }]),
            cgroup: None,
        }
    }

    #[test]
    fn sessions_come_back_within_the_same_boot_only() {
        let dir = tempfile::tempdir().unwrap();
        let boot = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(load(dir.path(), boot).is_empty());
        save(dir.path(), boot, &[session()]).unwrap();
        assert_eq!(load(dir.path(), boot), [session()]);
        assert!(load(dir.path(), boot + Duration::from_secs(60)).is_empty());
        fs::write(dir.path().join(SESSIONS_FILE), b"{").unwrap();
        assert!(load(dir.path(), boot).is_empty());
    }
}
