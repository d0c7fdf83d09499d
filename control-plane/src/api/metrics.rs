//! Metrics, kept and encoded by `prometheus-client` (OpenMetrics text at `/metrics`).
//!
//! Every label comes from a closed set whatever clients send: a known method or `other`,
//! the route template axum matched or `unmatched`, the status code. Latencies the product
//! promises are histograms: each HTTP request by route, how long an agent takes to
//! acknowledge a revision sent to it (applied and durable on the host), to answer a kill
//! order, and to confirm a sign-off once the revision carrying it was sent; and how long
//! the sshd commands on the hosts took to decide a login, by outcome (the agents report
//! them, `agent/src/decisions.rs`).

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;

/// OpenMetrics, which Prometheus reads (and asks for) since 2.5.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LostLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

fn request_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn ack_histogram() -> Histogram {
    // 5 ms to about 80 s: an agent applies and fsyncs before it acks; one that was busy
    // or reconnecting takes seconds.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn kill_histogram() -> Histogram {
    // 5 ms to about 80 s: a kill waits for every process of the session to go (with a
    // grace before SIGKILL), and a host that is slow to start one takes seconds.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn decision_histogram() -> Histogram {
    // 100 µs to about 1.6 s: a decision is a few positioned reads of a local file.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 15))
}

/// The outcome of a principals decision, as agents report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// Printed what live grants hold.
    Granted,
    /// Printed only break-glass principals.
    BreakGlass,
    /// Printed nothing.
    Denied,
}

impl DecisionOutcome {
    fn label(self) -> &'static str {
        match self {
            DecisionOutcome::Granted => "granted",
            DecisionOutcome::BreakGlass => "break_glass",
            DecisionOutcome::Denied => "denied",
        }
    }
}

/// Why an agent could not report a principals decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionLost {
    /// The agent's queue was full (its stream was down for long).
    Dropped,
    /// The agent refused the datagram: from an unexpected uid, or not a decision.
    Refused,
    /// The agent sent an outcome this control plane does not know.
    UnknownOutcome,
}

impl DecisionLost {
    fn label(self) -> &'static str {
        match self {
            DecisionLost::Dropped => "dropped",
            DecisionLost::Refused => "refused",
            DecisionLost::UnknownOutcome => "unknown_outcome",
        }
    }
}

/// The metrics the HTTP layer and the agent streams keep; the figures read from the
/// service (revision, counts) are added at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    connected_agents: Gauge,
    ack_seconds: Histogram,
    kill_seconds: Histogram,
    signoff_confirm_seconds: Histogram,
    decision_seconds: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    decisions_lost: Family<LostLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                request_histogram,
            );
        let connected_agents = Gauge::default();
        let ack_seconds = ack_histogram();
        let kill_seconds = kill_histogram();
        let signoff_confirm_seconds = kill_histogram();
        let decision_seconds =
            Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                decision_histogram,
            );
        let decisions_lost = Family::<LostLabels, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "signoff_http_requests",
            "HTTP requests served.",
            requests.clone(),
        );
        registry.register(
            "signoff_http_request_duration_seconds",
            "Time to the response's head, by route.",
            request_seconds.clone(),
        );
        registry.register(
            "signoff_connected_agents",
            "Agents with a live sync stream.",
            connected_agents.clone(),
        );
        registry.register(
            "signoff_agent_ack_duration_seconds",
            "From sending a revision on an agent's stream to the agent's ack of it \
             (applied and written down on the host).",
            ack_seconds.clone(),
        );
        registry.register(
            "signoff_kill_duration_seconds",
            "From sending a kill order on an agent's stream to the agent's result (verified, \
             carried out, every process of the session gone or reported remaining).",
            kill_seconds.clone(),
        );
        registry.register(
            "signoff_signoff_confirm_duration_seconds",
            "From sending a host the revision that carries a sign-off to that host's \
             confirmation (applied, every session of the person ended), on one stream.",
            signoff_confirm_seconds.clone(),
        );
        registry.register(
            "signoff_principals_decision_seconds",
            "How long `signoff-agent principals` or `authorized-keys` took to decide a login \
             on a host, by outcome (granted, break_glass, denied), as the agents report them.",
            decision_seconds.clone(),
        );
        registry.register(
            "signoff_principals_decisions_lost",
            "Principals decisions the agents could not report: dropped (queue full), refused \
             (a datagram from an unexpected uid, or not a decision), unknown_outcome.",
            decisions_lost.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            request_seconds,
            connected_agents,
            ack_seconds,
            kill_seconds,
            signoff_confirm_seconds,
            decision_seconds,
            decisions_lost,
        }
    }
}

