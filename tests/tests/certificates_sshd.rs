//! signoff's own user CA, end to end: the real `signoff-server` issues a certificate over
//! its API, a real sshd that trusts only that CA (`TrustedUserCAKeys` = the server's
//! `user-ca.key.pub`) lets the person in through the agent's principals command, and the
//! session is attributed to them. A key not theirs gets nothing; a certificate past its
//! validity is refused by sshd itself; a signed-off person gets no new certificate and
//! the one they hold stops working.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use signoff_tests::fleet::{Fleet, Held, Host, USER, assert_refused, sleeping};
use signoff_tests::keys::{KeyPair, KeyType, public_line};
use signoff_tests::krl::{Verdict, ssh_keygen_check};
use signoff_tests::plane::{WAIT, http_request, sync, wait_for};
use signoff_tests::sessions::{ClientOptions, SshClient, TEST_ACCOUNT};
use signoff_tests::sshd::ssh_login;

/// The fleet's person with `key` registered, an `issue` token, and one host whose sshd
/// trusts signoff's own CA only.
struct Setup {
    fleet: Fleet,
    host: Host,
    issue_token: String,
}

fn setup(key: &KeyPair) -> Result<Setup> {
    let fleet = Fleet::new()?;
    let res = fleet.plane.api(
        "PATCH",
        &format!("/api/v1/users/{USER}"),
        Some(&json!({"public_keys": [public_line(&key.public)?]})),
    )?;
    if res.status != 200 {
        bail!("registering the key answered {}: {}", res.status, res.body);
    }
    let issue_token = fleet.plane.token("onboarding", "issue")?;
    let ca = fleet.plane.data_dir().join("user-ca.key.pub");
    let host = fleet.host_trusting("host-1", Some("1s"), &ca, false)?;
    Ok(Setup {
        fleet,
        host,
        issue_token,
    })
}

impl Setup {
    /// `POST /api/v1/users/{user}/certificates` with the `issue` token.
    fn issue(&self, user: &str, key: &Path, ttl: &str) -> Result<(u16, Value)> {
        let body = json!({"public_key": public_line(key)?, "ttl": ttl}).to_string();
        let res = http_request(
            self.fleet.plane.http_addr(),
            "POST",
            &format!("/api/v1/users/{user}/certificates"),
            &self.issue_token,
            Some(&body),
        )?;
        Ok((res.status, res.json()?))
    }

    /// Issues a certificate for `key` and writes it beside it as `KEY-cert.pub`, as a
    /// person would; then waits for the host to know the new key ID.
    fn certificate(&mut self, key: &KeyPair, ttl: &str) -> Result<(PathBuf, Value)> {
        let (status, v) = self.issue(USER, &key.public, ttl)?;
        if status != 201 {
            bail!("issuance answered {status}: {v}");
        }
        let cert = PathBuf::from(format!("{}-cert.pub", key.private.display()));
        let line = v["certificate"].as_str().context("no certificate")?;
        std::fs::write(&cert, format!("{line}\n"))?;
        sync(&self.fleet.plane, &mut self.host.agent)?;
        Ok((cert, v))
    }
}

