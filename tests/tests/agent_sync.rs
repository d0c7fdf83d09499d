//! The whole chain, as a user sees it: the real `signoff-server` (admin CLI and HTTP API),
//! a real `signoff-agent` enrolled over mTLS and syncing, and a real sshd whose
//! `AuthorizedPrincipalsCommand` is `signoff-sshd principals` and whose `RevokedKeys` is
//! the KRL the agent writes. Grants and revocations made at the control plane decide who
//! logs in, without restarting sshd; the KRL on disk is always loadable, even while the
//! agent is killed over and over; strict and best-effort modes behave as configured when
//! the control plane is gone; `signoff-agent status` tells the truth.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use signoff_proto::krl::{CaScope, Krl};
use signoff_tests::agent::sshd_commands_binary;
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::krl::{Check, Verdict, ssh_keygen_check};
use signoff_tests::plane::{Agent, ControlPlane, WAIT, sync, wait_for};
use signoff_tests::principals::{InstalledAgent, PrincipalsSshd, ensure_system_user};
use signoff_tests::seed::seeded_rng;
use signoff_tests::sshd::Login;
use tempfile::TempDir;

/// The account everyone logs in to (tests run as root, so sshd can log it in).
const ACCOUNT: &str = "root";
/// The host's id and the group it joins at enrollment.
const HOST_ID: &str = "web-1";
const HOST_GROUP: &str = "web";
/// A group this host is not in.
const OTHER_GROUP: &str = "db";

/// One control plane, one enrolled and running agent, and sshd wired to that agent.
///
/// At the control plane: CA `corp` (the one sshd trusts); groups `web` (this host) and
/// `db`; users alice (key ID alice@corp), bob (bob@corp) and carol (carol@corp); grants
/// alice → root on web, bob → root on db; carol has none.
struct Fleet {
    plane: ControlPlane,
    agent: Agent,
    sshd: PrincipalsSshd,
    keys: TempDir,
    ca: KeyPair,
    user_key: KeyPair,
    ca_blob: Vec<u8>,
    alice_grant: i64,
    _installed: InstalledAgent,
}

impl Fleet {
    /// The fleet with the agent configured by `agent_config` (extra `agent.toml` lines).
    fn new(agent_config: &str) -> Result<Fleet> {
        ensure_system_user()?;
        let plane = ControlPlane::start()?;
        let keys = tempfile::Builder::new()
            .prefix("agent-sync-keys-")
            .tempdir()?;
        let ca = KeyPair::generate(keys.path(), "ca", KeyType::Ed25519)?;
        let user_key = KeyPair::generate(keys.path(), "user", KeyType::Ed25519)?;
        let ca_pub = ca.public.display().to_string();
        plane.cli(&["ca", "add", "corp", &ca_pub])?;
        plane.cli(&["group", "add", HOST_GROUP])?;
        plane.cli(&["group", "add", OTHER_GROUP])?;
        for user in ["alice", "bob", "carol"] {
            plane.cli(&["user", "add", user, "--key-id", &format!("{user}@corp")])?;
        }
        let grant = plane.cli_json(&["grant", "add", "alice", ACCOUNT, HOST_GROUP])?;
        let alice_grant = grant["id"]
            .as_i64()
            .ok_or_else(|| anyhow!("grant add printed no id: {grant}"))?;
        plane.cli(&["grant", "add", "bob", ACCOUNT, OTHER_GROUP])?;

        let mut agent = Agent::new(agent_config)?;
        agent.enroll(&plane, HOST_ID, HOST_GROUP)?;
        agent.start()?;
        sync(&plane, &mut agent)?;

        let installed = InstalledAgent::install(sshd_commands_binary()?)?;
        let sshd = PrincipalsSshd::start(
            installed.path(),
            &agent.config(),
            &ca.public,
            &agent.krl_path(),
        )?;
        let ca_blob = signoff_proto::krl::key_blob(
            ssh_key::PublicKey::read_openssh_file(&ca.public)?.key_data(),
        );
        Ok(Fleet {
            plane,
            agent,
            sshd,
            keys,
            ca,
            user_key,
            ca_blob,
            alice_grant,
            _installed: installed,
        })
    }

