//! k-of-n approvals: what approvers sign, and how a host counts their signatures.
//!
//! The most dangerous changes — a grant to a privileged account, re-enabling a signed-off
//! person — take effect on a host only when they carry `k` approvals from distinct
//! approvers, each an SSHSIG (namespace [`NAMESPACE`]) made with the approver's own SSH key
//! over the change's canonical bytes. Hosts check them against an OpenSSH
//! `allowed_signers` file that Ansible installs; the control plane only collects them and
//! cannot make one.
//!
//! The canonical bytes are short UTF-8 text, so that an approver reads exactly what they
//! sign (`signoff-server approval show ID` prints them; `ssh-keygen -Y sign -n
//! signoff-approval -f KEY FILE` signs them; `ssh-keygen -Y verify` checks them):
//!
//! ```text
//! signoff grant approval v1
//! grant: 7
//! person: alice
//! account: root
//! host-group: web
//! not-after: 1800000000          (Unix seconds, or "never")
//! ```
//!
//! ```text
//! signoff re-enable approval v1
//! signoff: 3
//! person: mallory
//! ```
//!
//! Every line ends with a newline. A field may hold no control character (so no newline),
//! which makes the text one-to-one with the fields: two different grants never have the
//! same bytes.

use std::collections::BTreeSet;

use ssh_key::{Algorithm, SshSig};

/// The SSHSIG namespace of approvals: an order, a git commit or a file signed with the
/// same key never counts as an approval.
pub const NAMESPACE: &str = "signoff-approval";

/// Longest field accepted in approved bytes.
const MAX_FIELD: usize = 256;

/// Most signatures counted for one change (more are refused, not read).
pub const MAX_SIGNATURES: usize = 32;

/// A field cannot be put into canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{field} must be 1 to 256 bytes without control characters")]
pub struct BadField {
    /// The field's name.
    pub field: &'static str,
}

fn check(field: &'static str, value: &str) -> Result<(), BadField> {
    if value.is_empty() || value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(BadField { field });
    }
    Ok(())
}

/// A grant as approvers approve it: who may log in as which account on which hosts, until
/// when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantApproval<'a> {
    /// The control plane's id of the grant (a changed grant is a new id).
    pub grant_id: u64,
    /// The person's name.
    pub person: &'a str,
    /// The Unix account.
    pub account: &'a str,
    /// The host group.
    pub host_group: &'a str,
    /// Unix seconds after which the grant lets nobody in; 0 for never.
    pub not_after: u64,
}

impl GrantApproval<'_> {
    /// The canonical bytes approvers sign.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, BadField> {
        check("person", self.person)?;
        check("account", self.account)?;
        check("host group", self.host_group)?;
        let not_after = if self.not_after == 0 {
            "never".to_owned()
        } else {
            self.not_after.to_string()
        };
        Ok(format!(
            "signoff grant approval v1\ngrant: {}\nperson: {}\naccount: {}\nhost-group: {}\nnot-after: {}\n",
            self.grant_id, self.person, self.account, self.host_group, not_after
        )
        .into_bytes())
    }
}

/// Re-enabling a person who was signed off (the sign-off's id binds the approval to that
/// one sign-off: a later sign-off needs approvals of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReenableApproval<'a> {
    /// The sign-off being withdrawn.
    pub signoff_id: u64,
    /// The person's name.
    pub person: &'a str,
}

impl ReenableApproval<'_> {
    /// The canonical bytes approvers sign.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, BadField> {
        check("person", self.person)?;
        Ok(format!(
            "signoff re-enable approval v1\nsignoff: {}\nperson: {}\n",
            self.signoff_id, self.person
        )
        .into_bytes())
    }
}

/// One approver: a line of the approvers' `allowed_signers` file.
pub use crate::allowed_signers::Signer as Approver;
pub use crate::allowed_signers::SignersError;

/// Reads the approvers' `allowed_signers` file: the lines that may sign in
/// [`NAMESPACE`] ([`crate::allowed_signers::parse`]).
pub fn parse_allowed_signers(text: &str) -> Result<Vec<Approver>, SignersError> {
    crate::allowed_signers::parse(text, NAMESPACE)
}

