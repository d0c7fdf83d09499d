//! A real control plane and real agents: `signoff-server serve` in a private data directory
//! (with its admin CLI and its HTTP API), and `signoff-agent enroll` / `run` as child
//! processes. Every process is killed on drop, so a test that fails midway leaves none
//! behind.
//!
//! - [`ControlPlane`]: the server on a free loopback port, an API token for it, the admin
//!   CLI against its store, and [`ControlPlane::revision`] to know what agents must reach.
//! - [`Agent`]: a state directory (readable by the principals command's user), enrollment
//!   with a join token, the daemon started, stopped or killed at will, and what it has on
//!   disk: the applied revision of its host view and its KRL.
//! - [`wait_for`]: polls a condition until a deadline instead of sleeping.

use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use signoff_agent::state::StateFile;
use signoff_agent::state::writer::STATE_FILE;
use signoff_control_plane::bootstrap;
use signoff_proto::krl::Krl;
use tempfile::TempDir;

use crate::agent::{Profile, agent_binary, build, release_agent_binary, target_dir};
use crate::command::{Finished, run, run_ok, wait_until};
use crate::principals::HostDir;
use crate::sshd::free_port;

/// The files in a server's data directory that every replica on one database must share
/// (the control plane's README, "Several servers on one PostgreSQL database"): the agent
/// CA, the order key, the user and host CAs and the certificate listener's host key. Not
/// `replica-id`, nor the SQLite database.
pub const SERVER_KEY_FILES: [&str; 10] = [
    bootstrap::AGENT_CA_KEY,
    bootstrap::AGENT_CA_CERT,
    bootstrap::ORDER_SIGNING_KEY,
    bootstrap::ORDER_SIGNING_PUB,
    bootstrap::USER_CA_KEY,
    bootstrap::USER_CA_PUB,
    bootstrap::HOST_CA_KEY,
    bootstrap::HOST_CA_PUB,
    bootstrap::CERT_SSH_HOST_KEY,
    bootstrap::CERT_SSH_HOST_PUB,
];
/// How long any condition in these tests may take to come true.
pub const WAIT: Duration = Duration::from_secs(20);
/// How many fresh agent ports to try when another process takes ours first.
const PORT_ATTEMPTS: usize = 5;
/// The log line that tells the HTTP address (port 0 in the config).
const HTTP_LISTENING: &str = "listening for HTTP on http://";
/// The log line that says the agent listener is up.
const AGENTS_LISTENING: &str = "listening for agents on https://";

/// Polls `probe` (quickly at first, then every 20 ms) until it returns `Some`, and returns
/// that; fails naming `what` once `timeout` has passed. An error from `probe` ends the wait.
pub fn wait_for<T>(
    what: impl Display,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("{what}: not true within {timeout:?}");
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The `signoff-server` binary of `profile`: `SIGNOFF_SERVER_BIN` if set, else the one
/// that locating the agent builds (`cargo build --workspace --bins`, once per process).
/// With `SIGNOFF_AGENT_BIN` set that build is skipped: the server already in the target
/// directory is used, and built only if missing.
pub fn server_binary(profile: Profile) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SIGNOFF_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("SIGNOFF_SERVER_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let dir = match profile {
        Profile::Debug => {
            // Building the agent builds every binary of the workspace.
            agent_binary()?;
            "debug"
        }
        Profile::Release => {
            release_agent_binary()?;
            "release"
        }
    };
    let bin = target_dir().join(dir).join("signoff-server");
    if !bin.is_file() {
        // SIGNOFF_AGENT_BIN skipped the build: build once here.
        static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        BUILT
            .get_or_init(|| build(profile).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("{e}"))?;
    }
    if !bin.is_file() {
        bail!("{} does not exist after the build", bin.display());
    }
    Ok(bin)
}

/// A child process, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
struct Process {
    child: Child,
}

