//! Sign-off endpoints: sign a person off (scope `signoff`), follow its progress, re-enable.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::handlers::{Json, Path};
use super::{ApiError, AppState, Caller};
use crate::model::User;

type ApiResult<T> = Result<T, ApiError>;

/// `{"reason": "…"}`; a sign-off must say why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignoffBody {
    #[schema(schema_with = super::openapi::required_reason_schema)]
    reason: String,
}

/// Sign a person off; durable when it returns
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/signoff",
    tag = "signoffs",
    params(("name" = String, Path, description = "The person's name")),
    request_body = SignoffBody,
    responses(
        (status = 201, description = "Signed off: the new record", body = Object),
        (status = 200, description = "Signed off already: the existing record", body = Object),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 409, description = "This server has no order-signing key loaded to sign the statement", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
pub(crate) async fn signoff_user_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<SignoffBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
    let (record, created) = s.service.sign_off_once(&actor, &name, &req.reason).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record)))
}

/// The person's latest sign-off, with per-host progress
#[utoipa::path(
    get,
    path = "/api/v1/users/{name}/signoff",
    tag = "signoffs",
    params(("name" = String, Path, description = "The person's name")),
    responses(
        (status = 200, description = "The sign-off", body = Object),
        (status = 404, description = "No such person, or never signed off", body = ErrorBody),
    ),
)]
pub(crate) async fn get_user_signoff_handler(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    match s.service.latest_signoff(&name).await? {
        Some(record) => Ok(Json(record)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("user {name:?} has never been signed off"),
        )),
    }
}

/// Every sign-off, newest first
#[utoipa::path(
    get,
    path = "/api/v1/signoffs",
    tag = "signoffs",
    responses(
        (status = 200, description = "The sign-offs", body = Vec<Object>),
    ),
)]
pub(crate) async fn list_signoffs_handler(
    State(s): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_signoffs().await?))
}

/// One sign-off
#[utoipa::path(
    get,
    path = "/api/v1/signoffs/{id}",
    tag = "signoffs",
    params(("id" = i64, Path, description = "The sign-off id")),
    responses(
        (status = 200, description = "The sign-off", body = Object),
        (status = 404, description = "No such sign-off", body = ErrorBody),
    ),
)]
pub(crate) async fn get_signoff_handler(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.get_signoff(id).await?))
}

/// Re-enable a signed-off person: withdraws the sign-off and its revocations
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/reenable",
    tag = "signoffs",
    params(("name" = String, Path, description = "The person's name")),
    request_body = SignoffBody,
    responses(
        (status = 200, description = "Re-enabled", body = User),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 409, description = "The person is not signed off", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
pub(crate) async fn reenable_user_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<SignoffBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
    Ok(Json(
        s.service.reenable_user(&actor, &name, &req.reason).await?,
    ))
}
