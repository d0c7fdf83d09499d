//! SCIM discovery (RFC 7644 §4): what this server supports, which resource types and
//! schemas it has. Identity providers read these to decide what to send.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{BASE, LIST_SCHEMA, SSH_EXTENSION, ScimCaller, ScimError, USER_SCHEMA, scim_json};

/// Largest page a list returns.
pub(crate) const MAX_RESULTS: usize = 500;

pub(crate) async fn service_provider_config_handler(_caller: ScimCaller) -> Response {
    scim_json(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/signoff/signoff/blob/main/control-plane/README.md#scim-20",
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A signoff API token with the scim scope (signoff-server api-token create NAME --scope scim)",
                "primary": true,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{BASE}/ServiceProviderConfig")},
        }),
    )
}

fn user_resource_type() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person who may hold SSH access; deactivating or deleting one signs them off everywhere",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{"schema": SSH_EXTENSION, "required": false}],
        "meta": {"resourceType": "ResourceType", "location": format!("{BASE}/ResourceTypes/User")},
    })
}

fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": resources.len(),
        "itemsPerPage": resources.len(),
        "startIndex": 1,
        "Resources": resources,
    })
}

pub(crate) async fn resource_types_handler(_caller: ScimCaller) -> Response {
    scim_json(StatusCode::OK, list(vec![user_resource_type()]))
}

pub(crate) async fn resource_type_handler(
    _caller: ScimCaller,
    Path(name): Path<String>,
) -> Result<Response, ScimError> {
    if name == "User" {
        Ok(scim_json(StatusCode::OK, user_resource_type()))
    } else {
        Err(ScimError::not_found(format!(
            "no resource type {name:?}; this server has User only"
        )))
    }
}

fn string_attribute(name: &str, description: &str, required: bool, mutability: &str) -> Value {
    json!({
        "name": name, "type": "string", "multiValued": false, "description": description,
        "required": required, "caseExact": true, "mutability": mutability,
        "returned": "default", "uniqueness": if name == "userName" { "server" } else { "none" },
    })
}

fn strings_attribute(name: &str, description: &str) -> Value {
    json!({
        "name": name, "type": "string", "multiValued": true, "description": description,
        "required": false, "caseExact": true, "mutability": "readWrite",
        "returned": "default", "uniqueness": "none",
    })
}

fn schema_list() -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": USER_SCHEMA,
            "name": "User",
            "description": "A signoff person. Attributes not listed here are accepted and not stored.",
            "attributes": [
                string_attribute("userName", "The signoff name: also the default certificate principal; it cannot change", true, "immutable"),
                {"name": "active", "type": "boolean", "multiValued": false, "required": false,
                 "mutability": "readWrite", "returned": "default",
                 "description": "false signs the person off everywhere; true re-enables a signed-off person"},
            ],
            "meta": {"resourceType": "Schema", "location": format!("{BASE}/Schemas/{USER_SCHEMA}")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": SSH_EXTENSION,
            "name": "SshUser",
            "description": "A person's SSH identities; omitted attributes are left as they are",
            "attributes": [
                strings_attribute("keyIds", "Certificate key IDs that identify the person (revoked on sign-off)"),
                strings_attribute("principals", "Certificate principals that are theirs (default: userName)"),
                strings_attribute("sshPublicKeys", "Plain OpenSSH public keys (revoked on sign-off)"),
            ],
            "meta": {"resourceType": "Schema", "location": format!("{BASE}/Schemas/{SSH_EXTENSION}")},
        }),
    ]
}

pub(crate) async fn schemas_handler(_caller: ScimCaller) -> Response {
    scim_json(StatusCode::OK, list(schema_list()))
}

pub(crate) async fn schema_handler(
    _caller: ScimCaller,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    schema_list()
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(|s| scim_json(StatusCode::OK, s))
        .ok_or_else(|| ScimError::not_found(format!("no schema {id:?}")))
}
