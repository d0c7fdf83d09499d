//! The API's one error type: a stable code, a message, and the HTTP status it maps to.

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::{Scope, ServiceError};

/// An error as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code: `unauthorized`, `forbidden`, `invalid`, `bad_request`,
    /// `not_found`, `method_not_allowed`, `conflict`, `too_large`,
    /// `unsupported_media_type`, `too_many_requests`, `internal`.
    pub code: &'static str,
    /// What was wrong, for people.
    pub message: String,
}

/// The error body: `{"error": {"code", "message"}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    #[schema(inline)]
    error: Inner,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Inner {
    /// Stable and machine-readable.
    #[schema(schema_with = error_codes_schema)]
    code: &'static str,
    /// What was wrong, for people.
    message: String,
}

/// Every `code` an error may carry.
pub(crate) const CODES: [&str; 11] = [
    "unauthorized",
    "forbidden",
    "invalid",
    "bad_request",
    "not_found",
    "method_not_allowed",
    "conflict",
    "too_large",
    "unsupported_media_type",
    "too_many_requests",
    "internal",
];

fn error_codes_schema() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(CODES))
        .build()
        .into()
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(crate) fn forbidden(scope: Scope) -> Self {
        ApiError::forbidden_message(&format!("this token lacks the {:?} scope", scope.as_str()))
    }

    pub(crate) fn forbidden_message(message: &str) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// The code of an error that has only a status (one axum or tower-http answered).
    fn code_for(status: StatusCode) -> &'static str {
        match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        }
    }

    /// A rejection of the body, query or path: 413 for a body over the limit (also a
    /// chunked one), 415 for a body that is not `application/json`, else 400, with our
    /// code and body.
    fn from_rejection(what: &str, status: StatusCode, text: String) -> Self {
        let status = if status == StatusCode::PAYLOAD_TOO_LARGE
            || status == StatusCode::UNSUPPORTED_MEDIA_TYPE
        {
            status
        } else {
            // Syntax and data errors alike are the caller's malformed request.
            StatusCode::BAD_REQUEST
        };
        ApiError::new(
            status,
            ApiError::code_for(status),
            format!("{what}: {text}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: Inner {
                code: self.code,
                message: self.message,
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §11.6.1: a 401 names the scheme the client should use.
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"signoff\""),
            );
        }
        res
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(i) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", i.to_string())
            }
            e @ ServiceError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            ServiceError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            e => {
                tracing::error!(error = ?e, "request failed");
                ApiError::internal()
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::from_rejection("request body", r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::from_rejection("query", r.status(), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::from_rejection("path", r.status(), r.body_text())
    }
}

pub(crate) async fn not_found_handler() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

/// Media types whose error bodies are ours already.
fn is_json(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/json") || ct.starts_with("application/scim+json")
        })
}

/// The longest plain-text error body of axum or tower-http kept as the message.
const MAX_PLAIN_ERROR: usize = 4096;

/// Middleware: an error answered by axum or tower-http rather than by a handler (405, 413
/// from the body limit, an extractor of the SCIM module, …) gets the API's JSON body, or
/// SCIM's under `/scim/v2`, so that every client parses one error format. Headers such as
/// `Allow` are kept.
pub(crate) async fn json_error_bodies(req: Request, next: Next) -> Response {
    let scim = req.uri().path().starts_with("/scim/");
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&res) {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is larger than {} KiB",
            super::MAX_BODY / 1024
        ),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_lowercase(),
        _ => text,
    };
    let mut out = if scim {
        // RFC 7644 §3.12; the SCIM module's own errors have this shape too.
        (
            status,
            [(header::CONTENT_TYPE, "application/scim+json")],
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": status.as_str(),
                "detail": message,
            })
            .to_string(),
        )
            .into_response()
    } else {
        ApiError::new(status, ApiError::code_for(status), message).into_response()
    };
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
