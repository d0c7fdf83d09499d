//! How the agent reaches the control plane: TLS 1.3 to the agent listener, with the server
//! checked against the agent CA — by its pin when enrolling, by the stored CA certificate
//! afterwards — and the agent's own client certificate once it has one.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{Channel, Endpoint, Uri};

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The server URL is not `https://HOST:PORT`.
    #[error("server URL {0:?} is not https://HOST:PORT")]
    BadUrl(String),
    /// A PEM input does not parse.
    #[error("{0} does not parse as PEM")]
    Pem(&'static str),
    /// rustls refused the configuration.
    #[error("TLS configuration refused")]
    Rustls(#[from] rustls::Error),
    /// The connection failed.
    #[error("cannot connect to {url}")]
    Connect {
        /// The server.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub use signoff_proto::pin::ca_pin as pin_of;

/// Accepts a server whose chain includes the CA with the given pin and whose certificate
/// that CA signed for the name connected to. Used once, at enrollment, before the agent
/// has the CA certificate.
#[derive(Debug)]
struct PinnedCa {
    pin: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| pin_of(c) == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the server's agent CA does not match the pin {} (wrong --ca-pin, or not the signoff control plane)",
                    self.pin
                ))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn finish(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// TLS for enrollment: the server is trusted through the CA pin; no client certificate.
pub fn enroll_config(pin: &str) -> Result<Arc<ClientConfig>, TransportError> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            pin: pin.to_owned(),
            provider,
        }))
        .with_no_client_auth();
    Ok(finish(config))
}

/// TLS for an enrolled agent: the server must chain to the stored agent CA, and the agent
/// presents its client certificate. `client` is `None` only to test that the server
/// refuses such a connection.
pub fn mtls_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|_| TransportError::Pem("agent CA certificate"))?)?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| TransportError::Pem("client certificate"))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|_| TransportError::Pem("client key"))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(finish(config))
}

/// How long one address may take to accept a TCP connection before the next is tried: a
/// replica whose machine is gone must not hold the agent for the kernel's minutes.
const CONNECT_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(3);

/// One control plane address: where to connect and the name its certificate must carry.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
    name: ServerName<'static>,
}

fn target(url: &str) -> Result<Target, TransportError> {
    let bad = || TransportError::BadUrl(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad());
    }
    let host = uri.host().ok_or_else(bad)?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|_| bad())?;
    Ok(Target { host, port, name })
}

/// The URLs of a server list: `https://HOST:PORT`, several separated by commas or white
/// space (the control plane's replicas). Each is checked; an empty list is refused.
pub fn server_urls(list: &str) -> Result<Vec<&str>, TransportError> {
    let urls: Vec<&str> = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(TransportError::BadUrl(list.to_owned()));
    }
    for url in &urls {
        target(url)?;
    }
    Ok(urls)
}

/// A gRPC channel to the control plane at `servers` (see [`server_urls`]) over `tls`.
/// Connects lazily: the first call reports connection errors.
///
/// Each new connection tries the servers in turn, from the one that last answered, and
/// every address a name resolves to, each for at most [`CONNECT_ATTEMPT`]: when the
/// replica an agent is connected to dies, the agent's next connection (after its backoff)
/// goes to another, and its sync resumes there from the revision it acked.
pub fn channel(servers: &str, tls: Arc<ClientConfig>) -> Result<Channel, TransportError> {
    let targets: Arc<Vec<Target>> = Arc::new(
        server_urls(servers)?
            .into_iter()
            .map(target)
            .collect::<Result<_, _>>()?,
    );
    let first = &targets[0];
    // tonic is given plain http:// and a connector that does TLS itself, so that rustls
    // is configured here and nowhere else.
    let endpoint = Endpoint::from_shared(format!("http://{}:{}", first.host, first.port))
        .map_err(|_| TransportError::BadUrl(servers.to_owned()))?
        .connect_timeout(CONNECT_ATTEMPT * 4)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_timeout(std::time::Duration::from_secs(20));
    let connector = tokio_rustls::TlsConnector::from(tls);
    let preferred = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let targets = targets.clone();
            let preferred = preferred.clone();
            async move {
                use std::sync::atomic::Ordering;
                let start = preferred.load(Ordering::Relaxed);
                let mut last = None;
                for i in 0..targets.len() {
                    let index = (start + i) % targets.len();
                    match connect_one(&targets[index], &connector).await {
                        Ok(stream) => {
                            preferred.store(index, Ordering::Relaxed);
                            return Ok(hyper_util::rt::TokioIo::new(stream));
                        }
                        Err(e) => {
                            tracing::debug!(server = %targets[index].host, port = targets[index].port, error = %e, "control plane address did not connect");
                            last = Some(e);
                        }
                    }
                }
                Err(last.unwrap_or_else(|| std::io::Error::other("no control plane address")))
            }
        })),
    )
}