impl Process {
    fn pid(&self) -> Result<Pid> {
        Ok(Pid::from_raw(i32::try_from(self.child.id())?))
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    fn terminate(mut self, timeout: Duration) -> Result<ExitStatus> {
        kill(self.pid()?, Signal::SIGTERM).context("sending SIGTERM")?;
        match wait_until(&mut self.child, Instant::now() + timeout)? {
            Some(status) => Ok(status),
            None => bail!("did not exit within {timeout:?} of SIGTERM (killed it)"),
        }
    }

    /// SIGKILL, and reap.
    fn kill(mut self) -> Result<ExitStatus> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    fn exited(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_text(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A join token as `signoff-server token create --json` prints it.
#[derive(Debug, Clone)]
pub struct JoinToken {
    /// `--token`.
    pub secret: String,
    /// `--server`.
    pub server: String,
    /// `--ca-pin`.
    pub ca_pin: String,
}

/// An HTTP response: status code and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, decoded lossily.
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("HTTP {} body is not JSON: {}", self.status, self.body))
    }
}

/// A running `signoff-server serve` with its own data directory and config: HTTP on
/// 127.0.0.1 port 0, agents on a free loopback port chosen beforehand (agents must know
/// it: `token create` prints it). Killed on drop unless [`ControlPlane::stop`]ped.
#[derive(Debug)]
pub struct ControlPlane {
    bin: PathBuf,
    dir: TempDir,
    config: PathBuf,
    log: PathBuf,
    http: SocketAddr,
    agent_port: u16,
    api_token: String,
    server: Option<Process>,
}

impl ControlPlane {
    /// Starts the debug server, waits until both listeners are up, and makes an API token
    /// with scopes read and write.
    pub fn start() -> Result<ControlPlane> {
        ControlPlane::start_with(&server_binary(Profile::Debug)?)
    }

    /// [`ControlPlane::start`] with the server binary `bin`.
    pub fn start_with(bin: &Path) -> Result<ControlPlane> {
        ControlPlane::start_configured(bin, None, None)
    }

    /// A replica on the PostgreSQL database `database_url` (`postgres://…`): its own data
    /// directory, config and ports, and, when `keys_from` is given, a copy of that
    /// replica's keys ([`SERVER_KEY_FILES`]) made before its first start, as the control
    /// plane's README asks; never its `replica-id`. The first replica has no `keys_from`.
    pub fn start_replica(
        bin: &Path,
        database_url: &str,
        keys_from: Option<&ControlPlane>,
    ) -> Result<ControlPlane> {
        ControlPlane::start_configured(bin, Some(database_url), keys_from)
    }

    fn start_configured(
        bin: &Path,
        database_url: Option<&str>,
        keys_from: Option<&ControlPlane>,
    ) -> Result<ControlPlane> {
        let dir = tempfile::Builder::new()
            .prefix("signoff-plane-")
            .tempdir()?;
        if let Some(first) = keys_from {
            let data = dir.path().join("data");
            fs::create_dir_all(&data)?;
            let mut copied = 0;
            for name in SERVER_KEY_FILES {
                let from = first.data_dir().join(name);
                if from.exists() {
                    fs::copy(&from, data.join(name))
                        .with_context(|| format!("copying {}", from.display()))?;
                    copied += 1;
                }
            }
            if copied == 0 {
                bail!(
                    "{} holds none of the server's keys",
                    first.data_dir().display()
                );
            }
        }
        let database = database_url
            .map(|url| format!("database_url = {url:?}\n"))
            .unwrap_or_default();
        let config = dir.path().join("server.toml");
        let mut last_log = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            let agent_port = free_port()?;
            fs::write(
                &config,
                format!(
                    "data_dir = {:?}\n{database}drain_timeout = \"5s\"\n\
                     [http]\nlisten = \"127.0.0.1:0\"\n\
                     [agents]\nlisten = \"127.0.0.1:{agent_port}\"\n\
                     server_names = [\"localhost\"]\n",
                    dir.path().join("data").display().to_string(),
                ),
            )?;
            let log = dir.path().join(format!("server-{attempt}.log"));
            let stdout = File::create(dir.path().join(format!("first-start-{attempt}.txt")))?;
            let child = Command::new(bin)
                .arg("--config")
                .arg(&config)
                .arg("serve")
                .env("RUST_LOG", "info")
                .env("USER", "e2e")
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(File::create(&log)?)
                .spawn()
                .with_context(|| format!("starting {} serve", bin.display()))?;
            let mut process = Process { child };
            match wait_listening(&mut process, &log)? {
                Some(http) => {
                    let mut plane = ControlPlane {
                        bin: bin.to_owned(),
                        dir,
                        config,
                        log,
                        http,
                        agent_port,
                        api_token: String::new(),
                        server: Some(process),
                    };
                    let token =
                        plane.cli_json(&["api-token", "create", "e2e", "--scope", "read,write"])?;
                    plane.api_token = token["secret"]
                        .as_str()
                        .ok_or_else(|| anyhow!("api-token create printed no secret: {token}"))?
                        .to_owned();
                    return Ok(plane);
                }
                // Most likely the agent port was taken meanwhile: try another.
                None => last_log = read_text(&log),
            }
        }
        bail!("signoff-server did not start in {PORT_ATTEMPTS} attempts; last log:\n{last_log}")
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The agent listener's port.
    pub fn agent_port(&self) -> u16 {
        self.agent_port
    }

