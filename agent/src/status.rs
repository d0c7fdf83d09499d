//! `signoff-agent status`: what an operator on the host needs to know at a glance.

use std::fmt;
use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::daemon::{DaemonStatus, LOCK_FILE, STATUS_FILE};
use crate::identity::Identity;
use crate::state::{self, STATE_FILE, StateFile};

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Whether the daemon's sync stream is up (from the daemon's status file).
    pub connected: bool,
    /// The control plane's agent URL.
    pub server: Option<String>,
    /// This host's id.
    pub host_id: Option<String>,
    /// Unix seconds since which `connected` holds.
    pub since: Option<u64>,
    /// The daemon's last connection error.
    pub last_error: Option<String>,
    /// The revision of the persisted host view (the last one acked).
    pub applied_revision: Option<u64>,
    /// Unix seconds of the last message from the control plane.
    pub last_contact: Option<u64>,
    /// Seconds since then.
    pub last_contact_age: Option<u64>,
    /// The KRL sshd reads.
    pub krl_path: PathBuf,
    /// Its size in bytes, if it exists.
    pub krl_bytes: Option<u64>,
    /// Unix seconds at which the client certificate expires.
    pub cert_not_after: Option<i64>,
    /// The audit chain head this host witnessed, as `audit verify --witness` reads it
    /// (`{"host","seq","hash"}`); `None` before the first.
    pub witnessed_head: Option<serde_json::Value>,
    /// Why the control plane is refused: its audit log no longer extends that head.
    pub witness_refusal: Option<String>,
    /// Problems found while gathering this report.
    pub problems: Vec<String>,
}

/// Gathers the status from the files the daemon keeps; never fails, lists problems instead.
pub fn gather(config: &Config, now: u64) -> Status {
    let mut problems = Vec::new();
    // The running daemon holds this lock; if we can take it, no daemon runs, whatever its
    // last status file says.
    let daemon_running = fs::File::open(config.state_dir.join(LOCK_FILE))
        .map(|f| f.try_lock().is_err())
        .unwrap_or(false);
    if !daemon_running {
        problems.push("the agent daemon is not running".to_owned());
    }
    let daemon: Option<DaemonStatus> = match fs::read(config.state_dir.join(STATUS_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| problems.push(format!("status file unreadable: {e}")))
            .ok(),
        Err(_) => {
            problems.push("the daemon has not run (no status file)".to_owned());
            None
        }
    };
    let applied_revision = match StateFile::open(&config.state_dir.join(STATE_FILE)) {
        Ok(f) => Some(f.revision()),
        Err(e) => {
            problems.push(format!("host view: {e}"));
            None
        }
    };
    let last_contact = state::read_contact(&config.state_dir)
        .map_err(|e| problems.push(format!("contact: {e}")))
        .ok();
    let krl_bytes = fs::metadata(&config.krl_path).map(|m| m.len()).ok();
    if krl_bytes.is_none() {
        problems.push(format!("no KRL at {}", config.krl_path.display()));
    }
    let identity = Identity::load(&config.identity_dir)
        .map_err(|e| problems.push(e.to_string()))
        .ok();
    let witnessed_head = match crate::witness::Witness::load(&config.state_dir) {
        Ok(w) if w.head().seq > 0 => {
            let host = identity.as_ref().map_or("", |i| i.host_id.as_str());
            serde_json::from_str(&w.line(host)).ok()
        }
        Ok(_) => None,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let witness_refusal = daemon.as_ref().and_then(|d| d.witness_refusal.clone());
    if let Some(r) = &witness_refusal {
        problems.push(format!(
            "the control plane is REFUSED: its audit log no longer extends the head this host witnessed: {r}"
        ));
    }
    Status {
        witnessed_head,
        witness_refusal,
        connected: daemon_running && daemon.as_ref().is_some_and(|d| d.connected),
        server: daemon
            .as_ref()
            .map(|d| d.server.clone())
            .or_else(|| identity.as_ref().map(|i| i.server.clone())),
        host_id: identity.as_ref().map(|i| i.host_id.clone()),
        since: daemon.as_ref().map(|d| d.since),
        last_error: daemon.and_then(|d| d.last_error),
        applied_revision,
        last_contact,
        last_contact_age: last_contact.map(|c| now.saturating_sub(c)),
        krl_path: config.krl_path.clone(),
        krl_bytes,
        cert_not_after: identity.map(|i| i.not_after),
        problems,
    }
}

fn or_dash<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "connected:        {}",
            if self.connected { "yes" } else { "no" }
        )?;
        writeln!(f, "server:           {}", or_dash(&self.server))?;
        writeln!(f, "host id:          {}", or_dash(&self.host_id))?;
        writeln!(f, "applied revision: {}", or_dash(&self.applied_revision))?;
        writeln!(
            f,
            "last contact:     {}",
            self.last_contact_age
                .map_or_else(|| "never".to_owned(), |a| format!("{a} s ago"))
        )?;
        writeln!(
            f,
            "KRL:              {} ({})",
            self.krl_path.display(),
            self.krl_bytes
                .map_or_else(|| "missing".to_owned(), |b| format!("{b} bytes"))
        )?;
        writeln!(
            f,
            "certificate:      {}",
            self.cert_not_after
                .map_or_else(|| "none".to_owned(), |t| format!("expires at {t} (Unix)"))
        )?;
        writeln!(
            f,
            "witnessed head:   {}",
            self.witnessed_head.as_ref().map_or_else(
                || "none".to_owned(),
                |h| format!(
                    "row {} hash {}",
                    h["seq"],
                    h["hash"].as_str().unwrap_or("?")
                )
            )
        )?;
        if let Some(e) = &self.last_error {
            writeln!(f, "last error:       {e}")?;
        }
        for p in &self.problems {
            writeln!(f, "problem:          {p}")?;
        }
        Ok(())
    }
}
