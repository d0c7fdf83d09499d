//! Certificates with only the OpenSSH client: the real `ssh` logs in to the real
//! `signoff-server`'s certificate listener (`[ca] ssh_listen`) as `cert` with a registered
//! key, sends a public key on stdin and gets its certificate on stdout, exactly as a person
//! runs `ssh -p 2022 cert@HOST < ~/.ssh/id_ed25519.pub > ~/.ssh/id_ed25519-cert.pub`. The
//! certificate then logs in to a real sshd through the agent's principals command, and the
//! session is the person's. Each refusal has its own test of what the person sees: stderr
//! and the exit status.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;
use signoff_tests::command::{Finished, run, run_with_input};
use signoff_tests::fleet::{Fleet, Held, Host, USER, sleeping};
use signoff_tests::keys::{KeyPair, KeyType, public_line};
use signoff_tests::plane::{WAIT, sync, wait_for};
use signoff_tests::sessions::{ClientOptions, SshClient, TEST_ACCOUNT};
use signoff_tests::sshd::ssh_login;
use signoff_tests::tools::{SSH, SSH_KEYGEN};

/// A fleet whose control plane issues over SSH, the person with `key` registered, one host
/// whose sshd trusts signoff's own CA only, and a `known_hosts` pinning the listener.
struct Setup {
    fleet: Fleet,
    host: Host,
    listener: SocketAddr,
    known_hosts: PathBuf,
}

fn setup(key: &KeyPair) -> Result<Setup> {
    let mut fleet = Fleet::new()?;
    register(&fleet, USER, &[key])?;
    let listener = fleet.plane.listen_for_certificates()?;
    // What a person is given to pin the listener: its host key, from the data directory.
    let host_key = std::fs::read_to_string(fleet.plane.data_dir().join("cert-ssh-host.key.pub"))?;
    let known_hosts = fleet.keys.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", listener.port(), host_key.trim()),
    )?;
    let ca = fleet.plane.data_dir().join("user-ca.key.pub");
    let host = fleet.host_trusting("host-1", Some("1s"), &ca, false)?;
    Ok(Setup {
        fleet,
        host,
        listener,
        known_hosts,
    })
}

/// Sets `user`'s registered keys.
fn register(fleet: &Fleet, user: &str, keys: &[&KeyPair]) -> Result<()> {
    let lines = keys
        .iter()
        .map(|k| public_line(&k.public))
        .collect::<Result<Vec<_>>>()?;
    let res = fleet.plane.api(
        "PATCH",
        &format!("/api/v1/users/{user}"),
        Some(&json!({ "public_keys": lines })),
    )?;
    if res.status != 200 {
        bail!("registering keys answered {}: {}", res.status, res.body);
    }
    Ok(())
}

impl Setup {
    /// `ssh -p PORT -i IDENTITY cert@127.0.0.1 [COMMAND] < INPUT`, the listener's host key
    /// pinned (StrictHostKeyChecking=yes), no agent, no other identity.
    fn ssh_cert(&self, identity: &Path, input: &Path, command: Option<&str>) -> Result<Finished> {
        let mut cmd = SSH.command()?;
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(identity)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "PasswordAuthentication=no",
                "-o",
                "ConnectTimeout=20",
                "-p",
                &self.listener.port().to_string(),
                "cert@127.0.0.1",
            ]);
        if let Some(c) = command {
            cmd.arg(c);
        }
        run_with_input(&mut cmd, input, Duration::from_secs(60))
    }

    /// Gets a certificate for `key` over SSH, authenticating with `key`, and writes it
    /// where ssh looks for it (`KEY-cert.pub`).
    fn certificate(&mut self, key: &KeyPair, command: Option<&str>) -> Result<PathBuf> {
        let out = self.ssh_cert(&key.private, &key.public, command)?;
        if !out.success() {
            bail!("`{}` exited {:?}: {}", out.command, out.code(), out.stderr);
        }
        let cert = PathBuf::from(format!("{}-cert.pub", key.private.display()));
        std::fs::write(&cert, &out.stdout)?;
        sync(&self.fleet.plane, &mut self.host.agent)?;
        Ok(cert)
    }

    /// The person's key, refused: exit status 1, nothing on stdout, `signoff: refused: …`
    /// on stderr.
    fn assert_refused_with(&self, key: &KeyPair, input: &Path, why: &str) -> Result<()> {
        let out = self.ssh_cert(&key.private, input, None)?;
        assert_eq!(out.code(), Some(1), "{}: {}", out.command, out.stderr);
        assert_eq!(out.stdout, "", "no certificate on stdout");
        let expected = format!("signoff: refused: {why}");
        assert!(
            out.stderr.lines().any(|l| l == expected),
            "stderr says {expected:?}: {:?}",
            out.stderr
        );
        Ok(())
    }
}

