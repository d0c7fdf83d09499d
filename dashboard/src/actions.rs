//! The state-changing requests (POST): each checks the session's CSRF token and the
//! operator's role, calls the [`Backend`] (which authorizes and audits again) and
//! redirects to the page that shows the result (POST/redirect/GET).

use std::net::{IpAddr, SocketAddr};

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::auth::{cookie_value, same_secret};
use crate::backend::{Backend, Role};
use crate::error::{PageError, safe_next};
use crate::layout::seg;
use crate::pages::{login_form, operators_page};
use crate::{App, Authed};

/// The client's address, when the server recorded it (not in router-level tests): the
/// peer, or what a trusted proxy forwarded for (see `client_addr`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(Option<IpAddr>);

impl<B: Backend> FromRequestParts<App<B>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &App<B>) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(
            app.auth.config.trusted_proxies.client(peer, &parts.headers),
        ))
    }
}

/// A form whose only field is the CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`.
pub(crate) async fn login_handler<B: Backend>(
    State(app): State<App<B>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    // Login CSRF: the form's token must match the cookie the login page set, which
    // another site can neither read nor (SameSite=Strict) send.
    let cookie = cookie_value(&headers, app.auth.login_cookie_name()).unwrap_or("");
    if cookie.is_empty() || !same_secret(cookie, &form.csrf) {
        return Err(PageError::BadCsrf);
    }
    let now = app.backend.now();
    let name = form.name.trim().to_owned();
    // A backend that cannot say how long to wait refuses the try (the `?`): fail closed.
    if let Some(retry_after) = app.auth.login_delay(&app.backend, ip, &name, now).await? {
        tracing::warn!(operator = %name, ?ip, retry_after, "dashboard login delayed: failed logins");
        return Err(PageError::TooManyLogins { retry_after });
    }
    // Every try is counted as failed before the password is checked, and forgiven below
    // once it succeeds: if the count cannot be stored, the password is not checked at all
    // (the `?` answers an error), so a store that fails to write never gives a guesser
    // tries the limiter does not see (fail closed).
    app.auth.login_failed(&app.backend, ip, &name, now).await?;
    let next = safe_next(&form.next).to_owned();
    let operator = if name.is_empty() || form.password.is_empty() {
        None
    } else {
        app.backend.authenticate(&name, &form.password).await?
    };
    let Some(operator) = operator else {
        tracing::info!(operator = %name, ?ip, "dashboard login failed");
        return login_form(
            &app,
            next,
            name,
            "Wrong name or password.".to_owned(),
            StatusCode::UNAUTHORIZED,
        );
    };
    // A fresh session id at every login (no fixation), and the old one, if any, ends.
    if let Some(old) = cookie_value(&headers, app.auth.cookie_name()) {
        app.auth.end_session(&app.backend, old).await?;
    }
    if let Err(e) = app.auth.login_succeeded(&app.backend, ip, &name).await {
        // The failures stay counted: later typos wait sooner, which is the safe side.
        tracing::warn!(operator = %name, ?ip, "dashboard: cannot forget failed logins: {e}");
    }
    let id = app
        .auth
        .create_session(&app.backend, &operator.name, now)
        .await?;
    tracing::info!(operator = %operator.name, ?ip, "dashboard login");
    let mut res = Redirect::to(&next).into_response();
    let session_cookie = app.auth.cookie(
        app.auth.cookie_name(),
        &id,
        app.auth.config.session_max_secs,
    );
    let clear_login = app.auth.cookie(app.auth.login_cookie_name(), "", 0);
    for c in [session_cookie, clear_login] {
        if let Ok(v) = c.parse() {
            res.headers_mut().append(SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// `POST /logout`.
pub(crate) async fn logout_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    // If the session cannot be ended, say so: a logout that seemed to work but left the
    // session live on every server would be worse.
    app.auth
        .end_session(&app.backend, &authed.session_id)
        .await?;
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = app.auth.cookie(app.auth.cookie_name(), "", 0).parse() {
        res.headers_mut().append(SET_COOKIE, v);
    }
    Ok(res)
}

/// `POST /sessions/{host}/{id}/kill`.
pub(crate) async fn kill_session_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path((host, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    authed.require(Role::Operator)?;
    app.backend
        .kill_session(&authed.operator, &host, &id)
        .await?;
    Ok(Redirect::to("/sessions").into_response())
}

/// `POST /alerts/{cursor}/acknowledge`.
pub(crate) async fn acknowledge_alert_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(cursor): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    authed.require(Role::Operator)?;
    app.backend
        .acknowledge_alert(&authed.operator, cursor)
        .await?;
    Ok(Redirect::to("/").into_response())
}

/// `POST /people/{name}/kill-sessions`.
pub(crate) async fn kill_person_sessions_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    authed.require(Role::Operator)?;
    app.backend
        .kill_person_sessions(&authed.operator, &name)
        .await?;
    Ok(Redirect::to(&format!("/people/{}", seg(&name))).into_response())
}

/// `POST /people/{name}/certificates/{serial}/revoke`.
pub(crate) async fn revoke_certificate_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path((name, serial)): Path<(String, u64)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    authed.require(Role::Operator)?;
    app.backend
        .revoke_certificate(&authed.operator, &name, serial)
        .await?;
    Ok(Redirect::to(&format!("/people/{}", seg(&name))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    /// The confirmation checkbox: present (`yes`) only when ticked.
    #[serde(default)]
    confirm: Option<String>,
}

impl ReasonForm {
    fn checked(&self, what: &str) -> Result<String, PageError> {
        let reason = self.reason.trim();
        if reason.is_empty() {
            return Err(PageError::Invalid(format!(
                "give a reason to {what}; it goes to the audit log"
            )));
        }
        if self.confirm.as_deref() != Some("yes") {
            return Err(PageError::Invalid(format!(
                "tick the confirmation box to {what}"
            )));
        }
        Ok(reason.to_owned())
    }
}

/// `POST /people/{name}/signoff`: reason and confirmation required.
pub(crate) async fn sign_off_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(name): Path<String>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    authed.require(Role::Operator)?;
    let reason = form.checked(&format!("sign {name} off"))?;
    let id = app
        .backend
        .sign_off(&authed.operator, &name, &reason)
        .await?;
    Ok(Redirect::to(&format!("/signoffs/{id}")).into_response())
}

/// `POST /people/{name}/reenable` (admins).
pub(crate) async fn reenable_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(name): Path<String>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    authed.require(Role::Admin)?;
    let reason = form.checked(&format!("re-enable {name}"))?;
    app.backend
        .reenable(&authed.operator, &name, &reason)
        .await?;
    Ok(Redirect::to(&format!("/people/{}", seg(&name))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct OperatorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

fn role_of(s: &str) -> Result<Role, PageError> {
    Role::parse(s).ok_or_else(|| {
        PageError::Invalid(format!(
            "{s:?} is not a role: choose viewer, operator or admin"
        ))
    })
}

/// `POST /operators` (admins): creates an account and shows its password once.
pub(crate) async fn create_operator_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Form(form): Form<OperatorForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    authed.require(Role::Admin)?;
    let role = role_of(&form.role)?;
    let name = form.name.trim().to_owned();
    let password = app
        .backend
        .create_operator(&authed.operator, &name, role)
        .await?;
    operators_page(&app, &authed, Some((name, password))).await
}

/// `POST /operators/{name}/role` (admins).
pub(crate) async fn set_operator_role_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(name): Path<String>,
    Form(form): Form<OperatorForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    authed.require(Role::Admin)?;
    let role = role_of(&form.role)?;
    app.backend
        .set_operator_role(&authed.operator, &name, role)
        .await?;
    Ok(Redirect::to("/operators").into_response())
}

/// `POST /operators/{name}/disable` (admins).
pub(crate) async fn disable_operator_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    authed.check_csrf(&form.csrf)?;
    authed.require(Role::Admin)?;
    app.backend
        .disable_operator(&authed.operator, &name)
        .await?;
    Ok(Redirect::to("/operators").into_response())
}
