//! Figures for signoff's own CA (issue 19), release binaries, real tools:
//!
//! 1. **Issuance at 50 concurrent requests**, p50/p99 per request: over the HTTP API
//!    (`POST /api/v1/users/{name}/certificates`, baseline `GET /api/v1/revision` at the
//!    same concurrency), and over SSH (`ssh -p PORT cert@127.0.0.1 < KEY.pub`, a whole
//!    `ssh` client run each; baseline: the same `ssh` client logging in to a real sshd with
//!    a certificate and running `true`).
//! 2. **Login wall time with 1,000,000 revoked-and-expired issued serials** in the store:
//!    logins to a real sshd (the agent's principals command and KRL) before, and after a
//!    million issued certificates, each revoked by serial and expired, were added and the
//!    control plane's expiry sweep withdrew them; the ratio must be ≤ 1.1.
//!
//! ```sh
//! cargo run --release -p signoff-tests --bin cert-bench [-- --concurrency 50 --rounds 10 --serials 1000000 --logins 50]
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::json;
use signoff_tests::agent::Profile;
use signoff_tests::command::{run_ok, run_with_input};
use signoff_tests::fleet::{Fleet, USER};
use signoff_tests::keys::public_line;
use signoff_tests::plane::{WAIT, http_request, sync, wait_for};
use signoff_tests::sessions::TEST_ACCOUNT;
use signoff_tests::sshd::ssh_login;
use signoff_tests::tools::SSH;

struct Options {
    concurrency: usize,
    rounds: usize,
    serials: u64,
    logins: usize,
}

fn parse_options() -> Result<Options> {
    let mut o = Options {
        concurrency: 50,
        rounds: 10,
        serials: 1_000_000,
        logins: 50,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> Result<u64> {
            args.next()
                .ok_or_else(|| anyhow!("{a} needs a value"))?
                .parse()
                .with_context(|| format!("{a} takes a number"))
        };
        match a.as_str() {
            "--concurrency" => o.concurrency = usize::try_from(value()?)?,
            "--rounds" => o.rounds = usize::try_from(value()?)?,
            "--serials" => o.serials = value()?,
            "--logins" => o.logins = usize::try_from(value()?)?,
            other => bail!(
                "unknown argument {other:?}; options: --concurrency N --rounds N --serials N --logins N"
            ),
        }
    }
    if o.concurrency == 0 || o.rounds == 0 || o.logins == 0 {
        bail!("--concurrency, --rounds and --logins must be at least 1");
    }
    Ok(o)
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn line(what: &str, s: &Stats) -> String {
    format!("| {what} | {} | {} | {} |", ms(s.p50), ms(s.p99), ms(s.max))
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
    format!("{cores} × {cpu}")
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs `one` `rounds` times in each of `concurrency` threads at once; every duration.
fn concurrently(
    concurrency: usize,
    rounds: usize,
    one: &(dyn Fn() -> Result<()> + Sync),
) -> Result<Vec<Duration>> {
    thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(move || -> Result<Vec<Duration>> {
                    let mut took = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let started = Instant::now();
                        one()?;
                        took.push(started.elapsed());
                    }
                    Ok(took)
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.join().map_err(|_| anyhow!("a worker panicked"))??);
        }
        Ok(all)
    })
}

fn ssh_cert(port: u16, known_hosts: &Path, key: &Path, public: &Path) -> Result<String> {
    let mut cmd = SSH.command()?;
    cmd.args(["-F", "/dev/null", "-i"])
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=yes",
            "-p",
            &port.to_string(),
            "cert@127.0.0.1",
        ]);
    let out = run_with_input(&mut cmd, public, Duration::from_secs(120))?;
    if !out.success() {
        bail!("`{}` exited {:?}: {}", out.command, out.code(), out.stderr);
    }
    Ok(out.stdout)
}

