//! `sessions-bench`: how fast sessions show up at the control plane and how fast a kill
//! order ends one, and what the agent costs while nothing happens.
//!
//! ```text
//! cargo run --release -p signoff-tests --bin sessions-bench [-- --logins 50 --idle 60 --reconcile 3s]
//! ```
//!
//! A release control plane and a release agent beside a real sshd (`UsePAM yes`, the
//! agent's principals command and KRL, the agent watching that sshd's log and `/proc`), as
//! in `signoff_tests::fleet`, and real `ssh` clients of a non-root account. The agent runs
//! with its default configuration (a `/proc` rescan every 3 s) unless `--reconcile` says
//! otherwise. The control
//! plane is watched the way the dashboard watches it: through `GET /api/v1/sessions/events`
//! (Server-Sent Events), read by a thread that timestamps each event as it arrives.
//!
//! - **login → event**: for each of `--logins` logins (every other one with a pty, each
//!   running `sleep` and a `setsid` detached `sleep`), from the verbose client's
//!   `Authenticated to …` line (sshd has accepted the certificate) until the `started`
//!   event with the client's source port arrives; also from the client's start, which adds
//!   the SSH handshake, PAM and the shell.
//! - **kill → processes gone**: from just before `POST /api/v1/sessions/HOST/ID/kill` until
//!   no process with the login's kernel audit session id is left (sshd's, the shell's, the
//!   detached `sleep`), polled every millisecond; and until the `ended` event arrives.
//! - **idle agent**: two sessions open and nothing changing for `--idle` seconds: the
//!   agent's user+system CPU over that time, its RSS at the end and its peak RSS.
//!
//! `--host-processes N` starts N idle processes (`sleep`, this program's children,
//! stopped by PID at the end) before anything else, for a host as busy as a build machine
//! or a bastion: what the agent costs must follow the logins, not the host.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use signoff_agent::sessions::procfs::Procfs;
use signoff_tests::agent::Profile;
use signoff_tests::fleet::{Fleet, GROUP, Host, USER, host_states, sleeping};
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::plane::{WAIT, wait_for};
use signoff_tests::sessions::{ClientOptions, SshClient, TEST_ACCOUNT, percentiles, processes_of};

/// Sessions on a real sshd: detection latency, idle cost, login storms, kills (see
/// BENCHMARKS.md).
#[derive(Debug, clap::Parser)]
struct Options {
    /// Logins held open.
    #[arg(long, default_value_t = 50)]
    logins: u32,
    /// Seconds of idle to measure the agent's CPU over.
    #[arg(long, value_name = "SECONDS", value_parser = signoff_tests::bench_args::seconds, default_value = "60")]
    idle: Duration,
    /// The agent's reconcile interval (`3s`, `500ms`).
    #[arg(long, value_name = "INTERVAL")]
    reconcile: Option<String>,
    /// Logins of a storm.
    #[arg(long)]
    storm: Option<u32>,
    /// Seconds the storm's logins are spread over.
    #[arg(long, value_name = "SECONDS", value_parser = signoff_tests::bench_args::seconds, default_value = "10")]
    storm_over: Duration,
    /// Time socket lookups with this many connections.
    #[arg(long, value_name = "CONNECTIONS")]
    lookup: Option<u32>,
    /// Idle processes started beside the bench, for a host as busy as a build machine.
    #[arg(long, value_name = "N", default_value_t = 0)]
    host_processes: u32,
    /// With `--storm`: where each login waited, stage by stage, from the agent's timing
    /// log (the agent is started with `signoff_agent::sessions::timing=debug`).
    #[arg(long)]
    breakdown: bool,
    /// With `--storm`: people signed off before it (a host of a fleet with a history holds
    /// a sign-off statement for each, and looks every new login up against them).
    #[arg(long, value_name = "N", default_value_t = 0)]
    signed_off: u32,
    /// With `--storm`: the agent's `priority_boost` (unset: its default, nice -10).
    #[arg(long, value_name = "N")]
    priority_boost: Option<u8>,
    /// With `--storm`: run the control plane at nice -N, as a stand-in for a control plane
    /// on a machine of its own (here it shares two cores with the storm's clients and sshd).
    #[arg(long, value_name = "N", default_value_t = 0)]
    plane_boost: u8,
}

/// The agent's log filter with its timing lines (see `--breakdown`).
const TIMING_LOG: &str = "info,signoff_agent::sessions::timing=debug";