    /// The server's config file (for the admin CLI).
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the server has logged (stderr).
    pub fn log(&self) -> String {
        read_text(&self.log)
    }

    /// Runs the admin CLI `signoff-server --config CONFIG ARGS…` to completion.
    pub fn cli_run(&self, args: &[&str]) -> Result<Finished> {
        run(Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("USER", "e2e"))
    }

    /// Runs an admin command that must succeed.
    pub fn cli(&self, args: &[&str]) -> Result<Finished> {
        self.cli_run(args)?.ok()
    }

    /// Runs an admin command with `--json` that must succeed, and parses what it prints.
    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all)?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("`{}` printed no JSON: {}", out.command, out.stdout))
    }

    /// Creates an API token named `name` with `scopes` (comma-separated) through the CLI;
    /// returns its secret.
    pub fn token(&self, name: &str, scopes: &str) -> Result<String> {
        let token = self.cli_json(&["api-token", "create", name, "--scope", scopes])?;
        Ok(token["secret"]
            .as_str()
            .ok_or_else(|| anyhow!("no secret in {token}"))?
            .to_owned())
    }

    /// Runs an admin command that changes what hosts must know, and waits until the
    /// running server has seen the revision it made (the CLI writes the store directly;
    /// the server polls it). Returns the command's JSON and that revision.
    pub fn change(&self, args: &[&str]) -> Result<(Value, u64)> {
        let before = self.revision()?;
        let out = self.cli_json(args)?;
        let after = wait_for(
            format_args!("the server's revision to pass {before} after {args:?}"),
            WAIT,
            || Ok(Some(self.revision()?).filter(|&r| r > before)),
        )?;
        Ok((out, after))
    }

    /// A single-use join token for `groups` (comma-separated).
    pub fn join_token(&self, groups: &str) -> Result<JoinToken> {
        let v = self.cli_json(&["token", "create", "--groups", groups])?;
        let field = |name: &str| {
            v[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("token create printed no {name}: {v}"))
        };
        Ok(JoinToken {
            secret: field("secret")?,
            server: field("server")?,
            ca_pin: field("ca_pin")?,
        })
    }

    /// One request to the HTTP API with the test's bearer token.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Result<HttpResponse> {
        let body = body.map(Value::to_string);
        http_request(self.http, method, path, &self.api_token, body.as_deref())
    }

    /// `POST /api/v1/revocations` with `revocation` (e.g. `{"kind": "key_id", "key_id":
    /// "x", "ca": null}`); requires 201 and returns the record (its `revision` is the
    /// revision that made it).
    pub fn revoke(&self, revocation: &Value) -> Result<Value> {
        let res = self.api("POST", "/api/v1/revocations", Some(revocation))?;
        if res.status != 201 {
            bail!(
                "POST /api/v1/revocations {revocation} answered {}: {}",
                res.status,
                res.body
            );
        }
        res.json()
    }

    /// The latest revision the server knows (`GET /api/v1/revision`).
    pub fn revision(&self) -> Result<u64> {
        let res = self.api("GET", "/api/v1/revision", None)?;
        if res.status != 200 {
            bail!("GET /api/v1/revision answered {}: {}", res.status, res.body);
        }
        res.json()?["revision"]
            .as_u64()
            .ok_or_else(|| anyhow!("GET /api/v1/revision: no revision in {}", res.body))
    }

    /// The server process's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(|p| p.child.id())
    }

    /// Kills the server with SIGKILL: no drain, no chance to finish anything.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        let server = self
            .server
            .take()
            .ok_or_else(|| anyhow!("the control plane is not running"))?;
        server.kill()
    }

    /// Turns on the certificate listener (`[ca] ssh_listen` on a loopback port chosen by
    /// the server): stops the server, adds it to the config, starts it again, and returns
    /// the listener's address. The config must have no `[ca]` table yet.
    pub fn listen_for_certificates(&mut self) -> Result<SocketAddr> {
        self.stop()?;
        let mut config = OpenOptions::new().append(true).open(&self.config)?;
        config.write_all(b"\n[ca]\nssh_listen = \"127.0.0.1:0\"\n")?;
        self.restart()?;
        let log = self.log();
        let marker = "issuing certificates over SSH on ";
        let addr = log
            .find(marker)
            .and_then(|i| log[i + marker.len()..].split_whitespace().next())
            .ok_or_else(|| anyhow!("the server did not say where it issues over SSH:\n{log}"))?;
        addr.parse()
            .with_context(|| format!("{addr:?} is not the listener's address"))
    }

    /// Starts the server again on the same data directory and config (the agent port
    /// stays; the HTTP port is a new one), after [`ControlPlane::stop`] or
    /// [`ControlPlane::kill`].
    pub fn restart(&mut self) -> Result<()> {
        if self.server.is_some() {
            bail!("the control plane is running");
        }
        let n = fs::read_dir(self.dir.path())?.count();
        let log = self.dir.path().join(format!("server-restart-{n}.log"));
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .env("USER", "e2e")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("restarting {} serve", self.bin.display()))?;
        let mut process = Process { child };
        match wait_listening(&mut process, &log)? {
            Some(http) => {
                self.http = http;
                self.log = log;
                self.server = Some(process);
                Ok(())
            }
            None => bail!(
                "signoff-server exited on restart; its log:\n{}",
                read_text(&log)
            ),
        }
    }

    /// Sends SIGTERM and waits for the server to drain and exit; returns how it exited.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let server = self
            .server
            .take()
            .ok_or_else(|| anyhow!("the control plane is not running"))?;
        server
            .terminate(WAIT)
            .with_context(|| format!("stopping signoff-server; its log:\n{}", self.log()))
    }
}

