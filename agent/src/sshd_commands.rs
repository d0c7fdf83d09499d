//! The two commands sshd runs at every login, as library functions:
//!
//! - [`principals`]: `AuthorizedPrincipalsCommand` (`%u %i %s %F %f`), for certificates;
//! - [`authorized_keys`]: `AuthorizedKeysCommand` (`%u`), for hosts without certificates.
//!
//! They answer from the persisted host view only (a header read and a few positioned reads,
//! no network, no lock, no waiting), print their answer to `out` and nothing else, and fail
//! closed: when the view is missing, unreadable or corrupt, or (strict mode) stale, or the
//! certificate is revoked, or nothing matches, they print nothing and the caller exits
//! non-zero. The [`Decision`] says why: [`run_principals`] and [`run_authorized_keys`] log
//! it on stderr (which sshd sends to its own log) and to the system log
//! ([`crate::syslog`]), since `sshd -E FILE` diverts that stderr. Each also sends its
//! outcome and duration to the daemon ([`crate::decisions`]), best effort, for the control
//! plane's metrics.
//!
//! Break-glass principals from the configuration are printed for their account even when
//! the view is missing, corrupt or stale; a revocation found in a readable view still
//! refuses them.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use signoff_core::error::chain;

use crate::approvals::{ApprovalCheck, NotApproved};
use crate::config::{Config, Mode, is_valid_principal};
use crate::decisions::Outcome;
use crate::state::format::{FormatError, key_fingerprint};
use crate::state::writer::{ContactError, STATE_FILE, read_contact};
use crate::state::{CertificateQuery, Matches, Revoked, StateFile};
use crate::syslog::Severity;

/// Writing the answer to sshd failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Standard output is closed or failing.
    #[error("cannot write the answer to standard output")]
    Output(#[source] io::Error),
}

/// The arguments of `signoff-agent principals`, as sshd expands them.
#[derive(Debug, Clone, Copy)]
pub struct PrincipalsArgs<'a> {
    /// `%u`: the unix account being logged in to.
    pub account: &'a str,
    /// `%i`: the certificate's key ID.
    pub key_id: &'a str,
    /// `%s`: the certificate's serial, decimal.
    pub serial: &'a str,
    /// `%F`: the CA key's fingerprint, `SHA256:…`.
    pub ca_fingerprint: &'a str,
    /// `%f`: the certified key's fingerprint, `SHA256:…`.
    pub key_fingerprint: &'a str,
}

/// How long ago the control plane was last heard from, when that is a problem.
#[derive(Debug)]
#[non_exhaustive]
pub enum Staleness {
    /// No usable contact time.
    NoContact(ContactError),
    /// The last contact is older than `max_staleness`.
    TooOld {
        /// Seconds since the last contact.
        age: u64,
        /// The configured limit.
        max: Duration,
    },
    /// The contact time is further in the future than `max_staleness`: the clock or the
    /// file is wrong.
    InFuture {
        /// The recorded contact time.
        contact: u64,
        /// Now.
        now: u64,
    },
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Staleness::NoContact(e) => write!(f, "{}", chain(e)),
            Staleness::TooOld { age, max } => write!(
                f,
                "last contact with the control plane was {age}s ago, more than max_staleness {}s",
                max.as_secs()
            ),
            Staleness::InFuture { contact, now } => write!(
                f,
                "the recorded contact time {contact} is ahead of the clock ({now})"
            ),
        }
    }
}

/// Why nothing (or only break-glass principals) was printed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Denial {
    /// sshd passed an argument this command cannot read (e.g. `FingerprintHash md5`).
    BadArgument(String),
    /// The host view is missing, unreadable or corrupt.
    StateUnusable {
        /// The view file.
        path: PathBuf,
        /// What is wrong.
        source: FormatError,
    },
    /// Strict mode, and the view is not known to be fresh.
    Stale(Staleness),
    /// The certificate is in the revocation set.
    Revoked(Revoked),
    /// No grant for this account matches.
    NoGrant,
    /// Grants match, but all have expired.
    GrantExpired,
    /// The account is privileged and no matching grant carries enough valid approvals.
    NotApproved(NotApproved),
    /// The person (or this key ID or key) was signed off here and their re-enable does not
    /// carry enough approvals yet (see [`crate::holds`]).
    Held(String),
    /// The holds file cannot be read: who is held out is unknown.
    HoldsUnusable(String),
    /// Grants match, but nothing they hold can be printed (no principals or keys, or only
    /// malformed or revoked ones).
    NothingPrintable,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::BadArgument(what) => write!(f, "bad argument from sshd: {what}"),
            Denial::StateUnusable { path, source } if is_missing(source) => {
                write!(f, "state missing: {} does not exist", path.display())
            }
            Denial::StateUnusable { path, source } => {
                write!(
                    f,
                    "state corrupt or unreadable: {}: {}",
                    path.display(),
                    chain(source)
                )
            }
            Denial::Stale(s) => write!(f, "state stale (strict mode): {s}"),
            Denial::Revoked(r) => write!(f, "revoked: {r}"),
            Denial::NoGrant => f.write_str("no grant for this account and key ID"),
            Denial::GrantExpired => {
                f.write_str("the grant for this account and key ID has expired")
            }
            Denial::NotApproved(n) => write!(f, "{n}"),
            Denial::Held(who) => write!(
                f,
                "held: {who} was signed off here and the re-enable does not carry enough approvals from this host's approvers"
            ),
            Denial::HoldsUnusable(why) => write!(f, "holds unusable (fail closed): {why}"),
            Denial::NothingPrintable => {
                f.write_str("the matching grants hold nothing that can be printed")
            }
        }
    }
}

