//! k-of-n approvals of grants to privileged accounts, end to end: the real
//! `signoff-server`, a real agent enrolled over mTLS beside its own real sshd, the real
//! `ssh` client, approvers' keys made and used by the real `ssh-keygen` (`-Y sign`, and
//! `-Y verify` agreeing with the host). The host's `[approvals]` (privileged accounts, k = 2,
//! the approvers' `allowed_signers`) is its own configuration, as Ansible writes it.
//!
//! Signatures the control plane refuses to take (over other bytes, for another grant) and a
//! grant it never made are written straight into its SQLite database, as someone with write
//! access to it could: the host must refuse them all the same.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::json;
use signoff_tests::agent::{agent_binary, sshd_commands_binary};
use signoff_tests::command::{Finished, run, run_ok};
use signoff_tests::fleet::{Fleet, GROUP, Host, KEY_ID, USER};
use signoff_tests::keys::{KeyPair, KeyType, sha256_fingerprint};
use signoff_tests::plane::{WAIT, sync, wait_for};
use signoff_tests::sessions::TEST_ACCOUNT;
use signoff_tests::tools::SSH_KEYGEN;

/// k, on the host.
const REQUIRED: usize = 2;

struct Setup {
    fleet: Fleet,
    host: Host,
    alice: KeyPair,
    /// A second key of alice's, on its own line of the approvers file.
    alice2: KeyPair,
    bob: KeyPair,
    /// A key in no approvers file.
    stranger: KeyPair,
    approvers: PathBuf,
    /// The fleet's grant of [`USER`] for [`TEST_ACCOUNT`].
    grant: i64,
}

