//! SCIM Users (RFC 7644 §3): a User is a signoff person, its `id` and `userName` the
//! person's name (names never change, so the id is stable). `active` is the person's
//! status; setting it to false — by PATCH, PUT or DELETE — signs the person off through
//! [`Service::sign_off`], and setting it to true on a signed-off person re-enables them
//! through [`Service::reenable_user`]. Attributes signoff does not keep (name, emails,
//! externalId, …) are accepted and not stored, so an identity provider's full profile does
//! not make requests fail.

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::discovery::MAX_RESULTS;
use super::filter::{self, Filter, strip_prefix_ignore_case};
use super::{
    BASE, LIST_SCHEMA, PATCH_SCHEMA, SSH_EXTENSION, ScimCaller, ScimError, ScimState, USER_SCHEMA,
    attribute, scim_json,
};
use crate::model::{User, UserStatus};
use crate::service::{Actor, NewUser, Service, ServiceError, UserUpdate};

type ScimResult<T> = Result<T, ScimError>;

/// Page size when the request names none.
const DEFAULT_COUNT: usize = 100;

/// The SCIM representation of a person.
pub(crate) fn resource(user: &User) -> Value {
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

/// `GET /Users?filter=&startIndex=&count=`.
pub(crate) async fn list_users_handler(
    State(s): State<ScimState>,
    _caller: ScimCaller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ScimResult<Response> {
    let Query(query) = query.map_err(|e| ScimError::bad_request("invalidSyntax", e.body_text()))?;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let number = |name: &'static str, default: i64| -> ScimResult<i64> {
        match param(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                ScimError::bad_request("invalidValue", format!("{name} {v:?} is not an integer"))
            }),
        }
    };
    // RFC 7644 §3.4.2.4: startIndex below 1 means 1, a negative count means 0.
    let start = usize::try_from(number("startIndex", 1)?.max(1)).unwrap_or(1);
    let count = usize::try_from(number("count", DEFAULT_COUNT as i64)?.max(0))
        .unwrap_or(0)
        .min(MAX_RESULTS);
    let filter = param("filter")
        .map(filter::parse)
        .transpose()
        .map_err(|e| ScimError::bad_request("invalidFilter", e.to_string()))?;

    let matching = match filter {
        Some(Filter::UserName(name) | Filter::Id(name)) => match s.service.get_user(&name).await {
            Ok(user) => vec![user],
            Err(ServiceError::NotFound { .. }) => vec![],
            Err(e) => return Err(e.into()),
        },
        Some(Filter::Active(active)) => s
            .service
            .list_users()
            .await?
            .into_iter()
            .filter(|u| (u.status == UserStatus::Active) == active)
            .collect(),
        None => s.service.list_users().await?,
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(start - 1)
        .take(count)
        .map(resource)
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": matching.len(),
            "itemsPerPage": page.len(),
            "startIndex": start,
            "Resources": page,
        }),
    ))
}

/// `GET /Users/{id}`.
pub(crate) async fn get_user_handler(
    State(s): State<ScimState>,
    _caller: ScimCaller,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    Ok(scim_json(
        StatusCode::OK,
        resource(&s.service.get_user(&id).await?),
    ))
}