/// Something worth logging about an answer that was given.
#[derive(Debug)]
#[non_exhaustive]
pub enum Warning {
    /// Best-effort mode answered from a view that may be stale.
    Stale(Staleness),
    /// Principals or keys that cannot be printed safely were left out.
    Skipped {
        /// How many.
        count: usize,
        /// What they were.
        what: &'static str,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Stale(s) => write!(f, "answered from a possibly stale state: {s}"),
            Warning::Skipped { count, what } => write!(f, "left out {count} {what}"),
        }
    }
}

/// The outcome of one command. Exit 0 exactly when [`Decision::is_success`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Decision {
    /// Printed what live grants hold (and the account's break-glass principals, if any).
    Granted {
        /// Lines printed.
        printed: usize,
        /// Things to log.
        warnings: Vec<Warning>,
    },
    /// Printed only the account's break-glass principals, because of `instead_of`.
    BreakGlass {
        /// Lines printed.
        printed: usize,
        /// What would have been refused otherwise.
        instead_of: Denial,
    },
    /// Printed nothing.
    Denied(Denial),
}

impl Decision {
    /// Whether the command should exit 0.
    pub fn is_success(&self) -> bool {
        !matches!(self, Decision::Denied(_))
    }

    /// How serious it is in the system log: a refusal or a break-glass login is a warning, a
    /// grant with a warning (a stale view in best-effort mode) a notice.
    pub fn severity(&self) -> Severity {
        match self {
            Decision::Granted { .. } => Severity::Notice,
            Decision::BreakGlass { .. } | Decision::Denied(_) => Severity::Warning,
        }
    }

    /// Whether the decision should be logged (refusals, break-glass use, warnings); a plain
    /// grant is logged by sshd itself.
    pub fn should_log(&self) -> bool {
        match self {
            Decision::Granted { warnings, .. } => !warnings.is_empty(),
            Decision::BreakGlass { .. } | Decision::Denied(_) => true,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Granted { printed, warnings } => {
                write!(f, "granted ({printed} lines)")?;
                for w in warnings {
                    write!(f, "; warning: {w}")?;
                }
                Ok(())
            }
            Decision::BreakGlass {
                printed,
                instead_of,
            } => write!(
                f,
                "BREAK-GLASS: printed {printed} break-glass principals instead of refusing: {instead_of}"
            ),
            Decision::Denied(d) => write!(f, "denied: {d}"),
        }
    }
}

/// Answers `AuthorizedPrincipalsCommand`: prints to `out`, one per line, the principals of
/// every live grant of `args.account` to a user with key ID `args.key_id`, plus the
/// account's break-glass principals; or nothing. `now` is Unix seconds.
pub fn principals(
    cfg: &Config,
    args: &PrincipalsArgs<'_>,
    now: u64,
    out: &mut impl Write,
) -> Result<Decision, CommandError> {
    let break_glass: Vec<&str> = cfg.break_glass_principals(args.account).collect();
    let mut lines = Lines::default();
    let decision = match grant_principals(cfg, args, now, &mut lines) {
        Ok(mut warnings) => {
            lines.extend_trusted(&break_glass);
            if lines.skipped > 0 {
                warnings.push(Warning::Skipped {
                    count: lines.skipped,
                    what: "principals with spaces or control characters",
                });
            }
            if lines.is_empty() {
                Decision::Denied(Denial::NothingPrintable)
            } else {
                Decision::Granted {
                    printed: lines.len(),
                    warnings,
                }
            }
        }
        // Neither a revocation nor a malformed request is overridden by break-glass.
        Err(d @ (Denial::Revoked(_) | Denial::BadArgument(_))) => Decision::Denied(d),
        Err(d) if !break_glass.is_empty() => {
            lines = Lines::default();
            lines.extend_trusted(&break_glass);
            Decision::BreakGlass {
                printed: lines.len(),
                instead_of: d,
            }
        }
        Err(d) => Decision::Denied(d),
    };
    if decision.is_success() {
        lines.write_to(out)?;
    }
    Ok(decision)
}

