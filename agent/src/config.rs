//! The agent's configuration file, `/etc/signoff/agent.toml` by default.
//!
//! TOML, unknown keys refused. Every key has a default, so an empty file is a valid
//! configuration. Read the way the control plane reads its own (`control-plane/src/
//! config.rs`): the file as written (`File`, every key optional) is turned into a
//! [`Config`] in one place, [`Config::parse`], which applies each default and checks each
//! value, and whose error names the key. A [`Config`] is therefore always valid. Adding a
//! key means a field in `File`, one in [`Config`], and its line in [`Config::parse`].
//!
//! ```toml
//! state_dir = "/var/lib/signoff"             # where the host view and the contact time live
//! krl_path = "/var/lib/signoff/revoked.krl"  # sshd's RevokedKeys
//! trusted_user_ca_keys = "/etc/ssh/signoff-user-ca-keys.pub"  # sshd's TrustedUserCAKeys,
//!                                              # kept from the host view; unset: not written
//! mode = "best_effort"                       # or "strict": refuse logins when out of touch
//! max_staleness = "1h"                       # strict mode: how long without contact is too long
//! identity_dir = "/var/lib/signoff/identity" # key (0600), certificate, CA; made by `enroll`
//! allowed_signers = "/etc/signoff/allowed_signers"  # who may sign kill orders; none: no orders
//! syslog_socket = "/dev/log"                 # where the sshd commands log refusals; "": nowhere
//! priority_boost = 10                        # `run` at nice -10 (0 to 19; 0: as started)
//! decisions_socket = "/var/lib/signoff/decisions.sock"  # the sshd commands report their
//!                                              # decisions there; default state_dir/…; "": none
//! command_user = "signoff"                   # sshd's AuthorizedPrincipalsCommandUser
//!
//! [[break_glass]]                            # always allowed, whatever the state says
//! account = "root"
//! principals = ["emergency"]
//!
//! [approvals]                                # privileged accounts need k approvals
//! privileged_accounts = ["root", "admin"]
//! required = 2                               # k: distinct approvers per grant
//! approvers = "/etc/signoff/approvers"       # allowed_signers of the approvers
//!
//! [host_certificates]                        # SSH host certificates from the control plane
//! host_keys = ["/etc/ssh/ssh_host_*_key.pub"]  # the default; `*` within the file name
//! certificate_dir = "/var/lib/signoff"       # default: state_dir; NAME-cert.pub per key
//! reload_command = ["systemctl", "reload", "ssh.service"]  # the default; [] for none
//! ```

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the agent looks for its configuration when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/signoff/agent.toml";
/// Default for [`Config::state_dir`].
pub const DEFAULT_STATE_DIR: &str = "/var/lib/signoff";
/// Default for [`Config::krl_path`].
pub const DEFAULT_KRL_PATH: &str = "/var/lib/signoff/revoked.krl";
/// Default for [`Config::identity_dir`].
pub const DEFAULT_IDENTITY_DIR: &str = "/var/lib/signoff/identity";
/// Default for [`Config::max_staleness`]: one hour.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(3600);

/// A configuration file that could not be used. The agent must not start on one, and the
/// sshd commands refuse every login with one (break-glass principals live in this file, so
/// there is nothing else to fall back on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, or not readable by this user).
    #[error("cannot read configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("invalid configuration file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said (it names the line and the key).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The file parses but a value makes no sense.
    #[error("invalid configuration file {path}: {key}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key (`max_staleness`, `break_glass`, `sessions`).
        key: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// What the sshd commands do when the agent has not heard from the control plane for a
/// while.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Answer from the last state received, however old (a warning is logged when it is
    /// older than [`Config::max_staleness`]).
    #[default]
    BestEffort,
    /// Refuse every login (except break-glass ones) when the last contact with the control
    /// plane is older than [`Config::max_staleness`] or unknown.
    Strict,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::BestEffort => "best_effort",
            Mode::Strict => "strict",
        })
    }
}

/// Principals that `signoff-agent principals` prints for `account` whatever the state says,
/// so that a broken control plane or a lost state file never locks everyone out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlass {
    /// The unix account (`%u`).
    pub account: String,
    /// The certificate principals admitted for it.
    pub principals: Vec<String>,
}

