//! Refused login attempts and alerts, end to end (issue 21): the real `signoff-server`
//! with `[delivery.webhook]` pointed at a local HTTP receiver, a real agent beside a real
//! sshd, the real `ssh` client. A signed-off person's certificate login is refused by
//! sshd; the agent reads the refusal from sshd's log and sends it over its sync stream;
//! the control plane records it on `GET /api/v1/events` with the person resolved, raises
//! the `signed_off_attempt` alert, and delivers it to the webhook, HMAC-signed, retried
//! after the receiver's first failure. The alert is acknowledged (audited) through the
//! API. A flood of refused attempts is bounded per host and does not hold up sync. A
//! sign-off waiting on a host whose agent is stopped is one `incomplete_action` alert once
//! past `offline_after`.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use signoff_control_plane::hooks::WebhookSecret;
use signoff_tests::fleet::{Fleet, KEY_ID, USER, assert_refused, host_states};
use signoff_tests::plane::{WAIT, http_request, wait_for};
use signoff_tests::sessions::TEST_ACCOUNT;
use signoff_tests::siem::WebhookReceiver;

const SECRET: &str = "0123456789abcdef0123456789abcdef-alert-webhook";

/// The events after `since` (`GET /api/v1/events`, JSON lines).
fn events(fleet: &Fleet, since: i64) -> Result<Vec<Value>> {
    let res = fleet.plane.api(
        "GET",
        &format!("/api/v1/events?since={since}&limit=1000"),
        None,
    )?;
    if res.status != 200 {
        bail!("GET /api/v1/events answered {}: {}", res.status, res.body);
    }
    res.body
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("event line {l:?}")))
        .collect()
}

/// Every event of `kind` recorded so far.
fn all_of_kind(fleet: &Fleet, kind: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        let batch = events(fleet, since)?;
        let Some(last) = batch.last() else {
            return Ok(out);
        };
        since = last["cursor"].as_i64().unwrap_or(i64::MAX);
        out.extend(batch.into_iter().filter(|e| e["kind"] == kind));
    }
}

/// Adds `text` to the server's config and restarts it.
fn reconfigure(fleet: &mut Fleet, text: &str) -> Result<()> {
    fleet.plane.stop()?;
    let mut config = fs::OpenOptions::new()
        .append(true)
        .open(fleet.plane.config())?;
    config.write_all(text.as_bytes())?;
    fleet.plane.restart()
}

fn webhook_config(fleet: &Fleet, receiver: &WebhookReceiver) -> Result<String> {
    let secret_file = fleet.keys.path().join("alert-webhook.key");
    fs::write(&secret_file, SECRET)?;
    fs::set_permissions(&secret_file, fs::Permissions::from_mode(0o600))?;
    Ok(format!(
        "\n[delivery.webhook]\nurl = \"http://{}/hook\"\nsecret_file = {:?}\nkinds = [\"alert\"]\n",
        receiver.addr,
        secret_file.display().to_string()
    ))
}

