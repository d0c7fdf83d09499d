//! `signoff-agent krl check` on a KRL that cannot be loaded: it exits 2 (not 0 "ok", not
//! 1 "revoked"), prints no verdict, and says which file is wrong and at which byte — the
//! same byte the library's decoder reports. Each file here is one that OpenSSH refuses too.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use signoff_proto::krl::Krl;
use signoff_tests::agent::agent_command;
use signoff_tests::command::{Finished, run};
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::krl::{CaArg, Check, agent_build, ssh_keygen_check};
use tempfile::TempDir;

struct Fixture {
    dir: TempDir,
    user: KeyPair,
    cert: PathBuf,
    krl: Vec<u8>,
}

/// A valid KRL with a certificates section (serials and a key ID) and a key section, and
/// a key and a certificate to check against it.
fn fixture() -> Result<Fixture> {
    let dir = tempfile::Builder::new()
        .prefix("krl-malformed-")
        .tempdir()?;
    let ca = KeyPair::generate(dir.path(), "ca", KeyType::Ed25519)?;
    let user = KeyPair::generate(dir.path(), "user", KeyType::Ed25519)?;
    let other = KeyPair::generate(dir.path(), "other", KeyType::Ed25519)?;
    let cert = keys::sign(&CertRequest {
        ca: ca.clone(),
        subject: user.clone(),
        out: dir.path().join("cert"),
        key_id: "alice".to_owned(),
        principals: "root".to_owned(),
        serial: 42,
    })?;
    let spec = dir.path().join("spec.txt");
    fs::write(
        &spec,
        format!(
            "serial: 7\nserial: 100-200\nid: mallory\nkey: {}\n",
            other.public_line()?
        ),
    )?;
    let krl_path = dir.path().join("valid.krl");
    agent_build(&krl_path, CaArg::Key(&ca.public), &[spec])?;
    let krl = fs::read(&krl_path)?;
    Ok(Fixture {
        dir,
        user,
        cert,
        krl,
    })
}

impl Fixture {
    fn keys(&self) -> Vec<PathBuf> {
        vec![self.user.public.clone(), self.cert.clone()]
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes)?;
        Ok(path)
    }
}

fn krl_check(krl: &Path, keys: &[PathBuf]) -> Result<Finished> {
    let mut cmd = agent_command()?;
    cmd.args(["krl", "check", "-f"]).arg(krl).args(keys);
    run(&mut cmd)
}

/// Asserts that OpenSSH refuses `path` (so the test input really is malformed), that
/// `krl check` refuses it with exit 2, no verdicts, the file name and the byte offset the
/// library's decoder reports.
fn assert_refused_at_decoder_offset(f: &Fixture, path: &Path) -> Result<()> {
    let keys = f.keys();
    if let Check::Loaded(v) = ssh_keygen_check(path, &keys)? {
        bail!(
            "ssh-keygen -Q loads {}, so it is not malformed: {v:?}",
            path.display()
        );
    }
    let bytes = fs::read(path)?;
    let offset = match Krl::decode(&bytes) {
        Ok(_) => bail!(
            "Krl::decode accepts {} although ssh-keygen refuses it",
            path.display()
        ),
        Err(e) => e.offset,
    };
    let out = krl_check(path, &keys)?;
    assert_eq!(
        out.code(),
        Some(2),
        "krl check on a malformed KRL must exit 2 (0 means ok, 1 revoked): {out:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "krl check printed verdicts for a KRL it cannot load:\n{}",
        out.stdout
    );
    let file = path.display().to_string();
    assert!(
        out.stderr.contains(&file),
        "the message should name {file}:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("byte {offset}")),
        "the message should give the offset, byte {offset}:\n{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn garbage_is_refused_at_byte_0() -> Result<()> {
    let f = fixture()?;
    let path = f.write("garbage.krl", b"this is not a KRL at all\n")?;
    assert_refused_at_decoder_offset(&f, &path)?;
    let out = krl_check(&path, &f.keys())?;
    assert!(out.stderr.contains("byte 0"), "{}", out.stderr);
    Ok(())
}

#[test]
fn an_empty_file_is_refused() -> Result<()> {
    let f = fixture()?;
    let path = f.write("empty.krl", b"")?;
    assert_refused_at_decoder_offset(&f, &path)
}

#[test]
fn a_krl_cut_inside_the_magic_is_refused() -> Result<()> {
    let f = fixture()?;
    let path = f.write("cut-magic.krl", &f.krl[..5])?;
    assert_refused_at_decoder_offset(&f, &path)
}

#[test]
fn a_krl_cut_inside_the_header_is_refused() -> Result<()> {
    let f = fixture()?;
    let path = f.write("cut-header.krl", &f.krl[..20])?;
    assert_refused_at_decoder_offset(&f, &path)
}

#[test]
fn a_krl_missing_its_last_byte_is_refused() -> Result<()> {
    let f = fixture()?;
    let path = f.write("cut-last.krl", &f.krl[..f.krl.len() - 1])?;
    assert_refused_at_decoder_offset(&f, &path)?;
    // The problem is in the last section, not at the start of the file.
    let out = krl_check(&path, &f.keys())?;
    assert!(!out.stderr.contains("byte 0:"), "{}", out.stderr);
    Ok(())
}

#[test]
fn a_krl_cut_in_the_middle_is_refused() -> Result<()> {
    let f = fixture()?;
    // The first cut point past the header that OpenSSH refuses (a cut at a section
    // boundary is a valid, shorter KRL).
    for len in (f.krl.len() / 2)..f.krl.len() {
        let path = f.write(&format!("cut-{len}.krl"), &f.krl[..len])?;
        if let Check::Refused(_) = ssh_keygen_check(&path, &f.keys())? {
            return assert_refused_at_decoder_offset(&f, &path);
        }
    }
    bail!("no cut point in the second half of the KRL is refused by ssh-keygen")
}

#[test]
fn trailing_garbage_after_a_valid_krl_is_refused() -> Result<()> {
    let f = fixture()?;
    let mut bytes = f.krl.clone();
    bytes.extend_from_slice(b"\x01\x00\x00");
    let path = f.write("trailing.krl", &bytes)?;
    assert_refused_at_decoder_offset(&f, &path)
}

#[test]
fn a_valid_krl_is_not_refused() -> Result<()> {
    // The counterpart of the tests above: the untouched KRL loads and gives verdicts.
    let f = fixture()?;
    let path = f.write("valid-copy.krl", &f.krl)?;
    let out = krl_check(&path, &f.keys())?;
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    Ok(())
}

#[test]
fn a_missing_krl_file_is_named() -> Result<()> {
    let f = fixture()?;
    let path = f.dir.path().join("does-not-exist.krl");
    let out = krl_check(&path, &f.keys())?;
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "the message should name the missing file:\n{}",
        out.stderr
    );
    Ok(())
}
