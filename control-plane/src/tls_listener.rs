//! The one TLS accept loop, for the HTTPS listener (axum) and the agent listener (tonic)
//! alike: TCP connections are accepted in one task and each TLS handshake runs in a task
//! of its own with a deadline, so one slow or silent client cannot hold up the others.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait after an accept error that is not the client's (out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Connections whose TLS handshake has completed, in the order they completed. The port
/// stays open until this is dropped.
#[derive(Debug)]
pub(crate) struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`; up to `queue` handshaken connections wait for the
    /// server to take them. `what` names the listener in logs.
    pub(crate) fn new(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        queue: usize,
        what: &'static str,
    ) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(queue);
        tokio::spawn(accept_loop(listener, acceptor, tx, what));
        Ok(TlsListener {
            handshaken: rx,
            local_addr,
        })
    }

    /// The handshaken connections as tonic's `serve_with_incoming` takes them.
    pub(crate) fn into_stream(
        self,
    ) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> + Send + 'static {
        use tokio_stream::StreamExt as _;
        ReceiverStream::new(self.handshaken).map(|(tls, _)| Ok(tls))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(conn) => conn,
            // The accept task only ends once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Runs until the [`TlsListener`] is dropped, which closes the port.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    what: &'static str,
) {
    loop {
        let accepted = tokio::select! {
            res = listener.accept() => res,
            () = tx.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                warn!(
                    "{what}: cannot accept connections, retrying in {ACCEPT_ERROR_BACKOFF:?}: {e}"
                );
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                    () = tx.closed() => return,
                }
            }
        };
        // Small writes (heartbeats, SSE events) go out at once.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => debug!(%peer, "{what}: TLS handshake failed: {e}"),
                Err(_) => debug!(%peer, "{what}: TLS handshake timed out"),
            }
        });
    }
}

/// An error of one connection (the client gave up before it was accepted), not of the
/// listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
