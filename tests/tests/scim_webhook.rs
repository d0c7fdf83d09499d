//! Deprovisioning from outside, end to end against the real `signoff-server`:
//!
//! - SCIM 2.0: an identity provider's PATCH `active: false` signs the person off — the
//!   sign-off record exists, the real agent enforces it and the person's next login through
//!   the real sshd is refused (principals command and KRL). SCIM errors are SCIM bodies, and
//!   only a `scim` token is accepted. A misspelled PATCH is refused and changes nothing;
//!   a DELETE is a sign-off sshd enforces and takes the User out of SCIM (404, out of
//!   filters) while the person stays; a later POST of the name lets them in again.
//! - The HR webhook: signatures made by `openssl dgst -hmac` (as an HR system's script
//!   would); a bad signature, a stale timestamp and a replay are refused and sign nobody
//!   off, a good delivery signs the person off, and the replay cache survives a restart.

use signoff_tests::now;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use signoff_tests::command::run_ok;
use signoff_tests::fleet::{Fleet, KEY_ID, USER, assert_refused};
use signoff_tests::plane::{ControlPlane, WAIT, http_request};

/// A SCIM request with `token`: (status, JSON body).
fn scim(
    plane: &ControlPlane,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let body = body.map(Value::to_string);
    let res = http_request(
        plane.http_addr(),
        method,
        &format!("/scim/v2{path}"),
        token,
        body.as_deref(),
    )?;
    Ok((res.status, res.json().unwrap_or(Value::Null)))
}

/// Asserts a SCIM error body.
#[track_caller]
fn assert_scim_error(reply: &(u16, Value), status: u16, scim_type: Option<&str>) {
    let (got, body) = reply;
    assert_eq!(*got, status, "{body}");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], status.to_string(), "{body}");
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
}

#[test]
fn scim_deactivation_signs_the_person_off_and_sshd_refuses_them() -> Result<()> {
    let fleet = Fleet::new()?;
    let host = fleet.host("scim-host")?;
    let login = fleet.login(&host)?;
    assert!(login.success, "before: {}", login.stderr);

    let token = fleet
        .plane
        .cli_json(&["api-token", "create", "okta", "--scope", "scim"])?["secret"]
        .as_str()
        .ok_or_else(|| anyhow!("api-token create printed no secret"))?
        .to_owned();

    // The identity provider looks the person up, as Okta and Azure AD do.
    let (status, list) = scim(
        &fleet.plane,
        &token,
        "GET",
        &format!("/Users?filter=userName%20eq%20%22{USER}%22"),
        None,
    )?;
    assert_eq!((status, &list["totalResults"]), (200, &json!(1)), "{list}");
    assert_eq!(list["Resources"][0]["active"], true);
    // Errors on the way are SCIM errors: bad filter, unknown user, bad token, wrong scope.
    assert_scim_error(
        &scim(&fleet.plane, &token, "GET", "/Users?filter=nonsense", None)?,
        400,
        Some("invalidFilter"),
    );
    assert_scim_error(
        &scim(&fleet.plane, &token, "GET", "/Users/nobody", None)?,
        404,
        None,
    );
    assert_scim_error(
        &scim(&fleet.plane, "so_wrong", "GET", "/Users", None)?,
        401,
        None,
    );
    assert_scim_error(
        &scim(&fleet.plane, &fleet.signoff_token, "GET", "/Users", None)?,
        403,
        None,
    );
    // A SCIM token signs nobody off through the API.
    let res = http_request(
        fleet.plane.http_addr(),
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        &token,
        Some(r#"{"reason":"via the API"}"#),
    )?;
    assert_eq!(res.status, 403, "{}", res.body);

    let (status, user) = scim(
        &fleet.plane,
        &token,
        "PATCH",
        &format!("/Users/{USER}"),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": false}],
        })),
    )?;
    assert_eq!((status, &user["active"]), (200, &json!(false)), "{user}");

    let record = fleet.wait_signoff("completed on the one host", |r| {
        r["completed_at"].is_number()
    })?;
    assert_eq!(record["actor"], "token:okta");
    assert_eq!(record["reason"], "SCIM: deprovisioned by token:okta");
    assert_eq!(record["hosts"][0]["state"], "confirmed", "{record}");
    assert_refused(&fleet.login(&host)?, &host);
    Ok(())
}

