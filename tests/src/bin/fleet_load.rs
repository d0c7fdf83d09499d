//! `fleet-load`: thousands of agents on one control plane, or on several replicas of it on
//! one PostgreSQL database, measured.
//!
//! ```text
//! cargo run --release -p signoff-tests --bin fleet-load -- --agents 1000 \
//!     [--fanout-rounds 5] [--signoff] [--idle-secs 60] [--storm] [--outage-secs 0]
//!     [--backoff-cap-secs 10]
//!     [--replicas 3 --database postgres://… [--kill-replica] [--baseline]] [--workers 2]
//! ```
//!
//! Starts the release `signoff-server` (`SIGNOFF_SERVER_BIN` if set) and simulates
//! `--agents` agents in this one process. Each is enrolled for real (its own key, CSR and a
//! single-use join token, over the pinned-CA TLS of `Enroll`) and keeps a real mTLS gRPC
//! `Sync` stream with its own client certificate: it applies snapshots and deltas to the
//! agent's own in-memory `State`, acks each revision, reports one live session of the
//! person `mallory` (every agent), and enforces sign-off statements like a real agent
//! (verifies the SSHSIG against the order-signing key, "ends" its session, reports a
//! `SignoffResult`). State stays in memory; nothing is written to disk. Reconnects use the
//! agent's own policy (`signoff_agent::daemon::Backoff`): full-jitter exponential backoff
//! from 1 s to 10 s.
//!
//! With `--database postgres://…` the control plane runs on a fresh database made on that
//! server for this run (`fleet_load_<random>`), as `--replicas` replicas
//! ([`ControlPlane::start_replica`]). Every agent is given every replica's agent listener,
//! its list starting at replica `index % replicas`, so each replica holds about 1/N of the
//! fleet; like the agent's transport, it connects to the server that last answered first
//! and tries the others in turn, and backs off only when none answers. `--baseline` runs
//! the same workload on one SQLite server first and prints both side by side.
//! `--workers K` runs the simulated agents in K child processes of this program (one
//! socket per agent, and a process may have only so many open files); `FLEET_LOAD_LOGS=DIR`
//! keeps the servers' logs.
//!
//! Phases:
//! 1. **fan-out** (`--fanout-rounds`): a key-ID revocation through the HTTP API (of the
//!    first replica); from just before the request until each agent has applied and acked
//!    the new revision. Also the size of each delta an agent received, and whether any got
//!    a snapshot.
//! 2. **sign-off** (`--signoff`): `POST /api/v1/users/mallory/signoff`, from just before
//!    the request until the record is complete (every agent confirmed).
//! 3. **idle** (`--idle-secs`): the control plane's CPU and RSS (all replicas together)
//!    with every agent connected and nothing changing.
//! 4. **replica killed** (`--kill-replica`): SIGKILL the last replica, make a revision on
//!    the first at once, and time until every agent the killed one held is connected to
//!    another replica and has applied that revision. On one server (the baseline) the
//!    server is killed and started again instead.
//! 5. **storm** (`--storm`, one server only): SIGTERM the control plane and start it again
//!    (after `--outage-secs` down): time until every agent is connected and in sync again,
//!    and the control plane's peak CPU meanwhile. `--backoff-cap-secs` sets the simulated
//!    agents' backoff ceiling, to compare with the agent's own.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use signoff_agent::daemon::Backoff;
use signoff_agent::identity::key_and_csr;
use signoff_agent::state::State;
use signoff_agent::transport;
use signoff_proto::orders::{self, SignoffStatement};
use signoff_proto::v1;
use signoff_proto::v1::agent_sync_client::AgentSyncClient;
use signoff_proto::v1::enrollment_client::EnrollmentClient;
use signoff_tests::agent::Profile;
use signoff_tests::plane::{ControlPlane, http_request, server_binary};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

const USER: &str = "mallory";
const GROUP: &str = "fleet";
/// The file-descriptor limit asked for (root may raise the hard limit): two sockets per
/// agent when the control plane's replicas run beside the simulated fleet.
const FD_LIMIT: u64 = 262_144;

/// Simulated agents against a real control plane: fan-out, sign-off, reconnect storms,
/// replicas on PostgreSQL (see BENCHMARKS.md).
#[derive(Debug, Clone, clap::Parser)]
struct Options {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Revisions to time the fan-out of.
    #[arg(long, default_value_t = 5)]
    fanout_rounds: usize,
    /// Also time a sign-off across the fleet.
    #[arg(long)]
    signoff: bool,
    /// Seconds to measure an idle fleet.
    #[arg(long, default_value_t = 0)]
    idle_secs: u64,
    /// Stop the control plane and time the fleet's return (one server only).
    #[arg(long)]
    storm: bool,
    /// The simulated agents' backoff ceiling in seconds (the agent's own unless given).
    #[arg(long = "backoff-cap-secs")]
    backoff_cap_secs: Option<u64>,
    /// How long the control plane stays down in the storm before it starts again.
    #[arg(long = "outage-secs", default_value_t = 0)]
    outage_secs: u64,
    /// Control-plane replicas on the `--database` (1 unless given).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// A PostgreSQL server (`postgres://…`): each run makes a fresh database on it.
    #[arg(long)]
    database: Option<String>,
    /// SIGKILL the last replica after the other phases and time its agents' failover.
    #[arg(long)]
    kill_replica: bool,
    /// First run the same workload on one server on SQLite, and print both side by side.
    #[arg(long)]
    baseline: bool,
    /// Processes the simulated agents run in (each has its own open-file limit: one
    /// socket per agent).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Internal: be one of `--workers`, reading agents from stdin.
    #[arg(long, hide = true)]
    worker: bool,
}

impl Options {
    fn backoff_cap(&self) -> Duration {
        self.backoff_cap_secs
            .map_or(signoff_agent::daemon::MAX_BACKOFF, Duration::from_secs)
    }

