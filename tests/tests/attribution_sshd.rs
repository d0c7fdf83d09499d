//! Attribution when sshd's log lags the logins, end to end: the real control plane, agent,
//! sshd (`UsePAM yes`) and ssh. The agent reads a copy of sshd's log that the test fills
//! when it chooses, so a login's `Accepted` line reaches the agent long after the login
//! was announced without one (as under a storm of logins, issue 16).
//!
//! What a user sees: the login listed with no person; a sign-off of its person does not
//! report the host confirmed while it runs, and says why; once the line arrives the login
//! is attributed (never "conflicting"), ended by the sign-off, and the host confirms.

use std::fs;
use std::io::Write as _;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use signoff_tests::fleet::{Fleet, KEY_ID, USER, host_states, wait_gone};
use signoff_tests::plane::{WAIT, wait_for};

/// The host's sessions at the control plane that are live.
fn live(fleet: &Fleet, host: &str) -> Result<Vec<Value>> {
    let (status, v) = fleet.hr("GET", &format!("/api/v1/sessions?host={host}"), None)?;
    if status != 200 {
        bail!("GET /api/v1/sessions answered {status}: {v}");
    }
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "live")
        .cloned()
        .collect())
}

#[test]
fn a_login_whose_log_line_comes_late_blocks_confirmation_then_is_attributed_and_ended() -> Result<()>
{
    let fleet = Fleet::new()?;
    let lagging = tempfile::NamedTempFile::new()?;
    let host = fleet.host_reading_log("host-1", lagging.path())?;
    let mut held = fleet.open(&host, false, 6701)?;

    // Announced after the log grace period, with nobody's name on it.
    let session = wait_for("the login listed without attribution", WAIT, || {
        Ok(live(&fleet, "host-1")?.into_iter().next())
    })?;
    assert!(session["user"].is_null(), "{session}");
    assert_eq!(session["key_id"], "", "{session}");

    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "laptop stolen"})),
    )?;
    assert_eq!(status, 201, "{record}");
    // The host answers, but not "confirmed": a login that may be the person's runs.
    let record = fleet.wait_signoff("reported as unsure by the host", |r| {
        r["hosts"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("is not known"))
    })?;
    assert_eq!(
        host_states(&record),
        vec![("host-1".into(), "pending".into())],
        "{record}"
    );
    assert!(
        held.client.wait_exit(std::time::Duration::ZERO)?.is_none(),
        "an unattributed login is not killed on a guess"
    );

    // sshd's log catches up: its lines reach the agent now.
    let lines = host.sshd.log();
    if !lines.contains("Accepted publickey") {
        bail!("sshd logged no Accepted line:\n{lines}");
    }
    fs::OpenOptions::new()
        .append(true)
        .open(lagging.path())?
        .write_all(lines.as_bytes())?;

    // The late line completes the attribution; the sign-off ends the login; the host
    // confirms.
    fleet.wait_signoff("confirmed", |r| {
        host_states(r) == vec![("host-1".into(), "confirmed".into())]
    })?;
    wait_gone(&mut held, &host)?;
    let id = session["id"].as_str().unwrap_or_default();
    let (status, ended) = fleet.hr("GET", &format!("/api/v1/sessions/host-1/{id}"), None)?;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(
        ended["key_id"], KEY_ID,
        "attributed, not conflicting: {ended}"
    );
    assert_eq!(ended["user"], USER, "{ended}");
    Ok(())
}
