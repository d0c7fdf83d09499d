//! The signoff dashboard: the web pages security staff keep open to see who is logged in
//! where, live, and to kill sessions and sign people off.
//!
//! [`router`] builds an axum router over a [`Backend`], the narrow interface this crate
//! declares and the control plane implements with its service layer (so every action is
//! authorized and audited there, under `operator:NAME`). Pages are askama templates
//! rendered on the server (auto-escaped); they show current data without JavaScript, and
//! `/static/live.js` re-renders the live part of a page when the event stream (`/events`,
//! server-sent events) says something on it changed.
//!
//! Security: operator accounts with roles ([`Role`]); server-side sessions behind an
//! HttpOnly, SameSite=Strict cookie (Secure over TLS) that expire when idle and at a
//! maximum age; a CSRF token on every form; growing delays after failed logins per name
//! and client address (`X-Forwarded-For` believed from trusted proxies only); a strict
//! Content-Security-Policy (no inline script or style, nothing from other origins).
#![forbid(unsafe_code)]

mod actions;
mod auth;
pub mod backend;
mod chart;
mod client_addr;
mod error;
mod events;
mod history;
mod layout;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use auth::DashboardConfig;
pub use backend::{Backend, BackendError, Role};
pub use client_addr::{BadIpNet, IpNet, TrustedProxies};

use auth::Auth;
use backend::Operator;
use error::PageError;

/// The Content-Security-Policy of every response: scripts, styles and connections from
/// this origin only, no inline script or style, no framing, forms post here only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Shared state of the dashboard's handlers.
#[derive(Debug)]
pub(crate) struct App<B> {
    backend: B,
    auth: Arc<Auth>,
}

impl<B: Clone> Clone for App<B> {
    fn clone(&self) -> Self {
        App {
            backend: self.backend.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// The dashboard's routes, to be served at `/` (beside the API's `/api/v1`).
pub fn router<B: Backend>(backend: B, config: DashboardConfig) -> Router {
    let app = App {
        backend,
        auth: Arc::new(Auth::new(config)),
    };
    Router::new()
        .route("/", get(pages::overview_handler::<B>))
        .route(
            "/login",
            get(pages::login_page_handler::<B>).post(actions::login_handler::<B>),
        )
        .route("/logout", post(actions::logout_handler::<B>))
        .route(
            "/alerts/{cursor}/acknowledge",
            post(actions::acknowledge_alert_handler::<B>),
        )
        .route("/sessions", get(pages::sessions_handler::<B>))
        .route("/sessions/history", get(history::history_handler::<B>))
        .route(
            "/sessions/{host}/{id}/kill",
            get(pages::kill_session_page_handler::<B>).post(actions::kill_session_handler::<B>),
        )
        .route("/hosts", get(pages::hosts_handler::<B>))
        .route("/hosts/{id}", get(pages::host_handler::<B>))
        .route("/people", get(pages::people_handler::<B>))
        .route("/people/{name}", get(pages::person_handler::<B>))
        .route(
            "/people/{name}/kill-sessions",
            get(pages::kill_person_page_handler::<B>)
                .post(actions::kill_person_sessions_handler::<B>),
        )
        .route(
            "/people/{name}/certificates/{serial}/revoke",
            get(pages::revoke_certificate_page_handler::<B>)
                .post(actions::revoke_certificate_handler::<B>),
        )
        .route(
            "/people/{name}/signoff",
            post(actions::sign_off_handler::<B>),
        )
        .route(
            "/people/{name}/reenable",
            post(actions::reenable_handler::<B>),
        )
        .route("/signoffs", get(pages::signoffs_handler::<B>))
        .route("/approvals", get(pages::approvals_handler::<B>))
        .route("/signoffs/{id}", get(pages::signoff_handler::<B>))
        .route("/audit", get(pages::audit_handler::<B>))
        .route(
            "/operators",
            get(pages::operators_handler::<B>).post(actions::create_operator_handler::<B>),
        )
        .route(
            "/operators/{name}/role",
            post(actions::set_operator_role_handler::<B>),
        )
        .route(
            "/operators/{name}/disable",
            post(actions::disable_operator_handler::<B>),
        )
        .route("/events", get(events::events_handler::<B>))
        .route("/static/style.css", get(static_style_handler))
        .route("/static/live.js", get(static_script_handler))
        .route("/static/favicon.svg", get(static_favicon_handler))
        .fallback(pages::not_found_handler)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            error::keep_layout::<B>,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

/// Headers every dashboard response carries.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Pages hold live data and CSRF tokens: never from a cache.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

const STYLE: &str = include_str!("../static/style.css");
const LIVE_SCRIPT: &str = include_str!("../static/live.js");
const FAVICON: &str = include_str!("../static/favicon.svg");

async fn static_style_handler() -> Response {
    static_file("text/css; charset=utf-8", STYLE)
}

async fn static_script_handler() -> Response {
    static_file("text/javascript; charset=utf-8", LIVE_SCRIPT)
}

async fn static_favicon_handler() -> Response {
    static_file("image/svg+xml", FAVICON)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    let mut res = Response::new(body.into());
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// The logged-in operator of a request, with their session. Extracting it from a request
/// without a live session fails with a redirect to the login page.
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    operator: Operator,
    session_id: String,
    csrf: String,
}

impl Authed {
    /// Fails with 403 unless the operator's role allows what needs `needed`.
    fn require(&self, needed: Role) -> Result<(), PageError> {
        if auth::allows(self.operator.role, needed) {
            Ok(())
        } else {
            Err(PageError::Forbidden(format!(
                "this needs the {needed} role; you are {} ({})",
                self.operator.name, self.operator.role
            )))
        }
    }

    /// Fails with 403 unless `token` is this session's CSRF token.
    fn check_csrf(&self, token: &str) -> Result<(), PageError> {
        if auth::same_secret(token, &self.csrf) {
            Ok(())
        } else {
            Err(PageError::BadCsrf)
        }
    }
}

impl<B: Backend> FromRequestParts<App<B>> for Authed {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &App<B>) -> Result<Self, PageError> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        authenticate(app, &parts.headers)
            .await?
            .ok_or(PageError::LoginRequired { next })
    }
}

/// The operator whose live session the request's cookie names, if any. The operator is
/// read again: a disabled one is logged out.
pub(crate) async fn authenticate<B: Backend>(
    app: &App<B>,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Authed>, PageError> {
    let now = app.backend.now();
    let Some((session_id, session)) = app.auth.session(&app.backend, headers, now).await else {
        return Ok(None);
    };
    match app.backend.operator(&session.operator).await? {
        Some(operator) => Ok(Some(Authed {
            operator,
            session_id,
            csrf: session.csrf,
        })),
        None => {
            // Not logged in either way; a session left behind ends at its expiry.
            if let Err(e) = app.auth.end_session(&app.backend, &session_id).await {
                tracing::warn!("dashboard: cannot end the session of a disabled operator: {e}");
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests;
