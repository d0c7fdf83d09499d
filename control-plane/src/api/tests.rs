//! The API over real HTTP on a loopback port.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::service::testing::{ManualClock, service};
use crate::service::{Actor, Scope};

struct Server {
    base: String,
    admin: String,
    clock: std::sync::Arc<ManualClock>,
    service: crate::service::Service,
    http: Client,
}

async fn start() -> Server {
    let (svc, clock) = service().await;
    let admin = svc.bootstrap_token().await.unwrap().unwrap().secret;
    let ca = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]));
    svc.set_user_ca(crate::service::UserCa::new(ca, Default::default()).unwrap());
    let host_ca = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[10; 32]));
    svc.set_host_ca(crate::service::HostCa::new(host_ca, 3600).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = super::router(svc.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        base: format!("http://{addr}"),
        admin,
        clock,
        service: svc,
        http: Client::new(),
    }
}

impl Server {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("/krl") || path.starts_with("/metrics") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/api/v1{path}", self.base)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.admin.clone()), body)
            .await
    }

    async fn token(&self, scopes: &[Scope], expires_at: Option<i64>) -> String {
        self.service
            .create_token(&Actor::cli(), "t", scopes, expires_at, "")
            .await
            .unwrap()
            .secret
    }
}

fn error_message(v: &Value) -> &str {
    v["error"]["message"]
        .as_str()
        .unwrap_or("<no error message>")
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT";

/// One request per operation of the OpenAPI document, in an order where each relies only
/// on earlier ones: method, path template, example path (under /api/v1), body.
fn examples() -> Vec<(&'static str, &'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/api/v1/revision", "/revision", None),
        (
            "POST",
            "/api/v1/users",
            "/users",
            Some(
                json!({"name": "alice", "key_ids": ["alice@corp"], "principals": ["alice"], "public_keys": [KEY], "reason": "hired"}),
            ),
        ),
        ("GET", "/api/v1/users", "/users", None),
        ("GET", "/api/v1/users/{name}", "/users/alice", None),
        (
            "POST",
            "/api/v1/users/{name}/certificates",
            "/users/alice/certificates",
            Some(json!({"public_key": KEY, "ttl": "1h"})),
        ),
        (
            "GET",
            "/api/v1/users/{name}/certificates",
            "/users/alice/certificates",
            None,
        ),
        (
            "PATCH",
            "/api/v1/users/{name}",
            "/users/alice",
            Some(json!({"key_ids": ["alice@corp", "alice@laptop"], "reason": "new laptop"})),
        ),
        (
            "POST",
            "/api/v1/groups",
            "/groups",
            Some(json!({"name": "web"})),
        ),
        ("GET", "/api/v1/groups", "/groups", None),
        (
            "POST",
            "/api/v1/hosts",
            "/hosts",
            Some(json!({"id": "web1", "hostname": "web1.example.com", "groups": ["web"]})),
        ),
        ("GET", "/api/v1/hosts", "/hosts", None),
        ("GET", "/api/v1/hosts/{id}", "/hosts/web1", None),
        (
            "PUT",
            "/api/v1/hosts/{id}/groups",
            "/hosts/web1/groups",
            Some(json!({"groups": ["web"], "reason": "rebalance"})),
        ),
        (
            "POST",
            "/api/v1/grants",
            "/grants",
            Some(
                json!({"user": "alice", "account": "deploy", "group": "web", "reason": "on call"}),
            ),
        ),
        ("GET", "/api/v1/grants", "/grants?user=alice", None),
        (
            "GET",
            "/api/v1/grants/{id}/approvals",
            "/grants/1/approvals",
            None,
        ),
        (
            "POST",
            "/api/v1/grants/{id}/approvals",
            "/grants/1/approvals",
            Some(json!({"signature": approval_of_grant_1()})),
        ),
        ("GET", "/api/v1/approvals", "/approvals", None),
        ("GET", "/api/v1/hosts/{id}/view", "/hosts/web1/view", None),
        (
            "GET",
            "/api/v1/hosts/{id}/delta",
            "/hosts/web1/delta?from=1",
            None,
        ),
        (
            "POST",
            "/api/v1/cas",
            "/cas",
            Some(json!({"name": "corp-ca", "public_key": KEY})),
        ),
        ("GET", "/api/v1/cas", "/cas", None),
        (
            "GET",
            "/api/v1/host-ca",
            "/host-ca?hosts=*.example.com,web1",
            None,
        ),
        (
            "POST",
            "/api/v1/revocations",
            "/revocations",
            Some(
                json!({"kind": "serial", "ca": "corp-ca", "lo": 100, "hi": 120, "reason": "stolen laptop"}),
            ),
        ),
        ("GET", "/api/v1/revocations", "/revocations", None),
        (
            "DELETE",
            "/api/v1/revocations/{id}",
            "/revocations/1?reason=mistake",
            None,
        ),
        (
            "POST",
            "/api/v1/users/{name}/disable",
            "/users/alice/disable",
            Some(json!({"reason": "left"})),
        ),
        (
            "POST",
            "/api/v1/users/{name}/enable",
            "/users/alice/enable",
            Some(json!({"reason": "rehired"})),
        ),
        (
            "POST",
            "/api/v1/users/{name}/signoff",
            "/users/alice/signoff",
            Some(json!({"reason": "left the company"})),
        ),
        (
            "GET",
            "/api/v1/users/{name}/signoff",
            "/users/alice/signoff",
            None,
        ),
        ("GET", "/api/v1/signoffs", "/signoffs", None),
        ("GET", "/api/v1/signoffs/{id}", "/signoffs/1", None),
        (
            "POST",
            "/api/v1/signoffs/{id}/approvals",
            "/signoffs/1/approvals",
            Some(json!({"signature": approval_of_reenable_1()})),
        ),
        (
            "GET",
            "/api/v1/signoffs/{id}/approvals",
            "/signoffs/1/approvals",
            None,
        ),
        (
            "POST",
            "/api/v1/users/{name}/reenable",
            "/users/alice/reenable",
            Some(json!({"reason": "rehired"})),
        ),
        (
            "DELETE",
            "/api/v1/grants/{id}",
            "/grants/1?reason=rotation",
            None,
        ),
        ("DELETE", "/api/v1/cas/{name}", "/cas/corp-ca", None),
        (
            "POST",
            "/api/v1/tokens",
            "/tokens",
            Some(json!({"name": "hr-feed", "scopes": ["signoff"]})),
        ),
        ("GET", "/api/v1/tokens", "/tokens", None),
        ("DELETE", "/api/v1/tokens/{id}", "/tokens/2", None),
        (
            "DELETE",
            "/api/v1/hosts/{id}",
            "/hosts/web1?reason=decommissioned",
            None,
        ),
        ("GET", "/api/v1/sessions", "/sessions?user=alice", None),
        (
            "GET",
            "/api/v1/sessions/events",
            "/sessions/events?follow=false",
            None,
        ),
        (
            "GET",
            "/api/v1/sessions/{host}/{id}",
            "/sessions/web1/4242:1",
            None,
        ),
        (
            "POST",
            "/api/v1/sessions/{host}/{id}/kill",
            "/sessions/web1/4242:1/kill",
            Some(json!({"reason": "compromised laptop"})),
        ),
        (
            "POST",
            "/api/v1/users/{name}/kill-sessions",
            "/users/alice/kill-sessions",
            Some(json!({"reason": "compromised laptop"})),
        ),
        ("GET", "/api/v1/audit", "/audit?limit=10", None),
        ("GET", "/api/v1/audit/verify", "/audit/verify", None),
        ("GET", "/api/v1/events", "/events?since=0&limit=10", None),
        ("GET", "/api/v1/alerts", "/alerts?unacknowledged=true", None),
        (
            "POST",
            "/api/v1/alerts/{cursor}/acknowledge",
            "/alerts/{ALERT}/acknowledge?reason=seen",
            None,
        ),
        ("GET", "/api/v1/openapi.json", "/openapi.json", None),
    ]
}