    /// A certificate for the user key: key ID `key_id`, principal `principal`.
    fn cert(&self, name: &str, key_id: &str, principal: &str, serial: u64) -> Result<PathBuf> {
        keys::sign(&CertRequest {
            ca: self.ca.clone(),
            subject: self.user_key.clone(),
            out: self.keys.path().join(name),
            key_id: key_id.to_owned(),
            principals: principal.to_owned(),
            serial,
        })
    }

    fn login(&self, cert: &Path) -> Result<Login> {
        self.sshd.login(ACCOUNT, &self.user_key.private, cert)
    }

    fn logs(&self) -> String {
        format!(
            "sshd log:\n{}\nagent log:\n{}",
            self.sshd.log(),
            self.agent.log()
        )
    }

    fn assert_admitted(&self, login: &Login, what: &str) {
        assert!(
            login.success,
            "{what}: expected the login to succeed, ssh exited {:?}: {}\n{}",
            login.code,
            login.stderr,
            self.logs()
        );
    }

    fn assert_refused(&self, login: &Login, what: &str) {
        assert!(
            !login.success && login.stderr.contains("Permission denied"),
            "{what}: expected `Permission denied`, ssh exited {:?}: {}\n{}",
            login.code,
            login.stderr,
            self.logs()
        );
    }

    /// Waits until the KRL on disk satisfies `revokes`.
    fn wait_krl(&self, what: &str, revokes: impl Fn(&Krl) -> bool) -> Result<Krl> {
        wait_for(
            format_args!("the KRL on disk to revoke {what}"),
            WAIT,
            || {
                let krl = self.agent.krl()?;
                Ok(revokes(&krl).then_some(krl))
            },
        )
        .map_err(|e| anyhow!("{e:#}\n{}", self.logs()))
    }

    /// `ssh-keygen -Q -f KRL cert`'s verdict.
    fn ssh_keygen_verdict(&self, cert: &Path) -> Result<Verdict> {
        let verdicts = ssh_keygen_check(&self.agent.krl_path(), &[cert.to_owned()])?.verdicts()?;
        verdicts
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("ssh-keygen -Q gave no verdict"))
    }
}

/// Whether `krl` revokes key ID `id` for certificates of any CA.
fn revokes_key_id(krl: &Krl, id: &str) -> bool {
    krl.certs().any(|(scope, certs)| {
        *scope == CaScope::Any && certs.key_ids().iter().any(|k| k == id.as_bytes())
    })
}

/// Whether `krl` revokes `serial` for certificates of the CA whose key blob is `ca`.
fn revokes_serial(krl: &Krl, ca: &[u8], serial: u64) -> bool {
    krl.certs().any(|(scope, certs)| {
        *scope == CaScope::Key(ca.to_vec())
            && certs
                .serials()
                .iter()
                .any(|r| r.lo <= serial && serial <= r.hi)
    })
}

#[test]
fn grants_decide_who_logs_in_and_a_withdrawn_grant_refuses_the_next_login() -> Result<()> {
    let mut f = Fleet::new("")?;
    let alice = f.cert("alice", "alice@corp", "alice", 1)?;
    f.assert_admitted(&f.login(&alice)?, "alice, granted root on web");

    let carol = f.cert("carol", "carol@corp", "carol", 2)?;
    f.assert_refused(&f.login(&carol)?, "carol, no grant at all");
    f.sshd
        .wait_for_log("key ID \"carol@corp\", serial 2: denied: no grant", WAIT)?;

    let bob = f.cert("bob", "bob@corp", "bob", 3)?;
    f.assert_refused(&f.login(&bob)?, "bob, granted root on db only");
    f.sshd
        .wait_for_log("key ID \"bob@corp\", serial 3: denied: no grant", WAIT)?;

    let (_, revision) = f
        .plane
        .change(&["grant", "remove", &f.alice_grant.to_string()])?;
    f.agent.wait_applied(revision)?;
    // Same sshd process, no reload: the next login asks the principals command again.
    f.assert_refused(&f.login(&alice)?, "alice after her grant was removed");
    f.sshd
        .wait_for_log("key ID \"alice@corp\", serial 1: denied: no grant", WAIT)?;
    Ok(())
}

