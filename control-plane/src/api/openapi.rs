//! The OpenAPI 3.1 document of `/api/v1`, served at `/api/v1/openapi.json`.
//!
//! Each operation carries an example request (`x-example-path`, and a request body
//! example) that the test suite sends to a live server, in the order listed, checking
//! that the documented success status comes back — so the document cannot drift from what
//! the server does.

use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::handlers::Json;

/// A request body: schema name, and a function giving the example.
type Body = (&'static str, fn() -> Value);

/// One operation: method, templated path, example path, scope, summary, request body
/// (schema name and example), success status.
struct Op {
    method: &'static str,
    path: &'static str,
    example_path: &'static str,
    scope: Option<&'static str>,
    summary: &'static str,
    body: Option<Body>,
    ok: u16,
    ok_schema: Option<&'static str>,
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT";

/// In the order the test replays them: each example relies only on earlier ones.
fn ops() -> Vec<Op> {
    vec![
        Op {
            method: "get",
            path: "/revision",
            example_path: "/revision",
            scope: Some("read"),
            summary: "Latest committed revision",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "post",
            path: "/users",
            example_path: "/users",
            scope: Some("write"),
            summary: "Create a person",
            body: Some((
                "CreateUser",
                || json!({"name": "alice", "key_ids": ["alice@corp"], "principals": ["alice"], "public_keys": [KEY], "reason": "hired"}),
            )),
            ok: 201,
            ok_schema: Some("User"),
        },
        Op {
            method: "post",
            path: "/users/{name}/certificates",
            example_path: "/users/alice/certificates",
            scope: Some("issue"),
            summary: "Issue a certificate from signoff's user CA for one of the person's registered keys: key ID their name, their principals, a serial the control plane records, valid for ttl (default and maximum from [ca] or the person's policy), optional source_address. 403 refused (audited) for a disabled or signed-off person, a key not theirs, a revoked key or key ID, a ttl over the maximum",
            body: Some((
                "IssueCertificate",
                || json!({"public_key": KEY, "ttl": "8h"}),
            )),
            ok: 201,
            ok_schema: Some("Certificate"),
        },
        Op {
            method: "get",
            path: "/users/{name}/certificates",
            example_path: "/users/alice/certificates",
            scope: Some("read"),
            summary: "The person's unexpired certificates from signoff's user CA, newest first",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "get",
            path: "/users",
            example_path: "/users",
            scope: Some("read"),
            summary: "List people",
            body: None,
            ok: 200,
            ok_schema: Some("UserList"),
        },
        Op {
            method: "get",
            path: "/users/{name}",
            example_path: "/users/alice",
            scope: Some("read"),
            summary: "Get a person",
            body: None,
            ok: 200,
            ok_schema: Some("User"),
        },
        Op {
            method: "patch",
            path: "/users/{name}",
            example_path: "/users/alice",
            scope: Some("write"),
            summary: "Replace a person's key IDs, principals or keys",
            body: Some((
                "UpdateUser",
                || json!({"key_ids": ["alice@corp", "alice@laptop"], "reason": "new laptop"}),
            )),
            ok: 200,
            ok_schema: Some("User"),
        },
        Op {
            method: "post",
            path: "/groups",
            example_path: "/groups",
            scope: Some("write"),
            summary: "Create a host group",
            body: Some(("CreateGroup", || json!({"name": "web"}))),
            ok: 201,
            ok_schema: Some("HostGroup"),
        },
        Op {
            method: "get",
            path: "/groups",
            example_path: "/groups",
            scope: Some("read"),
            summary: "List host groups",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "post",
            path: "/hosts",
            example_path: "/hosts",
            scope: Some("write"),
            summary: "Register a host",
            body: Some((
                "CreateHost",
                || json!({"id": "web1", "hostname": "web1.example.com", "groups": ["web"]}),
            )),
            ok: 201,
            ok_schema: Some("Host"),
        },
        Op {
            method: "get",
            path: "/hosts",
            example_path: "/hosts",
            scope: Some("read"),
            summary: "List hosts",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "get",
            path: "/hosts/{id}",
            example_path: "/hosts/web1",
            scope: Some("read"),
            summary: "Get a host",
            body: None,
            ok: 200,
            ok_schema: Some("Host"),
        },
        Op {
            method: "put",
            path: "/hosts/{id}/groups",
            example_path: "/hosts/web1/groups",
            scope: Some("write"),
            summary: "Replace a host's groups",
            body: Some((
                "SetGroups",
                || json!({"groups": ["web"], "reason": "rebalance"}),
            )),
            ok: 200,
            ok_schema: Some("Host"),
        },
        Op {
            method: "post",
            path: "/grants",
            example_path: "/grants",
            scope: Some("write"),
            summary: "Let a person log in as an account on a group's hosts",
            body: Some((
                "CreateGrant",
                || json!({"user": "alice", "account": "deploy", "group": "web", "reason": "on call"}),
            )),
            ok: 201,
            ok_schema: Some("Grant"),
        },
        Op {
            method: "get",
            path: "/grants",
            example_path: "/grants?user=alice",
            scope: Some("read"),
            summary: "List live grants, optionally of one person (?user=)",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "get",
            path: "/hosts/{id}/view",
            example_path: "/hosts/web1/view",
            scope: Some("read"),
            summary: "What a host must know at a revision (?revision=, default latest)",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "get",
            path: "/hosts/{id}/delta",
            example_path: "/hosts/web1/delta?from=1",
            scope: Some("read"),
            summary: "Change of a host's view between revisions (?from=&to=)",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "post",
            path: "/cas",
            example_path: "/cas",
            scope: Some("write"),
            summary: "Trust a user CA",
            body: Some(("AddCa", || json!({"name": "corp-ca", "public_key": KEY}))),
            ok: 201,
            ok_schema: Some("TrustedCa"),
        },
        Op {
            method: "get",
            path: "/cas",
            example_path: "/cas",
            scope: Some("read"),
            summary: "List trusted CAs",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "post",
            path: "/revocations",
            example_path: "/revocations",
            scope: Some("write"),
            summary: "Revoke a key ID, serial range, key or fingerprint",
            body: Some((
                "Revoke",
                || json!({"kind": "serial", "ca": "corp-ca", "lo": 100, "hi": 120, "reason": "stolen laptop"}),
            )),
            ok: 201,
            ok_schema: Some("RevocationRecord"),
        },
        Op {
            method: "get",
            path: "/revocations",
            example_path: "/revocations",
            scope: Some("read"),
            summary: "List live revocations",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "delete",
            path: "/revocations/{id}",
            example_path: "/revocations/1?reason=mistake",
            scope: Some("write"),
            summary: "Withdraw a revocation (?reason=)",
            body: None,
            ok: 204,
            ok_schema: None,
        },
        Op {
            method: "post",
            path: "/users/{name}/disable",
            example_path: "/users/alice/disable",
            scope: Some("write"),
            summary: "Disable a person",
            body: Some(("Reason", || json!({"reason": "left"}))),
            ok: 200,
            ok_schema: Some("User"),
        },
        Op {
            method: "post",
            path: "/users/{name}/enable",
            example_path: "/users/alice/enable",
            scope: Some("write"),
            summary: "Re-enable a person",
            body: Some(("Reason", || json!({"reason": "rehired"}))),
            ok: 200,
            ok_schema: Some("User"),
        },
        Op {
            method: "post",
            path: "/users/{name}/signoff",
            example_path: "/users/alice/signoff",
            scope: Some("signoff"),
            summary: "Sign a person off everywhere: disable, revoke their key IDs and keys, end their sessions on every host (201; 200 with the existing record when already signed off)",
            body: Some(("SignoffRequest", || json!({"reason": "left the company"}))),
            ok: 201,
            ok_schema: Some("Signoff"),
        },
        Op {
            method: "get",
            path: "/users/{name}/signoff",
            example_path: "/users/alice/signoff",
            scope: Some("read"),
            summary: "A person's latest sign-off, with per-host progress",
            body: None,
            ok: 200,
            ok_schema: Some("Signoff"),
        },
        Op {
            method: "get",
            path: "/signoffs",
            example_path: "/signoffs",
            scope: Some("read"),
            summary: "Every sign-off, newest first",
            body: None,
            ok: 200,
            ok_schema: Some("SignoffList"),
        },
        Op {
            method: "get",
            path: "/signoffs/{id}",
            example_path: "/signoffs/1",
            scope: Some("read"),
            summary: "One sign-off",
            body: None,
            ok: 200,
            ok_schema: Some("Signoff"),
        },
        Op {
            method: "post",
            path: "/users/{name}/reenable",
            example_path: "/users/alice/reenable",
            scope: Some("signoff"),
            summary: "Re-enable a signed-off person: withdraws the sign-off and the revocations it added",
            body: Some(("SignoffRequest", || json!({"reason": "rehired"}))),
            ok: 200,
            ok_schema: Some("User"),
        },
        Op {
            method: "delete",
            path: "/grants/{id}",
            example_path: "/grants/1?reason=rotation",
            scope: Some("write"),
            summary: "Withdraw a grant (?reason=)",
            body: None,
            ok: 204,
            ok_schema: None,
        },
        Op {
            method: "delete",
            path: "/cas/{name}",
            example_path: "/cas/corp-ca",
            scope: Some("write"),
            summary: "Stop trusting a CA",
            body: None,
            ok: 204,
            ok_schema: None,
        },
        Op {
            method: "post",
            path: "/tokens",
            example_path: "/tokens",
            scope: Some("admin"),
            summary: "Create a bearer token (the secret is returned once)",
            body: Some((
                "CreateToken",
                || json!({"name": "hr-feed", "scopes": ["signoff"]}),
            )),
            ok: 201,
            ok_schema: None,
        },
        Op {
            method: "get",
            path: "/tokens",
            example_path: "/tokens",
            scope: Some("admin"),
            summary: "List tokens (never their secrets)",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "delete",
            path: "/tokens/{id}",
            example_path: "/tokens/2",
            scope: Some("admin"),
            summary: "Revoke a token",
            body: None,
            ok: 204,
            ok_schema: None,
        },
        Op {
            method: "delete",
            path: "/hosts/{id}",
            example_path: "/hosts/web1?reason=decommissioned",
            scope: Some("write"),
            summary: "Remove a host; its agent is refused from then on",
            body: None,
            ok: 204,
            ok_schema: None,
        },
        Op {
            method: "get",
            path: "/sessions",
            example_path: "/sessions?user=alice",
            scope: Some("read"),
            summary: "SSH sessions, newest first (?user=&host=&account=&state=live|lingering|unknown|ended; default: all but ended)",
            body: None,
            ok: 200,
            ok_schema: Some("SessionList"),
        },
        Op {
            method: "get",
            path: "/sessions/events",
            example_path: "/sessions/events?follow=false",
            scope: Some("read"),
            summary: "Live feed of sessions as Server-Sent Events (text/event-stream), each event's data JSON: `snapshot` {sessions} first, then `started` and `updated` (a Session), `ended` {host_id, id}, `host_unknown` {host_id}; a client that falls behind gets `resync` {sessions, missed}, a fresh snapshot replacing what it had. ?follow=false ends the stream after the snapshot",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "get",
            path: "/sessions/{host}/{id}",
            example_path: "/sessions/web1/4242:1",
            scope: Some("read"),
            summary: "One session",
            body: None,
            ok: 200,
            ok_schema: Some("Session"),
        },
        Op {
            method: "post",
            path: "/sessions/{host}/{id}/kill",
            example_path: "/sessions/web1/4242:1/kill",
            scope: Some("signoff"),
            summary: "End a session: a kill order signed with the order key is sent on the host's stream (202; state undelivered when its agent is not connected; 409 once nothing of the session remains; a lingering session can be killed). The order and the agent's result are audited",
            body: Some(("Reason", || json!({"reason": "compromised laptop"}))),
            ok: 202,
            ok_schema: Some("KillOrder"),
        },
        Op {
            method: "post",
            path: "/users/{name}/kill-sessions",
            example_path: "/users/alice/kill-sessions",
            scope: Some("signoff"),
            summary: "End every live session of a person (a kill order each)",
            body: Some(("Reason", || json!({"reason": "compromised laptop"}))),
            ok: 202,
            ok_schema: Some("KillOrderList"),
        },
        Op {
            method: "get",
            path: "/audit",
            example_path: "/audit?limit=10",
            scope: Some("read"),
            summary: "Audit log, newest first (?filter=&before=&limit=)",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "get",
            path: "/audit/verify",
            example_path: "/audit/verify",
            scope: Some("read"),
            summary: "Check the audit hash chain",
            body: None,
            ok: 200,
            ok_schema: None,
        },
        Op {
            method: "get",
            path: "/openapi.json",
            example_path: "/openapi.json",
            scope: None,
            summary: "This document",
            body: None,
            ok: 200,
            ok_schema: None,
        },
    ]
}

fn schemas() -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let user = json!({"type": "object", "required": ["name", "status", "key_ids", "principals", "public_keys", "created_at"], "properties": {
        "name": {"type": "string"}, "status": {"enum": ["active", "disabled"]},
        "key_ids": strings, "principals": strings, "public_keys": strings, "created_at": {"type": "integer"}}});
    let mut all = json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"enum": ["unauthorized", "forbidden", "refused", "invalid", "bad_request", "not_found", "conflict", "internal"]},
            "message": {"type": "string"}}}}},
        "User": user,
        "UserList": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
        "CreateUser": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "key_ids": strings, "principals": strings, "public_keys": strings, "reason": {"type": "string"}}},
        "UpdateUser": {"type": "object", "additionalProperties": false, "properties": {
            "key_ids": strings, "principals": strings, "public_keys": strings, "reason": {"type": "string"}}},
        "Reason": {"type": "object", "additionalProperties": false, "properties": {"reason": {"type": "string"}}},
        "SignoffRequest": {"type": "object", "required": ["reason"], "additionalProperties": false, "properties": {"reason": {"type": "string", "minLength": 1}}},
        "Signoff": {"type": "object", "required": ["id", "user", "reason", "actor", "created_at", "completed_at", "revision", "in_force", "hosts"], "properties": {
            "id": {"type": "integer"}, "user": {"type": "string"}, "reason": {"type": "string"}, "actor": {"type": "string"},
            "created_at": {"type": "integer"}, "completed_at": {"type": ["integer", "null"], "description": "set once every host has confirmed"},
            "revision": {"type": "integer"}, "in_force": {"type": "boolean"}, "key_ids": strings, "key_fingerprints": strings,
            "hosts": {"type": "array", "items": {"type": "object", "properties": {
                "host": {"type": "string"}, "state": {"enum": ["confirmed", "pending", "offline"]},
                "confirmed_at": {"type": ["integer", "null"]}, "killed_sessions": strings, "last_error": {"type": ["string", "null"]}}}}}},
        "SignoffList": {"type": "array", "items": {"$ref": "#/components/schemas/Signoff"}},
        "HostGroup": {"type": "object", "properties": {"name": {"type": "string"}, "hosts": strings}},
        "CreateGroup": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {"name": {"type": "string"}, "reason": {"type": "string"}}},
        "Host": {"type": "object", "properties": {"id": {"type": "string"}, "hostname": {"type": "string"}, "groups": strings,
            "acked_revision": {"type": "integer"}, "last_contact": {"type": ["integer", "null"]}, "created_at": {"type": "integer"}}},
        "CreateHost": {"type": "object", "required": ["id"], "additionalProperties": false, "properties": {"id": {"type": "string"}, "hostname": {"type": "string"}, "groups": strings, "reason": {"type": "string"}}},
        "SetGroups": {"type": "object", "required": ["groups"], "additionalProperties": false, "properties": {"groups": strings, "reason": {"type": "string"}}},
        "Grant": {"type": "object", "properties": {"id": {"type": "integer"}, "user": {"type": "string"}, "account": {"type": "string"}, "group": {"type": "string"}, "not_after": {"type": ["integer", "null"]}}},
        "CreateGrant": {"type": "object", "required": ["user", "account", "group"], "additionalProperties": false, "properties": {
            "user": {"type": "string"}, "account": {"type": "string"}, "group": {"type": "string"}, "not_after": {"type": ["integer", "null"], "description": "Unix seconds"}, "reason": {"type": "string"}}},
        "TrustedCa": {"type": "object", "properties": {"name": {"type": "string"}, "public_key": {"type": "string"}, "fingerprint": {"type": "string"}}},
        "AddCa": {"type": "object", "required": ["name", "public_key"], "additionalProperties": false, "properties": {"name": {"type": "string"}, "public_key": {"type": "string"}, "reason": {"type": "string"}}},
        "Revoke": {"type": "object", "required": ["kind"], "description": "kind key_id: key_id, optional ca (name or fingerprint; none = any CA); kind serial: ca, lo, hi; kind key: public_key; kind sha256: fingerprint", "properties": {
            "kind": {"enum": ["key_id", "serial", "key", "sha256"]}, "ca": {"type": ["string", "null"]}, "key_id": {"type": "string"},
            "lo": {"type": "integer", "minimum": 1}, "hi": {"type": "integer", "minimum": 1}, "public_key": {"type": "string"}, "fingerprint": {"type": "string"}, "reason": {"type": "string"},
            "valid_before": {"type": ["integer", "null"], "description": "Unix seconds: withdrawn by itself once what it revokes has expired (serials of certificates signoff issued get this from their validity)"}}},
        "RevocationRecord": {"type": "object", "properties": {"id": {"type": "integer"}, "kind": {"type": "string"}, "reason": {"type": "string"}, "revision": {"type": "integer"}}},
        "CreateToken": {"type": "object", "required": ["name", "scopes"], "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "scopes": {"type": "array", "items": {"enum": ["read", "write", "signoff", "admin", "krl", "issue", "scim"]}}, "expires_at": {"type": ["integer", "null"]}, "reason": {"type": "string"}}},
    });
    if let (Some(all), Value::Object(sessions)) = (all.as_object_mut(), session_schemas()) {
        all.extend(sessions);
    }
    if let (Some(all), Value::Object(certificates)) = (all.as_object_mut(), certificate_schemas()) {
        all.extend(certificates);
    }
    all
}

