//! A sign-off survives the control plane being SIGKILLed right after it accepted it, with
//! every agent online: the real `signoff-server` (killed by the PID this test started, then
//! restarted on the same data directory), real agents beside real sshds (`UsePAM yes`), and
//! real `ssh` clients holding sessions open (harness: `signoff_tests::fleet`).
//!
//! The crash lands anywhere in the fan-out: before an agent heard of the revision, between
//! its ack and its result, or while its result is on the wire. Whichever it is, each host's
//! confirmation must reach the store once the control plane is back: the record completes,
//! and no host stays *pending*. The race is narrow, so the crash is repeated over rounds
//! (the person is re-enabled and logs in again between them).

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use signoff_tests::fleet::{Fleet, USER, assert_refused, host_states, wait_gone};
use signoff_tests::krl::ssh_keygen_check;
use signoff_tests::plane::{sync, wait_for};

/// How long after the sign-off's response each round's crash comes: the windows differ
/// (before the fan-out, during the agents' kills, while their results are on the wire).
/// Not synchronization: only where in the fan-out the crash lands.
const CRASH_AFTER_MS: [u64; 6] = [0, 0, 20, 50, 100, 200];

/// How long a round's sign-off may take to complete after the restart: an agent may have
/// drawn a reconnect delay of up to its 10 s backoff ceiling just before the server came
/// back, and another if it tried too early; a host left pending never completes at all.
const COMPLETE_WITHIN: Duration = Duration::from_secs(45);

#[test]
fn a_signoff_completes_on_every_host_after_the_control_plane_is_killed_mid_fanout() -> Result<()> {
    let mut fleet = Fleet::new()?;
    let mut hosts = vec![
        fleet.host("host-1")?,
        fleet.host("host-2")?,
        fleet.host("host-3")?,
    ];
    for (round, crash_after) in (0u32..).zip(CRASH_AFTER_MS) {
        if round > 0 {
            // Through the server, not the admin CLI: the CLI's revision reaches the server
            // only at its next poll, and `sync` would not wait for it.
            let (status, user) = fleet.hr(
                "POST",
                &format!("/api/v1/users/{USER}/reenable"),
                Some(&json!({"reason": format!("round {round}")})),
            )?;
            if status != 200 {
                bail!("round {round}: re-enable answered {status}: {user}");
            }
            // New logins work again only once each host has the re-enabling revision.
            for host in &mut hosts {
                sync(&fleet.plane, &mut host.agent)?;
            }
        }
        let mut held = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            held.push((i, fleet.open(host, false, 7000 + 10 * round + i as u32)?));
        }
        fleet
            .wait_live_sessions(hosts.len(), "one per host")
            .with_context(|| {
                let clients: Vec<String> = held.iter().map(|(_, h)| h.client.stderr()).collect();
                let api = |path: &str| {
                    fleet
                        .plane
                        .api("GET", path, None)
                        .map(|r| r.body)
                        .unwrap_or_default()
                };
                let krls: Vec<String> = hosts
                    .iter()
                    .map(|h| {
                        format!(
                            "{}: {:?}",
                            h.id,
                            ssh_keygen_check(&h.agent.krl_path(), std::slice::from_ref(&fleet.cert))
                                .and_then(|c| c.verdicts())
                        )
                    })
                    .collect();
                format!(
                    "round {round}: the clients said {clients:?}\nrevocations: {}\nsign-offs: {}\nKRLs: {krls:?}\nsshd logs:\n{}\nagent logs:\n{}",
                    api("/api/v1/revocations"),
                    api("/api/v1/signoffs"),
                    hosts.iter().map(|h| h.sshd.log()).collect::<Vec<_>>().join("\n"),
                    hosts.iter().map(|h| h.agent.log()).collect::<Vec<_>>().join("\n")
                )
            })?;

        let (status, record) = fleet.hr(
            "POST",
            &format!("/api/v1/users/{USER}/signoff"),
            Some(&json!({"reason": format!("crash round {round}")})),
        )?;
        if status != 201 {
            bail!("round {round}: sign-off answered {status}: {record}");
        }
        std::thread::sleep(Duration::from_millis(crash_after));
        fleet.plane.kill()?;
        fleet.plane.restart()?;

        let id = record["id"].clone();
        let mut last = serde_json::Value::Null;
        let done = wait_for(
            format_args!("the sign-off of round {round} to complete"),
            COMPLETE_WITHIN,
            || {
                let (status, v) =
                    fleet.hr("GET", &format!("/api/v1/users/{USER}/signoff"), None)?;
                if status != 200 {
                    bail!("GET signoff answered {status}: {v}");
                }
                last = v.clone();
                Ok((v["id"] == id && !v["completed_at"].is_null()).then_some(v))
            },
        )
        .with_context(|| {
            format!(
                "last record: {last:#}\nserver log:\n{}\nagent logs:\n{}",
                fleet.plane.log(),
                hosts
                    .iter()
                    .map(|h| h.agent.log())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        assert!(
            host_states(&done).iter().all(|(_, s)| s == "confirmed"),
            "round {round}: {done:#}"
        );
        for (i, client) in &mut held {
            wait_gone(client, &hosts[*i])?;
        }
        for host in &hosts {
            assert_refused(&fleet.login(host)?, host);
        }
    }
    Ok(())
}
