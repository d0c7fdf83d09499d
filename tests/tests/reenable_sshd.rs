//! Re-enabling a signed-off person needs k approvals on the host (issue 20), end to end:
//! the real `signoff-server`, real agents enrolled over mTLS beside their own real sshd,
//! the real `ssh` client, approvers' keys made and used by the real `ssh-keygen -Y sign`.
//!
//! `host-1` has `[approvals]` (k = 2 and its own approvers file, as Ansible writes them):
//! once it enforced the sign-off it holds the person out — both sshd commands refuse them
//! and its KRL keeps their key ID revoked — until the re-enable carries approvals from two
//! distinct approvers. `host-2` has no `[approvals]` and lets the person back in as soon as
//! they are re-enabled, as before. Signatures the control plane refuses to take are written
//! straight into its SQLite database, as someone with write access to it could.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::json;
use signoff_tests::agent::{agent_binary, sshd_commands_binary};
use signoff_tests::command::{Finished, run, run_ok};
use signoff_tests::fleet::{Fleet, Host, KEY_ID, USER, assert_refused};
use signoff_tests::keys::{KeyPair, KeyType, sha256_fingerprint};
use signoff_tests::plane::{WAIT, sync, wait_for};
use signoff_tests::sessions::TEST_ACCOUNT;
use signoff_tests::tools::SSH_KEYGEN;

/// k, on host-1.
const REQUIRED: usize = 2;

struct Setup {
    fleet: Fleet,
    /// With `[approvals]`.
    held: Host,
    /// Without.
    plain: Host,
    alice: KeyPair,
    /// A second key of alice's, on its own line of the approvers file.
    alice2: KeyPair,
    bob: KeyPair,
    /// A key in no approvers file.
    stranger: KeyPair,
    /// The sign-off's id.
    signoff: i64,
}

/// Two hosts, the person signed off on both (confirmed), then re-enabled.
fn signed_off_then_reenabled() -> Result<Setup> {
    let fleet = Fleet::new()?;
    let mut held = fleet.host("host-1")?;
    let mut plain = fleet.host("host-2")?;
    let dir = fleet.keys.path();
    let key = |name: &str| KeyPair::generate(dir, name, KeyType::Ed25519);
    let (alice, alice2, bob, stranger) =
        (key("alice")?, key("alice2")?, key("bob")?, key("stranger")?);
    let approvers = held.agent.config().with_file_name("approvers");
    fs::write(
        &approvers,
        format!(
            "alice {}\nalice {}\nbob {}\n",
            alice.public_line()?,
            alice2.public_line()?,
            bob.public_line()?,
        ),
    )?;
    // `root` is privileged here; the person's grant is to another account: a hold keeps
    // them out of every account.
    held.agent.append_config(&format!(
        "[approvals]\nprivileged_accounts = [\"root\"]\nrequired = {REQUIRED}\napprovers = {:?}\n",
        approvers.display().to_string()
    ))?;
    held.agent.stop()?;
    held.agent.start()?;
    sync(&fleet.plane, &mut held.agent)?;
    sync(&fleet.plane, &mut plain.agent)?;
    for host in [&held, &plain] {
        if !fleet.login(host)?.success {
            bail!("{}: the person must log in before the sign-off", host.id);
        }
    }

    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 201, "{record}");
    let signoff = record["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("no id in {record}"))?;
    fleet.wait_signoff("confirmed by both hosts", |r| !r["completed_at"].is_null())?;
    for host in [&held, &plain] {
        assert_refused(&fleet.login(host)?, host);
    }
    let holds = fs::read_to_string(held.agent.state_dir().join("holds"))
        .context("host-1 must have written its holds")?;
    assert!(holds.contains(USER), "{holds}");

    fleet
        .plane
        .cli(&["user", "reenable", USER, "--reason", "came back"])?;
    sync(&fleet.plane, &mut held.agent)?;
    sync(&fleet.plane, &mut plain.agent)?;
    Ok(Setup {
        fleet,
        held,
        plain,
        alice,
        alice2,
        bob,
        stranger,
        signoff,
    })
}

