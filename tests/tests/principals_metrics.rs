//! The principals decisions histogram, end to end (issue 17): the real `signoff-server`, a
//! real agent beside a real sshd whose `AuthorizedPrincipalsCommand` is that agent's
//! `principals`, run as the command user. A granted and a denied certificate login each
//! show up on the control plane's `/metrics` under their outcome in
//! `signoff_principals_decision_seconds`, and a decision sent by some other uid is not
//! counted (only as refused).

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use signoff_tests::fleet::{Fleet, USER};
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::plane::{WAIT, http_request, wait_for};

/// `nobody`: neither root nor the command user.
const STRANGER_UID: u32 = 65534;

/// `/metrics` of the control plane.
fn metrics(fleet: &Fleet) -> Result<String> {
    let res = http_request(
        fleet.plane.http_addr(),
        "GET",
        "/metrics",
        &fleet.signoff_token,
        None,
    )?;
    if res.status != 200 {
        bail!("GET /metrics answered {}: {}", res.status, res.body);
    }
    Ok(res.body)
}

/// The value of the sample `name` (with its labels), 0 when absent.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn decisions(text: &str, outcome: &str) -> u64 {
    sample(
        text,
        &format!("signoff_principals_decision_seconds_count{{outcome=\"{outcome}\"}}"),
    )
}

/// Waits until `/metrics` satisfies `done`; returns that text.
fn wait_metrics(fleet: &Fleet, what: &str, done: impl Fn(&str) -> bool) -> Result<String> {
    let mut last = String::new();
    wait_for(what, WAIT, || {
        last = metrics(fleet)?;
        Ok(done(&last).then(|| last.clone()))
    })
    .with_context(|| format!("last /metrics:\n{last}"))
}

#[test]
fn granted_and_denied_logins_are_timed_by_outcome_and_a_strangers_datagram_is_not() -> Result<()> {
    let fleet = Fleet::new()?;
    // Certificates only (no AuthorizedKeysCommand): each login asks `principals` alone.
    let host = fleet.host_trusting("metrics-1", Some("1s"), &fleet.ca.public, false)?;
    assert_eq!(decisions(&metrics(&fleet)?, "granted"), 0);

    let login = fleet.login(&host)?;
    assert!(login.success, "the granted login failed: {}", login.stderr);
    let text = wait_metrics(&fleet, "a granted decision on /metrics", |t| {
        decisions(t, "granted") >= 1
    })?;
    assert_eq!(decisions(&text, "denied"), 0, "{text}");
    let granted = decisions(&text, "granted");

    // A certificate whose key ID has no grant.
    let stranger = KeyPair::generate(fleet.keys.path(), "stranger", KeyType::Ed25519)?;
    let cert = keys::sign(&CertRequest {
        ca: fleet.ca.clone(),
        subject: stranger.clone(),
        out: fleet.keys.path().join("stranger-cert"),
        key_id: "stranger@corp".to_owned(),
        principals: USER.to_owned(),
        serial: 78,
    })?;
    let login = signoff_tests::sshd::ssh_login(
        host.sshd.port(),
        signoff_tests::sessions::TEST_ACCOUNT,
        &stranger.private,
        &cert,
    )?;
    assert!(!login.success, "a key ID without a grant logged in");
    let text = wait_metrics(&fleet, "a denied decision on /metrics", |t| {
        decisions(t, "denied") >= 1
    })?;
    assert_eq!(decisions(&text, "granted"), granted, "{text}");
    assert!(
        text.contains("signoff_principals_decision_seconds_bucket{le=\"+Inf\",outcome=\"denied\"}"),
        "{text}"
    );
    let denied = decisions(&text, "denied");

    // The real command, run by a uid that is neither root nor the command user: its
    // datagram reaches the agent, which refuses it.
    let fp = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let out = Command::new(fleet.command_binary())
        .uid(STRANGER_UID)
        .gid(STRANGER_UID)
        .arg("principals")
        .arg("--config")
        .arg(host.agent.config())
        .args([
            signoff_tests::sessions::TEST_ACCOUNT,
            "stranger@corp",
            "78",
            fp,
            fp,
        ])
        .output()?;
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "the stranger's command was refused: {out:?}"
    );
    let text = wait_metrics(&fleet, "the stranger's datagram refused", |t| {
        sample(
            t,
            "signoff_principals_decisions_lost_total{reason=\"refused\"}",
        ) >= 1
    })?;
    assert_eq!(decisions(&text, "denied"), denied, "{text}");
    assert_eq!(decisions(&text, "granted"), granted, "{text}");
    Ok(())
}
