//! Harness for the session watcher and kills: a real sshd with `UsePAM yes` (so that
//! `pam_loginuid` gives each login its kernel audit session id, as on a real host), logging
//! to a file of its own with `-E`; a non-root test account; and real `ssh` clients that
//! stay connected in the background.
//!
//! Everything cleans up after itself: a [`PamSshd`] kills, on drop, its listener and every
//! process of every login it served (by their audit session ids, which it collects from
//! its connection processes while they live and from [`PamSshd::track`]); an [`SshClient`]
//! kills its `ssh`.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use signoff_agent::sessions::procfs::{ProcessRef, Procfs};

use crate::command::{run, wait_until};
use crate::plane::wait_for;
use crate::sshd::{LogTo, Sshd, SshdSpec};

/// The non-root account the tests log in to.
pub const TEST_ACCOUNT: &str = "signoff-test";

/// Creates [`TEST_ACCOUNT`] (home directory, `/bin/bash`) unless it exists.
pub fn ensure_test_account() -> Result<()> {
    if run(Command::new("id").arg(TEST_ACCOUNT))?.success() {
        return Ok(());
    }
    let out =
        run(Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", TEST_ACCOUNT]))?;
    // Another test process may have created it meanwhile (useradd exits 9).
    if !out.success() && !run(Command::new("id").arg(TEST_ACCOUNT))?.success() {
        bail!(
            "useradd {TEST_ACCOUNT} failed (run as root): {}",
            out.stderr
        );
    }
    Ok(())
}

/// A running `sshd -D -E LOG` on 127.0.0.1 with `UsePAM yes` and a `PidFile`, trusting one
/// user CA: an [`Sshd`] (it derefs to it) that also ends, on drop, every process of every
/// login it served.
#[derive(Debug)]
pub struct PamSshd {
    sshd: Sshd,
    pid_file: PathBuf,
    tracked: Mutex<BTreeSet<u32>>,
}

/// The listener's port, PID, log and scratch directory are [`Sshd`]'s.
impl std::ops::Deref for PamSshd {
    type Target = Sshd;

    fn deref(&self) -> &Sshd {
        &self.sshd
    }
}

impl PamSshd {
    /// Starts sshd trusting user CA `ca_pub` and waits until it listens.
    pub fn start(ca_pub: &Path) -> Result<PamSshd> {
        PamSshd::start_with(ca_pub, "")
    }

    /// [`PamSshd::start`] with `extra` lines appended to its `sshd_config` (an
    /// `AuthorizedPrincipalsCommand` and `RevokedKeys`, say).
    pub fn start_with(ca_pub: &Path, extra: &str) -> Result<PamSshd> {
        if !Path::new("/etc/pam.d/sshd").is_file() {
            bail!(
                "/etc/pam.d/sshd is missing: install openssh-server (it ships sshd's PAM service)"
            );
        }
        let sshd = Sshd::launch(&SshdSpec {
            use_pam: true,
            pid_file: true,
            log_to: LogTo::File,
            extra: extra.to_owned(),
            dir_prefix: "signoff-pam-sshd-",
            ..SshdSpec::new(ca_pub)
        })?;
        let pid_file = sshd
            .pid_file()
            .context("the harness started sshd without the PidFile asked for")?
            .to_owned();
        Ok(PamSshd {
            sshd,
            pid_file,
            tracked: Mutex::new(BTreeSet::new()),
        })
    }

    /// Its `PidFile`.
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// Remembers a login's audit session id, so that its processes are killed on drop even
    /// after its connection ended.
    pub fn track(&self, audit_session: u32) {
        self.tracked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(audit_session);
    }

    /// The audit session ids of the logins it serves now.
    fn live_audit_sessions(&self) -> Vec<u32> {
        let p = Procfs::default();
        let Ok(table) = p.table() else {
            return Vec::new();
        };
        let listener = table.procs.get(&self.pid()).and_then(|i| i.audit_session);
        table
            .procs
            .values()
            .filter(|i| i.stat.ppid == self.pid())
            .filter_map(|i| i.audit_session)
            .filter(|id| Some(*id) != listener)
            .collect()
    }
}

impl Drop for PamSshd {
    fn drop(&mut self) {
        let mut audit: BTreeSet<u32> = self
            .tracked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        audit.extend(self.live_audit_sessions());
        let listener = Procfs::default()
            .stat(self.pid())
            .map(|s| s.process_ref())
            .ok();
        // The connection processes first (the listener's tree), then the listener.
        if let Some(listener) = listener {
            let tree: Vec<ProcessRef> = Procfs::default()
                .table()
                .map(|t| t.descendants(listener))
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.pid != listener.pid)
                .collect();
            kill_all(&tree);
        }
        self.sshd.stop();
        kill_audit_sessions(&audit);
    }
}

/// SIGKILLs every process with one of the audit session ids, until none is left (a few
/// seconds at most).
pub fn kill_audit_sessions(ids: &BTreeSet<u32>) {
    if ids.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_of(ids);
        if left.is_empty() || Instant::now() >= deadline {
            return;
        }
        kill_all(&left);
        thread::sleep(Duration::from_millis(10));
    }
}

