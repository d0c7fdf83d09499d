//! `signoff-server serve`: check everything, bind, serve, and on SIGTERM or SIGINT stop
//! accepting, drain in-flight requests within `drain_timeout`, exit.
//!
//! Order of a start: the configuration and the HTTPS files are validated, the data
//! directory and the server's keys are checked (or made), the store is opened and
//! migrated; only then is the HTTP port bound. The first admin token is made after the
//! bind, so that the notice printing it can name the real address.
//!
//! The admin CLI writes to the same store from another process. A background task reads
//! the latest revision every [`REVISION_POLL_INTERVAL`] and publishes it to the service's
//! subscribers, so that those writes reach agents too.

use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::agents::listener as agent_listener;
use crate::agents::sync::AgentServer;
use crate::agents::{pki, tls as agent_tls};
use crate::api::{HttpOptions, Metrics};
use crate::bootstrap::{self, BootstrapError, FirstStart, ServerKeys};
use crate::config::{Config, ConfigError, format_duration};
use crate::service::{Clock, Service, ServiceError, SystemClock};
use crate::store::{self, Announcement, OpenError};
use crate::tls_listener::TlsListener;

/// How often the store's latest revision is read, for writes made by other processes.
pub const REVISION_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often revocations whose certificates have expired are withdrawn: an expired
/// certificate is refused by sshd anyway, so a few seconds late costs nothing.
pub const REVOCATION_EXPIRY_INTERVAL: Duration = Duration::from_secs(5);
/// How often sign-offs and kill orders waiting on offline hosts are checked against
/// `[alerts.incomplete_action] offline_after`: an alert is at most this late.
pub const OFFLINE_ALERT_INTERVAL: Duration = Duration::from_secs(5);
/// How often ended sessions past their retention are deleted.
const SESSION_PRUNE_INTERVAL: Duration = Duration::from_secs(600);
/// How often an idle agent stream carries a heartbeat (strict-mode agents count on it).
const AGENT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Completed TLS handshakes waiting for the HTTP server to take them.
const TLS_ACCEPT_QUEUE: usize = 64;

