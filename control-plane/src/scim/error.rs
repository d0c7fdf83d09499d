//! SCIM error responses (RFC 7644 §3.12): `urn:ietf:params:scim:api:messages:2.0:Error`,
//! the status as a string, a `scimType` where the RFC defines one, and a `detail` for people.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ERROR_SCHEMA, scim_json};
use crate::service::ServiceError;

/// An error as SCIM returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    /// HTTP status.
    pub status: StatusCode,
    /// RFC 7644 `scimType` (`invalidFilter`, `uniqueness`, `mutability`, `invalidSyntax`,
    /// `invalidPath`, `noTarget`, `invalidValue`, …), when one applies.
    pub scim_type: Option<&'static str>,
    /// What was wrong, for people.
    pub detail: String,
}

impl ScimError {
    pub(crate) fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// 400 with a `scimType`.
    pub(crate) fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        ScimError::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    /// 401: no usable bearer token.
    pub(crate) fn unauthorized(detail: impl Into<String>) -> Self {
        ScimError::new(StatusCode::UNAUTHORIZED, None, detail)
    }

    /// 403: a token without the `scim` scope.
    pub(crate) fn forbidden() -> Self {
        ScimError::new(
            StatusCode::FORBIDDEN,
            None,
            "this token lacks the \"scim\" scope; create one with `signoff-server api-token create NAME --scope scim`",
        )
    }

    /// 404.
    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        ScimError::new(StatusCode::NOT_FOUND, None, detail)
    }

    /// 405: the resource exists, the method does not apply to it.
    pub(crate) fn method_not_allowed() -> Self {
        ScimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            "this method does not apply to this endpoint",
        )
    }

    /// 415: a body that is not JSON by its media type.
    pub(crate) fn unsupported_media_type(got: &str) -> Self {
        ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            format!("the body must be application/scim+json (or application/json), not {got:?}"),
        )
    }

    /// A service error where a conflict means the userName, a key ID or a key is taken.
    pub(crate) fn uniqueness(e: ServiceError) -> Self {
        match e {
            ServiceError::Conflict(m) => {
                ScimError::new(StatusCode::CONFLICT, Some("uniqueness"), m)
            }
            e => e.into(),
        }
    }
}

impl From<ServiceError> for ScimError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(i) => ScimError::bad_request(
                "invalidValue",
                format!("{}: {}", scim_field(&i.field), i.message),
            ),
            e @ ServiceError::NotFound { .. } => ScimError::not_found(e.to_string()),
            ServiceError::Conflict(m) => ScimError::new(StatusCode::CONFLICT, None, m),
            e => {
                tracing::error!(error = ?e, "SCIM request failed");
                ScimError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    "internal error; see the server log",
                )
            }
        }
    }
}

/// The SCIM name of a field the service layer names in the API's terms: `public_keys[0]`
/// is `sshPublicKeys[0]` to an identity provider, which never saw the API.
fn scim_field(field: &str) -> String {
    let split = field.find('[').unwrap_or(field.len());
    let (name, index) = field.split_at(split);
    let scim = match name {
        "name" => "userName",
        "key_ids" => "keyIds",
        "public_keys" => "sshPublicKeys",
        other => other,
    };
    format!("{scim}{index}")
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_str(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut response = scim_json(self.status, body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"signoff SCIM\""),
            );
        }
        response
    }
}
