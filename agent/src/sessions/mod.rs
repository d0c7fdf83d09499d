//! Live SSH sessions on this host: who is logged in, from where, with which key, and which
//! processes are theirs.
//!
//! Two sources, cross-checked:
//!
//! - **sshd's log** says who authenticated with which key ([`log`]): the `Accepted …` line
//!   carries the account, the client's address and port, and the certificate's key ID,
//!   serial and CA (or the plain key's fingerprint). It is read as it is written: a log
//!   file with inotify, or the journal through `journalctl --follow`.
//! - **`/proc`** says which logins are live ([`procfs`]): the watched sshd's connection
//!   processes, recognised by their titles ([`title`]), with the client's address and port
//!   read from the connection socket, the tty, and the kernel audit session id that every
//!   process of the login shares.
//!
//! A session exists while its connection's monitor process does, and after that for as
//! long as any process of the login remains (it is then *lingering*); the log line only
//! attributes it. The [`watch`] module joins the two by client address and port (and PID
//! where the log has one), announces each session as it starts and ends, and reconciles
//! with `/proc` every few seconds in case a line was missed. [`crate::kill`] ends one.

pub mod cgroup;
pub mod log;
pub mod procfs;
pub mod refused;
pub mod remembered;
pub mod sockdiag;
pub mod title;
pub mod watch;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer};

pub use log::{Accepted, AcceptedKey};
pub use procfs::{ProcessRef, SshdSelector};
pub use title::Ttys;
pub use watch::{BlockingWatcher, SessionEvent, SessionWatcher, WatchError, WatcherHandle};

/// A session's identity on this host: its monitor process, as `PID:START_TICKS`. Unique
/// for the host's uptime (a PID is reused only with a later start time).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SessionId(pub ProcessRef);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0.pid, self.0.start_ticks)
    }
}

/// A string that is not a session id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session id {0:?}: expected PID:START_TICKS")]
pub struct InvalidSessionId(String);

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidSessionId(s.to_owned());
        let (pid, ticks) = s.split_once(':').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(pid) || !digits(ticks) {
            return Err(bad());
        }
        Ok(SessionId(ProcessRef {
            pid: pid.parse().map_err(|_| bad())?,
            start_ticks: ticks.parse().map_err(|_| bad())?,
        }))
    }
}

/// Who the log says logged in, and how far to trust it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Attribution {
    /// The connection's `Accepted` line.
    Logged(Box<Accepted>),
    /// No `Accepted` line was found for the connection in time (no log configured, a line
    /// lost, or an agent started after the line was rotated away).
    Unknown,
    /// The log disagrees with itself or with `/proc` about this connection: two
    /// `Accepted` lines, an unreadable one, or another account than the process titles
    /// show. Nothing from the log is reported. (A certificate key ID with a line break
    /// can forge lines in an `sshd -E` file on OpenSSH 9.2; this is how that shows.)
    Conflicting,
}

/// One live (or lingering) SSH login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// `PID:START_TICKS` of the monitor.
    pub id: SessionId,
    /// The unix account (from the process titles).
    pub account: String,
    /// The client's address and port.
    pub source: SocketAddr,
    /// The server address and port the client connected to.
    pub local: SocketAddr,
    /// When the connection was accepted (the monitor's start).
    pub started_at: SystemTime,
    /// The session channels' ttys, as the session process's title shows them.
    pub ttys: Ttys,
    /// Method and key, from the log.
    pub attribution: Attribution,
    /// The per-connection monitor (`sshd: U [priv]`, or root's only process on 9.2).
    pub monitor: ProcessRef,
    /// The login's session process when it is another process than the monitor.
    pub session_process: Option<ProcessRef>,
    /// The kernel audit session id every process of the login shares (`UsePAM yes` with
    /// `pam_loginuid`); `None` when unset or not distinct from the listener's.
    pub audit_session: Option<u32>,
    /// The processes of the login when last looked at (sorted by PID).
    pub processes: Vec<ProcessRef>,
    /// The sshd listener(s) the login belongs to; a kill never touches them.
    pub listeners: Vec<ProcessRef>,
    /// `None` while the monitor lives. Once it has ended, the login's processes that
    /// remain (never empty: a login with none left has ended).
    pub lingering: Option<Vec<LingeringProcess>>,
    /// The login's own cgroup (pam_systemd's session scope, see [`cgroup`]), where it has
    /// one: a kill freezes and kills it as one.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
}