/// Waits until the server logs both listeners (`Some(HTTP address)`), or exits (`None`).
fn wait_listening(process: &mut Process, log: &Path) -> Result<Option<SocketAddr>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = read_text(log);
        if text.contains(AGENTS_LISTENING)
            && let Some(at) = text.find(HTTP_LISTENING)
        {
            let rest = &text[at + HTTP_LISTENING.len()..];
            let addr = rest.split_whitespace().next().unwrap_or_default();
            return addr
                .parse()
                .map(Some)
                .with_context(|| format!("cannot parse the HTTP address {addr:?} in:\n{text}"));
        }
        if process.exited()?.is_some() {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            bail!("signoff-server did not listen within {WAIT:?}; its log:\n{text}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A minimal HTTP/1.1 client for the loopback API: one request per connection, the body
/// read up to `Content-Length` (so the caller's clock stops when the response is complete,
/// not when the server closes the connection).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> Result<HttpResponse> {
    let mut stream =
        TcpStream::connect_timeout(&addr, WAIT).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_nodelay(true)?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_len, content_length) = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            bail!("{method} {path}: the connection closed before the response headers");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>())
                .transpose()?;
            break (end + 4, length);
        }
    };
    match content_length {
        Some(len) => {
            while buf.len() < head_len + len {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    bail!("{method} {path}: the connection closed mid-body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.truncate(head_len + len);
        }
        None => {
            stream.read_to_end(&mut buf)?;
        }
    }
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: bad status line in {head:?}"))?;
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&buf[head_len..]).into_owned(),
    })
}

/// One host's agent: its state directory and config, and the daemon when running
/// (killed on drop).
#[derive(Debug)]
pub struct Agent {
    bin: PathBuf,
    host: HostDir,
    log: PathBuf,
    daemon: Option<Process>,
    starts: usize,
}

impl Agent {
    /// A fresh state directory (mode 0755, so the principals command's user can read it)
    /// whose `agent.toml` names it as `state_dir`, `revoked.krl` in it as `krl_path`,
    /// `identity/` in it as `identity_dir`, then `extra_config` (top-level keys first).
    pub fn new(extra_config: &str) -> Result<Agent> {
        Agent::with_binary(agent_binary()?, extra_config)
    }

    /// [`Agent::new`] running the agent binary `bin`.
    pub fn with_binary(bin: &Path, extra_config: &str) -> Result<Agent> {
        let host = HostDir::new("")?;
        host.write_config(&format!(
            "identity_dir = {:?}\n{extra_config}",
            host.path().join("identity").display().to_string()
        ))?;
        let log = host.path().join("agent.log");
        Ok(Agent {
            bin: bin.to_owned(),
            host,
            log,
            daemon: None,
            starts: 0,
        })
    }

    /// `signoff-agent enroll` with a new join token for `groups`, as host `host_id`.
    pub fn enroll(&self, plane: &ControlPlane, host_id: &str, groups: &str) -> Result<()> {
        self.enroll_with_token(&plane.join_token(groups)?, host_id)
    }

    /// `signoff-agent enroll` with `token`, as host `host_id`.
    pub fn enroll_with_token(&self, token: &JoinToken, host_id: &str) -> Result<()> {
        run_ok(
            Command::new(&self.bin)
                .arg("enroll")
                .arg("--config")
                .arg(self.config())
                .args(["--server", &token.server])
                .args(["--token", &token.secret])
                .args(["--ca-pin", &token.ca_pin])
                .args(["--host-id", host_id]),
        )?;
        Ok(())
    }

