//! Orders the control plane signs and agents execute: the canonical bytes of a kill order,
//! signed as SSHSIG (OpenSSH's own signature format, Ed25519), so that
//! `ssh-keygen -Y verify -n signoff-order -I signoff -f allowed_signers -s order.sig < order`
//! checks a stored order with no signoff code at all.
//!
//! Canonical bytes are SSH wire fields in a fixed order, with no optional parts, so one
//! order has exactly one encoding:
//!
//! ```text
//! string  "signoff kill order v1"
//! string  host_id
//! string  session_id
//! string  reason
//! string  operator
//! uint64  not_before      (Unix seconds)
//! uint64  not_after       (Unix seconds)
//! string  nonce           (16 random bytes)
//! ```

use ssh_encoding::{Decode, Encode, Reader};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The SSHSIG namespace of every signoff order: a signature made for anything else (a git
/// commit, a file) never verifies as an order.
pub const NAMESPACE: &str = "signoff-order";

const KILL_ORDER_TAG: &[u8] = b"signoff kill order v1";

/// Longest text field accepted in an order.
const MAX_FIELD: usize = 1024;

/// End one SSH session on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillOrder {
    /// The host that must execute it; every other host refuses it.
    pub host_id: String,
    /// The session, as the host's agent reported it.
    pub session_id: String,
    /// Why, as the operator gave it.
    pub reason: String,
    /// Who ordered it (`operator:alice`, `token:hr`).
    pub operator: String,
    /// Unix seconds before which it is refused.
    pub not_before: u64,
    /// Unix seconds from which it is refused.
    pub not_after: u64,
    /// Random, unique per order: an agent refuses a nonce it has seen.
    pub nonce: [u8; 16],
}