/// Why the server did not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration, or a file it names, is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory or the keys in it are not usable.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// The store opened but cannot be read.
    #[error("cannot read the store")]
    Service(#[source] ServiceError),
    /// An address cannot be bound.
    #[error("cannot listen on {addr} (is another server running there?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The agent listener's TLS cannot be set up from the agent CA.
    #[error("cannot set up the agent listener's TLS")]
    AgentTls(#[source] pki::PkiError),
    /// The signal handlers cannot be installed.
    #[error("cannot install the SIGTERM and SIGINT handlers")]
    Signals(#[source] io::Error),
    /// The HTTP server stopped without being asked to.
    #[error("the HTTP server stopped unexpectedly")]
    Serve(#[source] io::Error),
    /// The certificate listener cannot be set up.
    #[error(transparent)]
    CertSsh(#[from] crate::cert_ssh::CertSshError),
    /// An event sink (`[delivery]`) cannot start.
    #[error(transparent)]
    Delivery(#[from] crate::delivery::DeliveryError),
    /// The first-start notice cannot be written to stdout.
    #[error("cannot print the first-start notice (admin token and CA pin) to stdout")]
    Output(#[source] io::Error),
}

impl ServerError {
    /// Whether the operator's configuration is at fault (exit code 64).
    pub fn is_config(&self) -> bool {
        matches!(self, ServerError::Config(_))
    }
}

/// Serves until SIGTERM or SIGINT, then drains and returns. `app` makes the HTTP router
/// from the service. The first-start notice goes to stdout; logs go to stderr.
pub async fn run(
    config: Config,
    app: impl FnOnce(Service, Arc<Metrics>, HttpOptions) -> Router,
) -> Result<(), ServerError> {
    raise_open_file_limit();
    let shutdown = shutdown_signal()?;
    let mut server = Server::start(config).await?;
    if let Some(notice) = server.take_first_start() {
        let mut out = io::stdout().lock();
        write!(out, "{notice}")
            .and_then(|()| out.flush())
            .map_err(ServerError::Output)?;
    }
    let hooks = crate::hooks::router(server.service().clone(), server.webhook_secret.clone());
    // The dashboard at `/`, beside the API's `/api/v1`.
    let dashboard = crate::dashboard::router(server.service().clone(), &server.config);
    let router = app(
        server.service().clone(),
        server.metrics(),
        server.http_options(),
    )
    .merge(hooks)
    .merge(dashboard);
    server.serve(observed(router), shutdown).await
}

/// How long a request may take to produce its response. A live stream (SSE) produces its
/// response at once and streams the body after, so it is not cut by this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP layers every route gets, from tower-http rather than code of our own: a
/// request id (`x-request-id`, kept if the client sent one, returned on the response)
/// carried by a tracing span per request; a deadline; and a panic in a handler answered
/// with a 500, logged, while the server serves on.
pub fn observed(router: Router) -> Router {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::TraceLayer;
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    let body =
        serde_json::json!({"error": "internal", "message": "internal error: the server logged it"});
    axum::response::IntoResponse::into_response((
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(body),
    ))
}

/// A server that has checked everything and bound its HTTP port, not yet serving.
pub struct Server {
    config: Config,
    service: Service,
    keys: ServerKeys,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    local_addr: SocketAddr,
    first_start: Option<FirstStart>,
    metrics: Arc<Metrics>,
    /// `/metrics` on its own port (`[metrics] listen`).
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    agents: AgentListener,
    /// The certificate listener (`[ca] ssh_listen`), bound, with its SSH configuration.
    cert_ssh: Option<(TcpListener, SocketAddr, Arc<russh::server::Config>)>,
    /// The HR webhook's key, read and checked at start; the webhook is off without it.
    webhook_secret: Option<crate::hooks::WebhookSecret>,
}

/// The bound agent listener and what it serves.
struct AgentListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    server: AgentServer,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Validates, prepares the data directory and keys, opens the store, binds the HTTP
    /// port and makes the first admin token if there is none.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        let tls = config.tls_server_config()?.map(TlsAcceptor::from);
        let webhook_secret = config.webhook_secret()?;
        bootstrap::ensure_data_dir(&config.data_dir)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let keys = bootstrap::prepare_keys(&config.data_dir, clock.now())?;
        let pool = store::open(config.database_url.expose()).await?;
        let service = Service::new(pool, clock)
            .await
            .map_err(ServerError::Service)?;
        // No agent is connected to this replica yet, whatever its last run left recorded;
        // other replicas' agents stay online while their leases hold.
        let replica = bootstrap::replica_id(&config.data_dir)?;
        service
            .start_replica(&replica)
            .await
            .map_err(ServerError::Service)?;
        info!(replica = %replica, "replica lease taken");

        let addr = config.http.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;

        service.set_order_signer(keys.order_signer.private_key().clone());
        // Checked when the configuration loaded.
        if let Ok(rules) = config.alerts.check() {
            service.set_alert_rules(rules);
        }
        crate::delivery::start(&service, &config.delivery).await?;
        let user_ca_made =
            bootstrap::install_user_ca(&service, &config.data_dir, &config.ca).await?;
        if let Some(ca) = service.user_ca() {
            info!(fingerprint = %ca.fingerprint, "user CA");
        }
        bootstrap::install_host_ca(&service, &config.data_dir)?;
        if let Some(ca) = service.host_ca() {
            info!(fingerprint = %ca.fingerprint, "host CA");
        }
        let metrics = Arc::new(Metrics::default());
        let metrics_listener = match config.metrics_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?;
                let local = listener
                    .local_addr()
                    .map_err(|source| ServerError::Bind { addr, source })?;
                Some((listener, local))
            }
            None => None,
        };
        let agents = bind_agents(&config, &keys, &service, &metrics).await?;
        let cert_ssh = match config.ca.ssh_listen {
            Some(addr) => {
                let host_key = bootstrap::cert_ssh_host_key(&config.data_dir)?;
                let ssh_config = crate::cert_ssh::server_config(&host_key)?;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?;
                let local = listener
                    .local_addr()
                    .map_err(|source| ServerError::Bind { addr, source })?;
                Some((listener, local, Arc::new(ssh_config)))
            }
            None => None,
        };

        let token = bootstrap::admin_token(&service).await?;
        let operator = bootstrap::admin_operator(&service).await?;
        let url = format!(
            "{}://{local_addr}",
            if tls.is_some() { "https" } else { "http" }
        );
        info!(
            data_dir = %config.data_dir.display(),
            database = %config.database_url,
            revision = service.revision(),
            "store open"
        );
        info!(pin = %keys.agent_ca.pin, "agent CA");
        let first_start =
            FirstStart::new(&config.data_dir, url, &keys, token, operator, user_ca_made);
        Ok(Server {
            config,
            service,
            keys,
            listener,
            tls,
            local_addr,
            first_start,
            metrics,
            metrics_listener,
            agents,
            cert_ssh,
            webhook_secret,
        })
    }

    /// The bound agent listener's address.
    pub fn agent_addr(&self) -> SocketAddr {
        self.agents.local_addr
    }

    /// The bound metrics listener's address, when `[metrics] listen` gives it one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, a)| *a)
    }

    /// The bound certificate listener's address, when `[ca] ssh_listen` is set.
    pub fn cert_ssh_addr(&self) -> Option<SocketAddr> {
        self.cert_ssh.as_ref().map(|(_, a, _)| *a)
    }

    /// What the configuration decides about the HTTP surface.
    pub fn http_options(&self) -> HttpOptions {
        HttpOptions {
            krl_public: self.config.krl_public,
            metrics: self.config.metrics_listen.is_none(),
        }
    }

    /// Counters shared by the HTTP layer and the agent listener.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The bound HTTP address (the real port when the configuration said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The service over the store.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The agent CA and the order-signing key.
    pub fn keys(&self) -> &ServerKeys {
        &self.keys
    }

    /// What this start made and must tell the operator once; `None` after the first
    /// call, or when it made nothing.
    pub fn take_first_start(&mut self) -> Option<FirstStart> {
        self.first_start.take()
    }

    /// Serves `app` until `shutdown` completes, then stops accepting, waits up to the
    /// configured drain timeout for in-flight requests and returns. Requests still
    /// running then are dropped; that is logged, not an error.
    pub async fn serve(
        self,
        app: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let Server {
            config,
            service,
            listener,
            tls,
            local_addr,
            agents,
            metrics,
            metrics_listener,
            cert_ssh,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let poller = tokio::spawn(poll_revisions_and_flush_acks(
            service.clone(),
            REVISION_POLL_INTERVAL,
            stop_rx.clone(),
        ));
        let leaser = tokio::spawn(renew_lease(
            service.clone(),
            crate::service::RENEW_EVERY,
            stop_rx.clone(),
        ));
        let expirer = tokio::spawn(expire_revocations(
            service.clone(),
            REVOCATION_EXPIRY_INTERVAL,
            stop_rx.clone(),
        ));
        let offline_alerter = tokio::spawn(alert_offline_waits(
            service.clone(),
            OFFLINE_ALERT_INTERVAL,
            stop_rx.clone(),
        ));
        let pruner = tokio::spawn(prune_sessions(
            service.clone(),
            config.session_retention,
            stop_rx.clone(),
        ));
        let graceful = {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            }
        };
        info!(
            "listening for agents on https://{} (mTLS)",
            agents.local_addr
        );
        let agent_shutdown = {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            }
        };
        let agent_task = tokio::spawn(agent_listener::serve(
            agents.listener,
            agents.tls,
            agents.server,
            agent_shutdown,
        ));
        if let Some((listener, addr)) = metrics_listener {
            info!("serving /metrics on http://{addr}");
            let app = crate::api::metrics_router(service.clone(), metrics);
            let mut stop = stop_rx.clone();
            tokio::spawn(
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    })
                    .into_future(),
            );
        }
        if let Some((listener, addr, ssh_config)) = cert_ssh {
            info!(
                "issuing certificates over SSH on {addr} (ssh -p {} cert@HOST < KEY.pub)",
                addr.port()
            );
            let mut stop = stop_rx.clone();
            tokio::spawn(crate::cert_ssh::serve(
                listener,
                ssh_config,
                service.clone(),
                async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                },
            ));
        }
        let mut http = match tls {
            None => {
                info!("listening for HTTP on http://{local_addr}");
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                tokio::spawn(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(graceful)
                        .into_future(),
                )
            }
            Some(acceptor) => {
                info!("listening for HTTPS on https://{local_addr}");
                let app = over_https(app);
                // `tap_io` makes the peer address available as `ConnectInfo<SocketAddr>`,
                // as it is over plain TCP.
                let listener = TlsListener::new(listener, acceptor, TLS_ACCEPT_QUEUE, "HTTPS")
                    .map_err(ServerError::Serve)?
                    .tap_io(|_| ());
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                tokio::spawn(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(graceful)
                        .into_future(),
                )
            }
        };

        let stopped_early = tokio::select! {
            () = shutdown => None,
            res = &mut http => Some(res),
        };
        stop_tx.send_replace(true);
        let _ = poller.await;
        let _ = leaser.await;
        let _ = expirer.await;
        let _ = offline_alerter.await;
        let _ = pruner.await;
        let _ = service.flush_contacts().await;
        // Agent streams are long-lived: they end at once and their agents reconnect
        // elsewhere or after the restart, with backoff.
        agent_task.abort();
        // The other replicas count this one's hosts offline at their next sweep.
        if let Err(e) = service.end_replica().await {
            warn!("cannot end this replica's lease (it lapses by itself): {e}");
        }
        match stopped_early {
            Some(res) => Err(ServerError::Serve(match res {
                Ok(Ok(())) => io::Error::other("the accept loop ended"),
                Ok(Err(e)) => e,
                Err(join) => io::Error::other(join),
            })),
            None => {
                let drain = config.drain_timeout;
                info!(
                    "stopped accepting; draining in-flight requests for up to {}",
                    format_duration(drain)
                );
                match tokio::time::timeout(drain, &mut http).await {
                    Ok(Ok(Ok(()))) => {
                        // Every request is done: close the store cleanly (checkpoints the
                        // WAL). Commits are durable already; this only tidies up.
                        let _ =
                            tokio::time::timeout(Duration::from_secs(2), service.store().close())
                                .await;
                        info!("drained; exiting");
                        Ok(())
                    }
                    Ok(Ok(Err(e))) => Err(ServerError::Serve(e)),
                    Ok(Err(join)) => Err(ServerError::Serve(io::Error::other(join))),
                    Err(_) => {
                        http.abort();
                        warn!(
                            "drain timeout of {} elapsed; dropping the requests still in flight",
                            format_duration(drain)
                        );
                        Ok(())
                    }
                }
            }
        }
    }
}