/// Counts one live agent stream while it is held: dropped when the stream ends, however
/// it ends (an error, a panic in its task), so the gauge cannot drift.
#[derive(Debug)]
pub struct ConnectedAgent(Gauge);

impl Drop for ConnectedAgent {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Counts one HTTP request and how long it took.
    pub fn record_request(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        let route = route.to_owned();
        self.request_seconds
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    /// An agent stream is live until the guard is dropped.
    pub fn agent_connected(&self) -> ConnectedAgent {
        self.connected_agents.inc();
        ConnectedAgent(self.connected_agents.clone())
    }

    /// Agents with a live sync stream.
    pub fn connected_agents(&self) -> i64 {
        self.connected_agents.get()
    }

    /// An agent acked a revision `took` after it was sent.
    pub fn record_ack(&self, took: Duration) {
        self.ack_seconds.observe(took.as_secs_f64());
    }

    /// An agent answered a kill order `took` after it was sent.
    pub fn record_kill(&self, took: Duration) {
        self.kill_seconds.observe(took.as_secs_f64());
    }

    /// A host confirmed a sign-off `took` after its revision was sent.
    pub fn record_signoff_confirmed(&self, took: Duration) {
        self.signoff_confirm_seconds.observe(took.as_secs_f64());
    }

    /// A host's sshd command decided a login with `outcome` in `took`.
    pub fn record_decision(&self, outcome: DecisionOutcome, took: Duration) {
        self.decision_seconds
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .observe(took.as_secs_f64());
    }

    /// `count` principals decisions an agent could not report, for `why`.
    pub fn record_decisions_lost(&self, why: DecisionLost, count: u64) {
        if count > 0 {
            self.decisions_lost
                .get_or_create(&LostLabels {
                    reason: why.label(),
                })
                .inc_by(count);
        }
    }

    /// This registry's metrics as OpenMetrics text (without the service's figures).
    #[cfg(test)]
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let _ = self.encode(&mut out);
        out
    }

    fn encode(&self, out: &mut String) -> std::fmt::Result {
        match self.registry.lock() {
            Ok(registry) => encode_registry(out, &registry),
            Err(_) => Ok(()),
        }
    }
}

/// The `method` label: one of the methods the API serves, or `other`, so that made-up
/// methods cannot add series.
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub(crate) async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    let mut scrape = Registry::default();
    scrape.register(
        "signoff_revision",
        "Latest committed revision.",
        ConstGauge::new(state.service.revision()),
    );
    let (reports, commits) = state.service.report_counters();
    scrape.register(
        "signoff_agent_reports",
        "Agents' reports (connections, disconnections, sessions) written.",
        ConstCounter::new(reports),
    );
    scrape.register(
        "signoff_agent_report_commits",
        "Transactions that wrote them (group commits).",
        ConstCounter::new(commits),
    );
    match state.service.counts().await {
        Ok(counts) => {
            let users = Family::<StatusLabels, Gauge>::default();
            users
                .get_or_create(&StatusLabels { status: "active" })
                .set(counts.active_users);
            users
                .get_or_create(&StatusLabels { status: "disabled" })
                .set(counts.disabled_users);
            scrape.register("signoff_users", "People, by status.", users);
            for (name, help, value) in [
                ("signoff_hosts", "Hosts not removed.", counts.hosts),
                ("signoff_grants", "Live grants.", counts.grants),
                (
                    "signoff_revocations",
                    "Live revocations.",
                    counts.revocations,
                ),
            ] {
                scrape.register(name, help, ConstGauge::new(value));
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the counts"),
    }
    let mut body = String::new();
    let encoded = state
        .metrics
        .encode(&mut body)
        .and_then(|()| encode_registry(&mut body, &scrape))
        .and_then(|()| encode_eof(&mut body));
    if let Err(e) = encoded {
        tracing::error!(error = %e, "metrics: cannot encode");
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "cannot encode the metrics; see the server log".to_owned(),
        );
    }
    (
        axum::http::StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body,
    )
}
