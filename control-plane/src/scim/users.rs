//! SCIM Users (RFC 7644 §3): a User is a signoff person, its `id` and `userName` the
//! person's name (names never change, so the id is stable). `active` is the person's
//! status; setting it to false — by PATCH, PUT or DELETE — signs the person off through
//! [`Service::sign_off`], and setting it to true on a signed-off person re-enables them
//! through [`Service::reenable_user`]. `externalId` is kept. The other attributes of the
//! core User schema and the enterprise extension (name, emails, manager, …) are accepted
//! and not stored, so an identity provider's full profile does not make requests fail; a
//! name that is in no schema this server knows is refused, never dropped, so a misspelled
//! `actve: false` cannot look like a deprovisioning that worked.

use std::collections::{BTreeSet, HashMap};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::discovery::MAX_RESULTS;
use super::filter::{self, Filter, strip_prefix_ignore_case};
use super::projection::Projection;
use super::{
    BASE, LIST_SCHEMA, PATCH_SCHEMA, SEARCH_SCHEMA, SSH_EXTENSION, ScimBody, ScimCaller, ScimError,
    ScimState, USER_SCHEMA, attribute, scim_json,
};
use crate::model::UserStatus;
use crate::service::{Actor, NewUser, ScimUser, Service, ServiceError, UserUpdate};

type ScimResult<T> = Result<T, ScimError>;

/// Page size when the request names none.
const DEFAULT_COUNT: usize = 100;

/// The enterprise User extension (RFC 7643 §4.3): accepted, not stored.
const ENTERPRISE_EXTENSION: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The enterprise extension's attributes (RFC 7643 §4.3).
const ENTERPRISE_ATTRIBUTES: &[&str] = &[
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
    "manager",
];

/// Attributes of the core User schema (RFC 7643 §4.1) that signoff does not keep.
const UNSTORED_CORE: &[&str] = &[
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "password",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
];

/// The SCIM representation of a person.
pub(crate) fn resource(scim: &ScimUser) -> Value {
    let user = &scim.user;
    let created = time::OffsetDateTime::from_unix_timestamp(user.created_at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    let mut r = json!({
        "schemas": [USER_SCHEMA, SSH_EXTENSION],
        "id": user.name,
        "userName": user.name,
        "active": user.status == UserStatus::Active,
        "meta": {
            "resourceType": "User",
            "created": created,
            "location": location(&user.name),
        },
    });
    if let Some(x) = &scim.external_id {
        r["externalId"] = json!(x);
    }
    r[SSH_EXTENSION] = json!({
        "keyIds": user.key_ids,
        "principals": user.principals,
        "sshPublicKeys": user.public_keys,
    });
    r
}

fn location(name: &str) -> String {
    format!("{BASE}/Users/{name}")
}

/// The audit reason of a SCIM change: what happened and which token did it.
fn reason(what: &str, actor: &Actor) -> String {
    format!("SCIM: {what} by {}", actor.0)
}

/// A query: from `GET /Users?…` or the body of a `POST /.search`.
#[derive(Debug, Default)]
struct ListQuery {
    filter: Option<Filter>,
    /// 1-based.
    start: usize,
    count: usize,
    projection: Projection,
}

impl ListQuery {
    /// RFC 7644 §3.4.2.4: startIndex below 1 means 1, a negative count means 0.
    fn new(
        filter: Option<&str>,
        start: Option<i64>,
        count: Option<i64>,
        projection: Projection,
    ) -> ScimResult<ListQuery> {
        Ok(ListQuery {
            filter: filter
                .map(filter::parse)
                .transpose()
                .map_err(|e| ScimError::bad_request("invalidFilter", e.to_string()))?,
            start: usize::try_from(start.unwrap_or(1).max(1)).unwrap_or(1),
            count: usize::try_from(count.unwrap_or(DEFAULT_COUNT as i64).max(0))
                .unwrap_or(0)
                .min(MAX_RESULTS),
            projection,
        })
    }
}

/// URL query parameters, found without regard to case (SCIM names are case-insensitive).
fn param<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `attributes` / `excludedAttributes` from a URL query.
fn projection(query: &HashMap<String, String>) -> ScimResult<Projection> {
    let list = |name| param(query, name).map(|v| vec![v.to_owned()]);
    Projection::new(list("attributes"), list("excludedAttributes"))
}

/// `GET /Users?filter=&startIndex=&count=&attributes=&excludedAttributes=`.
pub(crate) async fn list_users_handler(
    State(s): State<ScimState>,
    _caller: ScimCaller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ScimResult<Response> {
    let Query(query) = query.map_err(|e| ScimError::bad_request("invalidSyntax", e.body_text()))?;
    let number = |name: &'static str| -> ScimResult<Option<i64>> {
        param(&query, name)
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    ScimError::bad_request(
                        "invalidValue",
                        format!("{name} {v:?} is not an integer"),
                    )
                })
            })
            .transpose()
    };
    let q = ListQuery::new(
        param(&query, "filter"),
        number("startIndex")?,
        number("count")?,
        projection(&query)?,
    )?;
    list(&s.service, q).await
}