/// The principals of the matching live grants, into `lines`; or why there are none.
fn grant_principals(
    cfg: &Config,
    args: &PrincipalsArgs<'_>,
    now: u64,
    lines: &mut Lines,
) -> Result<Vec<Warning>, Denial> {
    let query = CertificateQuery {
        key_id: args.key_id,
        serial: args.serial.parse().map_err(|_| {
            Denial::BadArgument(format!("serial {:?} is not a number", args.serial))
        })?,
        ca_fingerprint: parse_fingerprint(args.ca_fingerprint)?,
        key_fingerprint: parse_fingerprint(args.key_fingerprint)?,
    };
    let path = cfg.state_dir.join(STATE_FILE);
    let unusable = |source| Denial::StateUnusable {
        path: path.clone(),
        source,
    };
    let file = StateFile::open(&path).map_err(unusable)?;
    if let Some(r) = file.check_certificate(&query).map_err(unusable)? {
        return Err(Denial::Revoked(r));
    }
    let holds = load_holds(cfg)?;
    if let Some(h) = &holds
        && h.holds_key(args.key_id, args.key_fingerprint)
    {
        return Err(Denial::Held(format!("key ID {:?}", args.key_id)));
    }
    let warnings = check_freshness(cfg, now)?;
    let mut found = Vec::new();
    let check = ApprovalCheck::for_account(cfg, args.account, now);
    let matches = file
        .principals_gated(
            args.account,
            args.key_id,
            now,
            check.as_ref(),
            holds.as_ref(),
            &mut found,
        )
        .map_err(unusable)?;
    if matches.live == 0 {
        return Err(no_live_grant(matches, check));
    }
    lines.extend_checked(found);
    Ok(warnings)
}

/// Answers `AuthorizedKeysCommand`: prints to `out` the authorized keys of every live grant
/// of `account`, except revoked ones; or nothing. `now` is Unix seconds.
pub fn authorized_keys(
    cfg: &Config,
    account: &str,
    now: u64,
    out: &mut impl Write,
) -> Result<Decision, CommandError> {
    let mut lines = Lines::default();
    let decision = match grant_keys(cfg, account, now, &mut lines) {
        Ok(mut warnings) => {
            if lines.skipped > 0 {
                warnings.push(Warning::Skipped {
                    count: lines.skipped,
                    what: "malformed or revoked keys",
                });
            }
            if lines.is_empty() {
                Decision::Denied(Denial::NothingPrintable)
            } else {
                Decision::Granted {
                    printed: lines.len(),
                    warnings,
                }
            }
        }
        Err(d) => Decision::Denied(d),
    };
    if decision.is_success() {
        lines.write_to(out)?;
    }
    Ok(decision)
}

fn grant_keys(
    cfg: &Config,
    account: &str,
    now: u64,
    lines: &mut Lines,
) -> Result<Vec<Warning>, Denial> {
    let path = cfg.state_dir.join(STATE_FILE);
    let unusable = |source| Denial::StateUnusable {
        path: path.clone(),
        source,
    };
    let file = StateFile::open(&path).map_err(unusable)?;
    let holds = load_holds(cfg)?;
    let warnings = check_freshness(cfg, now)?;
    let mut keys = Vec::new();
    let check = ApprovalCheck::for_account(cfg, account, now);
    let matches = file
        .authorized_keys_gated(account, now, check.as_ref(), holds.as_ref(), |line| {
            keys.push(line.to_owned())
        })
        .map_err(unusable)?;
    if matches.live == 0 {
        return Err(no_live_grant(matches, check));
    }
    for line in keys {
        let revoked = match key_blob_of_line(&line) {
            Some(blob) => {
                let fp = key_fingerprint(&blob);
                file.is_key_revoked(&fp).map_err(unusable)?
                    || holds.as_ref().is_some_and(|h| {
                        h.holds_key(
                            "",
                            &signoff_core::fingerprint::Sha256Fingerprint(fp).to_string(),
                        )
                    })
            }
            None => true,
        };
        if revoked || line.chars().any(char::is_control) {
            lines.skipped += 1;
        } else {
            lines.push(line);
        }
    }
    Ok(warnings)
}

/// Why grants matched but none is live: refused approvals first (the reason an operator
/// most needs), then expiry.
fn no_live_grant(matches: Matches, check: Option<ApprovalCheck<'_>>) -> Denial {
    if matches.held > 0 {
        return Denial::Held("the person this grant is for".to_owned());
    }
    match check {
        Some(c) if matches.unapproved > 0 => Denial::NotApproved(c.into_refusal()),
        _ if matches.expired > 0 => Denial::GrantExpired,
        _ => Denial::NoGrant,
    }
}

/// The holds of this host, when it keeps any (`[approvals]`); a holds file that cannot be
/// read refuses the login.
fn load_holds(cfg: &Config) -> Result<Option<crate::holds::Holds>, Denial> {
    crate::guards::held_out(&cfg.state_dir, cfg).map_err(|e| Denial::HoldsUnusable(chain(&e)))
}