/// A fleet with one host whose privileged accounts are `privileged`.
fn setup(privileged: &str) -> Result<Setup> {
    let fleet = Fleet::new()?;
    let mut host = fleet.host("host-1")?;
    let dir = fleet.keys.path();
    let key = |name: &str| KeyPair::generate(dir, name, KeyType::Ed25519);
    let (alice, alice2, bob, carol, stranger) = (
        key("alice")?,
        key("alice2")?,
        key("bob")?,
        key("carol")?,
        key("stranger")?,
    );
    // Beside the agent's configuration: the principals command (user `signoff`) reads it.
    let approvers = host.agent.config().with_file_name("approvers");
    fs::write(
        &approvers,
        format!(
            "# approvers of grants to privileged accounts\nalice {}\nalice {}\nbob {}\ncarol {}\n",
            alice.public_line()?,
            alice2.public_line()?,
            bob.public_line()?,
            carol.public_line()?
        ),
    )?;
    host.agent.append_config(&format!(
        "[approvals]\nprivileged_accounts = [{privileged:?}]\nrequired = {REQUIRED}\napprovers = {:?}\n",
        approvers.display().to_string()
    ))?;
    let grants = fleet.plane.cli_json(&["grant", "list"])?;
    let grant = grants[0]["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("no grant in {grants}"))?;
    sync(&fleet.plane, &mut host.agent)?;
    Ok(Setup {
        fleet,
        host,
        alice,
        alice2,
        bob,
        stranger,
        approvers,
        grant,
    })
}

impl Setup {
    /// `signoff-server approval show GRANT`, saved to a file: what approvers sign.
    fn bytes_file(&self, grant: i64) -> Result<PathBuf> {
        let out = self
            .fleet
            .plane
            .cli(&["approval", "show", &grant.to_string()])?;
        let file = self
            .fleet
            .keys
            .path()
            .join(format!("grant-{grant}.approval"));
        fs::write(&file, out.stdout.as_bytes())?;
        Ok(file)
    }

    /// Adds `signature` to `grant` with `signoff-server approval add`.
    fn approve_cli(&self, grant: i64, signature: &str) -> Result<()> {
        let file = self.fleet.keys.path().join("submitted.sig");
        fs::write(&file, signature)?;
        self.fleet.plane.cli(&[
            "approval",
            "add",
            &grant.to_string(),
            &file.display().to_string(),
        ])?;
        Ok(())
    }

    /// Waits until the agent has what the control plane has.
    fn sync(&mut self) -> Result<()> {
        sync(&self.fleet.plane, &mut self.host.agent)?;
        Ok(())
    }

    /// Runs SQL against the control plane's database, behind its back. A statement that
    /// makes a revision lets the running server notice (it polls for revisions written by
    /// other processes) and push it to the agents.
    fn sql(&self, sql: &str) -> Result<()> {
        let db = self.fleet.plane.data_dir().join("signoff.db");
        run_ok(
            Command::new("sqlite3")
                .arg(&db)
                .arg(format!("PRAGMA busy_timeout = 5000; {sql}")),
        )?;
        Ok(())
    }

    /// A new revision made behind the control plane's back, for rows inserted with
    /// `(SELECT max(revision) FROM revisions)`.
    fn sql_with_revision(&mut self, sql: &str) -> Result<()> {
        self.sql(&format!(
            "BEGIN IMMEDIATE; INSERT INTO revisions (created_at, actor, summary)
               VALUES (strftime('%s','now'), 'mallet', 'behind the back'); {sql} COMMIT;"
        ))?;
        let want: u64 = run_ok(
            Command::new("sqlite3")
                .arg(self.fleet.plane.data_dir().join("signoff.db"))
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

    /// Logs in; asserts it was admitted.
    fn assert_admitted(&self, why: &str) -> Result<()> {
        let login = self.fleet.login(&self.host)?;
        if !login.success {
            bail!(
                "{why}: the login must be admitted; ssh exited {:?}: {}\nsshd log:\n{}",
                login.code,
                login.stderr,
                self.host.sshd.log()
            );
        }
        Ok(())
    }

    /// Logs in; asserts it was refused, and that each of the host's principals commands
    /// (`signoff-agent`, which this sshd runs, and the lean `signoff-sshd`), asked about the
    /// same certificate, prints nothing and gives `reason`. (sshd discards a principals
    /// command's stderr below `LogLevel DEBUG1`, so the reason is asked for directly.)
    fn assert_refused(&self, why: &str, reason: &str) -> Result<()> {
        let login = self.fleet.login(&self.host)?;
        if login.success || !login.stderr.contains("Permission denied") {
            bail!(
                "{why}: the login must be refused; ssh exited {:?}: {}\nsshd log:\n{}",
                login.code,
                login.stderr,
                self.host.sshd.log()
            );
        }
        for out in self.principals()? {
            if out.success() || !out.stdout.is_empty() || !out.stderr.contains(reason) {
                bail!(
                    "{why}: {} must print nothing, exit 1 and say {reason:?}; exited {:?}, \
                     stdout {:?}, stderr {:?}",
                    out.command,
                    out.code(),
                    out.stdout,
                    out.stderr
                );
            }
        }
        Ok(())
    }

    /// Both principals commands, as sshd runs them for the person's certificate.
    fn principals(&self) -> Result<Vec<Finished>> {
        let ca = sha256_fingerprint(&self.fleet.ca.public)?;
        let key = self.fleet.user_key.sha256_fingerprint()?;
        let mut out = Vec::new();
        for bin in [agent_binary()?, sshd_commands_binary()?] {
            out.push(run(Command::new(bin)
                .arg("principals")
                .arg("--config")
                .arg(self.host.agent.config())
                .args([TEST_ACCOUNT, KEY_ID, "77", &ca, &key]))?);
        }
        Ok(out)
    }
}

/// `ssh-keygen -Y sign -n signoff-approval -f KEY FILE`: the armored signature.
fn sign(key: &KeyPair, file: &Path) -> Result<String> {
    sign_in(key, file, "signoff-approval")
}

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

/// `ssh-keygen -Y verify -n signoff-approval -I IDENTITY -f APPROVERS -s SIG < FILE`.
fn ssh_keygen_verifies(approvers: &Path, identity: &str, file: &Path, sig: &str) -> Result<bool> {
    let sig_file = PathBuf::from(format!("{}.check.sig", file.display()));
    fs::write(&sig_file, sig)?;
    // `run` closes stdin; the bytes go in on it.
    let out = SSH_KEYGEN
        .command()?
        .args([
            "-Y",
            "verify",
            "-n",
            "signoff-approval",
            "-I",
            identity,
            "-f",
        ])
        .arg(approvers)
        .arg("-s")
        .arg(&sig_file)
        .stdin(fs::File::open(file)?)
        .output()?;
    Ok(out.status.success())
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[test]
fn k_minus_one_approvals_are_refused_and_k_admit() -> Result<()> {
    let mut s = setup(TEST_ACCOUNT)?;
    s.assert_refused("a privileged grant without approvals", "no approvals")?;

    // What the dashboard and the API show is what the CLI prints, and what gets signed.
    let file = s.bytes_file(s.grant)?;
    let bytes = fs::read_to_string(&file)?;
    assert_eq!(
        bytes,
        format!(
            "signoff grant approval v1\ngrant: {}\nperson: {USER}\naccount: {TEST_ACCOUNT}\nhost-group: {GROUP}\nnot-after: never\n",
            s.grant
        )
    );
    let res = s.fleet.plane.api(
        "GET",
        &format!("/api/v1/grants/{}/approvals", s.grant),
        None,
    )?;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.json()?["bytes"], bytes);

    let by_alice = sign(&s.alice, &file)?;
    assert!(ssh_keygen_verifies(
        &s.approvers,
        "alice",
        &file,
        &by_alice
    )?);
    s.approve_cli(s.grant, &by_alice)?;
    s.sync()?;
    s.assert_refused(
        "k-1 approvals",
        &format!(
            "grant {} has 1 valid approval(s) of {REQUIRED} required",
            s.grant
        ),
    )?;

    // The second through the HTTP API.
    let by_bob = sign(&s.bob, &file)?;
    assert!(ssh_keygen_verifies(&s.approvers, "bob", &file, &by_bob)?);
    let res = s.fleet.plane.api(
        "POST",
        &format!("/api/v1/grants/{}/approvals", s.grant),
        Some(&json!({ "signature": by_bob })),
    )?;
    assert_eq!(res.status, 201, "{}", res.body);
    assert_eq!(res.json()?["fingerprint"], s.bob.sha256_fingerprint()?);
    s.sync()?;
    s.assert_admitted("k approvals")?;

    // Both of the host's principals commands agree.
    for out in s.principals()? {
        assert!(out.success(), "{}: {}", out.command, out.stderr);
        assert_eq!(out.stdout, format!("{USER}\n"), "{}", out.command);
    }

    // The approvals are audited.
    let audit = s
        .fleet
        .plane
        .cli_json(&["audit", "list", "--filter", "grant.approve"])?;
    assert_eq!(audit.as_array().map(Vec::len), Some(2), "{audit:#}");
    Ok(())
}

#[test]
fn an_approval_by_a_non_approver_does_not_count() -> Result<()> {
    let mut s = setup(TEST_ACCOUNT)?;
    let file = s.bytes_file(s.grant)?;
    let by_stranger = sign(&s.stranger, &file)?;
    assert!(!ssh_keygen_verifies(
        &s.approvers,
        "stranger",
        &file,
        &by_stranger
    )?);
    // The control plane takes it (it does not know the hosts' approvers); hosts refuse it.
    s.approve_cli(s.grant, &sign(&s.alice, &file)?)?;
    s.approve_cli(s.grant, &by_stranger)?;
    s.sync()?;
    s.assert_refused(
        "alice and a stranger",
        "is by a key that is not an approver's",
    )
}

#[test]
fn a_second_approval_by_the_same_approver_does_not_count() -> Result<()> {
    let mut s = setup(TEST_ACCOUNT)?;
    let file = s.bytes_file(s.grant)?;
    let by_alice = sign(&s.alice, &file)?;
    s.approve_cli(s.grant, &by_alice)?;
    // The same key twice: the control plane refuses it.
    let res = s.fleet.plane.api(
        "POST",
        &format!("/api/v1/grants/{}/approvals", s.grant),
        Some(&json!({ "signature": by_alice })),
    )?;
    assert_eq!(res.status, 409, "{}", res.body);
    // Alice's other key: a second approval by alice, which the host counts once.
    s.approve_cli(s.grant, &sign(&s.alice2, &file)?)?;
    s.sync()?;
    s.assert_refused("alice with two keys", "is a second approval by alice")
}

#[test]
fn an_approval_over_other_bytes_does_not_count() -> Result<()> {
    let mut s = setup(TEST_ACCOUNT)?;
    let file = s.bytes_file(s.grant)?;
    s.approve_cli(s.grant, &sign(&s.alice, &file)?)?;
    // Bob signs the grant with a later expiry than it has.
    let other = s.fleet.keys.path().join("altered.approval");
    fs::write(
        &other,
        fs::read_to_string(&file)?.replace("not-after: never", "not-after: 4102444800"),
    )?;
    let by_bob = sign(&s.bob, &other)?;
    let res = s.fleet.plane.api(
        "POST",
        &format!("/api/v1/grants/{}/approvals", s.grant),
        Some(&json!({ "signature": by_bob })),
    )?;
    assert_eq!(res.status, 422, "{}", res.body);
    // Written into the database anyway.
    s.sql_with_revision(&format!(
        "INSERT INTO grant_approvals (grant_id, user_id, fingerprint, public_key, signature,
           actor, created_at, since_rev)
         SELECT id, user_id, {}, {}, {}, 'mallet', 0, (SELECT max(revision) FROM revisions)
         FROM grants WHERE id = {};",
        sql_text(&s.bob.sha256_fingerprint()?),
        sql_text(&s.bob.public_line()?),
        sql_text(&by_bob),
        s.grant
    ))?;
    s.assert_refused(
        "alice, and bob over other bytes",
        "does not match these bytes",
    )
}

#[test]
fn an_approval_of_another_grant_does_not_count() -> Result<()> {
    let mut s = setup(TEST_ACCOUNT)?;
    s.fleet.plane.cli(&["group", "add", "db"])?;
    let other = s
        .fleet
        .plane
        .cli_json(&["grant", "add", USER, TEST_ACCOUNT, "db"])?;
    let other = other["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("no id in {other}"))?;
    let file = s.bytes_file(s.grant)?;
    s.approve_cli(s.grant, &sign(&s.alice, &file)?)?;
    // Bob approves the other grant, properly.
    let by_bob = sign(&s.bob, &s.bytes_file(other)?)?;
    s.approve_cli(other, &by_bob)?;
    // Through the API, his approval of the other grant is refused for this one.
    let res = s.fleet.plane.api(
        "POST",
        &format!("/api/v1/grants/{}/approvals", s.grant),
        Some(&json!({ "signature": by_bob })),
    )?;
    assert_eq!(res.status, 422, "{}", res.body);
    // Moved in the database from the other grant to this one.
    s.sql_with_revision(&format!(
        "UPDATE grant_approvals SET grant_id = {}, since_rev = (SELECT max(revision) FROM revisions)
         WHERE grant_id = {other};",
        s.grant
    ))?;
    s.assert_refused(
        "alice, and bob for another grant",
        "does not match these bytes",
    )
}

#[test]
fn a_privileged_grant_written_into_the_database_is_refused() -> Result<()> {
    let mut s = setup(TEST_ACCOUNT)?;
    s.fleet
        .plane
        .cli(&["grant", "remove", &s.grant.to_string()])?;
    s.sync()?;
    s.assert_refused("no grant", "no grant for this account")?;
    s.sql_with_revision(&format!(
        "INSERT INTO grants (user_id, account, group_id, not_after, since_rev)
         VALUES ((SELECT id FROM users WHERE name = {}), {}, (SELECT id FROM host_groups WHERE name = {}),
                 NULL, (SELECT max(revision) FROM revisions));",
        sql_text(USER),
        sql_text(TEST_ACCOUNT),
        sql_text(GROUP)
    ))?;
    // The host has the grant (it says why it refuses it, not that there is none).
    s.assert_refused("a grant the control plane never made", "no approvals")
}

#[test]
fn unprivileged_accounts_need_no_approvals() -> Result<()> {
    let s = setup("root")?;
    s.assert_admitted("a grant to an account that is not privileged on this host")
}
