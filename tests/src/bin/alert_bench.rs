//! `alert-bench`: how long from a signed-off person's refused login to the alert at a
//! webhook and at syslog (issue 21).
//!
//! ```text
//! cargo run --release -p signoff-tests --bin alert-bench [-- --rounds N] [--debug]
//! ```
//!
//! The control plane (release binaries, or debug with `--debug`) with `[delivery.webhook]`
//! pointed at a local HTTP receiver and `[delivery.syslog]` at a real rsyslogd over TCP on
//! loopback, both for kind `alert`; one real agent beside a real sshd. The person is signed
//! off; then, N times, their certificate login is refused by sshd (the real `ssh` client),
//! and the time is taken from the moment `ssh` exits (sshd has logged the refusal by then)
//! until the `signed_off_attempt` alert has arrived at the webhook, and at rsyslog (its
//! output file polled every 2 ms). Each round waits for both before the next.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser as _;
use serde_json::json;
use signoff_tests::agent::Profile;
use signoff_tests::fleet::{Fleet, USER};
use signoff_tests::plane::{WAIT, wait_for};
use signoff_tests::sessions::percentiles;
use signoff_tests::siem::{Rsyslogd, WebhookReceiver};

/// Times refused login → alert delivered (see BENCHMARKS.md).
#[derive(Debug, clap::Parser)]
struct Options {
    /// Refused logins timed.
    #[arg(long, default_value_t = 100, value_parser = signoff_tests::bench_args::positive)]
    rounds: usize,
    /// Use the debug binaries (no release build needed).
    #[arg(long)]
    debug: bool,
}

fn summary(name: &str, samples: &[Duration]) {
    let (p50, p99) = percentiles(samples);
    let max = samples.iter().max().copied().unwrap_or_default();
    println!(
        "{name}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn main() -> Result<()> {
    let options = Options::parse();
    let profile = if options.debug {
        Profile::Debug
    } else {
        Profile::Release
    };
    let mut fleet = Fleet::with_profile(profile)?;
    let webhook = WebhookReceiver::start(0)?;
    let syslog = Rsyslogd::start(None)?;
    let secret = fleet.keys.path().join("alert-webhook.key");
    fs::write(&secret, "benchmark-secret-benchmark-secret-0123456789")?;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600))?;
    fleet.plane.stop()?;
    let mut config = fs::OpenOptions::new()
        .append(true)
        .open(fleet.plane.config())?;
    write!(
        config,
        "\n[delivery.webhook]\nurl = \"http://{}/hook\"\nsecret_file = {:?}\nkinds = [\"alert\"]\n\
         [delivery.syslog]\naddress = \"127.0.0.1:{}\"\nkinds = [\"alert\"]\n",
        webhook.addr,
        secret.display().to_string(),
        syslog.port
    )?;
    drop(config);
    fleet.plane.restart()?;
    let host = fleet.host("host-1")?;
    let (status, v) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "benchmark"})),
    )?;
    if status != 201 {
        bail!("sign-off answered {status}: {v}");
    }
    fleet.wait_signoff("complete", |r| !r["completed_at"].is_null())?;

    let alerts_at_syslog = || {
        syslog
            .received()
            .lines()
            .filter(|l| l.contains("signed_off_attempt"))
            .count()
    };
    let mut to_webhook = Vec::new();
    let mut to_syslog = Vec::new();
    for round in 0..options.rounds {
        let login = fleet.login(&host)?;
        let refused = Instant::now();
        if login.success {
            bail!("round {round}: the signed-off person logged in");
        }
        let mut webhook_at = None;
        let mut syslog_at = None;
        let deadline = refused + WAIT;
        while webhook_at.is_none() || syslog_at.is_none() {
            if Instant::now() > deadline {
                bail!(
                    "round {round}: the alert did not arrive (webhook {webhook_at:?}, syslog {syslog_at:?})\nserver log:\n{}",
                    fleet.plane.log()
                );
            }
            if webhook_at.is_none() {
                let delivered = webhook.accepted();
                if delivered.len() > round {
                    webhook_at = Some(delivered[round].at);
                }
            }
            if syslog_at.is_none() && alerts_at_syslog() > round {
                syslog_at = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let (Some(w), Some(s)) = (webhook_at, syslog_at) {
            to_webhook.push(w.saturating_duration_since(refused));
            to_syslog.push(s.saturating_duration_since(refused));
        }
    }
    // Every alert once, none lost.
    wait_for("the last alert everywhere", WAIT, || {
        Ok(
            (webhook.accepted().len() == options.rounds && alerts_at_syslog() == options.rounds)
                .then_some(()),
        )
    })?;
    println!(
        "alert-bench: {} refused logins, {:?} binaries",
        options.rounds, profile
    );
    summary("refused login -> alert at the webhook", &to_webhook);
    summary("refused login -> alert at rsyslog (TCP)", &to_syslog);
    Ok(())
}