#[test]
fn revoked_key_id_reaches_the_krl_and_refuses_the_login_while_the_grant_stands() -> Result<()> {
    let f = Fleet::new("")?;
    let alice = f.cert("alice", "alice@corp", "alice", 7)?;
    f.assert_admitted(&f.login(&alice)?, "alice before the revocation");
    assert_eq!(f.ssh_keygen_verdict(&alice)?, Verdict::Ok);

    f.plane
        .cli(&["revoke", "key-id", "alice@corp", "--reason", "left"])?;
    f.wait_krl("key ID alice@corp", |k| revokes_key_id(k, "alice@corp"))?;
    assert_eq!(
        f.ssh_keygen_verdict(&alice)?,
        Verdict::Revoked,
        "ssh-keygen -Q on the agent's KRL"
    );
    f.assert_refused(&f.login(&alice)?, "alice after her key ID was revoked");
    // sshd itself refused the key from the KRL, before asking for principals.
    f.sshd.wait_for_log(
        &format!("revoked by file {}", f.agent.krl_path().display()),
        WAIT,
    )?;
    let grants = f.plane.cli_json(&["grant", "list", "--user", "alice"])?;
    assert!(
        grants
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["id"] == json!(f.alice_grant))),
        "alice's grant should still stand: {grants}"
    );
    Ok(())
}

#[test]
fn revoked_serial_reaches_the_krl_and_refuses_that_certificate_only() -> Result<()> {
    let f = Fleet::new("")?;
    let revoked = f.cert("alice-77", "alice@corp", "alice", 77)?;
    let spared = f.cert("alice-81", "alice@corp", "alice", 81)?;
    f.assert_admitted(&f.login(&revoked)?, "serial 77 before the revocation");

    f.plane
        .cli(&["revoke", "serial", "70-80", "--ca", "corp"])?;
    f.wait_krl("serials 70-80 of CA corp", |k| {
        revokes_serial(k, &f.ca_blob, 77)
    })?;
    assert_eq!(f.ssh_keygen_verdict(&revoked)?, Verdict::Revoked);
    assert_eq!(f.ssh_keygen_verdict(&spared)?, Verdict::Ok);
    f.assert_refused(&f.login(&revoked)?, "serial 77 after 70-80 was revoked");
    f.sshd.wait_for_log(
        &format!("revoked by file {}", f.agent.krl_path().display()),
        WAIT,
    )?;
    f.assert_admitted(&f.login(&spared)?, "serial 81, outside the revoked range");
    Ok(())
}

#[test]
fn status_reports_connection_revision_and_krl_size() -> Result<()> {
    let mut f = Fleet::new("")?;
    f.plane
        .revoke(&json!({"kind": "key_id", "key_id": "gone@corp", "ca": null}))?;
    let revision = sync(&f.plane, &mut f.agent)?;
    let (code, status) = f.agent.status()?;
    assert_eq!(code, Some(0), "status exits 0 when connected: {status}");
    assert_eq!(status["connected"], json!(true), "{status}");
    assert_eq!(status["host_id"], json!(HOST_ID), "{status}");
    assert_eq!(status["applied_revision"], json!(revision), "{status}");
    assert_eq!(f.plane.revision()?, revision);
    let size = fs::metadata(f.agent.krl_path())?.len();
    assert_eq!(status["krl_bytes"], json!(size), "{status}");
    assert!(
        revokes_key_id(&f.agent.krl()?, "gone@corp"),
        "the KRL whose size status reports holds the revocation"
    );
    assert_eq!(status["problems"], json!([]), "{status}");
    Ok(())
}

/// An agent given several control plane addresses (replicas) uses one that answers: a
/// dead address listed first is skipped at enrollment and by the daemon, which syncs and
/// reports itself connected.
#[test]
fn an_agent_given_several_addresses_skips_a_dead_one() -> Result<()> {
    let plane = ControlPlane::start()?;
    plane.cli(&["group", "add", HOST_GROUP])?;
    let mut token = plane.join_token(HOST_GROUP)?;
    let dead = signoff_tests::sshd::free_port()?;
    token.server = format!("https://127.0.0.1:{dead},{}", token.server);
    let mut agent = Agent::new("")?;
    agent.enroll_with_token(&token, HOST_ID)?;
    agent.start()?;
    plane.revoke(&json!({"kind": "key_id", "key_id": "gone@corp", "ca": null}))?;
    let revision = sync(&plane, &mut agent)?;
    let (code, status) = agent.status()?;
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["connected"], json!(true), "{status}");
    assert_eq!(status["applied_revision"], json!(revision), "{status}");
    assert!(revokes_key_id(&agent.krl()?, "gone@corp"));
    Ok(())
}