/// `POST /Users`: creates the person (inactive ones are created disabled).
pub(crate) async fn create_user_handler(
    State(s): State<ScimState>,
    caller: ScimCaller,
    body: Bytes,
) -> ScimResult<Response> {
    let actor = caller.0.actor();
    let body = object(&body)?;
    let name = match attribute(&body, "userName") {
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
    let ssh = SshAttributes::from_resource(&body)?;
    let active = attribute(&body, "active")
        .map(|v| boolean("active", v))
        .transpose()?
        .unwrap_or(true);
    let new = NewUser {
        name: name.clone(),
        key_ids: ssh.key_ids.unwrap_or_default(),
        principals: ssh.principals.unwrap_or_default(),
        public_keys: ssh.public_keys.unwrap_or_default(),
    };
    let mut user = s
        .service
        .create_user(&actor, new, &reason("provisioned", &actor))
        .await
        .map_err(ScimError::uniqueness)?;
    if !active {
        // Never active, so there is nothing to sign off: disabled is enough.
        user = s
            .service
            .set_user_status(
                &actor,
                &name,
                UserStatus::Disabled,
                &reason("provisioned inactive", &actor),
            )
            .await?;
    }
    let mut response = scim_json(StatusCode::CREATED, resource(&user));
    if let Ok(v) = HeaderValue::from_str(&location(&name)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `PUT /Users/{id}`: `userName` must stay; `active` and the SSH attributes present are
/// applied; omitted ones are left as they are (RFC 7644 §3.5.1 leaves that choice to the
/// server, and an IdP that does not manage SSH identities must not wipe them).
pub(crate) async fn replace_user_handler(
    State(s): State<ScimState>,
    caller: ScimCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> ScimResult<Response> {
    let actor = caller.0.actor();
    let body = object(&body)?;
    let current = s.service.get_user(&id).await?;
    match attribute(&body, "userName") {
        Some(v) => same_user_name(&id, v)?,
        None => {
            return Err(ScimError::bad_request(
                "invalidValue",
                "userName is required",
            ));
        }
    }
    let ssh = SshAttributes::from_resource(&body)?;
    let active = attribute(&body, "active")
        .map(|v| boolean("active", v))
        .transpose()?;
    let draft = Draft {
        active,
        key_ids: ssh.key_ids.unwrap_or_else(|| current.key_ids.clone()),
        principals: ssh.principals.unwrap_or_else(|| current.principals.clone()),
        public_keys: ssh
            .public_keys
            .unwrap_or_else(|| current.public_keys.clone()),
    };
    let user = apply(&s.service, &actor, &current, draft).await?;
    Ok(scim_json(StatusCode::OK, resource(&user)))
}

/// `PATCH /Users/{id}` with a PatchOp: operations apply in order to a draft of the person,
/// which is then saved; `active: false` signs the person off.
pub(crate) async fn patch_user_handler(
    State(s): State<ScimState>,
    caller: ScimCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> ScimResult<Response> {
    let actor = caller.0.actor();
    let body = object(&body)?;
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
    let current = s.service.get_user(&id).await?;
    let mut draft = Draft {
        active: None,
        key_ids: current.key_ids.clone(),
        principals: current.principals.clone(),
        public_keys: current.public_keys.clone(),
    };
    for (i, op) in operations.iter().enumerate() {
        draft.patch(&id, op).map_err(|e| ScimError {
            detail: format!("Operations[{i}]: {}", e.detail),
            ..e
        })?;
    }
    let user = apply(&s.service, &actor, &current, draft).await?;
    Ok(scim_json(StatusCode::OK, resource(&user)))
}

/// `DELETE /Users/{id}`: signs the person off and keeps them (signoff never forgets a
/// person: the sign-off, its progress and the audit trail stay); 204.
pub(crate) async fn delete_user_handler(
    State(s): State<ScimState>,
    caller: ScimCaller,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    let actor = caller.0.actor();
    s.service
        .sign_off(&actor, &id, &reason("deleted", &actor))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The request body as a JSON object.
fn object(body: &[u8]) -> ScimResult<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ScimError::bad_request(
            "invalidSyntax",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ScimError::bad_request(
            "invalidSyntax",
            format!("the body is not JSON: {e}"),
        )),
    }
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

/// The SSH extension's attributes present in a resource (`None` where absent), nested
/// under the extension's URN or, as Azure AD sends them, flat with the URN as prefix.
#[derive(Debug, Default)]
struct SshAttributes {
    key_ids: Option<Vec<String>>,
    principals: Option<Vec<String>>,
    public_keys: Option<Vec<String>>,
}

impl SshAttributes {
    fn from_resource(body: &Map<String, Value>) -> ScimResult<Self> {
        let mut out = SshAttributes::default();
        for (key, value) in body {
            if key.eq_ignore_ascii_case(SSH_EXTENSION) {
                let Value::Object(ext) = value else {
                    return Err(ScimError::bad_request(
                        "invalidValue",
                        format!("{SSH_EXTENSION} must be an object"),
                    ));
                };
                for (name, v) in ext {
                    out.set(name, v)?;
                }
            } else if let Some(name) = extension_attribute(key) {
                out.set(name, value)?;
            }
        }
        Ok(out)
    }

    fn set(&mut self, name: &str, v: &Value) -> ScimResult<()> {
        match SshSet::parse(name) {
            Some(SshSet::KeyIds) => self.key_ids = Some(strings("keyIds", v)?),
            Some(SshSet::Principals) => self.principals = Some(strings("principals", v)?),
            Some(SshSet::PublicKeys) => self.public_keys = Some(strings("sshPublicKeys", v)?),
            None => {}
        }
        Ok(())
    }
}

/// `URN:attr` of the SSH extension → `attr`.
fn extension_attribute(key: &str) -> Option<&str> {
    strip_prefix_ignore_case(key, SSH_EXTENSION)?.strip_prefix(':')
}

/// One of the extension's multi-valued attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SshSet {
    KeyIds,
    Principals,
    PublicKeys,
}

impl SshSet {
    fn parse(name: &str) -> Option<SshSet> {
        [
            ("keyIds", SshSet::KeyIds),
            ("principals", SshSet::Principals),
            ("sshPublicKeys", SshSet::PublicKeys),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, s)| s)
    }
}

/// What a PATCH path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Active,
    UserName,
    Set(SshSet),
    /// `id`: the name; stating it unchanged is fine.
    Id,
    /// `meta`: the server's own.
    ReadOnly,
    /// An attribute signoff does not keep.
    Ignored,
}

impl Target {
    fn parse(path: &str) -> ScimResult<Target> {
        let core = format!("{USER_SCHEMA}:");
        let (bare, in_extension) = if let Some(attr) = extension_attribute(path) {
            (attr, true)
        } else {
            (strip_prefix_ignore_case(path, &core).unwrap_or(path), false)
        };
        // The attribute, before any sub-attribute or value filter.
        let name = bare.split(['.', '[']).next().unwrap_or_default();
        let target = if let Some(set) = SshSet::parse(name) {
            Target::Set(set)
        } else if in_extension {
            Target::Ignored
        } else if name.eq_ignore_ascii_case("active") {
            Target::Active
        } else if name.eq_ignore_ascii_case("userName") {
            Target::UserName
        } else if name.eq_ignore_ascii_case("id") {
            Target::Id
        } else if name.eq_ignore_ascii_case("meta") {
            Target::ReadOnly
        } else {
            Target::Ignored
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
            // `{"op": "replace", "value": {"active": false}}`).
            None => {
                let Some(Value::Object(partial)) = value else {
                    return Err(ScimError::bad_request(
                        "invalidValue",
                        "an operation without \"path\" needs an object \"value\"",
                    ));
                };
                for (key, v) in partial {
                    if key.eq_ignore_ascii_case(SSH_EXTENSION) {
                        let Value::Object(ext) = v else {
                            return Err(ScimError::bad_request(
                                "invalidValue",
                                format!("{SSH_EXTENSION} must be an object"),
                            ));
                        };
                        for (name, v) in ext {
                            let target = SshSet::parse(name).map_or(Target::Ignored, Target::Set);
                            self.apply(id, op, target, name, Some(v))?;
                        }
                    } else if key.eq_ignore_ascii_case("schemas") {
                        // Describes the value; nothing to apply.
                    } else {
                        self.apply(id, op, Target::parse(key)?, key, Some(v))?;
                    }
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
            (Target::Id, Op::Add | Op::Replace) if value == Some(&Value::String(id.to_owned())) => {
            }
            (Target::Id | Target::ReadOnly, _) => {
                return Err(ScimError::bad_request(
                    "mutability",
                    format!("{path} is set by the server"),
                ));
            }
            (Target::Set(set), op) => {
                let current = match set {
                    SshSet::KeyIds => &mut self.key_ids,
                    SshSet::Principals => &mut self.principals,
                    SshSet::PublicKeys => &mut self.public_keys,
                };
                match (op, value) {
                    (Op::Replace, _) => *current = strings(path, needs_value()?)?,
                    (Op::Add, _) => current.extend(strings(path, needs_value()?)?),
                    (Op::Remove, None) => current.clear(),
                    (Op::Remove, Some(v)) => {
                        let gone = strings(path, v)?;
                        current.retain(|c| !gone.contains(c));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Saves a draft: the changed identity sets first, then `active` (so a sign-off revokes the
/// identities the request left the person with).
async fn apply(service: &Service, actor: &Actor, current: &User, draft: Draft) -> ScimResult<User> {
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
    let name = &current.name;
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
    Ok(service.get_user(name).await?)
}