/// One year, the usual HSTS lifetime. No `includeSubDomains`: other names under the
/// server's domain are not ours to pin to HTTPS.
const HSTS: &str = "max-age=31536000";

/// `app` as served over HTTPS: every response tells browsers never to try plain HTTP
/// here again (HSTS; RFC 6797 has browsers ignore it over plain HTTP, so it is not sent
/// there).
fn over_https(app: Router) -> Router {
    app.layer(axum::middleware::map_response(add_hsts))
}

async fn add_hsts(mut res: axum::response::Response) -> axum::response::Response {
    res.headers_mut().insert(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static(HSTS),
    );
    res
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed now, so a signal
/// that arrives during startup is not lost.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signals)?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!("{name} received: shutting down");
    })
}

/// Raises the soft open-file limit to the hard limit: each agent holds a connection.
fn raise_open_file_limit() {
    let before = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _hard)) => soft,
        Err(e) => {
            warn!("cannot read the open-file limit: {e}");
            return;
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(after) if after > before => info!("raised the open-file limit from {before} to {after}"),
        Ok(after) => info!("open-file limit {after}"),
        Err(e) => warn!("cannot raise the open-file limit from {before}: {e}"),
    }
}

/// Publishes revisions committed by other processes until `stop` turns true.
/// Withdraws expired revocations every `every` until `stop`.
/// Deletes ended sessions older than `retention` (`[sessions] retention`), in batches, at
/// start and then every [`SESSION_PRUNE_INTERVAL`].
async fn prune_sessions(service: Service, retention: Duration, mut stop: watch::Receiver<bool>) {
    const BATCH: u32 = 5000;
    let retention = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(SESSION_PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let mut deleted = 0;
        loop {
            match service.prune_ended_sessions(retention, BATCH).await {
                Ok(n) => {
                    deleted += n;
                    if n < u64::from(BATCH) || *stop.borrow() {
                        break;
                    }
                }
                Err(e) => {
                    warn!("cannot delete old sessions (retrying): {e}");
                    break;
                }
            }
        }
        if deleted > 0 {
            info!(count = deleted, "ended sessions past retention deleted");
        }
    }
}

