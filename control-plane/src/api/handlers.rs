//! Handlers: parse, call the service, return JSON. The route's scope was checked before
//! the handler runs (`routes.rs`, `auth.rs`), so nothing here reads a body it may not.
//! Each handler's `#[utoipa::path]` is its part of the OpenAPI document (`openapi.rs`).

// utoipa's `params(Query)` expands to a path qualified with this module's own name.
#![allow(unused_qualifications)]

use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, AppState, Caller};
use crate::audit::{Record, Verification};
use crate::model::{Grant, Host, HostGroup, Revocation, TrustedCa, User, UserStatus};
use crate::service::{
    NewGrant, NewHost, NewUser, RevocationRecord, Scope, ServiceError, SessionCursor,
    SessionFilter, SessionPage, Token, TokenInfo, UserUpdate,
};

/// A JSON request body whose rejection is an [`ApiError`], or a JSON response.
///
/// Strict where serde is lenient: the body must be a JSON object. Derived `Deserialize`
/// would take an array for a struct (fields in order), so `["bob"]` would create a user
/// the document says cannot be sent.
#[derive(Debug)]
pub(crate) struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        // axum's extractor checks the media type (415), the size (413) and the syntax.
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::bad_request("request body: must be a JSON object"));
        }
        serde_json::from_value(integral_numbers(value))
            .map(Json)
            .map_err(|e| ApiError::bad_request(format!("request body: {e}")))
    }
}

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

/// `value` with every number that has no fractional part (`5.0`, `1e3`) as an integer.
/// JSON Schema counts them as integers, and so does the document; serde would refuse a
/// float for an `i64`.
fn integral_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // The range test is on f64s, where i64::MIN is exact and 2^63 is the first
            // value past i64::MAX.
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < 9_223_372_036_854_775_808.0 {
                Value::from(f as i64)
            } else {
                Value::Number(n)
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(integral_numbers).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, integral_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `?reason=` on DELETE requests.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonQuery {
    /// Why; recorded in the audit log.
    #[serde(default)]
    #[param(schema_with = super::openapi::reason_schema)]
    reason: String,
}

impl ReasonQuery {
    /// The reason given (empty when none).
    pub(crate) fn reason(&self) -> &str {
        &self.reason
    }
}

/// `{"reason": "…"}` on action requests.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    #[serde(default)]
    #[schema(schema_with = super::openapi::reason_schema)]
    reason: String,
}

/// The latest revision.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Revision {
    /// Every change hosts must know makes a new one.
    revision: i64,
}

/// Latest committed revision
#[utoipa::path(
    get,
    path = "/api/v1/revision",
    tag = "meta",
    responses(
        (status = 200, description = "The revision", body = Revision),
    ),
)]
pub(crate) async fn revision_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(Revision {
        revision: s.service.revision(),
    }))
}

// ---- users ------------------------------------------------------------------------------

/// A new person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    #[schema(schema_with = super::openapi::user_name_schema)]
    name: String,
    /// Certificate key IDs that identify them.
    #[serde(default)]
    #[schema(schema_with = super::openapi::key_ids_schema)]
    key_ids: Vec<String>,
    /// Their certificate principals (default: their name, which must then be one).
    #[serde(default)]
    #[schema(schema_with = super::openapi::principals_schema)]
    principals: Vec<String>,
    /// Plain public keys for hosts without certificates.
    #[serde(default)]
    #[schema(schema_with = super::openapi::public_keys_schema)]
    public_keys: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::reason_schema)]
    reason: String,
}

/// List people
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    responses(
        (status = 200, description = "Every person", body = Vec<User>),
    ),
)]
pub(crate) async fn list_users_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_users().await?))
}

/// Create a person
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 409, description = "Conflicts with what exists", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// Get a person
#[utoipa::path(
    get,
    path = "/api/v1/users/{name}",
    tag = "users",
    params(("name" = String, Path, description = "The person's name")),
    responses(
        (status = 200, description = "The person", body = User),
        (status = 404, description = "No such person", body = ErrorBody),
    ),
)]
pub(crate) async fn get_user_handler(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.get_user(&name).await?))
}