/// Why bytes are not a kill order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// The data ends inside a field.
    #[error("order truncated in {0}")]
    Truncated(&'static str),
    /// Bytes left after the last field.
    #[error("{0} unexpected bytes after the order")]
    Trailing(usize),
    /// Not a kill order of a version we know.
    #[error("not a signoff kill order (v1)")]
    WrongTag,
    /// A text field is not UTF-8 or too long.
    #[error("{0} is not valid text of at most 1024 bytes")]
    BadText(&'static str),
    /// The nonce is not 16 bytes.
    #[error("nonce must be 16 bytes")]
    BadNonce,
    /// The validity window is empty.
    #[error("not_after is not after not_before")]
    BadWindow,
    /// The signature is not an armored SSHSIG.
    #[error("signature does not parse: {0}")]
    BadSignature(String),
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(String),
    /// A list is not sorted or repeats an item.
    #[error("{0} are not sorted and unique")]
    NotCanonical(&'static str),
    /// A list names more than 4096 items.
    #[error("{0} has more than 4096 items")]
    TooMany(&'static str),
}

/// Writes an SSH `string` of at most `max` bytes: a longer field is an error, never a length
/// silently cut to 32 bits, and what is written always decodes.
fn put_string(
    out: &mut Vec<u8>,
    s: &[u8],
    max: usize,
    what: &'static str,
) -> Result<(), OrderError> {
    if s.len() > max {
        return Err(OrderError::BadText(what));
    }
    s.encode(out).map_err(|_| OrderError::BadText(what))
}

fn put_u64(out: &mut Vec<u8>, n: u64) -> Result<(), OrderError> {
    // Writing to a Vec fails only when memory does.
    n.encode(out).map_err(|_| OrderError::Truncated("output"))
}

/// Reads the fields of canonical bytes with `ssh-encoding`, naming the field in each error.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u64(&mut self, what: &'static str) -> Result<u64, OrderError> {
        u64::decode(&mut self.0).map_err(|_| OrderError::Truncated(what))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, OrderError> {
        u32::decode(&mut self.0).map_err(|_| OrderError::Truncated(what))
    }

    /// A `string` of at most `max` bytes; a longer one is refused before it is read.
    fn bytes(&mut self, max: usize, what: &'static str) -> Result<Vec<u8>, OrderError> {
        self.0.read_prefixed(|field| {
            let len = field.remaining_len();
            if len > max {
                return Err(OrderError::BadText(what));
            }
            let mut out = vec![0; len];
            field
                .read(&mut out)
                .map_err(|_| OrderError::Truncated(what))?;
            Ok(out)
        })
    }

    fn text(&mut self, what: &'static str) -> Result<String, OrderError> {
        String::from_utf8(self.bytes(MAX_FIELD, what)?).map_err(|_| OrderError::BadText(what))
    }

    fn tag(&mut self, tag: &[u8]) -> Result<(), OrderError> {
        if self.bytes(MAX_FIELD, "tag")? != tag {
            return Err(OrderError::WrongTag);
        }
        Ok(())
    }

    fn finish(self) -> Result<(), OrderError> {
        if !self.0.is_empty() {
            return Err(OrderError::Trailing(self.0.len()));
        }
        Ok(())
    }
}

impl From<ssh_encoding::Error> for OrderError {
    /// Only a length prefix can fail outside the field helpers: it is cut short, or larger
    /// than `ssh-encoding` reads at all.
    fn from(_: ssh_encoding::Error) -> Self {
        OrderError::Truncated("length")
    }
}

impl KillOrder {
    /// The canonical bytes; these are what is signed and what is sent. A text field longer
    /// than 1024 bytes is refused here, as [`KillOrder::decode`] refuses it.
    pub fn encode(&self) -> Result<Vec<u8>, OrderError> {
        let mut out = Vec::new();
        put_string(&mut out, KILL_ORDER_TAG, MAX_FIELD, "tag")?;
        put_string(&mut out, self.host_id.as_bytes(), MAX_FIELD, "host_id")?;
        put_string(
            &mut out,
            self.session_id.as_bytes(),
            MAX_FIELD,
            "session_id",
        )?;
        put_string(&mut out, self.reason.as_bytes(), MAX_FIELD, "reason")?;
        put_string(&mut out, self.operator.as_bytes(), MAX_FIELD, "operator")?;
        put_u64(&mut out, self.not_before)?;
        put_u64(&mut out, self.not_after)?;
        put_string(&mut out, &self.nonce, self.nonce.len(), "nonce")?;
        Ok(out)
    }

    /// Parses canonical bytes, refusing anything else (including trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<KillOrder, OrderError> {
        let mut r = Fields(bytes);
        r.tag(KILL_ORDER_TAG)?;
        let order = KillOrder {
            host_id: r.text("host_id")?,
            session_id: r.text("session_id")?,
            reason: r.text("reason")?,
            operator: r.text("operator")?,
            not_before: r.u64("not_before")?,
            not_after: r.u64("not_after")?,
            nonce: r
                .bytes(MAX_FIELD, "nonce")?
                .try_into()
                .map_err(|_| OrderError::BadNonce)?,
        };
        r.finish()?;
        if order.not_after <= order.not_before {
            return Err(OrderError::BadWindow);
        }
        Ok(order)
    }
}

/// A person is signed off: every session of the identities named here is to end, on every
/// host, whenever that host learns of it. Unlike a [`KillOrder`] it names no host and has no
/// expiry (a host that was offline for a week must still enforce it); it is withdrawn from
/// hosts' views when the person is re-enabled.
///
/// ```text
/// string  "signoff sign-off v1"
/// uint64  signoff_id
/// string  user
/// string  reason
/// string  operator
/// uint64  issued_at       (Unix seconds)
/// uint32  count, then that many string key_id              (sorted, unique)
/// uint32  count, then that many string key_fingerprint     (SHA256:…, sorted, unique)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignoffStatement {
    /// The control plane's id of the sign-off.
    pub signoff_id: u64,
    /// The person's name at the control plane.
    pub user: String,
    /// Why, as given.
    pub reason: String,
    /// Who signed them off (`operator:alice`, `token:hr`, `scim`).
    pub operator: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Certificate key IDs of the person: sessions whose certificate carries one of them end.
    pub key_ids: Vec<String>,
    /// `SHA256:…` fingerprints of the person's plain keys: sessions with one of them end.
    pub key_fingerprints: Vec<String>,
}