    fn outage(&self) -> Duration {
        Duration::from_secs(self.outage_secs)
    }

    fn check(&self) -> Result<()> {
        if self.replicas == 0 || self.workers == 0 {
            bail!("--replicas and --workers must be at least 1");
        }
        match &self.database {
            Some(url) if !url.starts_with("postgres://") && !url.starts_with("postgresql://") => {
                bail!("--database must be a postgres:// URL, not {url:?}")
            }
            None if self.replicas > 1 => bail!("--replicas needs --database postgres://…"),
            None if self.baseline => {
                bail!("--baseline compares --database postgres://… with SQLite: give --database")
            }
            _ => {}
        }
        if self.storm && self.replicas > 1 {
            bail!("--storm restarts one server: with replicas, use --kill-replica");
        }
        Ok(())
    }
}

/// Where one run's control plane keeps its data.
#[derive(Debug, Clone)]
enum Backend {
    /// One server on its own SQLite database.
    Sqlite,
    /// `replicas` servers on a fresh database on this PostgreSQL server.
    Postgres { server_url: String, replicas: usize },
}

impl Backend {
    fn label(&self) -> String {
        match self {
            Backend::Sqlite => "SQLite, 1 server".to_owned(),
            Backend::Postgres { replicas, .. } => format!("PostgreSQL, {replicas} replicas"),
        }
    }
}

/// What the simulated agents tell the measuring side.
#[derive(Debug)]
enum Report {
    /// Agent `agent` applied and acked `revision` at `at`.
    Applied {
        agent: usize,
        revision: u64,
        at: Instant,
    },
    /// A delta of this many bytes arrived.
    DeltaBytes(usize),
    /// A snapshot arrived after the first one on a stream that was not new.
    LateSnapshot,
}

/// One enrolled simulated agent.
#[derive(Clone)]
struct Enrolled {
    index: usize,
    host_id: String,
    tls: Arc<rustls::ClientConfig>,
    /// The replica it tries first.
    home: usize,
    /// Its certificate and key (PEM), for a worker process.
    identity: Arc<(String, String)>,
}

/// An agent's last applied revision, and when.
type Applied = (u64, Option<Instant>);

/// No replica holds the agent's stream (see [`Shared::holder`]).
const NOBODY: usize = usize::MAX;

struct Shared {
    /// Every replica's agent listener, `https://localhost:PORT`.
    servers: Vec<String>,
    signers: Vec<ssh_key::PublicKey>,
    reports: mpsc::UnboundedSender<Report>,
    /// Per agent: the replica whose stream it holds now, or [`NOBODY`]; set and cleared
    /// by [`Holding`]. The streams up now are counted from it ([`Shared::connected`]): the
    /// old counter, decremented after every attempt, wrapped below zero whenever a
    /// connection was refused.
    holder: Vec<AtomicUsize>,
    /// Per agent: streams that came up and got their first message (in sync on that
    /// stream). Per agent, so an agent that reconnects twice is not counted for another.
    synced_streams: Vec<AtomicU64>,
}

/// One agent's stream held on a replica, from the moment the call is answered until the
/// stream ends however it ends.
struct Holding<'a> {
    shared: &'a Shared,
    agent: usize,
}

impl Shared {
    /// Agents with a stream up now.
    fn connected(&self) -> usize {
        self.holder
            .iter()
            .filter(|h| h.load(Ordering::Relaxed) != NOBODY)
            .count()
    }

    /// Agents whose stream `replica` holds now.
    fn held_by(&self, replica: usize) -> usize {
        self.holder
            .iter()
            .filter(|h| h.load(Ordering::Relaxed) == replica)
            .count()
    }
}