#[test]
fn a_signed_off_persons_refused_login_is_an_event_an_alert_and_a_signed_webhook() -> Result<()> {
    let mut fleet = Fleet::new()?;
    // The receiver fails the first delivery: the alert must come through on a retry.
    let receiver = WebhookReceiver::start(1)?;
    let config = webhook_config(&fleet, &receiver)?;
    reconfigure(&mut fleet, &config)?;
    let host = fleet.host("host-1")?;

    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 201, "{record}");
    fleet.wait_signoff("complete", |r| !r["completed_at"].is_null())?;

    let login = fleet.login(&host)?;
    assert_refused(&login, &host);

    // The refusal, as sshd logged it, on the events feed with the person resolved.
    let attempt = wait_for("the refused attempt on /api/v1/events", WAIT, || {
        Ok(all_of_kind(&fleet, "refused_attempt")?
            .into_iter()
            .find(|e| e["data"]["key_id"] == KEY_ID))
    })?;
    let d = &attempt["data"];
    assert_eq!(d["host_id"], "host-1", "{attempt}");
    assert_eq!(d["account"], TEST_ACCOUNT, "{attempt}");
    assert_eq!(d["person"], USER, "{attempt}");
    assert_eq!(d["person_status"], "disabled", "{attempt}");
    assert_eq!(d["source_address"], "127.0.0.1", "{attempt}");
    assert_eq!(d["serial"], 77, "{attempt}");
    assert!(
        d["reason"] == "revoked" || d["reason"] == "principal_refused",
        "sshd refused the signed-off person's certificate as revoked (KRL) or for its principals: {attempt}\nsshd log:\n{}",
        host.sshd.log()
    );

    // The alert, on the feed and among the unacknowledged ones.
    let alert = wait_for("the signed_off_attempt alert", WAIT, || {
        Ok(all_of_kind(&fleet, "alert")?
            .into_iter()
            .find(|e| e["data"]["rule"] == "signed_off_attempt"))
    })?;
    assert_eq!(alert["data"]["person"], USER, "{alert}");
    assert_eq!(alert["data"]["host_id"], "host-1", "{alert}");
    assert!(
        alert["data"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains(USER) && s.contains("host-1")),
        "{alert}"
    );
    let cursor = alert["cursor"].as_i64().context("alert cursor")?;
    let res = fleet
        .plane
        .api("GET", "/api/v1/alerts?unacknowledged=true", None)?;
    assert_eq!(res.status, 200, "{}", res.body);
    let open: Vec<i64> = res
        .json()?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["cursor"].as_i64())
        .collect();
    assert!(open.contains(&cursor), "{}", res.body);

    // Delivered to the webhook after one refused try, signed like the HR webhook.
    let delivery = wait_for("the alert at the webhook", WAIT, || {
        Ok(receiver
            .accepted()
            .into_iter()
            .find(|d| d.body.contains("signed_off_attempt")))
    })?;
    assert_eq!(receiver.refused(), 1);
    let sent: Value = serde_json::from_str(&delivery.body)?;
    assert_eq!(sent["cursor"], cursor, "{sent}");
    assert_eq!(sent["kind"], "alert");
    let timestamp = delivery.header("x-signoff-timestamp");
    let expected =
        WebhookSecret::new(SECRET.as_bytes().to_vec()).sign(timestamp, delivery.body.as_bytes());
    assert_eq!(delivery.header("x-signoff-signature"), expected);
    assert!(
        receiver
            .accepted()
            .iter()
            .all(|d| d.body.contains("\"kind\":\"alert\"")),
        "only the configured kinds are delivered"
    );

    // Acknowledged through the API with a write token: audited, and no longer open.
    let soc = fleet.plane.token("soc", "read,write")?;
    let ack = |c: i64| {
        http_request(
            fleet.plane.http_addr(),
            "POST",
            &format!("/api/v1/alerts/{c}/acknowledge?reason=seen+by+the+watch"),
            &soc,
            None,
        )
    };
    // A read+signoff token may not.
    let denied = http_request(
        fleet.plane.http_addr(),
        "POST",
        &format!("/api/v1/alerts/{cursor}/acknowledge"),
        &fleet.signoff_token,
        None,
    )?;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(ack(cursor)?.status, 204);
    let again = ack(cursor)?;
    assert_eq!(again.status, 409, "{}", again.body);
    let none = ack(attempt["cursor"].as_i64().context("cursor")?)?;
    assert_eq!(
        none.status, 404,
        "a refused attempt is no alert: {}",
        none.body
    );
    let res = fleet
        .plane
        .api("GET", "/api/v1/alerts?unacknowledged=true", None)?;
    assert!(
        !res.body.contains(&format!("\"cursor\":{cursor},")),
        "{}",
        res.body
    );
    let res = fleet.plane.api("GET", "/api/v1/alerts", None)?;
    let listed = res.json()?;
    let acked = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["cursor"] == cursor)
        .context("the alert is still listed")?;
    assert_eq!(acked["acknowledged_by"], "token:soc", "{acked}");
    let audit = fleet.plane.api("GET", "/api/v1/audit?limit=20", None)?;
    assert!(
        audit.body.contains("alert.acknowledge") && audit.body.contains("seen by the watch"),
        "{}",
        audit.body
    );

    // The webhook's cursor is durable: after a restart, a new alert is delivered and
    // none twice.
    fleet.plane.stop()?;
    fleet.plane.restart()?;
    let before = receiver.accepted().len();
    let login = fleet.login(&host)?;
    assert_refused(&login, &host);
    wait_for("a second alert at the webhook", WAIT, || {
        Ok((receiver.accepted().len() > before).then_some(()))
    })?;
    let cursors: Vec<i64> = receiver
        .accepted()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(&d.body).ok()?["cursor"].as_i64())
        .collect();
    let unique: BTreeSet<i64> = cursors.iter().copied().collect();
    assert_eq!(unique.len(), cursors.len(), "delivered twice: {cursors:?}");
    Ok(())
}

