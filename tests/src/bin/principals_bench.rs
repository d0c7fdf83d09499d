//! `principals-bench`: the cost of one `signoff-agent principals` call, against `/bin/true`.
//!
//! ```text
//! cargo run --release -p signoff-tests --bin principals-bench [-- --users 100000 \
//!     --grants 1000000 --calls 2000 --batch 100 --dir KEEP_STATE_HERE]
//! ```
//!
//! Writes a host view of `--users` users holding `--grants` grants in all (each user ten
//! accounts out of a thousand, one key ID, one principal, one authorized key) plus a
//! revocation set (1% of users' key IDs revoked, as many serial ranges, 1,000 keys), with
//! the agent's own writer. Builds the release agent three ways: as a plain `cargo build
//! --release` makes it (dynamically linked), statically linked as a position-independent
//! executable (`cargo rustc --release -p signoff-agent --bin signoff-agent -- -C
//! target-feature=+crt-static`), and statically linked at a fixed address (the same plus
//! `-C relocation-model=static`: nothing to relocate at start), or takes
//! `SIGNOFF_AGENT_BIN` alone. Then runs `signoff-agent
//! principals --config CFG ACCOUNT KEYID SERIAL CA_FP KEY_FP` `--calls` times with each
//! binary, for granted certificates (rotating over 64 of them), and `/bin/true` as many
//! times, in alternating batches of `--batch`, each spawned the same way (stdout and stderr
//! to pipes, as sshd does, environment cleared), and prints per-call mean, p50 and p99 and
//! the ratio to `/bin/true`, as a markdown table.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use signoff_agent::state::format::sha256;
use signoff_agent::state::writer::{STATE_FILE, write_state_file};
use signoff_agent::state::{CertificateQuery, State, StateFile};
use signoff_proto::v1;
use signoff_tests::agent::{target_dir, workspace_root};
use signoff_tests::command::run_ok;

const ACCOUNTS: u64 = 1000;
const NOW: u64 = 1_700_000_000;

#[derive(Debug, Clone)]
struct Options {
    users: u64,
    grants: u64,
    calls: usize,
    batch: usize,
    /// Keep the state and config here instead of in a temporary directory.
    dir: Option<PathBuf>,
}

fn parse_options() -> Result<Options> {
    let mut o = Options {
        users: 100_000,
        grants: 1_000_000,
        calls: 2000,
        batch: 100,
        dir: None,
    };
    let mut args = env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--users" => o.users = value.parse()?,
            "--grants" => o.grants = value.parse()?,
            "--calls" => o.calls = value.parse()?,
            "--batch" => o.batch = value.parse()?,
            "--dir" => o.dir = Some(value.into()),
            _ => bail!("unknown option {flag}; see the source's header"),
        }
    }
    if o.users == 0 || o.grants < o.users || o.calls == 0 || o.batch == 0 {
        bail!("need users > 0, grants >= users, calls > 0, batch > 0");
    }
    Ok(o)
}

/// An ed25519 public key wire blob whose key bytes are derived from `n` (not a real key,
/// but well-formed).
fn fake_key(n: u64) -> Vec<u8> {
    let mut blob = Vec::with_capacity(51);
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend_from_slice(&sha256(&n.to_le_bytes()));
    blob
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn fingerprint(blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha256(blob))
    )
}

/// The `k`-th account of user `u`.
fn account(u: u64, k: u64) -> String {
    format!("acct{}", (u * 7 + k * 101) % ACCOUNTS)
}

