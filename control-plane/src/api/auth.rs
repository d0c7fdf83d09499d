//! Authentication and authorization of API requests, in one place: a middleware on each
//! route of the table (`routes.rs`) that runs before the handler, so before its body or
//! query is read. A caller without the route's scope learns nothing from a crafted body.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::routes::Access;
use crate::service::{Actor, AuthError, Scope, Service, ServiceError, TokenInfo};

/// The caller of a route that needs a token: authenticated, and holding the route's scope.
#[derive(Debug, Clone)]
pub struct Caller(TokenInfo);

impl Caller {
    /// The audit actor, `token:NAME`.
    pub fn actor(&self) -> Actor {
        self.0.actor()
    }

    /// The token.
    pub fn token(&self) -> &TokenInfo {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Only `authorize` inserts it; a handler asking for a caller on a public route is
        // a bug in the table, and it must not run as if authorized.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!("a handler needs a caller but its route is public");
            ApiError::internal()
        })
    }
}

/// The secret of an `Authorization` value `Bearer SECRET`. The scheme is
/// case-insensitive (RFC 9110 §11.1); SCIM parses its callers' headers with this too.
pub(crate) fn bearer_value(header: &str) -> Option<&str> {
    header
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, secret)| secret.trim())
        .filter(|s| !s.is_empty())
}

/// The bearer secret of the request's `Authorization` header.
pub(crate) fn bearer_secret(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
    header
        .to_str()
        .ok()
        .and_then(bearer_value)
        .ok_or_else(|| ApiError::unauthorized("Authorization header is not \"Bearer TOKEN\""))
}

/// Whether the request may call a route of `access`: the token's owner, or the error.
pub(crate) async fn check(
    service: &Service,
    headers: &HeaderMap,
    access: Access,
) -> Result<Option<Caller>, ApiError> {
    let scope = match access {
        Access::Public => return Ok(None),
        Access::Scope(scope) => scope,
    };
    let info = service
        .authenticate(bearer_secret(headers)?)
        .await
        .map_err(|e| match e {
            // Not the token's fault: the same 500 as a handler whose store fails.
            AuthError::Store(e) => ApiError::from(ServiceError::Store(e)),
            e => ApiError::unauthorized(&e.to_string()),
        })?;
    // An identity provider's token opens SCIM and nothing else, whatever else it carries
    // (tokens made before `scim` became exclusive may carry more).
    if info.has(Scope::Scim) {
        return Err(ApiError::forbidden_message(
            "a token with the \"scim\" scope is for /scim/v2 only",
        ));
    }
    if !info.has(scope) {
        return Err(ApiError::forbidden(scope));
    }
    Ok(Some(Caller(info)))
}

/// The middleware: rejects the request, or passes it on with its [`Caller`].
pub(crate) async fn authorize(
    State((service, access)): State<(Service, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    match check(&service, req.headers(), access).await {
        Ok(caller) => {
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}