#[test]
fn a_flood_of_refused_attempts_is_bounded_counted_and_does_not_hold_up_sync() -> Result<()> {
    let fleet = Fleet::new()?;
    // The agent reads this file as sshd's log: the flood is written into it as sshd
    // would, faster than any real sshd refuses.
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("auth.log");
    fs::write(&log, "")?;
    let host = fleet.host_reading_log("host-1", &log)?;
    let burst: u32 = 1000;
    // The defaults (refused_rate 100, refused_burst 1000): 1,000 attempts in 10 s
    // (well, in less) all fit.
    let line = |i: u32| {
        format!(
            "Dec  5 06:00:00 h sshd[{}]: Invalid user flood{i} from 192.0.2.1 port {}\n",
            40000 + i,
            10000 + i
        )
    };
    let mut f = fs::OpenOptions::new().append(true).open(&log)?;
    let started = Instant::now();
    for i in 0..burst {
        f.write_all(line(i).as_bytes())?;
    }
    f.flush()?;
    // Sync is not held up: a revision made now reaches the host (acked) while the
    // attempts are still going in.
    let (_, revision) = fleet.plane.change(&[
        "revoke",
        "key-id",
        "flood-marker@corp",
        "--reason",
        "during the flood",
    ])?;
    wait_for(
        "the host to ack the revision made during the flood",
        WAIT,
        || {
            let res = fleet.plane.api("GET", "/api/v1/hosts/host-1", None)?;
            let v = res.json()?;
            Ok((v["acked_revision"].as_u64() >= Some(revision)).then_some(()))
        },
    )?;
    let got = wait_for("every attempt of the flood as an event", WAIT * 2, || {
        let n = all_of_kind(&fleet, "refused_attempt")?
            .iter()
            .filter(|e| {
                e["data"]["reason"] == "invalid_user"
                    && e["data"]["account"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("flood"))
            })
            .count();
        Ok((n >= burst as usize).then_some(n))
    })?;
    let took = started.elapsed();
    assert_eq!(got, burst as usize, "none lost, none twice");
    assert!(
        all_of_kind(&fleet, "refused_attempts_dropped")?.is_empty(),
        "within the bound nothing is dropped"
    );
    eprintln!("FIGURE flood: {burst} refused attempts recorded as events in {took:?}");

    // Past the bound: a second flood right after is cut to what the bucket holds, and
    // the rest is counted, not lost silently.
    let mut f = fs::OpenOptions::new().append(true).open(&log)?;
    for i in burst..burst * 3 {
        f.write_all(line(i).as_bytes())?;
    }
    f.flush()?;
    let dropped = wait_for("the count of dropped attempts", WAIT * 2, || {
        let events = all_of_kind(&fleet, "refused_attempt")?;
        let recorded = events
            .iter()
            .filter(|e| {
                e["data"]["account"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("flood"))
            })
            .count() as u64;
        let dropped: u64 = all_of_kind(&fleet, "refused_attempts_dropped")?
            .iter()
            .filter_map(|e| e["data"]["dropped"].as_u64())
            .sum();
        Ok((recorded + dropped == u64::from(burst) * 3).then_some((recorded, dropped)))
    })?;
    assert!(
        dropped.1 > 0 && dropped.0 < u64::from(burst) * 3,
        "over the bound some are dropped and counted: {dropped:?}"
    );
    drop(host);
    Ok(())
}

#[test]
fn a_signoff_waiting_on_a_stopped_agent_is_one_alert_past_the_threshold() -> Result<()> {
    let mut fleet = Fleet::new()?;
    reconfigure(
        &mut fleet,
        "\n[alerts.incomplete_action]\noffline_after = \"2s\"\n",
    )?;
    let _online = fleet.host("host-1")?;
    let mut offline = fleet.host("host-2")?;
    offline.agent.stop()?;

    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 201, "{record}");
    fleet.wait_signoff("confirmed by host-1, host-2 offline", |r| {
        let states = host_states(r);
        states.contains(&("host-1".into(), "confirmed".into()))
            && states.contains(&("host-2".into(), "offline".into()))
    })?;
    let incomplete = |fleet: &Fleet| -> Result<Vec<Value>> {
        Ok(all_of_kind(fleet, "alert")?
            .into_iter()
            .filter(|e| e["data"]["rule"] == "incomplete_action")
            .collect())
    };
    let alert = wait_for("the alert for the offline host", WAIT, || {
        Ok(incomplete(&fleet)?.into_iter().next())
    })
    .map_err(|e| anyhow::anyhow!("{e:#}\nserver log:\n{}", fleet.plane.log()))?;
    let d = &alert["data"];
    assert_eq!(d["host_id"], "host-2", "{alert}");
    assert_eq!(d["person"], USER, "{alert}");
    assert_eq!(d["subject"]["signoff"], record["id"], "{alert}");
    assert!(
        d["summary"].as_str().is_some_and(|s| s.contains("offline")),
        "{alert}"
    );

    // Back online, the host confirms; the alert was raised once and stays one.
    offline.agent.start()?;
    fleet.wait_signoff("complete", |r| !r["completed_at"].is_null())?;
    let alerts = incomplete(&fleet)?;
    assert_eq!(alerts.len(), 1, "one alert, never repeated: {alerts:?}");
    Ok(())
}
