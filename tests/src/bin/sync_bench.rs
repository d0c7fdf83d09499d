//! `sync-bench`: how fast a committed change reaches an agent's disk, and what the
//! principals command costs a whole login.
//!
//! ```text
//! cargo run --release -p signoff-tests --bin sync-bench [-- --revocations 200 \
//!     --logins 200 --batch 20]
//! ```
//!
//! Starts the release `signoff-server` (HTTP on port 0, agents on a free port) and one
//! release `signoff-agent`, enrolled and running, all on loopback (`SIGNOFF_SERVER_BIN` /
//! `SIGNOFF_AGENT_BIN` measure given binaries instead of building them).
//!
//! 1. **Change → disk.** Issues `--revocations` revocations one at a time through the HTTP
//!    API (`POST /api/v1/revocations`; key IDs and serials alternating, a random 0–20 ms
//!    pause before each), and for each takes the time from the complete 201 response to the
//!    moment the agent's host view (`hostview` header) and then its KRL (version field of
//!    the header, which is the revision) on disk carry the response's revision, polling
//!    every 200 µs. The agent writes both with fsync before it acks.
//! 2. **Login.** Two sshd processes with the same configuration, the same CA, the same KRL
//!    (the agent's): one with `AuthorizedPrincipalsCommand signoff-agent principals …` (the
//!    release agent installed under `/usr/local/libexec`, run as user `signoff`), one with
//!    `AuthorizedPrincipalsFile` holding the same principal. Times `ssh … root@127.0.0.1
//!    true` (the whole client process) `--logins` times against each, in alternating
//!    batches of `--batch`, after ten warm-up logins each.
//!
//! Prints markdown for BENCHMARKS.md.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read as _;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use rand::Rng as _;
use serde_json::json;
use signoff_tests::agent::{Profile, release_agent_binary};
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::plane::{Agent, ControlPlane, WAIT, server_binary, sync};
use signoff_tests::principals::{InstalledAgent, PrincipalsSshd, ensure_system_user};
use signoff_tests::sshd::{Login, Sshd, SshdSpec, ssh_login};

/// Revocation delivery and principals answers under logins (see BENCHMARKS.md).
#[derive(Debug, Clone, clap::Parser)]
struct Options {
    /// Revocations to time from the API to the host's KRL.
    #[arg(long, default_value_t = 200, value_parser = signoff_tests::bench_args::positive)]
    revocations: usize,
    /// Logins to time against the host's sshd.
    #[arg(long, default_value_t = 200, value_parser = signoff_tests::bench_args::positive)]
    logins: usize,
    /// Revocations per batch.
    #[arg(long, default_value_t = 20, value_parser = signoff_tests::bench_args::positive)]
    batch: usize,
}

/// Sorted samples and their summary.
#[derive(Debug)]
struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: v[v.len() - 1],
        mean: v.iter().sum::<Duration>() / v.len() as u32,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} × {cpu}, Linux {}", kernel.trim())
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The KRL's version field (bytes 12..20: after the 8-byte magic and the u32 format
/// version), which the agent sets to the revision of the view it built the KRL from.
fn krl_version(path: &Path) -> Result<u64> {
    let mut head = [0u8; 20];
    File::open(path)?.read_exact(&mut head)?;
    Ok(u64::from_be_bytes(head[12..20].try_into()?))
}

/// Change → disk: `(to host view, to KRL)` per revocation.
fn change_to_disk(
    o: &Options,
    plane: &ControlPlane,
    agent: &Agent,
    ca_fingerprint: &str,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut rng = rand::rng();
    let mut to_view = Vec::with_capacity(o.revocations);
    let mut to_krl = Vec::with_capacity(o.revocations);
    let krl = agent.krl_path();
    for i in 0..o.revocations {
        thread::sleep(Duration::from_millis(rng.random_range(0..=20)));
        let revocation = if i % 2 == 0 {
            json!({"kind": "key_id", "key_id": format!("bench-{i}@corp"), "ca": null})
        } else {
            json!({"kind": "serial", "ca": ca_fingerprint, "lo": 10_000 + i, "hi": 10_000 + i})
        };
        let record = plane.revoke(&revocation)?;
        let answered = Instant::now();
        let revision = record["revision"]
            .as_u64()
            .ok_or_else(|| anyhow!("no revision in {record}"))?;
        let mut view_at = None;
        loop {
            if view_at.is_none() && agent.applied_revision()?.unwrap_or(0) >= revision {
                view_at = Some(answered.elapsed());
            }
            if let Some(v) = view_at
                && krl_version(&krl)? >= revision
            {
                to_view.push(v);
                to_krl.push(answered.elapsed());
                break;
            }
            if answered.elapsed() > WAIT {
                bail!(
                    "revision {revision} did not reach the agent's disk within {WAIT:?}:\n{}",
                    agent.log()
                );
            }
            thread::sleep(Duration::from_micros(200));
        }
    }
    Ok((to_view, to_krl))
}

/// sshd configured as `PrincipalsSshd` is, but with `AuthorizedPrincipalsFile`.
fn start_file_sshd(ca_pub: &Path, krl: &Path, principals: &Path) -> Result<Sshd> {
    Sshd::launch(&SshdSpec {
        revoked_keys: Some(krl.to_owned()),
        extra: format!("AuthorizedPrincipalsFile {}\n", principals.display()),
        ..SshdSpec::new(ca_pub)
    })
}

