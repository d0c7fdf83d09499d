//! Sign-off endpoints: sign a person off (scope `signoff`), follow its progress, re-enable.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::handlers::{Json, Path};
use super::{ApiError, AppState, Caller};

type ApiResult<T> = Result<T, ApiError>;

/// `{"reason": "…"}`; a sign-off must say why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignoffBody {
    reason: String,
}

/// Signs the person off: 201 with the new record, or 200 with the existing one when they
/// are signed off already (idempotent). The sign-off is durable when this returns.
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

/// The person's latest sign-off, with per-host progress.
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

/// Every sign-off, newest first.
pub(crate) async fn list_signoffs_handler(
    State(s): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_signoffs().await?))
}

/// One sign-off by id.
pub(crate) async fn get_signoff_handler(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.get_signoff(id).await?))
}

/// Re-enables a signed-off person (scope `signoff`): withdraws the sign-off and the
/// revocations it added.
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