#[test]
fn scim_delete_refuses_the_person_and_a_new_post_lets_them_in_again() -> Result<()> {
    let fleet = Fleet::new()?;
    let mut host = fleet.host("scim-delete-host")?;
    assert!(fleet.login(&host)?.success, "before");
    let token = fleet
        .plane
        .cli_json(&["api-token", "create", "entra", "--scope", "scim"])?["secret"]
        .as_str()
        .ok_or_else(|| anyhow!("api-token create printed no secret"))?
        .to_owned();
    let user_path = format!("/Users/{USER}");

    // A misspelled deprovisioning is refused, and the person still gets in.
    let reply = scim(
        &fleet.plane,
        &token,
        "PATCH",
        &user_path,
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "actve", "value": false}],
        })),
    )?;
    assert_scim_error(&reply, 400, Some("invalidPath"));
    assert!(fleet.login(&host)?.success, "after the refused PATCH");

    // DELETE: a sign-off the host enforces, and the resource is gone to SCIM.
    let (status, _) = scim(&fleet.plane, &token, "DELETE", &user_path, None)?;
    assert_eq!(status, 204);
    let record = fleet.wait_signoff("completed on the one host", |r| {
        r["completed_at"].is_number()
    })?;
    assert_eq!(record["reason"], "SCIM: deleted by token:entra");
    assert_refused(&fleet.login(&host)?, &host);
    assert_scim_error(
        &scim(&fleet.plane, &token, "GET", &user_path, None)?,
        404,
        None,
    );
    let (_, list) = scim(
        &fleet.plane,
        &token,
        "GET",
        &format!("/Users?filter=userName%20eq%20%22{USER}%22"),
        None,
    )?;
    assert_eq!(list["totalResults"], 0, "{list}");
    // The person and their record stay in signoff's own API.
    let res = fleet
        .plane
        .api("GET", &format!("/api/v1/users/{USER}"), None)?;
    assert_eq!(res.status, 200, "{}", res.body);

    // Provisioned again, with their key ID: the host lets them in once it has the revision.
    let (status, user) = scim(
        &fleet.plane,
        &token,
        "POST",
        "/Users",
        Some(&json!({
            "userName": USER,
            "externalId": "a1b2",
            "urn:signoff:params:scim:schemas:extension:ssh:2.0:User": {"keyIds": [KEY_ID]},
        })),
    )?;
    assert_eq!((status, &user["active"]), (201, &json!(true)), "{user}");
    assert_eq!(user["externalId"], "a1b2");
    let revision = fleet.plane.revision()?;
    host.agent.wait_applied(revision)?;
    let login = fleet.login(&host)?;
    assert!(login.success, "after re-provisioning: {}", login.stderr);
    Ok(())
}

/// `sha256=HEX` of `timestamp.body`, computed by `openssl dgst` as a sender would.
fn openssl_signature(dir: &Path, key: &str, timestamp: u64, body: &str) -> Result<String> {
    let file = dir.join("delivery");
    fs::write(&file, format!("{timestamp}.{body}"))?;
    let out = run_ok(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-r", "-hmac", key])
            .arg(&file),
    )?;
    let hex = out
        .stdout
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 64)
        .ok_or_else(|| anyhow!("openssl dgst printed {:?}", out.stdout))?;
    Ok(format!("sha256={hex}"))
}

