//! A SHA-256 key fingerprint as OpenSSH prints it: `SHA256:` and the standard base64 of the
//! 32-byte digest, unpadded (`ssh-keygen -l`, sshd's `%f`/`%F`, its log lines). One parser
//! for every place that reads one: the agent's principals command (sshd's `%f`, `%F`), the
//! `hash:` lines of a KRL spec file, and the control plane's revocations by fingerprint.
//! Padding is accepted, as ssh-keygen accepts it in a spec file; the text form is unpadded.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// What every SHA-256 fingerprint starts with; ssh-keygen compares it case-sensitively.
pub const PREFIX: &str = "SHA256:";

/// Standard base64, padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The digest of a `SHA256:…` fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Fingerprint(pub [u8; 32]);

/// Why text is not a `SHA256:` fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// It does not start with `SHA256:` (another hash, or no fingerprint at all).
    #[error("expected \"SHA256:\" and base64 (only SHA-256 fingerprints are accepted)")]
    NotSha256,
    /// The text after `SHA256:` is not base64.
    #[error("the text after \"SHA256:\" is not base64")]
    Base64(#[source] base64::DecodeError),
    /// It decodes to something other than 32 bytes.
    #[error("the digest is {0} bytes, not 32")]
    Length(usize),
}

impl Sha256Fingerprint {
    /// Parses `SHA256:` and base64 of 32 bytes, as bytes (a spec file need not be UTF-8).
    pub fn parse_bytes(text: &[u8]) -> Result<Self, FingerprintError> {
        let b64 = text
            .strip_prefix(PREFIX.as_bytes())
            .ok_or(FingerprintError::NotSha256)?;
        let bytes = BASE64.decode(b64).map_err(FingerprintError::Base64)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Sha256Fingerprint)
            .map_err(|_| FingerprintError::Length(bytes.len()))
    }

    /// The part after `SHA256:`, which a caller may need to quote in an error.
    pub fn base64_of(text: &[u8]) -> &[u8] {
        text.strip_prefix(PREFIX.as_bytes()).unwrap_or(text)
    }
}

impl FromStr for Sha256Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sha256Fingerprint::parse_bytes(s.as_bytes())
    }
}

impl fmt::Display for Sha256Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0)
        )
    }
}

impl fmt::Debug for Sha256Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-256 of the empty string, as OpenSSH would print it.
    const EMPTY: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

    #[test]
    fn round_trips_unpadded_and_accepts_padding() {
        let fp: Sha256Fingerprint = EMPTY.parse().unwrap();
        assert_eq!(fp.0[..4], [0xe3, 0xb0, 0xc4, 0x42]);
        assert_eq!(fp.to_string(), EMPTY);
        assert_eq!(format!("{EMPTY}=").parse::<Sha256Fingerprint>(), Ok(fp));
    }

    #[test]
    fn another_hash_is_refused() {
        for bad in [
            "MD5:aa:bb",
            "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "",
        ] {
            assert_eq!(
                bad.parse::<Sha256Fingerprint>(),
                Err(FingerprintError::NotSha256),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_base64_is_refused() {
        assert!(matches!(
            "SHA256:not base64!".parse::<Sha256Fingerprint>(),
            Err(FingerprintError::Base64(_))
        ));
    }

    #[test]
    fn a_wrong_length_is_refused() {
        assert_eq!(
            "SHA256:AAAA".parse::<Sha256Fingerprint>(),
            Err(FingerprintError::Length(3))
        );
    }
}
