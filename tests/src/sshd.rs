//! A real `sshd` on a loopback port, and the real `ssh` client to log in to it.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tempfile::TempDir;

use crate::command::run_with_deadline;
use crate::keys::{KeyPair, KeyType};
use crate::plane::wait_for;
use crate::tools::{SSH, SSHD};

/// sshd's privilege-separation directory; sshd refuses to start without it.
const PRIVSEP_DIR: &str = "/run/sshd";
/// How long sshd may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How many fresh ports to try when another process takes ours first.
const PORT_ATTEMPTS: usize = 5;
/// How long one `ssh` login may take before it counts as hung.
const LOGIN_DEADLINE: Duration = Duration::from_secs(60);

/// What an sshd under test trusts and refuses.
#[derive(Debug, Clone)]
pub struct SshdConfig {
    /// `TrustedUserCAKeys`.
    pub trusted_user_ca_keys: PathBuf,
    /// `RevokedKeys`.
    pub revoked_keys: PathBuf,
}

/// How sshd writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    /// `-e`: to its stderr, which goes to the log file with its stdout (and the stderr of
    /// the commands it runs).
    Stderr,
    /// `-E FILE`: sshd writes the file itself, as deployed with a log file; stdout and
    /// stderr go nowhere.
    File,
}

/// Everything about an sshd under test beyond the lines every one has.
///
/// Every sshd the harness starts listens on 127.0.0.1 on a free port, has its own
/// Ed25519 host key and config in a temporary directory, admits certificates signed by
/// `TrustedUserCAKeys` for any account including root (`PermitRootLogin yes`), reads no
/// authorized_keys files, offers public keys only, and logs at `VERBOSE`.
#[derive(Debug, Clone)]
pub struct SshdSpec {
    /// `TrustedUserCAKeys`.
    pub trusted_user_ca_keys: PathBuf,
    /// `RevokedKeys`, if any.
    pub revoked_keys: Option<PathBuf>,
    /// `UsePAM yes` (so that `pam_loginuid` gives each login its audit session id).
    pub use_pam: bool,
    /// A `PidFile` in its directory (else `PidFile none`).
    pub pid_file: bool,
    /// Where its log goes.
    pub log_to: LogTo,
    /// Lines appended to the config (commands, `MaxStartups`, …).
    pub extra: String,
    /// The temporary directory's name prefix.
    pub dir_prefix: &'static str,
}

impl SshdSpec {
    /// An sshd without PAM, logging to stderr, trusting `ca`.
    pub fn new(ca: &Path) -> SshdSpec {
        SshdSpec {
            trusted_user_ca_keys: ca.to_owned(),
            revoked_keys: None,
            use_pam: false,
            pid_file: false,
            log_to: LogTo::Stderr,
            extra: String::new(),
            dir_prefix: "signoff-sshd-",
        }
    }

    fn config_text(&self, host_key: &Path, pid_file: Option<&Path>) -> String {
        let mut text = format!(
            "ListenAddress 127.0.0.1\n\
             HostKey {host_key}\n\
             PidFile {pid_file}\n\
             UsePAM {pam}\n\
             StrictModes no\n\
             PermitRootLogin yes\n\
             AuthorizedKeysFile none\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             TrustedUserCAKeys {ca}\n\
             LogLevel VERBOSE\n",
            host_key = host_key.display(),
            pid_file = pid_file.map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
            pam = if self.use_pam { "yes" } else { "no" },
            ca = self.trusted_user_ca_keys.display(),
        );
        if let Some(krl) = &self.revoked_keys {
            text.push_str(&format!("RevokedKeys {}\n", krl.display()));
        }
        text.push_str(&self.extra);
        text.push('\n');
        text
    }
}

/// A running `/usr/sbin/sshd -D` on 127.0.0.1 as [`SshdSpec`] describes; killed on drop.
/// The one sshd launcher of the harness: [`crate::sessions::PamSshd`] and
/// [`crate::principals::PrincipalsSshd`] are this with their own lines.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
    pid_file: Option<PathBuf>,
    dir: TempDir,
}

impl Sshd {
    /// Starts sshd trusting and refusing what `config` says, logging to stderr.
    pub fn start(config: &SshdConfig) -> Result<Sshd> {
        Sshd::launch(&SshdSpec {
            revoked_keys: Some(config.revoked_keys.clone()),
            ..SshdSpec::new(&config.trusted_user_ca_keys)
        })
    }

    /// Starts sshd as `spec` says and waits until its port accepts connections; tries a
    /// few fresh ports when another process takes one first.
    pub fn launch(spec: &SshdSpec) -> Result<Sshd> {
        let sshd = SSHD.path()?;
        ensure_privsep_dir()?;
        let dir = tempfile::Builder::new().prefix(spec.dir_prefix).tempdir()?;
        let host_key = KeyPair::generate(dir.path(), "ssh_host_ed25519_key", KeyType::Ed25519)?;
        let config_path = dir.path().join("sshd_config");
        let pid_file = spec.pid_file.then(|| dir.path().join("sshd.pid"));
        fs::write(
            &config_path,
            spec.config_text(&host_key.private, pid_file.as_deref()),
        )?;

        let mut last_log = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port()?;
            let log = dir.path().join(format!("sshd-{attempt}.log"));
            let log_file = File::create(&log)?;
            let mut cmd = Command::new(sshd);
            match spec.log_to {
                LogTo::Stderr => {
                    cmd.args(["-D", "-e"])
                        .stdout(log_file.try_clone()?)
                        .stderr(log_file);
                }
                LogTo::File => {
                    cmd.args(["-D", "-E"])
                        .arg(&log)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                }
            }
            let mut child = cmd
                .arg("-f")
                .arg(&config_path)
                .args(["-p", &port.to_string()])
                .stdin(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", sshd.display()))?;
            match wait_listening(&mut child, port, &log) {
                Ok(true) => {
                    return Ok(Sshd {
                        child,
                        port,
                        log,
                        pid_file,
                        dir,
                    });
                }
                Ok(false) => last_log = read_log(&log),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            }
        }
        bail!("sshd could not bind a free port in {PORT_ATTEMPTS} attempts; last log:\n{last_log}")
    }