/// The certificates' schemas.
fn certificate_schemas() -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "IssueCertificate": {"type": "object", "required": ["public_key"], "additionalProperties": false, "properties": {
            "public_key": {"type": "string", "description": "one of the person's registered keys, OpenSSH format"},
            "ttl": {"type": "string", "description": "e.g. \"8h\", \"30m\"; default and maximum from policy"},
            "source_address": {"type": "string", "description": "comma-separated addresses or CIDR networks"}}},
        "Certificate": {"type": "object", "required": ["serial", "user", "key_fingerprint", "public_key", "principals", "valid_after", "valid_before", "ca_fingerprint"], "properties": {
            "serial": {"type": "integer"}, "user": {"type": "string", "description": "also the key ID"},
            "key_fingerprint": {"type": "string"}, "public_key": {"type": "string"}, "principals": strings,
            "valid_after": {"type": "integer"}, "valid_before": {"type": "integer"},
            "source_address": {"type": ["string", "null"]}, "ca_fingerprint": {"type": "string"},
            "certificate": {"type": "string", "description": "the certificate, one OpenSSH line, for ~/.ssh/id_ed25519-cert.pub; only in the answer to issuance"}}},
    })
}

/// The sessions' schemas (apart: one `json!` of every schema exceeds the macro's recursion
/// limit).
fn session_schemas() -> Value {
    json!({
        "Session": {"type": "object", "required": ["host_id", "id", "account", "key_id", "serial", "source_address", "source_port", "started_at", "state"], "properties": {
            "host_id": {"type": "string"}, "id": {"type": "string", "description": "PID:START_TICKS of the session's sshd process, unique on the host"},
            "account": {"type": "string"}, "user": {"type": ["string", "null"], "description": "the person whose key ID the certificate carries"},
            "key_id": {"type": "string"}, "serial": {"type": "integer"}, "ca_fingerprint": {"type": "string"}, "key_fingerprint": {"type": "string"},
            "source_address": {"type": "string"}, "source_port": {"type": "integer"}, "started_at": {"type": "integer"},
            "tty": {"type": "string", "description": "pts/N, or empty without a pty"}, "pids": {"type": "array", "items": {"type": "integer"}},
            "state": {"enum": ["live", "lingering", "unknown", "ended"], "description": "lingering: the connection ended but processes of the login remain (see lingering); unknown while the host's agent is disconnected; ended once nothing of it remains"}, "ended_at": {"type": ["integer", "null"]},
            "lingering": {"type": "array", "description": "while lingering: what the login left running", "items": {"type": "object", "required": ["pid", "uid", "account", "command"], "properties": {"pid": {"type": "integer"}, "uid": {"type": "integer"}, "account": {"type": "string"}, "command": {"type": "string"}}}}}},
        "SessionList": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}},
        "KillOrder": {"type": "object", "required": ["nonce", "host_id", "session_id", "state", "not_after"], "properties": {
            "nonce": {"type": "string", "description": "hex; names the order in the audit log"}, "host_id": {"type": "string"}, "session_id": {"type": "string"},
            "state": {"enum": ["sent", "undelivered"]}, "not_after": {"type": "integer", "description": "Unix seconds after which the agent refuses it"}}},
        "KillOrderList": {"type": "array", "items": {"$ref": "#/components/schemas/KillOrder"}},
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (order, op) in ops().into_iter().enumerate() {
        let mut responses = serde_json::Map::new();
        let mut ok = json!({"description": "Success"});
        if let Some(schema) = op.ok_schema {
            ok["content"] = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
        }
        responses.insert(op.ok.to_string(), ok);
        let error = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        if op.scope.is_some() {
            responses.insert(
                "401".into(),
                error("Missing, unknown, expired or revoked token"),
            );
            responses.insert("403".into(), error("Token lacks the scope"));
        }
        if op.path.contains('{') {
            responses.insert("404".into(), error("Not found"));
        }
        if op.body.is_some() || op.path.contains('{') || op.example_path.contains('?') {
            responses.insert("400".into(), error("Malformed request"));
        }
        if op.method == "delete" && op.path == "/revocations/{id}" {
            responses.insert(
                "409".into(),
                error("The revocation enforces a sign-off in force; only re-enabling the person withdraws it"),
            );
        }
        if op.path == "/tokens" && op.method == "post" {
            responses.insert(
                "403".into(),
                error("Token lacks the admin scope, or a scope it asks for, or would outlive this token"),
            );
        }
        if op.body.is_some() {
            responses.insert("413".into(), error("Body larger than 256 KiB"));
            responses.insert("409".into(), error("Conflicts with what exists"));
            responses.insert(
                "422".into(),
                error("Invalid value; the message names the field"),
            );
        }
        let mut operation = json!({
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.'], "_")),
            "x-example-path": op.example_path,
            "x-order": order,
            "x-scope": op.scope,
            "responses": responses,
        });
        match op.scope {
            Some(_) => operation["security"] = json!([{"bearer": []}]),
            None => operation["security"] = json!([]),
        }
        if let Some((schema, example)) = op.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{schema}")},
                "example": example()}}});
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "signoff control plane API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Bearer tokens carry scopes read, write, signoff, admin (token management: a token creates only tokens with scopes it holds, expiring no later than itself), krl (GET /krl), issue (certificates from signoff's user CA) and scim. A scim token is for SCIM 2.0 at /scim/v2 only (it has its own discovery endpoints), cannot carry another scope, and is refused here. The scope is checked before the request's body or query is read. Errors are {\"error\": {\"code\", \"message\"}}, also 405 and 413; a 401 carries WWW-Authenticate: Bearer."},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        },
        "paths": paths,
    })
}

pub(crate) async fn openapi_handler() -> impl IntoResponse {
    Json(document())
}
