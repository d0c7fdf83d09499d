//! `principals-bench`: the cost of one `principals` call as sshd makes it, by
//! `signoff-sshd` (what sshd runs) and `signoff-agent` (the same command in the daemon's
//! binary), against `/bin/true`.
//!
//! ```text
//! cargo run --release -p signoff-tests --bin principals-bench [-- --users 100000 \
//!     --grants 1000000 --calls 2000 --batch 100 --dir KEEP_STATE_HERE --static]
//! ```
//!
//! Writes a host view of `--users` users holding `--grants` grants in all (each user ten
//! accounts out of a thousand, one key ID, one principal, one authorized key) plus a
//! revocation set (1% of users' key IDs revoked, as many serial ranges, 1,000 keys), with
//! the agent's own writer. Builds `signoff-sshd` and `signoff-agent` as a plain `cargo build
//! --release` makes them (dynamically linked: what ships); with `--static`, also
//! `signoff-agent` statically linked as a position-independent executable (`cargo rustc
//! --release -p signoff-agent --bin signoff-agent -- -C target-feature=+crt-static`) and at
//! a fixed address (the same plus `-C relocation-model=static`: nothing to relocate at
//! start). `SIGNOFF_SSHD_BIN`
//! and/or `SIGNOFF_AGENT_BIN` measure given binaries instead (several, separated by `:`,
//! in the same run), building nothing. Then runs
//! `BINARY principals --config CFG ACCOUNT KEYID SERIAL CA_FP KEY_FP` `--calls` times with
//! each binary, for granted certificates (rotating over 64 of them), and `/bin/true` as many
//! times, in alternating batches of `--batch`, each spawned the same way (stdout and stderr
//! to pipes, as sshd does, environment cleared), and prints per-call mean, p50 and p99, the
//! ratio to `/bin/true` and the minor page faults per call, as a markdown table.
//!
//! With `--approvals K`, the measured grants carry K approvals and every binary is measured
//! a second time with a config that makes their accounts privileged with `required = K`:
//! each call then loads the approvers file and verifies K SSHSIGs over the grant's
//! canonical bytes (issue 20), and the table shows what that adds in the same run.

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
use signoff_proto::approvals::{GrantApproval, NAMESPACE};
use signoff_proto::v1;
use signoff_tests::agent::{target_dir, workspace_root};
use signoff_tests::command::run_ok;
use ssh_key::private::Ed25519Keypair;
use ssh_key::{HashAlg, LineEnding, PrivateKey};

const ACCOUNTS: u64 = 1000;
const NOW: u64 = 1_700_000_000;

/// `signoff-agent principals` against a large host view (see BENCHMARKS.md).
#[derive(Debug, Clone, clap::Parser)]
struct Options {
    /// People in the host view.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Grants in the host view (at least --users).
    #[arg(long, default_value_t = 1_000_000)]
    grants: u64,
    /// Calls to time.
    #[arg(long, default_value_t = 2000, value_parser = signoff_tests::bench_args::positive)]
    calls: usize,
    /// Calls per batch.
    #[arg(long, default_value_t = 100, value_parser = signoff_tests::bench_args::positive)]
    batch: usize,
    /// Keep the state and config here instead of in a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also measure `signoff-agent` statically linked (static-pie and not PIE).
    #[arg(long = "static")]
    with_static: bool,
    /// Also measure each binary with the measured accounts privileged (`[approvals]`,
    /// issue 20): each measured grant carries this many approvals (Ed25519 SSHSIGs) and the
    /// host requires all of them, so every call verifies them. 0: not measured.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=16))]
    approvals: u8,
}

fn parse_options() -> Result<Options> {
    let o = <Options as clap::Parser>::parse();
    if o.grants < o.users {
        bail!("--grants must be at least --users");
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

/// The users whose certificates are measured: 64 of them, spread over those not revoked.
fn measured_users(o: &Options) -> Vec<u64> {
    (0..64u64)
        .map(|i| (i * 1543) % (o.users - (o.users / 100).max(1)))
        .collect()
}

/// The approvers' keys of `--approvals` (fixed seeds: the run is repeatable).
fn approvers(o: &Options) -> Vec<PrivateKey> {
    (0..o.approvals)
        .map(|i| PrivateKey::from(Ed25519Keypair::from_seed(&[i + 1; 32])))
        .collect()
}

/// The grant behind user `u`'s first entry as its approvers signed it: grant id `u + 1`,
/// host group `all`, never ending.
fn approved_grant(u: u64, approvers: &[PrivateKey]) -> Result<v1::ApprovedGrant> {
    let person = format!("user{u}");
    let account = account(u, 0);
    let bytes = GrantApproval {
        grant_id: u + 1,
        person: &person,
        account: &account,
        host_group: "all",
        not_after: 0,
    }
    .canonical_bytes()?;
    let signatures = approvers
        .iter()
        .map(|k| {
            Ok(k.sign(NAMESPACE, HashAlg::Sha512, &bytes)?
                .to_pem(LineEnding::LF)?)
        })
        .collect::<Result<Vec<String>>>()?;
    Ok(v1::ApprovedGrant {
        grant_id: u + 1,
        host_group: "all".into(),
        not_after: 0,
        signatures,
    })
}

fn view(o: &Options) -> Result<v1::HostView> {
    let approvers = approvers(o);
    let mut approved = std::collections::BTreeMap::new();
    if !approvers.is_empty() {
        for u in measured_users(o) {
            approved.insert(u, approved_grant(u, &approvers)?);
        }
    }
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
                approvals: approved
                    .get(&u)
                    .filter(|_| k == 0)
                    .cloned()
                    .into_iter()
                    .collect(),
            });
        }
    }
    let revoked_users = (o.users / 100).max(1);
    let ca = fake_key(u64::MAX);
    Ok(v1::HostView {
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
        signoffs: vec![],
        trusted_user_ca_keys: vec![],
        ..Default::default()
    })
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