/// `POST /Users/.search` and `POST /.search` (RFC 7644 §3.4.3): the query in a
/// `SearchRequest` body. Users are the only resources, so the root search is theirs.
pub(crate) async fn search_users_handler(
    State(s): State<ScimState>,
    _caller: ScimCaller,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let is_search = matches!(attribute(&body, "schemas"), Some(Value::Array(s))
        if s.iter().any(|v| v.as_str().is_some_and(|v| v.eq_ignore_ascii_case(SEARCH_SCHEMA))));
    if !is_search {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            format!("a search body must have \"schemas\": [\"{SEARCH_SCHEMA}\"]"),
        ));
    }
    let mut filter = None;
    let (mut start, mut count) = (None, None);
    let (mut attributes, mut excluded) = (None, None);
    let names = |key: &str, v: &Value| -> ScimResult<Vec<String>> {
        match v {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        }
        .ok_or_else(|| {
            ScimError::bad_request(
                "invalidValue",
                format!("{key} must be an array of attribute names, not {v}"),
            )
        })
    };
    let integer = |key: &str, v: &Value| {
        v.as_i64().ok_or_else(|| {
            ScimError::bad_request("invalidValue", format!("{key} must be an integer, not {v}"))
        })
    };
    for (key, v) in &body {
        let is = |n: &str| key.eq_ignore_ascii_case(n);
        if is("schemas") {
        } else if is("filter") {
            filter = Some(v.as_str().ok_or_else(|| {
                ScimError::bad_request("invalidFilter", format!("filter must be a string, not {v}"))
            })?);
        } else if is("startIndex") {
            start = Some(integer(key, v)?);
        } else if is("count") {
            count = Some(integer(key, v)?);
        } else if is("attributes") {
            attributes = Some(names(key, v)?);
        } else if is("excludedAttributes") {
            excluded = Some(names(key, v)?);
        } else if is("sortBy") || is("sortOrder") {
            // ServiceProviderConfig says sort is not supported; an order the client
            // relies on must not be silently ignored.
            return Err(ScimError::bad_request(
                "invalidValue",
                "sorting is not supported (see /ServiceProviderConfig)",
            ));
        } else {
            return Err(ScimError::bad_request(
                "invalidSyntax",
                format!("a SearchRequest has no attribute {key:?}"),
            ));
        }
    }
    let q = ListQuery::new(filter, start, count, Projection::new(attributes, excluded)?)?;
    list(&s.service, q).await
}

