//! Single sign-off, end to end: the real `signoff-server`, three real agents enrolled over
//! mTLS, each beside its own real sshd (`UsePAM yes`, the agent's principals command and
//! KRL, the agent watching that sshd's sessions), and real `ssh` clients holding pty and
//! non-pty sessions open (harness: `signoff_tests::fleet`). One sign-off request ends the
//! person's access everywhere: new logins are refused and every session of theirs ends, on
//! the hosts online at once, and on a host whose agent was down as soon as it is back,
//! including a session opened while it was down. A sign-off acknowledged just before the
//! control plane is SIGKILLed survives the crash and completes.

use std::fs;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use signoff_tests::fleet::{Fleet, USER, assert_refused, host_states, sleeping, wait_gone};
use signoff_tests::keys::{KeyPair, KeyType};
use signoff_tests::krl::{Verdict, ssh_keygen_check};
use signoff_tests::plane::{WAIT, wait_for};

#[test]
fn signoff_ends_access_on_online_hosts_at_once_and_on_an_offline_host_when_it_returns() -> Result<()>
{
    let fleet = Fleet::new()?;
    let mut hosts = vec![
        fleet.host("host-1")?,
        fleet.host("host-2")?,
        fleet.host("host-3")?,
    ];
    // A pty and a non-pty session on each host.
    let mut clients = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let base = 6100 + 10 * i as u32;
        clients.push((i, base + 1, fleet.open(host, true, base + 1)?));
        clients.push((i, base + 2, fleet.open(host, false, base + 2)?));
    }
    fleet.wait_live_sessions(6, "two per host")?;

    hosts[2].agent.stop()?;
    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["user"], USER);

    let record = fleet.wait_signoff("confirmed by the two online hosts", |r| {
        let states = host_states(r);
        states.iter().filter(|(_, s)| s == "confirmed").count() == 2
    })?;
    assert_eq!(
        host_states(&record),
        vec![
            ("host-1".to_owned(), "confirmed".to_owned()),
            ("host-2".to_owned(), "confirmed".to_owned()),
            ("host-3".to_owned(), "offline".to_owned()),
        ]
    );
    assert!(record["completed_at"].is_null(), "{record}");
    for (i, _, client) in clients.iter_mut().filter(|(i, ..)| *i < 2) {
        wait_gone(client, &hosts[*i])?;
    }
    for host in &hosts[..2] {
        assert_refused(&fleet.login(host)?, host);
    }
    let killed: usize = record["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["killed_sessions"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(killed, 4, "both sessions on each online host: {record}");

    // The third host's agent is down: its sessions live on, and a login still succeeds
    // there from the state it had (best effort) — that session must end on reconnect too.
    for (_, marker, _) in clients.iter().filter(|(i, ..)| *i == 2) {
        assert_eq!(sleeping(*marker).len(), 1, "session {marker} on host-3");
    }
    let mut late = fleet.open(&hosts[2], false, 6199)?;
    wait_for("the late session's command to run", WAIT, || {
        Ok((!sleeping(6199).is_empty()).then_some(()))
    })?;

    hosts[2].agent.start()?;
    let record = fleet.wait_signoff("complete", |r| !r["completed_at"].is_null())?;
    assert!(host_states(&record).iter().all(|(_, s)| s == "confirmed"));
    for (i, _, client) in clients.iter_mut().filter(|(i, ..)| *i == 2) {
        wait_gone(client, &hosts[*i])?;
    }
    wait_gone(&mut late, &hosts[2])?;
    assert_refused(&fleet.login(&hosts[2])?, &hosts[2]);
    fleet.wait_live_sessions(0, "every session ended")?;

    // Idempotent: asking again returns the same record.
    let (status, again) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], record["id"]);

    // The KRL every host wrote revokes the certificate, as ssh-keygen -Q sees it.
    for host in &hosts {
        let verdicts = ssh_keygen_check(&host.agent.krl_path(), std::slice::from_ref(&fleet.cert))?
            .verdicts()?;
        assert_eq!(verdicts, vec![Verdict::Revoked], "KRL of {}", host.id);
    }
    Ok(())
}