/// One binary to measure: a row label and where its copy is.
#[derive(Debug)]
struct Measured {
    label: String,
    path: PathBuf,
}

/// One row of the table: a binary called with one config.
#[derive(Debug)]
struct Row<'a> {
    label: String,
    bin: &'a Measured,
    config: PathBuf,
}

/// The release binaries whose `principals` command is measured, copied into `dir`.
fn binaries(o: &Options, dir: &Path) -> Result<Vec<Measured>> {
    let given: Vec<Measured> = [
        ("SIGNOFF_SSHD_BIN", "signoff-sshd"),
        ("SIGNOFF_AGENT_BIN", "signoff-agent"),
    ]
    .into_iter()
    .flat_map(|(var, name)| {
        // Several binaries, separated by ':', are measured in the same run (one row each).
        let paths = env::var_os(var).map(|v| env::split_paths(&v).collect::<Vec<_>>());
        paths.into_iter().flatten().map(move |bin| Measured {
            label: format!("`{name} principals`, {var}={}", bin.display()),
            path: bin,
        })
    })
    .collect();
    if !given.is_empty() {
        return Ok(given);
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = target_dir().join("release");
    let mut out = Vec::new();
    // The shipped build: both binaries from one plain `cargo build --release`.
    run_ok(Command::new(&cargo).current_dir(workspace_root()).args([
        "build",
        "--release",
        "-p",
        "signoff-agent",
        "--bins",
    ]))
    .context("building the release binaries")?;
    for name in ["signoff-sshd", "signoff-agent"] {
        out.push(Measured {
            label: format!("`{name} principals`, dynamic (`cargo build --release`)"),
            path: copy_binary(&release.join(name), &dir.join(format!("{name}-dynamic")))?,
        });
    }
    if !o.with_static {
        return Ok(out);
    }
    for (kind, flags) in [
        (
            "static-pie (`-C target-feature=+crt-static`)",
            &["-C", "target-feature=+crt-static"][..],
        ),
        (
            "static, not PIE (`… -C relocation-model=static`)",
            &[
                "-C",
                "target-feature=+crt-static",
                "-C",
                "relocation-model=static",
            ],
        ),
    ] {
        // Only the daemon's binary: `signoff-sshd`'s build script links the unwinder in
        // unless it sees `+crt-static`, which it cannot when the flag is given this way (a
        // static `signoff-sshd` is built with `RUSTFLAGS` and `--target`, see the agent's
        // README).
        run_ok(
            Command::new(&cargo)
                .current_dir(workspace_root())
                .args([
                    "rustc",
                    "--release",
                    "-p",
                    "signoff-agent",
                    "--bin",
                    "signoff-agent",
                    "--",
                ])
                .args(flags),
        )
        .with_context(|| format!("building the {kind} signoff-agent"))?;
        let suffix = if flags.len() > 2 {
            "static"
        } else {
            "static-pie"
        };
        out.push(Measured {
            label: format!("`signoff-agent principals`, {kind}"),
            path: copy_binary(
                &release.join("signoff-agent"),
                &dir.join(format!("signoff-agent-{suffix}")),
            )?,
        });
    }
    Ok(out)
}

/// Copies a freshly built binary out of `target/` (the next build overwrites it).
fn copy_binary(built: &Path, copy: &Path) -> Result<PathBuf> {
    fs::copy(built, copy).with_context(|| format!("copying {}", built.display()))?;
    Ok(copy.to_owned())
}

/// Minor page faults of this process's waited-for children so far (`cminflt`, field 11 of
/// `/proc/self/stat`): the difference over a batch, divided by its size, is the faults per
/// call.
fn children_minor_faults() -> Result<u64> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/self/stat")?;
    let field = after_name
        .split_ascii_whitespace()
        .nth(11 - 3)
        .context("unexpected /proc/self/stat")?;
    Ok(field.parse()?)
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
    let binaries = binaries(&o, &dir)?;

    let started = Instant::now();
    let state = State::from_snapshot(view(&o)?)?;
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
    let queries: Vec<[String; 5]> = measured_users(&o)
        .into_iter()
        .zip(1u64..)
        .map(|(u, serial)| {
            [
                account(u, 0),
                format!("user{u}@corp"),
                serial.to_string(),
                ca_fp.clone(),
                fingerprint(&fake_key(u)),
            ]
        })
        .collect();
    let mut rows: Vec<Row<'_>> = binaries
        .iter()
        .map(|bin| Row {
            label: bin.label.clone(),
            bin,
            config: config.clone(),
        })
        .collect();
    if o.approvals > 0 {
        // The measured accounts privileged, every approval required.
        let approvers_file = dir.join("approvers");
        let lines = approvers(&o)
            .iter()
            .enumerate()
            .map(|(i, k)| Ok(format!("approver{i} {}\n", k.public_key().to_openssh()?)))
            .collect::<Result<String>>()?;
        fs::write(&approvers_file, lines)?;
        // A TOML array (a set's Debug form would be a table).
        let accounts: Vec<&String> = queries
            .iter()
            .map(|q| &q[0])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let privileged = dir.join("agent-privileged.toml");
        fs::write(
            &privileged,
            format!(
                "state_dir = {:?}\n[approvals]\nprivileged_accounts = {:?}\nrequired = {}\n\
                 approvers = {:?}\n",
                dir.display().to_string(),
                accounts,
                o.approvals,
                approvers_file.display().to_string(),
            ),
        )?;
        for bin in &binaries {
            rows.push(Row {
                label: format!(
                    "{}, privileged account: {} approvals verified",
                    bin.label, o.approvals
                ),
                bin,
                config: privileged.clone(),
            });
        }
    }

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

    let principals_cmd = |row: &Row<'_>, q: &[String; 5]| {
        let mut c = Command::new(&row.bin.path);
        c.arg("principals")
            .arg("--config")
            .arg(&row.config)
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
    for row in &rows {
        for q in &queries {
            let (_, ok, out) = time_call(&mut principals_cmd(row, q))?;
            let want = format!("{}\n", q[1].trim_end_matches("@corp"));
            if !ok || out != want.as_bytes() {
                bail!(
                    "{} principals --config {} {q:?} printed {:?}, want {want:?}",
                    row.bin.path.display(),
                    row.config.display(),
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
    for _ in 0..50 {
        time_call(&mut true_cmd())?;
    }

    // Per binary, then `/bin/true` last: call times and minor page faults in all.
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(o.calls); rows.len() + 1];
    let mut faults = vec![0u64; rows.len() + 1];
    let mut i = 0usize;
    while i < o.calls {
        let n = o.batch.min(o.calls - i);
        for (b, row) in rows.iter().enumerate() {
            let before = children_minor_faults()?;
            for k in 0..n {
                let q = &queries[(i + k) % queries.len()];
                let (t, ok, _) = time_call(&mut principals_cmd(row, q))?;
                if !ok {
                    bail!("{} principals {q:?} failed", row.bin.path.display());
                }
                times[b].push(t);
            }
            faults[b] += children_minor_faults()? - before;
        }
        let before = children_minor_faults()?;
        for _ in 0..n {
            times[rows.len()].push(time_call(&mut true_cmd())?.0);
        }
        faults[rows.len()] += children_minor_faults()? - before;
        i += n;
    }
    let per_call = |f: u64| f as f64 / o.calls as f64;
    let true_faults = per_call(faults[rows.len()]);
    let t = stats(times.pop().context("no /bin/true times")?);
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
        "| per call ({} calls each, alternating batches of {}) | mean | p50 | p99 | mean / true | p50 / true | minor faults |",
        o.calls, o.batch
    )?;
    writeln!(report, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")?;
    for ((times, row), faults) in times.into_iter().zip(&rows).zip(&faults) {
        let a = stats(times);
        writeln!(
            report,
            "| {}, {:.1} MB | {} | {} | {} | {:.2}× | {:.2}× | {:.1} |",
            row.label,
            fs::metadata(&row.bin.path)?.len() as f64 / 1e6,
            us(a.mean),
            us(a.p50),
            us(a.p99),
            ratio(a.mean, t.mean),
            ratio(a.p50, t.p50),
            per_call(*faults),
        )?;
    }
    writeln!(
        report,
        "| `/bin/true` | {} | {} | {} | 1× | 1× | {true_faults:.1} |",
        us(t.mean),
        us(t.p50),
        us(t.p99)
    )?;
    print!("{report}");
    Ok(())
}
