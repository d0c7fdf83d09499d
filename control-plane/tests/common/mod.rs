//! Runs the real `signoff-server` binary against a private data directory.
#![allow(dead_code)]
// Test helpers: a failure here is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;

/// How long any wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A private place for one server: a temporary directory with a config file in it.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub config: PathBuf,
    pub data_dir: PathBuf,
}

impl Env {
    /// A config with the data directory inside the temporary directory, both listeners
    /// on free loopback ports, and `extra` appended (top-level keys only before tables).
    pub fn new(top: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let config = tmp.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n{top}\n[http]\nlisten = \"127.0.0.1:0\"\n[agents]\nlisten = \"127.0.0.1:0\"\n",
                data_dir.display().to_string()
            ),
        )
        .unwrap();
        Env {
            tmp,
            config,
            data_dir,
        }
    }

    /// The binary with `--config` and a known `$USER`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_signoff-server"));
        cmd.arg("--config")
            .arg(&self.config)
            .env("USER", "tester")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs an admin command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs an admin command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs an admin command with `--json` that must succeed; parses its output.
    pub fn json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// Starts `serve` and waits until it listens.
    pub fn serve(&self) -> Running {
        Running::start(self.command().arg("serve"))
    }

    /// The SQLite file.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("signoff.db")
    }
}

/// A running `signoff-server serve`, killed if dropped before [`Running::wait`] (a test
/// that fails midway leaves no server behind).
pub struct Running {
    pub pid: Pid,
    /// Where it listens for HTTP.
    pub addr: SocketAddr,
    exited: mpsc::Receiver<ExitStatus>,
    output: Option<(thread::JoinHandle<String>, thread::JoinHandle<Vec<String>>)>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Not once it has exited and been reaped: the pid could be someone else's.
        if self.output.is_some() && self.exited.try_recv().is_err() {
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }
}

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let mut child: Child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let mut out = child.stdout.take().unwrap();
        let stdout = thread::spawn(move || {
            let mut s = String::new();
            out.read_to_string(&mut s).unwrap();
            s
        });
        let err = child.stderr.take().unwrap();
        let (line_tx, line_rx) = mpsc::channel::<String>();
        let stderr = thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(err).lines() {
                let line = line.unwrap();
                let _ = line_tx.send(line.clone());
                lines.push(line);
            }
            lines
        });
        let (exit_tx, exited) = mpsc::channel();
        thread::spawn(move || {
            let status = child.wait().unwrap();
            let _ = exit_tx.send(status);
        });

        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find("listening for HTTP on http://") {
                        let url = &line[at + "listening for HTTP on http://".len()..];
                        break url.trim().parse::<SocketAddr>().unwrap();
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = kill(pid, Signal::SIGKILL);
                    panic!("the server did not start listening; stderr: {seen:#?}");
                }
            }
        };
        Running {
            pid,
            addr,
            exited,
            output: Some((stdout, stderr)),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid, signal).unwrap();
    }

    /// Waits for the process to exit within `within`; returns its status, stdout and
    /// stderr lines.
    pub fn wait(mut self, within: Duration) -> (ExitStatus, String, Vec<String>) {
        let Ok(status) = self.exited.recv_timeout(within) else {
            panic!("the server did not exit within {within:?}"); // Drop kills it.
        };
        let (stdout, stderr) = self.output.take().unwrap();
        (status, stdout.join().unwrap(), stderr.join().unwrap())
    }
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sets a file's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
