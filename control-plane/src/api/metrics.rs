//! Prometheus text metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

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

/// Counters and gauges the HTTP layer and the server keep.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By method label, route template and status: all from closed sets.
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    /// Agents with a live sync stream (set by the agent service).
    pub connected_agents: AtomicI64,
}

impl Metrics {
    /// Counts one HTTP request.
    pub fn record_request(&self, method: &'static str, route: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method, route.to_owned(), status)).or_default() += 1;
        }
    }

    fn render(&self, revision: i64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP signoff_http_requests_total HTTP requests served."
        );
        let _ = writeln!(out, "# TYPE signoff_http_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "signoff_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    route.replace('\\', "\\\\").replace('"', "\\\"")
                );
            }
        }
        let _ = writeln!(out, "# HELP signoff_revision Latest committed revision.");
        let _ = writeln!(out, "# TYPE signoff_revision gauge");
        let _ = writeln!(out, "signoff_revision {revision}");
        let _ = writeln!(
            out,
            "# HELP signoff_connected_agents Agents with a live sync stream."
        );
        let _ = writeln!(out, "# TYPE signoff_connected_agents gauge");
        let _ = writeln!(
            out,
            "signoff_connected_agents {}",
            self.connected_agents.load(Ordering::Relaxed)
        );
        out
    }
}

pub(crate) async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.metrics.render(state.service.revision());
    let (reports, commits) = state.service.report_counters();
    for (name, help, value) in [
        (
            "signoff_agent_reports_total",
            "Agents' reports (connections, disconnections, sessions) written.",
            reports,
        ),
        (
            "signoff_agent_report_commits_total",
            "Transactions that wrote them (group commits).",
            commits,
        ),
    ] {
        let _ = writeln!(body, "# HELP {name} {help}");
        let _ = writeln!(body, "# TYPE {name} counter");
        let _ = writeln!(body, "{name} {value}");
    }
    if let Ok(counts) = state.service.counts().await {
        for (name, help, value) in [
            ("signoff_users", "People, by status.", None),
            ("signoff_hosts", "Hosts not removed.", Some(counts.hosts)),
            ("signoff_grants", "Live grants.", Some(counts.grants)),
            (
                "signoff_revocations",
                "Live revocations.",
                Some(counts.revocations),
            ),
        ] {
            let _ = writeln!(body, "# HELP {name} {help}");
            let _ = writeln!(body, "# TYPE {name} gauge");
            match value {
                Some(v) => {
                    let _ = writeln!(body, "{name} {v}");
                }
                None => {
                    let _ = writeln!(body, "{name}{{status=\"active\"}} {}", counts.active_users);
                    let _ = writeln!(
                        body,
                        "{name}{{status=\"disabled\"}} {}",
                        counts.disabled_users
                    );
                }
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
