//! The agent listener: the shared TLS accept loop (`tls_listener.rs`), then tonic.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use signoff_proto::v1::agent_sync_server::AgentSyncServer;
use signoff_proto::v1::enrollment_server::EnrollmentServer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::sync::AgentServer;
use crate::tls_listener::TlsListener;

/// Handshaken agent connections waiting for tonic to take them (a fleet reconnecting at
/// once handshakes faster than one task can hand them over).
const ACCEPT_QUEUE: usize = 256;

/// Why the agent listener stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The listening socket cannot be read.
    #[error("cannot read the agent listener's address")]
    Socket(#[source] std::io::Error),
    /// tonic stopped serving.
    #[error("the agent gRPC server stopped")]
    Serve(#[source] tonic::transport::Error),
}

/// Serves the agent services on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    server: AgentServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ListenError> {
    let incoming = TlsListener::new(listener, TlsAcceptor::from(tls), ACCEPT_QUEUE, "agents")
        .map_err(ListenError::Socket)?;
    // Dropping the stream when tonic returns closes the port.
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(EnrollmentServer::new(server.clone()))
        .add_service(AgentSyncServer::new(server))
        .serve_with_incoming_shutdown(incoming.into_stream(), shutdown)
        .await
        .map_err(ListenError::Serve)
}
