//! `signoff-bench`: how long a sign-off takes to hold on three real hosts.
//!
//! ```text
//! cargo run --release -p signoff-tests --bin signoff-bench [-- --rounds N --offline-rounds M]
//! ```
//!
//! A release control plane and three release agents, each beside its own sshd (`UsePAM
//! yes`, the agent's principals command and KRL), and one person with a pty and a non-pty
//! session open on every host. Measured:
//!
//! - **online**: from just before `POST /api/v1/users/NAME/signoff` until the record shows
//!   every host confirmed (each applied the revision and ended both sessions), polled every
//!   2 ms; the person is re-enabled and logs in again between rounds;
//! - **offline**: with the third host's agent stopped during the sign-off, from the moment
//!   its agent is started again until the record is complete (the agent started, connected,
//!   applied the revision and ended the sessions).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;
use signoff_tests::agent::Profile;
use signoff_tests::fleet::{Fleet, Held, USER, host_states, wait_gone};
use signoff_tests::plane::{WAIT, wait_for};
use signoff_tests::sessions::percentiles;

/// Times sign-offs on a fleet of real agents and sshds (see BENCHMARKS.md).
#[derive(Debug, clap::Parser)]
struct Options {
    /// Sign-offs with every host online.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Sign-offs of a person while their host is offline.
    #[arg(long, default_value_t = 10)]
    offline_rounds: usize,
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

fn signoff(fleet: &Fleet) -> Result<()> {
    let (status, v) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "benchmark"})),
    )?;
    if status != 201 {
        bail!("sign-off answered {status}: {v}");
    }
    Ok(())
}

fn reenable(fleet: &Fleet) -> Result<()> {
    let (status, v) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/reenable"),
        Some(&json!({"reason": "next round"})),
    )?;
    if status != 200 {
        bail!("re-enable answered {status}: {v}");
    }
    Ok(())
}

/// Polls the person's sign-off every 2 ms until `done`.
fn poll(fleet: &Fleet, done: impl Fn(&serde_json::Value) -> bool) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, v) = fleet.hr("GET", &format!("/api/v1/users/{USER}/signoff"), None)?;
        if status == 200 && done(&v) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("sign-off not done within {WAIT:?}: {v}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() -> Result<()> {
    let o = <Options as clap::Parser>::parse();
    // Release binaries for the agents, the sshd commands and the control plane.
    let fleet = Fleet::with_profile(Profile::Release)?;
    let mut hosts = vec![
        fleet.host("bench-1")?,
        fleet.host("bench-2")?,
        fleet.host("bench-3")?,
    ];
    let mut marker = 7000;
    let mut open_all = |fleet: &Fleet, hosts: &[signoff_tests::fleet::Host]| -> Result<Vec<Held>> {
        let mut held = Vec::new();
        for h in hosts {
            for pty in [true, false] {
                marker += 1;
                held.push(fleet.open(h, pty, marker)?);
            }
        }
        Ok(held)
    };

    let mut online = Vec::new();
    for _ in 0..o.rounds {
        let mut held = open_all(&fleet, &hosts)?;
        fleet.wait_live_sessions(6, "before the sign-off")?;
        let t0 = Instant::now();
        signoff(&fleet)?;
        poll(&fleet, |r| {
            host_states(r).iter().all(|(_, s)| s == "confirmed")
        })?;
        online.push(t0.elapsed());
        for (i, h) in held.iter_mut().enumerate() {
            wait_gone(h, &hosts[i / 2])?;
        }
        reenable(&fleet)?;
        let revision = fleet.plane.revision()?;
        for h in &mut hosts {
            h.agent.wait_applied(revision)?;
        }
    }

    let mut offline = Vec::new();
    for _ in 0..o.offline_rounds {
        let mut held = open_all(&fleet, &hosts)?;
        fleet.wait_live_sessions(6, "before the sign-off")?;
        hosts[2].agent.stop()?;
        signoff(&fleet)?;
        poll(&fleet, |r| {
            host_states(r)
                .iter()
                .filter(|(_, s)| s == "confirmed")
                .count()
                == 2
        })?;
        let t0 = Instant::now();
        hosts[2].agent.start()?;
        poll(&fleet, |r| !r["completed_at"].is_null())?;
        offline.push(t0.elapsed());
        for (i, h) in held.iter_mut().enumerate() {
            wait_gone(h, &hosts[i / 2])?;
        }
        reenable(&fleet)?;
        let revision = fleet.plane.revision()?;
        for h in &mut hosts {
            h.agent.wait_applied(revision)?;
        }
        wait_for("no live session left", WAIT, || {
            Ok(fleet.live_sessions()?.is_empty().then_some(()))
        })?;
    }

    println!(
        "signoff-bench: 3 hosts, a pty and a non-pty session on each; {} online rounds, {} offline rounds",
        o.rounds, o.offline_rounds
    );
    summary("sign-off -> every online host confirmed", &online);
    summary("offline agent started -> sign-off complete", &offline);
    Ok(())
}