/// The agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directory of the persisted host view and the last-contact time. Must be writable by
    /// the agent (root) only and readable by the `AuthorizedPrincipalsCommandUser`.
    pub state_dir: PathBuf,
    /// Where the KRL for sshd's `RevokedKeys` is written.
    pub krl_path: PathBuf,
    /// Whether a stale state is still used.
    pub mode: Mode,
    /// How old the last contact may be in [`Mode::Strict`], as `90s`, `15m`, `1h`, `1d` or a
    /// sum like `1h30m`.
    pub max_staleness: Duration,
    /// Always-admitted principals, per account.
    pub break_glass: Vec<BreakGlass>,
    /// The agent's key, client certificate and the agent CA certificate (made by
    /// `signoff-agent enroll`; the directory is 0700, root only).
    pub identity_dir: PathBuf,
    /// OpenSSH `allowed_signers` file of the keys whose kill orders this agent executes.
    /// Installed by Ansible, never learned from the wire. Without it, every order is refused.
    pub allowed_signers: Option<PathBuf>,
    /// The local syslog socket the sshd commands send their refusals to (journald listens
    /// at `/dev/log` too), besides sshd's stderr, which `sshd -E FILE` diverts. Empty: none.
    pub syslog_socket: PathBuf,
    /// Which sshd's sessions to watch, and how to kill them.
    pub sessions: crate::sessions::SessionsConfig,
    /// sshd's `TrustedUserCAKeys` file, kept from the host view (`trusted_cas.rs`). Unset,
    /// the agent leaves sshd's trusted CAs to whoever configured them.
    pub trusted_user_ca_keys: Option<PathBuf>,
    /// Privileged accounts and the approvals a grant to one needs (`crate::approvals`).
    /// Set by Ansible, never by the control plane. Unset: no account is privileged.
    pub approvals: Option<ApprovalsConfig>,
    /// SSH host certificates for this host's keys (`crate::host_certs`). Unset: the agent
    /// asks for none.
    pub host_certificates: Option<crate::host_certs::HostCertsConfig>,
    /// How far `signoff-agent run` raises its scheduling priority: it runs at nice
    /// `-priority_boost` (0 to 19; 0 leaves it as started). On a host busy with the very
    /// logins it must see and kill, an agent at the default priority spends most of a scan
    /// waiting in the run queue (BENCHMARKS.md, session 10); auditd boosts itself for the
    /// same reason. It does not use more CPU for it, it gets it sooner.
    pub priority_boost: u8,
    /// The datagram socket `run` binds and the sshd commands send each decision to
    /// (`crate::decisions`), for the control plane's histogram. `None` (`""` in the file):
    /// not bound, nothing sent. Default: `decisions.sock` in `state_dir`.
    pub decisions_socket: Option<PathBuf>,
    /// sshd's `AuthorizedPrincipalsCommandUser` (and `AuthorizedKeysCommandUser`): the
    /// decisions socket counts datagrams from this user and root only.
    pub command_user: String,
}

/// Default for [`Config::command_user`], as the package's sshd drop-in sets it.
pub const DEFAULT_COMMAND_USER: &str = "signoff";

/// Default for [`Config::priority_boost`].
pub const DEFAULT_PRIORITY_BOOST: u8 = 10;

/// Accounts that a grant opens only with `required` approvals from distinct approvers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// The privileged Unix accounts (`root`, `admin`, …).
    pub privileged_accounts: Vec<String>,
    /// k: how many distinct approvers must have signed a grant to one of them.
    pub required: usize,
    /// The approvers, as an OpenSSH `allowed_signers` file (what `ssh-keygen -Y verify -f`
    /// reads).
    pub approvers: PathBuf,
}

impl ApprovalsConfig {
    /// Whether `account` is privileged.
    pub fn is_privileged(&self, account: &str) -> bool {
        self.privileged_accounts.iter().any(|a| a == account)
    }

