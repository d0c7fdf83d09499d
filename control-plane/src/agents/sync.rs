//! The gRPC services agents call: `Enrollment` (no client certificate) and `AgentSync`
//! (mTLS): one long-lived stream per agent that carries its view, revision by revision.

use std::collections::VecDeque;
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use std::time::Instant;

use tracing::Instrument as _;

use signoff_proto::v1;
use tokio::sync::{OnceCell, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::pki::AgentCa;
use super::tls::{host_id_of, not_after_of};
use crate::api::{DecisionLost, DecisionOutcome, Metrics};
use crate::model::Revocation;
use crate::service::{EnrollError, HostCertError, HostKeyProof, Service, ServiceError};
use crate::views::{Delta, Entry, EntryKey, FanoutPlan, HostView, Reenable, Statement};

/// How long an agent has to say Hello after opening its stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent-facing gRPC services.
#[derive(Debug, Clone)]
pub struct AgentServer {
    service: Service,
    ca: Arc<AgentCa>,
    metrics: Arc<Metrics>,
    cert_validity_secs: i64,
    heartbeat: Duration,
    deltas: Arc<DeltaCache>,
}

/// Deltas shared by the streams of one fan-out: when a revision commits, every connected
/// agent asks for the delta from the same revision to the same one; the plan is computed
/// once and each group combination's delta once, instead of once per host.
#[derive(Debug, Default)]
struct DeltaCache {
    plans: std::sync::Mutex<BTreeMap<(i64, i64), PlanCell>>,
}

/// A plan being computed or computed, by the first stream that needs it.
type PlanCell = Arc<OnceCell<Arc<CachedPlan>>>;

#[derive(Debug)]
struct CachedPlan {
    plan: FanoutPlan,
    by_groups: std::sync::Mutex<HashMap<Vec<i64>, Arc<OnceCell<v1::HostViewDelta>>>>,
}

/// Plans kept: the latest few ranges (reconnecting agents ask for one-off ranges).
const PLANS_KEPT: usize = 16;

impl DeltaCache {
    fn cell(&self, from: i64, to: i64) -> PlanCell {
        let mut plans = self
            .plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cell = plans.entry((from, to)).or_default().clone();
        while plans.len() > PLANS_KEPT {
            // Oldest end revision first: those fan-outs are over.
            let oldest = plans
                .keys()
                .min_by_key(|(f, t)| (*t, *f))
                .copied()
                .unwrap_or((from, to));
            plans.remove(&oldest);
        }
        cell
    }
}

impl AgentServer {
    /// Services over `service`, issuing certificates valid `cert_validity_secs` and sending
    /// a heartbeat on idle streams every `heartbeat`.
    pub fn new(
        service: Service,
        ca: Arc<AgentCa>,
        metrics: Arc<Metrics>,
        cert_validity_secs: i64,
        heartbeat: Duration,
    ) -> Self {
        AgentServer {
            service,
            ca,
            metrics,
            cert_validity_secs,
            heartbeat,
            deltas: Arc::default(),
        }
    }

    /// The host id of a request's verified client certificate, refusing removed hosts.
    async fn authenticate<T>(&self, req: &Request<T>) -> Result<(String, Option<i64>), Status> {
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated(
                "a client certificate from the agent CA is required; run `signoff-agent enroll`",
            )
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let host = host_id_of(leaf)
            .ok_or_else(|| Status::unauthenticated("client certificate names no single host"))?;
        if !self.service.host_is_live(&host).await.map_err(internal)? {
            return Err(Status::permission_denied(format!(
                "host {host:?} has been removed or was never enrolled"
            )));
        }
        Ok((host, not_after_of(leaf)))
    }
}

fn internal(e: ServiceError) -> Status {
    tracing::error!(error = ?e, "agent request failed");
    Status::internal("internal error; see the control plane's log")
}

#[tonic::async_trait]
impl v1::enrollment_server::Enrollment for AgentServer {
    async fn enroll(
        &self,
        req: Request<v1::EnrollRequest>,
    ) -> Result<Response<v1::EnrollResponse>, Status> {
        let r = req.into_inner();
        let now = self.service.now();
        // Check and sign the request before spending the token, so a bad request leaves
        // the token usable; the certificate is only handed out once the host exists.
        let issued = self
            .ca
            .issue_client(&r.csr_der, &r.host_id, now, self.cert_validity_secs)
            .map_err(|e| Status::invalid_argument(format!("{e}")))?;
        self.service
            .enroll_host(
                &r.join_token,
                &r.host_id,
                &r.hostname,
                &r.host_keys
                    .iter()
                    .map(|k| HostKeyProof {
                        public_key: k.public_key.clone(),
                        proof: k.proof.clone(),
                    })
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(|e| match e {
                EnrollError::UnknownToken
                | EnrollError::TokenExpired
                | EnrollError::TokenUsed(_)
                | EnrollError::CorruptToken(_)
                | EnrollError::HostKeyTaken { .. }
                | EnrollError::HostKeyProof { .. } => Status::permission_denied(e.to_string()),
                EnrollError::Service(ServiceError::Invalid(i)) => {
                    Status::invalid_argument(i.to_string())
                }
                EnrollError::Service(ServiceError::Conflict(m)) => Status::already_exists(m),
                EnrollError::Service(ServiceError::NotFound { kind, name }) => {
                    Status::failed_precondition(format!("{kind} {name:?} does not exist"))
                }
                EnrollError::Service(e) => internal(e),
                #[allow(unreachable_patterns)]
                e => Status::internal(e.to_string()),
            })?;
        self.service
            .record_contact(&r.host_id, None, None, Some(issued.not_after))
            .await
            .map_err(internal)?;
        Ok(Response::new(v1::EnrollResponse {
            host_id: r.host_id,
            certificate_pem: issued.pem,
            ca_certificate_pem: self.ca.cert_pem().to_owned(),
            not_after: u64::try_from(issued.not_after).unwrap_or(0),
        }))
    }
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<v1::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::agent_sync_server::AgentSync for AgentServer {
    type SyncStream = ControlStream;

    async fn sync(
        &self,
        req: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<ControlStream>, Status> {
        let (host, not_after) = self.authenticate(&req).await?;
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(v1::AgentMessage {
                body: Some(v1::agent_message::Body::Hello(h)),
            }))) => h,
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message must be Hello")),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        if hello.host_id != host {
            return Err(Status::permission_denied(format!(
                "stream claims host {:?} but the client certificate is for {host:?}",
                hello.host_id
            )));
        }
        // What it says it has applied counts as acked: a reconnect with nothing new to
        // apply brings no ack.
        let applied = i64::try_from(hello.applied_revision)
            .map_err(|_| Status::invalid_argument("applied_revision is past any revision"))?
            .min(self.service.revision());
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        // Every event of this stream (its deltas, acks, reports) is in the span.
        let span =
            tracing::info_span!("agent_stream", host = %host, applied = hello.applied_revision);
        tokio::spawn(
            async move {
                let _connected = this.metrics.agent_connected();
                // Registered first, then marked online: a previous stream of this host that
                // ends now can no longer mark it offline.
                let mut connection = this.service.host_connected(&host);
                if let Err(e) = this
                    .service
                    .agent_connected(&host, applied, &hello.agent_version, not_after)
                    .await
                {
                    tracing::error!(host, error = ?e, "cannot record the agent's connection");
                }
                let heartbeat = match hello.heartbeat_secs {
                    0 => this.heartbeat,
                    asked => Duration::from_secs(u64::from(asked)).clamp(
                        Duration::from_secs(1),
                        this.heartbeat.max(Duration::from_secs(1)),
                    ),
                };
                if let Err(status) = this
                    .drive(
                        &host,
                        (hello.applied_revision, hello.witnessed_seq),
                        inbound,
                        &tx,
                        &mut connection.orders,
                        heartbeat,
                    )
                    .await
                {
                    let _ = tx.send(Err(status)).await;
                }
                if let Err(e) = this.service.host_disconnected(connection).await {
                    tracing::error!(host, error = ?e, "cannot mark the host's sessions unknown");
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn renew(
        &self,
        req: Request<v1::RenewRequest>,
    ) -> Result<Response<v1::RenewResponse>, Status> {
        let (host, _) = self.authenticate(&req).await?;
        let issued = self
            .ca
            .issue_client(
                &req.get_ref().csr_der,
                &host,
                self.service.now(),
                self.cert_validity_secs,
            )
            .map_err(|e| Status::invalid_argument(format!("{e}")))?;
        self.service
            .record_contact(&host, None, None, Some(issued.not_after))
            .await
            .map_err(internal)?;
        Ok(Response::new(v1::RenewResponse {
            certificate_pem: issued.pem,
            not_after: u64::try_from(issued.not_after).unwrap_or(0),
        }))
    }

    async fn sign_host_keys(
        &self,
        req: Request<v1::SignHostKeysRequest>,
    ) -> Result<Response<v1::SignHostKeysResponse>, Status> {
        // The host is the one in the client certificate, never one the request names.
        let (host, _) = self.authenticate(&req).await?;
        let ca = self
            .service
            .host_ca()
            .ok_or_else(|| Status::failed_precondition("this control plane has no host CA"))?;
        let req = req.into_inner();
        if req.public_keys.is_empty() || req.public_keys.len() > MAX_HOST_KEYS {
            return Err(Status::invalid_argument(format!(
                "send 1 to {MAX_HOST_KEYS} host public keys (sshd's /etc/ssh/ssh_host_*_key.pub)"
            )));
        }
        let actor = crate::service::Actor(format!("host:{host}"));
        let mut certificates = Vec::with_capacity(req.public_keys.len());
        for (i, public_key) in req.public_keys.iter().enumerate() {
            // A host always proves it holds the key; a missing proof is refused.
            let proof = req.proofs.get(i).map_or("", String::as_str);
            let c = self
                .service
                .sign_host_key(&actor, &host, public_key, Some(proof), &req.names)
                .await
                .map_err(|e| match e {
                    HostCertError::Refused(r) => Status::permission_denied(r.to_string()),
                    HostCertError::Service(ServiceError::Invalid(e)) => {
                        Status::invalid_argument(e.to_string())
                    }
                    HostCertError::Service(ServiceError::NotFound { .. }) => {
                        Status::permission_denied(format!("host {host:?} is not enrolled"))
                    }
                    HostCertError::NoCa => {
                        Status::failed_precondition("this control plane has no host CA")
                    }
                    HostCertError::Service(e) => internal(e),
                    e => {
                        tracing::error!(error = ?e, "host certificate");
                        Status::internal(
                            "cannot sign the host certificate; see the control plane's log",
                        )
                    }
                })?;
            certificates.push(v1::HostCertificate {
                public_key: public_key.clone(),
                certificate: c.certificate,
                principals: c.principals,
                valid_after: u64::try_from(c.valid_after).unwrap_or(0),
                valid_before: u64::try_from(c.valid_before).unwrap_or(0),
            });
        }
        Ok(Response::new(v1::SignHostKeysResponse {
            certificates,
            ca_public_key: ca.public_openssh.clone(),
        }))
    }
}

/// The most host keys one `SignHostKeys` call certifies (sshd has one per key type).
const MAX_HOST_KEYS: usize = 8;

type Outbound = mpsc::Sender<Result<v1::ControlMessage, Status>>;

impl AgentServer {
    /// Sends the agent what it lacks (from its applied revision; audit rows from its
    /// witnessed one), then each new revision, acks recorded as they come.
    ///
    /// What the agent sends is handled by a task of its own: recording its session reports
    /// waits on the store, and that must never hold up the next delta.
    async fn drive(
        &self,
        host: &str,
        (applied, witnessed_seq): (u64, u64),
        mut inbound: Streaming<v1::AgentMessage>,
        tx: &Outbound,
        orders: &mut mpsc::UnboundedReceiver<v1::SignedOrder>,
        heartbeat_every: Duration,
    ) -> Result<(), Status> {
        let mut revisions = self.service.subscribe();
        let current = *revisions.borrow_and_update();
        let applied = i64::try_from(applied).unwrap_or(i64::MAX);
        let sent_shared = Arc::new(Sent::default());
        sent_shared.witnessed.store(
            i64::try_from(witnessed_seq).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
        if applied == 0 || applied > current {
            // New agent, or one that knows a future we never had (a restored backup):
            // start it afresh.
            sent_shared.record(current);
            let body = self.snapshot(host, current).await?;
            self.send(tx, self.with_head(body, &sent_shared).await?)
                .await?;
        } else if applied < current {
            sent_shared.record(current);
            let body = self.delta(host, applied, current).await?;
            self.send(tx, self.with_head(body, &sent_shared).await?)
                .await?;
        } else {
            sent_shared.record_known(current);
            self.send(tx, self.heartbeat(current)).await?;
        }
        let mut receiver = {
            let this = self.clone();
            let host = host.to_owned();
            let sent = sent_shared.clone();
            tokio::spawn(
                async move {
                    // Session reports (started, ended) already received are queued and
                    // written together, in order, before anything else is handled: a
                    // storm of logins costs a commit per burst, not one per login.
                    let mut pending = Vec::new();
                    loop {
                        let message = if pending.is_empty() {
                            inbound.message().await
                        } else {
                            // Another message already here? Otherwise write what is queued.
                            tokio::select! {
                                biased;
                                m = inbound.message() => m,
                                () = std::future::ready(()) => {
                                    for p in pending.drain(..) {
                                        this.service.written(p).await.map_err(internal)?;
                                    }
                                    continue;
                                }
                            }
                        };
                        let body = match message {
                            Ok(Some(v1::AgentMessage { body: Some(body) })) => body,
                            Ok(Some(v1::AgentMessage { body: None })) => {
                                return Err(Status::invalid_argument("empty message"));
                            }
                            // The agent went away: what it reported is still written.
                            Ok(None) | Err(_) => {
                                for p in pending.drain(..) {
                                    this.service.written(p).await.map_err(internal)?;
                                }
                                return Ok(());
                            }
                        };
                        match body {
                            v1::agent_message::Body::SessionStarted(s) => {
                                pending.push(this.service.queue_session_started(&host, &s));
                            }
                            v1::agent_message::Body::SessionEnded(e) => {
                                let ended_at = i64::try_from(e.ended_at).map_err(|_| {
                                    Status::invalid_argument(
                                        "ended_at is past the range of Unix times",
                                    )
                                })?;
                                pending
                                    .push(this.service.queue_session_ended(&host, &e.id, ended_at));
                            }
                            body => {
                                for p in pending.drain(..) {
                                    this.service.written(p).await.map_err(internal)?;
                                }
                                this.received(&host, &sent, body).await?;
                            }
                        }
                    }
                }
                .in_current_span(),
            )
        };
        let outgoing = Outgoing {
            server: self,
            host,
            tx,
            orders,
            revisions,
            sent: &sent_shared,
            heartbeat_every,
        };
        let result = outgoing.run(&mut receiver).await;
        receiver.abort();
        result
    }

    /// Handles one message from the agent after its Hello.
    async fn received(
        &self,
        host: &str,
        sent: &Sent,
        body: v1::agent_message::Body,
    ) -> Result<(), Status> {
        use v1::agent_message::Body;
        match body {
            Body::Ack(ack) => {
                // An ack past what was sent (or past i64) acks what was sent.
                let rev = i64::try_from(ack.revision)
                    .unwrap_or(i64::MAX)
                    .min(sent.latest());
                for took in sent.acked(rev) {
                    self.metrics.record_ack(took);
                }
                self.service.note_ack(host, rev);
                Ok(())
            }
            Body::SessionStarted(s) => self
                .service
                .session_started(host, &s)
                .await
                .map_err(internal),
            Body::SessionEnded(e) => {
                let ended_at = i64::try_from(e.ended_at).map_err(|_| {
                    Status::invalid_argument("ended_at is past the range of Unix times")
                })?;
                self.service
                    .session_ended(host, &e.id, ended_at)
                    .await
                    .map_err(internal)
            }
            Body::SessionList(l) => {
                self.service
                    .session_list(host, &l.sessions)
                    .await
                    .map_err(internal)?;
                // The agent reports its journaled order results before its list: what
                // still has none now was never carried out.
                self.service.settle_orders(host).await.map_err(internal)
            }
            Body::OrderResult(r) => {
                if let Some(took) = sent.order_answered(&r.nonce) {
                    self.metrics.record_kill(took);
                }
                self.service
                    .record_order_result(host, &r)
                    .await
                    .map_err(internal)
            }
            Body::SignoffResult(r) => {
                let confirmed = self
                    .service
                    .record_signoff_result(host, &r)
                    .await
                    .map_err(internal)?;
                if let Some(took) = confirmed.and_then(|rev| sent.since_sent(rev)) {
                    self.metrics.record_signoff_confirmed(took);
                }
                Ok(())
            }
            Body::RefusedAttempts(r) => self
                .service
                .refused_attempts(host, r)
                .await
                .map_err(internal),
            Body::PrincipalsDecisions(d) => {
                self.record_decisions(&d);
                Ok(())
            }
            // Recorded, then the stream ends: the agent applies nothing from this control
            // plane and waits for this end before it drops its side.
            Body::WitnessRefusal(r) => {
                self.service
                    .record_witness_refusal(host, &r)
                    .await
                    .map_err(internal)?;
                Err(Status::failed_precondition(
                    "this host refuses the control plane's audit log (it no longer extends the head the host witnessed); recorded",
                ))
            }
            Body::Hello(_) => Err(Status::invalid_argument("Hello comes once, first")),
        }
    }

    /// Observes each of the host's principals decisions into the histogram, and counts
    /// those it could not report.
    fn record_decisions(&self, d: &v1::PrincipalsDecisions) {
        use v1::DecisionOutcome as O;
        let mut unknown = 0;
        for decision in &d.decisions {
            let outcome = match O::try_from(decision.outcome) {
                Ok(O::Granted) => DecisionOutcome::Granted,
                Ok(O::BreakGlass) => DecisionOutcome::BreakGlass,
                Ok(O::Denied) => DecisionOutcome::Denied,
                Ok(O::Unspecified) | Err(_) => {
                    unknown += 1;
                    continue;
                }
            };
            self.metrics
                .record_decision(outcome, Duration::from_micros(decision.duration_us));
        }
        self.metrics
            .record_decisions_lost(DecisionLost::Dropped, d.dropped);
        self.metrics
            .record_decisions_lost(DecisionLost::Refused, d.refused);
        self.metrics
            .record_decisions_lost(DecisionLost::UnknownOutcome, unknown);
    }

    async fn send(&self, tx: &Outbound, body: v1::control_message::Body) -> Result<(), Status> {
        tx.send(Ok(v1::ControlMessage { body: Some(body) }))
            .await
            .map_err(|_| Status::cancelled("agent stream closed"))
    }

    fn heartbeat(&self, revision: i64) -> v1::control_message::Body {
        v1::control_message::Body::Heartbeat(v1::Heartbeat {
            revision: u64::try_from(revision).unwrap_or(0),
            server_time: u64::try_from(self.service.now()).unwrap_or(0),
        })
    }

    /// `body` (a view or delta) with the audit chain head and the rows from the head last
    /// sent on this stream to it, for the agent to witness (issue 20). Without an order
    /// key there is no signed head to send, and the body goes as it is.
    async fn with_head(
        &self,
        body: v1::control_message::Body,
        sent: &Sent,
    ) -> Result<v1::control_message::Body, Status> {
        use v1::control_message::Body;
        let held = sent.witnessed.load(Ordering::SeqCst);
        let (head, links) = match self.service.audit_head(held).await {
            Ok(h) => h,
            Err(ServiceError::Conflict(why)) => {
                tracing::warn!(%why, "host view sent without an audit head");
                return Ok(body);
            }
            Err(e) => return Err(internal(e)),
        };
        sent.witnessed.store(
            i64::try_from(head.seq).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
        Ok(match body {
            Body::Snapshot(mut v) => {
                v.audit_head = Some(head);
                v.audit_links = links;
                Body::Snapshot(v)
            }
            Body::Delta(mut d) => {
                d.audit_head = Some(head);
                d.audit_links = links;
                Body::Delta(d)
            }
            other => other,
        })
    }

    async fn snapshot(&self, host: &str, rev: i64) -> Result<v1::control_message::Body, Status> {
        let view = self.service.host_view(host, rev).await.map_err(internal)?;
        let cas = self.service.ca_blobs().await.map_err(internal)?;
        Ok(v1::control_message::Body::Snapshot(to_proto_view(
            &view, &cas,
        )))
    }

    /// The delta for `host`, shared with every host in the same groups (see
    /// [`DeltaCache`]); refuses a host removed within the range.
    async fn delta(
        &self,
        host: &str,
        from: i64,
        to: i64,
    ) -> Result<v1::control_message::Body, Status> {
        let service = &self.service;
        let cached = self
            .deltas
            .cell(from, to)
            .get_or_try_init(|| async {
                Ok::<_, ServiceError>(Arc::new(CachedPlan {
                    plan: service.fanout_plan(from, to).await?,
                    by_groups: std::sync::Mutex::default(),
                }))
            })
            .await
            .map_err(internal)?
            .clone();
        if cached.plan.removed.contains(host) {
            return Err(Status::permission_denied(format!(
                "host {host:?} has been removed"
            )));
        }
        if cached.plan.membership_changed.contains(host) {
            let d = service.host_delta(host, from, to).await.map_err(internal)?;
            let cas = service.ca_blobs().await.map_err(internal)?;
            return Ok(v1::control_message::Body::Delta(to_proto_delta(&d, &cas)));
        }
        let groups = cached.plan.groups_of(host).to_vec();
        let cell = cached
            .by_groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(groups.clone())
            .or_default()
            .clone();
        let delta = cell
            .get_or_try_init(|| async {
                let d = service.plan_delta(&cached.plan, &groups).await?;
                let cas = service.ca_blobs().await?;
                Ok::<_, ServiceError>(to_proto_delta(&d, &cas))
            })
            .await
            .map_err(internal)?;
        Ok(v1::control_message::Body::Delta(delta.clone()))
    }
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_proto_entry((account, user): &EntryKey, e: &Entry) -> v1::PrincipalsEntry {
    v1::PrincipalsEntry {
        account: account.clone(),
        user: user.clone(),
        key_ids: e.key_ids.iter().cloned().collect(),
        principals: e.principals.iter().cloned().collect(),
        authorized_keys: e.authorized_keys.iter().cloned().collect(),
        not_after: e.not_after.map_or(0, u),
        approvals: e
            .approvals
            .iter()
            .map(|(id, a)| v1::ApprovedGrant {
                grant_id: u(*id),
                host_group: a.host_group.clone(),
                not_after: a.not_after.map_or(0, u),
                signatures: a.signatures.iter().cloned().collect(),
            })
            .collect(),
    }
}

/// Groups revocations by CA as the protocol carries them. A revocation whose CA key or
/// public key cannot be rendered (never the case for what the service stored) is skipped
/// with an error log rather than stopping every host's sync.
pub fn to_proto_revocations<'a>(
    revocations: impl IntoIterator<Item = &'a Revocation>,
    cas: &BTreeMap<String, Vec<u8>>,
) -> v1::RevocationSet {
    let mut by_ca: BTreeMap<Vec<u8>, v1::CaRevocations> = BTreeMap::new();
    let mut set = v1::RevocationSet::default();
    fn bucket<'m>(
        by_ca: &'m mut BTreeMap<Vec<u8>, v1::CaRevocations>,
        blob: &[u8],
    ) -> &'m mut v1::CaRevocations {
        by_ca
            .entry(blob.to_vec())
            .or_insert_with(|| v1::CaRevocations {
                ca_key: blob.to_vec(),
                ..Default::default()
            })
    }
    for r in revocations {
        match r {
            Revocation::KeyId { ca: None, key_id } => {
                bucket(&mut by_ca, &[]).key_ids.push(key_id.clone())
            }
            Revocation::KeyId {
                ca: Some(fp),
                key_id,
            } => match cas.get(fp) {
                Some(blob) => bucket(&mut by_ca, blob).key_ids.push(key_id.clone()),
                None => tracing::error!(?r, "revocation names a CA never trusted; skipped"),
            },
            Revocation::Serial { ca, lo, hi } => match cas.get(ca) {
                Some(blob) => bucket(&mut by_ca, blob)
                    .serials
                    .push(v1::SerialRange { lo: *lo, hi: *hi }),
                None => tracing::error!(?r, "revocation names a CA never trusted; skipped"),
            },
            Revocation::Key { public_key } => match ssh_key::PublicKey::from_openssh(public_key) {
                Ok(k) => set.keys.push(signoff_proto::krl::key_blob(k.key_data())),
                Err(e) => tracing::error!(?r, %e, "stored key does not parse; skipped"),
            },
            Revocation::Sha256 { fingerprint } => match fingerprint.parse::<ssh_key::Fingerprint>()
            {
                Ok(ssh_key::Fingerprint::Sha256(h)) => set.sha256.push(h.to_vec()),
                _ => tracing::error!(?r, "stored fingerprint does not parse; skipped"),
            },
        }
    }
    set.certificates = by_ca.into_values().collect();
    set
}

fn to_proto_statement(id: i64, st: &Statement) -> v1::SignedStatement {
    v1::SignedStatement {
        id: u(id),
        statement: st.statement.clone(),
        signature: st.signature.clone(),
    }
}

/// A view as the protocol carries it.
pub fn to_proto_view(v: &HostView, cas: &BTreeMap<String, Vec<u8>>) -> v1::HostView {
    v1::HostView {
        revision: u(v.revision),
        principals: v
            .entries
            .iter()
            .map(|(k, e)| to_proto_entry(k, e))
            .collect(),
        revocations: Some(to_proto_revocations(&v.revocations, cas)),
        disabled_users: v.disabled_users.iter().cloned().collect(),
        signoffs: v
            .signoffs
            .iter()
            .map(|(id, st)| to_proto_statement(*id, st))
            .collect(),
        trusted_user_ca_keys: v.trusted_cas.iter().cloned().collect(),
        reenables: v
            .reenables
            .iter()
            .map(|(id, r)| to_proto_reenable(*id, r))
            .collect(),
        audit_head: None,
        audit_links: Vec::new(),
    }
}

fn to_proto_reenable(id: i64, r: &Reenable) -> v1::Reenable {
    v1::Reenable {
        signoff_id: u(id),
        person: r.person.clone(),
        statement: Some(to_proto_statement(id, &r.statement)),
        signatures: r.signatures.iter().cloned().collect(),
    }
}

/// A delta as the protocol carries it.
pub fn to_proto_delta(d: &Delta, cas: &BTreeMap<String, Vec<u8>>) -> v1::HostViewDelta {
    v1::HostViewDelta {
        from_revision: u(d.from),
        revision: u(d.to),
        upsert_principals: d.upsert.iter().map(|(k, e)| to_proto_entry(k, e)).collect(),
        remove_principals: d
            .remove
            .iter()
            .map(|(account, user)| v1::PrincipalsKey {
                account: account.clone(),
                user: user.clone(),
            })
            .collect(),
        add_revocations: Some(to_proto_revocations(&d.add_revocations, cas)),
        remove_revocations: Some(to_proto_revocations(&d.remove_revocations, cas)),
        add_disabled_users: d.add_disabled.iter().cloned().collect(),
        remove_disabled_users: d.remove_disabled.iter().cloned().collect(),
        add_signoffs: d
            .add_signoffs
            .iter()
            .map(|(id, st)| to_proto_statement(*id, st))
            .collect(),
        remove_signoffs: d.remove_signoffs.iter().map(|id| u(*id)).collect(),
        add_trusted_user_ca_keys: d.add_trusted_cas.iter().cloned().collect(),
        remove_trusted_user_ca_keys: d.remove_trusted_cas.iter().cloned().collect(),
        upsert_reenables: d
            .upsert_reenables
            .iter()
            .map(|(id, r)| to_proto_reenable(*id, r))
            .collect(),
        audit_head: None,
        audit_links: Vec::new(),
    }
}
/// One agent's stream after its first message, seen from the sending side: the new
/// revisions, kill orders and heartbeats it carries, until the agent or the service goes.
struct Outgoing<'a> {
    server: &'a AgentServer,
    host: &'a str,
    tx: &'a Outbound,
    orders: &'a mut mpsc::UnboundedReceiver<v1::SignedOrder>,
    revisions: tokio::sync::watch::Receiver<i64>,
    sent: &'a Sent,
    heartbeat_every: Duration,
}

impl Outgoing<'_> {
    /// Sends until the stream ends; `receiver` is the task reading the agent's messages,
    /// whose end (or error) ends the stream too.
    async fn run(
        mut self,
        receiver: &mut tokio::task::JoinHandle<Result<(), Status>>,
    ) -> Result<(), Status> {
        let mut heartbeat = tokio::time::interval(self.heartbeat_every);
        heartbeat.reset();
        loop {
            tokio::select! {
                changed = self.revisions.changed() => {
                    if changed.is_err() {
                        return Ok(()); // the service is shutting down
                    }
                    let new = *self.revisions.borrow_and_update();
                    if self.send_revision(new).await? {
                        heartbeat.reset();
                    }
                }
                done = &mut *receiver => {
                    return match done {
                        Ok(result) => result,
                        Err(_) => Ok(()), // aborted or panicked: end the stream
                    };
                }
                Some(order) = self.orders.recv() => {
                    self.sent.order(&order);
                    self.server
                        .send(self.tx, v1::control_message::Body::Kill(order))
                        .await?;
                }
                _ = heartbeat.tick() => {
                    let heartbeat = self.server.heartbeat(self.sent.latest());
                    self.server.send(self.tx, heartbeat).await?;
                }
                // The agent went away: what it sent before is still handled (the
                // receiver sees the end of its stream), within bounds.
                () = self.tx.closed() => {
                    return match tokio::time::timeout(Duration::from_secs(5), &mut *receiver).await {
                        Ok(Ok(result)) => result,
                        _ => Ok(()),
                    };
                }
            }
        }
    }

    /// Sends the delta up to `new` if it is past what was sent (the delta refuses a host
    /// removed meanwhile); says whether it sent one.
    async fn send_revision(&self, new: i64) -> Result<bool, Status> {
        let sent = self.sent.latest();
        if new <= sent {
            return Ok(false);
        }
        let delta = self.server.delta(self.host, sent, new).await?;
        let delta = self.server.with_head(delta, self.sent).await?;
        self.sent.record(new);
        self.server.send(self.tx, delta).await?;
        Ok(true)
    }
}

/// How many recent sends of each kind a stream remembers for the latency histograms; older
/// ones (an agent that never answers) are forgotten, not measured.
const SENT_HISTORY: usize = 1024;

/// What one stream has sent: the latest revision (acks are clamped to it), when each
/// revision not yet acked went out (the ack histogram), when recent revisions went out
/// (the sign-off confirmation histogram) and when each unanswered kill order went out
/// (the kill histogram).
#[derive(Debug, Default)]
struct Sent {
    latest: AtomicI64,
    /// The audit row of the last chain head sent (or the one the agent said it holds).
    witnessed: AtomicI64,
    unacked: std::sync::Mutex<VecDeque<(i64, Instant)>>,
    recent: std::sync::Mutex<VecDeque<(i64, Instant)>>,
    orders: std::sync::Mutex<VecDeque<([u8; 16], Instant)>>,
}

impl Sent {
    /// `rev` is about to be sent: stored before the send, so an ack never outruns it.
    fn record(&self, rev: i64) {
        self.latest.store(rev, Ordering::SeqCst);
        let now = Instant::now();
        if let Ok(mut q) = self.unacked.lock() {
            q.push_back((rev, now));
        }
        if let Ok(mut q) = self.recent.lock() {
            if q.len() == SENT_HISTORY {
                q.pop_front();
            }
            q.push_back((rev, now));
        }
    }

    /// How long ago the delta carrying revision `rev` went out on this stream (the first
    /// sent revision at or past it), if this stream sent it.
    fn since_sent(&self, rev: i64) -> Option<Duration> {
        let q = self.recent.lock().ok()?;
        // A stream that started at or past `rev` (the agent had it, or got it in its
        // first delta's predecessor) did not time it.
        if q.front().is_none_or(|(first, _)| *first > rev) {
            return None;
        }
        q.iter()
            .find(|(sent, _)| *sent >= rev)
            .map(|(_, at)| at.elapsed())
    }

    /// A kill order is about to be sent (one that does not decode is not timed; the agent
    /// refuses it and says so).
    fn order(&self, order: &v1::SignedOrder) {
        let Ok(kill) = signoff_proto::orders::KillOrder::decode(&order.order) else {
            return;
        };
        if let Ok(mut q) = self.orders.lock() {
            if q.len() == SENT_HISTORY {
                q.pop_front();
            }
            q.push_back((kill.nonce, Instant::now()));
        }
    }

    /// The result of the order with `nonce` came: how long after it was sent on this
    /// stream.
    fn order_answered(&self, nonce: &[u8]) -> Option<Duration> {
        let mut q = self.orders.lock().ok()?;
        let i = q.iter().position(|(n, _)| n.as_slice() == nonce)?;
        q.remove(i).map(|(_, at)| at.elapsed())
    }

    /// The agent has `rev` already (it said so in its Hello): nothing to wait for.
    fn record_known(&self, rev: i64) {
        self.latest.store(rev, Ordering::SeqCst);
    }

    fn latest(&self) -> i64 {
        self.latest.load(Ordering::SeqCst)
    }

    /// Everything up to `rev` is acked: how long each such revision waited.
    fn acked(&self, rev: i64) -> Vec<Duration> {
        let mut out = Vec::new();
        if let Ok(mut q) = self.unacked.lock() {
            while let Some((sent, at)) = q.front().copied() {
                if sent > rev {
                    break;
                }
                out.push(at.elapsed());
                q.pop_front();
            }
        }
        out
    }
}
