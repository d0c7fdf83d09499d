//! `fleet-load`: thousands of agents on one control plane, measured.
//!
//! ```text
//! cargo run --release -p signoff-tests --bin fleet-load -- --agents 1000 \
//!     [--fanout-rounds 5] [--signoff] [--idle-secs 60] [--storm] [--outage-secs 0]
//!     [--backoff-cap-secs 10]
//! ```
//!
//! Starts the release `signoff-server` and simulates `--agents` agents in this one process.
//! Each is enrolled for real (its own key, CSR and a single-use join token, over the
//! pinned-CA TLS of `Enroll`) and keeps a real mTLS gRPC `Sync` stream with its own client
//! certificate: it applies snapshots and deltas to the agent's own in-memory `State`, acks
//! each revision, reports one live session of the person `mallory` (every agent), and
//! enforces sign-off statements like a real agent (verifies the SSHSIG against the
//! order-signing key, "ends" its session, reports a `SignoffResult`). State stays in
//! memory; nothing is written to disk. Reconnects use the agent's own policy
//! (`signoff_agent::daemon::Backoff`): full-jitter exponential backoff from 1 s to 10 s.
//!
//! Phases:
//! 1. **fan-out** (`--fanout-rounds`): a key-ID revocation through the HTTP API; from just
//!    before the request until each agent has applied and acked the new revision.
//!    Also the size of each delta an agent received, and whether any got a snapshot.
//! 2. **sign-off** (`--signoff`): `POST /api/v1/users/mallory/signoff`, from just before
//!    the request until the record is complete (every agent confirmed).
//! 3. **idle** (`--idle-secs`): the control plane's CPU and RSS with every agent connected
//!    and nothing changing.
//! 4. **storm** (`--storm`): SIGTERM the control plane and start it again (after
//!    `--outage-secs` down): time until every agent is connected and in sync again, and the
//!    control plane's peak CPU meanwhile. `--backoff-cap-secs` sets the simulated agents'
//!    backoff ceiling, to compare with the agent's own.

use std::collections::BTreeMap;
use std::fs;
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
use tokio_stream::wrappers::ReceiverStream;

const USER: &str = "mallory";
const GROUP: &str = "fleet";

/// Simulated agents against a real control plane: fan-out, sign-off, reconnect storms (see
/// BENCHMARKS.md).
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
    /// Stop the control plane and time the fleet's return.
    #[arg(long)]
    storm: bool,
    /// The simulated agents' backoff ceiling in seconds (the agent's own unless given).
    #[arg(long = "backoff-cap-secs")]
    backoff_cap_secs: Option<u64>,
    /// How long the control plane stays down in the storm before it starts again.
    #[arg(long = "outage-secs", default_value_t = 0)]
    outage_secs: u64,
}

impl Options {
    fn backoff_cap(&self) -> Duration {
        self.backoff_cap_secs
            .map_or(signoff_agent::daemon::MAX_BACKOFF, Duration::from_secs)
    }

    fn outage(&self) -> Duration {
        Duration::from_secs(self.outage_secs)
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
    /// A snapshot arrived after the first one.
    LateSnapshot,
}

/// One enrolled simulated agent.
#[derive(Clone)]
struct Enrolled {
    index: usize,
    host_id: String,
    tls: Arc<rustls::ClientConfig>,
}

/// An agent's last applied revision, and when.
type Applied = (u64, Option<Instant>);

struct Shared {
    server: String,
    signers: Vec<ssh_key::PublicKey>,
    reports: mpsc::UnboundedSender<Report>,
    connected: AtomicUsize,
    reconnects: AtomicU64,
}

fn json_of(res: &signoff_tests::plane::HttpResponse) -> Value {
    serde_json::from_str(&res.body).unwrap_or(Value::String(res.body.clone()))
}

fn main() -> Result<()> {
    let o = <Options as clap::Parser>::parse();
    raise_fd_limit()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(o))
}

fn raise_fd_limit() -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(())
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