    fn validate(&self) -> Result<(), String> {
        if self.privileged_accounts.is_empty() {
            return Err("[approvals] privileged_accounts lists no account".to_owned());
        }
        if let Some(a) = self
            .privileged_accounts
            .iter()
            .find(|a| a.is_empty() || a.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(format!(
                "[approvals] privileged account {a:?} must be a non-empty unix account name"
            ));
        }
        let max = signoff_proto::approvals::MAX_SIGNATURES;
        if self.required == 0 || self.required > max {
            return Err(format!(
                "[approvals] required = {} must be between 1 and {max}",
                self.required
            ));
        }
        if !self.approvers.is_absolute() {
            return Err(format!(
                "[approvals] approvers = {:?} must be an absolute path",
                self.approvers
            ));
        }
        Ok(())
    }
}

/// The file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    state_dir: Option<PathBuf>,
    krl_path: Option<PathBuf>,
    mode: Option<Mode>,
    max_staleness: Option<String>,
    #[serde(default)]
    break_glass: Vec<BreakGlass>,
    identity_dir: Option<PathBuf>,
    allowed_signers: Option<PathBuf>,
    syslog_socket: Option<PathBuf>,
    #[serde(default)]
    sessions: crate::sessions::SessionsConfig,
    trusted_user_ca_keys: Option<PathBuf>,
    approvals: Option<ApprovalsConfig>,
    host_certificates: Option<crate::host_certs::HostCertsFile>,
    priority_boost: Option<u8>,
    decisions_socket: Option<PathBuf>,
    command_user: Option<String>,
}

fn default_syslog_socket() -> PathBuf {
    PathBuf::from(crate::syslog::DEFAULT_SOCKET)
}

fn default_identity_dir() -> PathBuf {
    PathBuf::from(DEFAULT_IDENTITY_DIR)
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

fn default_krl_path() -> PathBuf {
    PathBuf::from(DEFAULT_KRL_PATH)
}

fn default_max_staleness() -> Duration {
    DEFAULT_MAX_STALENESS
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: default_state_dir(),
            krl_path: default_krl_path(),
            mode: Mode::default(),
            max_staleness: default_max_staleness(),
            break_glass: Vec::new(),
            identity_dir: default_identity_dir(),
            allowed_signers: None,
            syslog_socket: default_syslog_socket(),
            sessions: crate::sessions::SessionsConfig::default(),
            trusted_user_ca_keys: None,
            approvals: None,
            host_certificates: None,
            priority_boost: DEFAULT_PRIORITY_BOOST,
            decisions_socket: Some(default_state_dir().join(crate::decisions::SOCKET_FILE)),
            command_user: DEFAULT_COMMAND_USER.to_owned(),
        }
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses configuration text into a valid configuration: each key's default applied,
    /// each value checked; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            problem,
        };
        let absolute = |key: &'static str, p: PathBuf| {
            if p.is_absolute() {
                Ok(p)
            } else {
                Err(invalid(key, format!("{p:?} must be an absolute path")))
            }
        };
        let state_dir = absolute(
            "state_dir",
            file.state_dir.unwrap_or_else(default_state_dir),
        )?;
        let krl_path = absolute("krl_path", file.krl_path.unwrap_or_else(default_krl_path))?;
        let trusted_user_ca_keys = file
            .trusted_user_ca_keys
            .map(|p| absolute("trusted_user_ca_keys", p))
            .transpose()?;
        let max_staleness = match file.max_staleness {
            None => default_max_staleness(),
            Some(text) => parse_duration(&text)
                .map_err(|e| invalid("max_staleness", format!("{text:?}: {e}")))?,
        };
        if max_staleness.is_zero() {
            return Err(invalid(
                "max_staleness",
                "must be longer than 0s".to_owned(),
            ));
        }
        for bg in &file.break_glass {
            check_break_glass(bg).map_err(|problem| invalid("break_glass", problem))?;
        }
        file.sessions
            .validate()
            .map_err(|problem| invalid("sessions", problem))?;
        if let Some(a) = &file.approvals {
            a.validate()
                .map_err(|problem| invalid("approvals", problem))?;
        }
        let host_certificates = file
            .host_certificates
            .map(|h| h.resolve(&state_dir))
            .transpose()
            .map_err(|problem| invalid("host_certificates", problem))?;
        let priority_boost = file.priority_boost.unwrap_or(DEFAULT_PRIORITY_BOOST);
        if priority_boost > 19 {
            return Err(invalid(
                "priority_boost",
                format!("{priority_boost} must be between 0 (none) and 19 (nice -19)"),
            ));
        }
        let decisions_socket = match file.decisions_socket {
            None => Some(state_dir.join(crate::decisions::SOCKET_FILE)),
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(absolute("decisions_socket", p)?),
        };
        let command_user = file
            .command_user
            .unwrap_or_else(|| DEFAULT_COMMAND_USER.to_owned());
        if command_user.is_empty()
            || command_user
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid(
                "command_user",
                format!("{command_user:?} must be a unix account name"),
            ));
        }
        Ok(Config {
            state_dir,
            krl_path,
            mode: file.mode.unwrap_or_default(),
            max_staleness,
            break_glass: file.break_glass,
            identity_dir: file.identity_dir.unwrap_or_else(default_identity_dir),
            allowed_signers: file.allowed_signers,
            syslog_socket: file.syslog_socket.unwrap_or_else(default_syslog_socket),
            sessions: file.sessions,
            trusted_user_ca_keys,
            approvals: file.approvals,
            host_certificates,
            priority_boost,
            decisions_socket,
            command_user,
        })
    }

    /// The break-glass principals for `account`, in configuration order (may be empty).
    pub fn break_glass_principals<'a>(
        &'a self,
        account: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.break_glass
            .iter()
            .filter(move |bg| bg.account == account)
            .flat_map(|bg| bg.principals.iter().map(String::as_str))
    }
}