#[test]
fn an_issued_certificate_logs_in_is_attributed_and_stops_at_its_expiry() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let mut s = setup(&key)?;

    let (cert, issued) = s.certificate(&key, "1h")?;
    assert_eq!(issued["user"], USER);
    let serial = issued["serial"].as_u64().context("serial")?;
    let login = ssh_login(s.host.sshd.port(), TEST_ACCOUNT, &key.private, &cert)?;
    assert!(
        login.success,
        "login with the issued certificate: {}\nsshd log:\n{}\nagent log:\n{}",
        login.stderr,
        s.host.sshd.log(),
        s.host.agent.log()
    );

    // The one-command login above may still be listed until its end is reported: wait for it
    // to be gone, so the live session counted next is the held one.
    s.fleet
        .wait_live_sessions(0, "the one-command login ended")?;
    // A session opened with it is the person's, by the key ID and serial of the certificate.
    let client = SshClient::spawn(
        s.host.sshd.port(),
        TEST_ACCOUNT,
        &key.private,
        &cert,
        &ClientOptions {
            pty: false,
            command: "sleep 7301",
            verbose: false,
        },
    )?;
    let held = Held {
        client,
        marker: 7301,
    };
    s.fleet.wait_live_sessions(1, "the certificate's session")?;
    let (_, sessions) = s
        .fleet
        .hr("GET", &format!("/api/v1/sessions?user={USER}"), None)?;
    let session = &sessions[0];
    assert_eq!(session["key_id"], USER, "{session}");
    assert_eq!(session["serial"], serial, "{session}");
    drop(held);
    wait_for("the session's command to end", WAIT, || {
        Ok(sleeping(7301).is_empty().then_some(()))
    })?;

    // A certificate past its validity: sshd refuses it, whatever the principals say.
    let short = KeyPair::generate(keys.path(), "short", KeyType::Ed25519)?;
    let res = s.fleet.plane.api(
        "PATCH",
        &format!("/api/v1/users/{USER}"),
        Some(&json!({"public_keys": [public_line(&key.public)?, public_line(&short.public)?]})),
    )?;
    assert_eq!(res.status, 200, "{}", res.body);
    let (short_cert, v) = s.certificate(&short, "2s")?;
    let valid_before = v["valid_before"].as_i64().context("valid_before")?;
    wait_for("the short certificate to expire", WAIT, || {
        Ok((i64::try_from(signoff_tests::now())? > valid_before).then_some(()))
    })?;
    let login = ssh_login(
        s.host.sshd.port(),
        TEST_ACCOUNT,
        &short.private,
        &short_cert,
    )?;
    assert_refused(&login, &s.host);
    assert!(
        s.host.sshd.log().contains("expired"),
        "sshd says why: {}",
        s.host.sshd.log()
    );
    Ok(())
}

#[test]
fn keys_that_are_not_the_persons_get_no_certificate() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let s = setup(&key)?;

    let stranger = KeyPair::generate(keys.path(), "stranger", KeyType::Ed25519)?;
    let (status, v) = s.issue(USER, &stranger.public, "1h")?;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "refused");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("is not registered to anyone; register it first")),
        "{v}"
    );

    let bobs = KeyPair::generate(keys.path(), "bob", KeyType::Ed25519)?;
    s.fleet.plane.cli(&[
        "user",
        "add",
        "bob",
        "--key-file",
        &bobs.public.display().to_string(),
    ])?;
    let (status, v) = s.issue(USER, &bobs.public, "1h")?;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("is registered to another person")),
        "{v}"
    );
    // Refusals are audited.
    let (_, audit) = s
        .fleet
        .hr("GET", "/api/v1/audit?filter=certificate.refuse", None)?;
    assert_eq!(audit.as_array().map(Vec::len), Some(2), "{audit}");
    Ok(())
}

#[test]
fn a_signed_off_person_gets_no_certificate_and_the_one_they_hold_stops_working() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let mut s = setup(&key)?;
    let (cert, _) = s.certificate(&key, "8h")?;
    let login = ssh_login(s.host.sshd.port(), TEST_ACCOUNT, &key.private, &cert)?;
    assert!(login.success, "{}", login.stderr);

    let (status, v) = s.fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 201, "{v}");
    let (status, v) = s.issue(USER, &key.public, "1h")?;
    assert_eq!(status, 403, "{v}");
    assert_eq!(
        v["error"]["message"],
        format!("{USER:?} is signed off; no certificate is issued")
    );
    sync(&s.fleet.plane, &mut s.host.agent)?;
    assert_refused(
        &ssh_login(s.host.sshd.port(), TEST_ACCOUNT, &key.private, &cert)?,
        &s.host,
    );
    Ok(())
}

/// The OpenSSH key lines in a `TrustedUserCAKeys` file, without comments.
fn key_lines(path: &Path) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some(format!("{} {}", parts.next()?, parts.next()?))
        })
        .collect())
}

fn key_of(path: &Path) -> Result<String> {
    key_lines(path)?
        .pop()
        .with_context(|| format!("no key in {}", path.display()))
}

