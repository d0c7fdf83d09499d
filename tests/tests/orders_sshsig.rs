//! Signed orders against the real `ssh-keygen -Y`: what the control plane signs, OpenSSH
//! verifies, and what OpenSSH signs in our namespace, we verify.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::process::{Command, Stdio};

use signoff_proto::orders::{self, KillOrder, NAMESPACE};
use ssh_key::PrivateKey;

fn order() -> KillOrder {
    KillOrder {
        host_id: "web1".into(),
        session_id: "4242:123456".into(),
        reason: "laptop stolen".into(),
        operator: "operator:alice".into(),
        not_before: 1_800_000_000,
        not_after: 1_800_000_300,
        nonce: *b"0123456789abcdef",
    }
}

/// Runs `ssh-keygen -Y verify` on `message` and `signature`; returns (success, output).
fn ssh_keygen_verify(
    dir: &std::path::Path,
    allowed: &str,
    message: &[u8],
    signature: &str,
) -> (bool, String) {
    fs::write(dir.join("allowed_signers"), allowed).unwrap();
    fs::write(dir.join("order.sig"), signature).unwrap();
    fs::write(dir.join("order.bin"), message).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(dir.join("allowed_signers"))
        .args(["-I", "signoff", "-n", NAMESPACE, "-s"])
        .arg(dir.join("order.sig"))
        .stdin(fs::File::open(dir.join("order.bin")).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("ssh-keygen (package openssh-client) must be installed");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn signer() -> PrivateKey {
    PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]))
}

fn allowed(key: &PrivateKey) -> String {
    format!("signoff {}\n", key.public_key().to_openssh().unwrap())
}

#[test]
fn a_stored_order_verifies_with_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let bytes = order().encode().unwrap();
    let sig = orders::sign(&key, &bytes).unwrap();
    let (ok, out) = ssh_keygen_verify(dir.path(), &allowed(&key), &bytes, &sig);
    assert!(ok, "{out}");
    assert!(
        out.contains("Good \"signoff-order\" signature for signoff"),
        "{out}"
    );
}

#[test]
fn ssh_keygen_refuses_a_forged_order() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let sig = orders::sign(&key, &order().encode().unwrap()).unwrap();
    let mut forged = order();
    forged.host_id = "db1".into();
    let (ok, out) = ssh_keygen_verify(dir.path(), &allowed(&key), &forged.encode().unwrap(), &sig);
    assert!(!ok, "{out}");
}

#[test]
fn ssh_keygen_refuses_a_signer_not_in_allowed_signers() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = order().encode().unwrap();
    let sig = orders::sign(&signer(), &bytes).unwrap();
    let other = PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]));
    let (ok, out) = ssh_keygen_verify(dir.path(), &allowed(&other), &bytes, &sig);
    assert!(!ok, "{out}");
}

#[test]
fn we_verify_what_ssh_keygen_signs_in_our_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("signer");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key_path)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = order().encode().unwrap();
    fs::write(dir.path().join("order.bin"), &bytes).unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", NAMESPACE, "-f"])
        .arg(&key_path)
        .arg(dir.path().join("order.bin"))
        .status()
        .unwrap();
    assert!(status.success());
    let sig = fs::read_to_string(dir.path().join("order.bin.sig")).unwrap();
    let public = ssh_key::PublicKey::read_openssh_file(&key_path.with_extension("pub")).unwrap();
    assert!(orders::verify(&bytes, &sig, std::slice::from_ref(&public)).is_ok());
    assert!(orders::verify(&bytes[1..], &sig, &[public]).is_err());
}

/// For each shape of `allowed_signers` line, whether the agent's reader lets its key sign
/// orders agrees with `ssh-keygen -Y verify` in our namespace, except where it is stricter
/// on purpose (options it does not apply: it trusts less, never more).
#[test]
fn the_signers_file_trusts_no_line_ssh_keygen_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let pk = key.public_key().to_openssh().unwrap();
    let bytes = order().encode().unwrap();
    let sig = orders::sign(&key, &bytes).unwrap();
    // (line, ssh-keygen accepts, we trust)
    let cases = [
        (format!("signoff {pk}"), true, true),
        (
            format!("signoff namespaces=\"{NAMESPACE}\" {pk}"),
            true,
            true,
        ),
        (
            format!("signoff namespaces=\"git,{NAMESPACE}\" {pk} a comment"),
            true,
            true,
        ),
        (format!("signoff namespaces=\"git\" {pk}"), false, false),
        (
            format!("signoff namespaces=\"signoff-approval\" {pk}"),
            false,
            false,
        ),
        (format!("signoff cert-authority {pk}"), false, false),
        (
            format!("signoff valid-before=\"19990101\" {pk}"),
            false,
            false,
        ),
        // Accepted by ssh-keygen (valid since 2001); not applied by our reader, so not
        // trusted: failing closed.
        (
            format!("signoff valid-after=\"20010101\" {pk}"),
            true,
            false,
        ),
    ];
    for (line, keygen_accepts, we_trust) in cases {
        let (ok, out) = ssh_keygen_verify(dir.path(), &format!("{line}\n"), &bytes, &sig);
        assert_eq!(ok, keygen_accepts, "ssh-keygen on {line:?}: {out}");
        let trusted = signoff_proto::allowed_signers::parse(&format!("{line}\n"), NAMESPACE)
            .map(|signers| {
                signers
                    .iter()
                    .any(|s| s.key.key_data() == key.public_key().key_data())
            })
            .unwrap_or(false);
        assert_eq!(trusted, we_trust, "our reader on {line:?}");
        assert!(
            !trusted || keygen_accepts,
            "we trust what ssh-keygen refuses: {line:?}"
        );
    }
}
