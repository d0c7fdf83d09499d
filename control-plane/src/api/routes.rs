//! The route table: every operation the HTTP API serves, with who may call it. The router
//! is built from this table and nothing else, and the authorization matrix test walks the
//! same table, so a route cannot be added without an access rule, nor escape the test.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::{
    AppState, alerts, approvals, certificates, events, handlers, metrics, openapi, session_events,
    signoffs,
};
use crate::service::Scope;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; no token is read.
    Public,
    /// A bearer token carrying this scope (and not `scim`, which opens nothing here).
    Scope(Scope),
}

/// How the surface is set up: what the configuration decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// `GET /krl` without a token (`[krl] public = true`). Off by default: the KRL names
    /// who was revoked, and `?ca=` would let anyone probe CA names.
    pub krl_public: bool,
    /// `GET /metrics` on this listener. Off when `[metrics] listen` gives it its own.
    pub metrics: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            krl_public: false,
            metrics: true,
        }
    }
}

/// One operation.
pub struct ApiRoute {
    /// Its method.
    pub method: Method,
    /// Its path template, as axum matches it (`/api/v1/users/{name}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    pub(crate) endpoint: MethodRouter<AppState>,
}

impl std::fmt::Debug for ApiRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {:?}", self.method, self.path, self.access)
    }
}

fn op<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> ApiRoute
where
    H: Handler<T, AppState>,
    T: 'static,
{
    // Every method in the table below is one axum routes. Were one not, the route would
    // answer GET only, and the authorization matrix (which sends each route's method)
    // would fail on it.
    let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
    ApiRoute {
        method,
        path,
        access,
        endpoint: on(filter, handler),
    }
}

