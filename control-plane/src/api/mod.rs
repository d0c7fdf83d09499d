//! The HTTP JSON API under `/api/v1`, the KRL download at `/krl` and Prometheus metrics at
//! `/metrics`: thin adapters over the service layer. SCIM 2.0 (`/scim/v2`, its own module)
//! is mounted here too, behind the same metrics and body limit.
//!
//! Every route and who may call it is in one table (`routes.rs`); the router is built
//! from it, and `auth.rs` checks the route's scope before the handler reads anything.
//! Errors are JSON `{"error": {"code", "message"}}` with a stable code, also those axum
//! answers itself (405, 413); the caller's mistakes are 4xx, never 500.

mod alerts;
mod approvals;
mod auth;
mod certificates;
mod error;
mod events;
mod handlers;
mod metrics;
mod openapi;
mod routes;
mod session_events;
mod signoffs;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::any;

use crate::service::Service;

pub use auth::Caller;
pub(crate) use auth::bearer_value;
pub use error::ApiError;
pub use metrics::{DecisionLost, DecisionOutcome, Metrics};
pub use routes::{Access, ApiRoute, HttpOptions, routes};

/// Shared state of the HTTP adapters.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The service layer.
    pub service: Service,
    /// Request counters.
    pub metrics: Arc<Metrics>,
}

impl FromRef<AppState> for Service {
    fn from_ref(s: &AppState) -> Service {
        s.service.clone()
    }
}

/// Largest request body accepted.
const MAX_BODY: usize = 256 * 1024;

/// The whole HTTP surface of the control plane except the dashboard, as configured by
/// default (`/krl` needs a token, `/metrics` is served here).
pub fn router(service: Service) -> Router {
    router_with_metrics(
        service,
        Arc::new(Metrics::default()),
        HttpOptions::default(),
    )
}

/// [`router`] with counters the caller keeps (the server exposes agent gauges in them)
/// and the configuration's choices.
pub fn router_with_metrics(
    service: Service,
    metrics: Arc<Metrics>,
    options: HttpOptions,
) -> Router {
    let state = AppState { service, metrics };
    let mut app = Router::new();
    for route in routes(options) {
        let access = route.access;
        let endpoint = route.endpoint.route_layer(middleware::from_fn_with_state(
            (state.service.clone(), access),
            auth::authorize,
        ));
        app = app.route(route.path, endpoint);
    }
    app.route("/api/v1", any(error::not_found_handler))
        .route("/api/v1/{*rest}", any(error::not_found_handler))
        .merge(crate::scim::router(state.service.clone()))
        .layer(middleware::from_fn(error::json_error_bodies))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        // Outside the body limit, so that its 413 under /scim/v2 is a SCIM error too.
        .layer(middleware::from_fn(crate::scim::scim_error_bodies))
        .with_state(state)
}

/// `/metrics` alone, for its own listener (`[metrics] listen`).
pub fn metrics_router(service: Service, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics::metrics_handler))
        .layer(middleware::from_fn(error::json_error_bodies))
        .with_state(AppState { service, metrics })
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Labels come from closed sets, whatever clients send: the route template axum
    // matched (never the raw path), and a known method or `other`.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = metrics::method_label(req.method());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state.metrics.record_request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod authz_tests;
#[cfg(test)]
mod tests;