fn pct(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    let i = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
    samples.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

async fn run(o: Options) -> Result<()> {
    let mut plane = tokio::task::block_in_place(|| {
        ControlPlane::start_with(&server_binary(Profile::Release)?)
    })?;
    let cli = |args: &[&str]| tokio::task::block_in_place(|| plane.cli_json(args));
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
    let server = tokens[0]["server"].as_str().unwrap_or_default().to_owned();
    let pin = tokens[0]["ca_pin"].as_str().unwrap_or_default().to_owned();
    let signer = fs::read_to_string(plane.data_dir().join("order-signing.key.pub"))?;
    let signers = vec![ssh_key::PublicKey::from_openssh(signer.trim())?];

    // Enrollment, 32 at a time.
    let t = Instant::now();
    let enroll_tls = transport::enroll_config(&pin)?;
    let enroll_channel = transport::channel(&server, enroll_tls)?;
    let limit = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::new();
    for (index, tok) in tokens.iter().enumerate() {
        let secret = tok["secret"].as_str().unwrap_or_default().to_owned();
        let channel = enroll_channel.clone();
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
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
            Ok::<_, anyhow::Error>(Enrolled {
                index,
                host_id,
                tls,
            })
        }));
    }
    let mut agents = Vec::new();
    for t in tasks {
        agents.push(t.await??);
    }
    println!(
        "enrolled {} agents in {:.1} s",
        agents.len(),
        t.elapsed().as_secs_f64()
    );

    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        server: server.clone(),
        signers,
        reports: reports_tx,
        connected: AtomicUsize::new(0),
        reconnects: AtomicU64::new(0),
    });
    // Per agent: the last revision applied and when.
    let applied: Arc<Mutex<Vec<Applied>>> = Arc::new(Mutex::new(vec![(0, None); agents.len()]));
    let delta_bytes = Arc::new(Mutex::new(Vec::<usize>::new()));
    let late_snapshots = Arc::new(AtomicUsize::new(0));
    {
        let applied = applied.clone();
        let delta_bytes = delta_bytes.clone();
        let late_snapshots = late_snapshots.clone();
        tokio::spawn(async move {
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
        });
    }

    let t = Instant::now();
    for a in &agents {
        let shared = shared.clone();
        let a = a.clone();
        let cap = o.backoff_cap();
        tokio::spawn(async move { simulate(a, shared, cap).await });
    }
    let revision = http_get(&plane, &token, "/api/v1/revision")?["revision"]
        .as_u64()
        .unwrap_or(0);
    let all_at = |rev: u64| {
        applied
            .lock()
            .map(|a| a.iter().all(|(r, _)| *r >= rev))
            .unwrap_or(false)
    };
    wait_until(Duration::from_secs(600), || all_at(revision)).await?;
    println!(
        "all {} agents connected and in sync at revision {revision} in {:.1} s",
        agents.len(),
        t.elapsed().as_secs_f64()
    );
    let pid = plane.pid().ok_or_else(|| anyhow!("no server pid"))?;
    let (_, rss, hwm) = usage(pid)?;
    println!(
        "control plane after connect: RSS {} MiB (peak {} MiB)",
        rss / 1024,
        hwm / 1024
    );

    // 1. Fan-out.
    let mut all = Vec::new();
    let mut worst_round = Duration::ZERO;
    if let Ok(mut d) = delta_bytes.lock() {
        d.clear();
    }
    for round in 0..o.fanout_rounds {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        let res = tokio::task::block_in_place(|| {
            http_request(
                plane.http_addr(),
                "POST",
                "/api/v1/revocations",
                &token,
                Some(
                    &json!({"kind": "key_id", "key_id": format!("fanout-{round}"), "reason": "load"})
                        .to_string(),
                ),
            )
        })?;
        if res.status != 201 {
            bail!("revocation answered {}: {}", res.status, res.body);
        }
        let rev = json_of(&res)["revision"].as_u64().unwrap_or(0);
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
        println!(
            "fan-out, {} agents x {} rounds: p50 {} p99 {} max {}; deltas received: {}, mean {:.0} bytes, max {} bytes; snapshots after the first: {}",
            agents.len(),
            o.fanout_rounds,
            ms(pct(&mut all, 0.5)),
            ms(pct(&mut all, 0.99)),
            ms(pct(&mut all, 1.0)),
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
                plane.http_addr(),
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
            let v = http_get(&plane, &token, &format!("/api/v1/users/{USER}/signoff"))?;
            if !v["completed_at"].is_null() {
                let killed: usize = v["hosts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| h["killed_sessions"].as_array().map_or(0, Vec::len))
                    .sum();
                println!(
                    "sign-off over {} hosts ({} sessions ended): acknowledged in {}, complete in {}",
                    agents.len(),
                    killed,
                    ms(acked),
                    ms(t0.elapsed())
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
        let (cpu0, _, _) = usage(pid)?;
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(o.idle_secs)).await;
        let (cpu1, rss, hwm) = usage(pid)?;
        println!(
            "idle {} s with {} agents connected: control plane CPU {:.2}% of one core, RSS {} MiB (peak {} MiB)",
            o.idle_secs,
            shared.connected.load(Ordering::Relaxed),
            100.0 * (cpu1 - cpu0) / t0.elapsed().as_secs_f64(),
            rss / 1024,
            hwm / 1024
        );
    }

    // 4. Reconnect storm.
    if o.storm {
        let before = shared.reconnects.load(Ordering::Relaxed);
        tokio::task::block_in_place(|| plane.stop())?;
        // The outage (`--outage-secs`): the agents back off meanwhile, each further the
        // longer it lasts, up to their backoff ceiling.
        tokio::time::sleep(o.outage()).await;
        let t0 = Instant::now();
        tokio::task::block_in_place(|| plane.restart())?;
        let restarted = t0.elapsed();
        let pid = plane.pid().ok_or_else(|| anyhow!("no server pid"))?;
        // Every agent is back once it reconnected and applied the current revision again.
        let rev = http_get(&plane, &token, "/api/v1/revision")?["revision"]
            .as_u64()
            .unwrap_or(0);
        let n = agents.len() as u64;
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
            let back = shared.reconnects.load(Ordering::Relaxed) - before;
            if back >= n && all_at(rev) {
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
    }
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

/// One simulated agent, forever: connect, sync, reconnect with backoff.
async fn simulate(a: Enrolled, shared: Arc<Shared>, backoff_cap: Duration) {
    let mut state = State::new();
    let mut backoff = Backoff::with_cap(backoff_cap);
    let session_id = format!("{}:1", 100_000 + a.index);
    let mut session_live = true;
    loop {
        let started = Instant::now();
        let result = stream(&a, &shared, &mut state, &session_id, &mut session_live).await;
        shared.connected.fetch_sub(1, Ordering::Relaxed);
        let _ = result;
        if started.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn stream(
    a: &Enrolled,
    shared: &Shared,
    state: &mut State,
    session_id: &str,
    session_live: &mut bool,
) -> Result<()> {
    let channel = transport::channel(&shared.server, a.tls.clone())?;
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
    shared.connected.fetch_add(1, Ordering::Relaxed);
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
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
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
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
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
