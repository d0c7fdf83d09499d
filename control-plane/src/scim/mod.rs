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
mod users;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value};

use crate::service::{Scope, Service, TokenInfo};

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
            .map_err(|e| ScimError::unauthorized(e.to_string()))?;
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