/// Every route of the HTTP API (not the dashboard, not SCIM, which authorizes its own
/// callers), in the order they are documented.
// One row per route, so the table reads as a table.
#[rustfmt::skip]
pub fn routes(options: HttpOptions) -> Vec<ApiRoute> {
    use Access::{Public, Scope as S};
    use Method as M;
    use Scope::{Admin, Issue, Krl, Read, Signoff, Write};
    let krl = if options.krl_public { Public } else { S(Krl) };
    let mut routes = vec![
        op(M::GET, "/api/v1/openapi.json", Public, openapi::openapi_handler),
        op(M::GET, "/api/v1/revision", S(Read), handlers::revision_handler),
        op(M::GET, "/api/v1/users", S(Read), handlers::list_users_handler),
        op(M::POST, "/api/v1/users", S(Write), handlers::create_user_handler),
        op(M::GET, "/api/v1/users/{name}", S(Read), handlers::get_user_handler),
        op(M::PATCH, "/api/v1/users/{name}", S(Write), handlers::update_user_handler),
        op(M::POST, "/api/v1/users/{name}/disable", S(Write), handlers::disable_user_handler),
        op(M::POST, "/api/v1/users/{name}/enable", S(Write), handlers::enable_user_handler),
        op(M::GET, "/api/v1/users/{name}/signoff", S(Read), signoffs::get_user_signoff_handler),
        op(M::POST, "/api/v1/users/{name}/signoff", S(Signoff), signoffs::signoff_user_handler),
        op(M::POST, "/api/v1/users/{name}/reenable", S(Signoff), signoffs::reenable_user_handler),
        op(M::POST, "/api/v1/users/{name}/kill-sessions", S(Signoff), handlers::kill_user_sessions_handler),
        op(M::GET, "/api/v1/users/{name}/certificates", S(Read), certificates::list_certificates_handler),
        op(M::POST, "/api/v1/users/{name}/certificates", S(Issue), certificates::issue_certificate_handler),
        op(M::GET, "/api/v1/signoffs", S(Read), signoffs::list_signoffs_handler),
        op(M::GET, "/api/v1/signoffs/{id}", S(Read), signoffs::get_signoff_handler),
        op(M::GET, "/api/v1/signoffs/{id}/approvals", S(Read), approvals::get_reenable_approvals_handler),
        op(M::POST, "/api/v1/signoffs/{id}/approvals", S(Write), approvals::add_reenable_approval_handler),
        op(M::GET, "/api/v1/groups", S(Read), handlers::list_groups_handler),
        op(M::POST, "/api/v1/groups", S(Write), handlers::create_group_handler),
        op(M::GET, "/api/v1/hosts", S(Read), handlers::list_hosts_handler),
        op(M::POST, "/api/v1/hosts", S(Write), handlers::create_host_handler),
        op(M::GET, "/api/v1/hosts/{id}", S(Read), handlers::get_host_handler),
        op(M::DELETE, "/api/v1/hosts/{id}", S(Write), handlers::remove_host_handler),
        op(M::PUT, "/api/v1/hosts/{id}/groups", S(Write), handlers::set_host_groups_handler),
        op(M::GET, "/api/v1/hosts/{id}/view", S(Read), handlers::host_view_handler),
        op(M::GET, "/api/v1/hosts/{id}/delta", S(Read), handlers::host_delta_handler),
        op(M::GET, "/api/v1/grants", S(Read), handlers::list_grants_handler),
        op(M::POST, "/api/v1/grants", S(Write), handlers::create_grant_handler),
        op(M::DELETE, "/api/v1/grants/{id}", S(Write), handlers::delete_grant_handler),
        op(M::GET, "/api/v1/grants/{id}/approvals", S(Read), approvals::get_grant_approvals_handler),
        op(M::POST, "/api/v1/grants/{id}/approvals", S(Write), approvals::add_grant_approval_handler),
        op(M::GET, "/api/v1/approvals", S(Read), approvals::list_approvals_handler),
        op(M::GET, "/api/v1/cas", S(Read), handlers::list_cas_handler),
        op(M::GET, "/api/v1/host-ca", S(Read), certificates::host_ca_handler),
        op(M::POST, "/api/v1/cas", S(Write), handlers::add_ca_handler),
        op(M::DELETE, "/api/v1/cas/{name}", S(Write), handlers::remove_ca_handler),
        op(M::GET, "/api/v1/revocations", S(Read), handlers::list_revocations_handler),
        op(M::POST, "/api/v1/revocations", S(Write), handlers::revoke_handler),
        op(M::DELETE, "/api/v1/revocations/{id}", S(Write), handlers::unrevoke_handler),
        op(M::GET, "/api/v1/tokens", S(Admin), handlers::list_tokens_handler),
        op(M::POST, "/api/v1/tokens", S(Admin), handlers::create_token_handler),
        op(M::DELETE, "/api/v1/tokens/{id}", S(Admin), handlers::revoke_token_handler),
        op(M::GET, "/api/v1/sessions", S(Read), handlers::list_sessions_handler),
        op(M::GET, "/api/v1/sessions/events", S(Read), session_events::session_events_handler),
        op(M::GET, "/api/v1/sessions/{host}/{id}", S(Read), handlers::get_session_handler),
        op(M::POST, "/api/v1/sessions/{host}/{id}/kill", S(Signoff), handlers::kill_session_handler),
        op(M::GET, "/api/v1/audit", S(Read), handlers::audit_log_handler),
        op(M::GET, "/api/v1/audit/verify", S(Read), handlers::audit_verify_handler),
        op(M::GET, "/api/v1/events", S(Read), events::events_handler),
        op(M::GET, "/api/v1/alerts", S(Read), alerts::list_alerts_handler),
        op(M::POST, "/api/v1/alerts/{cursor}/acknowledge", S(Write), alerts::acknowledge_alert_handler),
        op(M::GET, "/krl", krl, handlers::krl_handler),
    ];
    if options.metrics {
        // Bounded labels make it safe to leave public; `[metrics] listen` moves it off
        // this listener for deployments that expose it.
        routes.push(op(M::GET, "/metrics", Public, metrics::metrics_handler));
    }
    routes
}