/// A server list with a URL that is not `https://HOST:PORT` is refused at enrollment,
/// naming it, before anything is written.
#[test]
fn an_agent_refuses_a_server_list_with_a_bad_url() -> Result<()> {
    let plane = ControlPlane::start()?;
    plane.cli(&["group", "add", HOST_GROUP])?;
    let mut token = plane.join_token(HOST_GROUP)?;
    token.server = format!("http://127.0.0.1:1,{}", token.server);
    let agent = Agent::new("")?;
    let e = agent.enroll_with_token(&token, HOST_ID).unwrap_err();
    assert!(
        format!("{e:#}").contains("\"http://127.0.0.1:1\" is not https://HOST:PORT"),
        "{e:#}"
    );
    assert!(!agent.state_dir().join("identity").exists());
    Ok(())
}

/// `connected` in `status` after the daemon is gone.
fn status_after(stop: impl FnOnce(&mut Agent) -> Result<()>) -> Result<()> {
    let mut f = Fleet::new("")?;
    let (_, before) = f.agent.status()?;
    assert_eq!(before["connected"], json!(true), "{before}");
    stop(&mut f.agent)?;
    let (code, after) = f.agent.status()?;
    assert!(
        after["connected"] == json!(false) && code != Some(0),
        "no daemon is running, yet status exits {code:?} and says: {after}"
    );
    Ok(())
}

#[test]
fn status_does_not_claim_connected_after_the_daemon_stopped() -> Result<()> {
    status_after(|agent| {
        let exit = agent.stop()?;
        assert!(exit.success(), "signoff-agent run on SIGTERM: {exit}");
        Ok(())
    })
}

#[test]
fn status_does_not_claim_connected_after_the_daemon_was_killed() -> Result<()> {
    status_after(Agent::kill)
}

#[test]
fn best_effort_answers_from_the_persisted_state_when_the_control_plane_is_down() -> Result<()> {
    let mut f = Fleet::new("")?;
    let alice = f.cert("alice", "alice@corp", "alice", 1)?;
    let carol = f.cert("carol", "carol@corp", "carol", 2)?;
    let mallory = f.cert("mallory", "mallory@corp", "alice", 3)?;
    f.plane
        .revoke(&json!({"kind": "key_id", "key_id": "mallory@corp", "ca": null}))?;
    sync(&f.plane, &mut f.agent)?;

    let exit = f.plane.stop()?;
    assert!(exit.success(), "signoff-server on SIGTERM: {exit}");
    wait_for("status to say disconnected", WAIT, || {
        let (_, s) = f.agent.status()?;
        Ok((s["connected"] == json!(false)).then_some(()))
    })?;

    f.assert_admitted(&f.login(&alice)?, "alice with the control plane down");
    f.assert_refused(&f.login(&carol)?, "carol with the control plane down");
    f.assert_refused(
        &f.login(&mallory)?,
        "a revoked key ID with the control plane down",
    );
    f.agent.check_running()?;
    Ok(())
}

/// Strict mode with the shortest staleness that still leaves time for a login after a
/// contact (the minimum `agent.toml` accepts is 1s; contact times are whole seconds).
const STRICT: &str = "mode = \"strict\"\nmax_staleness = \"2s\"";

/// Makes the agent hear from the control plane now: a revocation nobody holds, applied.
fn fresh_contact(f: &mut Fleet, n: u32) -> Result<()> {
    let record = f
        .plane
        .revoke(&json!({"kind": "key_id", "key_id": format!("nobody-{n}@corp"), "ca": null}))?;
    let revision = record["revision"]
        .as_u64()
        .ok_or_else(|| anyhow!("no revision in {record}"))?;
    f.agent.wait_applied(revision)
}

#[test]
fn strict_mode_refuses_once_the_control_plane_is_gone_longer_than_max_staleness() -> Result<()> {
    let mut f = Fleet::new(STRICT)?;
    let alice = f.cert("alice", "alice@corp", "alice", 1)?;
    fresh_contact(&mut f, 1)?;
    f.assert_admitted(
        &f.login(&alice)?,
        "alice in strict mode, just after a contact",
    );

    let exit = f.plane.stop()?;
    assert!(exit.success(), "signoff-server on SIGTERM: {exit}");
    let stopped = Instant::now();
    let refused = wait_for("a login to be refused as stale", WAIT, || {
        let login = f.login(&alice)?;
        Ok((!login.success).then_some(login))
    })?;
    f.assert_refused(&refused, "alice in strict mode with the control plane gone");
    f.sshd.wait_for_log(
        "denied: state stale (strict mode): last contact with the control plane was",
        WAIT,
    )?;
    eprintln!(
        "refused {:?} after the control plane stopped",
        stopped.elapsed()
    );
    Ok(())
}