/// An approver's signature of re-enabling alice from the example sign-off (1).
fn approval_of_reenable_1() -> String {
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[5; 32]));
    let bytes = crate::service::reenable_bytes(1, "alice").unwrap();
    key.sign(
        signoff_proto::approvals::NAMESPACE,
        ssh_key::HashAlg::Sha512,
        &bytes,
    )
    .unwrap()
    .to_pem(ssh_key::LineEnding::LF)
    .unwrap()
}

/// An approver's signature of the example grant (1: alice as deploy on web, no expiry).
fn approval_of_grant_1() -> String {
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[5; 32]));
    let bytes = crate::service::grant_bytes(&crate::model::Grant {
        id: 1,
        user: "alice".into(),
        account: "deploy".into(),
        group: "web".into(),
        not_after: None,
    })
    .unwrap();
    key.sign(
        signoff_proto::approvals::NAMESPACE,
        ssh_key::HashAlg::Sha512,
        &bytes,
    )
    .unwrap()
    .to_pem(ssh_key::LineEnding::LF)
    .unwrap()
}

/// Sends an example request for every operation of the OpenAPI document: the server
/// answers with one of the documented success statuses and a body with the fields the
/// response schema requires, and refuses a request without a token on every secured
/// operation.
#[tokio::test]
async fn every_documented_operation_behaves_as_documented() {
    let s = start().await;
    // The session examples need a session and an order-signing key.
    s.service.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[1; 32]),
    ));
    let session = signoff_proto::v1::Session {
        id: "4242:1".into(),
        account: "deploy".into(),
        key_id: "alice@corp".into(),
        serial: 7,
        source_address: "127.0.0.1".into(),
        source_port: 50000,
        started_at: 1_800_000_000,
        ..Default::default()
    };
    s.service.session_started("web1", &session).await.unwrap();
    // The session raised an alert (its key names nobody yet): the acknowledge example's.
    let alert = s.service.list_alerts(true, 1).await.unwrap()[0].cursor;
    let (status, doc) = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut covered: Vec<_> = examples()
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    covered.sort();
    assert_eq!(
        documented, covered,
        "an operation without an example, or the reverse"
    );
    for (method, path, example, body) in examples() {
        let example = &example.replace("{ALERT}", &alert.to_string());
        let op = &doc["paths"][path][method.to_lowercase()];
        let method: Method = method.parse().unwrap();
        let secured = !op["security"].as_array().unwrap().is_empty();
        if secured {
            let (status, v) = s.call(method.clone(), example, None, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without token: {v}"
            );
        }
        let (status, v) = s.admin(method.clone(), example, body).await;
        assert!(status.is_success(), "{method} {example}: {status} {v}");
        let response = &op["responses"][status.as_str()];
        assert!(
            response.is_object(),
            "{method} {path}: {status} is not documented"
        );
        let schema = &response["content"]["application/json"]["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => schema,
        };
        for field in schema["required"].as_array().into_iter().flatten() {
            assert!(
                v.get(field.as_str().unwrap()).is_some(),
                "{path}: response lacks {field}: {v}"
            );
        }
    }
}