/// A page of the Users a query matches, as a ListResponse.
async fn list(service: &Service, q: ListQuery) -> ScimResult<Response> {
    let matching: Vec<ScimUser> = match q.filter {
        Some(Filter::UserName(name) | Filter::Id(name)) => match service.scim_user(&name).await {
            Ok(user) => vec![user],
            Err(ServiceError::NotFound { .. }) => vec![],
            Err(e) => return Err(e.into()),
        },
        Some(Filter::Active(active)) => service
            .scim_users()
            .await?
            .into_iter()
            .filter(|u| (u.user.status == UserStatus::Active) == active)
            .collect(),
        Some(Filter::ExternalId(x)) => service
            .scim_users()
            .await?
            .into_iter()
            .filter(|u| u.external_id.as_deref() == Some(x.as_str()))
            .collect(),
        None => service.scim_users().await?,
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(q.start - 1)
        .take(q.count)
        .map(|u| q.projection.apply(resource(u)))
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": matching.len(),
            "itemsPerPage": page.len(),
            "startIndex": q.start,
            "Resources": page,
        }),
    ))
}

/// `GET /Users/{id}?attributes=&excludedAttributes=`.
pub(crate) async fn get_user_handler(
    State(s): State<ScimState>,
    _caller: ScimCaller,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ScimResult<Response> {
    let Query(query) = query.map_err(|e| ScimError::bad_request("invalidSyntax", e.body_text()))?;
    let projection = projection(&query)?;
    Ok(scim_json(
        StatusCode::OK,
        projection.apply(resource(&s.service.scim_user(&id).await?)),
    ))
}

/// `POST /Users`: creates the person (inactive ones are created disabled). A userName
/// whose SCIM resource was deleted is provisioned again: the same person (signoff keeps
/// people, see [`delete_user_handler`]) with what this request says, re-enabled if it is
/// active.
pub(crate) async fn create_user_handler(
    State(s): State<ScimState>,
    caller: ScimCaller,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let actor = caller.0.actor();
    let body = UserBody::parse(&body)?;
    let name = match &body.user_name {
        Some(Value::String(n)) => n.clone(),
        Some(v) => {
            return Err(ScimError::bad_request(
                "invalidValue",
                format!("userName must be a string, not {v}"),
            ));
        }
        None => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "userName is required",
            ));
        }
    };
    let active = body.active.unwrap_or(true);
    let external_id = body.external_id.clone().flatten();
    let ssh = body.ssh;
    if s.service.scim_deleted(&name).await? {
        let current = s.service.get_user(&name).await?;
        let draft = Draft {
            active: Some(active),
            external_id: None,
            key_ids: ssh.key_ids.unwrap_or_default(),
            principals: ssh.principals.unwrap_or_default(),
            public_keys: ssh.public_keys.unwrap_or_default(),
        };
        apply(&s.service, &actor, &current, draft).await?;
        // Last, so that a failure above leaves the resource deleted and a retry redoes it.
        s.service
            .set_scim_user(
                &actor,
                &name,
                external_id.as_deref(),
                &reason("re-provisioned", &actor),
            )
            .await?;
    } else {
        if let Some(x) = &external_id {
            // Checked before the person exists, so a bad externalId creates nobody.
            crate::model::validate_text("externalId", x, crate::service::MAX_EXTERNAL_ID)
                .map_err(ServiceError::from)?;
        }
        let new = NewUser {
            name: name.clone(),
            key_ids: ssh.key_ids.unwrap_or_default(),
            principals: ssh.principals.unwrap_or_default(),
            public_keys: ssh.public_keys.unwrap_or_default(),
        };
        s.service
            .create_user(&actor, new, &reason("provisioned", &actor))
            .await
            .map_err(ScimError::uniqueness)?;
        if !active {
            // Never active, so there is nothing to sign off: disabled is enough.
            s.service
                .set_user_status(
                    &actor,
                    &name,
                    UserStatus::Disabled,
                    &reason("provisioned inactive", &actor),
                )
                .await?;
        }
        if external_id.is_some() {
            s.service
                .set_scim_user(
                    &actor,
                    &name,
                    external_id.as_deref(),
                    &reason("provisioned", &actor),
                )
                .await?;
        }
    }
    let mut response = scim_json(
        StatusCode::CREATED,
        resource(&s.service.scim_user(&name).await?),
    );
    if let Ok(v) = HeaderValue::from_str(&location(&name)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `PUT /Users/{id}`: `userName` must stay; `active`, `externalId` and the SSH attributes
/// present are applied; omitted ones are left as they are (RFC 7644 §3.5.1 leaves that
/// choice to the server, and an IdP that does not manage SSH identities must not wipe
/// them).
pub(crate) async fn replace_user_handler(
    State(s): State<ScimState>,
    caller: ScimCaller,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let actor = caller.0.actor();
    let body = UserBody::parse(&body)?;
    let current = s.service.scim_user(&id).await?;
    match &body.user_name {
        Some(v) => same_user_name(&id, v)?,
        None => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "userName is required",
            ));
        }
    }
    let ssh = body.ssh;
    let user = &current.user;
    let draft = Draft {
        active: body.active,
        external_id: body.external_id,
        key_ids: ssh.key_ids.unwrap_or_else(|| user.key_ids.clone()),
        principals: ssh.principals.unwrap_or_else(|| user.principals.clone()),
        public_keys: ssh.public_keys.unwrap_or_else(|| user.public_keys.clone()),
    };
    let user = save(&s.service, &actor, &current, draft).await?;
    Ok(scim_json(StatusCode::OK, resource(&user)))
}

