//! Checking a signed kill order before anything is killed.
//!
//! The agent trusts only the signers in the `allowed_signers` file its configuration names
//! (installed by Ansible; never learned from the wire). An order is refused — and nothing
//! is killed — when its bytes do not parse, its signature is bad or by an unknown signer,
//! it names another host, it is expired or not yet valid (small clock skew allowed), or its
//! nonce was seen before. Seen nonces are kept on disk until the order expires, so a replay
//! after an agent restart is refused too.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use signoff_proto::allowed_signers;
use signoff_proto::orders::{self, KillOrder, OrderError, SignatureError};
use ssh_key::PublicKey;

use crate::atomic::{AtomicWriteError, write_atomic};

/// Clock skew tolerated between control plane and host.
pub const MAX_SKEW_SECS: u64 = 30;

/// Why an order was refused. Reported back to the control plane as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The bytes are not an order.
    #[error("order does not parse: {0}")]
    Malformed(#[from] OrderError),
    /// The signature is bad, for another namespace, or by an untrusted key.
    #[error("{0}")]
    Signature(#[from] SignatureError),
    /// The order is for another host.
    #[error("order is for host {ordered:?}, this is {me:?}")]
    WrongHost {
        /// The host in the order.
        ordered: String,
        /// This host.
        me: String,
    },
    /// The order's window has passed.
    #[error("order expired at {not_after} (now {now})")]
    Expired {
        /// End of the window.
        not_after: u64,
        /// Now.
        now: u64,
    },
    /// The order's window has not begun.
    #[error("order not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Start of the window.
        not_before: u64,
        /// Now.
        now: u64,
    },
    /// The nonce was seen before.
    #[error("order replayed (nonce seen before)")]
    Replayed,
    /// The nonce store cannot be written, so a replay could not be refused later.
    #[error("cannot record the order's nonce")]
    Store(#[source] AtomicWriteError),
}

/// Why the signer list could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignersError {
    /// The file cannot be read.
    #[error("cannot read allowed signers {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line does not parse, or no line may sign orders: every order would be refused.
    #[error("allowed signers {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: allowed_signers::SignersError,
    },
}

/// The keys of an OpenSSH `allowed_signers` file that may sign orders (namespace
/// `signoff-order`; lines restricted to other namespaces, or with options ssh-keygen would
/// apply and this reader does not, are left out: [`allowed_signers::parse`]).
pub fn load_allowed_signers(path: &Path) -> Result<Vec<PublicKey>, SignersError> {
    let text = fs::read_to_string(path).map_err(|source| SignersError::Read {
        path: path.to_owned(),
        source,
    })?;
    let signers =
        allowed_signers::parse(&text, orders::NAMESPACE).map_err(|source| SignersError::Parse {
            path: path.to_owned(),
            source,
        })?;
    Ok(signers.into_iter().map(|s| s.key).collect())
}

/// Nonces of orders already executed or refused as replays, until each order expires.
#[derive(Debug)]
pub struct NonceStore {
    path: PathBuf,
    seen: BTreeMap<[u8; 16], u64>,
}

