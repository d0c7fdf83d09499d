//! SCIM through the application's router with `oneshot`: every endpoint, every error body,
//! and that deprovisioning is a real sign-off.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::model::UserStatus;
use crate::service::testing::service;
use crate::service::{Actor, NewUser, Scope, Service};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT";
const EXT: &str = super::SSH_EXTENSION;

struct Env {
    service: Service,
    app: Router,
    /// A token with the scim scope only, named `okta`.
    scim: String,
    /// A token with every other scope.
    admin: String,
}

async fn env() -> Env {
    let (service, _) = service().await;
    service.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[5; 32]),
    ));
    let admin = service.bootstrap_token().await.unwrap().unwrap().secret;
    let scim = service
        .create_token(&Actor::cli(), "okta", &[Scope::Scim], None, "IdP")
        .await
        .unwrap()
        .secret;
    Env {
        app: crate::api::router(service.clone()),
        service,
        scim,
        admin,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// Asserts a SCIM error body with this status and scimType (`None`: no scimType).
    #[track_caller]
    fn scim_error(&self, status: StatusCode, scim_type: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status.as_str(), "{}", self.body);
        assert_eq!(self.body["scimType"].as_str(), scim_type, "{}", self.body);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/scim+json");
    }

    fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }
}

impl Env {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/scim+json");
        }
        let req = req
            .body(Body::from(body.unwrap_or_default().to_owned()))
            .unwrap();
        self.send(req).await
    }

    /// Sends a request as it is.
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn scim(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        self.call(
            method,
            &format!("/scim/v2{path}"),
            Some(&self.scim),
            body.as_deref(),
        )
        .await
    }

    async fn create(&self, name: &str) -> Reply {
        let r = self
            .scim(
                Method::POST,
                "/Users",
                Some(json!({"schemas": [super::USER_SCHEMA], "userName": name})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r
    }

    async fn patch(&self, name: &str, operations: Value) -> Reply {
        self.scim(
            Method::PATCH,
            &format!("/Users/{name}"),
            Some(json!({"schemas": [super::PATCH_SCHEMA], "Operations": operations})),
        )
        .await
    }

    async fn signoffs(&self) -> usize {
        self.service.list_signoffs().await.unwrap().len()
    }
}

#[tokio::test]
async fn discovery_endpoints_describe_users_and_the_ssh_extension() {
    let e = env().await;
    let r = e.scim(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/scim+json");
    assert_eq!(r.body["patch"]["supported"], true);
    assert_eq!(r.body["filter"]["supported"], true);
    assert_eq!(r.body["bulk"]["supported"], false);
    assert_eq!(
        r.body["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );

    let r = e.scim(Method::GET, "/ResourceTypes", None).await;
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.body["Resources"][0]["endpoint"], "/Users");
    assert_eq!(r.body["Resources"][0]["schemaExtensions"][0]["schema"], EXT);
    let r = e.scim(Method::GET, "/ResourceTypes/User", None).await;
    assert_eq!((r.status, &r.body["id"]), (StatusCode::OK, &json!("User")));
    e.scim(Method::GET, "/ResourceTypes/Group", None)
        .await
        .scim_error(StatusCode::NOT_FOUND, None);

    let r = e.scim(Method::GET, "/Schemas", None).await;
    assert_eq!(r.body["totalResults"], 2);
    let r = e.scim(Method::GET, &format!("/Schemas/{EXT}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let names: Vec<&str> = r.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keyIds", "principals", "sshPublicKeys"]);
    e.scim(Method::GET, "/Schemas/urn:nope", None)
        .await
        .scim_error(StatusCode::NOT_FOUND, None);
    // A method an endpoint does not take.
    e.scim(Method::DELETE, "/Users", None)
        .await
        .scim_error(StatusCode::METHOD_NOT_ALLOWED, None);
    // Groups, Bulk, Me: not served, said in SCIM's words.
    e.scim(Method::GET, "/Groups", None)
        .await
        .scim_error(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn a_missing_or_bad_token_is_a_scim_401() {
    let e = env().await;
    for path in [
        "/scim/v2/Users",
        "/scim/v2/ServiceProviderConfig",
        "/scim/v2/Groups",
    ] {
        let r = e.call(Method::GET, path, None, None).await;
        r.scim_error(StatusCode::UNAUTHORIZED, None);
        assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
        assert!(r.detail().contains("missing"), "{}", r.detail());
        e.call(Method::GET, path, Some("so_not-a-token"), None)
            .await
            .scim_error(StatusCode::UNAUTHORIZED, None);
    }
    let r = e
        .call(Method::DELETE, "/scim/v2/Users/alice", Some(""), None)
        .await;
    r.scim_error(StatusCode::UNAUTHORIZED, None);
    // A revoked SCIM token.
    let id = e.service.list_tokens().await.unwrap()[1].id;
    e.service
        .revoke_token(&Actor::cli(), id, "rotated")
        .await
        .unwrap();
    let r = e.scim(Method::GET, "/Users", None).await;
    r.scim_error(StatusCode::UNAUTHORIZED, None);
    assert!(r.detail().contains("revoked"), "{}", r.detail());
}

#[tokio::test]
async fn only_the_scim_scope_opens_scim_and_it_opens_nothing_else() {
    let e = env().await;
    e.create("alice").await;
    // The admin token (read, write, signoff) cannot use SCIM.
    let r = e
        .call(Method::GET, "/scim/v2/Users", Some(&e.admin), None)
        .await;
    r.scim_error(StatusCode::FORBIDDEN, None);
    assert!(r.detail().contains("scim"), "{}", r.detail());
    let r = e
        .call(Method::DELETE, "/scim/v2/Users/alice", Some(&e.admin), None)
        .await;
    r.scim_error(StatusCode::FORBIDDEN, None);
    // The SCIM token cannot read, write or sign off through the API.
    for (method, path, body) in [
        (Method::GET, "/api/v1/users", None),
        (Method::GET, "/api/v1/revision", None),
        (Method::POST, "/api/v1/users", Some(r#"{"name":"bob"}"#)),
        (
            Method::POST,
            "/api/v1/users/alice/signoff",
            Some(r#"{"reason":"x"}"#),
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            Some(r#"{"name":"x","scopes":["write"]}"#),
        ),
    ] {
        let r = e.call(method, path, Some(&e.scim), body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "forbidden");
    }
    assert_eq!(e.signoffs().await, 0);
}

#[tokio::test]
async fn create_returns_the_resource_with_its_location() {
    let e = env().await;
    let r = e
        .scim(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": [super::USER_SCHEMA, EXT],
                "userName": "alice",
                "externalId": "00u1abc",
                "name": {"givenName": "Alice", "familyName": "Liddell"},
                "emails": [{"value": "alice@example.com", "primary": true}],
                "active": true,
                EXT: {"keyIds": ["alice@corp"], "sshPublicKeys": [KEY]},
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.headers[header::LOCATION], "/scim/v2/Users/alice");
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/scim+json");
    assert_eq!(r.body["id"], "alice");
    assert_eq!(r.body["userName"], "alice");
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["meta"]["resourceType"], "User");
    assert_eq!(r.body["meta"]["location"], "/scim/v2/Users/alice");
    assert!(r.body["meta"]["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.body[EXT]["keyIds"], json!(["alice@corp"]));
    assert_eq!(r.body[EXT]["principals"], json!(["alice"]));
    let user = e.service.get_user("alice").await.unwrap();
    assert_eq!(user.public_keys.len(), 1);
    let audit = e.service.audit_log("", None, 1).await.unwrap();
    assert_eq!(audit[0].actor, "token:okta");
    assert_eq!(audit[0].reason, "SCIM: provisioned by token:okta");

    // Created inactive: disabled, not signed off (there is nothing to end).
    let r = e
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "bob", "active": false})),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["active"]),
        (StatusCode::CREATED, &json!(false))
    );
    assert_eq!(e.signoffs().await, 0);
    // Azure-style flat extension attributes.
    let r = e
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "carol", format!("{EXT}:keyIds"): ["carol@corp"]})),
        )
        .await;
    assert_eq!(r.body[EXT]["keyIds"], json!(["carol@corp"]), "{}", r.body);
}

#[tokio::test]
async fn create_errors_are_scim_errors() {
    let e = env().await;
    e.create("alice").await;
    let cases = [
        (
            json!({"userName": "alice"}).to_string(),
            StatusCode::CONFLICT,
            "uniqueness",
        ),
        (
            json!({"schemas": [super::USER_SCHEMA]}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
        (
            json!({"userName": 42}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
        (
            json!({"userName": "<script>"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
        (
            json!({"userName": "bob", "active": "maybe"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
        (
            json!({"userName": "bob", EXT: {"keyIds": "x", "sshPublicKeys": [1]}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
        (
            json!({"userName": "bob", EXT: {"sshPublicKeys": ["ssh-ed25519 nope"]}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalidValue",
        ),
        (
            "{\"userName\": ".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalidSyntax",
        ),
        ("[]".to_owned(), StatusCode::BAD_REQUEST, "invalidSyntax"),
    ];
    for (body, status, scim_type) in cases {
        let r = e
            .call(Method::POST, "/scim/v2/Users", Some(&e.scim), Some(&body))
            .await;
        r.scim_error(status, Some(scim_type));
    }
    // A key ID that belongs to someone else.
    let r = e
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "eve", EXT: {"keyIds": ["k"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    e.scim(
        Method::POST,
        "/Users",
        Some(json!({"userName": "mallory", EXT: {"keyIds": ["k"]}})),
    )
    .await
    .scim_error(StatusCode::CONFLICT, Some("uniqueness"));
    assert_eq!(e.service.list_users().await.unwrap().len(), 2);
}

#[tokio::test]
async fn get_returns_a_user_or_a_scim_404() {
    let e = env().await;
    e.create("alice").await;
    let r = e.scim(Method::GET, "/Users/alice", None).await;
    assert_eq!(
        (r.status, &r.body["userName"]),
        (StatusCode::OK, &json!("alice"))
    );
    let r = e.scim(Method::GET, "/Users/nobody", None).await;
    r.scim_error(StatusCode::NOT_FOUND, None);
    assert!(r.detail().contains("nobody"), "{}", r.detail());
}

#[tokio::test]
async fn list_filters_and_pages() {
    let e = env().await;
    for name in ["ann", "ben", "cat", "dan", "eve"] {
        e.create(name).await;
    }
    e.patch(
        "dan",
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;

    let names = |r: &Reply| -> Vec<String> {
        r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = e
        .scim(Method::GET, "/Users?startIndex=2&count=2", None)
        .await;
    assert_eq!(r.body["schemas"], json!([super::LIST_SCHEMA]));
    assert_eq!(r.body["totalResults"], 5);
    assert_eq!(r.body["itemsPerPage"], 2);
    assert_eq!(r.body["startIndex"], 2);
    assert_eq!(names(&r), ["ben", "cat"]);
    let r = e
        .scim(Method::GET, "/Users?startIndex=5&count=10", None)
        .await;
    assert_eq!(names(&r), ["eve"]);
    let r = e
        .scim(Method::GET, "/Users?startIndex=0&count=-1", None)
        .await;
    assert_eq!(
        (
            r.body["totalResults"].clone(),
            r.body["itemsPerPage"].clone(),
            r.body["startIndex"].clone()
        ),
        (json!(5), json!(0), json!(1))
    );
    let r = e.scim(Method::GET, "/Users?startIndex=9", None).await;
    assert_eq!(
        (r.body["totalResults"].clone(), names(&r).len()),
        (json!(5), 0)
    );

    let r = e
        .scim(Method::GET, "/Users?filter=userName%20eq%20%22cat%22", None)
        .await;
    assert_eq!(
        (r.body["totalResults"].clone(), names(&r)),
        (json!(1), vec!["cat".to_owned()])
    );
    let r = e
        .scim(Method::GET, "/Users?filter=userName+eq+%22nobody%22", None)
        .await;
    assert_eq!(
        (r.status, r.body["totalResults"].clone()),
        (StatusCode::OK, json!(0))
    );
    let r = e
        .scim(Method::GET, "/Users?filter=active%20eq%20false", None)
        .await;
    assert_eq!(names(&r), ["dan"]);
    let r = e
        .scim(
            Method::GET,
            "/Users?filter=active%20eq%20true&count=1",
            None,
        )
        .await;
    assert_eq!(
        (r.body["totalResults"].clone(), names(&r)),
        (json!(4), vec!["ann".to_owned()])
    );
}

#[tokio::test]
async fn bad_filters_and_paging_are_scim_400s() {
    let e = env().await;
    for filter in [
        "userName%20sw%20%22a%22",
        "userName%20eq%20alice",
        "emails.value%20eq%20%22a%40b%22",
        "displayName%20eq%20%22x%22",
        "userName%20eq%20%22a%22%20and%20active%20eq%20true",
        "active%20eq%20%22yes%22",
        "garbage",
    ] {
        e.scim(Method::GET, &format!("/Users?filter={filter}"), None)
            .await
            .scim_error(StatusCode::BAD_REQUEST, Some("invalidFilter"));
    }
    for paging in ["count=ten", "startIndex=1.5"] {
        e.scim(Method::GET, &format!("/Users?{paging}"), None)
            .await
            .scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    }
}

#[tokio::test]
async fn patch_active_false_signs_the_person_off_and_true_re_enables() {
    let e = env().await;
    e.scim(
        Method::POST,
        "/Users",
        Some(json!({"userName": "alice", EXT: {"keyIds": ["alice@corp"]}})),
    )
    .await;
    let r = e
        .patch(
            "alice",
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["active"]),
        (StatusCode::OK, &json!(false)),
        "{}",
        r.body
    );
    let record = e.service.latest_signoff("alice").await.unwrap().unwrap();
    assert!(record.in_force);
    assert_eq!(record.actor, "token:okta");
    assert_eq!(record.reason, "SCIM: deprovisioned by token:okta");
    assert_eq!(record.key_ids, ["alice@corp"]);
    // Again: the same one sign-off.
    e.patch(
        "alice",
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    assert_eq!(e.signoffs().await, 1);

    let r = e
        .patch(
            "alice",
            json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["active"]),
        (StatusCode::OK, &json!(true)),
        "{}",
        r.body
    );
    assert!(
        !e.service
            .latest_signoff("alice")
            .await
            .unwrap()
            .unwrap()
            .in_force
    );
    let audit = e.service.audit_log("", None, 1).await.unwrap();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].reason.as_str()),
        ("user.reenable", "SCIM: reactivated by token:okta")
    );
}

#[tokio::test]
async fn patch_in_the_shapes_azure_and_okta_send() {
    let e = env().await;
    for name in ["azure", "okta", "upper"] {
        e.create(name).await;
    }
    // Azure AD: path-less, capitalised op, the boolean as a string.
    let r = e
        .patch(
            "azure",
            json!([{"op": "Replace", "value": {"active": "False"}}]),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["active"]),
        (StatusCode::OK, &json!(false)),
        "{}",
        r.body
    );
    // Okta: path-less with a boolean, alongside attributes signoff does not keep.
    let r = e
        .patch(
            "okta",
            json!([{"op": "replace", "value": {"id": "okta", "active": false, "displayName": "O. K."}}]),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["active"]),
        (StatusCode::OK, &json!(false)),
        "{}",
        r.body
    );
    // Fully qualified path.
    let r = e
        .patch(
            "upper",
            json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:active", "value": false}]),
        )
        .await;
    assert_eq!(r.body["active"], false, "{}", r.body);
    assert_eq!(e.signoffs().await, 3);
    // Attributes signoff does not keep change nothing.
    let r = e
        .patch(
            "azure",
            json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@b"},
                   {"op": "Replace", "path": "name.givenName", "value": "Az"},
                   {"op": "Replace", "path": "externalId", "value": "x"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(e.signoffs().await, 3);
}

#[tokio::test]
async fn patch_changes_the_ssh_identities() {
    let e = env().await;
    e.scim(
        Method::POST,
        "/Users",
        Some(json!({"userName": "alice", EXT: {"keyIds": ["a1"]}})),
    )
    .await;
    let r = e
        .patch(
            "alice",
            json!([
                {"op": "add", "path": format!("{EXT}:keyIds"), "value": ["a2", "a3"]},
                {"op": "remove", "path": format!("{EXT}:keyIds"), "value": [{"value": "a1"}]},
                {"op": "replace", "value": {EXT: {"sshPublicKeys": [KEY], "principals": ["alice", "ops"]}}},
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body[EXT]["keyIds"], json!(["a2", "a3"]));
    assert_eq!(r.body[EXT]["principals"], json!(["alice", "ops"]));
    assert_eq!(r.body["active"], true);
    let r = e
        .patch(
            "alice",
            json!([{"op": "remove", "path": format!("{EXT}:sshPublicKeys")}]),
        )
        .await;
    assert_eq!(r.body[EXT]["sshPublicKeys"], json!([]));
    // A key ID someone else holds.
    e.scim(
        Method::POST,
        "/Users",
        Some(json!({"userName": "bob", EXT: {"keyIds": ["b1"]}})),
    )
    .await;
    e.patch(
        "alice",
        json!([{"op": "add", "path": "keyIds", "value": ["b1"]}]),
    )
    .await
    .scim_error(StatusCode::CONFLICT, Some("uniqueness"));
}

#[tokio::test]
async fn bad_patches_are_scim_400s_and_change_nothing() {
    let e = env().await;
    e.create("alice").await;
    let replace_active = json!([{"op": "replace", "path": "active", "value": false}]);
    let cases = [
        (json!({"Operations": replace_active}), "invalidSyntax"),
        (json!({"schemas": [super::PATCH_SCHEMA]}), "invalidSyntax"),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": []}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "frobnicate", "path": "active", "value": false}]}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": ["active=false"]}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": "maybe"}]}),
            "invalidValue",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active"}]}),
            "invalidValue",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "active"}]}),
            "invalidValue",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "value": false}]}),
            "invalidValue",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "remove"}]}),
            "noTarget",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": 7, "value": 1}]}),
            "invalidPath",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "keyIds[value eq \"x\"]", "value": "y"}]}),
            "invalidPath",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "userName", "value": "mallory"}]}),
            "mutability",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "id", "value": "bob"}]}),
            "mutability",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "meta.created", "value": "x"}]}),
            "invalidPath",
        ),
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "meta", "value": {}}]}),
            "mutability",
        ),
        // A bad operation after a good one: nothing of the request is applied.
        (
            json!({"schemas": [super::PATCH_SCHEMA], "Operations": [replace_active[0], {"op": "replace", "path": "active", "value": 3}]}),
            "invalidValue",
        ),
    ];
    for (body, scim_type) in cases {
        let r = e
            .scim(Method::PATCH, "/Users/alice", Some(body.clone()))
            .await;
        r.scim_error(StatusCode::BAD_REQUEST, Some(scim_type));
    }
    e.call(
        Method::PATCH,
        "/scim/v2/Users/alice",
        Some(&e.scim),
        Some("{oops"),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));
    e.patch("nobody", replace_active)
        .await
        .scim_error(StatusCode::NOT_FOUND, None);
    assert_eq!(e.signoffs().await, 0);
    assert_eq!(
        e.service.get_user("alice").await.unwrap().status,
        UserStatus::Active
    );
}