/// What to replace; a field left out is kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    // `null` is refused like any other non-list: "keep" is said by leaving the field out,
    // and the schema has one way to say each thing.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::key_ids_schema)]
    key_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::some_principals_schema)]
    principals: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::openapi::public_keys_schema)]
    public_keys: Option<Vec<String>>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::reason_schema)]
    reason: String,
}

/// An optional field that, when present, must not be `null`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Replace a person's key IDs, principals or keys
#[utoipa::path(
    patch,
    path = "/api/v1/users/{name}",
    tag = "users",
    params(("name" = String, Path, description = "The person's name")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 409, description = "Conflicts with what exists", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// Disable a person (no sign-off record)
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/disable",
    tag = "users",
    params(("name" = String, Path, description = "The person's name")),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "Disabled", body = User),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// Enable a disabled person
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/enable",
    tag = "users",
    params(("name" = String, Path, description = "The person's name")),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "Enabled", body = User),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 409, description = "The person is signed off: re-enable them instead", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// A new host group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGroup {
    #[schema(schema_with = super::openapi::group_name_schema)]
    name: String,
    #[serde(default)]
    #[schema(schema_with = super::openapi::reason_schema)]
    reason: String,
}

/// List host groups
#[utoipa::path(
    get,
    path = "/api/v1/groups",
    tag = "hosts",
    responses(
        (status = 200, description = "Every group", body = Vec<HostGroup>),
    ),
)]
pub(crate) async fn list_groups_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_groups().await?))
}

/// Create a host group
#[utoipa::path(
    post,
    path = "/api/v1/groups",
    tag = "hosts",
    request_body = CreateGroup,
    responses(
        (status = 201, description = "Created", body = HostGroup),
        (status = 409, description = "Conflicts with what exists", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// A new host.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateHost {
    #[schema(schema_with = super::openapi::host_id_schema)]
    id: String,
    /// Default: the id.
    #[serde(default)]
    #[schema(schema_with = super::openapi::hostname_schema)]
    hostname: String,
    /// Groups it joins; each must exist.
    #[serde(default)]
    #[schema(schema_with = super::openapi::group_names_schema)]
    groups: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::reason_schema)]
    reason: String,
}

/// List hosts
#[utoipa::path(
    get,
    path = "/api/v1/hosts",
    tag = "hosts",
    responses(
        (status = 200, description = "Every host", body = Vec<Host>),
    ),
)]
pub(crate) async fn list_hosts_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_hosts().await?))
}

/// Register a host
#[utoipa::path(
    post,
    path = "/api/v1/hosts",
    tag = "hosts",
    request_body = CreateHost,
    responses(
        (status = 201, description = "Created", body = Host),
        (status = 404, description = "A group does not exist", body = ErrorBody),
        (status = 409, description = "Conflicts with what exists", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// Get a host
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{id}",
    tag = "hosts",
    params(("id" = String, Path, description = "The host id")),
    responses(
        (status = 200, description = "The host", body = Host),
        (status = 404, description = "No such host", body = ErrorBody),
    ),
)]
pub(crate) async fn get_host_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.get_host(&id).await?))
}

/// Remove a host
#[utoipa::path(
    delete,
    path = "/api/v1/hosts/{id}",
    tag = "hosts",
    params(("id" = String, Path, description = "The host id"), ReasonQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such host", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// A host's new groups.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetGroups {
    #[schema(schema_with = super::openapi::group_names_schema)]
    groups: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::reason_schema)]
    reason: String,
}

/// Replace a host's groups
#[utoipa::path(
    put,
    path = "/api/v1/hosts/{id}/groups",
    tag = "hosts",
    params(("id" = String, Path, description = "The host id")),
    request_body = SetGroups,
    responses(
        (status = 200, description = "Updated", body = Host),
        (status = 404, description = "No such host or group", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// `?revision=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ViewQuery {
    /// The revision (default: the latest); 404 if it does not exist.
    #[param(minimum = 0)]
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

/// A 404 for a revision that does not exist: the view or delta asked for is not there
/// (and the document can say "an integer from 0" but not "up to the latest").
fn revision_in_range(s: &AppState, rev: i64, field: &str) -> ApiResult<()> {
    if rev < 0 || rev > s.service.revision() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "{field}: revision {rev} does not exist (latest is {})",
                s.service.revision()
            ),
        ));
    }
    Ok(())
}