/// Why one signature does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not an armored SSHSIG.
    #[error("signature {0} does not parse")]
    Malformed(usize),
    /// Made for another namespace.
    #[error("signature {index} is for namespace {namespace:?}, not {NAMESPACE:?}")]
    WrongNamespace {
        /// Position in the list.
        index: usize,
        /// Its namespace.
        namespace: String,
    },
    /// The key is not in the approvers file.
    #[error("signature {0} is by a key that is not an approver's")]
    NotAnApprover(usize),
    /// The signature is not over these bytes (another change, or altered bytes).
    #[error("signature {0} does not match these bytes")]
    OtherBytes(usize),
    /// The approver approved already.
    #[error("signature {index} is a second approval by {identity}")]
    Duplicate {
        /// Position in the list.
        index: usize,
        /// The approver.
        identity: String,
    },
    /// A security-key (`sk-`) signature made without the user touching the key; ssh-keygen
    /// refuses it too unless the approvers file says `no-touch-required`, which this
    /// reader does not apply.
    #[error("signature {0} was made without touching the security key")]
    NoUserPresence(usize),
    /// More signatures than [`MAX_SIGNATURES`].
    #[error("{0} signatures, more than {MAX_SIGNATURES} are not read")]
    TooMany(usize),
}

/// The approvals that count, and why the others do not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Distinct approvers with a valid signature.
    pub approvers: BTreeSet<String>,
    /// Signatures that do not count.
    pub refused: Vec<Refusal>,
}

impl Tally {
    /// How many distinct approvers approved.
    pub fn count(&self) -> usize {
        self.approvers.len()
    }
}

/// Checks one signature; returns the approver it counts for.
pub fn verify_one<'a>(
    bytes: &[u8],
    index: usize,
    signature_pem: &str,
    approvers: &'a [Approver],
) -> Result<&'a Approver, Refusal> {
    let sig = SshSig::from_pem(signature_pem).map_err(|_| Refusal::Malformed(index))?;
    if sig.namespace() != NAMESPACE {
        return Err(Refusal::WrongNamespace {
            index,
            namespace: sig.namespace().to_owned(),
        });
    }
    let mut known = false;
    for a in approvers
        .iter()
        .filter(|a| a.key.key_data() == sig.public_key())
    {
        known = true;
        if a.key.verify(NAMESPACE, bytes, &sig).is_ok() {
            if !user_present(&sig) {
                return Err(Refusal::NoUserPresence(index));
            }
            return Ok(a);
        }
    }
    Err(if known {
        Refusal::OtherBytes(index)
    } else {
        Refusal::NotAnApprover(index)
    })
}

/// Whether a signature is either not a security key's, or one made with the user present
/// (flag 0x01 of the authenticator data, which ssh-key's verification does not check).
fn user_present(sig: &SshSig) -> bool {
    let s = sig.signature();
    match s.algorithm() {
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => {
            let b = s.as_bytes();
            // The data ends with flags (1 byte) and the counter (4 bytes).
            b.len() >= 5 && b[b.len() - 5] & 0x01 != 0
        }
        _ => true,
    }
}