fn main() -> Result<()> {
    let o = parse_options()?;
    let load_before = load_average();
    let mut fleet = Fleet::with_profile(Profile::Release)?;
    let key = fleet.user_key.clone();
    let res = fleet.plane.api(
        "PATCH",
        &format!("/api/v1/users/{USER}"),
        Some(&json!({ "public_keys": [public_line(&key.public)?] })),
    )?;
    if res.status != 200 {
        bail!("registering the key answered {}: {}", res.status, res.body);
    }
    let token = fleet.plane.token("bench", "issue")?;
    let listener = fleet.plane.listen_for_certificates()?;
    let known_hosts = fleet.keys.path().join("known_hosts");
    let host_key = fs::read_to_string(fleet.plane.data_dir().join("cert-ssh-host.key.pub"))?;
    fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", listener.port(), host_key.trim()),
    )?;
    let ca = fleet.plane.data_dir().join("user-ca.key.pub");
    // sshd's default MaxStartups (10:30:100) drops concurrent handshakes: the baseline
    // must not measure that.
    let mut host = fleet.host_trusting_with_sshd("bench-1", &ca, "MaxStartups 200\n")?;

    // A certificate to log in with (and the first issuance, which adds the key ID).
    let cert_line = ssh_cert(listener.port(), &known_hosts, &key.private, &key.public)?;
    let cert = PathBuf::from(format!("{}-cert.pub", key.private.display()));
    fs::write(&cert, &cert_line)?;
    sync(&fleet.plane, &mut host.agent)?;
    let login = || -> Result<()> {
        let l = ssh_login(host.sshd.port(), TEST_ACCOUNT, &key.private, &cert)?;
        if !l.success {
            bail!("login failed: {}", l.stderr);
        }
        Ok(())
    };

    // 1. Issuance at `concurrency` requests at once.
    let http = fleet.plane.http_addr();
    let body = json!({"public_key": public_line(&key.public)?, "ttl": "1h"}).to_string();
    let issue_api = || -> Result<()> {
        let res = http_request(
            http,
            "POST",
            &format!("/api/v1/users/{USER}/certificates"),
            &token,
            Some(&body),
        )?;
        if res.status != 201 {
            bail!("issuance answered {}: {}", res.status, res.body);
        }
        Ok(())
    };
    let revision = || -> Result<()> {
        let res = fleet.plane.api("GET", "/api/v1/revision", None)?;
        if res.status != 200 {
            bail!("GET /api/v1/revision answered {}", res.status);
        }
        Ok(())
    };
    let issue_ssh = || -> Result<()> {
        ssh_cert(listener.port(), &known_hosts, &key.private, &key.public).map(drop)
    };
    for _ in 0..3 {
        issue_api()?;
        revision()?;
        issue_ssh()?;
        login()?;
    }
    eprintln!("issuance: {} × {} over the API…", o.concurrency, o.rounds);
    let api = stats(concurrently(o.concurrency, o.rounds, &issue_api)?);
    let api_base = stats(concurrently(o.concurrency, o.rounds, &revision)?);
    eprintln!("issuance: {} × {} over SSH…", o.concurrency, o.rounds);
    let ssh = stats(concurrently(o.concurrency, o.rounds, &issue_ssh)?);
    let ssh_base = stats(concurrently(o.concurrency, o.rounds, &login)?);

    // 2. Logins before and after a million revoked-and-expired issued serials.
    let time_logins = || -> Result<Vec<Duration>> {
        for _ in 0..5 {
            login()?;
        }
        (0..o.logins)
            .map(|_| {
                let started = Instant::now();
                login()?;
                Ok(started.elapsed())
            })
            .collect()
    };
    eprintln!("logins: {} with an empty KRL…", o.logins);
    let krl_before = fs::metadata(host.agent.krl_path())?.len();
    let before = stats(time_logins()?);

    // One real revocation by serial makes the revision (and its audit row) the million
    // rows join; then the server is stopped and they are added to its store as if issued
    // and revoked over time, each already expired.
    let listed = fleet
        .plane
        .cli_json(&["cert", "list", USER])?
        .as_array()
        // The newest: not the certificate the logins use (the oldest).
        .and_then(|a| a.first().cloned())
        .ok_or_else(|| anyhow!("no certificate listed"))?;
    let first_serial = listed["serial"].as_u64().context("serial")?;
    let ca_fp = listed["ca_fingerprint"]
        .as_str()
        .context("ca_fingerprint")?
        .to_owned();
    let record = fleet.plane.revoke(&json!({
        "kind": "serial", "ca": "signoff", "lo": first_serial, "hi": first_serial,
        "reason": "bench",
    }))?;
    let rev = record["revision"].as_i64().context("revision")?;
    fleet.plane.stop()?;
    let db = fleet.plane.data_dir().join("signoff.db");
    let expired = i64::try_from(signoff_tests::now())? - 3600;
    let base = 10_000_000u64;
    let sql = format!(
        "PRAGMA journal_mode = WAL;
         BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {count})
         INSERT INTO issued_certificates (serial, user_id, ca_fingerprint, key_fingerprint,
             public_key, principals, valid_after, valid_before, source_address, issued_at, issued_by)
         SELECT {base} + i, (SELECT id FROM users WHERE name = '{USER}'), '{ca_fp}', 'SHA256:bench',
             'ssh-ed25519 bench', '[\"{USER}\"]', {after}, {expired}, NULL, {after}, 'bench' FROM n;
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {count})
         INSERT INTO revocations (kind, ca_fingerprint, value, serial_lo, serial_hi, reason,
             since_rev, valid_before)
         SELECT 'serial', '{ca_fp}', '', {base} + i, {base} + i, 'bench', {rev}, {expired} FROM n;
         COMMIT;",
        count = o.serials,
        after = expired - 8 * 3600,
    );
    eprintln!("adding {} revoked, expired serials…", o.serials);
    let started = Instant::now();
    run_ok(Command::new("sqlite3").arg(&db).arg(sql))?;
    let insert = started.elapsed();
    fleet.plane.restart()?;
    let started = Instant::now();
    wait_for(
        "the expiry sweep to withdraw the million revocations",
        Duration::from_secs(600),
        || {
            let res = fleet.plane.api("GET", "/api/v1/revocations", None)?;
            let v = res.json()?;
            Ok(v.as_array()
                .is_some_and(|a| {
                    a.iter()
                        .all(|r| r["kind"] != "serial" || r["lo"] == first_serial)
                })
                .then_some(()))
        },
    )?;
    let sweep = started.elapsed();
    sync(&fleet.plane, &mut host.agent)?;
    let krl_after = fs::metadata(host.agent.krl_path())?.len();
    eprintln!("logins: {} after…", o.logins);
    let after = stats(time_logins()?);
    let ratio = after.p50.as_secs_f64() / before.p50.as_secs_f64();
    let rows = run_ok(
        Command::new("sqlite3")
            .arg(&db)
            .arg("SELECT count(*) FROM revocations WHERE kind = 'serial'"),
    )?
    .stdout;
    let _ = WAIT;

    println!(
        "machine: {}; load before {load_before}, after {}",
        machine(),
        load_average()
    );
    println!(
        "\nIssuance, {} concurrent × {} rounds ({} requests each):\n",
        o.concurrency,
        o.rounds,
        o.concurrency * o.rounds
    );
    println!("| request | p50 | p99 | max |\n| --- | --- | --- | --- |");
    println!("{}", line("API: POST …/certificates", &api));
    println!("{}", line("API baseline: GET /api/v1/revision", &api_base));
    println!(
        "{}",
        line("SSH: ssh cert@ < key.pub (whole client run)", &ssh)
    );
    println!(
        "{}",
        line(
            "SSH baseline: ssh to sshd with a certificate, `true`",
            &ssh_base
        )
    );
    println!(
        "\nLogins ({} sequential, p50 / p99): empty KRL ({krl_before} bytes) {} / {}; \
         with {} revoked-and-expired issued serials in the store ({} serial revocation rows, \
         inserted in {:.1} s, withdrawn by the sweep {:.1} s after the restart; KRL {krl_after} bytes) \
         {} / {}; ratio of medians {ratio:.3} (≤ 1.1 required)",
        o.logins,
        ms(before.p50),
        ms(before.p99),
        o.serials,
        rows.trim(),
        insert.as_secs_f64(),
        sweep.as_secs_f64(),
        ms(after.p50),
        ms(after.p99),
    );
    if ratio > 1.1 {
        bail!("login with the expired serials took {ratio:.3}× the baseline (> 1.1)");
    }
    Ok(())
}