/// What a host must know at a revision
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{id}/view",
    tag = "hosts",
    params(("id" = String, Path, description = "The host id"), ViewQuery),
    responses(
        (status = 200, description = "The host's view", body = Object),
        (status = 404, description = "No such host, or no such revision", body = ErrorBody),
    ),
)]
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

/// `?from=&to=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeltaQuery {
    /// The revision the host has; 404 if it does not exist or is after `to`.
    #[param(minimum = 0)]
    from: i64,
    /// The revision to reach (default: the latest); 404 if it does not exist.
    #[param(minimum = 0)]
    to: Option<i64>,
}

/// What changed for a host between two revisions
#[utoipa::path(
    get,
    path = "/api/v1/hosts/{id}/delta",
    tag = "hosts",
    params(("id" = String, Path, description = "The host id"), DeltaQuery),
    responses(
        (status = 200, description = "The delta", body = Object),
        (status = 404, description = "No such host, no such revision, or from after to", body = ErrorBody),
    ),
)]
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
        // Not expressible in the schema; the delta asked for does not exist.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "from: must not be after to",
        ));
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

/// A new grant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGrant {
    /// The person; must exist.
    #[schema(schema_with = super::openapi::user_name_schema)]
    user: String,
    #[schema(schema_with = super::openapi::account_schema)]
    account: String,
    /// The host group; must exist.
    #[schema(schema_with = super::openapi::group_name_schema)]
    group: String,
    /// Unix seconds after which it lets no one in; null or absent: never.
    #[serde(default)]
    not_after: Option<i64>,
    /// Propose it for approval: it is listed under `GET /api/v1/approvals` until it ends.
    #[serde(default)]
    approval_requested: bool,
    #[serde(default)]
    #[schema(schema_with = super::openapi::reason_schema)]
    reason: String,
}

/// `?user=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantsQuery {
    /// Only this person's grants.
    user: Option<String>,
}

/// List live grants, optionally of one person
#[utoipa::path(
    get,
    path = "/api/v1/grants",
    tag = "grants",
    params(GrantsQuery),
    responses(
        (status = 200, description = "The grants", body = Vec<Grant>),
    ),
)]
pub(crate) async fn list_grants_handler(
    State(s): State<AppState>,
    Query(q): Query<GrantsQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_grants(q.user.as_deref()).await?))
}

/// Let a person log in as an account on a group's hosts
#[utoipa::path(
    post,
    path = "/api/v1/grants",
    tag = "grants",
    request_body = CreateGrant,
    responses(
        (status = 201, description = "Created", body = Grant),
        (status = 404, description = "No such person or group", body = ErrorBody),
        (status = 409, description = "Conflicts with what exists", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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
        approval_requested: req.approval_requested,
    };
    let grant = s.service.create_grant(&actor, new, &req.reason).await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

/// Withdraw a grant
#[utoipa::path(
    delete,
    path = "/api/v1/grants/{id}",
    tag = "grants",
    params(("id" = i64, Path, description = "The grant id"), ReasonQuery),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 404, description = "No such grant", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// A user CA to trust.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddCa {
    #[schema(schema_with = super::openapi::user_name_schema)]
    name: String,
    /// The CA's public key.
    #[schema(schema_with = super::openapi::public_key_schema)]
    public_key: String,
    #[serde(default)]
    #[schema(schema_with = super::openapi::reason_schema)]
    reason: String,
}

/// List trusted user CAs
#[utoipa::path(
    get,
    path = "/api/v1/cas",
    tag = "cas",
    responses(
        (status = 200, description = "The CAs", body = Vec<TrustedCa>),
    ),
)]
pub(crate) async fn list_cas_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_cas().await?))
}

