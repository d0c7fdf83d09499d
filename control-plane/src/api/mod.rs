//! The HTTP JSON API under `/api/v1`, the KRL download at `/krl` and Prometheus metrics at
//! `/metrics`: thin adapters over the service layer. SCIM 2.0 (`/scim/v2`, its own module)
//! is mounted here too, behind the same metrics and body limit.
//!
//! Every `/api/v1` route except the OpenAPI document needs `Authorization: Bearer TOKEN`
//! with the route's scope. Errors are JSON `{"error": {"code", "message"}}` with a stable
//! code; the caller's mistakes are 4xx, never 500.

mod error;
mod handlers;
mod metrics;
mod openapi;
mod session_events;
mod signoffs;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};

use crate::service::{Scope, Service, TokenInfo};

pub use error::ApiError;
pub use metrics::Metrics;

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

/// The whole HTTP surface of the control plane except the dashboard.
pub fn router(service: Service) -> Router {
    router_with_metrics(service, Arc::new(Metrics::default()))
}

/// [`router`] with counters the caller keeps (the server exposes agent gauges in them).
pub fn router_with_metrics(service: Service, metrics: Arc<Metrics>) -> Router {
    let state = AppState { service, metrics };
    let api = Router::new()
        .route("/openapi.json", get(openapi::openapi_handler))
        .route("/revision", get(handlers::revision_handler))
        .route(
            "/users",
            get(handlers::list_users_handler).post(handlers::create_user_handler),
        )
        .route(
            "/users/{name}",
            get(handlers::get_user_handler).patch(handlers::update_user_handler),
        )
        .route(
            "/users/{name}/disable",
            post(handlers::disable_user_handler),
        )
        .route("/users/{name}/enable", post(handlers::enable_user_handler))
        .route(
            "/users/{name}/signoff",
            get(signoffs::get_user_signoff_handler).post(signoffs::signoff_user_handler),
        )
        .route(
            "/users/{name}/reenable",
            post(signoffs::reenable_user_handler),
        )
        .route("/signoffs", get(signoffs::list_signoffs_handler))
        .route("/signoffs/{id}", get(signoffs::get_signoff_handler))
        .route(
            "/groups",
            get(handlers::list_groups_handler).post(handlers::create_group_handler),
        )
        .route(
            "/hosts",
            get(handlers::list_hosts_handler).post(handlers::create_host_handler),
        )
        .route(
            "/hosts/{id}",
            get(handlers::get_host_handler).delete(handlers::remove_host_handler),
        )
        .route("/hosts/{id}/groups", put(handlers::set_host_groups_handler))
        .route("/hosts/{id}/view", get(handlers::host_view_handler))
        .route("/hosts/{id}/delta", get(handlers::host_delta_handler))
        .route(
            "/grants",
            get(handlers::list_grants_handler).post(handlers::create_grant_handler),
        )
        .route("/grants/{id}", delete(handlers::delete_grant_handler))
        .route(
            "/cas",
            get(handlers::list_cas_handler).post(handlers::add_ca_handler),
        )
        .route("/cas/{name}", delete(handlers::remove_ca_handler))
        .route(
            "/revocations",
            get(handlers::list_revocations_handler).post(handlers::revoke_handler),
        )
        .route("/revocations/{id}", delete(handlers::unrevoke_handler))
        .route(
            "/tokens",
            get(handlers::list_tokens_handler).post(handlers::create_token_handler),
        )
        .route("/tokens/{id}", delete(handlers::revoke_token_handler))
        .route("/sessions", get(handlers::list_sessions_handler))
        .route(
            "/sessions/events",
            get(session_events::session_events_handler),
        )
        .route("/sessions/{host}/{id}", get(handlers::get_session_handler))
        .route(
            "/sessions/{host}/{id}/kill",
            post(handlers::kill_session_handler),
        )
        .route(
            "/users/{name}/kill-sessions",
            post(handlers::kill_user_sessions_handler),
        )
        .route("/audit", get(handlers::audit_log_handler))
        .route("/audit/verify", get(handlers::audit_verify_handler))
        .fallback(error::not_found_handler);

    Router::new()
        .nest("/api/v1", api)
        .merge(crate::scim::router(state.service.clone()))
        .route("/krl", get(handlers::krl_handler))
        .route("/metrics", get(metrics::metrics_handler))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        // Outside the body limit, so that its 413 under /scim/v2 is a SCIM error too.
        .layer(middleware::from_fn(crate::scim::scim_error_bodies))
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let response = next.run(req).await;
    state
        .metrics
        .record_request(method.as_str(), &route, response.status().as_u16());
    response
}

/// The caller, authenticated by bearer token. Handlers then call [`Caller::require`].
#[derive(Debug, Clone)]
pub struct Caller(pub TokenInfo);

impl Caller {
    /// Fails with 403 unless the token carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<&TokenInfo, ApiError> {
        if self.0.has(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(scope))
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Service: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("Authorization header is not \"Bearer TOKEN\"")
            })?;
        let service = Service::from_ref(state);
        let info = service
            .authenticate(secret)
            .await
            .map_err(|e| ApiError::unauthorized(&e.to_string()))?;
        Ok(Caller(info))
    }
}

#[cfg(test)]
mod tests;
