//! SCIM 2.0 (RFC 7643 / RFC 7644) under `/scim/v2`, so that an identity provider (Okta,
//! Azure AD / Entra ID) or an HR system can provision people and deprovision them: a SCIM
//! User is a signoff person, and deactivating or deleting it signs the person off through
//! the same service call the API and the CLI use.
//!
//! Only tokens with the `scim` scope are accepted here, and that scope opens nothing else.
//! Every error is a SCIM error body; every response is `application/scim+json`. The mapping
//! of attributes is documented in the control plane's README and served at `/Schemas`.

mod discovery;
mod error;
mod filter;
mod projection;
mod users;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};

use crate::service::{AuthError, Scope, Service, ServiceError, TokenInfo};

pub use error::ScimError;
pub use filter::{Filter, FilterError};

/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// signoff's extension: a person's SSH identities.
pub const SSH_EXTENSION: &str = "urn:signoff:params:scim:schemas:extension:ssh:2.0:User";
/// List responses.
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// PATCH requests.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Search requests (`POST /.search`).
pub const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Error responses.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Where SCIM is mounted.
pub const BASE: &str = "/scim/v2";

/// SCIM's media type.
const SCIM_JSON: &str = "application/scim+json";

#[derive(Debug, Clone)]
struct ScimState {
    service: Service,
}

/// The `/scim/v2` routes, for merging into the application's router.
pub fn router<S>(service: Service) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let scim = Router::new()
        .route(
            "/Users",
            get(users::list_users_handler).post(users::create_user_handler),
        )
        // A static segment wins over `{id}`, and no person's name starts with a dot.
        .route("/Users/.search", post(users::search_users_handler))
        .route("/.search", post(users::search_users_handler))
        .route(
            "/Users/{id}",
            get(users::get_user_handler)
                .put(users::replace_user_handler)
                .patch(users::patch_user_handler)
                .delete(users::delete_user_handler),
        )
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config_handler),
        )
        .route("/ResourceTypes", get(discovery::resource_types_handler))
        .route(
            "/ResourceTypes/{name}",
            get(discovery::resource_type_handler),
        )
        .route("/Schemas", get(discovery::schemas_handler))
        .route("/Schemas/{id}", get(discovery::schema_handler))
        .fallback(not_found_handler)
        .method_not_allowed_fallback(method_not_allowed_handler);
    Router::new()
        .nest(BASE, scim)
        .with_state(ScimState { service })
}

async fn not_found_handler(_caller: ScimCaller) -> ScimError {
    ScimError::not_found("no such SCIM endpoint; this server serves Users only")
}

async fn method_not_allowed_handler(_caller: ScimCaller) -> ScimError {
    ScimError::method_not_allowed()
}

/// A JSON response with SCIM's content type.
pub(crate) fn scim_json(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// Makes every error response under `/scim/v2` a SCIM error body, whoever produced it:
/// the body limit in front of the router (413), axum's own rejections (a path that does not
/// decode), anything not written by this module. Mounted outside every other layer.
pub async fn scim_error_bodies(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let under_scim = path == BASE
        || path
            .strip_prefix(BASE)
            .is_some_and(|rest| rest.starts_with('/'));
    let response = next.run(req).await;
    let status = response.status();
    if !under_scim
        || !(status.is_client_error() || status.is_server_error())
        || is_scim_json(response.headers())
    {
        return response;
    }
    let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "the request body is larger than this server accepts".to_owned()
    } else {
        // The other layer's own words, when short enough to be a message.
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text
        }
    };
    ScimError::new(status, None, detail).into_response()
}

fn is_scim_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(SCIM_JSON))
}

/// A request body that is a JSON object, sent as `application/scim+json` or
/// `application/json` (RFC 7644 §3.1, §8.1). A body of another media type is a 415, one
/// over the size limit a 413, anything but a JSON object a 400 `invalidSyntax`: each a
/// SCIM error.
#[derive(Debug)]
pub(crate) struct ScimBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ScimError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let essence = ct
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if essence != SCIM_JSON && essence != "application/json" {
                return Err(ScimError::unsupported_media_type(&essence));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    "the request body is larger than this server accepts",
                )
            } else {
                ScimError::bad_request("invalidSyntax", e.body_text())
            }
        })?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(o)) => Ok(ScimBody(o)),
            Ok(_) => Err(ScimError::bad_request(
                "invalidSyntax",
                "the body must be a JSON object",
            )),
            Err(e) => Err(ScimError::bad_request(
                "invalidSyntax",
                format!("the body is not JSON: {e}"),
            )),
        }
    }
}

/// The caller, authenticated by a bearer token with the `scim` scope.
#[derive(Debug, Clone)]
pub(crate) struct ScimCaller(pub TokenInfo);

impl FromRequestParts<ScimState> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &ScimState) -> Result<Self, ScimError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ScimError::unauthorized("missing Authorization: Bearer token"))?;
        let secret = header
            .to_str()
            .ok()
            .and_then(crate::api::bearer_value)
            .ok_or_else(|| {
                ScimError::unauthorized("Authorization header is not \"Bearer TOKEN\"")
            })?;
        let info = state
            .service
            .authenticate(secret)
            .await
            .map_err(|e| match e {
                AuthError::Store(e) => ScimError::from(ServiceError::Store(e)),
                e => ScimError::unauthorized(e.to_string()),
            })?;
        if !info.has(Scope::Scim) {
            return Err(ScimError::forbidden());
        }
        Ok(ScimCaller(info))
    }
}

/// An attribute of a JSON object by its SCIM name: SCIM attribute names are
/// case-insensitive (RFC 7643 §2.1).
pub(crate) fn attribute<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests;