/// One Server-Sent Event as it arrived.
#[derive(Debug, Clone)]
struct Arrived {
    at: Instant,
    name: String,
    data: Value,
}

/// The control plane's session feed, read by a thread of its own.
struct Feed {
    events: Arc<Mutex<Vec<Arrived>>>,
}

impl Feed {
    /// Opens `GET /api/v1/sessions/events` (HTTP/1.0, so the body is not chunked) and waits
    /// for its snapshot.
    fn open(fleet: &Fleet) -> Result<Feed> {
        let mut stream = TcpStream::connect(fleet.plane.http_addr())?;
        stream.set_nodelay(true)?;
        write!(
            stream,
            "GET /api/v1/sessions/events HTTP/1.0\r\nAuthorization: Bearer {}\r\n\r\n",
            fleet.signoff_token
        )?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        thread::spawn(move || {
            let mut lines = BufReader::new(stream).lines();
            // The response head.
            for line in lines.by_ref() {
                match line {
                    Ok(l) if l.is_empty() => break,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            let (mut name, mut data) = (String::new(), String::new());
            for line in lines {
                let Ok(line) = line else { return };
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                } else if line.is_empty() && !name.is_empty() {
                    let arrived = Arrived {
                        at: Instant::now(),
                        name: std::mem::take(&mut name),
                        data: serde_json::from_str(&std::mem::take(&mut data))
                            .unwrap_or(Value::Null),
                    };
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(arrived);
                }
            }
        });
        let feed = Feed { events };
        feed.wait("the snapshot", |e| e.name == "snapshot")?;
        Ok(feed)
    }

    /// Waits for the first event that satisfies `want`.
    fn wait(&self, what: &str, want: impl Fn(&Arrived) -> bool) -> Result<Arrived> {
        wait_for(format_args!("{what} on the session feed"), WAIT, || {
            let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(r) = events.iter().find(|e| e.name == "resync") {
                bail!("the feed fell behind: {:?}", r.data["missed"]);
            }
            Ok(events.iter().find(|e| want(e)).cloned())
        })
    }
}

/// A login held open: `sleep MARKER` and a detached `sleep MARKER+1`.
struct Login {
    client: SshClient,
    markers: [u32; 2],
}

impl Login {
    fn open(fleet: &Fleet, host: &Host, pty: bool, marker: u32) -> Result<Login> {
        let command = format!(
            "setsid sleep {} </dev/null >/dev/null 2>&1 & sleep {marker}",
            marker + 1
        );
        let client = SshClient::spawn(
            host.sshd.port(),
            TEST_ACCOUNT,
            &fleet.user_key.private,
            &fleet.cert,
            &ClientOptions {
                pty,
                command: &command,
                verbose: true,
            },
        )?;
        Ok(Login {
            client,
            markers: [marker, marker + 1],
        })
    }

    fn commands(&self) -> Vec<u32> {
        self.markers.iter().flat_map(|m| sleeping(*m)).collect()
    }