/// Trust a user CA
#[utoipa::path(
    post,
    path = "/api/v1/cas",
    tag = "cas",
    request_body = AddCa,
    responses(
        (status = 201, description = "Trusted", body = TrustedCa),
        (status = 409, description = "Conflicts with what exists", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// Stop trusting a user CA
#[utoipa::path(
    delete,
    path = "/api/v1/cas/{name}",
    tag = "cas",
    params(("name" = String, Path, description = "The CA's name"), ReasonQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such CA", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// What to revoke; the fields depend on `kind`.
///
/// Its own type rather than [`Revocation`] flattened beside `reason`: serde cannot refuse
/// unknown fields through `flatten`, and the schema's `oneOf` is this enum's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RevokeRequest {
    /// Every certificate with this key ID, from one CA or any.
    KeyId {
        /// The CA's name or fingerprint; null or absent: any CA.
        #[serde(default)]
        ca: Option<String>,
        #[schema(schema_with = super::openapi::key_id_schema)]
        key_id: String,
        /// Unix seconds after which the revocation is withdrawn by itself (a certificate
        /// that expires then is refused by sshd anyway); null or absent: never.
        #[serde(default)]
        valid_before: Option<i64>,
        #[serde(default)]
        #[schema(schema_with = super::openapi::reason_schema)]
        reason: String,
    },
    /// A CA's certificates with serials `lo..=hi`.
    Serial {
        /// The CA's name or fingerprint.
        ca: String,
        /// First serial; 0 means "no serial" and cannot be revoked.
        #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
        lo: u64,
        /// Last serial, not below `lo` (serials are kept as SQLite integers).
        #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
        hi: u64,
        /// Unix seconds after which the revocation is withdrawn by itself (a certificate
        /// that expires then is refused by sshd anyway); null or absent: never.
        #[serde(default)]
        valid_before: Option<i64>,
        #[serde(default)]
        #[schema(schema_with = super::openapi::reason_schema)]
        reason: String,
    },
    /// A plain public key.
    Key {
        #[schema(schema_with = super::openapi::public_key_schema)]
        public_key: String,
        /// Unix seconds after which the revocation is withdrawn by itself (a certificate
        /// that expires then is refused by sshd anyway); null or absent: never.
        #[serde(default)]
        valid_before: Option<i64>,
        #[serde(default)]
        #[schema(schema_with = super::openapi::reason_schema)]
        reason: String,
    },
    /// The plain key with this fingerprint.
    Sha256 {
        #[schema(schema_with = super::openapi::fingerprint_schema)]
        fingerprint: String,
        /// Unix seconds after which the revocation is withdrawn by itself (a certificate
        /// that expires then is refused by sshd anyway); null or absent: never.
        #[serde(default)]
        valid_before: Option<i64>,
        #[serde(default)]
        #[schema(schema_with = super::openapi::reason_schema)]
        reason: String,
    },
}

impl RevokeRequest {
    fn into_parts(self) -> (Revocation, Option<i64>, String) {
        match self {
            RevokeRequest::KeyId {
                ca,
                key_id,
                valid_before,
                reason,
            } => (Revocation::KeyId { ca, key_id }, valid_before, reason),
            RevokeRequest::Serial {
                ca,
                lo,
                hi,
                valid_before,
                reason,
            } => (Revocation::Serial { ca, lo, hi }, valid_before, reason),
            RevokeRequest::Key {
                public_key,
                valid_before,
                reason,
            } => (Revocation::Key { public_key }, valid_before, reason),
            RevokeRequest::Sha256 {
                fingerprint,
                valid_before,
                reason,
            } => (Revocation::Sha256 { fingerprint }, valid_before, reason),
        }
    }
}

/// List live revocations
#[utoipa::path(
    get,
    path = "/api/v1/revocations",
    tag = "revocations",
    responses(
        (status = 200, description = "The revocations", body = Vec<RevocationRecord>),
    ),
)]
pub(crate) async fn list_revocations_handler(
    State(s): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_revocations().await?))
}

