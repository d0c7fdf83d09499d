//! Handlers: parse, check scope, call the service, return JSON.

use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Caller};
use crate::model::{Revocation, UserStatus};
use crate::service::{NewGrant, NewHost, NewUser, Scope, SessionFilter, UserUpdate};

/// JSON body whose rejection is an [`ApiError`].
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct Path<T>(pub T);

/// Query parameters whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub T);

type ApiResult<T> = Result<T, ApiError>;

/// `?reason=` on DELETE requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonQuery {
    #[serde(default)]
    reason: String,
}

/// `{"reason": "…"}` on action requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    #[serde(default)]
    reason: String,
}

pub(crate) async fn revision_handler(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(
        serde_json::json!({ "revision": s.service.revision() }),
    ))
}

// ---- users ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    name: String,
    #[serde(default)]
    key_ids: Vec<String>,
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    public_keys: Vec<String>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn list_users_handler(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.list_users().await?))
}

pub(crate) async fn create_user_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateUser>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    let new = NewUser {
        name: req.name,
        key_ids: req.key_ids,
        principals: req.principals,
        public_keys: req.public_keys,
    };
    let user = s.service.create_user(&actor, new, &req.reason).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub(crate) async fn get_user_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.get_user(&name).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    key_ids: Option<Vec<String>>,
    principals: Option<Vec<String>>,
    public_keys: Option<Vec<String>>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn update_user_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<UpdateUser>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    let update = UserUpdate {
        key_ids: req.key_ids,
        principals: req.principals,
        public_keys: req.public_keys,
    };
    Ok(Json(
        s.service
            .update_user(&actor, &name, update, &req.reason)
            .await?,
    ))
}

pub(crate) async fn disable_user_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<ReasonBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    Ok(Json(
        s.service
            .set_user_status(&actor, &name, UserStatus::Disabled, &req.reason)
            .await?,
    ))
}

pub(crate) async fn enable_user_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<ReasonBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    Ok(Json(
        s.service
            .set_user_status(&actor, &name, UserStatus::Active, &req.reason)
            .await?,
    ))
}

// ---- groups and hosts -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGroup {
    name: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn list_groups_handler(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.list_groups().await?))
}

pub(crate) async fn create_group_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateGroup>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    let group = s
        .service
        .create_group(&actor, &req.name, &req.reason)
        .await?;
    Ok((StatusCode::CREATED, Json(group)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateHost {
    id: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn list_hosts_handler(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.list_hosts().await?))
}

pub(crate) async fn create_host_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateHost>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    let new = NewHost {
        id: req.id,
        hostname: req.hostname,
        groups: req.groups,
    };
    let host = s.service.create_host(&actor, new, &req.reason).await?;
    Ok((StatusCode::CREATED, Json(host)))
}

pub(crate) async fn get_host_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.get_host(&id).await?))
}

