//! The OpenAPI 3.1 document of `/api/v1`, served at `/api/v1/openapi.json`, generated
//! with utoipa from the handlers' own annotations (`#[utoipa::path]`: parameters, request
//! body type, the statuses the handler and the service return) and from the request and
//! response types themselves (`ToSchema`: fields, nullability, `deny_unknown_fields`).
//!
//! What belongs to the route rather than to the handler is added here from the route
//! table (`routes.rs`), so that it cannot drift: the security requirement with the
//! route's scope and its 401/403, and the statuses the extractors answer before the
//! handler runs (400 for a malformed body, path or query; 413; 415). The authorization
//! matrix test checks that the document has exactly the table's operations.
//!
//! Field rules (name patterns, lengths, enums) come from the constants the validators in
//! `model.rs` are made of: see the `*_schema` functions below.

use utoipa::OpenApi;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Ref, RefOr, ResponseBuilder, SecurityRequirement, path::Operation,
};

use super::handlers::Json;
use super::routes::{Access, HttpOptions, routes};
use super::{alerts, approvals, certificates, error, events, handlers, session_events, signoffs};
use crate::model::{self, IdentRule};
use crate::service::Scope;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "signoff control plane API",
        description = "Bearer tokens carry scopes read, write, signoff, admin (token management: \
a token creates only tokens with scopes it holds, expiring no later than itself), krl \
(GET /krl) and scim. A scim token is for SCIM 2.0 at /scim/v2 only, cannot carry another \
scope, and is refused here. Each operation's security requirement names the scope it \
needs; the scope is checked before the request's body or query is read. Request bodies \
are JSON objects; unknown fields are refused, and null is taken only where a field is \
declared nullable. Errors are {\"error\": {\"code\", \"message\"}}, also 405, 413 and \
415; a 401 carries WWW-Authenticate: Bearer."
    ),
    paths(
        handlers::revision_handler,
        handlers::list_users_handler,
        handlers::create_user_handler,
        handlers::get_user_handler,
        handlers::update_user_handler,
        handlers::disable_user_handler,
        handlers::enable_user_handler,
        signoffs::get_user_signoff_handler,
        certificates::issue_certificate_handler,
        certificates::list_certificates_handler,
        signoffs::signoff_user_handler,
        signoffs::reenable_user_handler,
        handlers::kill_user_sessions_handler,
        signoffs::list_signoffs_handler,
        signoffs::get_signoff_handler,
        handlers::list_groups_handler,
        handlers::create_group_handler,
        handlers::list_hosts_handler,
        handlers::create_host_handler,
        handlers::get_host_handler,
        handlers::remove_host_handler,
        handlers::set_host_groups_handler,
        handlers::host_view_handler,
        handlers::host_delta_handler,
        handlers::list_grants_handler,
        handlers::create_grant_handler,
        handlers::delete_grant_handler,
        approvals::get_grant_approvals_handler,
        approvals::add_grant_approval_handler,
        approvals::list_approvals_handler,
        approvals::get_reenable_approvals_handler,
        approvals::add_reenable_approval_handler,
        handlers::list_cas_handler,
        certificates::host_ca_handler,
        handlers::add_ca_handler,
        handlers::remove_ca_handler,
        handlers::list_revocations_handler,
        handlers::revoke_handler,
        handlers::unrevoke_handler,
        handlers::list_tokens_handler,
        handlers::create_token_handler,
        handlers::revoke_token_handler,
        handlers::list_sessions_handler,
        session_events::session_events_handler,
        handlers::get_session_handler,
        handlers::kill_session_handler,
        handlers::audit_log_handler,
        handlers::audit_verify_handler,
        events::events_handler,
        alerts::list_alerts_handler,
        alerts::acknowledge_alert_handler,
        openapi_handler,
    ),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    // `deny_unknown_fields` on an enum reaches serde but not utoipa's variant schemas.
    if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut("RevokeRequest") {
        for variant in &mut one_of.items {
            if let RefOr::T(Schema::Object(object)) = variant {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
    for route in routes(HttpOptions::default()) {
        let Some(item) = doc.paths.paths.get_mut(route.path) else {
            // Not under /api/v1 (/krl, /metrics); the matrix test checks the rest.
            continue;
        };
        let Some(op) = operation_mut(item, &route.method) else {
            continue;
        };
        from_the_route(op, route.access);
    }
    doc
}

fn operation_mut<'a>(
    item: &'a mut utoipa::openapi::PathItem,
    method: &axum::http::Method,
) -> Option<&'a mut Operation> {
    use axum::http::Method as M;
    match *method {
        M::GET => item.get.as_mut(),
        M::POST => item.post.as_mut(),
        M::PUT => item.put.as_mut(),
        M::PATCH => item.patch.as_mut(),
        M::DELETE => item.delete.as_mut(),
        _ => None,
    }
}