/// `ssh-keygen -L -f CERT`.
fn describe_certificate(cert: &Path) -> Result<String> {
    let mut cmd = SSH_KEYGEN.command()?;
    cmd.arg("-L").arg("-f").arg(cert);
    Ok(run(&mut cmd)?.ok()?.stdout)
}

fn fingerprint(key: &KeyPair) -> Result<String> {
    key.sha256_fingerprint()
}

#[test]
fn a_person_gets_a_certificate_over_ssh_and_logs_in_with_it() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let mut s = setup(&key)?;

    let cert = s.certificate(&key, None)?;
    let listing = describe_certificate(&cert)?;
    assert!(
        listing.contains(&format!("Key ID: \"{USER}\"")),
        "{listing}"
    );
    assert!(
        listing.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{listing}"
    );

    let login = ssh_login(s.host.sshd.port(), TEST_ACCOUNT, &key.private, &cert)?;
    assert!(
        login.success,
        "login with the certificate from the SSH listener: {}\nsshd log:\n{}\nagent log:\n{}",
        login.stderr,
        s.host.sshd.log(),
        s.host.agent.log()
    );
    // The one-command login above may still be listed until its end is reported: wait for it
    // to be gone, so the live session counted next is the held one.
    s.fleet
        .wait_live_sessions(0, "the one-command login ended")?;
    // The session is the person's.
    let client = SshClient::spawn(
        s.host.sshd.port(),
        TEST_ACCOUNT,
        &key.private,
        &cert,
        &ClientOptions {
            pty: false,
            command: "sleep 7302",
            verbose: false,
        },
    )?;
    let held = Held {
        client,
        marker: 7302,
    };
    s.fleet.wait_live_sessions(1, "the certificate's session")?;
    let (_, sessions) = s
        .fleet
        .hr("GET", &format!("/api/v1/sessions?user={USER}"), None)?;
    assert_eq!(sessions[0]["key_id"], USER, "{sessions}");
    drop(held);
    wait_for("the session's command to end", WAIT, || {
        Ok(sleeping(7302).is_empty().then_some(()))
    })?;

    // The issuance is audited as the person's own, over SSH.
    let (_, audit) = s
        .fleet
        .hr("GET", "/api/v1/audit?filter=certificate.issue", None)?;
    assert!(
        audit
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["actor"] == format!("ssh:{USER}"))),
        "{audit}"
    );
    Ok(())
}

#[test]
fn another_registered_key_of_the_same_person_is_certified_with_the_validity_asked() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let laptop = KeyPair::generate(keys.path(), "laptop", KeyType::Ecdsa256)?;
    let mut s = setup(&key)?;
    register(&s.fleet, USER, &[&key, &laptop])?;

    // Authenticated with one key, the certificate is for the other, valid one hour.
    let out = s.ssh_cert(&key.private, &laptop.public, Some("ttl=1h"))?;
    assert!(out.success(), "{}: {}", out.command, out.stderr);
    let cert = PathBuf::from(format!("{}-cert.pub", laptop.private.display()));
    std::fs::write(&cert, &out.stdout)?;
    let listing = describe_certificate(&cert)?;
    assert!(listing.contains(&fingerprint(&laptop)?), "{listing}");
    sync(&s.fleet.plane, &mut s.host.agent)?;
    let login = ssh_login(s.host.sshd.port(), TEST_ACCOUNT, &laptop.private, &cert)?;
    assert!(login.success, "{}", login.stderr);

    // A bad command is refused with what to do, exit status 2.
    let out = s.ssh_cert(&key.private, &key.public, Some("ttl=forever"))?;
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("signoff: ttl=forever: "),
        "{}",
        out.stderr
    );
    // Longer than policy allows: refused.
    let out = s.ssh_cert(&key.private, &key.public, Some("ttl=2d"))?;
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("signoff: refused: a validity of 172800s is longer than the 86400s allowed"),
        "{}",
        out.stderr
    );
    let _ = s.certificate(&key, Some("ttl=8h"))?;
    Ok(())
}

#[test]
fn a_signed_off_person_gets_nothing_over_ssh() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let s = setup(&key)?;
    let (status, v) = s.fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 201, "{v}");
    s.assert_refused_with(
        &key,
        &key.public,
        &format!("{USER:?} is signed off; no certificate is issued"),
    )?;
    let (_, audit) = s
        .fleet
        .hr("GET", "/api/v1/audit?filter=certificate.refuse", None)?;
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
    Ok(())
}