const SIGNOFF_TAG: &[u8] = b"signoff sign-off v1";

/// Most key IDs or fingerprints one statement may name.
const MAX_IDENTITIES: usize = 4096;

impl SignoffStatement {
    /// The canonical bytes; lists are written sorted and without duplicates, so one
    /// statement has one encoding. A text field over 1024 bytes or a list of more than
    /// 4096 items is refused here, as [`SignoffStatement::decode`] refuses it.
    pub fn encode(&self) -> Result<Vec<u8>, OrderError> {
        let mut out = Vec::new();
        put_string(&mut out, SIGNOFF_TAG, MAX_FIELD, "tag")?;
        put_u64(&mut out, self.signoff_id)?;
        put_string(&mut out, self.user.as_bytes(), MAX_FIELD, "user")?;
        put_string(&mut out, self.reason.as_bytes(), MAX_FIELD, "reason")?;
        put_string(&mut out, self.operator.as_bytes(), MAX_FIELD, "operator")?;
        put_u64(&mut out, self.issued_at)?;
        for (list, what) in [
            (&self.key_ids, "key_ids"),
            (&self.key_fingerprints, "key_fingerprints"),
        ] {
            let set: std::collections::BTreeSet<&String> = list.iter().collect();
            if set.len() > MAX_IDENTITIES {
                return Err(OrderError::TooMany(what));
            }
            set.len()
                .encode(&mut out)
                .map_err(|_| OrderError::TooMany(what))?;
            for item in set {
                put_string(&mut out, item.as_bytes(), MAX_FIELD, what)?;
            }
        }
        Ok(out)
    }

    /// Parses canonical bytes, refusing anything else: unsorted or repeated list items,
    /// trailing bytes, another tag.
    pub fn decode(bytes: &[u8]) -> Result<SignoffStatement, OrderError> {
        let mut r = Fields(bytes);
        r.tag(SIGNOFF_TAG)?;
        let signoff_id = r.u64("signoff_id")?;
        let user = r.text("user")?;
        let reason = r.text("reason")?;
        let operator = r.text("operator")?;
        let issued_at = r.u64("issued_at")?;
        let mut lists = [Vec::new(), Vec::new()];
        for (list, what) in lists.iter_mut().zip(["key_ids", "key_fingerprints"]) {
            let n = r.u32(what)?;
            if usize::try_from(n).map_or(true, |n| n > MAX_IDENTITIES) {
                return Err(OrderError::TooMany(what));
            }
            for _ in 0..n {
                let item = r.text(what)?;
                if list.last().is_some_and(|prev: &String| *prev >= item) {
                    return Err(OrderError::NotCanonical(what));
                }
                list.push(item);
            }
        }
        r.finish()?;
        let [key_ids, key_fingerprints] = lists;
        Ok(SignoffStatement {
            signoff_id,
            user,
            reason,
            operator,
            issued_at,
            key_ids,
            key_fingerprints,
        })
    }

    /// True when a session with this certificate key ID (empty for none) or key fingerprint
    /// belongs to the signed-off person.
    pub fn covers(&self, key_id: &str, key_fingerprint: &str) -> bool {
        (!key_id.is_empty() && self.key_ids.iter().any(|k| k == key_id))
            || (!key_fingerprint.is_empty()
                && self.key_fingerprints.iter().any(|f| f == key_fingerprint))
    }
}

/// Signs canonical order bytes; returns the armored SSHSIG (`-----BEGIN SSH SIGNATURE-----`).
pub fn sign(key: &PrivateKey, order_bytes: &[u8]) -> Result<String, OrderError> {
    let sig = key
        .sign(NAMESPACE, HashAlg::Sha512, order_bytes)
        .map_err(|e| OrderError::Sign(e.to_string()))?;
    sig.to_pem(LineEnding::LF)
        .map_err(|e| OrderError::Sign(e.to_string()))
}