pub(crate) async fn remove_host_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    s.service.remove_host(&actor, &id, &q.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetGroups {
    groups: Vec<String>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn set_host_groups_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<SetGroups>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    Ok(Json(
        s.service
            .set_host_groups(&actor, &id, &req.groups, &req.reason)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ViewQuery {
    revision: Option<i64>,
}

/// A host's view as JSON: principals entries as a list, for readability.
#[derive(Debug, Serialize)]
struct ViewJson {
    revision: i64,
    entries: Vec<EntryJson>,
    revocations: Vec<Revocation>,
    disabled_users: Vec<String>,
}

#[derive(Debug, Serialize)]
struct EntryJson {
    account: String,
    user: String,
    #[serde(flatten)]
    entry: crate::views::Entry,
}

fn revision_in_range(s: &AppState, rev: i64, field: &str) -> ApiResult<()> {
    if rev < 0 || rev > s.service.revision() {
        return Err(ApiError::bad_request(format!(
            "{field}: revision {rev} does not exist (latest is {})",
            s.service.revision()
        )));
    }
    Ok(())
}

pub(crate) async fn host_view_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ViewQuery>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    s.service.get_host(&id).await?;
    let rev = q.revision.unwrap_or_else(|| s.service.revision());
    revision_in_range(&s, rev, "revision")?;
    let v = s.service.host_view(&id, rev).await?;
    Ok(Json(ViewJson {
        revision: v.revision,
        entries: v
            .entries
            .into_iter()
            .map(|((account, user), entry)| EntryJson {
                account,
                user,
                entry,
            })
            .collect(),
        revocations: v.revocations.into_iter().collect(),
        disabled_users: v.disabled_users.into_iter().collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeltaQuery {
    from: i64,
    to: Option<i64>,
}

pub(crate) async fn host_delta_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeltaQuery>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    s.service.get_host(&id).await?;
    let to = q.to.unwrap_or_else(|| s.service.revision());
    revision_in_range(&s, q.from, "from")?;
    revision_in_range(&s, to, "to")?;
    if q.from > to {
        return Err(ApiError::bad_request("from: must not be after to"));
    }
    let d = s.service.host_delta(&id, q.from, to).await?;
    Ok(Json(serde_json::json!({
        "from": d.from,
        "to": d.to,
        "upsert": d.upsert.into_iter().map(|((account, user), entry)| EntryJson { account, user, entry }).collect::<Vec<_>>(),
        "remove": d.remove.into_iter().map(|(account, user)| serde_json::json!({"account": account, "user": user})).collect::<Vec<_>>(),
        "add_revocations": d.add_revocations,
        "remove_revocations": d.remove_revocations,
        "add_disabled": d.add_disabled,
        "remove_disabled": d.remove_disabled,
    })))
}

// ---- grants -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGrant {
    user: String,
    account: String,
    group: String,
    #[serde(default)]
    not_after: Option<i64>,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantsQuery {
    user: Option<String>,
}

pub(crate) async fn list_grants_handler(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<GrantsQuery>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.list_grants(q.user.as_deref()).await?))
}

pub(crate) async fn create_grant_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateGrant>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    let new = NewGrant {
        user: req.user,
        account: req.account,
        group: req.group,
        not_after: req.not_after,
    };
    let grant = s.service.create_grant(&actor, new, &req.reason).await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

pub(crate) async fn delete_grant_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    s.service.delete_grant(&actor, id, &q.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- CAs and revocations ----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddCa {
    name: String,
    public_key: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn list_cas_handler(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.list_cas().await?))
}

pub(crate) async fn add_ca_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<AddCa>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    let ca = s
        .service
        .add_ca(&actor, &req.name, &req.public_key, &req.reason)
        .await?;
    Ok((StatusCode::CREATED, Json(ca)))
}

pub(crate) async fn remove_ca_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    s.service.remove_ca(&actor, &name, &q.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct Revoke {
    #[serde(flatten)]
    revocation: Revocation,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn list_revocations_handler(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.list_revocations().await?))
}

pub(crate) async fn revoke_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<Revoke>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    let record = s
        .service
        .revoke(&actor, req.revocation, &req.reason)
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

pub(crate) async fn unrevoke_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    s.service.unrevoke(&actor, id, &q.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KrlQuery {
    ca: Option<String>,
}

pub(crate) async fn krl_handler(
    State(s): State<AppState>,
    Query(q): Query<KrlQuery>,
) -> ApiResult<impl IntoResponse> {
    let bytes = s.service.krl(q.ca.as_deref()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    ))
}

// ---- sessions ---------------------------------------------------------------------------

pub(crate) async fn list_sessions_handler(
    State(s): State<AppState>,
    caller: Caller,
    Query(filter): Query<SessionFilter>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    if let Some(state) = &filter.state
        && !["live", "lingering", "unknown", "ended"].contains(&state.as_str())
    {
        return Err(ApiError::bad_request(
            "state: one of live, lingering, unknown, ended",
        ));
    }
    Ok(Json(s.service.list_sessions(&filter).await?))
}

pub(crate) async fn get_session_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.get_session(&host, &id).await?))
}

pub(crate) async fn kill_session_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
    Json(req): Json<ReasonBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Signoff)?.actor();
    let order = s
        .service
        .kill_session(&actor, &host, &id, &req.reason)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(order)))
}

pub(crate) async fn kill_user_sessions_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<ReasonBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Signoff)?.actor();
    let orders = s
        .service
        .kill_user_sessions(&actor, &name, &req.reason)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(orders)))
}

// ---- tokens and audit -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    name: String,
    scopes: Vec<Scope>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn list_tokens_handler(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Write)?;
    Ok(Json(s.service.list_tokens().await?))
}

pub(crate) async fn create_token_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateToken>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    let token = s
        .service
        .create_token(&actor, &req.name, &req.scopes, req.expires_at, &req.reason)
        .await?;
    Ok((StatusCode::CREATED, Json(token)))
}

pub(crate) async fn revoke_token_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.require(Scope::Write)?.actor();
    s.service.revoke_token(&actor, id, &q.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    filter: String,
    before: Option<i64>,
    limit: Option<i64>,
}

pub(crate) async fn audit_log_handler(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(
        s.service
            .audit_log(&q.filter, q.before, q.limit.unwrap_or(100))
            .await?,
    ))
}

pub(crate) async fn audit_verify_handler(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok(Json(s.service.verify_audit().await?))
}