/// Live (not zombie) processes with one of the audit session ids, never this one.
pub fn processes_of(ids: &BTreeSet<u32>) -> Vec<ProcessRef> {
    let me = std::process::id();
    Procfs::default()
        .table()
        .map(|t| {
            t.procs
                .values()
                .filter(|i| i.audit_session.is_some_and(|id| ids.contains(&id)))
                .filter(|i| !i.stat.is_dead() && i.stat.pid != me && i.stat.pid > 1)
                .map(|i| i.stat.process_ref())
                .collect()
        })
        .unwrap_or_default()
}

fn kill_all(processes: &[ProcessRef]) {
    let p = Procfs::default();
    let pids: Vec<String> = processes
        .iter()
        .filter(|r| p.is_alive(**r))
        .map(|r| r.pid.to_string())
        .collect();
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
    }
}

/// How an [`SshClient`] connects.
#[derive(Debug, Clone)]
pub struct ClientOptions<'a> {
    /// `-tt`: a pty even without a terminal on stdin.
    pub pty: bool,
    /// The remote command.
    pub command: &'a str,
    /// `-v`, so that [`SshClient::authenticated_at`] can tell when authentication ended.
    pub verbose: bool,
}

/// A real `ssh` client running in the background; killed on drop.
#[derive(Debug)]
pub struct SshClient {
    child: Child,
    stderr: Arc<Mutex<Vec<(Instant, String)>>>,
    reader: Option<thread::JoinHandle<()>>,
    /// When it was started.
    pub started: Instant,
}

impl SshClient {
    /// `ssh -i KEY -o CertificateFile=CERT … -p PORT USER@127.0.0.1 COMMAND`, with no user
    /// config, agent or known_hosts, stdin closed.
    pub fn spawn(
        port: u16,
        user: &str,
        key: &Path,
        cert: &Path,
        options: &ClientOptions<'_>,
    ) -> Result<SshClient> {
        Self::start(port, user, key, Some(cert), options)
    }

    /// [`SshClient::spawn`] offering the plain key alone, no certificate (a login through
    /// `AuthorizedKeysCommand`).
    pub fn spawn_plain_key(
        port: u16,
        user: &str,
        key: &Path,
        options: &ClientOptions<'_>,
    ) -> Result<SshClient> {
        Self::start(port, user, key, None, options)
    }

    fn start(
        port: u16,
        user: &str,
        key: &Path,
        cert: Option<&Path>,
        options: &ClientOptions<'_>,
    ) -> Result<SshClient> {
        let mut cmd = crate::sshd::ssh_command(port, key, cert)?;
        if options.verbose {
            cmd.arg("-v");
        } else {
            cmd.args(["-o", "LogLevel=ERROR"]);
        }
        if options.pty {
            cmd.arg("-tt");
        }
        cmd.arg(format!("{user}@127.0.0.1")).arg(options.command);
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ssh")?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let reader = child.stderr.take().map(|pipe| {
            let lines = Arc::clone(&stderr);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    lines
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((Instant::now(), line));
                }
            })
        });
        Ok(SshClient {
            child,
            stderr,
            reader,
            started,
        })
    }

    /// The client's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }

    /// When the verbose client printed `Authenticated to …`.
    pub fn authenticated_at(&self) -> Option<Instant> {
        self.stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(_, l)| l.contains("Authenticated to "))
            .map(|(t, _)| *t)
    }

    /// The local end of its connection to `server_port`, once connected.
    pub fn local_addr(&self, server_port: u16, timeout: Duration) -> Result<SocketAddr> {
        let p = Procfs::default();
        wait_for(
            format!("ssh (pid {}) connected to port {server_port}", self.pid()),
            timeout,
            || {
                let (Ok(inodes), Ok(sockets)) =
                    (p.socket_inodes(self.pid()), p.tcp_sockets(self.pid()))
                else {
                    return Ok(None);
                };
                Ok(sockets
                    .iter()
                    .find(|s| inodes.contains(&s.inode) && s.remote.port() == server_port)
                    .map(|s| s.local))
            },
        )
        .map_err(|e| anyhow!("{e}; ssh's stderr:\n{}", self.stderr()))
    }

    /// Waits for the client to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        Ok(wait_until(&mut self.child, Instant::now() + timeout)?)
    }

    /// Makes the client exit (SIGTERM, as when a user closes it) and reaps it.
    pub fn exit(&mut self) -> Result<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        match self.wait_exit(Duration::from_secs(10))? {
            Some(status) => Ok(status),
            None => {
                self.child.kill()?;
                Ok(self.child.wait()?)
            }
        }
    }
}

impl Drop for SshClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// p50 and p99 (nearest rank) of `samples`.
pub fn percentiles(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = |q: f64| {
        let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(i).copied().unwrap_or_default()
    };
    (rank(0.50), rank(0.99))
}
