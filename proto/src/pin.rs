//! The agent CA pin an agent is given at enrollment: `SHA256:` and the unpadded standard
//! base64 of SHA-256 over the CA certificate's DER bytes, the way OpenSSH prints key
//! fingerprints. `openssl x509 -in agent-ca.crt -outform DER | openssl dgst -sha256 -binary
//! | base64 | tr -d '='` computes the same.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The pin of a CA certificate given as DER.
pub fn ca_pin(cert_der: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(cert_der))
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn pin_format() {
        // SHA-256 of the empty string.
        assert_eq!(
            super::ca_pin(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
}