/// Security and the statuses answered before the handler runs.
fn from_the_route(op: &mut Operation, access: Access) {
    match access {
        // An empty list: no security requirement, not "any of none".
        Access::Public => op.security = Some(Vec::new()),
        Access::Scope(scope) => {
            // OpenAPI 3.1 lets a requirement list role names for any scheme type (§4.8.30):
            // the scope the route needs.
            op.security = Some(vec![SecurityRequirement::new(BEARER, [scope.as_str()])]);
            add_error(op, 401, "Missing, unknown, expired or revoked token");
            add_error(
                op,
                403,
                &format!(
                    "The token lacks the {:?} scope, or is a scim token",
                    scope.as_str()
                ),
            );
        }
    }
    if op.request_body.is_some() {
        add_error(
            op,
            400,
            "Malformed request: not JSON, not an object, a field of the wrong type or null \
             where not nullable, an unknown field, or a malformed path or query",
        );
        add_error(op, 413, "The body is larger than 256 KiB");
        add_error(op, 415, "The body is not Content-Type: application/json");
    } else if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        add_error(
            op,
            400,
            "Malformed path or query: a parameter of the wrong type, an unknown one, or a \
             percent-escape that is not UTF-8",
        );
    }
}

/// Adds an error response unless the handler documented that status itself.
fn add_error(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(error_response(description)));
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)),
)]
pub(crate) async fn openapi_handler() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

// ---- field rules, from the validators' constants -------------------------------------

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
}

fn ident(rule: IdentRule, what: &str) -> Schema {
    string(what)
        .pattern(Some(rule.pattern()))
        .min_length(Some(1))
        .max_length(Some(rule.max))
        .build()
        .into()
}

fn list(items: Schema) -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(items))
        .max_items(Some(model::MAX_LIST))
        .build()
        .into()
}

/// A person's name.
pub(crate) fn user_name_schema() -> Schema {
    ident(model::USER_NAME, "A person's name")
}

/// A host group's name.
pub(crate) fn group_name_schema() -> Schema {
    ident(model::GROUP_NAME, "A host group's name")
}

/// A list of host group names.
pub(crate) fn group_names_schema() -> Schema {
    list(group_name_schema())
}

/// A host id.
pub(crate) fn host_id_schema() -> Schema {
    ident(model::HOST_ID, "A host id (DNS-like)")
}

/// A Unix account name.
pub(crate) fn account_schema() -> Schema {
    string("A Unix account name as useradd accepts it")
        .pattern(Some(model::ACCOUNT_PATTERN))
        .min_length(Some(1))
        .max_length(Some(model::MAX_ACCOUNT))
        .build()
        .into()
}

fn principal_schema() -> Schema {
    string("A certificate principal: printable ASCII, no spaces or commas")
        .pattern(Some(model::PRINCIPAL_PATTERN))
        .min_length(Some(1))
        .max_length(Some(model::MAX_PRINCIPAL))
        .build()
        .into()
}

/// A person's certificate principals at creation: empty means their name.
pub(crate) fn principals_schema() -> Schema {
    list(principal_schema())
}

/// A person's new certificate principals: a person keeps at least one.
pub(crate) fn some_principals_schema() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(principal_schema()))
        .min_items(Some(1))
        .max_items(Some(model::MAX_LIST))
        .build()
        .into()
}

/// A new token's scopes, from [`Scope::ALL`]: at least one, and `scim` alone or not at
/// all (an identity provider's token opens SCIM only).
pub(crate) fn token_scopes_schema() -> Schema {
    let names = |scim: bool| -> Vec<&'static str> {
        Scope::ALL
            .into_iter()
            .filter(|s| (*s == Scope::Scim) == scim)
            .map(Scope::as_str)
            .collect()
    };
    let array = |scim: bool| -> Schema {
        ArrayBuilder::new()
            .items(RefOr::T(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some(names(scim)))
                    .build()
                    .into(),
            ))
            .min_items(Some(1))
            .build()
            .into()
    };
    OneOfBuilder::new()
        .item(array(false))
        .item(array(true))
        .description(Some(
            "Each must be held by the creating token; scim alone or not at all",
        ))
        .build()
        .into()
}

/// A certificate key ID.
pub(crate) fn key_id_schema() -> Schema {
    string("A certificate key ID: no control characters")
        .pattern(Some(model::KEY_ID_PATTERN))
        .min_length(Some(1))
        .max_length(Some(model::MAX_KEY_ID))
        .build()
        .into()
}

/// A list of key IDs.
pub(crate) fn key_ids_schema() -> Schema {
    list(key_id_schema())
}

/// An OpenSSH public key line.
pub(crate) fn public_key_schema() -> Schema {
    // The key blob itself is checked by parsing it; a schema cannot say which base64 is a
    // key, so a string of the right shape that is not one is a 422.
    string("An OpenSSH public key line, \"TYPE BASE64 [COMMENT]\"; not a certificate")
        .pattern(Some(model::PUBLIC_KEY_PATTERN))
        .max_length(Some(model::MAX_PUBLIC_KEY))
        .build()
        .into()
}

/// A list of public keys.
pub(crate) fn public_keys_schema() -> Schema {
    list(public_key_schema())
}

/// A reason, recorded in the audit log.
pub(crate) fn reason_schema() -> Schema {
    string("Why; recorded in the audit log")
        .pattern(Some(model::TEXT_PATTERN))
        .max_length(Some(model::MAX_REASON))
        .build()
        .into()
}