    /// The loopback port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listener's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file (`-e`'s stderr, or `-E`'s file).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its `PidFile` (the spec asked for one), else `None`.
    pub fn pid_file(&self) -> Option<&Path> {
        self.pid_file.as_deref()
    }

    /// A scratch directory removed with the sshd.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything sshd has logged so far (with `LogLevel VERBOSE`).
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Waits until sshd's log contains `needle`, or fails with the log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for_log_count(needle, 1, timeout)
    }

    /// Waits until sshd's log contains `needle` at least `count` times.
    pub fn wait_for_log_count(
        &self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<String> {
        wait_for(
            format!("sshd logging {needle:?} {count} times"),
            timeout,
            || {
                let text = self.log();
                Ok((text.matches(needle).count() >= count).then_some(text))
            },
        )
        .map_err(|e| anyhow!("{e}; its log:\n{}", self.log()))
    }

    /// Logs in as `user` with `key` and its certificate `cert`, running `true`.
    pub fn login(&self, user: &str, key: &Path, cert: &Path) -> Result<Login> {
        ssh_login(self.port, user, key, cert)
    }

    /// Logs in as `user` with the plain key `key` (no certificate), running `true`.
    pub fn login_with_plain_key(&self, user: &str, key: &Path) -> Result<Login> {
        ssh_login_plain_key(self.port, user, key)
    }

    /// Kills the listener and reaps it (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ensure_privsep_dir() -> Result<()> {
    if Path::new(PRIVSEP_DIR).is_dir() {
        return Ok(());
    }
    fs::create_dir_all(PRIVSEP_DIR).with_context(|| {
        format!("creating {PRIVSEP_DIR}, sshd's privilege-separation directory (run as root)")
    })
}

/// A port that was free a moment ago: bind 127.0.0.1:0, read the port, let it go.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Waits until sshd accepts connections on `port` (`Ok(true)`), or exits because the
/// port was taken (`Ok(false)`); any other exit or the deadline is an error.
pub(crate) fn wait_listening(child: &mut Child, port: u16, log: &Path) -> Result<bool> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_DEADLINE;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(status) = child.try_wait()? {
            let text = read_log(log);
            if text.contains("Address already in use") || text.contains("Cannot bind any address") {
                return Ok(false);
            }
            bail!("sshd exited ({status}) before listening on port {port}:\n{text}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "sshd did not listen on port {port} within {START_DEADLINE:?}:\n{}",
                read_log(log)
            );
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// An sshd log (`-E FILE`), empty if it cannot be read.
pub(crate) fn read_log(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The result of one `ssh` login.
#[derive(Debug, Clone)]
pub struct Login {
    /// Whether ssh exited 0 (authenticated and ran `true`).
    pub success: bool,
    /// ssh's exit code (255 for a connection or authentication failure).
    pub code: Option<i32>,
    /// What ssh printed on stderr.
    pub stderr: String,
}

/// Runs the real client:
/// `ssh -i KEY -o CertificateFile=CERT -o BatchMode=yes … -p PORT USER@127.0.0.1 true`,
/// with no user config, agent or known_hosts.
pub fn ssh_login(port: u16, user: &str, key: &Path, cert: &Path) -> Result<Login> {
    login_with(port, user, key, Some(cert))
}

/// As [`ssh_login`] without `CertificateFile`: the plain key alone (ssh would still offer
/// `KEY-cert.pub` if that file existed).
pub fn ssh_login_plain_key(port: u16, user: &str, key: &Path) -> Result<Login> {
    login_with(port, user, key, None)
}

/// The real client, ready to log in to 127.0.0.1:`port` with `key` (and `cert`) alone:
/// no user config, agent, known_hosts or prompts. The caller adds the log level, then
/// `USER@127.0.0.1` and the command. The one set of client options of every test.
pub fn ssh_command(port: u16, key: &Path, cert: Option<&Path>) -> Result<Command> {
    let mut cmd = SSH.command()?;
    cmd.args(["-F", "/dev/null", "-i"]).arg(key);
    if let Some(cert) = cert {
        cmd.arg("-o")
            .arg(format!("CertificateFile={}", cert.display()));
    }
    cmd.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "ConnectTimeout=20",
        "-p",
        &port.to_string(),
    ]);
    Ok(cmd)
}

fn login_with(port: u16, user: &str, key: &Path, cert: Option<&Path>) -> Result<Login> {
    let mut cmd = ssh_command(port, key, cert)?;
    cmd.args(["-o", "LogLevel=ERROR", &format!("{user}@127.0.0.1"), "true"]);
    let out = run_with_deadline(&mut cmd, LOGIN_DEADLINE)?;
    Ok(Login {
        success: out.success(),
        code: out.code(),
        stderr: out.stderr,
    })
}