fn view(o: &Options) -> v1::HostView {
    let per_user = o.grants / o.users;
    let extra = o.grants % o.users;
    let mut principals = Vec::with_capacity(usize::try_from(o.grants).unwrap_or(0));
    for u in 0..o.users {
        let n = per_user + u64::from(u < extra);
        let key = format!("ssh-ed25519 {} user{u}@laptop", b64(&fake_key(u)));
        for k in 0..n {
            principals.push(v1::PrincipalsEntry {
                account: account(u, k),
                user: format!("user{u}"),
                key_ids: vec![format!("user{u}@corp")],
                principals: vec![format!("user{u}")],
                authorized_keys: vec![key.clone()],
                not_after: if u % 10 == 0 {
                    NOW + 86_400 * 365 * 50
                } else {
                    0
                },
            });
        }
    }
    let revoked_users = (o.users / 100).max(1);
    let ca = fake_key(u64::MAX);
    v1::HostView {
        revision: 1,
        principals,
        revocations: Some(v1::RevocationSet {
            certificates: vec![v1::CaRevocations {
                ca_key: ca,
                serials: (0..revoked_users)
                    .map(|i| v1::SerialRange {
                        lo: 1_000_000 + i * 100,
                        hi: 1_000_000 + i * 100 + 9,
                    })
                    .collect(),
                key_ids: (0..revoked_users)
                    .map(|i| format!("user{}@corp", o.users - 1 - i))
                    .collect(),
            }],
            keys: (0..1000).map(|i| fake_key(1 << 40 | i)).collect(),
            sha256: vec![],
        }),
        disabled_users: vec![],
    }
}

struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort_unstable();
    let n = v.len();
    let total: Duration = v.iter().sum();
    Stats {
        mean: total / n as u32,
        p50: v[n / 2],
        p99: v[(n * 99 / 100).min(n - 1)],
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn time_call(cmd: &mut Command) -> Result<(Duration, bool, Vec<u8>)> {
    let start = Instant::now();
    let out = cmd.output()?;
    Ok((start.elapsed(), out.status.success(), out.stdout))
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// The release agent binaries to measure, copied into `dir`: `(label, path)`.
fn agent_binaries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if let Some(bin) = env::var_os("SIGNOFF_AGENT_BIN") {
        return Ok(vec![("SIGNOFF_AGENT_BIN".into(), PathBuf::from(bin))]);
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = target_dir().join("release").join("signoff-agent");
    let mut out = Vec::new();
    for (label, name, args) in [
        (
            "dynamic (`cargo build --release`)",
            "signoff-agent-dynamic",
            &[
                "build",
                "--release",
                "-p",
                "signoff-agent",
                "--bin",
                "signoff-agent",
            ][..],
        ),
        (
            "static-pie (`-C target-feature=+crt-static`)",
            "signoff-agent-static-pie",
            &[
                "rustc",
                "--release",
                "-p",
                "signoff-agent",
                "--bin",
                "signoff-agent",
                "--",
                "-C",
                "target-feature=+crt-static",
            ][..],
        ),
        (
            "static, not PIE (`… -C relocation-model=static`)",
            "signoff-agent-static",
            &[
                "rustc",
                "--release",
                "-p",
                "signoff-agent",
                "--bin",
                "signoff-agent",
                "--",
                "-C",
                "target-feature=+crt-static",
                "-C",
                "relocation-model=static",
            ][..],
        ),
    ] {
        run_ok(
            Command::new(&cargo)
                .current_dir(workspace_root())
                .args(args),
        )
        .with_context(|| format!("building the {label} agent"))?;
        let copy = dir.join(name);
        fs::copy(&built, &copy).with_context(|| format!("copying {}", built.display()))?;
        out.push((label.to_owned(), copy));
    }
    Ok(out)
}

fn main() -> Result<()> {
    let o = parse_options()?;
    let temp = tempfile::Builder::new()
        .prefix("principals-bench-")
        .tempdir()?;
    let dir = match &o.dir {
        Some(d) => {
            fs::create_dir_all(d)?;
            d.clone()
        }
        None => temp.path().to_owned(),
    };
    let agents = agent_binaries(&dir)?;

    let started = Instant::now();
    let state = State::from_snapshot(view(&o))?;
    let built = started.elapsed();
    let started = Instant::now();
    let path = dir.join(STATE_FILE);
    let bytes = write_state_file(&path, &state, NOW)?;
    let written = started.elapsed();
    drop(state);
    let config = dir.join("agent.toml");
    fs::write(
        &config,
        format!("state_dir = {:?}\n", dir.display().to_string()),
    )?;

    // 64 granted certificates, spread over the users that are not revoked.
    let ca_fp = fingerprint(&fake_key(u64::MAX));
    let queries: Vec<[String; 5]> = (0..64u64)
        .map(|i| {
            let u = (i * 1543) % (o.users - (o.users / 100).max(1));
            [
                account(u, 0),
                format!("user{u}@corp"),
                (i + 1).to_string(),
                ca_fp.clone(),
                fingerprint(&fake_key(u)),
            ]
        })
        .collect();

    // In-process cost of the lookups alone (open, header, revocation checks, principals).
    let started = Instant::now();
    let rounds = 2000;
    for r in 0..rounds {
        let q = &queries[r % queries.len()];
        let file = StateFile::open(&path)?;
        let query = CertificateQuery {
            key_id: &q[1],
            serial: q[2].parse()?,
            ca_fingerprint: sha256(&fake_key(u64::MAX)),
            key_fingerprint: sha256(&fake_key(0)),
        };
        let revoked = file.check_certificate(&query)?;
        let mut out = Vec::new();
        let m = file.principals(&q[0], &q[1], NOW, &mut out)?;
        if revoked.is_some() || m.live != 1 || out.len() != 1 {
            bail!("in-process lookup of {q:?} gave {revoked:?} {m:?} {out:?}");
        }
    }
    let in_process = started.elapsed() / rounds as u32;

    let principals_cmd = |agent: &Path, q: &[String; 5]| {
        let mut c = Command::new(agent);
        c.arg("principals")
            .arg("--config")
            .arg(&config)
            .args(q)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null());
        c
    };
    let true_cmd = || {
        let mut c = Command::new("/bin/true");
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null());
        c
    };

    // Check the answers, and warm the page cache.
    for (_, agent) in &agents {
        for q in &queries {
            let (_, ok, out) = time_call(&mut principals_cmd(agent, q))?;
            let want = format!("{}\n", q[1].trim_end_matches("@corp"));
            if !ok || out != want.as_bytes() {
                bail!(
                    "{} principals {q:?} printed {:?}, want {want:?}",
                    agent.display(),
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
    for _ in 0..50 {
        time_call(&mut true_cmd())?;
    }

    let mut agent_times: Vec<Vec<Duration>> = vec![Vec::with_capacity(o.calls); agents.len()];
    let mut true_times = Vec::with_capacity(o.calls);
    let mut i = 0usize;
    while true_times.len() < o.calls {
        let n = o.batch.min(o.calls - true_times.len());
        for (times, (_, agent)) in agent_times.iter_mut().zip(&agents) {
            for k in 0..n {
                let q = &queries[(i + k) % queries.len()];
                let (t, ok, _) = time_call(&mut principals_cmd(agent, q))?;
                if !ok {
                    bail!("{} principals {q:?} failed", agent.display());
                }
                times.push(t);
            }
        }
        for _ in 0..n {
            true_times.push(time_call(&mut true_cmd())?.0);
        }
        i += n;
    }
    let t = stats(true_times);
    let ratio = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64();

    let mut report = String::new();
    writeln!(report, "Machine: {}", machine())?;
    writeln!(
        report,
        "State: {} users, {} grants, {} revoked key IDs, {} revoked serial ranges, 1000 \
         revoked keys; file {:.1} MB, built in {:.2} s, encoded and written (fsync) in {:.2} s",
        o.users,
        o.grants,
        (o.users / 100).max(1),
        (o.users / 100).max(1),
        bytes as f64 / 1e6,
        built.as_secs_f64(),
        written.as_secs_f64()
    )?;
    writeln!(
        report,
        "Lookups alone, in process (open, header, revocation checks, principals): {}\n",
        us(in_process)
    )?;
    writeln!(
        report,
        "| per call ({} calls each, alternating batches of {}) | mean | p50 | p99 | mean / true | p50 / true |",
        o.calls, o.batch
    )?;
    writeln!(report, "| --- | --- | --- | --- | --- | --- |")?;
    for (times, (label, agent)) in agent_times.into_iter().zip(&agents) {
        let a = stats(times);
        writeln!(
            report,
            "| `signoff-agent principals`, {label}, {:.1} MB | {} | {} | {} | {:.2}× | {:.2}× |",
            fs::metadata(agent)?.len() as f64 / 1e6,
            us(a.mean),
            us(a.p50),
            us(a.p99),
            ratio(a.mean, t.mean),
            ratio(a.p50, t.p50),
        )?;
    }
    writeln!(
        report,
        "| `/bin/true` | {} | {} | {} | 1× | 1× |",
        us(t.mean),
        us(t.p50),
        us(t.p99)
    )?;
    print!("{report}");
    Ok(())
}