impl NonceStore {
    /// Loads the store at `path` (missing: empty), dropping nonces expired at `now`. The
    /// file is replaced atomically, so a line that does not parse only comes from outside
    /// tampering; it is skipped and the rest honoured.
    pub fn load(path: &Path, now: u64) -> NonceStore {
        let mut seen = BTreeMap::new();
        if let Ok(text) = fs::read_to_string(path) {
            for line in text.lines() {
                let mut parts = line.split_whitespace();
                let (Some(nonce), Some(until)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let (Ok(bytes), Ok(until)) = (hex::decode(nonce), until.parse::<u64>()) else {
                    continue;
                };
                if let Ok(nonce) = <[u8; 16]>::try_from(bytes.as_slice())
                    && until + MAX_SKEW_SECS >= now
                {
                    seen.insert(nonce, until);
                }
            }
        }
        NonceStore {
            path: path.to_owned(),
            seen,
        }
    }

    /// Records `nonce` as seen until `until`, durably.
    pub fn record(
        &mut self,
        nonce: [u8; 16],
        until: u64,
        now: u64,
    ) -> Result<(), AtomicWriteError> {
        self.seen.retain(|_, u| *u + MAX_SKEW_SECS >= now);
        self.seen.insert(nonce, until);
        let text: String = self
            .seen
            .iter()
            .map(|(n, u)| format!("{} {u}\n", hex::encode(n)))
            .collect();
        write_atomic(&self.path, text.as_bytes(), 0o600)
    }
}

impl NonceStore {
    /// [`NonceStore::record`] for many nonces in one write.
    pub fn record_all(
        &mut self,
        nonces: &[([u8; 16], u64)],
        now: u64,
    ) -> Result<(), AtomicWriteError> {
        let Some((last, rest)) = nonces.split_last() else {
            return Ok(());
        };
        for (nonce, until) in rest {
            self.seen.insert(*nonce, *until);
        }
        self.record(last.0, last.1, now)
    }
}

/// Checks a signed order for this host at `now`; on success its nonce is recorded (durably)
/// before the order is returned for execution.
pub fn check(
    order_bytes: &[u8],
    signature_pem: &str,
    signers: &[PublicKey],
    host_id: &str,
    now: u64,
    nonces: &mut NonceStore,
) -> Result<KillOrder, Refusal> {
    let order = check_unrecorded(order_bytes, signature_pem, signers, host_id, now, nonces)?;
    nonces
        .record(order.nonce, order.not_after, now)
        .map_err(Refusal::Store)?;
    Ok(order)
}

/// [`check`] without recording the nonce: the caller records it (with
/// [`NonceStore::record`]) once it has journaled the order, so that a crash in between
/// leaves an order that is either not seen at all, or journaled and finished on restart.
pub fn check_unrecorded(
    order_bytes: &[u8],
    signature_pem: &str,
    signers: &[PublicKey],
    host_id: &str,
    now: u64,
    nonces: &NonceStore,
) -> Result<KillOrder, Refusal> {
    orders::verify(order_bytes, signature_pem, signers)?;
    let order = KillOrder::decode(order_bytes)?;
    if order.host_id != host_id {
        return Err(Refusal::WrongHost {
            ordered: order.host_id,
            me: host_id.to_owned(),
        });
    }
    if now >= order.not_after.saturating_add(MAX_SKEW_SECS) {
        return Err(Refusal::Expired {
            not_after: order.not_after,
            now,
        });
    }
    if now.saturating_add(MAX_SKEW_SECS) < order.not_before {
        return Err(Refusal::NotYetValid {
            not_before: order.not_before,
            now,
        });
    }
    if nonces.seen.contains_key(&order.nonce) {
        return Err(Refusal::Replayed);
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use ssh_key::PrivateKey;

    use super::*;

    const NOW: u64 = 1_800_000_100;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn order(host: &str, nonce: u8) -> KillOrder {
        KillOrder {
            host_id: host.into(),
            session_id: "1:2".into(),
            reason: "test".into(),
            operator: "operator:alice".into(),
            not_before: NOW - 10,
            not_after: NOW + 290,
            nonce: [nonce; 16],
        }
    }

    fn signed(o: &KillOrder, k: &PrivateKey) -> (Vec<u8>, String) {
        let bytes = o.encode().unwrap();
        let sig = orders::sign(k, &bytes).unwrap();
        (bytes, sig)
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        nonces: NonceStore,
        path: PathBuf,
        signers: Vec<PublicKey>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces");
        Fixture {
            nonces: NonceStore::load(&path, NOW),
            path,
            _dir: dir,
            signers: vec![key(1).public_key().clone()],
        }
    }

    fn run(f: &mut Fixture, bytes: &[u8], sig: &str, now: u64) -> Result<KillOrder, Refusal> {
        check(bytes, sig, &f.signers, "web1", now, &mut f.nonces)
    }

    #[test]
    fn a_good_order_passes_once() {
        let mut f = fixture();
        let (b, s) = signed(&order("web1", 1), &key(1));
        assert_eq!(run(&mut f, &b, &s, NOW).unwrap().session_id, "1:2");
        assert!(matches!(run(&mut f, &b, &s, NOW), Err(Refusal::Replayed)));
    }

    #[test]
    fn a_replay_after_restart_is_refused() {
        let mut f = fixture();
        let (b, s) = signed(&order("web1", 2), &key(1));
        run(&mut f, &b, &s, NOW).unwrap();
        let mut reloaded = NonceStore::load(&f.path, NOW + 5);
        let r = check(&b, &s, &f.signers, "web1", NOW + 5, &mut reloaded);
        assert!(matches!(r, Err(Refusal::Replayed)), "{r:?}");
    }

    #[test]
    fn a_forged_signature_is_refused() {
        let mut f = fixture();
        let (_, s) = signed(&order("web1", 3), &key(1));
        let (b, _) = signed(&order("web1", 4), &key(1));
        assert!(matches!(
            run(&mut f, &b, &s, NOW),
            Err(Refusal::Signature(SignatureError::Invalid))
        ));
    }

    #[test]
    fn an_unknown_signer_is_refused() {
        let mut f = fixture();
        let (b, s) = signed(&order("web1", 5), &key(2));
        assert!(matches!(
            run(&mut f, &b, &s, NOW),
            Err(Refusal::Signature(SignatureError::UnknownSigner))
        ));
    }

    #[test]
    fn another_host_is_refused() {
        let mut f = fixture();
        let (b, s) = signed(&order("web2", 6), &key(1));
        assert!(matches!(
            run(&mut f, &b, &s, NOW),
            Err(Refusal::WrongHost { .. })
        ));
    }

    #[test]
    fn an_expired_order_is_refused() {
        let mut f = fixture();
        let (b, s) = signed(&order("web1", 7), &key(1));
        let r = run(&mut f, &b, &s, NOW + 290 + MAX_SKEW_SECS);
        assert!(matches!(r, Err(Refusal::Expired { .. })), "{r:?}");
    }

    #[test]
    fn a_not_yet_valid_order_is_refused() {
        let mut f = fixture();
        let (b, s) = signed(&order("web1", 8), &key(1));
        let r = run(&mut f, &b, &s, NOW - 10 - MAX_SKEW_SECS - 1);
        assert!(matches!(r, Err(Refusal::NotYetValid { .. })), "{r:?}");
    }

    #[test]
    fn truncated_bytes_are_refused() {
        let mut f = fixture();
        let (b, _) = signed(&order("web1", 9), &key(1));
        let cut = &b[..b.len() - 3];
        let s = orders::sign(&key(1), cut).unwrap();
        assert!(matches!(
            run(&mut f, cut, &s, NOW),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn allowed_signers_with_options_and_comments_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowed_signers");
        let k = key(1).public_key().to_openssh().unwrap();
        let other = key(2).public_key().to_openssh().unwrap();
        fs::write(
            &path,
            format!(
                "# orders\nsignoff {k}\nsignoff,backup namespaces=\"signoff-order\" {k} comment\n\
                 git namespaces=\"git\" {other}\nlater valid-after=\"20260101\" {other}\n"
            ),
        )
        .unwrap();
        // The line for another namespace, and the one with an option this reader does not
        // apply, sign no orders (ssh-keygen would refuse the first, and may the second).
        let keys = load_allowed_signers(&path).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(
            keys.iter()
                .all(|pk| pk.key_data() == key(1).public_key().key_data())
        );
        fs::write(&path, "# nothing\n").unwrap();
        let e = load_allowed_signers(&path).unwrap_err();
        assert!(
            matches!(
                &e,
                SignersError::Parse {
                    source: allowed_signers::SignersError::Empty(_),
                    ..
                }
            ),
            "{e:?}"
        );
        fs::write(&path, "signoff ssh-ed25519 notbase64\n").unwrap();
        let e = load_allowed_signers(&path).unwrap_err();
        assert!(
            matches!(
                &e,
                SignersError::Parse {
                    source: allowed_signers::SignersError::Line { line: 1, .. },
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("allowed_signers"), "{e}");
    }
}