#[tokio::test]
async fn put_replaces_what_it_names_and_can_sign_off() {
    let e = env().await;
    e.scim(
        Method::POST,
        "/Users",
        Some(json!({"userName": "alice", EXT: {"keyIds": ["a1"], "sshPublicKeys": [KEY]}})),
    )
    .await;
    let r = e
        .scim(
            Method::PUT,
            "/Users/alice",
            Some(json!({"schemas": [super::USER_SCHEMA], "userName": "alice", "active": true, EXT: {"keyIds": ["a2"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body[EXT]["keyIds"], json!(["a2"]));
    // Omitted: left as it was.
    assert_eq!(r.body[EXT]["sshPublicKeys"].as_array().unwrap().len(), 1);
    let r = e
        .scim(
            Method::PUT,
            "/Users/alice",
            Some(json!({"userName": "alice", "active": false})),
        )
        .await;
    assert_eq!(r.body["active"], false, "{}", r.body);
    assert_eq!(
        e.service
            .latest_signoff("alice")
            .await
            .unwrap()
            .unwrap()
            .key_ids,
        ["a2"]
    );

    e.scim(
        Method::PUT,
        "/Users/alice",
        Some(json!({"userName": "alicia"})),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("mutability"));
    e.scim(Method::PUT, "/Users/alice", Some(json!({"active": true})))
        .await
        .scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    e.scim(
        Method::PUT,
        "/Users/nobody",
        Some(json!({"userName": "nobody"})),
    )
    .await
    .scim_error(StatusCode::NOT_FOUND, None);
    assert_eq!(e.signoffs().await, 1);
}

#[tokio::test]
async fn delete_signs_off_hides_the_resource_and_keeps_the_person() {
    let e = env().await;
    e.scim(
        Method::POST,
        "/Users",
        Some(json!({"userName": "alice", "externalId": "00u1", EXT: {"keyIds": ["a1"]}})),
    )
    .await;
    e.create("bob").await;
    let r = e.scim(Method::DELETE, "/Users/alice", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // A real sign-off: the key ID is revoked on every host.
    let record = e.service.latest_signoff("alice").await.unwrap().unwrap();
    assert_eq!(record.reason, "SCIM: deleted by token:okta");
    assert_eq!(record.key_ids, ["a1"]);

    // RFC 7644 §3.6: gone to SCIM — GET, PUT, PATCH and DELETE are 404s, and it leaves
    // every list and filter.
    for (method, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"userName": "alice"}))),
        (
            Method::PATCH,
            Some(
                json!({"schemas": [super::PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": true}]}),
            ),
        ),
        (Method::DELETE, None),
    ] {
        e.scim(method, "/Users/alice", body)
            .await
            .scim_error(StatusCode::NOT_FOUND, None);
    }
    for query in [
        "",
        "?filter=userName%20eq%20%22alice%22",
        "?filter=id%20eq%20%22alice%22",
        "?filter=externalId%20eq%20%2200u1%22",
        "?filter=active%20eq%20false",
    ] {
        let r = e.scim(Method::GET, &format!("/Users{query}"), None).await;
        let names: Vec<&str> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap())
            .collect();
        assert!(!names.contains(&"alice"), "{query}: {}", r.body);
    }
    // The person, their sign-off and their audit trail stay.
    let alice = e.service.get_user("alice").await.unwrap();
    assert_eq!(alice.status, UserStatus::Disabled);
    assert_eq!(e.signoffs().await, 1);
    let audit = e.service.audit_log("", None, 100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "user.scim.delete" && a.target == "user:alice"),
        "{audit:?}"
    );

    // A later POST of the same userName provisions it again, with what it says: active
    // (re-enabled: the sign-off withdrawn), the new externalId and keys.
    let r = e
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "alice", "externalId": "00u2", EXT: {"keyIds": ["a2"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["externalId"], "00u2");
    assert_eq!(r.body[EXT]["keyIds"], json!(["a2"]));
    assert_eq!(r.body[EXT]["principals"], json!(["alice"]));
    let r = e.scim(Method::GET, "/Users/alice", None).await;
    assert_eq!(
        (r.status, &r.body["active"]),
        (StatusCode::OK, &json!(true))
    );
    // The earlier sign-off is still on record.
    assert_eq!(e.signoffs().await, 1);
    // Creating a live name again is a conflict.
    e.scim(Method::POST, "/Users", Some(json!({"userName": "bob"})))
        .await
        .scim_error(StatusCode::CONFLICT, Some("uniqueness"));
    e.scim(Method::DELETE, "/Users/nobody", None)
        .await
        .scim_error(StatusCode::NOT_FOUND, None);
}

/// Asserts that `alice` is as `alice_before` left her: active, the same identity sets, no
/// sign-off.
async fn unchanged(e: &Env, before: &crate::model::User) {
    let now = e.service.get_user("alice").await.unwrap();
    assert_eq!(&now, before);
    assert_eq!(e.signoffs().await, 0);
}

#[tokio::test]
async fn patch_with_the_extension_urn_as_path_changes_its_attributes() {
    let e = env().await;
    e.create("alice").await;
    // The URN alone: its sub-attributes are added (appended) or replaced.
    let r = e
        .patch(
            "alice",
            json!([{"op": "add", "path": EXT, "value": {"keyIds": ["a1"], "principals": ["ops"], "sshPublicKeys": [KEY]}}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body[EXT]["keyIds"], json!(["a1"]));
    // RFC 7644 §3.5.2.1: add appends to a multi-valued attribute.
    assert_eq!(r.body[EXT]["principals"], json!(["alice", "ops"]));
    assert_eq!(r.body[EXT]["sshPublicKeys"].as_array().unwrap().len(), 1);
    let r = e
        .patch(
            "alice",
            json!([{"op": "replace", "path": EXT, "value": {"keyIds": ["a2"]}}]),
        )
        .await;
    assert_eq!(r.body[EXT]["keyIds"], json!(["a2"]));
    // Sub-attributes the value does not name are left as they are (§3.5.2.3).
    assert_eq!(r.body[EXT]["principals"], json!(["alice", "ops"]));
    // `URN:attribute`, in any case.
    let r = e
        .patch(
            "alice",
            json!([{"op": "add", "path": format!("{}:KEYIDS", EXT.to_uppercase()), "value": "a3"}]),
        )
        .await;
    assert_eq!(r.body[EXT]["keyIds"], json!(["a2", "a3"]), "{}", r.body);
    // Adding a value that is there already does not add it twice.
    let r = e
        .patch(
            "alice",
            json!([{"op": "add", "path": format!("{EXT}:keyIds"), "value": ["a3"]}]),
        )
        .await;
    assert_eq!(r.body[EXT]["keyIds"], json!(["a2", "a3"]));
    // Removing the extension removes its values; principals fall back to the name.
    let r = e
        .patch("alice", json!([{"op": "remove", "path": EXT}]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body[EXT],
        json!({"keyIds": [], "principals": ["alice"], "sshPublicKeys": []})
    );
}

#[tokio::test]
async fn external_id_is_stored_returned_and_filterable() {
    let e = env().await;
    let r = e
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "alice", "externalId": "00u1"})),
        )
        .await;
    assert_eq!(r.body["externalId"], "00u1", "{}", r.body);
    let r = e
        .scim(
            Method::GET,
            "/Users?filter=externalId%20eq%20%2200u1%22",
            None,
        )
        .await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
    let r = e
        .patch(
            "alice",
            json!([{"op": "replace", "path": "externalId", "value": "00u2"}]),
        )
        .await;
    assert_eq!(r.body["externalId"], "00u2");
    let r = e
        .scim(
            Method::PUT,
            "/Users/alice",
            Some(json!({"userName": "alice", "externalId": "00u3"})),
        )
        .await;
    assert_eq!(r.body["externalId"], "00u3");
    let r = e
        .patch("alice", json!([{"op": "remove", "path": "externalId"}]))
        .await;
    assert!(r.body.get("externalId").is_none(), "{}", r.body);
    // A person the CLI made is a SCIM User without one.
    e.service
        .create_user(
            &Actor::cli(),
            NewUser {
                name: "bob".into(),
                ..Default::default()
            },
            "hired",
        )
        .await
        .unwrap();
    let r = e.scim(Method::GET, "/Users/bob", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("externalId").is_none(), "{}", r.body);
}

// One negative test per rejection path: each is a SCIM 400 (or the status named), and
// nothing of the request is applied.

#[tokio::test]
async fn a_misspelled_path_is_an_invalid_path_and_deprovisions_nobody() {
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    let r = e
        .patch(
            "alice",
            json!([{"op": "replace", "path": "actve", "value": false}]),
        )
        .await;
    r.scim_error(StatusCode::BAD_REQUEST, Some("invalidPath"));
    assert!(r.detail().contains("actve"), "{}", r.detail());
    unchanged(&e, &before).await;
}

#[tokio::test]
async fn a_misspelled_attribute_in_a_pathless_patch_is_an_invalid_path() {
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    e.patch(
        "alice",
        json!([{"op": "replace", "value": {"actve": false}}]),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidPath"));
    unchanged(&e, &before).await;
}

#[tokio::test]
async fn an_unknown_attribute_of_the_extension_is_an_invalid_path() {
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    for path in [
        format!("{EXT}:keyId"),
        format!("{EXT}.keyIds"),
        format!("{EXT}x"),
    ] {
        e.patch(
            "alice",
            json!([{"op": "add", "path": path, "value": ["a1"]}]),
        )
        .await
        .scim_error(StatusCode::BAD_REQUEST, Some("invalidPath"));
    }
    unchanged(&e, &before).await;
}

#[tokio::test]
async fn an_unknown_sub_attribute_in_the_extension_value_is_an_invalid_path() {
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    e.patch(
        "alice",
        json!([{"op": "add", "path": EXT, "value": {"keyIds": ["a1"], "sshKeys": ["x"]}}]),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidPath"));
    unchanged(&e, &before).await;
}

#[tokio::test]
async fn a_path_in_an_unknown_schema_is_an_invalid_path() {
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    e.patch(
        "alice",
        json!([{"op": "replace", "path": "urn:example:params:scim:schemas:extension:x:2.0:User:active", "value": false}]),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidPath"));
    unchanged(&e, &before).await;
}

#[tokio::test]
async fn an_extension_value_that_is_not_an_object_is_an_invalid_value() {
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    e.patch(
        "alice",
        json!([{"op": "replace", "path": EXT, "value": ["a1"]}]),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    unchanged(&e, &before).await;
}

#[tokio::test]
async fn an_invalid_key_under_the_extension_is_refused_by_its_scim_name() {
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    for path in [EXT.to_owned(), format!("{EXT}:sshPublicKeys")] {
        let value = if path == EXT {
            json!({"sshPublicKeys": ["ssh-ed25519 notakey"]})
        } else {
            json!(["ssh-ed25519 notakey"])
        };
        let r = e
            .patch(
                "alice",
                json!([{"op": "add", "path": path, "value": value}]),
            )
            .await;
        r.scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
        assert!(
            r.detail().contains("sshPublicKeys[0]") && !r.detail().contains("public_keys"),
            "{}",
            r.detail()
        );
    }
    unchanged(&e, &before).await;
}

#[tokio::test]
async fn a_value_of_the_wrong_type_under_the_extension_is_an_invalid_value() {
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    e.patch(
        "alice",
        json!([{"op": "add", "path": EXT, "value": {"keyIds": 7}}]),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    unchanged(&e, &before).await;
}

#[tokio::test]
async fn an_external_id_that_is_not_a_string_is_an_invalid_value() {
    let e = env().await;
    e.create("alice").await;
    e.patch(
        "alice",
        json!([{"op": "add", "path": "externalId", "value": 7}]),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    // Too long, at creation: nobody is created.
    let r = e
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "bob", "externalId": "x".repeat(2000)})),
        )
        .await;
    r.scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(r.detail().starts_with("externalId: "), "{}", r.detail());
    assert!(e.service.get_user("bob").await.is_err());
}

#[tokio::test]
async fn an_unknown_attribute_in_a_created_user_is_an_invalid_syntax() {
    let e = env().await;
    for body in [
        json!({"userName": "bob", "actve": false}),
        json!({"userName": "bob", EXT: {"keyId": ["b1"]}}),
        json!({"userName": "bob", "urn:example:extension:1.0:User": {}}),
    ] {
        e.scim(Method::POST, "/Users", Some(body))
            .await
            .scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));
    }
    assert!(e.service.get_user("bob").await.is_err());
}

#[tokio::test]
async fn an_unknown_attribute_in_a_replacement_is_an_invalid_syntax() {
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    e.scim(
        Method::PUT,
        "/Users/alice",
        Some(json!({"userName": "alice", "actve": false})),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));
    unchanged(&e, &before).await;
}

#[tokio::test]
async fn an_invalid_key_at_creation_is_refused_by_its_scim_name() {
    let e = env().await;
    let r = e
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "bob", EXT: {"sshPublicKeys": [KEY, "nope"]}})),
        )
        .await;
    r.scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(r.detail().starts_with("sshPublicKeys["), "{}", r.detail());
    let r = e
        .scim(Method::POST, "/Users", Some(json!({"userName": "<bob>"})))
        .await;
    r.scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(r.detail().starts_with("userName: "), "{}", r.detail());
}