impl<'a> Holding<'a> {
    fn new(shared: &'a Shared, agent: usize, replica: usize) -> Holding<'a> {
        shared.holder[agent].store(replica, Ordering::Relaxed);
        Holding { shared, agent }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.shared.holder[self.agent].store(NOBODY, Ordering::Relaxed);
    }
}

/// One run's figures, for the side-by-side table.
#[derive(Debug, Default)]
struct Figures {
    label: String,
    load_before: String,
    load_after: String,
    enroll: Duration,
    connect: Duration,
    rss_mib: u64,
    fanout: Option<[Duration; 3]>,
    signoff: Option<Duration>,
    idle: Option<(f64, u64)>,
    /// Agents the killed replica held, all back in sync; p50 and p99 of them.
    kill: Option<(usize, [Duration; 3])>,
}

fn json_of(res: &signoff_tests::plane::HttpResponse) -> Value {
    serde_json::from_str(&res.body).unwrap_or(Value::String(res.body.clone()))
}

fn main() -> Result<()> {
    let o = <Options as clap::Parser>::parse();
    o.check()?;
    let limit = raise_fd_limit()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if o.worker {
        return rt.block_on(worker());
    }
    println!(
        "file descriptors: {limit} per process, {} agent process(es)",
        o.workers
    );
    rt.block_on(run_all(o))
}

/// Raises this process's (and so the servers' it starts) open-file limit: to [`FD_LIMIT`]
/// where allowed (root), else to the hard limit. Returns the limit now.
fn raise_fd_limit() -> Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if hard < FD_LIMIT && setrlimit(Resource::RLIMIT_NOFILE, FD_LIMIT, FD_LIMIT).is_ok() {
        return Ok(FD_LIMIT);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// (user+system CPU seconds, RSS KiB, peak RSS KiB) of `pid`.
fn usage(pid: u32) -> Result<(f64, u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad stat"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    let hz = 100.0;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((ticks / hz, kib("VmRSS:"), kib("VmHWM:")))
}

/// [`usage`] summed over every running replica.
fn usage_all(planes: &[ControlPlane]) -> Result<(f64, u64, u64)> {
    let mut sum = (0.0, 0, 0);
    for pid in planes.iter().filter_map(ControlPlane::pid) {
        let (cpu, rss, hwm) = usage(pid)?;
        sum = (sum.0 + cpu, sum.1 + rss, sum.2 + hwm);
    }
    Ok(sum)
}

fn pct(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
    samples.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Makes an empty database `fleet_load_<random>` on the PostgreSQL server at `url` and
/// returns its URL.
fn fresh_database(url: &str) -> Result<String> {
    let name = format!("fleet_load_{:016x}", rand::random::<u64>());
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .context("running psql (apt-get install postgresql-client)")?;
    if !out.status.success() {
        bail!(
            "psql could not create {name} on {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Ok(format!("{base}/{name}{query}"))
}

/// Starts the control plane of `backend`: one server, or the replicas (the first makes
/// the keys, the others get a copy).
fn start_planes(bin: &Path, backend: &Backend) -> Result<Vec<ControlPlane>> {
    match backend {
        Backend::Sqlite => Ok(vec![ControlPlane::start_with(bin)?]),
        Backend::Postgres {
            server_url,
            replicas,
        } => {
            let url = fresh_database(server_url)?;
            println!("database {url}");
            let first = ControlPlane::start_replica(bin, &url, None)?;
            let mut planes = vec![first];
            for _ in 1..*replicas {
                let next = ControlPlane::start_replica(bin, &url, Some(&planes[0]))?;
                planes.push(next);
            }
            Ok(planes)
        }
    }
}

async fn run_all(o: Options) -> Result<()> {
    let bin = match std::env::var_os("SIGNOFF_SERVER_BIN") {
        Some(bin) => bin.into(),
        None => tokio::task::block_in_place(|| server_binary(Profile::Release))?,
    };
    let backend = match &o.database {
        Some(url) => Backend::Postgres {
            server_url: url.clone(),
            replicas: o.replicas,
        },
        None => Backend::Sqlite,
    };
    let baseline = if o.baseline {
        println!("== baseline: {} ==", Backend::Sqlite.label());
        Some(run(&o, &bin, &Backend::Sqlite).await?)
    } else {
        None
    };
    println!("== {} ==", backend.label());
    let main = run(&o, &bin, &backend).await?;
    if let Some(base) = baseline {
        compare(&o, &main, &base);
    }
    Ok(())
}

/// The two runs side by side, with the ratio (this run / baseline): ratios hold on a noisy
/// machine, absolute times less so.
fn compare(o: &Options, main: &Figures, base: &Figures) {
    let secs = |d: Duration| d.as_secs_f64();
    let mut rows: Vec<(String, Option<f64>, Option<f64>, &str)> = vec![
        (
            "enroll all".into(),
            Some(secs(main.enroll)),
            Some(secs(base.enroll)),
            "s",
        ),
        (
            "connect all, in sync".into(),
            Some(secs(main.connect)),
            Some(secs(base.connect)),
            "s",
        ),
        (
            "control plane RSS after connect".into(),
            Some(main.rss_mib as f64),
            Some(base.rss_mib as f64),
            "MiB",
        ),
    ];
    for (i, name) in ["p50", "p99", "max"].iter().enumerate() {
        rows.push((
            format!("fan-out {name}"),
            main.fanout.map(|f| secs(f[i]) * 1e3),
            base.fanout.map(|f| secs(f[i]) * 1e3),
            "ms",
        ));
    }
    rows.push((
        "sign-off complete".into(),
        main.signoff.map(|d| secs(d) * 1e3),
        base.signoff.map(|d| secs(d) * 1e3),
        "ms",
    ));
    rows.push((
        "idle CPU (% of a core)".into(),
        main.idle.map(|i| i.0),
        base.idle.map(|i| i.0),
        "%",
    ));
    for (i, name) in ["p50", "p99", "all"].iter().enumerate() {
        rows.push((
            format!("killed server's agents back in sync, {name}"),
            main.kill.map(|k| secs(k.1[i])),
            base.kill.map(|k| secs(k.1[i])),
            "s",
        ));
    }
    println!();
    println!(
        "| {} agents | {} | {} | ratio |",
        o.agents, main.label, base.label
    );
    println!("| --- | ---: | ---: | ---: |");
    for (name, a, b, unit) in rows {
        let cell = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1} {unit}"));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".to_owned(),
        };
        println!("| {name} | {} | {} | {ratio} |", cell(a), cell(b));
    }
    println!(
        "load average (1/5/15 min): {}: {} → {}; {}: {} → {}",
        main.label,
        main.load_before,
        main.load_after,
        base.label,
        base.load_before,
        base.load_after
    );
    if let (Some((held, _)), Some((held_base, _))) = (main.kill, base.kill) {
        println!(
            "killed: {}: a replica holding {held} agents (they fail over to the others); {}: the only server, SIGKILLed and started again ({held_base} agents)",
            main.label, base.label
        );
    }
}

/// One run of the whole workload on `backend`; stops the simulated agents and the control
/// plane at the end.
async fn run(o: &Options, bin: &Path, backend: &Backend) -> Result<Figures> {
    let mut figures = Figures {
        label: backend.label(),
        load_before: loadavg(),
        ..Figures::default()
    };
    println!("load average: {}", figures.load_before);
    let mut planes = tokio::task::block_in_place(|| start_planes(bin, backend))?;
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let result = workload(o, &mut planes, &mut tasks, &mut figures).await;
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    // The servers' logs, when asked for (FLEET_LOAD_LOGS=DIR).
    if let Some(dir) = std::env::var_os("FLEET_LOAD_LOGS") {
        for (i, p) in planes.iter().enumerate() {
            let name = format!("{}-{i}.log", figures.label.replace([' ', ','], "_"));
            fs::write(Path::new(&dir).join(name), p.log())?;
        }
    }
    // Stop the replicas (SIGKILL on drop) before the next run.
    drop(planes);
    figures.load_after = loadavg();
    println!("load average: {}", figures.load_after);
    result.map(|()| figures)
}

async fn workload(
    o: &Options,
    planes: &mut [ControlPlane],
    tasks: &mut Vec<JoinHandle<()>>,
    figures: &mut Figures,
) -> Result<()> {
    let api = &planes[0];
    let cli = |args: &[&str]| tokio::task::block_in_place(|| api.cli_json(args));
    cli(&["group", "add", GROUP])?;
    cli(&["user", "add", USER, "--key-id", "mallory@corp"])?;
    cli(&["grant", "add", USER, "deploy", GROUP])?;
    let hr = cli(&["api-token", "create", "hr", "--scope", "read,write,signoff"])?;
    let token = hr["secret"].as_str().unwrap_or_default().to_owned();

    let t = Instant::now();
    let count = o.agents.to_string();
    let tokens = cli(&["token", "create", "--groups", GROUP, "--count", &count])?;
    let tokens: Vec<Value> = match tokens {
        Value::Array(a) => a,
        one => vec![one],
    };
    println!(
        "made {} join tokens in {:.1} s",
        tokens.len(),
        t.elapsed().as_secs_f64()
    );
    let pin = tokens[0]["ca_pin"].as_str().unwrap_or_default().to_owned();
    let servers: Vec<String> = planes
        .iter()
        .map(|p| format!("https://localhost:{}", p.agent_port()))
        .collect();
    let signer = fs::read_to_string(api.data_dir().join("order-signing.key.pub"))?;
    let signers = vec![ssh_key::PublicKey::from_openssh(signer.trim())?];

    // Enrollment, 32 at a time, each agent at its own first replica.
    let t = Instant::now();
    let enroll_tls = transport::enroll_config(&pin)?;
    let enroll_channels = servers
        .iter()
        .map(|s| transport::channel(s, enroll_tls.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let limit = Arc::new(Semaphore::new(32));
    let mut enrolling = Vec::new();
    for (index, tok) in tokens.iter().enumerate() {
        let secret = tok["secret"].as_str().unwrap_or_default().to_owned();
        let home = index % servers.len();
        let channel = enroll_channels[home].clone();
        let limit = limit.clone();
        enrolling.push(tokio::spawn(async move {
            let _permit = limit.acquire().await?;
            let host_id = format!("sim-{index:05}");
            let (key, csr) = key_and_csr(&host_id)?;
            let resp = EnrollmentClient::new(channel)
                .enroll(v1::EnrollRequest {
                    join_token: secret,
                    host_id: host_id.clone(),
                    hostname: host_id.clone(),
                    csr_der: csr,
                    host_keys: vec![],
                })
                .await?
                .into_inner();
            let tls = transport::mtls_config(
                &resp.ca_certificate_pem,
                Some((&resp.certificate_pem, &key)),
            )?;
            Ok::<_, anyhow::Error>((
                Enrolled {
                    index,
                    host_id,
                    tls,
                    home,
                    identity: Arc::new((resp.certificate_pem, key)),
                },
                resp.ca_certificate_pem,
            ))
        }));
    }
    let mut agents = Vec::new();
    let mut agent_ca = String::new();
    for t in enrolling {
        let (a, ca) = t.await??;
        agents.push(a);
        agent_ca = ca;
    }
    drop(enroll_channels);
    figures.enroll = t.elapsed();
    println!(
        "enrolled {} agents in {:.1} s",
        agents.len(),
        figures.enroll.as_secs_f64()
    );

    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        servers,
        signers,
        reports: reports_tx,
        holder: (0..agents.len())
            .map(|_| AtomicUsize::new(NOBODY))
            .collect(),
        synced_streams: (0..agents.len()).map(|_| AtomicU64::new(0)).collect(),
    });
    // Per agent: the last revision applied and when.
    let applied: Arc<Mutex<Vec<Applied>>> = Arc::new(Mutex::new(vec![(0, None); agents.len()]));
    let delta_bytes = Arc::new(Mutex::new(Vec::<usize>::new()));
    let late_snapshots = Arc::new(AtomicUsize::new(0));
    {
        let applied = applied.clone();
        let delta_bytes = delta_bytes.clone();
        let late_snapshots = late_snapshots.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(r) = reports.recv().await {
                match r {
                    Report::Applied {
                        agent,
                        revision,
                        at,
                    } => {
                        if let Ok(mut a) = applied.lock() {
                            a[agent] = (revision, Some(at));
                        }
                    }
                    Report::DeltaBytes(n) => {
                        if let Ok(mut d) = delta_bytes.lock() {
                            d.push(n);
                        }
                    }
                    Report::LateSnapshot => {
                        late_snapshots.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let t = Instant::now();
    if o.workers > 1 {
        let signer = signer.trim().to_owned();
        spawn_workers(o, &agents, &agent_ca, &signer, &shared, tasks)?;
    } else {
        for a in &agents {
            let shared = shared.clone();
            let a = a.clone();
            let cap = o.backoff_cap();
            tasks.push(tokio::spawn(async move { simulate(a, shared, cap).await }));
        }
    }
    let revision = http_get(&planes[0], &token, "/api/v1/revision")?["revision"]
        .as_u64()
        .unwrap_or(0);
    let all_at = |rev: u64| {
        applied
            .lock()
            .map(|a| a.iter().all(|(r, _)| *r >= rev))
            .unwrap_or(false)
    };
    wait_until(Duration::from_secs(600), || all_at(revision)).await?;
    figures.connect = t.elapsed();
    println!(
        "all {} agents connected and in sync at revision {revision} in {:.1} s",
        agents.len(),
        figures.connect.as_secs_f64()
    );
    let per_replica: Vec<usize> = (0..planes.len()).map(|r| shared.held_by(r)).collect();
    println!(
        "streams per replica: {per_replica:?} (connected: {})",
        shared.connected()
    );
    for (i, p) in planes.iter().enumerate() {
        if let Some(pid) = p.pid() {
            let (_, rss, hwm) = usage(pid)?;
            println!(
                "control plane {i} after connect: RSS {} MiB (peak {} MiB)",
                rss / 1024,
                hwm / 1024
            );
        }
    }
    figures.rss_mib = usage_all(planes)?.1 / 1024;

    // 1. Fan-out.
    let mut all = Vec::new();
    let mut worst_round = Duration::ZERO;
    if let Ok(mut d) = delta_bytes.lock() {
        d.clear();
    }
    for round in 0..o.fanout_rounds {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        let rev = revoke(&planes[0], &token, &format!("fanout-{round}"))?;
        wait_until(Duration::from_secs(120), || all_at(rev)).await?;
        let mut lat: Vec<Duration> = applied
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .iter()
            .filter_map(|(_, at)| at.map(|at| at.saturating_duration_since(t0)))
            .collect();
        let max = pct(&mut lat, 1.0);
        worst_round = worst_round.max(max);
        println!(
            "fan-out round {round}: revision {rev}: p50 {} p99 {} max {}",
            ms(pct(&mut lat, 0.5)),
            ms(pct(&mut lat, 0.99)),
            ms(max)
        );
        all.extend(lat);
    }
    if !all.is_empty() {
        let sizes = delta_bytes.lock().map(|d| d.clone()).unwrap_or_default();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
        let f = [pct(&mut all, 0.5), pct(&mut all, 0.99), pct(&mut all, 1.0)];
        figures.fanout = Some(f);
        println!(
            "fan-out, {} agents x {} rounds: p50 {} p99 {} max {}; deltas received: {}, mean {:.0} bytes, max {} bytes; snapshots after the first: {}",
            agents.len(),
            o.fanout_rounds,
            ms(f[0]),
            ms(f[1]),
            ms(f[2]),
            sizes.len(),
            mean,
            sizes.iter().max().copied().unwrap_or(0),
            late_snapshots.load(Ordering::Relaxed),
        );
    }

    // 2. Sign-off.
    if o.signoff {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        let res = tokio::task::block_in_place(|| {
            http_request(
                planes[0].http_addr(),
                "POST",
                &format!("/api/v1/users/{USER}/signoff"),
                &token,
                Some(&json!({"reason": "load"}).to_string()),
            )
        })?;
        if res.status != 201 {
            bail!("sign-off answered {}: {}", res.status, res.body);
        }
        let acked = t0.elapsed();
        loop {
            let v = http_get(&planes[0], &token, &format!("/api/v1/users/{USER}/signoff"))?;
            if !v["completed_at"].is_null() {
                let complete = t0.elapsed();
                let killed: usize = v["hosts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| h["killed_sessions"].as_array().map_or(0, Vec::len))
                    .sum();
                figures.signoff = Some(complete);
                println!(
                    "sign-off over {} hosts ({} sessions ended): acknowledged in {}, complete in {}",
                    agents.len(),
                    killed,
                    ms(acked),
                    ms(complete)
                );
                break;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("sign-off not complete after 120 s: {v}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // 3. Idle.
    if o.idle_secs > 0 {
        let (cpu0, _, _) = usage_all(planes)?;
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(o.idle_secs)).await;
        let (cpu1, rss, hwm) = usage_all(planes)?;
        let cpu = 100.0 * (cpu1 - cpu0) / t0.elapsed().as_secs_f64();
        figures.idle = Some((cpu, rss / 1024));
        println!(
            "idle {} s with {} agents connected: control plane CPU {cpu:.2}% of one core, RSS {} MiB (peak {} MiB)",
            o.idle_secs,
            shared.connected(),
            rss / 1024,
            hwm / 1024
        );
    }

    // 4. A server killed.
    if o.kill_replica {
        figures.kill = Some(kill_one(planes, &token, &shared, &applied).await?);
    }

    // 5. Reconnect storm.
    if o.storm {
        storm(o, &mut planes[0], &token, &shared, &all_at).await?;
    }
    Ok(())
}

/// A key-ID revocation through the HTTP API of `plane`; the revision it made.
fn revoke(plane: &ControlPlane, token: &str, key_id: &str) -> Result<u64> {
    let res = tokio::task::block_in_place(|| {
        http_request(
            plane.http_addr(),
            "POST",
            "/api/v1/revocations",
            token,
            Some(&json!({"kind": "key_id", "key_id": key_id, "reason": "load"}).to_string()),
        )
    })?;
    if res.status != 201 {
        bail!("revocation answered {}: {}", res.status, res.body);
    }
    Ok(json_of(&res)["revision"].as_u64().unwrap_or(0))
}

/// SIGKILLs the last replica (with one server: kills it and starts it again), makes a
/// revision on the first at once, and waits until every agent the killed one held has a
/// new stream on a live replica and has applied that revision. Returns how many agents it
/// held and (p50, p99, all) of their times back, from the kill.
async fn kill_one(
    planes: &mut [ControlPlane],
    token: &str,
    shared: &Shared,
    applied: &Mutex<Vec<Applied>>,
) -> Result<(usize, [Duration; 3])> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = planes.len() - 1;
    let held: Vec<usize> = (0..shared.holder.len())
        .filter(|&i| shared.holder[i].load(Ordering::Relaxed) == victim)
        .collect();
    let marks: Vec<u64> = held
        .iter()
        .map(|&i| shared.synced_streams[i].load(Ordering::Relaxed))
        .collect();
    let t0 = Instant::now();
    tokio::task::block_in_place(|| planes[victim].kill())?;
    if planes.len() == 1 {
        tokio::task::block_in_place(|| planes[0].restart())?;
    }
    let rev = revoke(&planes[0], token, "after-kill")?;
    let made = t0.elapsed();
    let mut back: Vec<Option<Duration>> = vec![None; held.len()];
    let mut left = held.len();
    let mut next_progress = Duration::from_secs(1);
    while left > 0 {
        {
            let a = applied.lock().map_err(|_| anyhow!("poisoned"))?;
            if t0.elapsed() >= next_progress {
                next_progress += Duration::from_secs(1);
                let up = |&(k, &i): &(usize, &usize)| {
                    let h = shared.holder[i].load(Ordering::Relaxed);
                    h != NOBODY && (planes.len() == 1 || h != victim)
                        || shared.synced_streams[i].load(Ordering::Relaxed) > marks[k]
                };
                let reconnected = held.iter().enumerate().filter(up).count();
                let synced = held
                    .iter()
                    .enumerate()
                    .filter(|&(k, &i)| shared.synced_streams[i].load(Ordering::Relaxed) > marks[k])
                    .count();
                let at_rev = held.iter().filter(|&&i| a[i].0 >= rev).count();
                println!(
                    "  {:.0} s after the kill: of {} agents, {reconnected} reconnected, {synced} with a stream in sync, {at_rev} at revision {rev}",
                    t0.elapsed().as_secs_f64(),
                    held.len()
                );
            }
            for (k, &i) in held.iter().enumerate() {
                if back[k].is_some() {
                    continue;
                }
                let holder = shared.holder[i].load(Ordering::Relaxed);
                let live_elsewhere = holder != NOBODY && (planes.len() == 1 || holder != victim);
                if live_elsewhere
                    && shared.synced_streams[i].load(Ordering::Relaxed) > marks[k]
                    && a[i].0 >= rev
                {
                    back[k] = Some(t0.elapsed());
                    left -= 1;
                }
            }
        }
        if t0.elapsed() > Duration::from_secs(180) {
            bail!(
                "{left} of the killed server's {} agents not back in sync after 180 s",
                held.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut times: Vec<Duration> = back.into_iter().flatten().collect();
    let f = [
        pct(&mut times, 0.5),
        pct(&mut times, 0.99),
        pct(&mut times, 1.0),
    ];
    // The others got the revision meanwhile without reconnecting.
    let everyone = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if applied
                .lock()
                .map(|a| a.iter().all(|(r, _)| *r >= rev))
                .unwrap_or(false)
            {
                return t0.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .map_err(|_| anyhow!("not every agent applied revision {rev} within 60 s of the kill"))?;
    let per_replica: Vec<usize> = (0..planes.len()).map(|r| shared.held_by(r)).collect();
    println!(
        "{} killed holding {} agents; revision {rev} made {} after the kill; its agents back in sync: p50 {} p99 {} all {}; every agent at {rev} {}; streams per replica now {per_replica:?} (connected: {})",
        if planes.len() == 1 {
            "server (restarted at once)".to_owned()
        } else {
            format!("replica {victim}")
        },
        held.len(),
        ms(made),
        ms(f[0]),
        ms(f[1]),
        ms(f[2]),
        ms(everyone),
        shared.connected()
    );
    Ok((held.len(), f))
}

/// SIGTERM the one server, start it again after the outage, and time the fleet's return.
async fn storm(
    o: &Options,
    plane: &mut ControlPlane,
    token: &str,
    shared: &Shared,
    all_at: &impl Fn(u64) -> bool,
) -> Result<()> {
    let marks: Vec<u64> = shared
        .synced_streams
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect();
    tokio::task::block_in_place(|| plane.stop())?;
    // The outage (`--outage-secs`): the agents back off meanwhile, each further the
    // longer it lasts, up to their backoff ceiling.
    tokio::time::sleep(o.outage()).await;
    let t0 = Instant::now();
    tokio::task::block_in_place(|| plane.restart())?;
    let restarted = t0.elapsed();
    let pid = plane.pid().ok_or_else(|| anyhow!("no server pid"))?;
    // Every agent is back once it has a new stream up and has applied the current
    // revision on it.
    let rev = http_get(plane, token, "/api/v1/revision")?["revision"]
        .as_u64()
        .unwrap_or(0);
    let n = marks.len();
    let mut peak = 0.0f64;
    let (mut cpu_prev, _, _) = usage(pid)?;
    let mut prev = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (cpu, _, _) = usage(pid)?;
        let now = Instant::now();
        peak = peak.max(100.0 * (cpu - cpu_prev) / (now - prev).as_secs_f64());
        cpu_prev = cpu;
        prev = now;
        let back = (0..n)
            .filter(|&i| {
                shared.holder[i].load(Ordering::Relaxed) != NOBODY
                    && shared.synced_streams[i].load(Ordering::Relaxed) > marks[i]
            })
            .count();
        if back == n && all_at(rev) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("only {back} of {n} agents back after 300 s");
        }
    }
    let (_, rss, hwm) = usage(pid)?;
    println!(
        "reconnect storm after a {} outage, backoff ceiling {}: {} agents back in sync {} after the restart began (server up after {}); peak control-plane CPU {:.0}% of one core; RSS {} MiB (peak {} MiB)",
        ms(o.outage()),
        ms(o.backoff_cap()),
        n,
        ms(t0.elapsed()),
        ms(restarted),
        peak,
        rss / 1024,
        hwm / 1024
    );
    Ok(())
}

fn http_get(plane: &ControlPlane, token: &str, path: &str) -> Result<Value> {
    let res =
        tokio::task::block_in_place(|| http_request(plane.http_addr(), "GET", path, token, None))?;
    if res.status != 200 {
        bail!("GET {path} answered {}: {}", res.status, res.body);
    }
    Ok(json_of(&res))
}

async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// The order in which agent `index` tries `n` replicas: its home (`index % n`) first,
/// then the others, rotated by `index / n`, so that the agents of a replica that dies
/// spread over all the others rather than all moving to the next one.
fn failover_order(index: usize, n: usize) -> Vec<usize> {
    let home = index % n;
    let mut others: Vec<usize> = (1..n).map(|k| (home + k) % n).collect();
    if !others.is_empty() {
        let len = others.len();
        others.rotate_left((index / n) % len);
    }
    let mut order = vec![home];
    order.extend(others);
    order
}

/// One simulated agent, forever: connect (to the replica that last answered, else each
/// other in turn), sync, and when no replica answers or the stream ends, back off.
async fn simulate(a: Enrolled, shared: Arc<Shared>, backoff_cap: Duration) {
    let mut state = State::new();
    let mut backoff = Backoff::with_cap(backoff_cap);
    let session_id = format!("{}:1", 100_000 + a.index);
    let mut session_live = true;
    let order = failover_order(a.index, shared.servers.len());
    let mut preferred = 0;
    let n = order.len();
    loop {
        for step in 0..n {
            let replica = order[(preferred + step) % n];
            let started = Instant::now();
            let mut up = false;
            let _ = stream(
                &a,
                &shared,
                replica,
                &mut state,
                &session_id,
                &mut session_live,
                &mut up,
            )
            .await;
            if up {
                preferred = (preferred + step) % n;
                if started.elapsed() > Duration::from_secs(60) {
                    backoff.reset();
                }
                break;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One stream to `replica`; `up` is set once the control plane answered the call.
#[allow(clippy::too_many_arguments)]
async fn stream(
    a: &Enrolled,
    shared: &Shared,
    replica: usize,
    state: &mut State,
    session_id: &str,
    session_live: &mut bool,
    up: &mut bool,
) -> Result<()> {
    let channel = transport::channel(&shared.servers[replica], a.tls.clone())?;
    let mut client = AgentSyncClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    tx.send(v1::AgentMessage {
        body: Some(v1::agent_message::Body::Hello(v1::Hello {
            host_id: a.host_id.clone(),
            applied_revision: state.revision(),
            agent_version: "fleet-load".into(),
            heartbeat_secs: 0,
            witnessed_seq: 0,
        })),
    })
    .await?;
    let mut inbound = client.sync(ReceiverStream::new(rx)).await?.into_inner();
    *up = true;
    let _holding = Holding::new(shared, a.index, replica);
    let sessions = if *session_live {
        vec![v1::Session {
            id: session_id.to_owned(),
            account: "deploy".into(),
            key_id: "mallory@corp".into(),
            serial: 1,
            source_address: "192.0.2.1".into(),
            source_port: 40000,
            started_at: 1,
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    tx.send(v1::AgentMessage {
        body: Some(v1::agent_message::Body::SessionList(v1::SessionList {
            sessions,
        })),
    })
    .await?;
    let mut statements: BTreeMap<u64, v1::SignedStatement> = BTreeMap::new();
    let mut first = true;
    while let Some(msg) = inbound.message().await? {
        let added: Vec<v1::SignedStatement> = match msg.body {
            Some(v1::control_message::Body::Snapshot(view)) => {
                if !first {
                    let _ = shared.reports.send(Report::LateSnapshot);
                }
                let added = view.signoffs.clone();
                statements = view.signoffs.iter().map(|s| (s.id, s.clone())).collect();
                *state = State::from_snapshot(view)?;
                added
            }
            Some(v1::control_message::Body::Delta(delta)) => {
                let _ = shared
                    .reports
                    .send(Report::DeltaBytes(prost::Message::encoded_len(&delta)));
                state.apply_delta(&delta)?;
                for id in &delta.remove_signoffs {
                    statements.remove(id);
                }
                for s in &delta.add_signoffs {
                    statements.insert(s.id, s.clone());
                }
                delta.add_signoffs.clone()
            }
            Some(v1::control_message::Body::Heartbeat(_)) => {
                if first {
                    let _ = shared.reports.send(Report::Applied {
                        agent: a.index,
                        revision: state.revision(),
                        at: Instant::now(),
                    });
                    shared.synced_streams[a.index].fetch_add(1, Ordering::Relaxed);
                    first = false;
                }
                continue;
            }
            _ => continue,
        };
        tx.send(v1::AgentMessage {
            body: Some(v1::agent_message::Body::Ack(v1::Ack {
                revision: state.revision(),
            })),
        })
        .await?;
        let _ = shared.reports.send(Report::Applied {
            agent: a.index,
            revision: state.revision(),
            at: Instant::now(),
        });
        if first {
            shared.synced_streams[a.index].fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        for s in added {
            let mut r = v1::SignoffResult {
                signoff_id: s.id,
                ..Default::default()
            };
            match orders::verify(&s.statement, &s.signature, &shared.signers)
                .map_err(|e| e.to_string())
                .and_then(|_| SignoffStatement::decode(&s.statement).map_err(|e| e.to_string()))
            {
                Ok(st) => {
                    r.enforced = true;
                    if *session_live && st.covers("mallory@corp", "") {
                        *session_live = false;
                        r.ended_sessions.push(session_id.to_owned());
                        tx.send(v1::AgentMessage {
                            body: Some(v1::agent_message::Body::SessionEnded(v1::SessionEnded {
                                id: session_id.to_owned(),
                                ended_at: 2,
                            })),
                        })
                        .await?;
                    }
                }
                Err(e) => r.refusal = e,
            }
            tx.send(v1::AgentMessage {
                body: Some(v1::agent_message::Body::SignoffResult(r)),
            })
            .await?;
        }
    }
    Err(anyhow!("stream closed")).context("sync")
}

/// Microseconds since the Unix epoch: the clock worker processes and the measuring side
/// share (an `Instant` does not cross a process boundary).
fn wall_us(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Starts `--workers` processes of this program (`--worker`), agent `i` in worker
/// `i % workers`, and turns what they print into this side's [`Shared`] state and reports.
/// Each worker is killed when its task is aborted (the end of the run).
fn spawn_workers(
    o: &Options,
    agents: &[Enrolled],
    ca: &str,
    signer: &str,
    shared: &Arc<Shared>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<()> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    for w in 0..o.workers {
        let mine: Vec<Value> = agents
            .iter()
            .filter(|a| a.index % o.workers == w)
            .map(|a| {
                json!({"index": a.index, "host_id": a.host_id, "home": a.home,
                       "cert": a.identity.0, "key": a.identity.1})
            })
            .collect();
        let job = json!({
            "servers": shared.servers,
            "signer": signer,
            "ca": ca,
            "total": agents.len(),
            "backoff_cap_ms": u64::try_from(o.backoff_cap().as_millis()).unwrap_or(u64::MAX),
            "agents": mine,
        });
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--worker")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            // Holding the child (killed on drop) and its stdin (the worker exits when it
            // closes) for as long as this task runs.
            let _child = child;
            let mut line = job.to_string();
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let f: Vec<&str> = line.split_whitespace().collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                let idx = || num(1).and_then(|i| usize::try_from(i).ok());
                match f.first().copied() {
                    Some("A") => {
                        if let (Some(agent), Some(revision), Some(us)) = (idx(), num(2), num(3)) {
                            let now = wall_us(std::time::SystemTime::now());
                            let ago = Duration::from_micros(now.saturating_sub(us));
                            let at = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
                            let _ = shared.reports.send(Report::Applied {
                                agent,
                                revision,
                                at,
                            });
                        }
                    }
                    Some("D") => {
                        if let Some(n) = idx() {
                            let _ = shared.reports.send(Report::DeltaBytes(n));
                        }
                    }
                    Some("L") => {
                        let _ = shared.reports.send(Report::LateSnapshot);
                    }
                    Some("H") => {
                        if let (Some(agent), Some(r)) = (idx(), f.get(2)) {
                            let r = r.parse().unwrap_or(NOBODY);
                            shared.holder[agent].store(r, Ordering::Relaxed);
                        }
                    }
                    Some("S") => {
                        if let (Some(agent), Some(n)) = (idx(), num(2)) {
                            shared.synced_streams[agent].store(n, Ordering::Relaxed);
                        }
                    }
                    _ => {}
                }
            }
        }));
    }
    Ok(())
}

/// A worker process (`--worker`): simulates the agents given on stdin's first line and
/// prints, one per line, `A agent revision µs` (applied), `D bytes` (a delta), `L` (a late
/// snapshot), `H agent replica|-` (the stream's holder changed) and `S agent count`
/// (streams in sync). Exits when stdin closes.
async fn worker() -> Result<()> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    let mut input = BufReader::new(tokio::io::stdin()).lines();
    let job: Value = serde_json::from_str(
        &input
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("no job on stdin"))?,
    )?;
    tokio::spawn(async move {
        while let Ok(Some(_)) = input.next_line().await {}
        std::process::exit(0);
    });
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let servers: Vec<String> = job["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let signers = vec![ssh_key::PublicKey::from_openssh(&text(&job["signer"]))?];
    let ca = text(&job["ca"]);
    let total = job["total"].as_u64().unwrap_or(0) as usize;
    let cap = Duration::from_millis(job["backoff_cap_ms"].as_u64().unwrap_or(10_000));
    let mut agents = Vec::new();
    for a in job["agents"].as_array().into_iter().flatten() {
        let (cert, key) = (text(&a["cert"]), text(&a["key"]));
        agents.push(Enrolled {
            index: a["index"].as_u64().unwrap_or(0) as usize,
            host_id: text(&a["host_id"]),
            tls: transport::mtls_config(&ca, Some((&cert, &key)))?,
            home: a["home"].as_u64().unwrap_or(0) as usize,
            identity: Arc::new((cert, key)),
        });
    }
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        servers,
        signers,
        reports: reports_tx,
        holder: (0..total).map(|_| AtomicUsize::new(NOBODY)).collect(),
        synced_streams: (0..total).map(|_| AtomicU64::new(0)).collect(),
    });
    let mine: Vec<usize> = agents.iter().map(|a| a.index).collect();
    for a in agents {
        let shared = shared.clone();
        tokio::spawn(async move { simulate(a, shared, cap).await });
    }
    // Reports as they come; holders and stream counts as they change, looked at every
    // 5 ms.
    let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
    let mut seen: Vec<(usize, u64)> = vec![(NOBODY, 0); mine.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    loop {
        let mut text = String::new();
        tokio::select! {
            r = reports.recv() => match r {
                Some(Report::Applied { agent, revision, at }) => {
                    let us = wall_us(std::time::SystemTime::now())
                        .saturating_sub(u64::try_from(at.elapsed().as_micros()).unwrap_or(0));
                    text = format!("A {agent} {revision} {us}\n");
                }
                Some(Report::DeltaBytes(n)) => text = format!("D {n}\n"),
                Some(Report::LateSnapshot) => text = "L\n".to_owned(),
                None => return Ok(()),
            },
            _ = tick.tick() => {
                for (k, &i) in mine.iter().enumerate() {
                    let now = (
                        shared.holder[i].load(Ordering::Relaxed),
                        shared.synced_streams[i].load(Ordering::Relaxed),
                    );
                    if now.0 != seen[k].0 {
                        if now.0 == NOBODY {
                            text.push_str(&format!("H {i} -\n"));
                        } else {
                            text.push_str(&format!("H {i} {}\n", now.0));
                        }
                    }
                    if now.1 != seen[k].1 {
                        text.push_str(&format!("S {i} {}\n", now.1));
                    }
                    seen[k] = now;
                }
                if !text.is_empty() {
                    out.write_all(text.as_bytes()).await?;
                }
                out.flush().await?;
                continue;
            }
        }
        out.write_all(text.as_bytes()).await?;
    }
}
