//! The agent and a control plane that goes away, end to end: the real `signoff-server`
//! (stopped and started again by the PID this test started) and the real agent daemon.
//!
//! - `signoff-agent status` names the real cause while the control plane is down:
//!   "connection refused", never "the control plane refused" (tonic reports a failed
//!   connection as a status of code `Unavailable`, like an answer of the server).
//! - After an outage long enough to push the reconnect backoff to its ceiling, the agent is
//!   back in sync within 15 s of the control plane's return.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use signoff_tests::plane::{Agent, ControlPlane, WAIT, sync, wait_for};

/// The reconnection promise: in sync within this long of the control plane's return.
const BACK_WITHIN: Duration = Duration::from_secs(15);

fn enrolled_agent(plane: &ControlPlane) -> Result<Agent> {
    let mut agent = Agent::new("")?;
    plane.cli(&["group", "add", "web"])?;
    agent.enroll(plane, "host-1", "web")?;
    agent.start()?;
    sync(plane, &mut agent)?;
    Ok(agent)
}

/// `status --json`'s `last_error`, once it satisfies `want`.
fn wait_last_error(agent: &Agent, what: &str, want: impl Fn(&str) -> bool) -> Result<String> {
    let mut last = None;
    wait_for(format_args!("status to say {what}"), WAIT, || {
        let (_, v) = agent.status()?;
        last = Some(v.clone());
        Ok(v["last_error"]
            .as_str()
            .filter(|e| want(e))
            .map(str::to_owned))
    })
    .with_context(|| format!("last status: {last:?}\nagent log:\n{}", agent.log()))
}

#[test]
fn status_says_connection_refused_while_the_control_plane_is_down() -> Result<()> {
    let mut plane = ControlPlane::start()?;
    let agent = enrolled_agent(&plane)?;
    plane.stop()?;

    let error = wait_last_error(&agent, "connection refused", |e| {
        e.contains("connection refused")
    })?;
    assert!(
        !error.contains("the control plane refused"),
        "a connection that was never made is no refusal by the control plane: {error}"
    );
    // The human-readable form says the same.
    let out = std::process::Command::new(signoff_tests::agent::agent_binary()?)
        .arg("status")
        .arg("--config")
        .arg(agent.config())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connection refused"), "{text}");
    Ok(())
}

#[test]
fn after_a_long_outage_the_agent_is_back_in_sync_within_15_s_of_the_return() -> Result<()> {
    let mut plane = ControlPlane::start()?;
    let mut agent = enrolled_agent(&plane)?;
    plane.kill()?;
    wait_last_error(&agent, "connection refused", |e| {
        e.contains("connection refused")
    })?;
    // The outage itself (not a wait for a condition): long enough for the backoff to
    // double past 15 s had it no lower ceiling (1 + 2 + 4 + 8 + 16 s).
    std::thread::sleep(Duration::from_secs(31));

    plane.restart()?;
    let returned = Instant::now();
    // A change made while the agent was away must reach it too.
    plane.revoke(&serde_json::json!({"kind": "key_id", "key_id": "gone@corp", "ca": null}))?;
    let revision = plane.revision()?;
    wait_for(
        format_args!("the agent to be connected and at revision {revision}"),
        BACK_WITHIN,
        || {
            let (_, v) = agent.status()?;
            let current = agent.applied_revision()?.unwrap_or(0) >= revision;
            Ok((v["connected"] == true && current).then_some(()))
        },
    )
    .with_context(|| format!("agent log:\n{}", agent.log()))?;
    let took = returned.elapsed();
    assert!(took <= BACK_WITHIN, "back in sync after {took:?}");
    agent.check_running()?;
    Ok(())
}