#[test]
fn strict_mode_admits_while_connected_between_heartbeats() -> Result<()> {
    let mut f = Fleet::new(STRICT)?;
    let alice = f.cert("alice", "alice@corp", "alice", 1)?;
    fresh_contact(&mut f, 1)?;
    // Nothing changes at the control plane; the agent stays connected. Wait (no sleep)
    // until it has been connected longer than max_staleness: heartbeats (the agent asks
    // for one every max_staleness / 3) must have kept its contact fresh.
    let status = wait_for("the agent to be connected for more than 3 s", WAIT, || {
        let (_, s) = f.agent.status()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let since = s["since"].as_u64().unwrap_or(now);
        Ok((s["connected"] == json!(true) && now.saturating_sub(since) > 3).then_some(s))
    })?;
    let age = status["last_contact_age"].as_u64().unwrap_or(u64::MAX);
    assert!(
        age <= 2,
        "idle but connected, the last contact is {age} s old: {status}"
    );
    f.assert_admitted(
        &f.login(&alice)?,
        "alice in strict mode on a host connected to a running control plane",
    );
    Ok(())
}

#[test]
fn a_krl_left_behind_the_host_view_by_a_crash_is_rebuilt_on_restart() -> Result<()> {
    let mut f = Fleet::new("")?;
    let older_krl = fs::read(f.agent.krl_path())?;
    let record = f
        .plane
        .revoke(&json!({"kind": "key_id", "key_id": "mallory@corp", "ca": null}))?;
    let revision = record["revision"]
        .as_u64()
        .ok_or_else(|| anyhow!("no revision in {record}"))?;
    f.agent.wait_applied(revision)?;
    f.agent.kill()?;
    // What SIGKILL between the two renames of one persist leaves: the host view at the new
    // revision, the KRL still the one before.
    let temp = f.agent.state_dir().join(".revoked.krl.crash.tmp");
    fs::write(&temp, &older_krl)?;
    fs::rename(&temp, f.agent.krl_path())?;

    f.agent.start()?;
    wait_for("the agent to reconnect", WAIT, || {
        let (_, s) = f.agent.status()?;
        Ok((s["connected"] == json!(true)).then_some(()))
    })?;
    f.wait_krl("key ID mallory@corp after the restart", |k| {
        revokes_key_id(k, "mallory@corp")
    })?;
    let mallory = f.cert("mallory", "mallory@corp", "alice", 5)?;
    assert_eq!(f.ssh_keygen_verdict(&mallory)?, Verdict::Revoked);
    Ok(())
}

#[test]
fn temporary_files_left_by_a_crash_are_removed_on_restart() -> Result<()> {
    let mut f = Fleet::new("")?;
    f.agent.kill()?;
    // What SIGKILL during a write leaves (the names `write_atomic` gives its temporary
    // files); at scale a host view is tens of megabytes, so a crash loop fills the disk.
    let leftovers = [".hostview.crash1.tmp", ".revoked.krl.crash2.tmp"];
    for name in leftovers {
        fs::write(f.agent.state_dir().join(name), b"half-written")?;
    }
    f.agent.start()?;
    f.plane
        .revoke(&json!({"kind": "key_id", "key_id": "after-restart@corp", "ca": null}))?;
    sync(&f.plane, &mut f.agent)?;
    let left: Vec<&str> = leftovers
        .into_iter()
        .filter(|name| f.agent.state_dir().join(name).exists())
        .collect();
    assert!(
        left.is_empty(),
        "after a restart and a persist, still in the state directory: {left:?}"
    );
    Ok(())
}

/// What the revoker thread has revoked.
#[derive(Debug, Default)]
struct Revoked {
    key_ids: Vec<String>,
    serials: Vec<u64>,
}