#[test]
fn a_disabled_person_gets_nothing_over_ssh() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let s = setup(&key)?;
    s.fleet
        .plane
        .cli(&["user", "disable", USER, "--reason", "on leave"])?;
    s.assert_refused_with(
        &key,
        &key.public,
        &format!("{USER:?} is disabled; no certificate is issued"),
    )
}

#[test]
fn a_revoked_key_gets_nothing_over_ssh() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let s = setup(&key)?;
    s.fleet.plane.revoke(&json!({
        "kind": "key",
        "public_key": public_line(&key.public)?,
        "reason": "laptop stolen",
    }))?;
    s.assert_refused_with(
        &key,
        &key.public,
        &format!("key {} is revoked", fingerprint(&key)?),
    )
}

/// A key registered to nobody does not even log in: ssh says why and "Permission denied",
/// and exits 255 (its own status for a failed login).
#[test]
fn a_key_registered_to_nobody_cannot_log_in_and_is_told_so() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let stranger = KeyPair::generate(keys.path(), "stranger", KeyType::Ed25519)?;
    let s = setup(&key)?;
    let out = s.ssh_cert(&stranger.private, &stranger.public, None)?;
    assert_eq!(out.code(), Some(255), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let told = format!(
        "signoff: no certificate: the key you offered ({}) is registered to nobody; ask an administrator to register your public key",
        fingerprint(&stranger)?
    );
    assert!(out.stderr.lines().any(|l| l == told), "{:?}", out.stderr);
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    Ok(())
}

/// Authenticated as the person, asking for a key of someone else, or for a key registered
/// to nobody: each refused with its own words.
#[test]
fn a_key_of_another_person_or_of_nobody_is_not_certified() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let bobs = KeyPair::generate(keys.path(), "bob", KeyType::Ed25519)?;
    let stranger = KeyPair::generate(keys.path(), "stranger", KeyType::Ed25519)?;
    let s = setup(&key)?;
    s.fleet.plane.cli(&[
        "user",
        "add",
        "bob",
        "--key-file",
        &bobs.public.display().to_string(),
    ])?;
    s.assert_refused_with(
        &key,
        &bobs.public,
        &format!(
            "key {} is registered to another person",
            fingerprint(&bobs)?
        ),
    )?;
    s.assert_refused_with(
        &key,
        &stranger.public,
        &format!(
            "key {} is not registered to anyone; register it first",
            fingerprint(&stranger)?
        ),
    )?;
    // Bob's own key gets Bob's certificate, not Mallory's.
    let out = s.ssh_cert(&bobs.private, &bobs.public, None)?;
    assert!(out.success(), "{}", out.stderr);
    let cert = keys.path().join("bob-cert.pub");
    std::fs::write(&cert, &out.stdout)?;
    let listing = describe_certificate(&cert)?;
    assert!(listing.contains("Key ID: \"bob\""), "{listing}");
    // Not a key at all: exit status 2 and what to send.
    let junk = keys.path().join("junk.pub");
    std::fs::write(&junk, "hello\n")?;
    let out = s.ssh_cert(&key.private, &junk, None)?;
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("not an OpenSSH public key"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn the_wrong_login_name_is_told_to_use_cert() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let key = KeyPair::generate(keys.path(), "id_ed25519", KeyType::Ed25519)?;
    let s = setup(&key)?;
    let mut cmd = SSH.command()?;
    cmd.args(["-F", "/dev/null", "-i"])
        .arg(&key.private)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", s.known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-p",
            &s.listener.port().to_string(),
            "root@127.0.0.1",
        ]);
    let out = run_with_input(&mut cmd, &key.public, Duration::from_secs(60))?;
    assert_eq!(out.code(), Some(255), "{}", out.stderr);
    assert!(
        out.stderr.contains("signoff: log in as cert, not \"root\""),
        "{}",
        out.stderr
    );
    let _ = s.host;
    Ok(())
}

/// People log in with the keys they have: an RSA key and an ECDSA key both
/// authenticate to the listener and are certified.
#[test]
fn rsa_and_ecdsa_keys_log_in_and_are_certified() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let rsa = KeyPair::generate(keys.path(), "id_rsa", KeyType::Rsa2048)?;
    let ecdsa = KeyPair::generate(keys.path(), "id_ecdsa", KeyType::Ecdsa256)?;
    let mut s = setup(&rsa)?;
    register(&s.fleet, USER, &[&rsa, &ecdsa])?;
    for key in [&rsa, &ecdsa] {
        let cert = s.certificate(key, None)?;
        let listing = describe_certificate(&cert)?;
        assert!(listing.contains(&fingerprint(key)?), "{listing}");
        let login = ssh_login(s.host.sshd.port(), TEST_ACCOUNT, &key.private, &cert)?;
        assert!(login.success, "{}", login.stderr);
    }
    Ok(())
}