#[tokio::test]
async fn a_body_that_is_not_json_by_its_media_type_is_a_scim_415() {
    let e = env().await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/scim/v2/Users")
        .header(header::AUTHORIZATION, format!("Bearer {}", e.scim))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(r#"{"userName":"bob"}"#))
        .unwrap();
    e.send(req)
        .await
        .scim_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, None);
    assert!(e.service.get_user("bob").await.is_err());
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_scim_413() {
    let e = env().await;
    // With a Content-Length the body limit answers before any handler runs.
    let big = format!(r#"{{"userName":"bob","x":"{}"}}"#, "x".repeat(300 * 1024));
    let r = e
        .call(Method::POST, "/scim/v2/Users", Some(&e.scim), Some(&big))
        .await;
    r.scim_error(StatusCode::PAYLOAD_TOO_LARGE, None);
    // Streamed without one, the handler's body reader refuses it.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/scim/v2/Users")
        .header(header::AUTHORIZATION, format!("Bearer {}", e.scim))
        .header(header::CONTENT_TYPE, "application/scim+json")
        .body(Body::from_stream(tokio_stream::iter([Ok::<
            _,
            std::io::Error,
        >(big)])))
        .unwrap();
    e.send(req)
        .await
        .scim_error(StatusCode::PAYLOAD_TOO_LARGE, None);
    assert!(e.service.get_user("bob").await.is_err());
}

#[tokio::test]
async fn a_path_that_does_not_decode_is_a_scim_error() {
    let e = env().await;
    let r = e
        .call(Method::GET, "/scim/v2/Users/%FF%FE", Some(&e.scim), None)
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    r.scim_error(r.status, None);
    // Under /scim/v2 but no endpoint; and the bare base.
    for path in ["/scim/v2/Users/alice/keys", "/scim/v2", "/scim/v2/"] {
        e.call(Method::GET, path, Some(&e.scim), None)
            .await
            .scim_error(StatusCode::NOT_FOUND, None);
    }
}

#[tokio::test]
async fn attributes_and_excluded_attributes_shape_reads_and_searches() {
    let e = env().await;
    e.scim(
        Method::POST,
        "/Users",
        Some(json!({"userName": "alice", "externalId": "00u1", EXT: {"keyIds": ["a1"]}})),
    )
    .await;
    let r = e
        .scim(Method::GET, "/Users/alice?attributes=externalId", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["externalId", "id", "schemas"], "{}", r.body);
    let r = e
        .scim(
            Method::GET,
            "/Users?filter=userName%20eq%20%22alice%22&excludedAttributes=active",
            None,
        )
        .await;
    let alice = &r.body["Resources"][0];
    assert!(alice.get("active").is_none(), "{alice}");
    assert_eq!(alice["userName"], "alice");

    for path in ["/.search", "/Users/.search"] {
        let r = e
            .scim(
                Method::POST,
                path,
                Some(json!({
                    "schemas": [super::SEARCH_SCHEMA],
                    "filter": "externalId eq \"00u1\"",
                    "attributes": [format!("{EXT}:keyIds")],
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(r.body["totalResults"], 1);
        assert_eq!(r.body["Resources"][0][EXT], json!({"keyIds": ["a1"]}));
        assert!(r.body["Resources"][0].get("userName").is_none());
    }
}

#[tokio::test]
async fn asking_for_attributes_and_excluding_attributes_at_once_is_an_invalid_syntax() {
    let e = env().await;
    e.create("alice").await;
    e.scim(
        Method::GET,
        "/Users/alice?attributes=userName&excludedAttributes=active",
        None,
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));
}

#[tokio::test]
async fn a_search_without_the_search_request_schema_is_an_invalid_syntax() {
    let e = env().await;
    e.scim(
        Method::POST,
        "/.search",
        Some(json!({"filter": "active eq true"})),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));
}

#[tokio::test]
async fn a_search_with_an_unknown_parameter_is_an_invalid_syntax() {
    let e = env().await;
    e.scim(
        Method::POST,
        "/.search",
        Some(json!({"schemas": [super::SEARCH_SCHEMA], "fliter": "active eq false"})),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));
}

#[tokio::test]
async fn a_search_that_asks_for_sorting_is_an_invalid_value() {
    let e = env().await;
    e.scim(
        Method::POST,
        "/Users/.search",
        Some(json!({"schemas": [super::SEARCH_SCHEMA], "sortBy": "userName"})),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
}

#[tokio::test]
async fn a_search_parameter_of_the_wrong_type_is_refused() {
    let e = env().await;
    for (body, scim_type) in [
        (json!({"startIndex": "2"}), "invalidValue"),
        (json!({"attributes": "userName"}), "invalidValue"),
        (json!({"filter": 5}), "invalidFilter"),
        (json!({"filter": "emails eq \"x\""}), "invalidFilter"),
    ] {
        let mut body = body;
        body["schemas"] = json!([super::SEARCH_SCHEMA]);
        e.scim(Method::POST, "/.search", Some(body))
            .await
            .scim_error(StatusCode::BAD_REQUEST, Some(scim_type));
    }
}

#[tokio::test]
async fn an_unknown_attribute_of_the_enterprise_extension_is_an_invalid_path() {
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let e = env().await;
    e.create("alice").await;
    let before = e.service.get_user("alice").await.unwrap();
    e.patch(
        "alice",
        json!([{"op": "replace", "path": format!("{ENTERPRISE}:active"), "value": false}]),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidPath"));
    unchanged(&e, &before).await;
    // Its real attributes are accepted (and not stored), in PATCH and POST alike.
    let r = e
        .patch(
            "alice",
            json!([{"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Ops"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = e
        .scim(
            Method::POST,
            "/Users",
            Some(json!({"userName": "bob", ENTERPRISE: {"manager": {"value": "alice"}, "costCenter": "7"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    e.scim(
        Method::POST,
        "/Users",
        Some(json!({"userName": "carol", ENTERPRISE: {"actve": false}})),
    )
    .await
    .scim_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));
}
