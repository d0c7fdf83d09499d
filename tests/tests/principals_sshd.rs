//! A real sshd whose `AuthorizedPrincipalsCommand` is `signoff-sshd principals` (and whose
//! `AuthorizedKeysCommand` is `signoff-sshd authorized-keys`), run as the unprivileged
//! `signoff` user from a root-owned install path, admits exactly the certificates and keys
//! the persisted host view grants, as the real `ssh` client sees it. The same commands of
//! `signoff-agent`, which stay part of the interface contract, are checked with sshd too.

use signoff_tests::now;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use signoff_agent::krl_writer::ensure_krl;
use signoff_agent::state::State;
use signoff_agent::state::writer::{STATE_FILE, write_state_file};
use signoff_proto::v1;
use signoff_tests::agent::{agent_binary, sshd_commands_binary};
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::principals::{HostDir, InstalledAgent, PrincipalsSshd, ensure_system_user};
use signoff_tests::sshd::Login;
use tempfile::TempDir;

/// The account logged in to; tests run as root, so sshd can log it in.
const ACCOUNT: &str = "root";
const LOG_WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    keys: TempDir,
    ca: KeyPair,
    user: KeyPair,
    host: HostDir,
    sshd: PrincipalsSshd,
    _agent: InstalledAgent,
}

impl Fixture {
    /// sshd running `signoff-sshd`, wired to a fresh state directory (no state yet, an
    /// empty KRL) whose agent config ends with `extra_config`.
    fn new(extra_config: &str) -> Result<Fixture> {
        Fixture::with_binary(sshd_commands_binary()?, extra_config)
    }

    /// As [`Fixture::new`], with sshd running the commands of `bin`.
    fn with_binary(bin: &Path, extra_config: &str) -> Result<Fixture> {
        ensure_system_user()?;
        let agent = InstalledAgent::install(bin)?;
        let host = HostDir::new(extra_config)?;
        ensure_krl(&host.krl(), now())?;
        let keys = tempfile::Builder::new()
            .prefix("principals-keys-")
            .tempdir()?;
        let ca = KeyPair::generate(keys.path(), "ca", KeyType::Ed25519)?;
        let user = KeyPair::generate(keys.path(), "user", KeyType::Ed25519)?;
        let sshd = PrincipalsSshd::start(agent.path(), &host.config(), &ca.public, &host.krl())?;
        Ok(Fixture {
            keys,
            ca,
            user,
            host,
            sshd,
            _agent: agent,
        })
    }

    /// A certificate for the user key with `key_id` and `principals` (comma-separated).
    fn cert(&self, name: &str, key_id: &str, principals: &str, serial: u64) -> Result<PathBuf> {
        keys::sign(&CertRequest {
            ca: self.ca.clone(),
            subject: self.user.clone(),
            out: self.keys.path().join(name),
            key_id: key_id.to_owned(),
            principals: principals.to_owned(),
            serial,
        })
    }

    /// Writes the host view only: the KRL stays as it is (as when it lags behind).
    fn write_state(&self, view: v1::HostView) -> Result<()> {
        write_state_file(
            &self.host.path().join(STATE_FILE),
            &State::from_snapshot(view)?,
            now(),
        )?;
        Ok(())
    }

    fn login(&self, cert: &Path) -> Result<Login> {
        self.sshd.login(ACCOUNT, &self.user.private, cert)
    }

    /// Logs in with the user's plain key, no certificate (`AuthorizedKeysCommand`).
    fn login_with_plain_key(&self) -> Result<Login> {
        self.sshd.login_with_plain_key(ACCOUNT, &self.user.private)
    }

    fn assert_admitted(&self, login: &Login, what: &str) {
        assert!(
            login.success,
            "{what}: expected the login to succeed, ssh exited {:?}: {}\nsshd log:\n{}",
            login.code,
            login.stderr,
            self.sshd.log()
        );
    }

    fn assert_refused(&self, login: &Login, what: &str) {
        assert!(
            !login.success && login.stderr.contains("Permission denied"),
            "{what}: expected `Permission denied`, ssh exited {:?}: {}\nsshd log:\n{}",
            login.code,
            login.stderr,
            self.sshd.log()
        );
    }
}

/// alice may log in to root with key ID alice@corp and principal `alice`.
fn alice_view(revocations: Option<v1::RevocationSet>) -> v1::HostView {
    v1::HostView {
        revision: 1,
        principals: vec![v1::PrincipalsEntry {
            account: ACCOUNT.into(),
            user: "alice".into(),
            key_ids: vec!["alice@corp".into()],
            principals: vec!["alice".into()],
            authorized_keys: vec![],
            not_after: 0,
            approvals: vec![],
        }],
        revocations,
        disabled_users: vec![],
        signoffs: vec![],
        trusted_user_ca_keys: vec![],
        ..Default::default()
    }
}

#[test]
fn granted_certificate_logs_in() -> Result<()> {
    let f = Fixture::new("")?;
    f.write_state(alice_view(None))?;
    let cert = f.cert("alice", "alice@corp", "alice", 1)?;
    let login = f.login(&cert)?;
    f.assert_admitted(&login, "alice with a grant");
    Ok(())
}

#[test]
fn certificate_without_grant_is_refused() -> Result<()> {
    let f = Fixture::new("")?;
    f.write_state(alice_view(None))?;
    // Right principal, wrong key ID: the view grants nothing to bob@corp.
    let cert = f.cert("bob", "bob@corp", "alice", 2)?;
    let login = f.login(&cert)?;
    f.assert_refused(&login, "bob without a grant");
    f.sshd
        .wait_for_log("key ID \"bob@corp\", serial 2: denied: no grant", LOG_WAIT)?;
    Ok(())
}