#[test]
fn a_rotated_ca_reaches_hosts_and_the_old_certificates_stop_when_the_old_ca_is_withdrawn()
-> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let mut fleet = Fleet::new()?;
    let res = fleet.plane.api(
        "PATCH",
        &format!("/api/v1/users/{USER}"),
        Some(&json!({"public_keys": [public_line(&key.public)?]})),
    )?;
    assert_eq!(res.status, 200, "{}", res.body);
    // What Ansible installs: the control plane's CA, before the agent has synced.
    let old_ca = fleet.plane.data_dir().join("user-ca.key.pub");
    let trusted = keys.path().join("trusted-user-ca-keys.pub");
    std::fs::copy(&old_ca, &trusted)?;
    let mut host = fleet.host_trusting("host-1", Some("1s"), &trusted, true)?;
    // The agent keeps the file from the host view: every trusted CA, the outside one too.
    let old_key = key_of(&old_ca)?;
    let corp_key = key_of(&fleet.ca.public)?;
    let mut expected = vec![old_key.clone(), corp_key.clone()];
    expected.sort();
    wait_for("the host to trust both CAs", WAIT, || {
        Ok((key_lines(&trusted)? == expected).then_some(()))
    })?;

    let token = fleet
        .plane
        .cli_json(&["api-token", "create", "onboarding", "--scope", "issue"])?;
    let token = token["secret"].as_str().context("no secret")?.to_owned();
    let issue =
        |plane: &signoff_tests::plane::ControlPlane, k: &KeyPair, out: &str| -> Result<PathBuf> {
            let body = json!({"public_key": public_line(&k.public)?, "ttl": "1h"}).to_string();
            let res = http_request(
                plane.http_addr(),
                "POST",
                &format!("/api/v1/users/{USER}/certificates"),
                &token,
                Some(&body),
            )?;
            if res.status != 201 {
                bail!("issuance answered {}: {}", res.status, res.body);
            }
            let v = res.json()?;
            let cert = keys.path().join(out);
            std::fs::write(
                &cert,
                format!("{}\n", v["certificate"].as_str().unwrap_or_default()),
            )?;
            Ok(cert)
        };
    let old_cert = issue(&fleet.plane, &key, "old-cert.pub")?;
    sync(&fleet.plane, &mut host.agent)?;
    let login = ssh_login(host.sshd.port(), TEST_ACCOUNT, &key.private, &old_cert)?;
    assert!(login.success, "old CA before rotation: {}", login.stderr);

    // Rotation: the operator gives the server a new CA key; it is trusted beside the old.
    let new = KeyPair::generate(keys.path(), "new-ca", KeyType::Ed25519)?;
    fleet.plane.stop()?;
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(fleet.plane.config())?;
    std::io::Write::write_all(
        &mut config,
        format!(
            "\n[ca]\nkey_file = {:?}\n",
            new.private.display().to_string()
        )
        .as_bytes(),
    )?;
    fleet.plane.restart()?;
    let new_key = key_of(&new.public)?;
    wait_for("the new CA to reach the host", WAIT, || {
        Ok(key_lines(&trusted)?.contains(&new_key).then_some(()))
    })
    .map_err(|e| anyhow!("{e:#}\nagent log:\n{}", host.agent.log()))?;
    let new_cert = issue(&fleet.plane, &key, "new-cert.pub")?;
    sync(&fleet.plane, &mut host.agent)?;
    for (what, cert) in [("old", &old_cert), ("new", &new_cert)] {
        let login = ssh_login(host.sshd.port(), TEST_ACCOUNT, &key.private, cert)?;
        assert!(
            login.success,
            "{what} certificate while both CAs are trusted: {}",
            login.stderr
        );
    }

    // Withdrawing the old CA removes it from every host: its certificates stop working.
    fleet
        .plane
        .cli(&["ca", "remove", "signoff", "--reason", "rotated"])?;
    wait_for("the old CA to leave the host", WAIT, || {
        Ok((!key_lines(&trusted)?.contains(&old_key)).then_some(()))
    })?;
    assert_refused(
        &ssh_login(host.sshd.port(), TEST_ACCOUNT, &key.private, &old_cert)?,
        &host,
    );
    let login = ssh_login(host.sshd.port(), TEST_ACCOUNT, &key.private, &new_cert)?;
    assert!(
        login.success,
        "new certificate after the old CA left: {}",
        login.stderr
    );
    Ok(())
}

