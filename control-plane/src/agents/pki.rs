//! The agent CA: the control plane's own certificate authority for agent mTLS.
//!
//! It issues short-lived client certificates whose only subject alternative name is the
//! host id (a DNS name, with the client-auth extended key usage only), and the server
//! certificate of the agent listener. Agents learn nothing from the wire at enrollment:
//! they are given the CA's pin, `SHA256:` and the unpadded base64 of SHA-256 over the CA
//! certificate's DER, as OpenSSH prints key fingerprints.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use time::OffsetDateTime;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The CA files do not parse.
    #[error(
        "agent CA files do not parse; restore them from backup or re-create the data directory"
    )]
    BadCa(#[source] rcgen::Error),
    /// The certificate signing request is malformed or its signature is wrong.
    #[error("certificate signing request is invalid")]
    BadCsr(#[source] rcgen::Error),
    /// A time outside what X.509 can express.
    #[error("certificate validity out of range")]
    BadTime,
    /// Signing failed.
    #[error("cannot sign certificate")]
    Sign(#[source] rcgen::Error),
    /// The TLS configuration built from the certificates was refused.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// The CA certificate and key.
#[derive(Debug)]
pub struct AgentCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM.
    pub pem: String,
    /// Unix seconds.
    pub not_after: i64,
}

fn at(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|_| PkiError::BadTime)
}

fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

impl AgentCa {
    /// A new CA, valid ten years from `now`.
    pub fn generate(now: i64) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Sign)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "signoff agent CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(now - 3600)?;
        params.not_after = at(now + 10 * 365 * 86_400)?;
        params.serial_number = Some(serial());
        let cert = params.self_signed(&key).map_err(PkiError::Sign)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA from its certificate and PKCS#8 key, both PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::BadCa)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(PkiError::BadCa)?;
        let cert_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| PkiError::BadCa(rcgen::Error::CouldNotParseCertificate))?;
        Ok(AgentCa {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The pin agents are given: `SHA256:` + unpadded base64 of SHA-256(CA cert DER).
    pub fn pin(&self) -> String {
        pin_of(&self.cert_der)
    }

    /// A client certificate for `host_id`, for the key in `csr_der`, valid from `now` for
    /// `validity_secs`. Whatever names or usages the request asks for are ignored.
    pub fn issue_client(
        &self,
        csr_der: &[u8],
        host_id: &str,
        now: i64,
        validity_secs: i64,
    ) -> Result<Issued, PkiError> {
        let csr = CertificateSigningRequestDer::from(csr_der);
        let mut req = CertificateSigningRequestParams::from_der(&csr).map_err(PkiError::BadCsr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName(
            host_id.to_owned().try_into().map_err(PkiError::BadCsr)?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Small backdating tolerates clock skew between hosts.
        params.not_before = at(now - 300)?;
        params.not_after = at(now + validity_secs)?;
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        req.params = params;
        let cert = req.signed_by(&self.issuer).map_err(PkiError::Sign)?;
        Ok(Issued {
            pem: cert.pem(),
            not_after: now + validity_secs,
        })
    }

    /// The agent listener's certificate and a new key (PEM), for the given DNS names and IP
    /// addresses.
    pub fn issue_server(
        &self,
        names: &[String],
        now: i64,
        validity_secs: i64,
    ) -> Result<(Issued, String), PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Sign)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(PkiError::Sign)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "signoff control plane");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = at(now - 300)?;
        params.not_after = at(now + validity_secs)?;
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Sign)?;
        Ok((
            Issued {
                pem: cert.pem(),
                not_after: now + validity_secs,
            },
            key.serialize_pem(),
        ))
    }
}

/// The pin of a CA certificate.
pub use signoff_proto::pin::ca_pin as pin_of;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn csr(names: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_pin_is_stable_across_reload() {
        let ca = AgentCa::generate(NOW).unwrap();
        let again = AgentCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(ca.pin(), again.pin());
        assert!(ca.pin().starts_with("SHA256:") && !ca.pin().ends_with('='));
    }

    #[test]
    fn a_client_certificate_names_only_the_host() {
        let ca = AgentCa::generate(NOW).unwrap();
        // The request asks for another name: it is ignored.
        let issued = ca
            .issue_client(&csr(&["evil.example.com"]), "web1", NOW, 86_400)
            .unwrap();
        let der: CertificateDer<'_> =
            rustls::pki_types::pem::PemObject::from_pem_slice(issued.pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, vec!["DNSName(web1)"]);
        assert_eq!(cert.validity().not_after.timestamp(), NOW + 86_400);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
    }

    #[test]
    fn a_forged_csr_is_refused() {
        let ca = AgentCa::generate(NOW).unwrap();
        let mut bad = csr(&["web1"]);
        let n = bad.len();
        bad[n - 5] ^= 0xff; // inside the signature
        assert!(matches!(
            ca.issue_client(&bad, "web1", NOW, 60),
            Err(PkiError::BadCsr(_))
        ));
        assert!(matches!(
            ca.issue_client(b"garbage", "web1", NOW, 60),
            Err(PkiError::BadCsr(_))
        ));
    }
}