/// `PATCH /Users/{id}` with a PatchOp: operations apply in order to a draft of the person,
/// which is then saved; `active: false` signs the person off. Any operation that is
/// refused refuses the whole request, and nothing of it is applied.
pub(crate) async fn patch_user_handler(
    State(s): State<ScimState>,
    caller: ScimCaller,
    Path(id): Path<String>,
    ScimBody(body): ScimBody,
) -> ScimResult<Response> {
    let actor = caller.0.actor();
    let is_patch = matches!(attribute(&body, "schemas"), Some(Value::Array(s))
        if s.iter().any(|v| v.as_str().is_some_and(|v| v.eq_ignore_ascii_case(PATCH_SCHEMA))));
    if !is_patch {
        return Err(ScimError::bad_request(
            "invalidSyntax",
            format!("a PATCH body must have \"schemas\": [\"{PATCH_SCHEMA}\"]"),
        ));
    }
    let operations = match attribute(&body, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        _ => {
            return Err(ScimError::bad_request(
                "invalidSyntax",
                "a PATCH body needs a non-empty \"Operations\" array",
            ));
        }
    };
    let current = s.service.scim_user(&id).await?;
    let mut draft = Draft {
        active: None,
        external_id: None,
        key_ids: current.user.key_ids.clone(),
        principals: current.user.principals.clone(),
        public_keys: current.user.public_keys.clone(),
    };
    for (i, op) in operations.iter().enumerate() {
        draft.patch(&id, op).map_err(|e| ScimError {
            detail: format!("Operations[{i}]: {}", e.detail),
            ..e
        })?;
    }
    let user = save(&s.service, &actor, &current, draft).await?;
    Ok(scim_json(StatusCode::OK, resource(&user)))
}

/// `DELETE /Users/{id}`: signs the person off and deletes the SCIM resource (RFC 7644
/// §3.6: GET is then a 404, and it leaves list and filter results). signoff still keeps
/// the person, their sign-off — which must keep reaching hosts — and their audit trail; a
/// later POST of the same userName provisions them again. 204.
pub(crate) async fn delete_user_handler(
    State(s): State<ScimState>,
    caller: ScimCaller,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let actor = caller.0.actor();
    s.service
        .scim_delete_user(&actor, &id, &reason("deleted", &actor))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A boolean, also as the strings `"true"`/`"false"` (Azure AD sends `"False"`).
fn boolean(name: &str, v: &Value) -> ScimResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        v => Err(ScimError::bad_request(
            "invalidValue",
            format!("{name} must be true or false, not {v}"),
        )),
    }
}

/// `externalId`: a string, or null for none.
fn external_id(v: &Value) -> ScimResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        v => Err(ScimError::bad_request(
            "invalidValue",
            format!("externalId must be a string, not {v}"),
        )),
    }
}