/// A break-glass entry that sshd can use: an account and principals it reads back as given.
fn check_break_glass(bg: &BreakGlass) -> Result<(), String> {
    if bg.account.is_empty() || bg.account.chars().any(char::is_control) {
        return Err(format!(
            "account {:?} must be a non-empty unix account name",
            bg.account
        ));
    }
    if bg.principals.is_empty() {
        return Err(format!("account {:?} lists no principals", bg.account));
    }
    if let Some(p) = bg.principals.iter().find(|p| !is_valid_principal(p)) {
        return Err(format!(
            "principal {p:?} for account {:?}: {}",
            bg.account,
            signoff_core::principal::RULE
        ));
    }
    Ok(())
}

/// Whether `p` can be printed as one line of an sshd principals answer and be read back by
/// sshd as exactly that principal: sshd splits a line at whitespace (text before the last
/// blank is taken as key options) and skips lines starting with `#`.
pub fn is_valid_principal(p: &str) -> bool {
    signoff_core::principal::is_valid(p)
}

/// The one duration grammar of signoff's configuration files (`500ms`, `90s`, `1h30m`;
/// see [`signoff_core::duration`]).
pub use signoff_core::duration::parse as parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("agent.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        let c = Config::default();
        assert_eq!(c.state_dir, Path::new("/var/lib/signoff"));
        assert_eq!(c.krl_path, Path::new("/var/lib/signoff/revoked.krl"));
        assert_eq!(c.mode, Mode::BestEffort);
        assert_eq!(c.max_staleness, Duration::from_secs(3600));
        assert_eq!(c.priority_boost, 10);
        assert_eq!(
            c.decisions_socket.as_deref(),
            Some(Path::new("/var/lib/signoff/decisions.sock"))
        );
        assert_eq!(c.command_user, "signoff");
    }

    #[test]
    fn the_decisions_socket_follows_the_state_dir_unless_set_or_off() {
        let c = parse("state_dir = \"/srv/signoff\"").unwrap();
        assert_eq!(
            c.decisions_socket.as_deref(),
            Some(Path::new("/srv/signoff/decisions.sock"))
        );
        let c =
            parse("decisions_socket = \"/run/signoff/d.sock\"\ncommand_user = \"sshcmd\"").unwrap();
        assert_eq!(
            c.decisions_socket.as_deref(),
            Some(Path::new("/run/signoff/d.sock"))
        );
        assert_eq!(c.command_user, "sshcmd");
        assert_eq!(
            parse("decisions_socket = \"\"").unwrap().decisions_socket,
            None
        );
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
            state_dir = "/srv/signoff"
            krl_path = "/etc/ssh/revoked.krl"
            mode = "strict"
            max_staleness = "1h30m"
            priority_boost = 0

            [[break_glass]]
            account = "root"
            principals = ["emergency", "oncall"]

            [[break_glass]]
            account = "deploy"
            principals = ["ci"]
            "#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Strict);
        assert_eq!(c.max_staleness, Duration::from_secs(5400));
        assert_eq!(c.priority_boost, 0);
        assert_eq!(
            c.break_glass_principals("root").collect::<Vec<_>>(),
            ["emergency", "oncall"]
        );
        assert_eq!(
            c.break_glass_principals("deploy").collect::<Vec<_>>(),
            ["ci"]
        );
        assert_eq!(c.break_glass_principals("alice").count(), 0);
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = parse("stat_dir = \"/x\"").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err =
            parse("[[break_glass]]\naccount = \"root\"\nprincipals = [\"e\"]\nx = 1").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn unknown_mode_is_refused() {
        assert!(matches!(
            parse("mode = \"lenient\"").unwrap_err(),
            ConfigError::Parse { .. }
        ));
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (text, message) in [
            (
                "max_staleness = \"0s\"",
                "max_staleness: must be longer than 0s",
            ),
            ("max_staleness = \"soon\"", "max_staleness: \"soon\": "),
            (
                "priority_boost = 20",
                "priority_boost: 20 must be between 0 (none) and 19 (nice -19)",
            ),
            (
                "decisions_socket = \"d.sock\"",
                "decisions_socket: \"d.sock\" must be an absolute path",
            ),
            (
                "command_user = \"a b\"",
                "command_user: \"a b\" must be a unix account name",
            ),
            (
                "state_dir = \"relative\"",
                "state_dir: \"relative\" must be an absolute path",
            ),
            (
                "krl_path = \"revoked.krl\"",
                "krl_path: \"revoked.krl\" must be an absolute path",
            ),
            (
                "trusted_user_ca_keys = \"cas.pub\"",
                "trusted_user_ca_keys: \"cas.pub\" must be an absolute path",
            ),
            (
                "[[break_glass]]\naccount = \"root\"\nprincipals = []",
                "break_glass: account \"root\" lists no principals",
            ),
            (
                "[[break_glass]]\naccount = \"\"\nprincipals = [\"e\"]",
                "break_glass: account \"\" must be a non-empty unix account name",
            ),
            (
                "[[break_glass]]\naccount = \"root\"\nprincipals = [\"a b\"]",
                "break_glass: principal \"a b\" for account \"root\": use 1-128",
            ),
            (
                "[[break_glass]]\naccount = \"root\"\nprincipals = [\"a\\nb\"]",
                "break_glass: principal \"a\\nb\" for account \"root\"",
            ),
            (
                "[[break_glass]]\naccount = \"root\"\nprincipals = [\"#oncall\"]",
                "not starting with '#'",
            ),
            (
                "[sessions]\nsshd_pid_file = \"sshd.pid\"",
                "sessions: [sessions] sshd_pid_file = \"sshd.pid\" must be an absolute path",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{text}: {err}");
            let shown = err.to_string();
            assert!(
                shown.starts_with("invalid configuration file agent.toml: ")
                    && shown.contains(message),
                "{text}: {shown}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1h1m1s"), Ok(Duration::from_secs(3661)));
        for bad in ["", "1", "h", "1x", "1h 5m", "-1s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse("max_staleness = \"soon\"").unwrap_err(),
            ConfigError::Invalid {
                key: "max_staleness",
                ..
            }
        ));
    }

    /// One duration grammar: milliseconds wherever a duration is read (`kill_grace` took
    /// `500ms`, `max_staleness` did not).
    #[test]
    fn every_duration_takes_milliseconds() {
        let c = parse("mode = \"strict\"\nmax_staleness = \"1500ms\"").unwrap();
        assert_eq!(c.max_staleness, Duration::from_millis(1500));
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Path::new("/nonexistent/agent.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn principal_validity() {
        assert!(is_valid_principal("alice"));
        assert!(is_valid_principal("alice@example.com"));
        // The control plane's rule, the same function.
        for bad in ["", "a b", "a\tb", "a\nb", "#x", "a\0", "a,b"] {
            assert!(!is_valid_principal(bad), "{bad:?}");
        }
    }
}