/// Counts the distinct approvers whose signatures over `bytes` verify.
pub fn tally<S: AsRef<str>>(bytes: &[u8], signatures: &[S], approvers: &[Approver]) -> Tally {
    let mut t = Tally::default();
    if signatures.len() > MAX_SIGNATURES {
        t.refused.push(Refusal::TooMany(signatures.len()));
        return t;
    }
    for (index, sig) in signatures.iter().enumerate() {
        match verify_one(bytes, index, sig.as_ref(), approvers) {
            Ok(a) => {
                if !t.approvers.insert(a.identity.clone()) {
                    t.refused.push(Refusal::Duplicate {
                        index,
                        identity: a.identity.clone(),
                    });
                }
            }
            Err(r) => t.refused.push(r),
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::{HashAlg, LineEnding, PrivateKey};

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn sign(k: &PrivateKey, bytes: &[u8]) -> String {
        k.sign(NAMESPACE, HashAlg::Sha512, bytes)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }

    fn line(identity: &str, k: &PrivateKey) -> String {
        format!("{identity} {}\n", k.public_key().to_openssh().unwrap())
    }

    fn grant() -> GrantApproval<'static> {
        GrantApproval {
            grant_id: 7,
            person: "alice",
            account: "root",
            host_group: "web",
            not_after: 0,
        }
    }

    #[test]
    fn canonical_bytes_are_the_documented_text() {
        assert_eq!(
            String::from_utf8(grant().canonical_bytes().unwrap()).unwrap(),
            "signoff grant approval v1\ngrant: 7\nperson: alice\naccount: root\nhost-group: web\nnot-after: never\n"
        );
        let mut g = grant();
        g.not_after = 1_800_000_000;
        assert!(
            String::from_utf8(g.canonical_bytes().unwrap())
                .unwrap()
                .ends_with("not-after: 1800000000\n")
        );
        assert_eq!(
            ReenableApproval {
                signoff_id: 3,
                person: "mallory"
            }
            .canonical_bytes()
            .unwrap(),
            b"signoff re-enable approval v1\nsignoff: 3\nperson: mallory\n"
        );
    }

    #[test]
    fn a_field_with_a_newline_has_no_bytes() {
        let mut g = grant();
        g.person = "alice\naccount: root";
        assert_eq!(g.canonical_bytes(), Err(BadField { field: "person" }));
        g.person = "";
        assert!(g.canonical_bytes().is_err());
    }

    #[test]
    fn k_distinct_approvers_are_counted() {
        let (a, b, c) = (key(1), key(2), key(3));
        let signers =
            parse_allowed_signers(&(line("alice", &a) + &line("bob", &b) + &line("carol", &c)))
                .unwrap();
        let bytes = grant().canonical_bytes().unwrap();
        let t = tally(&bytes, &[sign(&a, &bytes), sign(&b, &bytes)], &signers);
        assert_eq!(t.count(), 2);
        assert!(t.refused.is_empty());
    }

    #[test]
    fn every_refusal_is_named() {
        let (a, b, stranger) = (key(1), key(2), key(9));
        // bob has two keys: still one approver.
        let b2 = key(4);
        let signers =
            parse_allowed_signers(&(line("alice", &a) + &line("bob", &b) + &line("bob", &b2)))
                .unwrap();
        let bytes = grant().canonical_bytes().unwrap();
        let mut other = grant();
        other.grant_id = 8;
        let other = other.canonical_bytes().unwrap();
        let wrong_ns = a
            .sign("signoff-order", HashAlg::Sha512, &bytes)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap();
        let sigs = [
            sign(&a, &bytes),
            sign(&a, &bytes),
            sign(&stranger, &bytes),
            sign(&b, &other),
            wrong_ns,
            "garbage".to_owned(),
            sign(&b, &bytes),
            sign(&b2, &bytes),
        ];
        let t = tally(&bytes, &sigs, &signers);
        assert_eq!(t.count(), 2);
        assert_eq!(
            t.refused,
            vec![
                Refusal::Duplicate {
                    index: 1,
                    identity: "alice".into()
                },
                Refusal::NotAnApprover(2),
                Refusal::OtherBytes(3),
                Refusal::WrongNamespace {
                    index: 4,
                    namespace: "signoff-order".into()
                },
                Refusal::Malformed(5),
                Refusal::Duplicate {
                    index: 7,
                    identity: "bob".into()
                },
            ]
        );
    }

    #[test]
    fn options_restrict_or_exclude_lines() {
        let (a, b, c) = (key(1), key(2), key(3));
        let pk = |k: &PrivateKey| k.public_key().to_openssh().unwrap();
        let text = format!(
            "# approvers\nalice namespaces=\"signoff-approval,git\" {}\nbob namespaces=\"git\" {}\ncarol cert-authority {}\n",
            pk(&a),
            pk(&b),
            pk(&c)
        );
        let signers = parse_allowed_signers(&text).unwrap();
        assert_eq!(signers.len(), 1);
        assert_eq!(signers[0].identity, "alice");
        assert_eq!(
            parse_allowed_signers("# none\n"),
            Err(SignersError::Empty(NAMESPACE.into()))
        );
        assert!(matches!(
            parse_allowed_signers("alice ssh-ed25519 !!!"),
            Err(SignersError::Line { line: 1, .. })
        ));
    }

    proptest::proptest! {
        /// Two different approvals never sign the same bytes: an approval of one grant or
        /// re-enable cannot be replayed for another, and a re-enable's bytes are never a
        /// grant's.
        #[test]
        fn distinct_approvals_have_distinct_bytes(
            a in (0u64..4, "[a-c\\n :]{1,4}", "[a-c :]{1,3}", "[a-c]{1,2}", 0u64..3),
            b in (0u64..4, "[a-c\\n :]{1,4}", "[a-c :]{1,3}", "[a-c]{1,2}", 0u64..3),
        ) {
            let grant = |(id, person, account, group, not_after): &(u64, String, String, String, u64)| {
                GrantApproval {
                    grant_id: *id,
                    person,
                    account,
                    host_group: group,
                    not_after: *not_after,
                }
                .canonical_bytes()
                .ok()
            };
            let reenable = |(id, person, ..): &(u64, String, String, String, u64)| {
                ReenableApproval { signoff_id: *id, person }.canonical_bytes().ok()
            };
            let (ga, gb) = (grant(&a), grant(&b));
            if let (Some(x), Some(y)) = (&ga, &gb) {
                proptest::prop_assert_eq!(x == y, a == b);
            }
            let (ra, rb) = (reenable(&a), reenable(&b));
            if let (Some(x), Some(y)) = (&ra, &rb) {
                proptest::prop_assert_eq!(x == y, (a.0, &a.1) == (b.0, &b.1));
            }
            if let (Some(x), Some(y)) = (&ga, &rb) {
                proptest::prop_assert_ne!(x, y);
            }
            // A person with a line break is refused, never signed.
            if a.1.contains('\n') {
                proptest::prop_assert!(ga.is_none() && ra.is_none());
            }
        }
    }
}