/// A multi-valued string attribute: `["a", "b"]` or `[{"value": "a"}, …]`; null is empty.
fn strings(name: &str, v: &Value) -> ScimResult<Vec<String>> {
    let bad = || {
        ScimError::bad_request(
            "invalidValue",
            format!("{name} must be an array of strings, not {v}"),
        )
    };
    match v {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Object(o) => match attribute(o, "value") {
                    Some(Value::String(s)) => Ok(s.clone()),
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

fn same_user_name(id: &str, v: &Value) -> ScimResult<()> {
    match v {
        Value::String(n) if n == id => Ok(()),
        v => Err(ScimError::bad_request(
            "mutability",
            format!("userName cannot change (it is {id:?}, not {v}); create a new User instead"),
        )),
    }
}

/// What a POST or PUT body says about the attributes signoff keeps (`None` where absent).
#[derive(Debug, Default)]
struct UserBody {
    user_name: Option<Value>,
    active: Option<bool>,
    /// `Some(None)`: `"externalId": null`.
    external_id: Option<Option<String>>,
    ssh: SshAttributes,
}

impl UserBody {
    /// Reads a User resource. Every attribute must be one a schema of this server names:
    /// an unknown one is refused (`invalidSyntax`, RFC 7644 §3.12: "did not conform to the
    /// request schema") rather than dropped.
    fn parse(body: &Map<String, Value>) -> ScimResult<Self> {
        let mut out = UserBody::default();
        for (key, value) in body {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            match Target::parse(key).map_err(|e| ScimError {
                scim_type: Some("invalidSyntax"),
                ..e
            })? {
                Target::UserName => out.user_name = Some(value.clone()),
                Target::Active => out.active = Some(boolean("active", value)?),
                Target::ExternalId => out.external_id = Some(external_id(value)?),
                Target::Set(set) => out.ssh.set(set, value)?,
                Target::Extension => {
                    let Value::Object(ext) = value else {
                        return Err(ScimError::bad_request(
                            "invalidValue",
                            format!("{SSH_EXTENSION} must be an object"),
                        ));
                    };
                    for (name, v) in ext {
                        let set = SshSet::in_extension(name).map_err(|e| ScimError {
                            scim_type: Some("invalidSyntax"),
                            ..e
                        })?;
                        out.ssh.set(set, v)?;
                    }
                }
                Target::Ignored if key.eq_ignore_ascii_case(ENTERPRISE_EXTENSION) => {
                    if let Value::Object(enterprise) = value {
                        for name in enterprise.keys() {
                            Target::parse(&format!("{ENTERPRISE_EXTENSION}:{name}")).map_err(
                                |e| ScimError {
                                    scim_type: Some("invalidSyntax"),
                                    ..e
                                },
                            )?;
                        }
                    }
                }
                // RFC 7644 §3.3: read-only attributes in a request are ignored.
                Target::Id | Target::ReadOnly | Target::Ignored => {}
            }
        }
        Ok(out)
    }
}

/// The SSH extension's attributes present in a resource (`None` where absent), nested
/// under the extension's URN or, as Azure AD sends them, flat with the URN as prefix.
#[derive(Debug, Default)]
struct SshAttributes {
    key_ids: Option<Vec<String>>,
    principals: Option<Vec<String>>,
    public_keys: Option<Vec<String>>,
}

impl SshAttributes {
    fn set(&mut self, set: SshSet, v: &Value) -> ScimResult<()> {
        let values = Some(strings(set.name(), v)?);
        match set {
            SshSet::KeyIds => self.key_ids = values,
            SshSet::Principals => self.principals = values,
            SshSet::PublicKeys => self.public_keys = values,
        }
        Ok(())
    }
}

/// One of the extension's multi-valued attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SshSet {
    KeyIds,
    Principals,
    PublicKeys,
}

impl SshSet {
    const ALL: [SshSet; 3] = [SshSet::KeyIds, SshSet::Principals, SshSet::PublicKeys];

    /// The SCIM name.
    fn name(self) -> &'static str {
        match self {
            SshSet::KeyIds => "keyIds",
            SshSet::Principals => "principals",
            SshSet::PublicKeys => "sshPublicKeys",
        }
    }

    fn parse(name: &str) -> Option<SshSet> {
        SshSet::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// An attribute named inside the extension: one of ours, or an `invalidPath`.
    fn in_extension(name: &str) -> ScimResult<SshSet> {
        SshSet::parse(name).ok_or_else(|| {
            ScimError::bad_request(
                "invalidPath",
                format!(
                    "{SSH_EXTENSION} has no attribute {name:?}; it has keyIds, principals and sshPublicKeys"
                ),
            )
        })
    }
}

/// What an attribute path (a PATCH `path`, or a key of a resource) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Active,
    UserName,
    ExternalId,
    Set(SshSet),
    /// The SSH extension as a whole: its URN alone.
    Extension,
    /// `id`: the name; stating it unchanged is fine.
    Id,
    /// `meta`: the server's own.
    ReadOnly,
    /// An attribute of a known schema that signoff does not keep.
    Ignored,
}

impl Target {
    /// Parses `[URN ":"] ATTRIBUTE ["." SUB | "[" FILTER "]" …]` (RFC 7644 §3.5.2,
    /// Figure 7). A schema URN is matched whole before anything is split, because URNs
    /// hold dots ("…:ssh:2.0:User"). A name in no schema of this server is an
    /// `invalidPath`: a PATCH that names nothing must not report success.
    fn parse(path: &str) -> ScimResult<Target> {
        let unknown = |what: String| {
            ScimError::bad_request(
                "invalidPath",
                format!("path {path:?}: {what}; see /scim/v2/Schemas for the attributes of a User"),
            )
        };
        if let Some(rest) = strip_prefix_ignore_case(path, SSH_EXTENSION) {
            if rest.is_empty() {
                return Ok(Target::Extension);
            }
            let Some(name) = rest.strip_prefix(':') else {
                return Err(unknown(format!(
                    "nothing follows {SSH_EXTENSION} but \":ATTRIBUTE\""
                )));
            };
            let set = SshSet::in_extension(name).map_err(|e| ScimError {
                detail: format!("path {path:?}: {}", e.detail),
                ..e
            })?;
            return Ok(Target::Set(set));
        }
        if let Some(rest) = strip_prefix_ignore_case(path, ENTERPRISE_EXTENSION) {
            // Not stored, but still checked: `…:enterprise:2.0:User:active` names nothing,
            // and a deprovisioning sent there must not look like one that worked.
            let name = rest
                .strip_prefix(':')
                .map(|r| r.split(['.', '[']).next().unwrap_or_default());
            return match name {
                None if rest.is_empty() => Ok(Target::Ignored),
                Some(n)
                    if ENTERPRISE_ATTRIBUTES
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(n)) =>
                {
                    Ok(Target::Ignored)
                }
                _ => Err(unknown(format!(
                    "{ENTERPRISE_EXTENSION} has no such attribute; it has {}",
                    ENTERPRISE_ATTRIBUTES.join(", ")
                ))),
            };
        }
        let core = format!("{USER_SCHEMA}:");
        let bare = strip_prefix_ignore_case(path, &core).unwrap_or(path);
        if bare.to_ascii_lowercase().starts_with("urn:") {
            return Err(unknown(format!(
                "no schema of this server; User has {USER_SCHEMA}, {SSH_EXTENSION} and {ENTERPRISE_EXTENSION}"
            )));
        }
        // The attribute, before any sub-attribute or value filter.
        let name = bare.split(['.', '[']).next().unwrap_or_default();
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        let target = if let Some(set) = SshSet::parse(name) {
            // Azure AD and older clients name the extension's attributes without the URN.
            Target::Set(set)
        } else if is("active") {
            Target::Active
        } else if is("userName") {
            Target::UserName
        } else if is("externalId") {
            Target::ExternalId
        } else if is("id") {
            Target::Id
        } else if is("meta") {
            Target::ReadOnly
        } else if UNSTORED_CORE.iter().any(|n| is(n)) {
            Target::Ignored
        } else {
            return Err(unknown(format!("User has no attribute {name:?}")));
        };
        if target != Target::Ignored && name.len() != bare.len() {
            return Err(ScimError::bad_request(
                "invalidPath",
                format!("path {path:?}: sub-attributes and value filters are not supported here"),
            ));
        }
        Ok(target)
    }
}