    /// Appends `text` to the agent's config (a `[sessions]` table, say); read at the next
    /// start.
    pub fn append_config(&self, text: &str) -> Result<()> {
        let mut f = OpenOptions::new().append(true).open(self.config())?;
        writeln!(f, "\n{text}")?;
        Ok(())
    }

    /// Starts `signoff-agent run` (its output appended to [`Agent::log`]), logging at
    /// `info`, or as `SIGNOFF_AGENT_RUST_LOG` says (`sessions-bench --breakdown` asks for
    /// the sessions' timing lines that way).
    pub fn start(&mut self) -> Result<()> {
        if self.daemon.is_some() {
            bail!("the agent is already running");
        }
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(log, "==== start {} ====", self.starts)?;
        let child = Command::new(&self.bin)
            .arg("run")
            .arg("--config")
            .arg(self.config())
            .env(
                "RUST_LOG",
                std::env::var("SIGNOFF_AGENT_RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} run", self.bin.display()))?;
        self.daemon = Some(Process { child });
        Ok(())
    }

    /// Kills the daemon with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        let daemon = self
            .daemon
            .take()
            .ok_or_else(|| anyhow!("the agent is not running"))?;
        daemon.kill()?;
        Ok(())
    }

    /// Stops the daemon with SIGTERM and returns how it exited.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let daemon = self
            .daemon
            .take()
            .ok_or_else(|| anyhow!("the agent is not running"))?;
        daemon.terminate(WAIT)
    }

    /// Whether the daemon is still running (an early exit is an error naming the log).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(daemon) = &mut self.daemon
            && let Some(status) = daemon.exited()?
        {
            bail!(
                "signoff-agent run exited ({status}); its log:\n{}",
                self.log()
            );
        }
        Ok(())
    }

    /// The agent's config file (what sshd's principals command is given too).
    pub fn config(&self) -> PathBuf {
        self.host.config()
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        self.host.path()
    }

    /// The KRL it writes for sshd.
    pub fn krl_path(&self) -> PathBuf {
        self.host.krl()
    }

    /// Everything the daemon has logged, across starts.
    pub fn log(&self) -> String {
        read_text(&self.log)
    }

    /// The daemon's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|p| p.child.id())
    }

    /// How many times the daemon was started.
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// The revision of the persisted host view, `None` before the first one.
    pub fn applied_revision(&self) -> Result<Option<u64>> {
        let path = self.state_dir().join(STATE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let file = StateFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Some(file.revision()))
    }

    /// The KRL on disk, decoded.
    pub fn krl(&self) -> Result<Krl> {
        let path = self.krl_path();
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Krl::decode(&bytes).with_context(|| format!("decoding {}", path.display()))
    }

    /// Waits until both the host view and the KRL on disk are at `revision` or later (the
    /// KRL's version number is the revision of the view it was built from).
    pub fn wait_applied(&mut self, revision: u64) -> Result<()> {
        let result = wait_for(
            format_args!("the agent's host view and KRL to reach revision {revision}"),
            WAIT,
            || {
                self.check_running()?;
                let view = self.applied_revision()?.unwrap_or(0);
                let krl = self.krl().map(|k| k.version()).unwrap_or(0);
                Ok((view >= revision && krl >= revision).then_some(()))
            },
        );
        result.with_context(|| {
            format!(
                "host view at {:?}, KRL at {:?}; agent log:\n{}",
                self.applied_revision().ok().flatten(),
                self.krl().map(|k| k.version()).ok(),
                self.log()
            )
        })
    }

    /// `signoff-agent status --json`: its exit code and what it printed.
    pub fn status(&self) -> Result<(Option<i32>, Value)> {
        let out = run(Command::new(&self.bin)
            .arg("status")
            .arg("--config")
            .arg(self.config())
            .arg("--json"))?;
        let v = serde_json::from_str(&out.stdout).with_context(|| {
            format!(
                "`{}` printed no JSON ({}): {}{}",
                out.command, out.status, out.stdout, out.stderr
            )
        })?;
        Ok((out.code(), v))
    }
}

/// Waits until the agent has applied everything the control plane has (both files).
pub fn sync(plane: &ControlPlane, agent: &mut Agent) -> Result<u64> {
    let revision = plane.revision()?;
    agent.wait_applied(revision)?;
    Ok(revision)
}