/// A process a login left behind after its connection ended (`setsid -f`, `nohup … &`,
/// a daemon): the classic backdoor of a departing insider, so it is reported with who
/// runs it and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LingeringProcess {
    /// The process.
    pub process: ProcessRef,
    /// Its effective uid.
    pub uid: u32,
    /// The account of that uid, when it has one.
    pub account: Option<String>,
    /// Its command line (NULs as spaces, cut at [`procfs::COMMAND_MAX`] bytes).
    pub command: String,
}

impl Session {
    fn key(&self) -> Option<&AcceptedKey> {
        match &self.attribution {
            Attribution::Logged(a) => a.key.as_ref(),
            Attribution::Unknown | Attribution::Conflicting => None,
        }
    }

    /// The certificate's key ID, for a certificate login.
    pub fn key_id(&self) -> Option<&str> {
        match self.key()? {
            AcceptedKey::Certificate { key_id, .. } => Some(key_id),
            AcceptedKey::Plain { .. } => None,
        }
    }

    /// The certificate's serial, for a certificate login.
    pub fn serial(&self) -> Option<u64> {
        match self.key()? {
            AcceptedKey::Certificate { serial, .. } => Some(*serial),
            AcceptedKey::Plain { .. } => None,
        }
    }

    /// The CA key's fingerprint (`SHA256:…`), for a certificate login.
    pub fn ca_fingerprint(&self) -> Option<&str> {
        match self.key()? {
            AcceptedKey::Certificate { ca_fingerprint, .. } => Some(ca_fingerprint),
            AcceptedKey::Plain { .. } => None,
        }
    }

    /// The fingerprint (`SHA256:…`) of the key that logged in: the certified key, or the
    /// plain key.
    pub fn key_fingerprint(&self) -> Option<&str> {
        match self.key()? {
            AcceptedKey::Certificate {
                key_fingerprint, ..
            } => Some(key_fingerprint),
            AcceptedKey::Plain { fingerprint, .. } => Some(fingerprint),
        }
    }

    /// The first pty (`pts/3`), or `None` for a login without one.
    pub fn tty(&self) -> Option<&str> {
        match &self.ttys {
            Ttys::Pty(list) => list.first().map(String::as_str),
            Ttys::NoChannel | Ttys::NoTty | Ttys::InternalSftp => None,
        }
    }

    /// Whether the connection has ended but processes of the login remain.
    pub fn is_lingering(&self) -> bool {
        self.lingering.is_some()
    }

    /// Unix seconds of [`Session::started_at`].
    pub fn started_at_unix(&self) -> u64 {
        self.started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Where sshd's log is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// The journal if there is one (`/run/systemd/journal`), else `/var/log/auth.log`.
    Auto,
    /// The systemd journal, through `journalctl --follow --output=json`.
    Journal,
    /// A file: `sshd -E FILE`, or a syslog file such as `/var/log/auth.log`.
    File(PathBuf),
    /// No log: sessions are found in `/proc` only, without key attribution.
    None,
}

impl<'de> Deserialize<'de> for LogSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.as_str() {
            "auto" => LogSource::Auto,
            "journal" => LogSource::Journal,
            "none" => LogSource::None,
            path if path.starts_with('/') => LogSource::File(PathBuf::from(path)),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "sshd_log = {other:?}: use \"auto\", \"journal\", \"none\" or an absolute path"
                )));
            }
        })
    }
}

/// Default for [`SessionsConfig::sshd_pid_file`] (Debian's sshd `PidFile`).
pub const DEFAULT_SSHD_PID_FILE: &str = "/run/sshd.pid";
/// Default for [`SessionsConfig::reconcile_interval`].
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(3);
/// Default for [`SessionsConfig::kill_grace`].
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_millis(500);

