//! A test-side stand-in for the control plane's end of the agent sync stream, to deliver
//! kill orders a real control plane never sends (forged, for another host, expired,
//! replayed, truncated) to the real `signoff-agent run`, and to capture what the agent
//! answers.
//!
//! It is an honest mTLS peer, not a mock of the agent: its server certificate is issued by
//! the real control plane's agent CA (read from that control plane's data directory, with
//! the control plane's own `pki` and `tls` code), so an agent enrolled with that control
//! plane trusts it exactly as it trusts the control plane, and it sees the agent's real
//! client certificate. Only the control plane's half of the protocol is replaced: it
//! answers Hello with a heartbeat, records every message the agent sends, and sends the
//! orders the test hands it.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, Result, anyhow, bail};
use signoff_control_plane::agents::pki::AgentCa;
use signoff_control_plane::agents::tls::server_config;
use signoff_control_plane::bootstrap::{AGENT_CA_CERT, AGENT_CA_KEY};
use signoff_proto::v1;
use signoff_proto::v1::agent_sync_server::{AgentSync, AgentSyncServer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::plane::{WAIT, wait_for};

/// The DNS name the test control plane's agent listener is certified for (its
/// `server_names`), so that agents dial the stand-in by the same name.
const SERVER_NAME: &str = "localhost";

/// What the stand-in has seen and whom it can send to.
#[derive(Debug, Default)]
struct Shared {
    /// Every message received, in order, across connections.
    received: Vec<v1::agent_message::Body>,
    /// The latest connection's outbound half.
    outbox: Option<mpsc::UnboundedSender<Result<v1::ControlMessage, Status>>>,
    /// How many streams have said Hello.
    connections: usize,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(shared: &SharedState) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct StandIn {
    shared: SharedState,
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<v1::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentSync for StandIn {
    type SyncStream = ControlStream;

    async fn sync(
        &self,
        req: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<ControlStream>, Status> {
        if req.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated("no client certificate"));
        }
        let mut inbound = req.into_inner();
        let hello = match inbound.message().await? {
            Some(v1::AgentMessage {
                body: Some(v1::agent_message::Body::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // Nothing new to apply: a heartbeat at the revision the agent has, as the real
        // control plane answers an agent that is up to date.
        let _ = tx.send(Ok(v1::ControlMessage {
            body: Some(v1::control_message::Body::Heartbeat(v1::Heartbeat {
                revision: hello.applied_revision,
                server_time: 0,
            })),
        }));
        {
            let mut s = lock(&self.shared);
            s.received.push(v1::agent_message::Body::Hello(hello));
            s.outbox = Some(tx);
            s.connections += 1;
        }
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                if let Some(body) = msg.body {
                    lock(&shared).received.push(body);
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn renew(
        &self,
        _req: Request<v1::RenewRequest>,
    ) -> Result<Response<v1::RenewResponse>, Status> {
        Err(Status::unimplemented(
            "the stand-in does not renew certificates",
        ))
    }

    async fn sign_host_keys(
        &self,
        _req: Request<v1::SignHostKeysRequest>,
    ) -> Result<Response<v1::SignHostKeysResponse>, Status> {
        Err(Status::unimplemented(
            "the stand-in does not sign host keys",
        ))
    }
}

/// The stand-in, serving on a loopback port until dropped.
#[derive(Debug)]
pub struct OrderServer {
    addr: SocketAddr,
    shared: SharedState,
    runtime: Option<tokio::runtime::Runtime>,
}

impl OrderServer {
    /// Serves with a certificate from the agent CA in the control plane's `data_dir`.
    pub fn start(data_dir: &Path) -> Result<OrderServer> {
        let read = |name: &str| {
            let path = data_dir.join(name);
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        let ca = AgentCa::from_pem(&read(AGENT_CA_CERT)?, &read(AGENT_CA_KEY)?)?;
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs(),
        )?;
        let (cert, key) = ca.issue_server(&[SERVER_NAME.to_owned()], now, 86_400)?;
        let tls = Arc::new(server_config(&ca, &cert.pem, &key)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let shared = SharedState::default();
        let service = StandIn {
            shared: Arc::clone(&shared),
        };
        runtime.spawn(async move {
            let (tx, rx) = mpsc::channel(16);
            let acceptor = TlsAcceptor::from(tls);
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                        }
                    });
                }
            });
            let _ = tonic::transport::Server::builder()
                .add_service(AgentSyncServer::new(service))
                .serve_with_incoming(ReceiverStream::new(rx))
                .await;
        });
        Ok(OrderServer {
            addr,
            shared,
            runtime: Some(runtime),
        })
    }

    /// The URL agents dial: the control plane's certified name, this port.
    pub fn url(&self) -> String {
        format!("https://{SERVER_NAME}:{}", self.addr.port())
    }

    /// Points an enrolled agent's identity (`identity_dir/server`) at the stand-in; read
    /// at the agent's next start.
    pub fn redirect(&self, identity_dir: &Path) -> Result<()> {
        let path = identity_dir.join("server");
        fs::write(&path, self.url()).with_context(|| format!("writing {}", path.display()))
    }

    /// How many streams have said Hello.
    pub fn connections(&self) -> usize {
        lock(&self.shared).connections
    }

    /// Waits until `n` streams have said Hello.
    pub fn wait_connections(&self, n: usize) -> Result<()> {
        wait_for(
            format_args!("{n} agent streams at the stand-in"),
            WAIT,
            || Ok((self.connections() >= n).then_some(())),
        )
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<v1::agent_message::Body> {
        lock(&self.shared).received.clone()
    }

    /// The ids of the sessions the agent listed in its latest full list.
    pub fn listed_sessions(&self) -> Vec<String> {
        self.received()
            .iter()
            .rev()
            .find_map(|b| match b {
                v1::agent_message::Body::SessionList(l) => {
                    Some(l.sessions.iter().map(|s| s.id.clone()).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The ids of the sessions the agent reported as ended.
    pub fn ended_sessions(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter_map(|b| match b {
                v1::agent_message::Body::SessionEnded(e) => Some(e.id.clone()),
                _ => None,
            })
            .collect()
    }

    fn results(&self) -> Vec<v1::OrderResult> {
        self.received()
            .into_iter()
            .filter_map(|b| match b {
                v1::agent_message::Body::OrderResult(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Sends `order` on the latest stream and waits for the agent's result of it (the next
    /// one to arrive: the agent answers orders one by one, in order).
    pub fn deliver(&self, order: v1::SignedOrder) -> Result<v1::OrderResult> {
        // A connecting agent re-reports the results it journaled before its session list:
        // wait for the latest stream's list, so that none is taken for this order's.
        wait_for(
            "the agent's session list on its latest stream",
            WAIT,
            || {
                let received = self.received();
                let hello = received
                    .iter()
                    .rposition(|b| matches!(b, v1::agent_message::Body::Hello(_)))
                    .unwrap_or(0);
                Ok(received[hello..]
                    .iter()
                    .any(|b| matches!(b, v1::agent_message::Body::SessionList(_)))
                    .then_some(()))
            },
        )?;
        let before = self.results().len();
        let outbox = lock(&self.shared)
            .outbox
            .clone()
            .ok_or_else(|| anyhow!("no agent is connected to the stand-in"))?;
        outbox
            .send(Ok(v1::ControlMessage {
                body: Some(v1::control_message::Body::Kill(order)),
            }))
            .map_err(|_| anyhow!("the agent's stream to the stand-in has closed"))?;
        let results = wait_for("the agent's result of the order", WAIT, || {
            let results = self.results();
            Ok((results.len() > before).then_some(results))
        })?;
        match results.into_iter().nth(before) {
            Some(r) => Ok(r),
            None => bail!("result {before} vanished"),
        }
    }
}

impl Drop for OrderServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