/// A person as PATCH operations leave them, before it is saved.
#[derive(Debug)]
struct Draft {
    /// `Some` when the request set `active`.
    active: Option<bool>,
    /// `Some` when the request set `externalId` (`Some(None)`: removed it).
    external_id: Option<Option<String>>,
    key_ids: Vec<String>,
    principals: Vec<String>,
    public_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

impl Draft {
    /// Applies one PatchOp operation.
    fn patch(&mut self, id: &str, operation: &Value) -> ScimResult<()> {
        let Value::Object(operation) = operation else {
            return Err(ScimError::bad_request(
                "invalidSyntax",
                "an operation must be an object",
            ));
        };
        let op = match attribute(operation, "op").and_then(Value::as_str) {
            Some(o) if o.eq_ignore_ascii_case("add") => Op::Add,
            Some(o) if o.eq_ignore_ascii_case("replace") => Op::Replace,
            Some(o) if o.eq_ignore_ascii_case("remove") => Op::Remove,
            other => {
                return Err(ScimError::bad_request(
                    "invalidSyntax",
                    format!("\"op\" must be add, replace or remove, not {other:?}"),
                ));
            }
        };
        let value = attribute(operation, "value");
        match attribute(operation, "path") {
            Some(Value::String(path)) => self.apply(id, op, Target::parse(path)?, path, value),
            Some(other) => Err(ScimError::bad_request(
                "invalidPath",
                format!("\"path\" must be a string, not {other}"),
            )),
            None if op == Op::Remove => Err(ScimError::bad_request(
                "noTarget",
                "a remove operation needs a \"path\"",
            )),
            // No path: the value is a partial resource (Azure AD and Okta both send
            // `{"op": "replace", "value": {"active": false}}`), each key a path.
            None => {
                let Some(Value::Object(partial)) = value else {
                    return Err(ScimError::bad_request(
                        "invalidValue",
                        "an operation without \"path\" needs an object \"value\"",
                    ));
                };
                for (key, v) in partial {
                    if key.eq_ignore_ascii_case("schemas") {
                        // Describes the value; nothing to apply.
                        continue;
                    }
                    self.apply(id, op, Target::parse(key)?, key, Some(v))?;
                }
                Ok(())
            }
        }
    }