impl Setup {
    /// `signoff-server approval show reenable-N`, saved to a file: what approvers sign.
    fn bytes_file(&self) -> Result<PathBuf> {
        let id = format!("reenable-{}", self.signoff);
        let out = self.fleet.plane.cli(&["approval", "show", &id])?;
        let file = self.fleet.keys.path().join(format!("{id}.approval"));
        fs::write(&file, out.stdout.as_bytes())?;
        Ok(file)
    }

    /// Adds `signature` with `signoff-server approval add reenable-N FILE`.
    fn approve_cli(&self, signature: &str) -> Result<()> {
        let file = self.fleet.keys.path().join("submitted.sig");
        fs::write(&file, signature)?;
        self.fleet.plane.cli(&[
            "approval",
            "add",
            &format!("reenable-{}", self.signoff),
            &file.display().to_string(),
        ])?;
        Ok(())
    }

    /// `POST /api/v1/signoffs/N/approvals`: the status and body.
    fn approve_api(&self, signature: &str) -> Result<(u16, String)> {
        let res = self.fleet.plane.api(
            "POST",
            &format!("/api/v1/signoffs/{}/approvals", self.signoff),
            Some(&json!({ "signature": signature })),
        )?;
        Ok((res.status, res.body))
    }

    fn sync(&mut self) -> Result<()> {
        sync(&self.fleet.plane, &mut self.held.agent)?;
        sync(&self.fleet.plane, &mut self.plain.agent)?;
        Ok(())
    }

    /// Runs SQL against the control plane's database behind its back, with a new revision
    /// the running server notices and pushes to the agents.
    fn sql_with_revision(&mut self, sql: &str) -> Result<()> {
        let db = self.fleet.plane.data_dir().join("signoff.db");
        run_ok(Command::new("sqlite3").arg(&db).arg(format!(
            "PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE; INSERT INTO revisions (created_at, actor, summary)
               VALUES (strftime('%s','now'), 'mallet', 'behind the back'); {sql} COMMIT;"
        )))?;
        let want: u64 = run_ok(
            Command::new("sqlite3")
                .arg(&db)
                .arg("SELECT max(revision) FROM revisions"),
        )?
        .stdout
        .trim()
        .parse()?;
        wait_for(
            format_args!("the control plane to see revision {want}"),
            WAIT,
            || Ok((self.fleet.plane.revision()? >= want).then_some(())),
        )?;
        self.sync()
    }

    /// The person is refused by host-1's sshd, both its principals commands say why, and
    /// its KRL revokes their key ID; host-2 lets them in.
    fn assert_held(&self, why: &str) -> Result<()> {
        let login = self.fleet.login(&self.held)?;
        if login.success || !login.stderr.contains("Permission denied") {
            bail!(
                "{why}: host-1 must refuse the login; ssh exited {:?}: {}\nsshd log:\n{}",
                login.code,
                login.stderr,
                self.held.sshd.log()
            );
        }
        for out in self.principals()? {
            if out.success() || !out.stdout.is_empty() || !out.stderr.contains("held:") {
                bail!(
                    "{why}: {} must print nothing, exit 1 and say the person is held; exited {:?}, stdout {:?}, stderr {:?}",
                    out.command,
                    out.code(),
                    out.stdout,
                    out.stderr
                );
            }
        }
        if !self.krl_revokes_the_certificate()? {
            bail!("{why}: host-1's KRL must keep revoking key ID {KEY_ID}");
        }
        if !self.fleet.login(&self.plain)?.success {
            bail!("{why}: host-2 (no [approvals]) must admit the re-enabled person");
        }
        Ok(())
    }

    /// Approvals by alice and by the stranger (a key no approvers file lists), taken by
    /// the control plane and brought to the hosts: host-1 counts one of the two.
    fn approved_by_alice_and_the_stranger(&mut self) -> Result<()> {
        let file = self.bytes_file()?;
        self.approve_cli(&sign(&self.alice, &file)?)?;
        self.approve_cli(&sign(&self.stranger, &file)?)?;
        self.sync()
    }

