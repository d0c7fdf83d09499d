//! A real sshd whose `RevokedKeys` is a KRL written by `signoff-agent krl build` refuses
//! revoked certificates and admits the others, as the real `ssh` client sees it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::krl::{CaArg, agent_build};
use signoff_tests::sshd::{Login, Sshd, SshdConfig};
use tempfile::TempDir;

/// The account the certificates are for; tests run as root, so sshd can log it in.
const USER: &str = "root";
/// sshd's log line for a key refused by `RevokedKeys`.
const REVOKED_LOG: &str = "revoked by file";

struct Fixture {
    dir: TempDir,
    ca: KeyPair,
    user: KeyPair,
    krl: PathBuf,
}

impl Fixture {
    fn new() -> Result<Fixture> {
        let dir = tempfile::Builder::new().prefix("krl-sshd-").tempdir()?;
        let ca = KeyPair::generate(dir.path(), "ca", KeyType::Ed25519)?;
        let user = KeyPair::generate(dir.path(), "user", KeyType::Ed25519)?;
        let krl = dir.path().join("revoked.krl");
        Ok(Fixture { dir, ca, user, krl })
    }

    /// A certificate for the user key, for principal root.
    fn cert(&self, name: &str, key_id: &str, serial: u64) -> Result<PathBuf> {
        keys::sign(&CertRequest {
            ca: self.ca.clone(),
            subject: self.user.clone(),
            out: self.dir.path().join(name),
            key_id: key_id.to_owned(),
            principals: USER.to_owned(),
            serial,
        })
    }

    /// `signoff-agent krl build -f revoked.krl -s ca.pub SPEC` with `spec` as the spec file.
    fn build_krl(&self, spec: &str) -> Result<()> {
        let path = self.dir.path().join("spec.txt");
        fs::write(&path, spec)?;
        agent_build(&self.krl, CaArg::Key(&self.ca.public), &[path])?;
        Ok(())
    }

    fn sshd(&self) -> Result<Sshd> {
        Sshd::start(&SshdConfig {
            trusted_user_ca_keys: self.ca.public.clone(),
            revoked_keys: self.krl.clone(),
        })
    }

    fn login(&self, sshd: &Sshd, cert: &Path) -> Result<Login> {
        sshd.login(USER, &self.user.private, cert)
    }
}

fn assert_admitted(sshd: &Sshd, login: &Login, what: &str) {
    assert!(
        login.success,
        "{what}: expected the login to succeed, ssh exited {:?}: {}\nsshd log:\n{}",
        login.code,
        login.stderr,
        sshd.log()
    );
}

fn assert_refused_as_revoked(sshd: &Sshd, login: &Login, what: &str) -> Result<()> {
    assert!(
        !login.success && login.stderr.contains("Permission denied"),
        "{what}: expected `Permission denied`, ssh exited {:?}: {}\nsshd log:\n{}",
        login.code,
        login.stderr,
        sshd.log()
    );
    sshd.wait_for_log(REVOKED_LOG, Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn sshd_refuses_a_certificate_whose_serial_is_revoked() -> Result<()> {
    let f = Fixture::new()?;
    let revoked = f.cert("serial-1000", "alice", 1000)?;
    let neighbour = f.cert("serial-1001", "alice", 1001)?;
    f.build_krl("serial: 1000\n")?;
    let sshd = f.sshd()?;

    assert_refused_as_revoked(&sshd, &f.login(&sshd, &revoked)?, "serial 1000")?;
    assert_admitted(&sshd, &f.login(&sshd, &neighbour)?, "serial 1001");
    Ok(())
}

#[test]
fn sshd_refuses_a_certificate_whose_key_id_is_revoked() -> Result<()> {
    let f = Fixture::new()?;
    let revoked = f.cert("mallory", "mallory@example.com", 7)?;
    let other = f.cert("alice", "alice@example.com", 7)?;
    f.build_krl("id: mallory@example.com\n")?;
    let sshd = f.sshd()?;

    assert_refused_as_revoked(&sshd, &f.login(&sshd, &revoked)?, "key ID mallory")?;
    assert_admitted(&sshd, &f.login(&sshd, &other)?, "key ID alice, same serial");
    Ok(())
}

#[test]
fn a_rebuilt_krl_takes_effect_on_the_next_login_without_restarting_sshd() -> Result<()> {
    let f = Fixture::new()?;
    let five = f.cert("serial-5", "bob", 5)?;
    let six = f.cert("serial-6", "bob", 6)?;
    f.build_krl("serial: 5\n")?;
    let sshd = f.sshd()?;
    assert_refused_as_revoked(
        &sshd,
        &f.login(&sshd, &five)?,
        "serial 5 before the rebuild",
    )?;
    assert_admitted(&sshd, &f.login(&sshd, &six)?, "serial 6 before the rebuild");

    f.build_krl("serial: 6\n")?;
    assert_admitted(&sshd, &f.login(&sshd, &five)?, "serial 5 after the rebuild");
    let login = f.login(&sshd, &six)?;
    assert!(
        !login.success && login.stderr.contains("Permission denied"),
        "serial 6 after the rebuild: expected `Permission denied`, ssh exited {:?}: {}\n\
         sshd log:\n{}",
        login.code,
        login.stderr,
        sshd.log()
    );
    // Two refusals by RevokedKeys in the log, the second after the rebuild: sshd read the
    // new file, it did not merely fail for another reason.
    sshd.wait_for_log_count(REVOKED_LOG, 2, Duration::from_secs(10))?;
    Ok(())
}