/// In strict mode, refuses a view not known to be fresh; in best-effort mode, returns a
/// warning for one known to be stale.
fn check_freshness(cfg: &Config, now: u64) -> Result<Vec<Warning>, Denial> {
    let problem = match read_contact(&cfg.state_dir) {
        // Best effort: an agent that never synced has no view either; nothing to add.
        Err(ContactError::Missing { .. }) if cfg.mode == Mode::BestEffort => None,
        Err(e) => Some(Staleness::NoContact(e)),
        Ok(contact) => {
            let max = cfg.max_staleness.as_secs();
            if contact > now.saturating_add(max) {
                Some(Staleness::InFuture { contact, now })
            } else if now.saturating_sub(contact) > max {
                Some(Staleness::TooOld {
                    age: now - contact,
                    max: cfg.max_staleness,
                })
            } else {
                None
            }
        }
    };
    match (problem, cfg.mode) {
        (None, _) => Ok(Vec::new()),
        (Some(s), Mode::Strict) => Err(Denial::Stale(s)),
        (Some(s), Mode::BestEffort) => Ok(vec![Warning::Stale(s)]),
    }
}

/// `signoff-agent principals --config CONFIG USER KEYID SERIAL CA_FP KEY_FP` after argument
/// parsing: loads the configuration, answers on `out`, logs on `log` what deserves it
/// (refusals, break-glass use, warnings). Returns whether to exit 0. A configuration that
/// cannot be loaded refuses the login: break-glass principals live in it.
pub fn run_principals(
    config_path: &Path,
    [account, key_id, serial, ca_fingerprint, key_fingerprint]: [&str; 5],
    now: u64,
    out: &mut impl Write,
    log: &mut impl Write,
    syslog: Syslog,
) -> Result<bool, CommandError> {
    let started = Instant::now();
    let what = format!("principals for account {account:?}, key ID {key_id:?}, serial {serial}");
    let cfg = match Config::load(config_path) {
        Ok(cfg) => cfg,
        Err(e) => {
            let line = format!("{what}: denied: {}", chain(&e));
            report(
                log,
                syslog.socket(config_path, None),
                Severity::Warning,
                &line,
            );
            return Ok(false);
        }
    };
    let args = PrincipalsArgs {
        account,
        key_id,
        serial,
        ca_fingerprint,
        key_fingerprint,
    };
    let decision = principals(&cfg, &args, now, out)?;
    if decision.should_log() {
        let line = format!("{what}: {decision}");
        report(
            log,
            syslog.socket(config_path, Some(&cfg)),
            decision.severity(),
            &line,
        );
    }
    report_decision(&cfg, &decision, started);
    Ok(decision.is_success())
}

/// `signoff-agent authorized-keys --config CONFIG USER` after argument parsing; as
/// [`run_principals`].
pub fn run_authorized_keys(
    config_path: &Path,
    account: &str,
    now: u64,
    out: &mut impl Write,
    log: &mut impl Write,
    syslog: Syslog,
) -> Result<bool, CommandError> {
    let started = Instant::now();
    let what = format!("authorized keys for account {account:?}");
    let cfg = match Config::load(config_path) {
        Ok(cfg) => cfg,
        Err(e) => {
            let line = format!("{what}: denied: {}", chain(&e));
            report(
                log,
                syslog.socket(config_path, None),
                Severity::Warning,
                &line,
            );
            return Ok(false);
        }
    };
    let decision = authorized_keys(&cfg, account, now, out)?;
    if decision.should_log() {
        let line = format!("{what}: {decision}");
        report(
            log,
            syslog.socket(config_path, Some(&cfg)),
            decision.severity(),
            &line,
        );
    }
    report_decision(&cfg, &decision, started);
    Ok(decision.is_success())
}

/// Whether the commands' reasons also go to the system log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syslog {
    /// To the agent config's `syslog_socket` (`/dev/log` unless it says otherwise).
    FromConfig,
    /// Only to stderr (unit tests: never the host's real log).
    Off,
}

impl Syslog {
    /// The socket to send to, if any. When the configuration did not load, its
    /// `syslog_socket` is still honoured if the file is TOML at all: the reason a broken
    /// configuration refuses every login is the one an operator most needs to see.
    fn socket(self, config_path: &Path, cfg: Option<&Config>) -> Option<PathBuf> {
        if self == Syslog::Off {
            return None;
        }
        let path = match cfg {
            Some(cfg) => cfg.syslog_socket.clone(),
            None => std::fs::read_to_string(config_path)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
                .and_then(|t| t.get("syslog_socket")?.as_str().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(crate::syslog::DEFAULT_SOCKET)),
        };
        (!path.as_os_str().is_empty()).then_some(path)
    }
}

/// Logs `line` on `log` (stderr) and to the syslog socket. Both are best effort: sshd may
/// have closed our stderr, and no syslog daemon may be listening.
fn report(log: &mut impl Write, socket: Option<PathBuf>, severity: Severity, line: &str) {
    let _ = writeln!(log, "signoff-agent: {line}");
    if let Some(socket) = socket {
        let _ = crate::syslog::send(&socket, severity, crate::syslog::TAG, line);
    }
}

