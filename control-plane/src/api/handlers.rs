//! Handlers: parse, call the service, return JSON. The route's scope was checked before
//! the handler runs (`routes.rs`, `auth.rs`), so nothing here reads a body it may not.

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

/// Query parameters whose rejection is an [`ApiError`]. Unlike axum's `Query`, a
/// percent-escape that does not decode to UTF-8 (`?reason=%FF`) or a malformed escape is a
/// 400: axum decodes lossily, so the audit log would keep a U+FFFD where the caller sent
/// something else.
#[derive(Debug)]
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        if let Some(query) = parts.uri.query() {
            check_query_encoding(query)?;
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// Fails unless every name and value of `query` percent-decodes to UTF-8.
pub(crate) fn check_query_encoding(query: &str) -> Result<(), ApiError> {
    for piece in query.split('&').flat_map(|pair| pair.splitn(2, '=')) {
        let mut bytes = Vec::with_capacity(piece.len());
        let mut rest = piece.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'%' {
                let hex = tail
                    .get(..2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "query: a % must be followed by two hex digits (write %25 for %)",
                        )
                    })?;
                bytes.push(hex);
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        if std::str::from_utf8(&bytes).is_err() {
            return Err(ApiError::bad_request(
                "query: percent-escapes must decode to UTF-8",
            ));
        }
    }
    Ok(())
}

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

pub(crate) async fn revision_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
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

pub(crate) async fn list_users_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_users().await?))
}

pub(crate) async fn create_user_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateUser>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
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
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
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
    let actor = caller.actor();
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
    let actor = caller.actor();
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
    let actor = caller.actor();
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

pub(crate) async fn list_groups_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_groups().await?))
}

pub(crate) async fn create_group_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateGroup>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
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

pub(crate) async fn list_hosts_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_hosts().await?))
}

pub(crate) async fn create_host_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateHost>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
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
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.get_host(&id).await?))
}

pub(crate) async fn remove_host_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
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
    let actor = caller.actor();
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
    Path(id): Path<String>,
    Query(q): Query<ViewQuery>,
) -> ApiResult<impl IntoResponse> {
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
    Path(id): Path<String>,
    Query(q): Query<DeltaQuery>,
) -> ApiResult<impl IntoResponse> {
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
    Query(q): Query<GrantsQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_grants(q.user.as_deref()).await?))
}

pub(crate) async fn create_grant_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateGrant>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
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
    let actor = caller.actor();
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

pub(crate) async fn list_cas_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_cas().await?))
}

pub(crate) async fn add_ca_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<AddCa>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
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
    let actor = caller.actor();
    s.service.remove_ca(&actor, &name, &q.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct Revoke {
    #[serde(flatten)]
    revocation: Revocation,
    /// Unix seconds after which the revocation is withdrawn by itself.
    #[serde(default)]
    valid_before: Option<i64>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn list_revocations_handler(
    State(s): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_revocations().await?))
}

pub(crate) async fn revoke_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<Revoke>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
    let record = s
        .service
        .revoke_until(&actor, req.revocation, req.valid_before, &req.reason)
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

pub(crate) async fn unrevoke_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
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
    Query(filter): Query<SessionFilter>,
) -> ApiResult<impl IntoResponse> {
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
    Path((host, id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.get_session(&host, &id).await?))
}

pub(crate) async fn kill_session_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
    Json(req): Json<ReasonBody>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
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
    let actor = caller.actor();
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

pub(crate) async fn list_tokens_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_tokens().await?))
}

pub(crate) async fn create_token_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateToken>,
) -> ApiResult<impl IntoResponse> {
    // The scope list is in the body, so this rule follows the parse; the route's own
    // scope (`admin`) was checked before the body was read.
    caller
        .token()
        .may_mint(&req.scopes, req.expires_at)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()))?;
    let actor = caller.actor();
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
    let actor = caller.actor();
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
    Query(q): Query<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        s.service
            .audit_log(&q.filter, q.before, q.limit.unwrap_or(100))
            .await?,
    ))
}

pub(crate) async fn audit_verify_handler(
    State(s): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.verify_audit().await?))
}
