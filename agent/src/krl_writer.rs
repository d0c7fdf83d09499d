//! The KRL that sshd reads through `RevokedKeys`, built from the host view's revocation set.
//!
//! sshd refuses every key when that file is missing or does not parse, so: it is always
//! replaced atomically; [`ensure_krl`] puts an empty valid KRL in place before sshd is ever
//! pointed at it; and a revocation that OpenSSH could not parse (a key blob that is not a
//! key) is left out of the KRL rather than allowed to make the whole file unloadable. The
//! principals command checks the full revocation set itself, so nothing left out of the KRL
//! is let through on certificate logins.

use std::fs;
use std::io;
use std::path::Path;

use signoff_proto::krl::{CaScope, Krl, KrlBuilder, SerialRange};

use crate::atomic::{AtomicWriteError, write_atomic};
use crate::state::Revocations;
use crate::state::writer::FILE_MODE;

/// Writing the KRL failed; the previous file is still in place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KrlWriteError {
    /// The atomic replacement failed.
    #[error("cannot write the KRL")]
    Write(#[source] AtomicWriteError),
}

/// A revocation that could not go into the KRL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Skipped {
    /// A CA key blob that is not a public key: its serials and key IDs are left out.
    UnparsableCaKey,
    /// A key ID with a NUL byte (OpenSSH can never match one).
    KeyIdWithNul,
    /// A serial range that holds no serial OpenSSH can match (empty, or only serial 0).
    EmptySerialRange {
        /// First serial.
        lo: u64,
        /// Last serial.
        hi: u64,
    },
    /// A revoked SHA-256 that is not 32 bytes long.
    BadSha256Length(usize),
}

/// What went into a KRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrlReport {
    /// Size of the file written.
    pub bytes: u64,
    /// Revocations left out, and why.
    pub skipped: Vec<Skipped>,
}

/// Builds the KRL of a revocation set: `version` is the state revision, `generated_at`
/// the time (Unix seconds). Plain keys that do not parse are revoked by their SHA-256.
pub fn build_krl(
    revocations: &Revocations,
    version: u64,
    generated_at: u64,
) -> (Krl, Vec<Skipped>) {
    let mut builder = KrlBuilder::new();
    builder.version(version).generated_date(generated_at);
    let mut skipped = Vec::new();
    for (ca, certs) in &revocations.certificates {
        let Ok(scope) = CaScope::from_blob(ca) else {
            skipped.push(Skipped::UnparsableCaKey);
            continue;
        };
        // Serial 0 is never matched by serial; a range starting at 0 is invalid in a KRL.
        let mut ranges = Vec::with_capacity(certs.serials.len());
        for &(lo, hi) in &certs.serials {
            if lo.max(1) <= hi {
                ranges.push(SerialRange { lo: lo.max(1), hi });
            } else {
                skipped.push(Skipped::EmptySerialRange { lo, hi });
            }
        }
        if builder.revoke_serial_ranges(&scope, ranges).is_err() {
            // Unreachable: every range was checked above.
            skipped.push(Skipped::EmptySerialRange { lo: 0, hi: 0 });
        }
        for id in &certs.key_ids {
            if builder.revoke_key_id(&scope, id.as_bytes()).is_err() {
                skipped.push(Skipped::KeyIdWithNul);
            }
        }
    }
    for blob in &revocations.keys {
        match ssh_key::PublicKey::from_bytes(blob) {
            Ok(key) => {
                builder.revoke_key(key.key_data());
            }
            Err(_) => {
                builder.revoke_sha256(crate::state::format::sha256(blob));
            }
        }
    }
    for hash in &revocations.sha256 {
        match <[u8; 32]>::try_from(hash.as_slice()) {
            Ok(h) => {
                builder.revoke_sha256(h);
            }
            Err(_) => skipped.push(Skipped::BadSha256Length(hash.len())),
        }
    }
    (builder.build(), skipped)
}

/// Builds the KRL of `revocations` and atomically replaces `path` with it.
pub fn write_krl(
    path: &Path,
    revocations: &Revocations,
    version: u64,
    generated_at: u64,
) -> Result<KrlReport, KrlWriteError> {
    let (krl, skipped) = build_krl(revocations, version, generated_at);
    let bytes = krl.encode();
    write_atomic(path, &bytes, FILE_MODE).map_err(KrlWriteError::Write)?;
    Ok(KrlReport {
        bytes: bytes.len() as u64,
        skipped,
    })
}

/// What [`ensure_krl`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum EnsureKrl {
    /// A valid KRL was already there; it was left alone.
    Valid,
    /// There was no file; an empty KRL was written.
    WroteMissing,
    /// The file was unreadable or not a valid KRL; an empty KRL replaced it.
    ReplacedInvalid(String),
}

