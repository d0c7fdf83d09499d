//! `krl-bench`: KRL size and build time, ours against `ssh-keygen -k`.
//!
//! ```text
//! cargo run --release -p signoff-tests --bin krl-bench [-- --runs N --sizes 100000,1000000]
//! ```
//!
//! For spec files of random serials in two distributions (sparse: random 63-bit serials;
//! dense: N distinct serials drawn from 1..=10·N) it times `ssh-keygen -k -f OUT -s CA.pub
//! SPEC` and the release `signoff-agent krl build -f OUT -s CA.pub SPEC`, alternating,
//! median of `--runs`; times the in-process `KrlBuilder` + `encode` alone; and reports both
//! sizes and whether OpenSSH loads each KRL (`ssh-keygen -Q` on a revoked certificate).
//! Prints the machine and a markdown table.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rand::Rng as _;
use rand::rngs::StdRng;
use signoff_proto::krl::{CaScope, KrlBuilder, SerialRange};
use signoff_tests::agent::release_agent_binary;
use signoff_tests::command::run_ok;
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::krl::{
    CaArg, Check, Verdict, agent_build_with, ssh_keygen_build, ssh_keygen_check,
};
use signoff_tests::seed::seeded_rng;
use signoff_tests::tools::{SSH, SSH_KEYGEN};

#[derive(Debug, Clone, Copy)]
enum Distribution {
    Sparse,
    Dense,
}

impl Distribution {
    fn name(self) -> &'static str {
        match self {
            Distribution::Sparse => "sparse (random 63-bit)",
            Distribution::Dense => "dense (N of 1..=10N)",
        }
    }

    fn serials(self, n: usize, rng: &mut StdRng) -> Vec<u64> {
        match self {
            Distribution::Sparse => (0..n)
                .map(|_| rng.random_range(1..=i64::MAX as u64))
                .collect(),
            Distribution::Dense => rand::seq::index::sample(rng, 10 * n, n)
                .into_iter()
                .map(|i| i as u64 + 1)
                .collect(),
        }
    }
}

#[derive(Debug)]
struct Row {
    distribution: Distribution,
    serials: usize,
    keygen: Duration,
    ours: Duration,
    encode: Duration,
    keygen_size: u64,
    ours_size: u64,
    keygen_loads: Load,
    ours_loads: Load,
}

#[derive(Debug, Clone, Copy)]
enum Load {
    /// OpenSSH loaded it (and found the probe certificate revoked) in this time.
    Yes(Duration),
    No,
}

impl Load {
    fn cell(self) -> String {
        match self {
            Load::Yes(t) => format!("yes ({})", ms(t)),
            Load::No => "**no**".to_owned(),
        }
    }
}

/// Our KRL encoder against ssh-keygen's (see BENCHMARKS.md).
#[derive(Debug, clap::Parser)]
struct Options {
    /// Timed runs per measurement.
    #[arg(long, default_value_t = 5, value_parser = signoff_tests::bench_args::positive)]
    runs: usize,
    /// Serial counts to measure, comma-separated (`_` allowed: 1_000_000).
    #[arg(long, value_delimiter = ',', value_parser = signoff_tests::bench_args::positive, default_value = "100000,1000000")]
    sizes: Vec<usize>,
}

fn main() -> Result<()> {
    let opts = <Options as clap::Parser>::parse();
    let (seed, mut rng) = seeded_rng("krl-bench")?;
    let agent = release_agent_binary()?;
    eprintln!("signoff-agent: {}", agent.display());
    let tmp = tempfile::Builder::new().prefix("krl-bench-").tempdir()?;
    let dir = tmp.path();
    let ca = KeyPair::generate(dir, "ca", KeyType::Ed25519)?;
    let user = KeyPair::generate(dir, "user", KeyType::Ed25519)?;
    let ca_scope = CaScope::key(
        ssh_key::PublicKey::from_openssh(&ca.public_line()?)
            .context("parsing the CA key")?
            .key_data(),
    );
    let bench = Bench {
        agent,
        dir,
        ca,
        user,
        ca_scope,
        runs: opts.runs,
    };

    let mut rows = Vec::new();
    for distribution in [Distribution::Sparse, Distribution::Dense] {
        for &n in &opts.sizes {
            eprintln!("{} × {n}…", distribution.name());
            let serials = distribution.serials(n, &mut rng);
            rows.push(bench.measure(distribution, &serials)?);
        }
    }

    print!("{}", machine(seed, opts.runs)?);
    print!("{}", table(&rows));
    Ok(())
}