    fn audit_session(&self) -> Result<u32> {
        let pid = wait_for("the login's commands to run", WAIT, || {
            let pids = self.commands();
            Ok((pids.len() == 2).then(|| pids[0]))
        })?;
        let id = fs::read_to_string(format!("/proc/{pid}/sessionid"))?
            .trim()
            .parse()?;
        if id == u32::MAX {
            bail!("no audit session id: is pam_loginuid in sshd's PAM stack?");
        }
        Ok(id)
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        for pid in self.commands() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// What `/proc/PID` says of a process's resources.
struct Usage {
    /// User + system CPU seconds.
    cpu: f64,
    /// Resident set, KiB: all of it, its peak, anonymous (heap, stacks), file-backed (code).
    rss: u64,
    peak: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

fn usage(pid: u32) -> Result<Usage> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat does not parse"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    let seconds = ticks / 100.0;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Usage {
        cpu: seconds,
        rss: kib("VmRSS:"),
        peak: kib("VmHWM:"),
        anon: kib("RssAnon:"),
        file: kib("RssFile:"),
        threads: kib("Threads:"),
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summary(name: &str, samples: &[Duration]) {
    let (p50, p99) = percentiles(samples);
    let max = samples.iter().max().copied().unwrap_or_default();
    println!(
        "{name}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
}

/// Idle processes that make the host busier, stopped (by PID: they are our children)
/// when dropped.
struct Ballast(Vec<std::process::Child>);

impl Ballast {
    fn start(n: u32) -> Result<Ballast> {
        let mut children = Vec::new();
        for _ in 0..n {
            children.push(
                std::process::Command::new("sleep")
                    .arg("100000")
                    .spawn()
                    .context("cannot start sleep")?,
            );
        }
        if n > 0 {
            println!("{n} idle processes started beside the bench");
        }
        Ok(Ballast(children))
    }
}

impl Drop for Ballast {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() -> Result<()> {
    let o = <Options as clap::Parser>::parse();
    let _ballast = Ballast::start(o.host_processes)?;
    if o.breakdown && std::env::var_os("SIGNOFF_AGENT_RUST_LOG").is_none() {
        // The test harness starts the agent with this filter; it is read from the
        // environment, which this program does not change in itself: run it again.
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env("SIGNOFF_AGENT_RUST_LOG", TIMING_LOG)
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    if let Some(n) = o.storm {
        return storm(&o, n);
    }
    if let Some(n) = o.lookup {
        return lookup(n);
    }
    let fleet = Fleet::with_profile(Profile::Release)?;
    let mut host = fleet.host_with("bench-1", o.reconcile.as_deref())?;
    let feed = Feed::open(&fleet)?;

    let mut after_auth = Vec::new();
    let mut after_spawn = Vec::new();
    let mut kill_gone = Vec::new();
    let mut kill_ended_event = Vec::new();
    for i in 0..o.logins {
        let mut login = Login::open(&fleet, &host, i % 2 == 0, 9000 + 10 * i)?;
        let port = login.client.local_addr(host.sshd.port(), WAIT)?.port();
        let started = feed.wait(&format!("the start of the login from port {port}"), |e| {
            e.name == "started" && e.data["source_port"] == u64::from(port)
        })?;
        let authenticated = login
            .client
            .authenticated_at()
            .ok_or_else(|| anyhow!("ssh -v printed no `Authenticated to`"))?;
        after_auth.push(started.at.saturating_duration_since(authenticated));
        after_spawn.push(started.at.saturating_duration_since(login.client.started));

        let audit = BTreeSet::from([login.audit_session()?]);
        host.sshd.track(*audit.first().unwrap_or(&0));
        let id = started.data["id"]
            .as_str()
            .ok_or_else(|| anyhow!("started event without id: {:?}", started.data))?
            .to_owned();
        let t0 = Instant::now();
        let (status, v) = fleet.hr(
            "POST",
            &format!("/api/v1/sessions/{}/{id}/kill", host.id),
            Some(&json!({"reason": "benchmark"})),
        )?;
        if status != 202 || v["state"] != "sent" {
            bail!("kill answered {status}: {v}");
        }
        let deadline = t0 + WAIT;
        while !(processes_of(&audit).is_empty() && login.commands().is_empty()) {
            if Instant::now() >= deadline {
                bail!(
                    "login {i} not gone within {WAIT:?}; agent log:\n{}",
                    host.agent.log()
                );
            }
            thread::sleep(Duration::from_millis(1));
        }
        kill_gone.push(t0.elapsed());
        let ended = feed.wait(&format!("the end of session {id}"), |e| {
            e.name == "ended" && e.data["id"] == id.as_str()
        })?;
        kill_ended_event.push(ended.at.saturating_duration_since(t0));
        if login.client.wait_exit(WAIT)?.is_none() {
            bail!("the client of killed login {i} is still connected");
        }
    }

    // Issue 13's shapes, each killed through the API: a lingering login (the client gone,
    // a `setsid -f sleep` left) and a tree that forks generation after generation,
    // ignoring SIGTERM and SIGHUP. Until nothing of the audit session is left.
    let mut kill_lingering = Vec::new();
    let mut kill_forking = Vec::new();
    for i in 0..o.logins.min(20) {
        for lingering in [true, false] {
            let marker = 30_000 + 10 * i + u32::from(lingering);
            let command = if lingering {
                // With a pty, the client's exit hangs up the shell and its `sleep 600`:
                // what is left is the `setsid -f` child.
                format!("setsid -f sleep {marker} </dev/null >/dev/null 2>&1; sleep 600")
            } else {
                format!(
                    "trap '' TERM HUP; f() {{ sleep 0.005; f & exit 0; }}; f & f & sleep {marker}"
                )
            };
            let mut client = SshClient::spawn(
                host.sshd.port(),
                TEST_ACCOUNT,
                &fleet.user_key.private,
                &fleet.cert,
                &ClientOptions {
                    pty: lingering,
                    command: &command,
                    verbose: false,
                },
            )?;
            let port = client.local_addr(host.sshd.port(), WAIT)?.port();
            let pid = wait_for("the shape's sleep", WAIT, || {
                Ok(sleeping(marker).first().copied())
            })?;
            let audit: u32 = fs::read_to_string(format!("/proc/{pid}/sessionid"))?
                .trim()
                .parse()?;
            let audit = BTreeSet::from([audit]);
            host.sshd.track(*audit.first().unwrap_or(&0));
            let started = feed.wait(&format!("the start of shape {marker}"), |e| {
                e.name == "started" && e.data["source_port"] == u64::from(port)
            })?;
            let id = started.data["id"]
                .as_str()
                .ok_or_else(|| anyhow!("event without id: {:?}", started.data))?
                .to_owned();
            if lingering {
                client.exit()?;
                feed.wait(&format!("shape {marker} lingering"), |e| {
                    e.name == "updated"
                        && e.data["id"] == id.as_str()
                        && e.data["state"] == "lingering"
                })?;
            }
            let t0 = Instant::now();
            let (status, v) = fleet.hr(
                "POST",
                &format!("/api/v1/sessions/{}/{id}/kill", host.id),
                Some(&json!({"reason": "benchmark"})),
            )?;
            if status != 202 {
                bail!("kill answered {status}: {v}");
            }
            let deadline = t0 + WAIT;
            while !processes_of(&audit).is_empty() {
                if Instant::now() >= deadline {
                    bail!("shape {marker} not gone; agent log:\n{}", host.agent.log());
                }
                thread::sleep(Duration::from_millis(1));
            }
            if lingering {
                kill_lingering.push(t0.elapsed());
            } else {
                kill_forking.push(t0.elapsed());
            }
            drop(client);
        }
    }

    // Idle: two sessions open, nothing changing.
    let _pty = Login::open(&fleet, &host, true, 8000)?;
    let _plain = Login::open(&fleet, &host, false, 8010)?;
    for login in [&_pty, &_plain] {
        login.audit_session()?;
    }
    wait_for("both idle sessions at the control plane", WAIT, || {
        let events = feed.events.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(
            (events.iter().filter(|e| e.name == "started").count() as u32
                == o.logins + 2 + 2 * o.logins.min(20))
            .then_some(()),
        )
    })?;
    let pid = host
        .agent
        .pid()
        .ok_or_else(|| anyhow!("the agent is not running"))?;
    let before = usage(pid)?;
    let t0 = Instant::now();
    thread::sleep(o.idle);
    let after = usage(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    host.agent
        .check_running()
        .context("the agent died while idle")?;
    let events_while_idle: Vec<String> = feed
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|e| e.at >= t0)
        .map(|e| format!("{} {}", e.name, e.data))
        .collect();
    for e in &events_while_idle {
        println!("while idle: {e}");
    }
    let events_while_idle = events_while_idle.len();

    summary("login (Authenticated to) -> started event", &after_auth);
    summary("login (ssh started) -> started event", &after_spawn);
    summary("kill issued -> every process gone", &kill_gone);
    summary("kill issued -> ended event", &kill_ended_event);
    summary(
        "kill issued -> nothing of a lingering login left (client gone, setsid -f sleep)",
        &kill_lingering,
    );
    summary(
        "kill issued -> nothing of a forking tree left (ignores TERM/HUP)",
        &kill_forking,
    );
    let cpu = after.cpu - before.cpu;
    println!(
        "agent (reconcile_interval {}) idle {wall:.0} s with 2 sessions open: CPU {cpu:.2} s = {:.3} %, \
         RSS {:.1} MiB (anonymous {:.1}, file {:.1}), peak {:.1} MiB, {} threads, \
         {events_while_idle} session events meanwhile",
        o.reconcile.as_deref().unwrap_or("3s, the default"),
        100.0 * cpu / wall,
        mib(after.rss),
        mib(after.anon),
        mib(after.file),
        mib(after.peak),
        after.threads,
    );
    Ok(())
}

/// The second person of the storm.
const OTHER: &str = "bob";

/// One login of the storm.
struct StormLogin {
    client: SshClient,
    /// Whether it is [`OTHER`]'s (else [`USER`]'s).
    other: bool,
    marker: u32,
}

/// Audit session ids of the logins whose `sleep MARKER` runs, by marker (one pass over
/// `/proc`).
fn audit_sessions_by_marker() -> std::collections::HashMap<u32, u32> {
    let p = Procfs::default();
    let mut out = std::collections::HashMap::new();
    for pid in p.pids().unwrap_or_default() {
        let Ok(cmdline) = p.cmdline(pid) else {
            continue;
        };
        let Some(marker) = cmdline
            .strip_prefix(b"sleep\0")
            .and_then(|r| r.strip_suffix(b"\0"))
            .and_then(|m| std::str::from_utf8(m).ok())
            .and_then(|m| m.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(Some(id)) = p.audit_session(pid) {
            out.insert(marker, id);
        }
    }
    out
}

/// `--storm N`: N logins over `--storm-over` seconds by two people, mixed shapes, then
/// kill-sessions of one person's and a sign-off of the other's.
fn storm(o: &Options, n: u32) -> Result<()> {
    let mut fleet = Fleet::with_profile(Profile::Release)?;
    if let Some(boost) = o.priority_boost {
        fleet.agent_config = format!("priority_boost = {boost}\n");
    }
    if o.plane_boost > 0 {
        let pid = fleet
            .plane
            .pid()
            .context("the control plane is not running")?;
        renice_all_threads(pid, o.plane_boost)?;
    }
    // The second person, with a certificate of their own, before the host syncs.
    let other_key = KeyPair::generate(fleet.keys.path(), OTHER, KeyType::Ed25519)?;
    fleet
        .plane
        .cli(&["user", "add", OTHER, "--key-id", "bob@corp"])?;
    fleet
        .plane
        .cli(&["grant", "add", OTHER, TEST_ACCOUNT, GROUP])?;
    let other_cert = keys::sign(&CertRequest {
        ca: fleet.ca.clone(),
        subject: other_key.clone(),
        out: fleet.keys.path().join("bob-cert"),
        key_id: "bob@corp".into(),
        principals: OTHER.into(),
        serial: 78,
    })?;
    // People signed off earlier, before the host syncs: their statements come with its
    // first view.
    let h0 = Instant::now();
    for i in 0..o.signed_off {
        let name = format!("gone{i}");
        let (status, v) = fleet.hr(
            "POST",
            "/api/v1/users",
            Some(&json!({"name": name, "key_ids": [format!("{name}@corp")]})),
        )?;
        if status != 201 {
            bail!("creating {name} answered {status}: {v}");
        }
        let (status, v) = fleet.hr(
            "POST",
            &format!("/api/v1/users/{name}/signoff"),
            Some(&json!({"reason": "history"})),
        )?;
        if status != 201 {
            bail!("signing {name} off answered {status}: {v}");
        }
    }
    if o.signed_off > 0 {
        println!(
            "{} people signed off before the storm ({:.1} s)",
            o.signed_off,
            h0.elapsed().as_secs_f64()
        );
    }
    // sshd drops unauthenticated connections beyond MaxStartups (10 by default).
    let mut host = fleet.host_with_sshd(
        "storm-1",
        o.reconcile.as_deref(),
        &format!("MaxStartups {}\n", 4 * n + 10),
    )?;
    let feed = Feed::open(&fleet)?;
    let agent = host
        .agent
        .pid()
        .ok_or_else(|| anyhow!("the agent is not running"))?;

    // The storm: one login every `storm_over / n`, alternating people; shapes in turn.
    let step = o.storm_over / n.max(1);
    let before = usage(agent)?;
    let t0 = Instant::now();
    let mut logins = Vec::new();
    for i in 0..n {
        let at = t0 + step * i;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let marker = 20_000 + 2 * i;
        let other = i % 2 == 1;
        let (pty, command) = match i % 3 {
            0 => (false, format!("sleep {marker}")),
            1 => (true, format!("sleep {marker}")),
            _ => (
                false,
                format!(
                    "setsid sleep {} </dev/null >/dev/null 2>&1 & sleep {marker}",
                    marker + 1
                ),
            ),
        };
        let (key, cert) = if other {
            (&other_key.private, &other_cert)
        } else {
            (&fleet.user_key.private, &fleet.cert)
        };
        let client = SshClient::spawn(
            host.sshd.port(),
            TEST_ACCOUNT,
            key,
            cert,
            &ClientOptions {
                pty,
                command: &command,
                verbose: true,
            },
        )?;
        logins.push(StormLogin {
            client,
            other,
            marker,
        });
    }
    let spawned = t0.elapsed();

    // Every login listed (or the deadline): Accepted (the client's `Authenticated to`,
    // printed when sshd has accepted the key and logged it) -> `started` event.
    let deadline = Instant::now() + Duration::from_secs(180);
    let started_ports = || -> BTreeSet<u64> {
        feed.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| e.name == "started")
            .filter_map(|e| e.data["source_port"].as_u64())
            .collect()
    };
    while started_ports().len() < n as usize && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let storm_wall = t0.elapsed();
    let during = usage(agent)?;

    // Client ports: one read of the TCP table, then each client's sockets.
    let p = Procfs::default();
    let table = p.tcp_sockets(std::process::id())?;
    let events = feed
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut listed = Vec::new();
    let mut stages = Vec::new();
    let mut unauthenticated = 0;
    let mut unlisted = 0;
    for l in &logins {
        let Some(authenticated) = l.client.authenticated_at() else {
            unauthenticated += 1;
            continue;
        };
        let inodes = p.socket_inodes(l.client.pid()).unwrap_or_default();
        let Some(port) = table
            .iter()
            .find(|s| inodes.contains(&s.inode) && s.remote.port() == host.sshd.port())
            .map(|s| s.local.port())
        else {
            unlisted += 1;
            continue;
        };
        match events
            .iter()
            .find(|e| e.name == "started" && e.data["source_port"] == u64::from(port))
        {
            Some(e) => {
                listed.push(e.at.saturating_duration_since(authenticated));
                stages.push((port, authenticated, e.at));
            }
            None => unlisted += 1,
        }
    }
    let (status, all) = fleet.hr("GET", "/api/v1/sessions", None)?;
    if status != 200 {
        bail!("GET /api/v1/sessions answered {status}: {all}");
    }
    let live: Vec<&Value> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "live")
        .collect();
    let unattributed = live.iter().filter(|s| s["user"].is_null()).count();

    // Idle after the storm, every login open.
    eprintln!(
        "the storm is listed; the agent idle for {} s",
        o.idle.as_secs()
    );
    let idle0 = usage(agent)?;
    let i0 = Instant::now();
    thread::sleep(o.idle);
    let idle1 = usage(agent)?;
    let idle_wall = i0.elapsed().as_secs_f64();

    // kill-sessions of the other person's logins.
    let audits = audit_sessions_by_marker();
    let ids_of = |other: bool| -> BTreeSet<u32> {
        logins
            .iter()
            .filter(|l| l.other == other)
            .filter_map(|l| audits.get(&l.marker).copied())
            .collect()
    };
    let (others, ours) = (ids_of(true), ids_of(false));
    let ours_before = processes_of(&ours).len();
    let k0 = Instant::now();
    let (status, orders) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{OTHER}/kill-sessions"),
        Some(&json!({"reason": "benchmark"})),
    )?;
    if status != 202 {
        bail!("kill-sessions answered {status}: {orders}");
    }
    let orders_sent = orders.as_array().map_or(0, Vec::len);
    let kill_deadline = k0 + Duration::from_secs(60);
    let kill_gone = loop {
        if processes_of(&others).is_empty() {
            break Some(k0.elapsed());
        }
        if Instant::now() >= kill_deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let ours_after = processes_of(&ours).len();
    let kill_cpu = usage(agent)?.cpu - idle1.cpu;

    // A sign-off of the first person, with their logins open.
    let s0 = Instant::now();
    let (status, v) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "benchmark"})),
    )?;
    if status != 201 {
        bail!("sign-off answered {status}: {v}");
    }
    let signoff_deadline = s0 + Duration::from_secs(60);
    let mut gone_at = None;
    let mut last = Value::Null;
    let confirmed = loop {
        if gone_at.is_none() && processes_of(&ours).is_empty() {
            gone_at = Some(s0.elapsed());
        }
        let (status, v) = fleet.hr("GET", &format!("/api/v1/users/{USER}/signoff"), None)?;
        if status == 200 && host_states(&v).iter().all(|(_, s)| s == "confirmed") {
            break Some(s0.elapsed());
        }
        last = v;
        if Instant::now() >= signoff_deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(2));
    };
    if gone_at.is_none() {
        let w0 = Instant::now();
        while !processes_of(&ours).is_empty() && w0.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(5));
        }
        if processes_of(&ours).is_empty() {
            gone_at = Some(s0.elapsed());
        }
    }
    let signoff_cpu = usage(agent)?.cpu - idle1.cpu - kill_cpu;
    host.agent
        .check_running()
        .context("the agent died during the storm")?;

    println!(
        "storm: {n} logins by two people (notty, pty, notty with a setsid child) spawned over {:.1} s; \
         all listed after {:.1} s",
        spawned.as_secs_f64(),
        storm_wall.as_secs_f64()
    );
    println!(
        "agent priority_boost: {}; control plane at nice -{}",
        o.priority_boost
            .map_or("default (10)".to_owned(), |b| b.to_string()),
        o.plane_boost
    );
    summary(
        "Accepted (client `Authenticated to`) -> started event",
        &listed,
    );
    println!(
        "  not authenticated: {unauthenticated}; authenticated but never listed: {unlisted}; \
         live at the control plane: {}, of which unattributed (user null): {unattributed}",
        live.len()
    );
    let storm_cpu = during.cpu - before.cpu;
    println!(
        "agent CPU during the storm: {storm_cpu:.2} s over {:.1} s = {:.1} % of a core",
        storm_wall.as_secs_f64(),
        100.0 * storm_cpu / storm_wall.as_secs_f64()
    );
    let idle_cpu = idle1.cpu - idle0.cpu;
    println!(
        "agent idle {idle_wall:.0} s with {} logins open (reconcile_interval {}): CPU {idle_cpu:.2} s = {:.3} % of a core, RSS {:.1} MiB",
        live.len(),
        o.reconcile.as_deref().unwrap_or("3s, the default"),
        100.0 * idle_cpu / idle_wall,
        mib(idle1.rss)
    );
    println!(
        "kill-sessions of {OTHER}'s {} logins ({orders_sent} orders): every process gone after {} \
         (agent CPU {kill_cpu:.2} s); {USER}'s processes before {ours_before}, after {ours_after}",
        others.len(),
        kill_gone.map_or("NEVER (60 s)".into(), |d| format!("{:.0} ms", ms(d)))
    );
    println!(
        "sign-off of {USER} with {} logins open: host confirmed after {}, every process gone after {} \
         (agent CPU {signoff_cpu:.2} s)",
        ours.len(),
        confirmed.map_or("NEVER (60 s)".into(), |d| format!("{:.0} ms", ms(d))),
        gone_at.map_or("NEVER".into(), |d| format!("{:.0} ms", ms(d))),
    );
    if confirmed.is_none() {
        println!("last sign-off record: {last}");
    }
    if o.breakdown {
        breakdown(&host.agent.log(), &stages);
    }
    Ok(())
}