/// A reason that must be given.
pub(crate) fn required_reason_schema() -> Schema {
    string("Why; recorded in the audit log, required")
        .pattern(Some(model::REQUIRED_TEXT_PATTERN))
        .min_length(Some(1))
        .max_length(Some(model::MAX_REASON))
        .build()
        .into()
}

/// A host's name as people know it.
pub(crate) fn hostname_schema() -> Schema {
    string("The name people know the host by")
        .pattern(Some(model::TEXT_PATTERN))
        .max_length(Some(model::MAX_HOSTNAME))
        .build()
        .into()
}

/// A `SHA256:` fingerprint.
pub(crate) fn fingerprint_schema() -> Schema {
    string("A fingerprint as OpenSSH prints it: SHA256: and 43 base64 characters")
        .pattern(Some(model::SHA256_FINGERPRINT_PATTERN))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use utoipa::openapi::schema::Schema;

    use super::*;

    /// The pattern and length limits of a string schema, as a client's validator applies
    /// them (lengths in characters).
    fn accepts(schema: &Schema, s: &str) -> bool {
        let Schema::Object(o) = schema else {
            panic!("not a string schema")
        };
        let n = s.chars().count();
        let pattern = o
            .pattern
            .as_deref()
            .map(|p| regex::Regex::new(p).expect("pattern"));
        pattern.is_none_or(|p| p.is_match(s))
            && o.min_length.is_none_or(|m| n >= m)
            && o.max_length.is_none_or(|m| n <= m)
    }

    fn item(list: Schema) -> Schema {
        let Schema::Array(a) = list else {
            panic!("not a list")
        };
        match a.items {
            utoipa::openapi::schema::ArrayItems::RefOrSchema(s) => match *s {
                RefOr::T(s) => s,
                RefOr::Ref(_) => panic!("a reference"),
            },
            utoipa::openapi::schema::ArrayItems::False => panic!("no items"),
        }
    }

    type Validator = fn(&str, &str) -> Result<(), model::Invalid>;

    fn rules() -> Vec<(&'static str, Schema, Validator)> {
        vec![
            ("user name", user_name_schema(), model::validate_user_name),
            (
                "group name",
                group_name_schema(),
                model::validate_group_name,
            ),
            ("host id", host_id_schema(), model::validate_host_id),
            ("account", account_schema(), model::validate_account),
            (
                "principal",
                item(principals_schema()),
                model::validate_principal,
            ),
            ("key id", key_id_schema(), model::validate_key_id),
            ("reason", reason_schema(), |f, s| {
                model::validate_text(f, s, model::MAX_REASON)
            }),
        ]
    }

    /// Strings near the rules' edges: ASCII punctuation, controls (C0 and C1), spaces,
    /// non-ASCII letters, lengths around the limits.
    fn edge_strings() -> impl Strategy<Value = String> {
        let chars = prop_oneof![
            4 => proptest::char::range('a', 'z'),
            2 => proptest::char::range('0', '9'),
            2 => proptest::sample::select(vec!['_', '.', '-', '@', ',', ' ', '$', '/', 'A', 'Z']),
            1 => proptest::char::range('\u{0}', '\u{1f}'),
            1 => proptest::char::range('\u{7f}', '\u{a0}'),
            1 => proptest::sample::select(vec!['é', '\t', '\u{2028}', '😀']),
        ];
        prop_oneof![
            proptest::collection::vec(chars.clone(), 0..8),
            proptest::collection::vec(chars, 30..40),
        ]
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn each_schema_accepts_exactly_what_its_validator_accepts(s in edge_strings()) {
            for (what, schema, validate) in rules() {
                prop_assert_eq!(
                    accepts(&schema, &s),
                    validate("f", &s).is_ok(),
                    "{}: {:?}", what, s
                );
            }
        }
    }

    #[test]
    fn the_length_limits_agree_at_the_edge() {
        for (what, schema, validate) in rules() {
            let Schema::Object(o) = &schema else { panic!() };
            let Some(max) = o.max_length else { continue };
            let at = "b".repeat(max);
            let over = format!("{at}b");
            assert!(
                accepts(&schema, &at) && validate("f", &at).is_ok(),
                "{what} at {max}"
            );
            assert!(
                !accepts(&schema, &over) && validate("f", &over).is_err(),
                "{what} over"
            );
        }
    }

    #[test]
    fn token_scopes_are_the_scopes_of_the_code_and_scim_stands_alone() {
        let doc = serde_json::to_value(token_scopes_schema()).expect("json");
        let one_of = doc["oneOf"].as_array().expect("oneOf");
        let mut names: Vec<&str> = one_of
            .iter()
            .flat_map(|a| a["items"]["enum"].as_array().expect("enum").iter())
            .map(|v| v.as_str().expect("name"))
            .collect();
        names.sort();
        let mut all: Vec<&str> = Scope::ALL.into_iter().map(Scope::as_str).collect();
        all.sort();
        assert_eq!(names, all);
        assert_eq!(one_of[1]["items"]["enum"], serde_json::json!(["scim"]));
    }
}