/// `POST /hooks/hr` with the two headers: (status, JSON body).
fn deliver(addr: SocketAddr, timestamp: u64, signature: &str, body: &str) -> Result<(u16, Value)> {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT)?;
    stream.set_read_timeout(Some(WAIT))?;
    write!(
        stream,
        "POST /hooks/hr HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         X-Signoff-Timestamp: {timestamp}\r\nX-Signoff-Signature: {signature}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP response: {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Whether `user` has any sign-off (`GET /api/v1/users/{user}/signoff`).
fn signed_off(plane: &ControlPlane, user: &str) -> Result<Option<Value>> {
    let res = plane.api("GET", &format!("/api/v1/users/{user}/signoff"), None)?;
    match res.status {
        200 => Ok(Some(res.json()?)),
        404 => Ok(None),
        s => bail!("GET signoff answered {s}: {}", res.body),
    }
}

#[test]
fn hr_webhook_refuses_forgeries_stale_and_replayed_deliveries() -> Result<()> {
    let mut plane = ControlPlane::start()?;
    plane.cli(&["user", "add", "alice", "--key-id", "alice@corp"])?;
    let dir = tempfile::tempdir()?;
    let key = "6f1c0a6c1d3b4e0f9a7d2c5b8e1f3a4d6c9b2e5f8a1d4c7b0e3f6a9d2c5b8e1f";
    let body = r#"{"event":"termination","user":"alice","reason":"last day"}"#;

    // Not configured: the endpoint does not exist.
    let ts = now();
    let sig = openssl_signature(dir.path(), key, ts, body)?;
    assert_eq!(deliver(plane.http_addr(), ts, &sig, body)?.0, 404);

    let secret = dir.path().join("hr.secret");
    fs::write(&secret, format!("{key}\n"))?;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600))?;
    let mut config = fs::OpenOptions::new().append(true).open(plane.config())?;
    writeln!(
        config,
        "[webhook]\nsecret_file = {:?}",
        secret.display().to_string()
    )?;
    plane.stop()?;
    plane.restart()?;

    let refused = |what: &str, reply: (u16, Value), status: u16| -> Result<()> {
        assert_eq!(reply.0, status, "{what}: {}", reply.1);
        assert!(
            signed_off(&plane, "alice")?.is_none(),
            "{what} signed alice off"
        );
        Ok(())
    };
    let ts = now();
    let wrong_key = openssl_signature(dir.path(), "not the key", ts, body)?;
    refused(
        "a signature by another key",
        deliver(plane.http_addr(), ts, &wrong_key, body)?,
        401,
    )?;
    let other_body = openssl_signature(dir.path(), key, ts, &body.replace("alice", "bob"))?;
    refused(
        "a signature of another body",
        deliver(plane.http_addr(), ts, &other_body, body)?,
        401,
    )?;
    let stale_ts = ts - 301;
    let stale = openssl_signature(dir.path(), key, stale_ts, body)?;
    refused(
        "a stale timestamp",
        deliver(plane.http_addr(), stale_ts, &stale, body)?,
        401,
    )?;

    let sig = openssl_signature(dir.path(), key, ts, body)?;
    let (status, record) = deliver(plane.http_addr(), ts, &sig, body)?;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["actor"], "webhook:hr");
    assert_eq!(record["reason"], "HR webhook: termination: last day");
    let stored = signed_off(&plane, "alice")?.ok_or_else(|| anyhow!("no sign-off"))?;
    assert_eq!(stored["id"], record["id"]);

    // Re-enabled by an admin; the captured delivery replayed must not sign her off again,
    // not even after a restart of the control plane.
    plane.cli(&["user", "reenable", "alice", "--reason", "rehired"])?;
    let (status, v) = deliver(plane.http_addr(), ts, &sig, body)?;
    assert_eq!(status, 409, "{v}");
    plane.stop()?;
    plane.restart()?;
    let (status, v) = deliver(plane.http_addr(), ts, &sig, body)?;
    assert_eq!(status, 409, "{v}");
    let latest = signed_off(&plane, "alice")?.ok_or_else(|| anyhow!("record gone"))?;
    assert_eq!(latest["id"], record["id"]);
    assert_eq!(latest["in_force"], false, "{latest}");
    Ok(())
}
