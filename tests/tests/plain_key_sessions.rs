//! Logins with a plain key belong to the person who registered it, end to end: the real
//! `signoff-server`, a real agent beside a real sshd (`UsePAM yes`, `signoff-sshd
//! authorized-keys` as its `AuthorizedKeysCommand`), and real `ssh` clients offering a plain
//! key, no certificate (harness: `signoff_tests::fleet`). The agent reports such a session
//! with its key's SHA256 fingerprint and no key ID; the control plane must still list it
//! under the person, and killing the person's sessions or signing them off must end it.

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use signoff_tests::fleet::{Fleet, GROUP, Host, wait_gone};
use signoff_tests::keys::{KeyPair, KeyType};
use signoff_tests::plane::{WAIT, wait_for};
use signoff_tests::sessions::TEST_ACCOUNT;
use signoff_tests::sshd::ssh_login_plain_key;

/// The person who logs in with a plain key.
const PAT: &str = "pat";

/// The fleet, `pat` with a registered plain key and a grant for the test account, and one
/// host.
fn setup() -> Result<(Fleet, KeyPair, Host)> {
    let fleet = Fleet::new()?;
    let key = KeyPair::generate(fleet.keys.path(), PAT, KeyType::Ed25519)?;
    fleet.plane.cli(&[
        "user",
        "add",
        PAT,
        "--key-file",
        &key.public.display().to_string(),
    ])?;
    fleet
        .plane
        .cli(&["grant", "add", PAT, TEST_ACCOUNT, GROUP])?;
    let host = fleet.host("host-1")?;
    Ok((fleet, key, host))
}

/// `pat`'s sessions at the control plane that are live.
fn live_sessions_of_pat(fleet: &Fleet) -> Result<Vec<Value>> {
    let (status, v) = fleet.hr("GET", &format!("/api/v1/sessions?user={PAT}"), None)?;
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

fn wait_live_sessions_of_pat(fleet: &Fleet, expected: usize) -> Result<Vec<Value>> {
    wait_for(
        format_args!("{expected} live sessions of {PAT} at the control plane"),
        WAIT,
        || {
            let live = live_sessions_of_pat(fleet)?;
            Ok((live.len() == expected).then_some(live))
        },
    )
    .with_context(|| {
        let all = fleet.hr("GET", "/api/v1/sessions", None);
        format!("every session: {all:?}")
    })
}

#[test]
fn plain_key_sessions_are_listed_with_their_person_and_killed_with_kill_sessions() -> Result<()> {
    let (fleet, key, host) = setup()?;
    let mut first = fleet.open_plain_key(&host, &key, 8101)?;
    let mut second = fleet.open_plain_key(&host, &key, 8102)?;

    let live = wait_live_sessions_of_pat(&fleet, 2)?;
    for s in &live {
        assert_eq!(s["user"], PAT, "{s}");
        assert_eq!(s["key_id"], "", "a plain-key login: {s}");
        assert_eq!(s["key_fingerprint"], key.sha256_fingerprint()?, "{s}");
    }

    let (status, orders) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{PAT}/kill-sessions"),
        Some(&json!({"reason": "laptop stolen"})),
    )?;
    assert_eq!(status, 202, "{orders}");
    assert_eq!(
        orders.as_array().map_or(0, Vec::len),
        2,
        "one order per session: {orders}"
    );
    wait_gone(&mut first, &host)?;
    wait_gone(&mut second, &host)?;
    wait_live_sessions_of_pat(&fleet, 0)?;
    Ok(())
}

#[test]
fn signing_off_a_plain_key_person_ends_their_sessions_and_confirms_the_host() -> Result<()> {
    let (fleet, key, host) = setup()?;
    let mut held = fleet.open_plain_key(&host, &key, 8201)?;
    wait_live_sessions_of_pat(&fleet, 1)?;

    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{PAT}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 201, "{record}");
    let record = wait_for("the sign-off of pat to complete", WAIT, || {
        let (status, v) = fleet.hr("GET", &format!("/api/v1/users/{PAT}/signoff"), None)?;
        if status != 200 {
            bail!("GET signoff answered {status}: {v}");
        }
        Ok((!v["completed_at"].is_null()).then_some(v))
    })?;
    assert_eq!(record["hosts"][0]["host"], "host-1", "{record}");
    assert_eq!(record["hosts"][0]["state"], "confirmed", "{record}");
    assert_eq!(
        record["hosts"][0]["killed_sessions"]
            .as_array()
            .map_or(0, Vec::len),
        1,
        "{record}"
    );
    wait_gone(&mut held, &host)?;
    wait_live_sessions_of_pat(&fleet, 0)?;

    let login = ssh_login_plain_key(host.sshd.port(), TEST_ACCOUNT, &key.private)?;
    assert!(
        !login.success && login.stderr.contains("Permission denied"),
        "a new plain-key login of the signed-off person must be refused: {login:?}"
    );
    Ok(())
}
