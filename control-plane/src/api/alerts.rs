//! `GET /api/v1/alerts` and `POST /api/v1/alerts/{cursor}/acknowledge`: the alerts raised
//! by the `[alerts]` rules (see [`crate::alerts`]), and acknowledging one (audited).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::auth::Caller;
use super::error::ErrorBody;
use super::handlers::Query;
use super::{ApiError, AppState};
use crate::alerts::AlertEvent;

type ApiResult<T> = Result<T, ApiError>;

/// `?unacknowledged=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertsQuery {
    /// `true`: only alerts nobody has acknowledged yet.
    #[serde(default)]
    unacknowledged: bool,
    /// At most this many (default 100; taken as 1 to 1000).
    limit: Option<i64>,
}

/// The latest alerts, newest first
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "audit",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Alerts, newest first", body = Vec<AlertEvent>),
    ),
)]
pub(crate) async fn list_alerts_handler(
    State(s): State<AppState>,
    Query(q): Query<AlertsQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.service
            .list_alerts(q.unacknowledged, q.limit.unwrap_or(100))
            .await?,
    ))
}

/// Acknowledge an alert (audited)
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{cursor}/acknowledge",
    tag = "audit",
    params(("cursor" = i64, Path, description = "The alert's event cursor"), super::handlers::ReasonQuery),
    responses(
        (status = 204, description = "Acknowledged"),
        (status = 404, description = "No alert has this cursor", body = ErrorBody),
        (status = 409, description = "Already acknowledged", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
pub(crate) async fn acknowledge_alert_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(cursor): Path<i64>,
    Query(q): Query<super::handlers::ReasonQuery>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
    s.service
        .acknowledge_alert(&actor, cursor, q.reason())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