    /// Adds `name` with `key` to host-1's approvers file, as Ansible would.
    fn add_approver(&self, name: &str, key: &KeyPair) -> Result<()> {
        let approvers = self.held.agent.config().with_file_name("approvers");
        let mut text = fs::read_to_string(&approvers)?;
        text.push_str(&format!("{name} {}\n", key.public_line()?));
        Ok(fs::write(&approvers, text)?)
    }

    /// `ssh-keygen -Q -f KRL CERT`: whether host-1's KRL revokes the person's certificate.
    fn krl_revokes_the_certificate(&self) -> Result<bool> {
        let out = run(SSH_KEYGEN
            .command()?
            .arg("-Q")
            .arg("-f")
            .arg(self.held.agent.krl_path())
            .arg(&self.fleet.cert))?;
        Ok(!out.success())
    }

    /// Both principals commands of host-1, as sshd runs them for the certificate.
    fn principals(&self) -> Result<Vec<Finished>> {
        let ca = sha256_fingerprint(&self.fleet.ca.public)?;
        let key = self.fleet.user_key.sha256_fingerprint()?;
        let mut out = Vec::new();
        for bin in [agent_binary()?, sshd_commands_binary()?] {
            out.push(run(Command::new(bin)
                .arg("principals")
                .arg("--config")
                .arg(self.held.agent.config())
                .args([TEST_ACCOUNT, KEY_ID, "77", &ca, &key]))?);
        }
        Ok(out)
    }
}

/// `ssh-keygen -Y sign -n NAMESPACE -f KEY FILE`: the armored signature.
fn sign_in(key: &KeyPair, file: &Path, namespace: &str) -> Result<String> {
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    let _ = fs::remove_file(&sig);
    run_ok(
        SSH_KEYGEN
            .command()?
            .args(["-Y", "sign", "-n", namespace, "-f"])
            .arg(&key.private)
            .arg(file),
    )?;
    fs::read_to_string(&sig).with_context(|| format!("reading {}", sig.display()))
}

fn sign(key: &KeyPair, file: &Path) -> Result<String> {
    sign_in(key, file, "signoff-approval")
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[test]
fn a_reenable_with_fewer_than_k_approvals_is_refused_and_k_admit() -> Result<()> {
    let mut s = signed_off_then_reenabled()?;
    s.assert_held("re-enabled without approvals")?;

    let file = s.bytes_file()?;
    assert_eq!(
        fs::read_to_string(&file)?,
        format!(
            "signoff re-enable approval v1\nsignoff: {}\nperson: {USER}\n",
            s.signoff
        )
    );
    s.approve_cli(&sign(&s.alice, &file)?)?;
    s.sync()?;
    s.assert_held("one approval of two")?;

    let (status, body) = s.approve_api(&sign(&s.bob, &file)?)?;
    assert_eq!(status, 201, "{body}");
    s.sync()?;
    if !s.fleet.login(&s.held)?.success {
        bail!(
            "two approvals: host-1 must admit the person\nagent log:\n{}",
            s.held.agent.log()
        );
    }
    assert!(
        !s.krl_revokes_the_certificate()?,
        "released: the KRL no longer revokes the key ID"
    );
    for out in s.principals()? {
        assert!(out.success(), "{}: {}", out.command, out.stderr);
    }
    // Every step is audited.
    let audit =
        s.fleet
            .plane
            .cli_json(&["audit", "list", "--filter", "signoff.reenable_approve"])?;
    assert_eq!(audit.as_array().map(Vec::len), Some(2), "{audit:#}");
    let audit = s
        .fleet
        .plane
        .cli_json(&["audit", "list", "--filter", "user.reenable"])?;
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit:#}");
    Ok(())
}

#[test]
fn an_approval_by_a_non_approver_does_not_count() -> Result<()> {
    let mut s = signed_off_then_reenabled()?;
    // A well-formed signature by a key host-1 does not list: the control plane takes it
    // (it does not know the hosts' approvers); the host does not count it.
    s.approved_by_alice_and_the_stranger()?;
    s.assert_held("alice and a stranger")?;
    assert!(
        s.held.agent.log().contains("not an approver"),
        "the agent says why:\n{}",
        s.held.agent.log()
    );
    Ok(())
}

#[test]
fn an_approval_in_another_namespace_does_not_count() -> Result<()> {
    let mut s = signed_off_then_reenabled()?;
    let file = s.bytes_file()?;
    s.approve_cli(&sign(&s.alice, &file)?)?;
    let by_bob = sign_in(&s.bob, &file, "file")?;
    let (status, body) = s.approve_api(&by_bob)?;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("namespace"), "{body}");
    s.sql_with_revision(&format!(
        "INSERT INTO reenable_approvals (signoff_id, fingerprint, public_key, signature, actor,
           created_at, since_rev)
         VALUES ({}, {}, {}, {}, 'mallet', 0, (SELECT max(revision) FROM revisions));",
        s.signoff,
        sql_text(&s.bob.sha256_fingerprint()?),
        sql_text(&s.bob.public_line()?),
        sql_text(&by_bob),
    ))?;
    s.assert_held("alice, and bob in namespace \"file\"")?;
    assert!(
        s.held.agent.log().contains("namespace"),
        "the agent says why:\n{}",
        s.held.agent.log()
    );
    Ok(())
}