/// Revoke certificates or a key
#[utoipa::path(
    post,
    path = "/api/v1/revocations",
    tag = "revocations",
    request_body = RevokeRequest,
    responses(
        (status = 201, description = "Revoked", body = RevocationRecord),
        (status = 409, description = "Conflicts with what exists", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
pub(crate) async fn revoke_handler(
    State(s): State<AppState>,
    caller: Caller,
    Json(req): Json<RevokeRequest>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.actor();
    let (revocation, valid_before, reason) = req.into_parts();
    let record = s
        .service
        .revoke_until(&actor, revocation, valid_before, &reason)
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// Withdraw a revocation
#[utoipa::path(
    delete,
    path = "/api/v1/revocations/{id}",
    tag = "revocations",
    params(("id" = i64, Path, description = "The revocation id"), ReasonQuery),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 404, description = "No such revocation", body = ErrorBody),
        (status = 409, description = "The revocation enforces a sign-off in force; only re-enabling the person withdraws it", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// `?user=&host=&account=&state=&limit=&after=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionsQuery {
    /// At most this many, newest first (1 to 10000; default 1000). When there are more,
    /// the response's `Link` header (`rel="next"`) gives the next page.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// The cursor of the next page, from the previous page's `Link` header.
    #[param(pattern = "^[A-Za-z0-9_-]+$", min_length = 1)]
    after: Option<String>,
    /// Only this person's (by key ID).
    user: Option<String>,
    /// Only on this host.
    host: Option<String>,
    /// Only as this account.
    account: Option<String>,
    /// Only in this state; default: live and unknown.
    #[param(inline)]
    state: Option<SessionState>,
    /// Only from this client address (IPv4 or IPv6, as sshd logged it; an IPv4-mapped
    /// IPv6 address matches its IPv4 form).
    #[param(pattern = "^[0-9A-Fa-f:.]{2,45}$")]
    source: Option<String>,
    /// Only started at or after this Unix time (seconds).
    #[param(minimum = 0)]
    started_after: Option<i64>,
    /// Only started before this Unix time (seconds); must be after `started_after`.
    #[param(minimum = 0)]
    started_before: Option<i64>,
}

/// A session's state, as `?state=` names it.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SessionState {
    Live,
    Lingering,
    Unknown,
    Ended,
}

impl SessionState {
    fn as_str(self) -> &'static str {
        match self {
            SessionState::Live => "live",
            SessionState::Lingering => "lingering",
            SessionState::Unknown => "unknown",
            SessionState::Ended => "ended",
        }
    }
}

/// Sessions a page holds when `?limit=` does not say.
const DEFAULT_SESSION_PAGE: u32 = 1000;

/// List sessions
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    tag = "sessions",
    params(SessionsQuery),
    responses(
        (status = 200, description = "The sessions, newest first", body = Vec<Object>,
         headers(("Link" = String,
                  description = "`<…?after=CURSOR>; rel=\"next\"` when there are more"))),
        (status = 422, description = "A limit out of range, an `after` that is not a cursor, a source that is not an address, or a time range that is empty or before 1970", body = ErrorBody),
    ),
)]
pub(crate) async fn list_sessions_handler(
    State(s): State<AppState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    Query(q): Query<SessionsQuery>,
) -> ApiResult<impl IntoResponse> {
    for (name, value) in [
        ("started_after", q.started_after),
        ("started_before", q.started_before),
    ] {
        if let Some(v) = value
            && v < 0
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{name}: {v} is before 1970"),
            ));
        }
    }
    if let Some(source) = &q.source
        && !((2..=45).contains(&source.len())
            && source
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("source: {source:?} is not an IP address"),
        ));
    }
    let filter = SessionFilter {
        user: q.user,
        host: q.host,
        account: q.account,
        state: q.state.map(|s| s.as_str().to_owned()),
        source: q.source,
        started_after: q.started_after,
        started_before: q.started_before,
    };
    let after = q
        .after
        .as_deref()
        .map(SessionCursor::from_token)
        .transpose()
        .map_err(ServiceError::from)?;
    let page = SessionPage {
        limit: q.limit.unwrap_or(DEFAULT_SESSION_PAGE),
        after,
    };
    let (sessions, next) = s.service.list_sessions_page(&filter, &page).await?;
    let mut headers = axum::http::HeaderMap::new();
    if let Some(next) = next {
        // The same query with the new cursor; the other parameters as the client sent them.
        let mut query: Vec<&str> = raw
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("after="))
            .collect();
        let after = format!("after={}", next.to_token());
        query.push(&after);
        let link = format!("</api/v1/sessions?{}>; rel=\"next\"", query.join("&"));
        if let Ok(v) = axum::http::HeaderValue::from_str(&link) {
            headers.insert(header::LINK, v);
        }
    }
    Ok((headers, Json(sessions)))
}

