//! Approvals against the real `ssh-keygen -Y`: what an approver signs with `ssh-keygen -Y
//! sign`, the host's tally accepts, and the two agree on refusals — including signatures
//! by a FIDO2 security key (`sk-ssh-ed25519@openssh.com`). ssh-keygen cannot make an `sk-`
//! key without an authenticator ("Key enrollment failed: device not found"), so this test
//! signs as one would: an Ed25519 signature over SHA-256(application) ‖ flags ‖ counter ‖
//! SHA-256(SSHSIG signed data), as OpenSSH's `PROTOCOL.u2f` describes.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use ed25519_dalek::Signer as _;
use signoff_proto::approvals::{GrantApproval, NAMESPACE, Refusal, parse_allowed_signers, tally};
use ssh_key::public::{Ed25519PublicKey, KeyData, SkEd25519};
use ssh_key::sha2::{Digest as _, Sha256};
use ssh_key::{Algorithm, HashAlg, LineEnding, PublicKey, Signature, SshSig};

fn bytes() -> Vec<u8> {
    GrantApproval {
        grant_id: 7,
        person: "alice",
        account: "root",
        host_group: "web",
        not_after: 0,
    }
    .canonical_bytes()
    .unwrap()
}

/// A security key's SSHSIG over `message`, with authenticator `flags`.
fn sk_sign(seed: u8, message: &[u8], flags: u8) -> (String, String) {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let application = "ssh:";
    let key = KeyData::SkEd25519(SkEd25519::new(
        Ed25519PublicKey(sk.verifying_key().to_bytes()),
        application,
    ));
    let counter: u32 = 42;
    let signed = SshSig::signed_data(NAMESPACE, HashAlg::Sha512, message).unwrap();
    let mut authenticated = Vec::new();
    authenticated.extend(Sha256::digest(application));
    authenticated.push(flags);
    authenticated.extend(counter.to_be_bytes());
    authenticated.extend(Sha256::digest(&signed));
    let mut data = sk.sign(&authenticated).to_bytes().to_vec();
    data.push(flags);
    data.extend(counter.to_be_bytes());
    let signature = Signature::new(Algorithm::SkEd25519, data).unwrap();
    let pem = SshSig::new(key.clone(), NAMESPACE, HashAlg::Sha512, signature)
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap();
    (pem, PublicKey::from(key).to_openssh().unwrap())
}

/// `ssh-keygen -Y verify -n signoff-approval -I alice -f APPROVERS -s SIG < MESSAGE`.
fn ssh_keygen_verifies(dir: &Path, approvers: &str, message: &[u8], sig: &str) -> bool {
    fs::write(dir.join("approvers"), approvers).unwrap();
    fs::write(dir.join("m.sig"), sig).unwrap();
    fs::write(dir.join("m"), message).unwrap();
    Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", NAMESPACE, "-I", "alice", "-f"])
        .arg(dir.join("approvers"))
        .arg("-s")
        .arg(dir.join("m.sig"))
        .stdin(fs::File::open(dir.join("m")).unwrap())
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_security_key_approval_verifies_with_ssh_keygen_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (sig, public) = sk_sign(1, &bytes(), 0x01);
    let approvers = format!("alice {public}\n");
    assert!(ssh_keygen_verifies(dir.path(), &approvers, &bytes(), &sig));
    let t = tally(
        &bytes(),
        &[sig],
        &parse_allowed_signers(&approvers).unwrap(),
    );
    assert_eq!(t.count(), 1, "{:?}", t.refused);
}

#[test]
fn a_security_key_approval_over_other_bytes_is_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let (sig, public) = sk_sign(1, b"other bytes", 0x01);
    let approvers = format!("alice {public}\n");
    assert!(!ssh_keygen_verifies(dir.path(), &approvers, &bytes(), &sig));
    let t = tally(
        &bytes(),
        &[sig],
        &parse_allowed_signers(&approvers).unwrap(),
    );
    assert_eq!(t.refused, vec![Refusal::OtherBytes(0)]);
}

/// The one place the host is stricter than `ssh-keygen -Y verify` (OpenSSH 9.2 accepts a
/// security-key signature whose user-presence flag is clear): an approval must be a
/// person's act, so one made without touching the key does not count.
#[test]
fn a_security_key_approval_without_a_touch_does_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let (sig, public) = sk_sign(1, &bytes(), 0x00);
    let approvers = format!("alice {public}\n");
    assert!(
        ssh_keygen_verifies(dir.path(), &approvers, &bytes(), &sig),
        "ssh-keygen -Y verify accepted such a signature when this test was written"
    );
    let t = tally(
        &bytes(),
        &[sig],
        &parse_allowed_signers(&approvers).unwrap(),
    );
    assert_eq!(t.refused, vec![Refusal::NoUserPresence(0)]);
}

#[test]
fn an_ssh_keygen_approval_counts_and_one_for_another_namespace_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("alice");
    let keygen = |args: &[&str]| {
        let out = Command::new("ssh-keygen").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    keygen(&[
        "-t",
        "ed25519",
        "-N",
        "",
        "-q",
        "-C",
        "alice",
        "-f",
        key.to_str().unwrap(),
    ]);
    let file = dir.path().join("grant-7.approval");
    fs::write(&file, bytes()).unwrap();
    let public = fs::read_to_string(dir.path().join("alice.pub")).unwrap();
    let approvers = parse_allowed_signers(&format!("alice {public}")).unwrap();
    for (namespace, counts) in [(NAMESPACE, true), ("signoff-order", false)] {
        let _ = fs::remove_file(dir.path().join("grant-7.approval.sig"));
        keygen(&[
            "-Y",
            "sign",
            "-n",
            namespace,
            "-f",
            key.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        let sig = fs::read_to_string(dir.path().join("grant-7.approval.sig")).unwrap();
        assert_eq!(
            tally(&bytes(), &[sig], &approvers).count() == 1,
            counts,
            "{namespace}"
        );
    }
}