    fn apply(
        &mut self,
        id: &str,
        op: Op,
        target: Target,
        path: &str,
        value: Option<&Value>,
    ) -> ScimResult<()> {
        let needs_value = || {
            value.ok_or_else(|| {
                ScimError::bad_request(
                    "invalidValue",
                    format!("{path}: the operation needs a value"),
                )
            })
        };
        match (target, op) {
            (Target::Ignored, _) => {}
            (Target::Active, Op::Remove) => {
                return Err(ScimError::bad_request(
                    "invalidValue",
                    "active cannot be removed; replace it with false to sign the person off",
                ));
            }
            (Target::Active, _) => self.active = Some(boolean("active", needs_value()?)?),
            (Target::UserName, Op::Remove) => {
                return Err(ScimError::bad_request(
                    "mutability",
                    "userName cannot be removed",
                ));
            }
            (Target::UserName, _) => same_user_name(id, needs_value()?)?,
            (Target::ExternalId, Op::Remove) => self.external_id = Some(None),
            (Target::ExternalId, _) => self.external_id = Some(external_id(needs_value()?)?),
            (Target::Id, Op::Add | Op::Replace) if value == Some(&Value::String(id.to_owned())) => {
            }
            (Target::Id | Target::ReadOnly, _) => {
                return Err(ScimError::bad_request(
                    "mutability",
                    format!("{path} is set by the server"),
                ));
            }
            // RFC 7644 §3.5.2.2: removing a complex attribute without a filter removes
            // all of it.
            (Target::Extension, Op::Remove) if value.is_none() => {
                for set in SshSet::ALL {
                    self.apply_set(set, Op::Remove, None)?;
                }
            }
            // RFC 7644 §3.5.2.1 and §3.5.2.3: the value holds sub-attributes, each added
            // or replaced; the ones it does not name are left as they are.
            (Target::Extension, op) => {
                let Value::Object(ext) = needs_value()? else {
                    return Err(ScimError::bad_request(
                        "invalidValue",
                        format!(
                            "{path}: the value must be an object of keyIds, principals, sshPublicKeys"
                        ),
                    ));
                };
                for (name, v) in ext {
                    if name.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    self.apply_set(SshSet::in_extension(name)?, op, Some(v))?;
                }
            }
            (Target::Set(set), op) => self.apply_set(set, op, value)?,
        }
        Ok(())
    }

