//! Events pushed to syslog, end to end (issue 21): the real `signoff-server` with
//! `[delivery.syslog]`, and a real `rsyslogd` (Debian's package, started by the test in a
//! private directory, listening with `imtcp` on a loopback port) writing what it receives
//! to a file. RFC 5424 messages, octet-counted, over plain TCP and over TLS (rsyslog's
//! gtls driver, package rsyslog-gnutls). Over TLS, a receiver whose certificate the
//! configured CA did not sign gets nothing (fail closed), and once the right CA is
//! configured every event held back is delivered, none lost. The alert delivered over TLS
//! is a real one: the audit log altered behind the server's back, found by audit verify.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};
use signoff_tests::plane::{ControlPlane, WAIT, wait_for};
use signoff_tests::siem::{Rsyslogd, make_pki};

/// Replaces the server's `[delivery.syslog]` (the config's last table) and restarts it.
fn deliver_to(plane: &mut ControlPlane, base: &str, table: &str) -> Result<()> {
    plane.stop()?;
    fs::write(plane.config(), format!("{base}\n{table}"))?;
    plane.restart()
}

#[test]
fn events_reach_a_real_rsyslog_over_tcp_and_over_tls_and_a_wrong_ca_gets_nothing() -> Result<()> {
    let mut plane = ControlPlane::start()?;
    let base = fs::read_to_string(plane.config())?;
    let certs = tempfile::tempdir()?;
    let good = make_pki(certs.path(), "good")?;
    let other = make_pki(certs.path(), "other")?;

    // Plain TCP: an audit event (a group made through the CLI).
    let tcp = Rsyslogd::start(None)?;
    deliver_to(
        &mut plane,
        &base,
        &format!("[delivery.syslog]\naddress = \"127.0.0.1:{}\"\n", tcp.port),
    )?;
    plane.cli(&["group", "add", "syslog-tcp"])?;
    let line = wait_for("the audit event at rsyslog over TCP", WAIT, || {
        Ok(tcp
            .received()
            .lines()
            .find(|l| l.contains("group.create") || l.contains("syslog-tcp"))
            .map(str::to_owned))
    })
    .with_context(|| format!("rsyslogd: {}\nserver:\n{}", tcp.stderr(), plane.log()))?;
    assert!(
        line.starts_with("signoff audit [signoff@32473 cursor=\""),
        "{line}"
    );
    let json_start = line.find('{').context("a JSON body")?;
    let event: serde_json::Value = serde_json::from_str(&line[json_start..])?;
    assert_eq!(event["kind"], "audit", "{line}");

    // TLS with a receiver whose certificate another CA signed: nothing is delivered.
    let tls = Rsyslogd::start(Some(&good))?;
    let table = |ca: &Path| {
        format!(
            "[delivery.syslog]\naddress = \"127.0.0.1:{}\"\ntls = true\nca_file = {:?}\n\
             server_name = \"localhost\"\nkinds = [\"alert\", \"audit\"]\n",
            tls.port,
            ca.display().to_string()
        )
    };
    deliver_to(&mut plane, &base, &table(&other.ca))?;
    plane.cli(&["group", "add", "held-back"])?;
    wait_for("the server to try and refuse the receiver", WAIT, || {
        Ok(plane.log().contains("delivery failed").then_some(()))
    })?;
    assert!(!tls.received().contains("held-back"), "{}", tls.received());

    // The right CA: what was held back arrives, then a real alert.
    deliver_to(&mut plane, &base, &table(&good.ca))?;
    wait_for("the held-back event over TLS", WAIT, || {
        Ok(tls.received().contains("held-back").then_some(()))
    })
    .with_context(|| format!("rsyslogd: {}\nserver:\n{}", tls.stderr(), plane.log()))?;
    // Alter one audit row behind the server's back: audit verify finds the break and
    // raises the alert.
    let db = plane.data_dir().join("signoff.db");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA busy_timeout = 5000; UPDATE audit_log SET reason = 'rewritten' WHERE seq = 1;")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = plane.api("GET", "/api/v1/audit/verify", None)?;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(!res.json()?["broken"].is_null(), "{}", res.body);
    let alert = wait_for("the audit_chain_broken alert over TLS", WAIT, || {
        Ok(tls
            .received()
            .lines()
            .find(|l| l.contains("audit_chain_broken"))
            .map(str::to_owned))
    })?;
    assert!(
        alert.starts_with("signoff alert [signoff@32473 cursor=\""),
        "{alert}"
    );
    // Verifying again raises no second alert while the first is unacknowledged.
    plane.api("GET", "/api/v1/audit/verify", None)?;
    let alerts = plane.api("GET", "/api/v1/alerts", None)?.json()?;
    let n = alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["alert"]["rule"] == "audit_chain_broken")
        .count();
    assert_eq!(n, 1, "{alerts}");
    let _ = std::io::stderr().flush();
    Ok(())
}