/// Sets every thread of `pid` (the bench's own child) to nice `-boost`; threads it starts
/// later inherit it from their creator.
fn renice_all_threads(pid: u32, boost: u8) -> Result<()> {
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: i32 = task?.file_name().to_string_lossy().parse()?;
        let tid = rustix::process::Pid::from_raw(tid).context("thread id 0")?;
        rustix::process::setpriority_process(Some(tid), -i32::from(boost))?;
    }
    Ok(())
}

/// `key=value` fields of the agent's timing lines, by client port.
fn timing_lines(
    log: &str,
) -> std::collections::HashMap<u16, std::collections::HashMap<String, u128>> {
    let mut out: std::collections::HashMap<u16, std::collections::HashMap<String, u128>> =
        std::collections::HashMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("signoff_agent::sessions::timing: ") else {
            continue;
        };
        let fields: std::collections::HashMap<String, u128> = rest
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect();
        let Some(port) = fields.get("port").and_then(|p| u16::try_from(*p).ok()) else {
            continue;
        };
        let entry = out.entry(port).or_default();
        // The first value of each field wins (a stage is seen once), except a zero.
        for (k, v) in fields {
            if v != 0 {
                entry.entry(k).or_insert(v);
            }
        }
        if line.contains("by_line=true") {
            entry.entry("by_line".into()).or_insert(1);
        }
    }
    out
}