#[test]
fn a_second_approval_by_the_same_approver_does_not_count() -> Result<()> {
    let mut s = signed_off_then_reenabled()?;
    let file = s.bytes_file()?;
    let by_alice = sign(&s.alice, &file)?;
    s.approve_cli(&by_alice)?;
    // The same key twice: the control plane refuses it.
    let (status, body) = s.approve_api(&by_alice)?;
    assert_eq!(status, 409, "{body}");
    // Alice's other key: a second approval by alice, which the host counts once.
    s.approve_cli(&sign(&s.alice2, &file)?)?;
    s.sync()?;
    s.assert_held("alice with two keys")?;
    assert!(
        s.held.agent.log().contains("second approval by alice"),
        "the agent says why:\n{}",
        s.held.agent.log()
    );
    Ok(())
}

#[test]
fn an_approver_added_to_the_hosts_file_counts_the_approvals_already_given() -> Result<()> {
    let mut s = signed_off_then_reenabled()?;
    s.approved_by_alice_and_the_stranger()?;
    s.assert_held("alice and a stranger")?;

    // Ansible adds the stranger to host-1's approvers: no revision, nothing from the
    // control plane; the host counts the approvals it was given again.
    let revision = s.fleet.plane.revision()?;
    s.add_approver("carol", &s.stranger)?;
    wait_for("host-1 to admit the person", WAIT, || {
        Ok(s.fleet.login(&s.held)?.success.then_some(()))
    })
    .with_context(|| s.held.agent.log())?;
    assert!(
        !s.krl_revokes_the_certificate()?,
        "released: the KRL no longer revokes the key ID"
    );
    for out in s.principals()? {
        assert!(out.success(), "{}: {}", out.command, out.stderr);
    }
    assert_eq!(
        s.fleet.plane.revision()?,
        revision,
        "no revision was needed"
    );
    assert!(
        s.held
            .agent
            .log()
            .contains("with the approvers file as it is now"),
        "the agent says why:\n{}",
        s.held.agent.log()
    );
    Ok(())
}

#[test]
fn a_new_approver_who_signed_nothing_releases_nothing() -> Result<()> {
    let mut s = signed_off_then_reenabled()?;
    s.approved_by_alice_and_the_stranger()?;
    // The approvers file gains an approver who signed nothing: the kept approvals are
    // counted again, and still fall short.
    let dave = KeyPair::generate(s.fleet.keys.path(), "dave", KeyType::Ed25519)?;
    s.add_approver("dave", &dave)?;
    // Two looks of the agent at the file (HOLDS_RECHECK is 5 s).
    std::thread::sleep(std::time::Duration::from_secs(11));
    s.assert_held("alice, a stranger, and a new approver who did not sign")?;
    Ok(())
}