/// Every `every` until `stop`: renews this replica's lease, counts offline the hosts of
/// replicas whose leases lapsed ([`Service::renew_lease`]).
async fn renew_lease(service: Service, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        match service.renew_lease().await {
            Ok(()) if failing => {
                info!("the replica lease is renewed again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                warn!("cannot renew the replica lease (retrying every {every:?}): {e}");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

async fn expire_revocations(service: Service, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let actor = crate::service::Actor("expiry".to_owned());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        match service.expire_revocations(&actor).await {
            Ok(0) => {}
            Ok(n) => info!(count = n, "expired revocations withdrawn"),
            Err(e) => warn!("cannot withdraw expired revocations (retrying): {e}"),
        }
    }
}

/// Every `every` until `stop`: raises the alerts for sign-offs and kill orders waiting on
/// offline hosts past the threshold ([`Service::alert_offline_waits`]).
async fn alert_offline_waits(service: Service, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        match service.alert_offline_waits().await {
            Ok(0) => {}
            Ok(n) => info!(
                count = n,
                "alerts raised for actions waiting on offline hosts"
            ),
            Err(e) => warn!("cannot check actions waiting on offline hosts (retrying): {e}"),
        }
    }
}

/// Every `every`: writes the agents' buffered acks (one transaction), then reads the latest
/// revision, so that writes of another process (the admin CLI, another replica) reach the
/// streams. On PostgreSQL the revisions other replicas commit also arrive as they commit
/// (LISTEN/NOTIFY) and are published at once; the poll stays as the backstop for a
/// notification lost while the listening connection was down.
async fn poll_revisions_and_flush_acks(
    service: Service,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut listener = match service.store().listener().await {
        Ok(l) => l,
        Err(e) => {
            warn!("cannot listen for other replicas' revisions (polling every {every:?}): {e}");
            None
        }
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // (The guard wait_for returns is dropped here: it must not live across an await.)
            _ = async { drop(stop.wait_for(|stopped| *stopped).await) } => return,
            n = next_notification(listener.as_mut()), if listener.is_some() => {
                let announced = match &n {
                    Ok(Some(n)) => Announcement::of(n),
                    _ => None,
                };
                match announced {
                    // Kill orders forwarded to whichever replica holds the host's stream.
                    Some(Announcement::Orders(host)) => {
                        if let Err(e) = service.deliver_forwarded(Some(&host)).await {
                            warn!("cannot send the kill orders forwarded for {host}: {e}");
                        }
                        continue;
                    }
                    // What another replica's agents reported, for live views here.
                    Some(Announcement::Live(payload)) => {
                        if let Err(e) = service.receive_live(&payload).await {
                            warn!("cannot take in a live change from another replica: {e}");
                        }
                        continue;
                    }
                    _ => {}
                }
                match n {
                    // A revision committed somewhere: read it (the payload is only a hint;
                    // the store says what is committed).
                    Ok(Some(_)) => {}
                    // The connection was lost and is being made again: what was announced
                    // meanwhile is read below.
                    Ok(None) => {}
                    Err(e) => {
                        warn!("listening for other replicas' revisions failed (polling every {every:?}): {e}");
                        listener = None;
                    }
                }
                if let Err(e) = service.refresh_revision().await {
                    warn!("cannot read the latest revision: {e}");
                }
                continue;
            }
        }
        if let Err(e) = service.flush_contacts().await {
            warn!("cannot record agents' acks (retrying): {e}");
        }
        // Kill orders forwarded by a process whose announcement was missed (or that cannot
        // announce: the admin CLI on SQLite).
        if let Err(e) = service.deliver_forwarded(None).await
            && !failing
        {
            warn!("cannot look for forwarded kill orders: {e}");
        }
        match service.refresh_revision().await {
            Ok(_) if failing => {
                info!("reading the latest revision works again");
                failing = false;
            }
            Ok(_) => {}
            Err(e) if !failing => {
                warn!("cannot read the latest revision (retrying every {every:?}): {e}");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// The next notification on `listener`; never ready without one.
async fn next_notification(
    listener: Option<&mut sqlx::postgres::PgListener>,
) -> sqlx::Result<Option<sqlx::postgres::PgNotification>> {
    match listener {
        Some(l) => l.try_recv().await,
        None => std::future::pending().await,
    }
}

/// Binds the agent listener with a certificate from the agent CA for the configured names.
async fn bind_agents(
    config: &Config,
    keys: &ServerKeys,
    service: &Service,
    metrics: &Arc<Metrics>,
) -> Result<AgentListener, ServerError> {
    let now = service.now();
    let ca = Arc::new(
        pki::AgentCa::from_pem(&keys.agent_ca.cert_pem, keys.agent_ca.key_pem())
            .map_err(ServerError::AgentTls)?,
    );
    // Re-issued at every start, so a year is plenty.
    let (cert, key) = ca
        .issue_server(&config.agents.server_names, now, 365 * 86_400)
        .map_err(ServerError::AgentTls)?;
    let tls = agent_tls::server_config(&ca, &cert.pem, &key)
        .map_err(|e| ServerError::AgentTls(pki::PkiError::Tls(e.to_string())))?;
    let addr = config.agents.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let validity = i64::try_from(config.agents.cert_validity.as_secs()).unwrap_or(86_400);
    let server = AgentServer::new(
        service.clone(),
        ca,
        metrics.clone(),
        validity,
        AGENT_HEARTBEAT,
    );
    Ok(AgentListener {
        listener,
        local_addr,
        tls: Arc::new(tls),
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Actor, NewUser, SessionEvent};

    #[tokio::test]
    async fn responses_over_https_carry_hsts() {
        use tower::ServiceExt as _;
        let (svc, _) = crate::service::testing::service().await;
        let app = over_https(crate::api::router(svc));
        for path in ["/api/v1/openapi.json", "/api/v1/users", "/nowhere"] {
            let req = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(
                res.headers()
                    .get(axum::http::header::STRICT_TRANSPORT_SECURITY)
                    .unwrap(),
                "max-age=31536000",
                "{path}"
            );
        }
    }

    /// A handler that panics gets a JSON 500, the server answers the next request, and
    /// every response carries its request id (the client's own when it sent one).
    #[tokio::test]
    async fn a_panicking_handler_is_a_500_and_requests_carry_ids() {
        use tower::ServiceExt as _;
        let app = observed(
            Router::new()
                .route(
                    "/boom",
                    axum::routing::get(|| async {
                        std::panic::panic_any("a bug in a handler");
                        #[allow(unreachable_code)]
                        "unreachable"
                    }),
                )
                .route("/ok", axum::routing::get(|| async { "ok" })),
        );
        let req = |path: &str| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let res = app.clone().oneshot(req("/boom")).await.unwrap();
        assert_eq!(res.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.headers().get("x-request-id").is_some());
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "internal");
        let res = app.clone().oneshot(req("/ok")).await.unwrap();
        assert_eq!(res.status(), axum::http::StatusCode::OK);
        let mut mine = req("/ok");
        mine.headers_mut().insert(
            "x-request-id",
            axum::http::HeaderValue::from_static("abc-1"),
        );
        let res = app.oneshot(mine).await.unwrap();
        assert_eq!(res.headers().get("x-request-id").unwrap(), "abc-1");
    }

    #[tokio::test]
    async fn writes_of_another_process_reach_subscribers() {
        let tmp = tempfile::tempdir().unwrap();
        let url = store::test_url(tmp.path()).await;
        let server = Service::new(store::open(&url).await.unwrap(), Arc::new(SystemClock))
            .await
            .unwrap();
        // The admin CLI: its own pool, its own service, the same file.
        let cli = Service::new(store::open(&url).await.unwrap(), Arc::new(SystemClock))
            .await
            .unwrap();
        let mut rx = server.subscribe();
        let (stop_tx, stop_rx) = watch::channel(false);
        let poller = tokio::spawn(poll_revisions_and_flush_acks(
            server.clone(),
            Duration::from_millis(10),
            stop_rx,
        ));
        let user = NewUser {
            name: "alice".into(),
            ..Default::default()
        };
        cli.create_user(&Actor::cli(), user, "").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|r| *r == 1))
            .await
            .expect("the poller publishes the CLI's revision")
            .unwrap();
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), poller)
            .await
            .expect("the poller stops when asked")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_replicas_sessions_and_signoff_progress_reach_live_views() {
        let tmp = tempfile::tempdir().unwrap();
        let url = store::test_url(tmp.path()).await;
        let a = Service::new(store::open(&url).await.unwrap(), Arc::new(SystemClock))
            .await
            .unwrap();
        let b = Service::new(store::open(&url).await.unwrap(), Arc::new(SystemClock))
            .await
            .unwrap();
        a.start_replica("a").await.unwrap();
        b.start_replica("b").await.unwrap();
        let mut sessions = b.watch_sessions();
        let mut signoffs = b.watch_signoffs();
        let (stop_tx, stop_rx) = watch::channel(false);
        let poller = tokio::spawn(poll_revisions_and_flush_acks(
            b.clone(),
            Duration::from_millis(10),
            stop_rx,
        ));
        // Give b's listener its connection before a speaks.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let session = signoff_proto::v1::Session {
            id: "7:1".into(),
            account: "deploy".into(),
            key_id: "alice@corp".into(),
            source_address: "127.0.0.1".into(),
            source_port: 50000,
            started_at: 1_800_000_000,
            ..Default::default()
        };
        a.session_started("web1", &session).await.unwrap();
        a.signoff_progressed();
        if a.store().backend() == store::Backend::Sqlite {
            // One server per SQLite database: there is no other replica to relay to, and
            // nothing is relayed (the PostgreSQL pass of `scripts/test` runs the rest).
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(sessions.try_recv().is_err());
        } else {
            let event = tokio::time::timeout(Duration::from_secs(5), sessions.recv())
                .await
                .expect("a's session reaches b's live views")
                .unwrap();
            match event {
                SessionEvent::Started(r) => {
                    assert_eq!((r.host_id.as_str(), r.id.as_str()), ("web1", "7:1"))
                }
                other => panic!("{other:?}"),
            }
            tokio::time::timeout(Duration::from_secs(5), signoffs.changed())
                .await
                .expect("a's sign-off progress reaches b's watchers")
                .unwrap();
        }
        stop_tx.send_replace(true);
        let _ = poller.await;
    }
}