/// `--breakdown`: for each listed login, when each stage happened, from the client's
/// `Authenticated to` (sshd accepted the key and logged `Accepted`), in milliseconds.
fn breakdown(log: &str, stages: &[(u16, Instant, Instant)]) {
    let timing = timing_lines(log);
    // What the agent warned about meanwhile (a scan that failed holds back every login).
    let mut warnings: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for line in log.lines().filter(|l| l.contains(" WARN ")) {
        let what = line
            .split_once(" WARN ")
            .map_or(line, |(_, w)| w)
            .chars()
            .take(120)
            .collect::<String>();
        *warnings.entry(what).or_default() += 1;
    }
    for (what, n) in &warnings {
        println!("agent warning ({n}x): {what}");
    }
    let (base_i, base_u) = (
        Instant::now(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
    let unix = |i: Instant| base_u - ms(base_i.saturating_duration_since(i));
    let rows: [(&str, &str); 8] = [
        ("seen_ms", "a scan first sees the connection (monitor)"),
        ("line_ms", "the agent reads its Accepted line"),
        (
            "authenticated_ms",
            "titles show it authenticated (session process)",
        ),
        ("channel_ms", "its first session channel shows"),
        ("announced_ms", "announced (Started)"),
        ("published_ms", "its scan done, handed to the sync loop"),
        ("received_ms", "taken by the sync loop"),
        ("sent_ms", "sent to the control plane"),
    ];
    let mut by_line = 0;
    let mut matched = 0;
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); rows.len() + 1];
    for (port, authenticated, event) in stages {
        let Some(t) = timing.get(port) else { continue };
        matched += 1;
        if t.contains_key("by_line") {
            by_line += 1;
        }
        let a = unix(*authenticated);
        for (i, (key, _)) in rows.iter().enumerate() {
            if let Some(v) = t.get(*key) {
                columns[i].push(*v as f64 - a);
            }
        }
        columns[rows.len()].push(unix(*event) - a);
    }
    // How long each scan took (wall time), from the scan's start to its news leaving it.
    let mut scans: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("signoff_agent::sessions::timing: ") && l.contains("scan done"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("scan_us="))
        })
        .filter_map(|v| v.parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .collect();
    scans.sort_by(f64::total_cmp);
    if let Some(max) = scans.last() {
        let q =
            |q: f64| scans[((q * scans.len() as f64).ceil() as usize).clamp(1, scans.len()) - 1];
        println!(
            "scans: {} (wall ms p50 / p99 / max: {:.1} / {:.1} / {max:.1}; {:.0} ms in all)",
            scans.len(),
            q(0.5),
            q(0.99),
            scans.iter().sum::<f64>()
        );
    }
    println!(
        "breakdown: {matched} of {} listed logins in the agent's timing log, {by_line} announced \
         by their Accepted line (before titles showed them authenticated); ms from the client's \
         `Authenticated to`, p50 / p99 / max (n):",
        stages.len()
    );
    let names = rows
        .iter()
        .map(|(_, n)| *n)
        .chain(std::iter::once("started event on the feed"));
    for (name, mut v) in names.zip(columns) {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if v.is_empty() {
                return f64::NAN;
            }
            let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            v[i]
        };
        println!(
            "  {name}: {:.0} / {:.0} / {:.0} ({})",
            at(0.5),
            at(0.99),
            v.last().copied().unwrap_or(f64::NAN),
            v.len()
        );
    }
}