fn main() -> Result<()> {
    let o = <Options as clap::Parser>::parse();
    ensure_system_user()?;
    let agent_bin = release_agent_binary()?;
    let server_bin = server_binary(Profile::Release)?;
    let load_before = load_average();

    let plane = ControlPlane::start_with(&server_bin)?;
    let keys = tempfile::Builder::new().prefix("sync-bench-").tempdir()?;
    let ca = KeyPair::generate(keys.path(), "ca", KeyType::Ed25519)?;
    let user = KeyPair::generate(keys.path(), "user", KeyType::Ed25519)?;
    let ca_added = plane.cli_json(&["ca", "add", "corp", &ca.public.display().to_string()])?;
    let ca_fingerprint = ca_added["fingerprint"]
        .as_str()
        .ok_or_else(|| anyhow!("ca add printed no fingerprint: {ca_added}"))?
        .to_owned();
    plane.cli(&["group", "add", "web"])?;
    plane.cli(&["user", "add", "alice", "--key-id", "alice@corp"])?;
    plane.cli(&["grant", "add", "alice", "root", "web"])?;
    let mut agent = Agent::with_binary(agent_bin, "")?;
    agent.enroll(&plane, "bench-1", "web")?;
    agent.start()?;
    sync(&plane, &mut agent)?;

    eprintln!("change → disk: {} revocations…", o.revocations);
    let (to_view, to_krl) = change_to_disk(&o, &plane, &agent, &ca_fingerprint)?;
    let krl_bytes = fs::metadata(agent.krl_path())?.len();

    // Logins: the same sshd configuration but for the principals line.
    let cert = keys::sign(&CertRequest {
        ca: ca.clone(),
        subject: user.clone(),
        out: keys.path().join("alice"),
        key_id: "alice@corp".into(),
        principals: "alice".into(),
        serial: 1,
    })?;
    let installed = InstalledAgent::install(agent_bin)?;
    let command_sshd = PrincipalsSshd::start(
        installed.path(),
        &agent.config(),
        &ca.public,
        &agent.krl_path(),
    )?;
    let file_dir = keys.path().join("file-sshd");
    fs::create_dir(&file_dir)?;
    let principals_file = file_dir.join("principals-root");
    fs::write(&principals_file, "alice\n")?;
    let file_sshd = start_file_sshd(&ca.public, &agent.krl_path(), &principals_file)?;

    let time = |login: &dyn Fn() -> Result<Login>| -> Result<Duration> {
        let started = Instant::now();
        let l = login()?;
        let took = started.elapsed();
        if !l.success {
            bail!("login failed: {}", l.stderr);
        }
        Ok(took)
    };
    let by_command = || command_sshd.login("root", &user.private, &cert);
    let by_file = || ssh_login(file_sshd.port(), "root", &user.private, &cert);
    for _ in 0..10 {
        time(&by_command)?;
        time(&by_file)?;
    }
    eprintln!("logins: {} each…", o.logins);
    let mut with_command = Vec::with_capacity(o.logins);
    let mut with_file = Vec::with_capacity(o.logins);
    while with_command.len() < o.logins {
        let n = o.batch.min(o.logins - with_command.len());
        for _ in 0..n {
            with_command.push(time(&by_command)?);
        }
        for _ in 0..n {
            with_file.push(time(&by_file)?);
        }
    }
    let load_after = load_average();

    let v = stats(to_view);
    let k = stats(to_krl);
    let c = stats(with_command);
    let f = stats(with_file);
    let ratio = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64();
    let mut r = String::new();
    writeln!(r, "- machine: {}", machine())?;
    writeln!(
        r,
        "- load average before / after: {load_before} / {load_after}"
    )?;
    writeln!(
        r,
        "- final KRL: {krl_bytes} bytes ({} revocations)\n",
        o.revocations
    )?;
    writeln!(
        r,
        "| change → disk ({} revocations via the API) | p50 | p99 | max | mean |",
        o.revocations
    )?;
    writeln!(r, "| --- | ---: | ---: | ---: | ---: |")?;
    for (label, s) in [("host view (`hostview`)", &v), ("KRL (`revoked.krl`)", &k)] {
        writeln!(
            r,
            "| {label} | {} | {} | {} | {} |",
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ms(s.mean)
        )?;
    }
    writeln!(
        r,
        "\n| login wall time ({} each, batches of {}) | p50 | p99 | max | mean |",
        o.logins, o.batch
    )?;
    writeln!(r, "| --- | ---: | ---: | ---: | ---: |")?;
    for (label, s) in [
        (
            "`AuthorizedPrincipalsCommand signoff-agent principals …`",
            &c,
        ),
        ("`AuthorizedPrincipalsFile`", &f),
    ] {
        writeln!(
            r,
            "| {label} | {} | {} | {} | {} |",
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ms(s.mean)
        )?;
    }
    writeln!(
        r,
        "| ratio command / file | {:.3}× | {:.3}× | | {:.3}× |",
        ratio(c.p50, f.p50),
        ratio(c.p99, f.p99),
        ratio(c.mean, f.mean)
    )?;
    print!("{r}");
    Ok(())
}