/// Makes sure `path` holds a KRL that sshd can load, writing an empty one if not. The
/// daemon calls this first thing, before anything can point sshd at the file, and persists
/// the real one as soon as it has a state.
pub fn ensure_krl(path: &Path, now: u64) -> Result<EnsureKrl, KrlWriteError> {
    let outcome = match fs::read(path) {
        Ok(bytes) => match Krl::decode(&bytes) {
            Ok(_) => return Ok(EnsureKrl::Valid),
            Err(e) => EnsureKrl::ReplacedInvalid(e.to_string()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => EnsureKrl::WroteMissing,
        Err(e) => EnsureKrl::ReplacedInvalid(e.to_string()),
    };
    let (empty, _) = build_krl(&Revocations::default(), 0, now);
    write_atomic(path, &empty.encode(), FILE_MODE).map_err(KrlWriteError::Write)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use signoff_proto::krl::{CertFields, Revocation};
    use ssh_key::{Certificate, PrivateKey, certificate};
    use std::os::unix::fs::PermissionsExt as _;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn blob(k: &PrivateKey) -> Vec<u8> {
        signoff_proto::krl::key_blob(k.public_key().key_data())
    }

    fn cert(ca: &PrivateKey, subject: &PrivateKey, serial: u64, key_id: &str) -> Certificate {
        let mut b = certificate::Builder::new(
            [0u8; 16],
            subject.public_key().key_data().clone(),
            0,
            4_000_000_000,
        )
        .unwrap();
        b.serial(serial).unwrap();
        b.key_id(key_id).unwrap();
        b.cert_type(certificate::CertType::User).unwrap();
        b.valid_principal("root").unwrap();
        b.sign(ca).unwrap()
    }

    #[test]
    fn krl_revokes_what_the_set_says() {
        let ca = key(1);
        let other_ca = key(2);
        let user = key(3);
        let mut r = Revocations::default();
        let c = r.certificates.entry(blob(&ca)).or_default();
        c.serials.insert((10, 20));
        c.key_ids.insert("alice".into());
        r.certificates
            .entry(Vec::new())
            .or_default()
            .key_ids
            .insert("mallory".into());
        let (krl, skipped) = build_krl(&r, 7, 1000);
        assert!(skipped.is_empty());
        assert_eq!(krl.version(), 7);
        let krl = Krl::decode(&krl.encode()).unwrap();
        let check = |ca: &PrivateKey, serial, id| {
            let c = cert(ca, &user, serial, id);
            krl.check_certificate(&CertFields::of(&c))
        };
        assert_eq!(check(&ca, 15, "bob"), Some(Revocation::Serial));
        assert_eq!(check(&other_ca, 15, "bob"), None);
        assert_eq!(check(&ca, 21, "alice"), Some(Revocation::KeyId));
        assert_eq!(check(&other_ca, 21, "alice"), None);
        assert_eq!(check(&other_ca, 1, "mallory"), Some(Revocation::KeyId));

        r.keys.insert(blob(&user));
        let (krl, _) = build_krl(&r, 8, 1000);
        assert_eq!(
            krl.check_key(user.public_key().key_data()),
            Some(Revocation::ExplicitKey)
        );
    }

    #[test]
    fn unloadable_revocations_are_left_out() {
        let mut r = Revocations::default();
        r.certificates
            .entry(b"not a key".to_vec())
            .or_default()
            .key_ids
            .insert("x".into());
        let any = r.certificates.entry(Vec::new()).or_default();
        any.serials.insert((0, 0));
        any.serials.insert((0, 5));
        any.key_ids.insert("a\0b".into());
        r.keys.insert(b"garbage".to_vec());
        r.sha256.insert(vec![1, 2, 3]);
        let (krl, skipped) = build_krl(&r, 1, 1);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        // What remains loads, and still revokes serials 1-5 and the garbage by hash.
        let decoded = Krl::decode(&krl.encode()).unwrap();
        assert_eq!(decoded.sha256s().len(), 1);
        let (_, any) = decoded.certs().next().unwrap();
        assert_eq!(any.serials(), [SerialRange { lo: 1, hi: 5 }]);
    }

    #[test]
    fn ensure_krl_writes_missing_and_replaces_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.krl");
        assert!(matches!(
            ensure_krl(&path, 5).unwrap(),
            EnsureKrl::WroteMissing
        ));
        let krl = Krl::decode(&fs::read(&path).unwrap()).unwrap();
        assert!(krl.is_empty());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(matches!(ensure_krl(&path, 6).unwrap(), EnsureKrl::Valid));

        fs::write(&path, b"SSHKRL\n\0garbage").unwrap();
        assert!(matches!(
            ensure_krl(&path, 7).unwrap(),
            EnsureKrl::ReplacedInvalid(_)
        ));
        assert!(Krl::decode(&fs::read(&path).unwrap()).unwrap().is_empty());

        // A valid, non-empty KRL is left alone.
        let mut r = Revocations::default();
        r.sha256.insert(vec![9; 32]);
        write_krl(&path, &r, 3, 8).unwrap();
        let before = fs::read(&path).unwrap();
        assert!(matches!(ensure_krl(&path, 9).unwrap(), EnsureKrl::Valid));
        assert_eq!(fs::read(&path).unwrap(), before);
    }
}