/// `--lookup N`: what finding a connection's addresses costs, with N other connections
/// open on the port: the `/proc/PID/net/tcp{,6}` text tables (the whole namespace) against
/// a `sock_diag` dump filtered by the local port.
fn lookup(n: u32) -> Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let mut held = Vec::new();
    for _ in 0..n.max(1) {
        let client = TcpStream::connect(("127.0.0.1", port))?;
        let (server, _) = listener.accept()?;
        held.push((client, server));
    }
    let p = Procfs::default();
    let me = std::process::id();
    let rounds = 200;
    let time = |f: &dyn Fn() -> Result<usize>| -> Result<(Duration, usize)> {
        let t0 = Instant::now();
        let mut found = 0;
        for _ in 0..rounds {
            found = f()?;
        }
        Ok((t0.elapsed() / rounds, found))
    };
    let (text, text_n) = time(&|| Ok(p.tcp_sockets(me)?.len()))?;
    let (diag, diag_n) =
        time(&|| Ok(signoff_agent::sessions::sockdiag::connections_on(&[port])?.len()))?;
    println!(
        "{} connections on the port: /proc/PID/net/tcp+tcp6 {:.3} ms per read ({text_n} sockets listed); \
         sock_diag by port {:.3} ms per dump ({diag_n} sockets)",
        held.len(),
        ms(text),
        ms(diag)
    );
    Ok(())
}