    /// `op` on one of the extension's multi-valued attributes.
    fn apply_set(&mut self, set: SshSet, op: Op, value: Option<&Value>) -> ScimResult<()> {
        let current = match set {
            SshSet::KeyIds => &mut self.key_ids,
            SshSet::Principals => &mut self.principals,
            SshSet::PublicKeys => &mut self.public_keys,
        };
        let name = set.name();
        match (op, value) {
            (Op::Add | Op::Replace, None) => {
                return Err(ScimError::bad_request(
                    "invalidValue",
                    format!("{name}: the operation needs a value"),
                ));
            }
            (Op::Replace, Some(v)) => *current = strings(name, v)?,
            // RFC 7644 §3.5.2.1: add to a multi-valued attribute adds values to those
            // it has; a value it has already is not added twice.
            (Op::Add, Some(v)) => {
                for item in strings(name, v)? {
                    if !current.contains(&item) {
                        current.push(item);
                    }
                }
            }
            (Op::Remove, None) => current.clear(),
            (Op::Remove, Some(v)) => {
                let gone = strings(name, v)?;
                current.retain(|c| !gone.contains(c));
            }
        }
        Ok(())
    }
}

/// Saves a draft and the SCIM-only attributes (`externalId`), then reads the person back.
async fn save(
    service: &Service,
    actor: &Actor,
    current: &ScimUser,
    draft: Draft,
) -> ScimResult<ScimUser> {
    let external_id = draft.external_id.clone();
    let name = &current.user.name;
    apply(service, actor, &current.user, draft).await?;
    if let Some(x) = external_id
        && x != current.external_id
    {
        service
            .set_scim_user(actor, name, x.as_deref(), &reason("updated", actor))
            .await?;
    }
    Ok(service.scim_user(name).await?)
}

/// Saves a draft: the changed identity sets first, then `active` (so a sign-off revokes the
/// identities the request left the person with). No principals means the default one, the
/// person's name, as when a person is created.
async fn apply(
    service: &Service,
    actor: &Actor,
    current: &crate::model::User,
    mut draft: Draft,
) -> ScimResult<()> {
    let name = &current.name;
    if draft.principals.is_empty() {
        draft.principals = vec![name.clone()];
    }
    let changed = |new: &[String], old: &[String]| {
        let new: BTreeSet<&String> = new.iter().collect();
        let old: BTreeSet<&String> = old.iter().collect();
        new != old
    };
    let update = UserUpdate {
        key_ids: changed(&draft.key_ids, &current.key_ids).then_some(draft.key_ids),
        principals: changed(&draft.principals, &current.principals).then_some(draft.principals),
        public_keys: changed(&draft.public_keys, &current.public_keys).then_some(draft.public_keys),
    };
    if update.key_ids.is_some() || update.principals.is_some() || update.public_keys.is_some() {
        service
            .update_user(actor, name, update, &reason("updated", actor))
            .await
            .map_err(ScimError::uniqueness)?;
    }
    match draft.active {
        // Idempotent: a person signed off already keeps their one sign-off.
        Some(false) => {
            service
                .sign_off(actor, name, &reason("deprovisioned", actor))
                .await?;
        }
        Some(true) if current.status != UserStatus::Active => {
            service
                .reenable_user(actor, name, &reason("reactivated", actor))
                .await?;
        }
        _ => {}
    }
    Ok(())
}