/// TCP to each address `target` resolves to, in turn, then TLS.
async fn connect_one(
    target: &Target,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut last = None;
    for addr in tokio::net::lookup_host((
        target.host.trim_start_matches('[').trim_end_matches(']'),
        target.port,
    ))
    .await?
    {
        let tcp = match tokio::time::timeout(CONNECT_ATTEMPT, tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                last = Some(e);
                continue;
            }
            Err(_) => {
                last = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{addr} did not accept within {CONNECT_ATTEMPT:?}"),
                ));
                continue;
            }
        };
        tcp.set_nodelay(true)?;
        return connector.connect(target.name.clone(), tcp).await;
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} resolves to no address", target.host),
        )
    }))
}

/// What a failed call to the control plane means, in words for `signoff-agent status`.
///
/// tonic reports a connection that could not be made as a `Status` of code `Unavailable`,
/// the same type as an answer the control plane sends; only the error chain beneath it
/// tells them apart. A refused connection, an unreachable address or a connection lost
/// midway is not a refusal by the control plane, and saying so would send an operator to
/// the wrong place.
pub fn describe_status(status: &tonic::Status) -> String {
    use std::io::ErrorKind;
    let mut io_kind = None;
    let mut innermost = None;
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        innermost = Some(e.to_string());
        source = e.source();
    }
    match io_kind {
        Some(ErrorKind::ConnectionRefused) => {
            "connection refused: nothing listens at the control plane's agent address (is it running?)"
                .to_owned()
        }
        Some(
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
            | ErrorKind::NotConnected,
        ) => format!(
            "the connection to the control plane was lost: {}",
            innermost.unwrap_or_else(|| status.message().to_owned())
        ),
        Some(_) => format!(
            "the control plane is unreachable: {}",
            innermost.unwrap_or_else(|| status.message().to_owned())
        ),
        // No I/O error in reach, yet something beneath the status: it was made here from a
        // transport failure (a TLS handshake, a keep-alive timeout, an HTTP/2 stream that
        // broke, whose I/O cause h2 does not expose), not decoded from the control plane's
        // answer, which carries no source.
        None if innermost.is_some() => {
            let innermost = innermost.unwrap_or_default();
            if status.code() == tonic::Code::Unavailable {
                format!("the control plane is unreachable: {innermost}")
            } else {
                format!(
                    "the connection to the control plane failed: {}: {innermost}",
                    status.message()
                )
            }
        }
        None => format!("the control plane refused: {}", status.message()),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use super::describe_status;

    /// A status as tonic makes it from a failed connection: `Unavailable`, with the
    /// connector's error beneath it.
    fn transport_failure(kind: io::ErrorKind, text: &str) -> tonic::Status {
        let mut s = tonic::Status::unavailable("tcp connect error");
        s.set_source(Arc::new(io::Error::new(kind, text.to_owned())));
        s
    }

    #[test]
    fn a_refused_connection_is_not_a_refusal_by_the_control_plane() {
        let msg = describe_status(&transport_failure(
            io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        assert!(msg.starts_with("connection refused"), "{msg}");
        assert!(!msg.contains("the control plane refused"), "{msg}");
    }

    #[test]
    fn an_unreachable_address_says_unreachable() {
        let msg = describe_status(&transport_failure(
            io::ErrorKind::HostUnreachable,
            "No route to host (os error 113)",
        ));
        assert_eq!(
            msg,
            "the control plane is unreachable: No route to host (os error 113)"
        );
        let mut tls = tonic::Status::unavailable("tls handshake");
        tls.set_source(Arc::new(std::fmt::Error));
        assert!(
            describe_status(&tls).starts_with("the control plane is unreachable"),
            "{}",
            describe_status(&tls)
        );
    }

    #[test]
    fn a_connection_lost_midway_says_so() {
        let msg = describe_status(&transport_failure(
            io::ErrorKind::ConnectionReset,
            "Connection reset by peer (os error 104)",
        ));
        assert!(
            msg.starts_with("the connection to the control plane was lost"),
            "{msg}"
        );
    }

    #[test]
    fn a_stream_broken_without_an_io_cause_in_reach_is_no_refusal() {
        // As tonic reports a body read that failed when the server died: code Unknown, and
        // beneath it an error (h2's) whose own I/O cause is not exposed as a source.
        let mut s =
            tonic::Status::unknown("h2 protocol error: error reading a body from connection");
        s.set_source(Arc::new(std::fmt::Error));
        let msg = describe_status(&s);
        assert!(
            msg.starts_with("the connection to the control plane failed: h2 protocol error"),
            "{msg}"
        );
    }

    #[test]
    fn an_answer_of_the_control_plane_is_a_refusal() {
        let msg = describe_status(&tonic::Status::permission_denied(
            "host \"web1\" has been removed or was never enrolled",
        ));
        assert_eq!(
            msg,
            "the control plane refused: host \"web1\" has been removed or was never enrolled"
        );
        // Unavailable sent by the server itself (nothing beneath it) is its answer too.
        let msg = describe_status(&tonic::Status::unavailable("shutting down"));
        assert_eq!(msg, "the control plane refused: shutting down");
    }
}