/// The `[sessions]` table of the agent configuration.
///
/// ```toml
/// [sessions]
/// sshd_log = "auto"               # "journal", "none", or a file (sshd -E, /var/log/auth.log)
/// sshd_pid_file = "/run/sshd.pid" # the watched sshd's listener…
/// # sshd_port = 2222              # …or the sshd listening on this port (not both)
/// reconcile_interval = "3s"       # /proc safety-net rescan
/// refused_rate = 100              # refused attempts sent a second at most…
/// refused_burst = 1000            # …and at once (the rest are counted as dropped)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// Where sshd logs.
    #[serde(default = "default_log")]
    pub sshd_log: LogSource,
    /// The watched sshd's `PidFile` (ignored when `sshd_port` is set).
    #[serde(default)]
    pub sshd_pid_file: Option<PathBuf>,
    /// Watch the sshd listening on this port instead of the one in the pid file.
    #[serde(default)]
    pub sshd_port: Option<u16>,
    /// How often `/proc` is rescanned even when the log is quiet.
    #[serde(
        default = "default_reconcile",
        deserialize_with = "deserialize_duration"
    )]
    pub reconcile_interval: Duration,
    /// No longer used: a kill freezes the login and SIGKILLs it, with no SIGTERM grace
    /// (see [`crate::kill`]). Still accepted so that existing configurations load.
    #[serde(
        default = "default_kill_grace",
        deserialize_with = "deserialize_duration"
    )]
    pub kill_grace: Duration,
    /// Refused login attempts sent to the control plane per second at most; past it they
    /// are counted, and the count is sent (see [`crate::refused_outbox`]).
    #[serde(default = "default_refused_rate")]
    pub refused_rate: u32,
    /// How many refused attempts may be sent at once, and wait while the control plane is
    /// unreachable.
    #[serde(default = "default_refused_burst")]
    pub refused_burst: u32,
}

/// Default for [`SessionsConfig::refused_rate`].
pub const DEFAULT_REFUSED_RATE: u32 = 100;
/// Default for [`SessionsConfig::refused_burst`].
pub const DEFAULT_REFUSED_BURST: u32 = 1000;

fn default_refused_rate() -> u32 {
    DEFAULT_REFUSED_RATE
}

fn default_refused_burst() -> u32 {
    DEFAULT_REFUSED_BURST
}

fn default_log() -> LogSource {
    LogSource::Auto
}

fn default_reconcile() -> Duration {
    DEFAULT_RECONCILE_INTERVAL
}

fn default_kill_grace() -> Duration {
    DEFAULT_KILL_GRACE
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            sshd_log: default_log(),
            sshd_pid_file: None,
            sshd_port: None,
            reconcile_interval: default_reconcile(),
            kill_grace: default_kill_grace(),
            refused_rate: default_refused_rate(),
            refused_burst: default_refused_burst(),
        }
    }
}

impl SessionsConfig {
    /// Checks what the types do not; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.sshd_port.is_some() && self.sshd_pid_file.is_some() {
            return Err(
                "[sessions] names the sshd both by sshd_port and sshd_pid_file: keep one".into(),
            );
        }
        if self.sshd_port == Some(0) {
            return Err("[sessions] sshd_port must be 1-65535".into());
        }
        if let Some(p) = &self.sshd_pid_file
            && !p.is_absolute()
        {
            return Err(format!(
                "[sessions] sshd_pid_file = {p:?} must be an absolute path"
            ));
        }
        if self.reconcile_interval < Duration::from_millis(100) {
            return Err("[sessions] reconcile_interval must be at least 100ms".into());
        }
        if self.kill_grace > Duration::from_secs(60) {
            return Err("[sessions] kill_grace must be at most 60s".into());
        }
        if self.refused_rate == 0 || self.refused_burst == 0 {
            return Err("[sessions] refused_rate and refused_burst must be at least 1".into());
        }
        Ok(())
    }

    /// Which sshd to watch.
    pub fn selector(&self) -> SshdSelector {
        match (self.sshd_port, &self.sshd_pid_file) {
            (Some(port), _) => SshdSelector::Port(port),
            (None, Some(path)) => SshdSelector::PidFile(path.clone()),
            (None, None) => SshdSelector::PidFile(PathBuf::from(DEFAULT_SSHD_PID_FILE)),
        }
    }
}

fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// The agent's durations: the one grammar of [`signoff_core::duration`].
pub use signoff_core::duration::parse as parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip() {
        let id = SessionId(ProcessRef {
            pid: 4242,
            start_ticks: 987_654,
        });
        assert_eq!(id.to_string(), "4242:987654");
        assert_eq!("4242:987654".parse::<SessionId>(), Ok(id));
        for bad in [
            "", "4242", ":1", "1:", "a:1", "1:b", "-1:2", "1:2:3", "+1:2", "1: 2",
        ] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad:?}");
        }
    }

    fn parse(text: &str) -> Result<SessionsConfig, String> {
        let c: SessionsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn config_defaults_and_values() {
        let c = parse("").unwrap();
        assert_eq!(c, SessionsConfig::default());
        assert_eq!(
            c.selector(),
            SshdSelector::PidFile(PathBuf::from("/run/sshd.pid"))
        );
        let c = parse(
            "sshd_log = \"/var/log/sshd.log\"\nsshd_port = 2222\nreconcile_interval = \"5s\"\nkill_grace = \"250ms\"",
        )
        .unwrap();
        assert_eq!(
            c.sshd_log,
            LogSource::File(PathBuf::from("/var/log/sshd.log"))
        );
        assert_eq!(c.selector(), SshdSelector::Port(2222));
        assert_eq!(c.reconcile_interval, Duration::from_secs(5));
        assert_eq!(c.kill_grace, Duration::from_millis(250));
        assert_eq!(
            parse("sshd_log = \"journal\"").unwrap().sshd_log,
            LogSource::Journal
        );
        assert_eq!(
            parse("sshd_log = \"none\"").unwrap().sshd_log,
            LogSource::None
        );
    }

    #[test]
    fn bad_configs() {
        for text in [
            "sshd_log = \"relative.log\"",
            "sshd_port = 22\nsshd_pid_file = \"/run/sshd.pid\"",
            "sshd_port = 0",
            "sshd_port = 70000",
            "sshd_pid_file = \"run/sshd.pid\"",
            "reconcile_interval = \"10ms\"",
            "kill_grace = \"2m\"",
            "kill_grace = \"soon\"",
            "unknown = 1",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn session_accessors() {
        let monitor = ProcessRef {
            pid: 10,
            start_ticks: 20,
        };
        let mut s = Session {
            id: SessionId(monitor),
            account: "alice".into(),
            source: "127.0.0.1:4000".parse().unwrap(),
            local: "127.0.0.1:22".parse().unwrap(),
            started_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ttys: Ttys::Pty(vec!["pts/3".into(), "pts/4".into()]),
            attribution: Attribution::Logged(Box::new(Accepted {
                method: "publickey".into(),
                account: "alice".into(),
                source: "127.0.0.1:4000".parse().unwrap(),
                key: Some(AcceptedKey::Certificate {
                    key_type: "ED25519-CERT".into(),
                    key_fingerprint: "SHA256:k".into(),
                    key_id: "alice@corp".into(),
                    serial: 7,
                    ca_type: "ED25519".into(),
                    ca_fingerprint: "SHA256:ca".into(),
                }),
            })),
            monitor,
            session_process: None,
            audit_session: Some(3),
            processes: vec![monitor],
            listeners: vec![],
            lingering: None,
            cgroup: None,
        };
        assert_eq!(s.key_id(), Some("alice@corp"));
        assert_eq!(s.serial(), Some(7));
        assert_eq!(s.ca_fingerprint(), Some("SHA256:ca"));
        assert_eq!(s.key_fingerprint(), Some("SHA256:k"));
        assert_eq!(s.tty(), Some("pts/3"));
        assert_eq!(s.started_at_unix(), 1_700_000_000);
        s.attribution = Attribution::Conflicting;
        assert_eq!(s.key_id(), None);
        assert_eq!(s.key_fingerprint(), None);
        s.ttys = Ttys::NoTty;
        assert_eq!(s.tty(), None);
    }
}