/// One session
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{host}/{id}",
    tag = "sessions",
    params(("host" = String, Path, description = "The host id"), ("id" = String, Path, description = "PID:START_TICKS of the session's sshd process")),
    responses(
        (status = 200, description = "The session", body = Object),
        (status = 404, description = "No such session", body = ErrorBody),
    ),
)]
pub(crate) async fn get_session_handler(
    State(s): State<AppState>,
    Path((host, id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.get_session(&host, &id).await?))
}

/// End a session: a signed kill order is sent on the host's stream (state undelivered when its agent is not connected)
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{host}/{id}/kill",
    tag = "sessions",
    params(("host" = String, Path, description = "The host id"), ("id" = String, Path, description = "PID:START_TICKS of the session's sshd process")),
    request_body = ReasonBody,
    responses(
        (status = 202, description = "The order", body = Object),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Nothing of the session remains, or this server has no order-signing key loaded", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// End every live session of a person (a kill order each)
#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/kill-sessions",
    tag = "sessions",
    params(("name" = String, Path, description = "The person's name")),
    request_body = ReasonBody,
    responses(
        (status = 202, description = "The orders", body = Vec<Object>),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 409, description = "This server has no order-signing key loaded, or a session ended meanwhile", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// A new API token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    /// Shown in the audit log as token:NAME.
    #[schema(schema_with = super::openapi::user_name_schema)]
    name: String,
    #[schema(schema_with = super::openapi::token_scopes_schema)]
    scopes: Vec<Scope>,
    /// Unix seconds after which it is refused; null or absent: never (only for a token
    /// created by one that does not expire).
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    #[schema(schema_with = super::openapi::reason_schema)]
    reason: String,
}

/// List API tokens (never their secrets)
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "The tokens", body = Vec<TokenInfo>),
    ),
)]
pub(crate) async fn list_tokens_handler(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.list_tokens().await?))
}

/// Create an API token; the secret is shown once
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created, with its secret", body = Token),
        (status = 403, description = "The token lacks the admin scope, or a scope it asks for, or the new token would outlive it", body = ErrorBody),
        (status = 409, description = "Conflicts with what exists", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
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

/// Revoke an API token
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = i64, Path, description = "The token id"), ReasonQuery),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "The token is the one making the request", body = ErrorBody),
        (status = 422, description = "Invalid value; the message names the field", body = ErrorBody),
    ),
)]
pub(crate) async fn revoke_token_handler(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<ReasonQuery>,
) -> ApiResult<impl IntoResponse> {
    // A token revoking itself would lock its holder out mid-task (and an API client that
    // walks ids would cut its own access); another admin token or the CLI can.
    if id == caller.token().id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "a token cannot revoke itself: use another admin token, or `signoff-server api-token revoke`",
        ));
    }
    let actor = caller.actor();
    s.service.revoke_token(&actor, id, &q.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?filter=&before=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Only rows whose actor, action, target or reason contain this text.
    #[serde(default)]
    filter: String,
    /// Only rows before this sequence number.
    #[param(minimum = 0)]
    before: Option<i64>,
    /// At most this many rows (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Audit log, newest first
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "Rows of the log", body = Vec<Record>),
        (status = 422, description = "before below 0 or limit out of range", body = ErrorBody),
    ),
)]
pub(crate) async fn audit_log_handler(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m);
    if let Some(before) = q.before
        && before < 0
    {
        return Err(invalid(format!(
            "before: {before} is not a sequence number (they start at 1)"
        )));
    }
    if let Some(limit) = q.limit
        && !(1..=1000).contains(&limit)
    {
        return Err(invalid(format!(
            "limit: {limit} is out of range (1 to 1000)"
        )));
    }
    Ok(Json(
        s.service
            .audit_log(&q.filter, q.before, q.limit.unwrap_or(100))
            .await?,
    ))
}

/// Check the audit hash chain
#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "audit",
    responses(
        (status = 200, description = "The outcome", body = Verification),
    ),
)]
pub(crate) async fn audit_verify_handler(
    State(s): State<AppState>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.service.verify_audit().await?))
}