/// Why a signature does not make an order valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature does not parse.
    #[error("signature does not parse")]
    Malformed,
    /// Made for another namespace.
    #[error("signature is for namespace {0:?}, not {NAMESPACE:?}")]
    WrongNamespace(String),
    /// The signing key is not a trusted signer.
    #[error("signed by a key that is not in allowed_signers")]
    UnknownSigner,
    /// The signature does not match the bytes.
    #[error("signature does not match the order")]
    Invalid,
}

/// Verifies `signature_pem` over `order_bytes` against `trusted` signer keys; returns the
/// key that signed it.
pub fn verify<'k>(
    order_bytes: &[u8],
    signature_pem: &str,
    trusted: &'k [PublicKey],
) -> Result<&'k PublicKey, SignatureError> {
    let sig = SshSig::from_pem(signature_pem).map_err(|_| SignatureError::Malformed)?;
    if sig.namespace() != NAMESPACE {
        return Err(SignatureError::WrongNamespace(sig.namespace().to_owned()));
    }
    let signer = trusted
        .iter()
        .find(|k| k.key_data() == sig.public_key())
        .ok_or(SignatureError::UnknownSigner)?;
    signer
        .verify(NAMESPACE, order_bytes, &sig)
        .map_err(|_| SignatureError::Invalid)?;
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn order() -> KillOrder {
        KillOrder {
            host_id: "web1".into(),
            session_id: "1234:5678".into(),
            reason: "stolen laptop".into(),
            operator: "operator:alice".into(),
            not_before: 1_800_000_000,
            not_after: 1_800_000_300,
            nonce: [7; 16],
        }
    }

    #[test]
    fn canonical_bytes_round_trip() {
        let bytes = order().encode().unwrap();
        assert_eq!(KillOrder::decode(&bytes).unwrap(), order());
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let bytes = order().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(KillOrder::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(KillOrder::decode(&longer), Err(OrderError::Trailing(1)));
    }

    fn statement() -> SignoffStatement {
        SignoffStatement {
            signoff_id: 42,
            user: "mallory".into(),
            reason: "left the company".into(),
            operator: "token:hr".into(),
            issued_at: 1_800_000_000,
            key_ids: vec!["mallory@corp".into(), "mallory-laptop".into()],
            key_fingerprints: vec!["SHA256:abc".into()],
        }
    }

    #[test]
    fn a_statement_round_trips_in_canonical_order() {
        let s = statement();
        let decoded = SignoffStatement::decode(&s.encode().unwrap()).unwrap();
        assert_eq!(decoded.key_ids, vec!["mallory-laptop", "mallory@corp"]);
        assert_eq!(decoded.encode().unwrap(), s.encode().unwrap());
        assert!(decoded.covers("mallory@corp", ""));
        assert!(decoded.covers("", "SHA256:abc"));
        assert!(!decoded.covers("", ""));
        assert!(!decoded.covers("alice", "SHA256:xyz"));
    }

    #[test]
    fn a_statement_is_not_an_order_and_truncations_are_refused() {
        let bytes = statement().encode().unwrap();
        assert_eq!(KillOrder::decode(&bytes), Err(OrderError::WrongTag));
        assert_eq!(
            SignoffStatement::decode(&order().encode().unwrap()),
            Err(OrderError::WrongTag)
        );
        for n in 0..bytes.len() {
            assert!(SignoffStatement::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SignoffStatement::decode(&longer),
            Err(OrderError::Trailing(1))
        );
    }

    #[test]
    fn an_unsorted_statement_is_refused() {
        let mut bytes = Vec::new();
        SIGNOFF_TAG.encode(&mut bytes).unwrap();
        1u64.encode(&mut bytes).unwrap();
        for field in ["u", "r", "o"] {
            field.encode(&mut bytes).unwrap();
        }
        0u64.encode(&mut bytes).unwrap();
        2u32.encode(&mut bytes).unwrap();
        "b".encode(&mut bytes).unwrap();
        "a".encode(&mut bytes).unwrap();
        0u32.encode(&mut bytes).unwrap();
        assert_eq!(
            SignoffStatement::decode(&bytes),
            Err(OrderError::NotCanonical("key_ids"))
        );
    }

    #[test]
    fn an_over_long_field_is_refused_when_encoding_and_decoding() {
        let mut o = order();
        o.reason = "x".repeat(MAX_FIELD + 1);
        assert_eq!(o.encode(), Err(OrderError::BadText("reason")));
        o.reason = "x".repeat(MAX_FIELD);
        assert_eq!(KillOrder::decode(&o.encode().unwrap()).unwrap(), o);

        // The same field, written by hand one byte over the bound, does not decode.
        let mut bytes = Vec::new();
        KILL_ORDER_TAG.encode(&mut bytes).unwrap();
        "x".repeat(MAX_FIELD + 1).encode(&mut bytes).unwrap();
        assert_eq!(
            KillOrder::decode(&bytes),
            Err(OrderError::BadText("host_id"))
        );
    }

    #[test]
    fn a_statement_naming_too_many_keys_is_refused_both_ways() {
        let mut s = statement();
        s.key_ids = (0..=MAX_IDENTITIES).map(|i| format!("k{i:05}")).collect();
        assert_eq!(s.encode(), Err(OrderError::TooMany("key_ids")));

        let mut bytes = Vec::new();
        SIGNOFF_TAG.encode(&mut bytes).unwrap();
        1u64.encode(&mut bytes).unwrap();
        for field in ["u", "r", "o"] {
            field.encode(&mut bytes).unwrap();
        }
        0u64.encode(&mut bytes).unwrap();
        u32::MAX.encode(&mut bytes).unwrap();
        assert_eq!(
            SignoffStatement::decode(&bytes),
            Err(OrderError::TooMany("key_ids"))
        );
    }

    #[test]
    fn a_length_past_the_end_is_truncation() {
        let mut bytes = Vec::new();
        KILL_ORDER_TAG.encode(&mut bytes).unwrap();
        100u32.encode(&mut bytes).unwrap();
        bytes.extend_from_slice(b"web1");
        assert_eq!(
            KillOrder::decode(&bytes),
            Err(OrderError::Truncated("host_id"))
        );
    }

    #[test]
    fn an_empty_window_is_refused() {
        let mut o = order();
        o.not_after = o.not_before;
        assert_eq!(
            KillOrder::decode(&o.encode().unwrap()),
            Err(OrderError::BadWindow)
        );
    }

    #[test]
    fn a_signed_order_verifies_with_its_signer_only() {
        let signer = key(1);
        let bytes = order().encode().unwrap();
        let sig = sign(&signer, &bytes).unwrap();
        let trusted = [signer.public_key().clone()];
        assert!(verify(&bytes, &sig, &trusted).is_ok());
        assert_eq!(
            verify(&bytes, &sig, &[key(2).public_key().clone()]),
            Err(SignatureError::UnknownSigner)
        );
    }

    #[test]
    fn a_forged_order_is_refused() {
        let signer = key(1);
        let bytes = order().encode().unwrap();
        let sig = sign(&signer, &bytes).unwrap();
        let mut forged = order();
        forged.host_id = "web2".into();
        let trusted = [signer.public_key().clone()];
        assert_eq!(
            verify(&forged.encode().unwrap(), &sig, &trusted),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn a_signature_for_another_namespace_is_refused() {
        let signer = key(1);
        let bytes = order().encode().unwrap();
        let other = signer
            .sign("git", HashAlg::Sha512, &bytes)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap();
        let trusted = [signer.public_key().clone()];
        assert_eq!(
            verify(&bytes, &other, &trusted),
            Err(SignatureError::WrongNamespace("git".into()))
        );
        assert_eq!(
            verify(&bytes, "garbage", &trusted),
            Err(SignatureError::Malformed)
        );
    }
}