#[tokio::test]
async fn no_token_is_refused() {
    let s = start().await;
    let (status, v) = s.call(Method::GET, "/users", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&v), "unauthorized");
    assert!(v["error"]["message"].as_str().unwrap().contains("Bearer"));
}

#[tokio::test]
async fn a_malformed_authorization_header_is_refused() {
    let s = start().await;
    let resp = s
        .http
        .get(format!("{}/api/v1/users", s.base))
        .header("Authorization", format!("Basic {}", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_token_is_refused() {
    let s = start().await;
    let (status, v) = s.call(Method::GET, "/users", Some("so_forged"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["message"], "unknown token");
}

/// A token that cannot be checked (the database is out of reach) is a server error the
/// client may retry, never a 401 that tells it its token is bad.
#[tokio::test]
async fn a_token_checked_while_the_store_is_out_of_reach_is_a_500_not_a_401() {
    let s = start().await;
    s.service.store().close().await;
    let (status, v) = s.admin(Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(error_code(&v), "internal");
}

#[tokio::test]
async fn the_wrong_scope_is_forbidden() {
    let s = start().await;
    let read = s.token(&[Scope::Read], None).await;
    let (status, _) = s.call(Method::GET, "/users", Some(&read), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = s
        .call(
            Method::POST,
            "/users",
            Some(&read),
            Some(json!({"name": "mallory"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&v), "forbidden");
    assert!(v["error"]["message"].as_str().unwrap().contains("write"));
    // Nothing was created.
    assert!(s.service.list_users().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = start().await;
    let now = s.service.now();
    let t = s.token(&[Scope::Read], Some(now + 10)).await;
    assert_eq!(
        s.call(Method::GET, "/users", Some(&t), None).await.0,
        StatusCode::OK
    );
    s.clock.0.store(now + 10, Ordering::SeqCst);
    let (status, v) = s.call(Method::GET, "/users", Some(&t), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["message"], "token expired");
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let s = start().await;
    let t = s
        .service
        .create_token(&Actor::cli(), "ci", &[Scope::Read], None, "")
        .await
        .unwrap();
    s.service
        .revoke_token(&Actor::cli(), t.info.id, "leaked")
        .await
        .unwrap();
    let (status, v) = s.call(Method::GET, "/users", Some(&t.secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["message"], "token revoked");
}

#[tokio::test]
async fn a_bad_key_is_invalid_and_names_the_field() {
    let s = start().await;
    let (status, v) = s
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": "alice", "public_keys": ["ssh-ed25519 AAAAnope"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&v), "invalid");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("public_keys[0]:"),
        "{v}"
    );
}

#[tokio::test]
async fn a_duplicate_user_is_a_conflict() {
    let s = start().await;
    let body = json!({"name": "alice"});
    assert_eq!(
        s.admin(Method::POST, "/users", Some(body.clone())).await.0,
        StatusCode::CREATED
    );
    let (status, v) = s.admin(Method::POST, "/users", Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&v), "conflict");
}

#[tokio::test]
async fn an_unknown_host_group_is_not_found() {
    let s = start().await;
    let (status, v) = s
        .admin(
            Method::POST,
            "/hosts",
            Some(json!({"id": "web1", "groups": ["nope"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["message"], "host group \"nope\" does not exist");
}

#[tokio::test]
async fn malformed_json_and_unknown_fields_are_bad_requests() {
    let s = start().await;
    let resp = s
        .http
        .post(format!("{}/api/v1/users", s.base))
        .bearer_auth(&s.admin)
        .header("Content-Type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (status, v) = s
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": "alice", "admin": true})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("admin"),
        "{v}"
    );
}

#[tokio::test]
async fn unknown_endpoints_are_json_404s() {
    let s = start().await;
    let (status, v) = s.admin(Method::GET, "/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&v), "not_found");
}

#[tokio::test]
async fn a_revision_that_does_not_exist_is_not_found_and_a_malformed_one_a_bad_request() {
    let s = start().await;
    s.admin(Method::POST, "/groups", Some(json!({"name": "web"})))
        .await;
    s.admin(
        Method::POST,
        "/hosts",
        Some(json!({"id": "web1", "groups": ["web"]})),
    )
    .await;
    let (status, _) = s
        .admin(Method::GET, "/hosts/web1/view?revision=999", None)
        .await;
    // Schema-valid (an integer from 0), so not a 400: the view asked for is not there.
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = s
        .admin(Method::GET, "/hosts/web1/delta?from=1&to=0", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(
        error_message(&v).contains("from: must not be after to"),
        "{v}"
    );
    let (status, _) = s
        .admin(Method::GET, "/hosts/web1/view?revision=abc", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_krl_endpoint_serves_the_revocation_set() {
    let s = start().await;
    let ca = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT";
    s.admin(
        Method::POST,
        "/cas",
        Some(json!({"name": "corp", "public_key": ca})),
    )
    .await;
    let (status, _) = s
        .admin(
            Method::POST,
            "/revocations",
            Some(json!({"kind": "serial", "ca": "corp", "lo": 7, "hi": 9})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    s.admin(
        Method::POST,
        "/revocations",
        Some(json!({"kind": "key_id", "key_id": "bob@corp"})),
    )
    .await;
    let krl_token = s.token(&[Scope::Krl], None).await;
    let bytes = s
        .http
        .get(format!("{}/krl", s.base))
        .bearer_auth(&krl_token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let krl = signoff_proto::krl::Krl::decode(&bytes).unwrap();
    let sections: Vec<_> = krl.certs().collect();
    assert_eq!(sections.len(), 2);
    assert_eq!(sections[0].1.key_ids(), &[b"bob@corp".to_vec()]);
    assert_eq!(sections[1].1.serials()[0].lo, 7);
    assert_eq!(krl.version(), s.service.revision() as u64);
    let resp = s
        .http
        .get(format!("{}/krl?ca=unknown", s.base))
        .bearer_auth(&krl_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn metrics_count_requests_and_the_revision() {
    let s = start().await;
    s.admin(Method::POST, "/users", Some(json!({"name": "alice"})))
        .await;
    s.service
        .session_started(
            "web1",
            &signoff_proto::v1::Session {
                id: "1:1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("signoff_revision 1"), "{text}");
    assert!(
        text.contains(
            "signoff_http_requests_total{method=\"POST\",route=\"/api/v1/users\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("signoff_users{status=\"active\"} 1"),
        "{text}"
    );
    assert!(text.contains("signoff_agent_reports_total 1"), "{text}");
    assert!(
        text.contains(
            "signoff_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/users\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("# TYPE signoff_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("signoff_agent_report_commits_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn every_change_is_audited_under_the_token_name() {
    let s = start().await;
    s.admin(
        Method::POST,
        "/users",
        Some(json!({"name": "alice", "reason": "hired"})),
    )
    .await;
    let (_, log) = s
        .admin(Method::GET, "/audit?filter=user.create", None)
        .await;
    let row = &log[0];
    assert_eq!(row["actor"], "token:admin");
    assert_eq!(row["target"], "user:alice");
    assert_eq!(row["reason"], "hired");
    let (_, v) = s.admin(Method::GET, "/audit/verify", None).await;
    assert!(v["broken"].is_null(), "{v}");
}

#[tokio::test]
async fn an_audit_page_out_of_range_is_a_422_naming_the_parameter() {
    let s = start().await;
    for (query, name) in [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=1001", "limit"),
        ("before=-5", "before"),
    ] {
        let (status, v) = s.admin(Method::GET, &format!("/audit?{query}"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {v}");
        assert_eq!(v["error"]["code"], "invalid", "{query}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(name), "{query}: {message}");
    }
    for query in ["limit=1", "limit=1000", "before=0"] {
        let (status, v) = s.admin(Method::GET, &format!("/audit?{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{query}: {v}");
    }
}

#[tokio::test]
async fn a_session_search_with_a_bad_source_or_time_range_is_a_422_naming_it() {
    let s = start().await;
    for (query, name) in [
        ("started_after=-1", "started_after"),
        ("started_before=-1", "started_before"),
        ("started_after=200&started_before=100", "started_before"),
        ("started_after=100&started_before=100", "started_before"),
        ("source=", "source"),
        ("source=host.example.com", "source"),
    ] {
        let (status, v) = s
            .admin(Method::GET, &format!("/sessions?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(name), "{query}: {message}");
    }
    for query in [
        "source=10.0.0.1&started_after=100&started_before=200",
        "source=::1&state=ended",
    ] {
        let (status, v) = s
            .admin(Method::GET, &format!("/sessions?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {v}");
    }
}

async fn start_with_person() -> Server {
    let s = start().await;
    s.service.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[1; 32]),
    ));
    let (status, v) = s
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": "mallory", "key_ids": ["mallory@corp"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s
}

#[tokio::test]
async fn signing_off_needs_the_signoff_scope() {
    let s = start_with_person().await;
    let write = s.token(&[Scope::Read, Scope::Write], None).await;
    let (status, v) = s
        .call(
            Method::POST,
            "/users/mallory/signoff",
            Some(&write),
            Some(json!({"reason": "left"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("signoff"));
    let (status, _) = s.admin(Method::GET, "/users/mallory/signoff", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was signed off");
    assert_eq!(
        s.service.get_user("mallory").await.unwrap().status,
        crate::model::UserStatus::Active
    );
}

#[tokio::test]
async fn a_signoff_without_a_reason_or_for_nobody_is_refused() {
    let s = start_with_person().await;
    let (status, v) = s
        .admin(Method::POST, "/users/mallory/signoff", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = s
        .admin(
            Method::POST,
            "/users/mallory/signoff",
            Some(json!({"reason": " "})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, v) = s
        .admin(
            Method::POST,
            "/users/nobody/signoff",
            Some(json!({"reason": "left"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(s.service.list_signoffs().await.unwrap().is_empty());
}

#[tokio::test]
async fn signing_off_twice_returns_the_first_record_and_reenable_is_explicit() {
    let s = start_with_person().await;
    let (status, first) = s
        .admin(
            Method::POST,
            "/users/mallory/signoff",
            Some(json!({"reason": "left"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = s
        .admin(
            Method::POST,
            "/users/mallory/signoff",
            Some(json!({"reason": "left"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    // Plain enable does not undo a sign-off.
    let (status, v) = s
        .admin(
            Method::POST,
            "/users/mallory/enable",
            Some(json!({"reason": "oops"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = s
        .admin(
            Method::POST,
            "/users/mallory/reenable",
            Some(json!({"reason": "rehired"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active");
    let (status, v) = s.admin(Method::GET, "/users/mallory/signoff", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["in_force"], false);
}

// ---- strict bodies: what the OpenAPI document refuses, the server refuses ---------------

#[tokio::test]
async fn a_json_array_is_not_an_object_body_and_creates_no_user() {
    let s = start().await;
    // Derived Deserialize would read ["bob"] as a CreateUser with name "bob".
    let (status, v) = s.admin(Method::POST, "/users", Some(json!(["bob"]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(error_code(&v), "bad_request");
    assert!(error_message(&v).contains("must be a JSON object"), "{v}");
    let (status, _) = s.admin(Method::GET, "/users/bob", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_scalar_body_is_refused() {
    let s = start().await;
    let (status, v) = s.admin(Method::POST, "/groups", Some(json!("web"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(error_message(&v).contains("must be a JSON object"), "{v}");
}

#[tokio::test]
async fn null_for_a_field_that_is_not_nullable_is_refused() {
    let s = start().await;
    let (status, v) = s
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": "bob", "key_ids": null})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(error_message(&v).contains("null"), "{v}");
    let (status, v) = s
        .admin(
            Method::POST,
            "/groups",
            Some(json!({"name": "web", "reason": null})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn null_in_a_patch_is_refused_not_taken_as_keep() {
    let s = start().await;
    let (status, _) = s
        .admin(Method::POST, "/users", Some(json!({"name": "bob"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, v) = s
        .admin(
            Method::PATCH,
            "/users/bob",
            Some(json!({"principals": null})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = s.admin(Method::GET, "/users/bob", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["principals"], json!(["bob"]));
}

#[tokio::test]
async fn null_where_declared_nullable_is_taken() {
    let s = start().await;
    s.admin(Method::POST, "/users", Some(json!({"name": "bob"})))
        .await;
    s.admin(Method::POST, "/groups", Some(json!({"name": "web"})))
        .await;
    let (status, v) = s
        .admin(
            Method::POST,
            "/grants",
            Some(json!({"user": "bob", "account": "deploy", "group": "web", "not_after": null})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["not_after"], Value::Null);
}

#[tokio::test]
async fn an_unknown_field_of_a_revocation_is_refused() {
    let s = start().await;
    // `reason` beside a flattened Revocation took any field once.
    let (status, v) = s
        .admin(
            Method::POST,
            "/revocations",
            Some(json!({"kind": "key_id", "key_id": "bob@corp", "lo": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(error_message(&v).contains("unknown field"), "{v}");
    let (_, list) = s.admin(Method::GET, "/revocations", None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn an_unknown_revocation_kind_is_refused() {
    let s = start().await;
    let (status, v) = s
        .admin(
            Method::POST,
            "/revocations",
            Some(json!({"kind": "everything", "key_id": "bob@corp"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn an_integral_float_is_an_integer_as_json_schema_says() {
    let s = start().await;
    s.admin(Method::POST, "/users", Some(json!({"name": "bob"})))
        .await;
    s.admin(Method::POST, "/groups", Some(json!({"name": "web"})))
        .await;
    let (status, v) = s
        .admin(
            Method::POST,
            "/grants",
            Some(json!({"user": "bob", "account": "deploy", "group": "web", "not_after": 4102444800.0})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["not_after"], json!(4102444800_i64));
}

#[tokio::test]
async fn a_fractional_number_for_an_integer_is_refused() {
    let s = start().await;
    s.admin(Method::POST, "/users", Some(json!({"name": "bob"})))
        .await;
    s.admin(Method::POST, "/groups", Some(json!({"name": "web"})))
        .await;
    let (status, v) = s
        .admin(
            Method::POST,
            "/grants",
            Some(json!({"user": "bob", "account": "deploy", "group": "web", "not_after": 4102444800.5})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn a_token_cannot_revoke_itself() {
    let s = start().await;
    let (_, tokens) = s.admin(Method::GET, "/tokens", None).await;
    let id = tokens[0]["id"].as_i64().expect("the admin token's id");
    let (status, v) = s
        .admin(Method::DELETE, &format!("/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(error_message(&v).contains("cannot revoke itself"), "{v}");
    // Still good.
    let (status, _) = s.admin(Method::GET, "/tokens", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_bad_reason_is_refused_when_the_status_does_not_change() {
    let s = start().await;
    s.admin(Method::POST, "/users", Some(json!({"name": "bob"})))
        .await;
    // bob is active already: nothing is committed, and the reason is still checked.
    let (status, v) = s
        .admin(
            Method::POST,
            "/users/bob/enable",
            Some(json!({"reason": "\u{84}"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(error_message(&v).starts_with("reason:"), "{v}");
}

#[tokio::test]
async fn a_bad_reason_is_refused_when_there_is_no_session_to_kill() {
    let s = start().await;
    s.admin(Method::POST, "/users", Some(json!({"name": "bob"})))
        .await;
    let (status, v) = s
        .admin(
            Method::POST,
            "/users/bob/kill-sessions",
            Some(json!({"reason": "a\nb"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

#[tokio::test]
async fn the_document_declares_the_statuses_the_issue_found_missing() {
    let s = start().await;
    let (_, doc) = s.call(Method::GET, "/openapi.json", None, None).await;
    let responses = |method: &str, path: &str| doc["paths"][path][method]["responses"].clone();
    let signoff = responses("post", "/api/v1/users/{name}/signoff");
    assert!(signoff["200"].is_object() && signoff["201"].is_object());
    assert!(responses("post", "/api/v1/grants")["404"].is_object());
    for path in [
        "/api/v1/hosts/{id}",
        "/api/v1/grants/{id}",
        "/api/v1/cas/{name}",
        "/api/v1/revocations/{id}",
        "/api/v1/tokens/{id}",
    ] {
        let r = responses("delete", path);
        assert!(r["422"].is_object(), "DELETE {path}: no 422");
        let params = doc["paths"][path]["delete"]["parameters"]
            .as_array()
            .expect("parameters");
        assert!(
            params.iter().any(|p| p["in"] == "path"),
            "DELETE {path}: no path parameter"
        );
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "reason" && p["in"] == "query"),
            "DELETE {path}: no ?reason="
        );
    }
    for status in ["400", "401", "403", "409", "413", "415", "422"] {
        assert!(
            responses("post", "/api/v1/users")[status].is_object(),
            "POST /users: no {status}"
        );
    }
}

/// An `issue` token gets a certificate for a person's registered key; once the person is
/// signed off it gets a 403 `refused` that says why, and nothing is issued.
#[tokio::test]
async fn certificates_are_issued_to_an_issue_token_and_refused_after_a_signoff() {
    let s = start().await;
    s.service.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[1; 32]),
    ));
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT";
    let (status, v) = s
        .admin(
            Method::POST,
            "/users",
            Some(json!({"name": "carol", "public_keys": [key]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let issue = s.token(&[Scope::Issue], None).await;
    let body = json!({"public_key": key, "ttl": "1h"});
    let (status, v) = s
        .call(
            Method::POST,
            "/users/carol/certificates",
            Some(&issue),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["serial"], 1);
    assert_eq!(v["user"], "carol");
    assert_eq!(v["valid_before"].as_i64().unwrap(), s.service.now() + 3600);
    assert!(
        v["certificate"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{v}"
    );

    let write = s.token(&[Scope::Write], None).await;
    let (status, v) = s
        .call(
            Method::POST,
            "/users/carol/certificates",
            Some(&write),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(error_code(&v), "forbidden");

    let (status, v) = s
        .call(
            Method::POST,
            "/users/carol/certificates",
            Some(&issue),
            Some(json!({"public_key": key, "ttl": "25h"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(error_code(&v), "refused");

    let (status, v) = s
        .admin(
            Method::POST,
            "/users/carol/signoff",
            Some(json!({"reason": "left"})),
        )
        .await;
    assert!(status.is_success(), "{v}");
    let (status, v) = s
        .call(
            Method::POST,
            "/users/carol/certificates",
            Some(&issue),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(error_code(&v), "refused");
    assert_eq!(
        v["error"]["message"],
        "\"carol\" is signed off; no certificate is issued"
    );
    let (_, list) = s
        .admin(Method::GET, "/users/carol/certificates", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn session_history_comes_in_pages_linked_by_a_cursor() {
    let s = start().await;
    for i in 0..5u64 {
        let session = signoff_proto::v1::Session {
            id: format!("{i}:1"),
            started_at: 1_800_000_000 + i,
            ..Default::default()
        };
        s.service.session_started("web1", &session).await.unwrap();
    }
    let mut url = format!("{}/api/v1/sessions?host=web1&limit=2", s.base);
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let resp = s.http.get(&url).bearer_auth(&s.admin).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let link = resp
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Vec<Value> = resp.json().await.unwrap();
        assert!(page.len() <= 2);
        ids.extend(page.iter().map(|v| v["id"].as_str().unwrap().to_owned()));
        pages += 1;
        let Some(link) = link else { break };
        let next = link
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("{link}"));
        assert!(next.contains("host=web1&limit=2&after="), "{next}");
        url = format!("{}{next}", s.base);
    }
    assert_eq!(pages, 3);
    assert_eq!(
        ids,
        ["4:1", "3:1", "2:1", "1:1", "0:1"],
        "newest first, once each"
    );

    for (query, status) in [
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=10001", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=many", StatusCode::BAD_REQUEST),
        ("after=not-a-cursor", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (got, body) = s
            .admin(Method::GET, &format!("/sessions?{query}"), None)
            .await;
        assert_eq!(got, status, "{query}: {body}");
    }
}

#[tokio::test]
async fn the_host_ca_line_is_served_and_bad_patterns_are_refused() {
    let srv = start().await;
    let (status, v) = srv
        .call(
            Method::GET,
            "/host-ca?hosts=*.example.com",
            Some(&srv.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let key = v["public_key"].as_str().unwrap();
    assert!(key.starts_with("ssh-ed25519 "), "{v}");
    assert_eq!(
        v["known_hosts_line"],
        format!("@cert-authority *.example.com {key}")
    );
    let (status, v) = srv
        .call(Method::GET, "/host-ca", Some(&srv.admin), None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["known_hosts_line"], format!("@cert-authority * {key}"));
    // A pattern with a space or a line break would forge the rest of the line.
    for bad in ["a%20b", "a%0Assh-ed25519", ""] {
        let (status, v) = srv
            .call(
                Method::GET,
                &format!("/host-ca?hosts={bad}"),
                Some(&srv.admin),
                None,
            )
            .await;
        assert_eq!(status, 422, "{bad}: {v}");
    }
}
