//! Certificates from signoff's user CA: issue one to a person's registered key (scope
//! `issue`), list their unexpired ones (scope `read`). The rules are the service's
//! (`service/certificates.rs`); this only reads the request and maps the answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::handlers::{Json, Path};
use super::{ApiError, AppState, Caller};
use crate::config::parse_duration;
use crate::service::{IssueError, IssueRequest};

/// `{"public_key": "ssh-ed25519 AAAA…", "ttl": "8h", "source_address": "10.0.0.0/8"}`;
/// `ttl` and `source_address` are optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueBody {
    /// The key to certify, one OpenSSH line: a key registered to the person.
    #[schema(schema_with = super::openapi::public_key_schema)]
    public_key: String,
    /// Validity (`8h`, `30m`; the one duration grammar); absent: the policy's default.
    #[serde(default)]
    ttl: Option<String>,
    /// The certificate's `source-address` option (addresses or CIDR ranges, comma-separated).
    #[serde(default)]
    source_address: Option<String>,
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Refused(r) => {
                ApiError::new(StatusCode::FORBIDDEN, "refused", r.to_string())
            }
            e @ IssueError::NoCa => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            IssueError::Service(e) => e.into(),
            e => {
                tracing::error!(error = ?e, "certificate not issued");
                ApiError::internal()
            }
        }
    }
}

/// Issues a certificate: 201 with the record and the certificate line, or 403 `refused`
/// with why (disabled, signed off, key not theirs, revoked, longer than policy allows).
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/certificates",
    tag = "certificates",
    params(("name" = String, Path, description = "The person's name")),
    request_body = IssueBody,
    responses(
        (status = 201, description = "Issued: the record, with the certificate line", body = crate::service::IssuedCertificate),
        (status = 403, description = "Refused, and audited: disabled, signed off, a key registered to nobody or to another person, revoked, or longer than policy allows", body = ErrorBody),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 409, description = "This server has no user CA loaded", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
pub(crate) async fn issue_certificate_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(body): Json<IssueBody>,
) -> Result<impl IntoResponse, ApiError> {
    let ttl = match &body.ttl {
        Some(t) => Some(
            parse_duration(t)
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid",
                        format!("ttl: {e}"),
                    )
                })?
                .as_secs(),
        ),
        None => None,
    };
    let request = IssueRequest {
        public_key: body.public_key,
        ttl,
        source_address: body.source_address,
    };
    let issued = s
        .service
        .issue_certificate(&caller.actor(), &name, &request)
        .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// The person's unexpired certificates, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/users/{name}/certificates",
    tag = "certificates",
    params(("name" = String, Path, description = "The person's name")),
    responses(
        (status = 200, description = "Their unexpired certificates (without the certificate lines)", body = Vec<crate::service::IssuedCertificate>),
        (status = 404, description = "No such person", body = ErrorBody),
    ),
)]
pub(crate) async fn list_certificates_handler(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.service.list_certificates(&name).await?))
}

/// `?hosts=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostCaQuery {
    /// The host names the line covers: known_hosts patterns, comma-separated, no spaces
    /// (default `*`).
    hosts: Option<String>,
}

/// The host CA, and the line clients put in known_hosts.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct HostCaInfo {
    /// The host CA's public key, one OpenSSH line.
    public_key: String,
    /// `@cert-authority HOSTS KEY`: with it, `ssh -o StrictHostKeyChecking=yes` trusts
    /// every host whose agent holds a certificate from this CA.
    known_hosts_line: String,
}

/// The host CA and its known_hosts line
#[utoipa::path(
    get,
    path = "/api/v1/host-ca",
    tag = "cas",
    params(HostCaQuery),
    responses(
        (status = 200, description = "The host CA", body = HostCaInfo),
        (status = 422, description = "Bad host patterns", body = ErrorBody),
        (status = 409, description = "No host CA is loaded", body = ErrorBody),
    ),
)]
pub(crate) async fn host_ca_handler(
    State(s): State<AppState>,
    super::handlers::Query(q): super::handlers::Query<HostCaQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let hosts = q.hosts.unwrap_or_else(|| "*".to_owned());
    crate::service::validate_known_hosts_patterns("hosts", &hosts)
        .map_err(crate::service::ServiceError::from)?;
    let ca = s.service.host_ca().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this control plane has no host CA loaded",
        )
    })?;
    Ok(Json(HostCaInfo {
        public_key: ca.public_openssh.trim().to_owned(),
        known_hosts_line: ca.known_hosts_line(&hosts),
    }))
}