/// Tells the daemon what was decided and how long it took, for the control plane's
/// histogram (`crate::decisions`); best effort, after the answer is written. A
/// configuration that did not load names no socket: that refusal is only logged.
fn report_decision(cfg: &Config, decision: &Decision, started: Instant) {
    if let Some(socket) = &cfg.decisions_socket {
        crate::decisions::report(socket, Outcome::of(decision), started.elapsed());
    }
}

/// `SHA256:` and base64, as sshd prints a fingerprint (`signoff_core::fingerprint`).
fn parse_fingerprint(text: &str) -> Result<[u8; 32], Denial> {
    text.parse::<signoff_core::fingerprint::Sha256Fingerprint>()
        .map(|fp| fp.0)
        .map_err(|e| {
            Denial::BadArgument(format!(
                "fingerprint {text:?}: {e} (sshd's FingerprintHash must be sha256)"
            ))
        })
}

/// The wire blob of an `authorized_keys` line (`[options] TYPE BASE64 [comment]`).
fn key_blob_of_line(line: &str) -> Option<Vec<u8>> {
    let mut words = line.split_ascii_whitespace();
    while let Some(word) = words.next() {
        let is_type = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-"]
            .iter()
            .any(|p| word.starts_with(p))
            && !word.contains('=');
        if is_type {
            return base64::engine::general_purpose::STANDARD
                .decode(words.next()?)
                .ok();
        }
    }
    None
}

/// Lines to print: deduplicated, each checked to be one safe line.
#[derive(Debug, Default)]
struct Lines {
    lines: Vec<String>,
    skipped: usize,
}

impl Lines {
    fn push(&mut self, line: String) {
        if !self.lines.contains(&line) {
            self.lines.push(line);
        }
    }

    /// Principals from the view: ones sshd would misread are left out and counted.
    fn extend_checked(&mut self, principals: Vec<String>) {
        for p in principals {
            if is_valid_principal(&p) {
                self.push(p);
            } else {
                self.skipped += 1;
            }
        }
    }