/// What the KRL checker thread saw.
#[derive(Debug, Default)]
struct Checked {
    reads: AtomicUsize,
    ssh_keygen: AtomicUsize,
    logins: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Checked {
    fn fail(&self, what: String) {
        if let Ok(mut f) = self.failures.lock() {
            f.push(what);
        }
    }
}

#[test]
fn agent_killed_at_random_moments_never_leaves_a_missing_or_unparsable_krl() -> Result<()> {
    const KILLS: usize = 20;
    let (_, mut rng) = seeded_rng("agent_killed_at_random_moments")?;
    let mut f = Fleet::new("")?;
    let alice = f.cert("alice", "alice@corp", "alice", 1)?;
    let krl_path = f.agent.krl_path();
    let ca_list = f.plane.cli_json(&["ca", "list"])?;
    let ca_fingerprint = ca_list[0]["fingerprint"]
        .as_str()
        .ok_or_else(|| anyhow!("ca list printed no fingerprint: {ca_list}"))?
        .to_owned();
    let stop = AtomicBool::new(false);
    let checked = Checked::default();
    let revoked = Mutex::new(Revoked::default());
    let seeds: [u64; 2] = rng.random();
    let (plane, sshd, user_key, agent) = (&f.plane, &f.sshd, &f.user_key, &mut f.agent);

    thread::scope(|s| -> Result<()> {
        // The KRL as sshd would load it, over and over: our decoder every millisecond or
        // so, OpenSSH's own every 100 ms.
        s.spawn(|| {
            let mut last_slow_check = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                match fs::read(&krl_path) {
                    Err(e) => checked.fail(format!("reading the KRL: {e}")),
                    Ok(bytes) => {
                        if let Err(e) = Krl::decode(&bytes) {
                            checked.fail(format!("decoding the KRL: {e}"));
                        }
                    }
                }
                checked.reads.fetch_add(1, Ordering::Relaxed);
                if last_slow_check.elapsed() >= Duration::from_millis(100) {
                    last_slow_check = Instant::now();
                    match ssh_keygen_check(&krl_path, std::slice::from_ref(&alice)) {
                        Ok(Check::Loaded(v)) if v == [Verdict::Ok] => {}
                        Ok(other) => checked.fail(format!("ssh-keygen -Q on the KRL: {other:?}")),
                        Err(e) => checked.fail(format!("ssh-keygen -Q: {e:#}")),
                    }
                    checked.ssh_keygen.fetch_add(1, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(1));
            }
        });
        // Logins of a granted, unrevoked certificate keep working throughout.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match sshd.login(ACCOUNT, &user_key.private, &alice) {
                    Ok(l) if l.success => {}
                    Ok(l) => checked.fail(format!("alice's login failed: {}", l.stderr)),
                    Err(e) => checked.fail(format!("ssh: {e:#}")),
                }
                checked.logins.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Revocations stream in: key IDs and serials, through the API and (one in five)
        // the admin CLI.
        s.spawn(|| {
            let mut rng = StdRng::seed_from_u64(seeds[0]);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let via_cli = n.is_multiple_of(5);
                let result = if n.is_multiple_of(2) {
                    let id = format!("gone-{n}@corp");
                    let r = if via_cli {
                        plane.cli(&["revoke", "key-id", &id]).map(drop)
                    } else {
                        plane
                            .revoke(&json!({"kind": "key_id", "key_id": id, "ca": null}))
                            .map(drop)
                    };
                    r.map(|()| revoked.lock().map(|mut r| r.key_ids.push(id)))
                } else {
                    let serial = 1000 + n;
                    let r = if via_cli {
                        plane
                            .cli(&["revoke", "serial", &serial.to_string(), "--ca", "corp"])
                            .map(drop)
                    } else {
                        plane
                            .revoke(&json!({
                                "kind": "serial", "ca": ca_fingerprint, "lo": serial, "hi": serial
                            }))
                            .map(drop)
                    };
                    r.map(|()| revoked.lock().map(|mut r| r.serials.push(serial)))
                };
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => checked.fail("poisoned lock".to_owned()),
                    Err(e) => checked.fail(format!("revocation {n}: {e:#}")),
                }
                thread::sleep(Duration::from_millis(rng.random_range(0..30)));
            }
        });