#[test]
fn revoked_key_id_is_refused_even_when_the_krl_lags() -> Result<()> {
    let f = Fixture::new("")?;
    let cert = f.cert("alice", "alice@corp", "alice", 3)?;
    f.write_state(alice_view(None))?;
    f.assert_admitted(&f.login(&cert)?, "before the revocation");

    // Revoke alice@corp for any CA in the view; the KRL on disk stays empty.
    f.write_state(alice_view(Some(v1::RevocationSet {
        certificates: vec![v1::CaRevocations {
            ca_key: vec![],
            serials: vec![],
            key_ids: vec!["alice@corp".into()],
        }],
        keys: vec![],
        sha256: vec![],
    })))?;
    let login = f.login(&cert)?;
    f.assert_refused(&login, "alice after her key ID was revoked");
    f.sshd.wait_for_log(
        "denied: revoked: the key ID is revoked for every CA",
        LOG_WAIT,
    )?;
    Ok(())
}

#[test]
fn corrupt_state_is_refused_and_the_reason_logged() -> Result<()> {
    let f = Fixture::new("")?;
    let cert = f.cert("alice", "alice@corp", "alice", 4)?;
    f.write_state(alice_view(None))?;
    f.assert_admitted(&f.login(&cert)?, "before the corruption");

    let path = f.host.path().join(STATE_FILE);
    let mut bytes = fs::read(&path)?;
    // A bit of the revision number in the header.
    bytes[24] ^= 0x01;
    fs::write(&path, bytes)?;
    let login = f.login(&cert)?;
    f.assert_refused(&login, "alice with a corrupt state");
    f.sshd
        .wait_for_log("denied: state corrupt or unreadable: ", LOG_WAIT)?;
    f.sshd.wait_for_log("header checksum mismatch", LOG_WAIT)?;
    Ok(())
}

#[test]
fn break_glass_principal_logs_in_without_any_state() -> Result<()> {
    let f = Fixture::new(
        "mode = \"strict\"\n[[break_glass]]\naccount = \"root\"\nprincipals = [\"emergency\"]",
    )?;
    let cert = f.cert("emergency", "oncall@corp", "emergency", 5)?;
    let login = f.login(&cert)?;
    f.assert_admitted(&login, "break-glass with no state");
    f.sshd.wait_for_log("BREAK-GLASS", LOG_WAIT)?;

    // Only the break-glass principal: alice's certificate is refused.
    let cert = f.cert("alice", "alice@corp", "alice", 6)?;
    f.assert_refused(&f.login(&cert)?, "alice with no state");
    Ok(())
}

/// alice's grant for root holding her plain key `key_line` as an authorized key.
fn alice_key_view(key_line: String, revocations: Option<v1::RevocationSet>) -> v1::HostView {
    let mut view = alice_view(revocations);
    view.principals[0].authorized_keys = vec![key_line];
    view
}

#[test]
fn granted_plain_key_logs_in_through_authorized_keys() -> Result<()> {
    let f = Fixture::new("")?;
    f.write_state(alice_key_view(f.user.public_line()?, None))?;
    let login = f.login_with_plain_key()?;
    f.assert_admitted(&login, "alice's plain key with a grant");
    Ok(())
}

#[test]
fn plain_key_without_grant_is_refused() -> Result<()> {
    let f = Fixture::new("")?;
    // A grant for root, but holding another key.
    let other = KeyPair::generate(f.keys.path(), "other", KeyType::Ed25519)?;
    f.write_state(alice_key_view(other.public_line()?, None))?;
    let login = f.login_with_plain_key()?;
    f.assert_refused(&login, "a plain key no grant holds");
    Ok(())
}

#[test]
fn revoked_plain_key_is_refused_even_when_the_krl_lags() -> Result<()> {
    let f = Fixture::new("")?;
    let line = f.user.public_line()?;
    f.write_state(alice_key_view(line.clone(), None))?;
    f.assert_admitted(&f.login_with_plain_key()?, "before the revocation");

    let blob = base64::engine::general_purpose::STANDARD.decode(
        line.split_ascii_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("no key in {line:?}"))?,
    )?;
    f.write_state(alice_key_view(
        line,
        Some(v1::RevocationSet {
            certificates: vec![],
            keys: vec![blob],
            sha256: vec![],
        }),
    ))?;
    let login = f.login_with_plain_key()?;
    f.assert_refused(&login, "alice's plain key after its revocation");
    f.sshd.wait_for_log(
        "authorized keys for account \"root\": denied: the matching grants hold nothing",
        LOG_WAIT,
    )?;
    Ok(())
}

/// `signoff-agent principals` is still what the interface contract names: sshd running it
/// admits a granted certificate and refuses one without a grant, as with `signoff-sshd`.
#[test]
fn signoff_agent_principals_still_answers_sshd() -> Result<()> {
    let f = Fixture::with_binary(agent_binary()?, "")?;
    f.write_state(alice_view(None))?;
    let cert = f.cert("alice", "alice@corp", "alice", 7)?;
    f.assert_admitted(&f.login(&cert)?, "alice with a grant, via signoff-agent");
    let cert = f.cert("bob", "bob@corp", "alice", 8)?;
    f.assert_refused(&f.login(&cert)?, "bob without a grant, via signoff-agent");
    f.sshd
        .wait_for_log("key ID \"bob@corp\", serial 8: denied: no grant", LOG_WAIT)?;
    Ok(())
}