    /// Principals from the configuration, already validated.
    fn extend_trusted(&mut self, principals: &[&str]) {
        for p in principals {
            self.push((*p).to_owned());
        }
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Writes every line in one write, so that a failure never leaves half an answer.
    fn write_to(&self, out: &mut impl Write) -> Result<(), CommandError> {
        let mut text = String::with_capacity(self.lines.iter().map(|l| l.len() + 1).sum());
        for l in &self.lines {
            text.push_str(l);
            text.push('\n');
        }
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(CommandError::Output)
    }
}

fn is_missing(e: &FormatError) -> bool {
    matches!(e, FormatError::Io(io) if io.kind() == io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BreakGlass;
    use crate::state::State;
    use crate::state::format::sha256;
    use crate::state::tests::{NOW, base64_of, entry, key_blob, sample_view};
    use crate::state::writer::{record_contact, write_state_file};
    use std::fs;
    use tempfile::TempDir;

    struct Host {
        dir: TempDir,
        cfg: Config,
    }

    impl Host {
        /// A host whose state is the sample view, last contact now.
        fn new() -> Host {
            let h = Host::empty();
            h.write(&State::from_snapshot(sample_view()).unwrap());
            record_contact(h.dir.path(), NOW).unwrap();
            h
        }

        /// A host with no state file.
        fn empty() -> Host {
            let dir = tempfile::tempdir().unwrap();
            let cfg = Config {
                state_dir: dir.path().to_owned(),
                ..Config::default()
            };
            Host { dir, cfg }
        }

        fn write(&self, state: &State) {
            write_state_file(&self.dir.path().join(STATE_FILE), state, NOW).unwrap();
        }

        fn break_glass(mut self, account: &str, principals: &[&str]) -> Host {
            self.cfg.break_glass.push(BreakGlass {
                account: account.into(),
                principals: principals.iter().map(|p| (*p).into()).collect(),
            });
            self
        }

        fn strict(mut self, max_secs: u64) -> Host {
            self.cfg.mode = Mode::Strict;
            self.cfg.max_staleness = Duration::from_secs(max_secs);
            self
        }

        fn corrupt(&self) {
            let path = self.dir.path().join(STATE_FILE);
            let mut bytes = fs::read(&path).unwrap();
            bytes[30] ^= 0xff;
            fs::write(&path, bytes).unwrap();
        }

        /// Runs `principals` for a certificate of key `key` signed by CA `ca`.
        fn ask(
            &self,
            account: &str,
            key_id: &str,
            serial: u64,
            ca: u8,
            key: u8,
        ) -> (Decision, String) {
            self.ask_at(account, key_id, serial, ca, key, NOW)
        }

        fn ask_at(
            &self,
            account: &str,
            key_id: &str,
            serial: u64,
            ca: u8,
            key: u8,
            now: u64,
        ) -> (Decision, String) {
            let ca_fp = fingerprint(ca);
            let key_fp = fingerprint(key);
            let serial = serial.to_string();
            let args = PrincipalsArgs {
                account,
                key_id,
                serial: &serial,
                ca_fingerprint: &ca_fp,
                key_fingerprint: &key_fp,
            };
            let mut out = Vec::new();
            let d = principals(&self.cfg, &args, now, &mut out).unwrap();
            let out = String::from_utf8(out).unwrap();
            assert_eq!(d.is_success(), !out.is_empty(), "{d}: {out:?}");
            (d, out)
        }

        fn keys(&self, account: &str) -> (Decision, String) {
            let mut out = Vec::new();
            let d = authorized_keys(&self.cfg, account, NOW, &mut out).unwrap();
            (d, String::from_utf8(out).unwrap())
        }
    }

    fn fingerprint(seed: u8) -> String {
        use base64::Engine as _;
        let fp = key_fingerprint(&key_blob(seed));
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(fp)
        )
    }

    #[test]
    fn granted_prints_the_principals() {
        let h = Host::new();
        let (d, out) = h.ask("root", "alice@corp", 7, 1, 10);
        assert!(matches!(d, Decision::Granted { printed: 2, .. }), "{d}");
        assert_eq!(out, "alice\nadmins\n");
        assert!(!d.should_log());
    }

    #[test]
    fn no_grant_prints_nothing() {
        let h = Host::new();
        let (d, out) = h.ask("root", "nobody@corp", 7, 1, 10);
        assert!(matches!(d, Decision::Denied(Denial::NoGrant)), "{d}");
        assert_eq!(out, "");
        assert!(d.should_log());
        // Alice has no grant for postgres.
        let (d, _) = h.ask("postgres", "alice@corp", 7, 1, 10);
        assert!(matches!(d, Decision::Denied(Denial::NoGrant)), "{d}");
    }

    #[test]
    fn expired_grant_prints_nothing() {
        let h = Host::new();
        let (d, _) = h.ask("root", "carol@corp", 7, 1, 10);
        assert!(matches!(d, Decision::Denied(Denial::GrantExpired)), "{d}");
    }

    #[test]
    fn revoked_certificates_print_nothing() {
        let h = Host::new();
        for (key_id, serial, ca, key, want) in [
            ("mallory@corp", 7, 1, 10, Revoked::KeyId { any_ca: true }),
            ("bob@corp", 7, 1, 11, Revoked::KeyId { any_ca: false }),
            ("alice@corp", 150, 1, 10, Revoked::Serial { any_ca: false }),
            ("alice@corp", 7, 1, 20, Revoked::Key),
            ("alice@corp", 7, 21, 10, Revoked::CaKey),
        ] {
            let (d, out) = h.ask("root", key_id, serial, ca, key);
            assert!(
                matches!(&d, Decision::Denied(Denial::Revoked(r)) if *r == want),
                "{key_id} {serial}: {d}"
            );
            assert_eq!(out, "");
        }
    }

    #[test]
    fn revocation_wins_over_break_glass() {
        let h = Host::new().break_glass("root", &["emergency"]);
        let (d, out) = h.ask("root", "mallory@corp", 7, 1, 10);
        assert!(matches!(d, Decision::Denied(Denial::Revoked(_))), "{d}");
        assert_eq!(out, "");
    }

    #[test]
    fn missing_state_prints_nothing() {
        let h = Host::empty();
        let (d, out) = h.ask("root", "alice@corp", 7, 1, 10);
        assert!(
            matches!(d, Decision::Denied(Denial::StateUnusable { .. })),
            "{d}"
        );
        assert!(d.to_string().contains("state missing"), "{d}");
        assert_eq!(out, "");
    }

    #[test]
    fn corrupt_state_prints_nothing() {
        let h = Host::new();
        h.corrupt();
        let (d, out) = h.ask("root", "alice@corp", 7, 1, 10);
        assert!(
            matches!(d, Decision::Denied(Denial::StateUnusable { .. })),
            "{d}"
        );
        assert!(d.to_string().contains("state corrupt"), "{d}");
        assert_eq!(out, "");
    }

    #[test]
    fn break_glass_with_missing_state() {
        let h = Host::empty().break_glass("root", &["emergency", "oncall"]);
        let (d, out) = h.ask("root", "anyone", 7, 1, 10);
        assert!(matches!(d, Decision::BreakGlass { printed: 2, .. }), "{d}");
        assert_eq!(out, "emergency\noncall\n");
        assert!(d.should_log() && d.to_string().contains("BREAK-GLASS"));
        // Only for its account.
        let (d, out) = h.ask("app", "anyone", 7, 1, 10);
        assert!(matches!(d, Decision::Denied(_)), "{d}");
        assert_eq!(out, "");
    }

    #[test]
    fn break_glass_with_corrupt_state() {
        let h = Host::new().break_glass("root", &["emergency"]);
        h.corrupt();
        let (d, out) = h.ask("root", "alice@corp", 7, 1, 10);
        assert!(matches!(d, Decision::BreakGlass { .. }), "{d}");
        assert_eq!(out, "emergency\n");
    }

    #[test]
    fn break_glass_in_strict_mode_when_stale() {
        let h = Host::new().strict(60).break_glass("root", &["emergency"]);
        let (d, out) = h.ask_at("root", "alice@corp", 7, 1, 10, NOW + 61);
        assert!(
            matches!(
                d,
                Decision::BreakGlass {
                    instead_of: Denial::Stale(_),
                    ..
                }
            ),
            "{d}"
        );
        assert_eq!(out, "emergency\n");
    }

    #[test]
    fn break_glass_adds_to_a_grant_and_stands_in_for_none() {
        let h = Host::new().break_glass("root", &["emergency"]);
        let (d, out) = h.ask("root", "alice@corp", 7, 1, 10);
        assert!(matches!(d, Decision::Granted { printed: 3, .. }), "{d}");
        assert_eq!(out, "alice\nadmins\nemergency\n");
        let (d, out) = h.ask("root", "nobody", 7, 1, 10);
        assert!(
            matches!(
                d,
                Decision::BreakGlass {
                    instead_of: Denial::NoGrant,
                    ..
                }
            ),
            "{d}"
        );
        assert_eq!(out, "emergency\n");
    }

    #[test]
    fn strict_mode_refuses_without_contact() {
        let h = Host::new().strict(3600);
        fs::remove_file(h.dir.path().join(crate::state::CONTACT_FILE)).unwrap();
        let (d, out) = h.ask("root", "alice@corp", 7, 1, 10);
        assert!(
            matches!(d, Decision::Denied(Denial::Stale(Staleness::NoContact(_)))),
            "{d}"
        );
        assert_eq!(out, "");
    }

    #[test]
    fn strict_mode_refuses_an_old_contact() {
        let h = Host::new().strict(3600);
        let (d, _) = h.ask_at("root", "alice@corp", 7, 1, 10, NOW + 3600);
        assert!(matches!(d, Decision::Granted { .. }), "at the limit: {d}");
        let (d, out) = h.ask_at("root", "alice@corp", 7, 1, 10, NOW + 3601);
        assert!(
            matches!(
                d,
                Decision::Denied(Denial::Stale(Staleness::TooOld { age: 3601, .. }))
            ),
            "{d}"
        );
        assert_eq!(out, "");
    }

    #[test]
    fn strict_mode_refuses_a_contact_far_in_the_future() {
        let h = Host::new().strict(60);
        let (d, _) = h.ask_at("root", "alice@corp", 7, 1, 10, NOW - 61);
        assert!(
            matches!(
                d,
                Decision::Denied(Denial::Stale(Staleness::InFuture { .. }))
            ),
            "{d}"
        );
    }

    #[test]
    fn strict_mode_refuses_a_malformed_contact() {
        let h = Host::new().strict(60);
        fs::write(h.dir.path().join(crate::state::CONTACT_FILE), "soon").unwrap();
        let (d, _) = h.ask("root", "alice@corp", 7, 1, 10);
        assert!(matches!(d, Decision::Denied(Denial::Stale(_))), "{d}");
    }

    #[test]
    fn best_effort_answers_when_stale_and_warns() {
        let h = Host::new();
        let (d, out) = h.ask_at("root", "alice@corp", 7, 1, 10, NOW + 7200);
        assert!(
            matches!(&d, Decision::Granted { warnings, .. } if warnings.len() == 1),
            "{d}"
        );
        assert!(d.should_log() && d.to_string().contains("stale"), "{d}");
        assert_eq!(out, "alice\nadmins\n");
    }

    #[test]
    fn bad_arguments_are_refused() {
        let h = Host::new().break_glass("root", &["emergency"]);
        let good = fingerprint(1);
        for (serial, ca_fp) in [
            ("x", good.as_str()),
            ("-1", good.as_str()),
            ("7", "MD5:aa:bb"),
            ("7", "SHA256:tooshort"),
        ] {
            let args = PrincipalsArgs {
                account: "root",
                key_id: "alice@corp",
                serial,
                ca_fingerprint: ca_fp,
                key_fingerprint: &good,
            };
            let mut out = Vec::new();
            let d = principals(&h.cfg, &args, NOW, &mut out).unwrap();
            assert!(matches!(d, Decision::Denied(Denial::BadArgument(_))), "{d}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn unsafe_principals_are_left_out() {
        let h = Host::empty();
        let view = signoff_proto::v1::HostView {
            revision: 1,
            principals: vec![
                entry(
                    "root",
                    "x",
                    &["x@corp"],
                    &["ok", "two words", "#comment", "line\nbreak"],
                ),
                entry("root", "y", &["y@corp"], &["bad one"]),
            ],
            ..Default::default()
        };
        h.write(&State::from_snapshot(view).unwrap());
        let (d, out) = h.ask("root", "x@corp", 7, 1, 10);
        assert_eq!(out, "ok\n");
        assert!(
            matches!(&d, Decision::Granted { warnings, .. } if warnings.len() == 1),
            "{d}"
        );
        let (d, out) = h.ask("root", "y@corp", 7, 1, 10);
        assert!(
            matches!(d, Decision::Denied(Denial::NothingPrintable)),
            "{d}"
        );
        assert_eq!(out, "");
    }

    #[test]
    fn failed_output_is_an_error() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let h = Host::new();
        let ca = fingerprint(1);
        let key = fingerprint(10);
        let args = PrincipalsArgs {
            account: "root",
            key_id: "alice@corp",
            serial: "7",
            ca_fingerprint: &ca,
            key_fingerprint: &key,
        };
        assert!(principals(&h.cfg, &args, NOW, &mut Broken).is_err());
    }

    #[test]
    fn authorized_keys_prints_live_unrevoked_keys() {
        let h = Host::new();
        let (d, out) = h.keys("root");
        assert!(matches!(d, Decision::Granted { printed: 2, .. }), "{d}");
        assert_eq!(out.lines().count(), 2);
        assert!(out.contains("alice@laptop") && out.contains(" bob\n"));

        // Revoke bob's key by SHA-256, alice's by blob: nothing left.
        let mut view = sample_view();
        let r = view.revocations.as_mut().unwrap();
        r.sha256.push(sha256(&key_blob(11)).to_vec());
        r.keys.push(key_blob(10));
        h.write(&State::from_snapshot(view).unwrap());
        let (d, out) = h.keys("root");
        assert!(
            matches!(d, Decision::Denied(Denial::NothingPrintable)),
            "{d}"
        );
        assert_eq!(out, "");

        let (d, _) = h.keys("postgres");
        assert!(matches!(d, Decision::Denied(Denial::NoGrant)), "{d}");
    }

    #[test]
    fn authorized_keys_fails_closed() {
        let h = Host::empty();
        let (d, out) = h.keys("root");
        assert!(
            matches!(d, Decision::Denied(Denial::StateUnusable { .. })),
            "{d}"
        );
        assert_eq!(out, "");
        let h = Host::new().strict(60);
        fs::remove_file(h.dir.path().join(crate::state::CONTACT_FILE)).unwrap();
        let (d, _) = h.keys("root");
        assert!(matches!(d, Decision::Denied(Denial::Stale(_))), "{d}");
    }

    #[test]
    fn run_principals_logs_refusals_and_not_grants() {
        let h = Host::new();
        let cfg_path = h.dir.path().join("agent.toml");
        fs::write(
            &cfg_path,
            format!("state_dir = {:?}\n", h.dir.path().display().to_string()),
        )
        .unwrap();
        let (ca, key) = (fingerprint(1), fingerprint(10));
        let run = |key_id: &str| {
            let (mut out, mut log) = (Vec::new(), Vec::new());
            let ok = run_principals(
                &cfg_path,
                ["root", key_id, "7", &ca, &key],
                NOW,
                &mut out,
                &mut log,
                Syslog::Off,
            )
            .unwrap();
            (
                ok,
                String::from_utf8(out).unwrap(),
                String::from_utf8(log).unwrap(),
            )
        };
        assert_eq!(
            run("alice@corp"),
            (true, "alice\nadmins\n".into(), String::new())
        );
        let (ok, out, log) = run("mallory@corp");
        assert!(!ok && out.is_empty());
        assert!(
            log.contains("key ID \"mallory@corp\"") && log.contains("denied: revoked"),
            "{log}"
        );

        // A configuration that cannot be loaded refuses.
        fs::write(&cfg_path, "mode = \"yolo\"\n").unwrap();
        let (ok, out, log) = run("alice@corp");
        assert!(!ok && out.is_empty());
        assert!(log.contains("denied: invalid configuration file"), "{log}");
    }

    #[test]
    fn run_authorized_keys_prints_keys() {
        let h = Host::new();
        let cfg_path = h.dir.path().join("agent.toml");
        fs::write(
            &cfg_path,
            format!("state_dir = {:?}\n", h.dir.path().display().to_string()),
        )
        .unwrap();
        let (mut out, mut log) = (Vec::new(), Vec::new());
        assert!(
            run_authorized_keys(&cfg_path, "root", NOW, &mut out, &mut log, Syslog::Off).unwrap()
        );
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
        assert!(log.is_empty());
    }

    #[test]
    fn key_blob_of_line_handles_options() {
        let b64 = base64_of(&key_blob(10));
        for line in [
            format!("ssh-ed25519 {b64}"),
            format!("ssh-ed25519 {b64} comment here"),
            format!("from=\"10.0.0.0/8\",no-pty ssh-ed25519 {b64} c"),
        ] {
            assert_eq!(key_blob_of_line(&line), Some(key_blob(10)), "{line}");
        }
        assert_eq!(key_blob_of_line("garbage"), None);
        assert_eq!(key_blob_of_line("ssh-ed25519 !!!"), None);
    }
}
