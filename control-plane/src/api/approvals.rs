//! Approvals of grants and of re-enables: the pending list, what to sign, and adding a signature. The
//! service checks a signature only for early feedback; hosts decide whether approvals
//! suffice (`service/approvals.rs`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::handlers::{Json, Path};
use super::{ApiError, AppState, Caller};
use crate::service::{ApprovalRecord, GrantApprovals, ReenableApprovals};

type ApiResult<T> = Result<T, ApiError>;

/// `{"signature": "-----BEGIN SSH SIGNATURE-----…"}`: what `ssh-keygen -Y sign -n
/// signoff-approval` wrote to `FILE.sig`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalBody {
    /// The armored SSHSIG.
    #[schema(max_length = 16384)]
    signature: String,
}

/// Grants proposed for approval or holding approvals, with the bytes to sign
#[utoipa::path(
    get,
    path = "/api/v1/approvals",
    tag = "approvals",
    responses(
        (status = 200, description = "Pending approvals, oldest grant first", body = Vec<GrantApprovals>),
    ),
)]
pub(crate) async fn list_approvals_handler(
    State(s): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.pending_approvals().await?))
}

/// A grant's approvals and the exact bytes approvers sign
#[utoipa::path(
    get,
    path = "/api/v1/grants/{id}/approvals",
    tag = "approvals",
    params(("id" = i64, Path, description = "The grant id")),
    responses(
        (status = 200, description = "The grant, its bytes and approvals", body = GrantApprovals),
        (status = 404, description = "No such live grant", body = ErrorBody),
    ),
)]
pub(crate) async fn get_grant_approvals_handler(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.grant_approvals(id).await?))
}

/// Add an approver's signature to a grant; hosts count it if the key is one of their approvers
#[utoipa::path(
    post,
    path = "/api/v1/grants/{id}/approvals",
    tag = "approvals",
    params(("id" = i64, Path, description = "The grant id")),
    request_body = ApprovalBody,
    responses(
        (status = 201, description = "Recorded; in every host view from the next revision", body = ApprovalRecord),
        (status = 404, description = "No such live grant", body = ErrorBody),
        (status = 409, description = "This key has approved the grant already", body = ErrorBody),
        (status = 422, description = "Not an SSHSIG in namespace signoff-approval over this grant's bytes", body = ErrorBody),
    ),
)]
pub(crate) async fn add_grant_approval_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(req): Json<ApprovalBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
    let record = s.service.approve_grant(&actor, id, &req.signature).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// A sign-off's re-enable approvals and the exact bytes approvers sign
#[utoipa::path(
    get,
    path = "/api/v1/signoffs/{id}/approvals",
    tag = "approvals",
    params(("id" = i64, Path, description = "The sign-off id")),
    responses(
        (status = 200, description = "The sign-off's re-enable bytes and approvals", body = ReenableApprovals),
        (status = 404, description = "No such sign-off", body = ErrorBody),
    ),
)]
pub(crate) async fn get_reenable_approvals_handler(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.reenable_approvals(id).await?))
}

/// Add an approver's signature of re-enabling the person of a sign-off; hosts with
/// approvals let the person back in once k of their approvers signed
#[utoipa::path(
    post,
    path = "/api/v1/signoffs/{id}/approvals",
    tag = "approvals",
    params(("id" = i64, Path, description = "The sign-off id")),
    request_body = ApprovalBody,
    responses(
        (status = 201, description = "Recorded; in every host view from the next revision", body = ApprovalRecord),
        (status = 404, description = "No such sign-off", body = ErrorBody),
        (status = 409, description = "This key has approved this re-enable already", body = ErrorBody),
        (status = 422, description = "Not an SSHSIG in namespace signoff-approval over this re-enable's bytes", body = ErrorBody),
    ),
)]
pub(crate) async fn add_reenable_approval_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(req): Json<ApprovalBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
    let record = s
        .service
        .approve_reenable(&actor, id, &req.signature)
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}