        // The killer: start the daemon, let it run 0-300 ms, SIGKILL it.
        let mut killer = StdRng::seed_from_u64(seeds[1]);
        let outcome = (|| -> Result<()> {
            agent.kill()?;
            for _ in 0..KILLS {
                agent.start()?;
                thread::sleep(Duration::from_millis(killer.random_range(0..=300)));
                agent.kill()?;
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        outcome
    })?;

    let failures = checked
        .failures
        .into_inner()
        .map_err(|_| anyhow!("poisoned"))?;
    assert!(
        failures.is_empty(),
        "{} failures while the agent was being killed, first ones:\n{}\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        f.logs()
    );
    let (reads, ssh_keygen, logins) = (
        checked.reads.into_inner(),
        checked.ssh_keygen.into_inner(),
        checked.logins.into_inner(),
    );
    let revoked = revoked.into_inner().map_err(|_| anyhow!("poisoned"))?;
    eprintln!(
        "{KILLS} kills; KRL read {reads} times, ssh-keygen -Q {ssh_keygen} times, {logins} \
         logins; {} key IDs and {} serials revoked meanwhile",
        revoked.key_ids.len(),
        revoked.serials.len()
    );
    assert!(
        reads >= 100 && ssh_keygen >= 5 && logins >= 3,
        "the checkers hardly ran"
    );
    assert!(
        revoked.key_ids.len() >= 10 && revoked.serials.len() >= 10,
        "hardly any revocations streamed in: {revoked:?}"
    );

    // Left alone, the agent catches up, and the KRL holds every revocation.
    f.agent.start()?;
    let revision = sync(&f.plane, &mut f.agent)?;
    let krl = f.agent.krl()?;
    let missing_ids: Vec<&String> = revoked
        .key_ids
        .iter()
        .filter(|id| !revokes_key_id(&krl, id))
        .collect();
    let missing_serials: Vec<&u64> = revoked
        .serials
        .iter()
        .filter(|&&s| !revokes_serial(&krl, &f.ca_blob, s))
        .collect();
    assert!(
        missing_ids.is_empty() && missing_serials.is_empty(),
        "KRL version {} lacks key IDs {missing_ids:?} and serials {missing_serials:?}",
        krl.version()
    );
    let gone = f.cert("gone", &revoked.key_ids[0], "alice", 2)?;
    let gone_serial = f.cert("gone-serial", "alice@corp", "alice", revoked.serials[0])?;
    let verdicts = ssh_keygen_check(&krl_path, &[gone, gone_serial, alice.clone()])?.verdicts()?;
    assert_eq!(
        verdicts,
        [Verdict::Revoked, Verdict::Revoked, Verdict::Ok],
        "ssh-keygen -Q on the final KRL"
    );
    f.assert_admitted(&f.login(&alice)?, "alice after the crash loop");
    let (_, status) = f.agent.status()?;
    assert_eq!(status["connected"], json!(true), "{status}");
    assert_eq!(status["applied_revision"], json!(revision), "{status}");
    let leftovers: BTreeSet<String> = fs::read_dir(f.agent.state_dir())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    eprintln!("temporary files left in the state directory: {leftovers:?}");
    Ok(())
}

/// The nice value of every thread of `pid`, as `ps -L` shows them.
fn thread_nice_values(pid: u32) -> Result<BTreeSet<i32>> {
    let out = std::process::Command::new("ps")
        .args(["-L", "-o", "nice=", "-p", &pid.to_string()])
        .output()?;
    anyhow::ensure!(out.status.success(), "ps: {out:?}");
    String::from_utf8(out.stdout)?
        .split_whitespace()
        .map(|n| Ok(n.parse::<i32>()?))
        .collect()
}

#[test]
fn the_daemon_runs_boosted_at_nice_minus_ten_unless_told_otherwise() -> Result<()> {
    let plane = ControlPlane::start()?;
    plane.cli(&["group", "add", HOST_GROUP])?;
    // Whatever this test runs at: 0 unless the suite itself was started under nice.
    let own = thread_nice_values(std::process::id())?;
    for (host, config, expected) in [
        ("nice-default", "", BTreeSet::from([-10])),
        ("nice-3", "priority_boost = 3", BTreeSet::from([-3])),
        // 0 leaves it as started.
        ("nice-0", "priority_boost = 0", own),
    ] {
        let mut agent = Agent::new(config)?;
        agent.enroll(&plane, host, HOST_GROUP)?;
        agent.start()?;
        sync(&plane, &mut agent)?;
        let pid = agent
            .pid()
            .ok_or_else(|| anyhow!("the agent is not running"))?;
        assert_eq!(
            thread_nice_values(pid)?,
            expected,
            "every thread of the agent (config {config:?})"
        );
    }
    Ok(())
}