/// What every measurement shares.
struct Bench<'a> {
    agent: &'a Path,
    dir: &'a Path,
    ca: KeyPair,
    user: KeyPair,
    ca_scope: CaScope,
    runs: usize,
}

impl Bench<'_> {
    fn measure(&self, distribution: Distribution, serials: &[u64]) -> Result<Row> {
        let Bench {
            agent,
            dir,
            ca,
            user,
            ca_scope,
            runs,
        } = self;
        let spec = dir.join("spec.txt");
        let mut text = String::with_capacity(serials.len() * 28);
        for s in serials {
            let _ = writeln!(text, "serial: {s}");
        }
        fs::write(&spec, text)?;
        let specs = [spec];
        let theirs = dir.join("theirs.krl");
        let ours = dir.join("ours.krl");

        let (mut keygen_times, mut our_times, mut encode_times) =
            (Vec::new(), Vec::new(), Vec::new());
        let mut encoded = Vec::new();
        for _ in 0..*runs {
            let t = Instant::now();
            ssh_keygen_build(&theirs, CaArg::Key(&ca.public), &specs)?;
            keygen_times.push(t.elapsed());

            let t = Instant::now();
            agent_build_with(agent, &ours, CaArg::Key(&ca.public), &specs)?;
            our_times.push(t.elapsed());

            let t = Instant::now();
            let mut builder = KrlBuilder::new();
            builder.revoke_serial_ranges(
                ca_scope,
                serials.iter().map(|&s| SerialRange { lo: s, hi: s }),
            )?;
            encoded = builder.build().encode();
            encode_times.push(t.elapsed());
        }
        let ours_size = fs::metadata(&ours)?.len();
        if encoded.len() as u64 != ours_size {
            eprintln!(
                "note: in-process encode gave {} bytes, krl build {ours_size} (header date differs?)",
                encoded.len()
            );
        }

        // Whether OpenSSH loads each KRL: check a certificate whose serial is in the set.
        let probe = keys::sign(&CertRequest {
            ca: ca.clone(),
            subject: user.clone(),
            out: dir.join("probe"),
            key_id: "probe".to_owned(),
            principals: "root".to_owned(),
            serial: serials[0],
        })?;
        Ok(Row {
            distribution,
            serials: serials.len(),
            keygen: median(&mut keygen_times),
            ours: median(&mut our_times),
            encode: median(&mut encode_times),
            keygen_size: fs::metadata(&theirs)?.len(),
            ours_size,
            keygen_loads: loads(&theirs, &probe)?,
            ours_loads: loads(&ours, &probe)?,
        })
    }
}

fn loads(krl: &Path, probe: &Path) -> Result<Load> {
    let t = Instant::now();
    match ssh_keygen_check(krl, &[probe.to_path_buf()])? {
        Check::Loaded(v) if v == [Verdict::Revoked] => Ok(Load::Yes(t.elapsed())),
        Check::Loaded(v) => bail!(
            "{} loads but does not revoke serial it lists: {v:?}",
            krl.display()
        ),
        Check::Refused(_) => Ok(Load::No),
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| serials | count | ssh-keygen -k | krl build | encode only | time ours/theirs \
         | ssh-keygen size | our size | size ours/theirs | ssh-keygen's loads | ours loads |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.3} | {} | {} | {:.3} | {} | {} |",
            r.distribution.name(),
            thousands(r.serials as u64),
            ms(r.keygen),
            ms(r.ours),
            ms(r.encode),
            r.ours.as_secs_f64() / r.keygen.as_secs_f64(),
            thousands(r.keygen_size),
            thousands(r.ours_size),
            r.ours_size as f64 / r.keygen_size as f64,
            r.keygen_loads.cell(),
            r.ours_loads.cell(),
        );
    }
    out
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn machine(seed: u64, runs: usize) -> Result<String> {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let date = run_ok(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let openssh = run_ok(SSH.command()?.arg("-V"))?;
    let kernel = run_ok(Command::new("uname").arg("-r"))?;
    let _ = SSH_KEYGEN.path()?;
    Ok(format!(
        "- date: {}\n- machine: {nproc} CPUs, {cpu}, Linux {}\n- OpenSSH: {}\n\
         - median of {runs} runs each, ssh-keygen and signoff-agent alternating; seed {seed}\n\n",
        date.stdout.trim(),
        kernel.stdout.trim(),
        openssh.stderr.trim(),
    ))
}
