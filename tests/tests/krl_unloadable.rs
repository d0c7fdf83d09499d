//! Revocation sets for which `ssh-keygen -k` writes a KRL that OpenSSH itself cannot load
//! (its greedy encoder emits a serial bitmap over the parser's 2048-byte limit; sshd then
//! refuses every key), while `signoff-agent krl build` writes one that loads and revokes
//! exactly the listed serials.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use anyhow::Result;
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::krl::{
    CaArg, Check, Verdict, agent_build, agent_check, ssh_keygen_build, ssh_keygen_check,
};

/// Serials 1, 11, 21, …, 199,991: one in ten over a span far wider than a bitmap may be.
const FIRST: u64 = 1;
const STEP: u64 = 10;
const LAST: u64 = 199_991;

fn revoked(serial: u64) -> bool {
    (FIRST..=LAST).contains(&serial) && (serial - FIRST).is_multiple_of(STEP)
}

#[test]
fn every_tenth_serial_up_to_200k_loads_ours_but_not_ssh_keygens() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("krl-unloadable-")
        .tempdir()?;
    let ca = KeyPair::generate(dir.path(), "ca", KeyType::Ed25519)?;
    let other_ca = KeyPair::generate(dir.path(), "other-ca", KeyType::Ed25519)?;
    let user = KeyPair::generate(dir.path(), "user", KeyType::Ed25519)?;

    let mut spec = String::new();
    for serial in (FIRST..=LAST).step_by(STEP as usize) {
        let _ = writeln!(spec, "serial: {serial}");
    }
    let spec_path = dir.path().join("spec.txt");
    fs::write(&spec_path, spec)?;
    let specs = [spec_path];
    let ours = dir.path().join("ours.krl");
    let theirs = dir.path().join("theirs.krl");
    ssh_keygen_build(&theirs, CaArg::Key(&ca.public), &specs)?;
    agent_build(&ours, CaArg::Key(&ca.public), &specs)?;

    // Boundary serials (first, last, and their neighbours), both sides of a step, the
    // middle, serial 0 and the top of the serial space; and one revoked serial signed by
    // another CA.
    let serials = [
        0,
        FIRST,
        FIRST + 1,
        FIRST + STEP - 1,
        FIRST + STEP,
        FIRST + STEP + 1,
        100_000,
        100_001,
        LAST - STEP,
        LAST - 1,
        LAST,
        LAST + 1,
        LAST + STEP,
        u64::MAX,
    ];
    let mut requests: Vec<CertRequest> = serials
        .iter()
        .map(|&serial| CertRequest {
            ca: ca.clone(),
            subject: user.clone(),
            out: dir.path().join(format!("serial-{serial}")),
            key_id: "alice".to_owned(),
            principals: "root".to_owned(),
            serial,
        })
        .collect();
    requests.push(CertRequest {
        ca: other_ca.clone(),
        subject: user.clone(),
        out: dir.path().join("other-ca-serial-11"),
        key_id: "alice".to_owned(),
        principals: "root".to_owned(),
        serial: 11,
    });
    let certs: Vec<PathBuf> = keys::sign_all(&requests)?;
    let expected: Vec<Verdict> = requests
        .iter()
        .map(|r| {
            if r.ca.public == ca.public && revoked(r.serial) {
                Verdict::Revoked
            } else {
                Verdict::Ok
            }
        })
        .collect();

    // ssh-keygen's own KRL: OpenSSH refuses to load it, and so does our decoder.
    match ssh_keygen_check(&theirs, &certs)? {
        Check::Refused(out) => assert!(
            out.stderr.contains("Invalid KRL"),
            "ssh-keygen should say why it refuses its own KRL: {}",
            out.stderr
        ),
        Check::Loaded(_) => panic!(
            "ssh-keygen loaded its own KRL for this set: the set no longer shows the \
             oversized bitmap this test is about"
        ),
    }
    match agent_check(&theirs, &certs)? {
        Check::Refused(out) => assert!(
            out.stderr.contains(&theirs.display().to_string()),
            "krl check should name the file it refuses: {}",
            out.stderr
        ),
        Check::Loaded(v) => panic!(
            "krl check loaded a KRL that OpenSSH refuses (sshd would refuse every key): {v:?}"
        ),
    }

    // Ours: OpenSSH loads it and gives the right verdict for every certificate.
    let by_openssh = ssh_keygen_check(&ours, &certs)?.verdicts()?;
    let by_agent = agent_check(&ours, &certs)?.verdicts()?;
    for (i, r) in requests.iter().enumerate() {
        let ca_name = if r.ca.public == ca.public {
            "ca"
        } else {
            "other-ca"
        };
        assert_eq!(
            by_openssh[i], expected[i],
            "ssh-keygen -Q on our KRL, serial {} by {ca_name}",
            r.serial
        );
        assert_eq!(
            by_agent[i], expected[i],
            "krl check on our KRL, serial {} by {ca_name}",
            r.serial
        );
    }
    let (ours_len, theirs_len) = (fs::metadata(&ours)?.len(), fs::metadata(&theirs)?.len());
    eprintln!(
        "every tenth serial: OURS {ours_len} bytes (loads), THEIRS {theirs_len} bytes (does not)"
    );
    Ok(())
}