#[test]
fn a_signoff_acknowledged_before_the_control_plane_is_killed_survives_and_completes() -> Result<()>
{
    let mut fleet = Fleet::new()?;
    let mut host = fleet.host("host-1")?;
    let mut client = fleet.open(&host, false, 6201)?;
    fleet.wait_live_sessions(1, "the open session")?;
    // Keep the agent from hearing of it before the crash: the record must come from disk.
    host.agent.stop()?;

    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "key stolen"})),
    )?;
    assert_eq!(status, 201, "{record}");
    fleet.plane.kill()?;
    fleet.plane.restart()?;

    let (status, after) = fleet.hr("GET", &format!("/api/v1/users/{USER}/signoff"), None)?;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["id"], record["id"]);
    assert_eq!(
        host_states(&after),
        vec![("host-1".into(), "offline".into())]
    );

    host.agent.start()?;
    fleet.wait_signoff("complete", |r| !r["completed_at"].is_null())?;
    wait_gone(&mut client, &host)?;
    assert_refused(&fleet.login(&host)?, &host);
    Ok(())
}

#[test]
fn a_statement_from_an_untrusted_signer_kills_nothing_and_says_why() -> Result<()> {
    let fleet = Fleet::new()?;
    // This host trusts another key only: the control plane's statement must not verify.
    let other = KeyPair::generate(fleet.keys.path(), "other-signer", KeyType::Ed25519)?;
    fs::write(
        &fleet.allowed_signers,
        format!("signoff {}", other.public_line()?),
    )?;
    let host = fleet.host("host-1")?;
    let mut client = fleet.open(&host, false, 6301)?;
    fleet.wait_live_sessions(1, "the open session")?;

    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left"})),
    )?;
    assert_eq!(status, 201, "{record}");
    let record = fleet.wait_signoff("refused by the host", |r| {
        r["hosts"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("allowed_signers"))
    })?;
    assert_eq!(
        host_states(&record),
        vec![("host-1".into(), "pending".into())]
    );
    // The session is alive; new logins are refused all the same (grants and KRL).
    assert!(
        client
            .client
            .wait_exit(Duration::from_millis(500))?
            .is_none()
    );
    assert_eq!(sleeping(6301).len(), 1);
    assert_refused(&fleet.login(&host)?, &host);
    Ok(())
}

#[test]
fn the_cli_prints_progress_until_every_host_confirmed_or_its_wait_runs_out() -> Result<()> {
    let fleet = Fleet::new()?;
    let _online = fleet.host("host-1")?;
    let mut offline = fleet.host("host-2")?;
    offline.agent.stop()?;

    let out = fleet
        .plane
        .cli_run(&["signoff", USER, "--reason", "left", "--wait", "5s"])?;
    assert_eq!(out.code(), Some(75), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("sign-off #1 of mallory: 0/2 hosts confirmed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("1/2 hosts confirmed, 0 pending, 1 offline"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("waiting for host-2 (offline)"),
        "{}",
        out.stdout
    );

    offline.agent.start()?;
    // Asking again returns the same sign-off, and follows it to the end.
    let out = fleet
        .plane
        .cli_run(&["signoff", USER, "--reason", "left", "--wait", "20s"])?;
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("sign-off #1 of mallory: 2/2 hosts confirmed"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("complete"), "{}", out.stdout);

    let out = fleet
        .plane
        .cli_run(&["signoff", "nobody", "--reason", "x"])?;
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("nobody"), "{}", out.stderr);
    let out = fleet.plane.cli_run(&["signoff", USER])?;
    assert_eq!(
        out.code(),
        Some(64),
        "a sign-off without --reason is a usage error"
    );
    assert!(out.stderr.contains("--reason"), "{}", out.stderr);
    Ok(())
}