/// A lost CA key is no lockout: the offline backup CA's public key (`[ca]
/// backup_public_key`) reaches every host beside the CA, and a certificate the operator
/// signs with the backup (`ssh-keygen -s`, offline) logs in, also once the lost CA has
/// been withdrawn.
#[test]
fn the_offline_backup_ca_reaches_hosts_and_logs_in_when_the_ca_is_withdrawn() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let mut fleet = Fleet::new()?;
    let ca = fleet.plane.data_dir().join("user-ca.key.pub");
    let trusted = keys.path().join("trusted-user-ca-keys.pub");
    std::fs::copy(&ca, &trusted)?;
    let mut host = fleet.host_trusting("host-1", Some("1s"), &trusted, true)?;
    let backup = KeyPair::generate(keys.path(), "backup-ca", KeyType::Ed25519)?;
    fleet.plane.stop()?;
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(fleet.plane.config())?;
    std::io::Write::write_all(
        &mut config,
        format!(
            "\n[ca]\nbackup_public_key = {:?}\n",
            key_of(&backup.public)?
        )
        .as_bytes(),
    )?;
    fleet.plane.restart()?;
    let backup_key = key_of(&backup.public)?;
    wait_for("the backup CA to reach the host", WAIT, || {
        Ok(key_lines(&trusted)?.contains(&backup_key).then_some(()))
    })
    .map_err(|e| anyhow!("{e:#}\nagent log:\n{}", host.agent.log()))?;
    let listed = fleet.plane.cli(&["ca", "list"])?.stdout;
    assert!(listed.contains("signoff-backup"), "{listed}");

    // The CA key is lost: withdrawn everywhere. The backup, kept offline, signs.
    fleet
        .plane
        .cli(&["ca", "remove", "signoff", "--reason", "CA key lost"])?;
    let main_key = key_of(&ca)?;
    wait_for("the lost CA to leave the host", WAIT, || {
        Ok((!key_lines(&trusted)?.contains(&main_key)).then_some(()))
    })?;
    let cert = signoff_tests::keys::sign(&signoff_tests::keys::CertRequest {
        ca: backup.clone(),
        subject: fleet.user_key.clone(),
        out: keys.path().join("backup-signed"),
        key_id: signoff_tests::fleet::KEY_ID.to_owned(),
        principals: USER.to_owned(),
        serial: 4242,
    })?;
    sync(&fleet.plane, &mut host.agent)?;
    let login = ssh_login(
        host.sshd.port(),
        TEST_ACCOUNT,
        &fleet.user_key.private,
        &cert,
    )?;
    assert!(
        login.success,
        "backup-signed certificate after the CA was withdrawn: {}",
        login.stderr
    );
    Ok(())
}

/// An issued certificate revoked by serial is refused by the real sshd; once it has
/// expired the control plane withdraws the revocation by itself and the serial leaves the
/// host's KRL (ssh-keygen -Q no longer finds it), so the KRL holds only what can be used.
#[test]
fn a_revoked_serial_is_refused_and_leaves_the_krl_once_its_certificate_expired() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let mut s = setup(&key)?;
    let (cert, issued) = s.certificate(&key, "4s")?;
    let serial = issued["serial"].as_u64().context("serial")?;
    let valid_before = issued["valid_before"].as_i64().context("valid_before")?;
    let record = s.fleet.plane.revoke(&json!({
        "kind": "serial",
        "ca": "signoff",
        "lo": serial,
        "hi": serial,
        "reason": "laptop stolen",
    }))?;
    assert_eq!(record["valid_before"], valid_before, "{record}");
    sync(&s.fleet.plane, &mut s.host.agent)?;
    let krl = s.host.agent.krl_path();
    let verdicts = ssh_keygen_check(&krl, std::slice::from_ref(&cert))?.verdicts()?;
    assert_eq!(verdicts, [Verdict::Revoked]);
    assert_refused(
        &ssh_login(s.host.sshd.port(), TEST_ACCOUNT, &key.private, &cert)?,
        &s.host,
    );

    wait_for("the certificate to expire", WAIT, || {
        Ok((i64::try_from(signoff_tests::now())? > valid_before).then_some(()))
    })?;
    // The server sweeps every few seconds; the host then rewrites its KRL.
    wait_for("the serial to leave the host's KRL", WAIT, || {
        let verdicts = ssh_keygen_check(&krl, std::slice::from_ref(&cert))?.verdicts()?;
        Ok((verdicts == [Verdict::Ok]).then_some(()))
    })?;
    let (_, revocations) = s.fleet.hr("GET", "/api/v1/revocations", None)?;
    assert!(
        revocations
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["kind"] != "serial")),
        "{revocations}"
    );
    // And sshd still refuses the certificate: it has expired.
    assert_refused(
        &ssh_login(s.host.sshd.port(), TEST_ACCOUNT, &key.private, &cert)?,
        &s.host,
    );
    Ok(())
}
