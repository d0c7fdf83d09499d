//! Who may do what, and what every refusal looks like: the authorization matrix (every
//! route of the table × every kind of token), then one test per rejection path. The
//! router is the real one over a real store, driven with `oneshot`.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

use super::{Access, HttpOptions, Metrics, router_with_metrics, routes};
use crate::service::testing::{ManualClock, service};
use crate::service::{Actor, Scope, Service};

struct Res {
    status: StatusCode,
    headers: header::HeaderMap,
    body: Value,
}

async fn send(app: &Router, req: Request<Body>) -> Res {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let streaming = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = if streaming {
        Value::Null
    } else {
        let bytes = to_bytes(res.into_body(), 4 << 20).await.expect("body");
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Res {
        status,
        headers,
        body,
    }
}

fn request(method: Method, path: &str, auth: Option<&str>, body: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_owned())),
        None => req.body(Body::empty()),
    }
    .expect("request")
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

async fn setup(options: HttpOptions) -> (Service, Router) {
    let (svc, _) = setup_with_clock(options).await;
    let app = app(svc.clone(), options);
    (svc, app)
}

fn app(svc: Service, options: HttpOptions) -> Router {
    router_with_metrics(svc, Arc::new(Metrics::default()), options)
}

async fn setup_with_clock(_options: HttpOptions) -> (Service, Arc<ManualClock>) {
    let (svc, clock) = service().await;
    svc.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[1; 32]),
    ));
    (svc, clock)
}

async fn token(svc: &Service, scopes: &[Scope]) -> String {
    svc.create_token(&Actor::cli(), "t", scopes, None, "")
        .await
        .expect("token")
        .secret
}

/// A token with `other` and `scim`, as could be made before `scim` became exclusive: the
/// service no longer makes one, so it is written to the store directly.
async fn legacy_scim_token(svc: &Service, other: Scope) -> String {
    let name = format!("legacy-{}", other.as_str());
    let t = svc
        .create_token(&Actor::cli(), &name, &[other], None, "")
        .await
        .expect("token")
        .secret;
    // `other` is a scope name and `name` is made of one: neither holds a quote.
    svc.store()
        .exec_for_test(&format!(
            "UPDATE api_tokens SET scopes = '{},scim' WHERE name = '{name}'",
            other.as_str()
        ))
        .await;
    t
}

/// The kinds of caller the matrix tries, and what each holds.
enum Kind {
    /// No usable credentials: refused with 401.
    Unauthenticated,
    /// An authenticated token with these scopes.
    Token(Vec<Scope>),
}

async fn callers(svc: &Service, clock: &ManualClock) -> Vec<(String, Option<String>, Kind)> {
    use Kind::{Token, Unauthenticated};
    use Scope::Scim;
    // Every scope but `scim`, from the one list of scopes: a new scope joins the matrix.
    let all: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != Scim).collect();
    let revoked = svc
        .create_token(&Actor::cli(), "revoked", &all, None, "")
        .await
        .expect("token");
    svc.revoke_token(&Actor::cli(), revoked.info.id, "test")
        .await
        .expect("revoke");
    let expired = svc
        .create_token(&Actor::cli(), "expired", &all, Some(svc.now() + 1), "")
        .await
        .expect("token");
    let mut out = vec![
        ("none".to_owned(), None, Unauthenticated),
        (
            "not bearer".to_owned(),
            Some("Basic dXNlcjpwdw==".to_owned()),
            Unauthenticated,
        ),
        (
            "unknown".to_owned(),
            Some(bearer("so_not-a-token")),
            Unauthenticated,
        ),
        (
            "revoked".to_owned(),
            Some(bearer(&revoked.secret)),
            Unauthenticated,
        ),
        (
            "expired".to_owned(),
            Some(bearer(&expired.secret)),
            Unauthenticated,
        ),
    ];
    // Every combination of the scopes a token can carry together (each single one among
    // them), and `scim` alone.
    let mut sets: Vec<Vec<Scope>> = (1u32..1 << all.len())
        .map(|mask| {
            all.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, s)| *s)
                .collect()
        })
        .collect();
    sets.push(vec![Scim]);
    for set in sets {
        let secret = token(svc, &set).await;
        out.push((format!("{set:?}"), Some(bearer(&secret)), Token(set)));
    }
    // `scim` with each other scope, as tokens made before it became exclusive may be.
    for other in &all {
        let secret = legacy_scim_token(svc, *other).await;
        out.push((
            format!("legacy [{other:?}, Scim]"),
            Some(bearer(&secret)),
            Token(vec![*other, Scim]),
        ));
    }
    // Let the expired token expire (its expiry is a second after now).
    clock.0.fetch_add(2, std::sync::atomic::Ordering::SeqCst);
    out
}

/// A concrete path for a template: names become `x`, numeric ids a number nobody has.
fn example_path(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{id}" if !template.starts_with("/api/v1/hosts") => "999999",
            s if s.starts_with('{') => "x",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The status the matrix expects, in words for the failure message.
fn expected(access: Access, kind: &Kind) -> &'static str {
    match (access, kind) {
        (Access::Public, _) => "served",
        (Access::Scope(_), Kind::Unauthenticated) => "401",
        (Access::Scope(_), Kind::Token(scopes)) if scopes.contains(&Scope::Scim) => "403",
        (Access::Scope(needed), Kind::Token(scopes)) if scopes.contains(&needed) => "served",
        (Access::Scope(_), Kind::Token(_)) => "403",
    }
}

/// Every route of the table × every kind of caller. Requests with a body carry a broken
/// one, so a refusal that came after the body was read would show as 400, not 401/403,
/// and an authorized caller's request reaches the handler, which answers 400. "Served"
/// without a body means the request reached its handler: any status but 401 and 403
/// (the handler's own answer, e.g. 404 for the made-up names).
async fn check_matrix(options: HttpOptions) {
    let (svc, clock) = setup_with_clock(options).await;
    let app = app(svc.clone(), options);
    let callers = callers(&svc, &clock).await;
    let table = routes(options);
    assert!(table.len() >= 40, "only {} routes", table.len());
    for route in &table {
        let path = example_path(route.path);
        let body = matches!(route.method, Method::POST | Method::PUT | Method::PATCH)
            .then_some("{\"broken\": ");
        for (name, auth, kind) in &callers {
            let req = request(route.method.clone(), &path, auth.as_deref(), body);
            let res = send(&app, req).await;
            let want = expected(route.access, kind);
            let what = format!(
                "{} {} as {name}: got {} {}",
                route.method, route.path, res.status, res.body
            );
            match want {
                // Authorized, the handler reads the broken body and says so.
                "served" if body.is_some() => {
                    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{what}");
                    assert_eq!(res.body["error"]["code"], "bad_request", "{what}");
                }
                "served" => assert!(
                    res.status != StatusCode::UNAUTHORIZED && res.status != StatusCode::FORBIDDEN,
                    "{what}; expected it served"
                ),
                "401" => {
                    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{what}");
                    assert_eq!(res.body["error"]["code"], "unauthorized", "{what}");
                    let challenge = res.headers.get(header::WWW_AUTHENTICATE);
                    assert!(
                        challenge.is_some_and(|v| v.as_bytes().starts_with(b"Bearer ")),
                        "{what}: WWW-Authenticate {challenge:?}"
                    );
                }
                _ => {
                    assert_eq!(res.status, StatusCode::FORBIDDEN, "{what}");
                    assert_eq!(res.body["error"]["code"], "forbidden", "{what}");
                }
            }
        }
    }
}

#[tokio::test]
async fn every_route_answers_every_kind_of_caller_as_documented() {
    check_matrix(HttpOptions::default()).await;
}

#[tokio::test]
async fn with_a_public_krl_and_metrics_elsewhere_the_matrix_still_holds() {
    check_matrix(HttpOptions {
        krl_public: true,
        metrics: false,
    })
    .await;
}

/// The table is the whole surface: a method a path does not list is a 405 (no handler is
/// hidden beside the table), and the OpenAPI document lists exactly the table's `/api/v1`
/// operations with the same scopes.
#[tokio::test]
async fn the_route_table_is_the_whole_api_and_matches_the_openapi_document() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let admin = bearer(&token(&svc, &Scope::ALL[..5]).await);
    let table = routes(HttpOptions::default());
    for route in &table {
        let path = example_path(route.path);
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if table
                .iter()
                .any(|r| r.path == route.path && r.method == method)
            {
                continue;
            }
            let res = send(&app, request(method.clone(), &path, Some(&admin), None)).await;
            assert_eq!(
                res.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {}: {}",
                route.path,
                res.body
            );
            assert_eq!(res.body["error"]["code"], "method_not_allowed");
        }
    }

    let doc = serde_json::to_value(super::openapi::document()).expect("document");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            // The scope is the security requirement's one role: `[{"bearer": [SCOPE]}]`,
            // or `[]` for a public operation.
            let security = op["security"]
                .as_array()
                .expect("security on every operation");
            let scope = match security.as_slice() {
                [] => None,
                [req] => Some(req["bearer"][0].as_str().expect("a scope").to_owned()),
                _ => panic!("{method} {path}: more than one security requirement"),
            };
            if scope.is_some() {
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path}: no 401"
                );
                assert!(
                    op["responses"]["403"].is_object(),
                    "{method} {path}: no 403"
                );
            }
            documented.push((method.to_uppercase(), path.clone(), scope));
        }
    }
    documented.sort();
    let mut served: Vec<_> = table
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/"))
        .map(|r| {
            let scope = match r.access {
                Access::Public => None,
                Access::Scope(s) => Some(s.as_str().to_owned()),
            };
            (r.method.to_string(), r.path.to_owned(), scope)
        })
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

// ---- one test per rejection path -----------------------------------------------------

#[tokio::test]
async fn a_write_token_cannot_manage_tokens() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let write = bearer(&token(&svc, &[Scope::Read, Scope::Write]).await);
    let body = r#"{"name":"mine","scopes":["signoff","scim"]}"#;
    let res = send(
        &app,
        request(Method::POST, "/api/v1/tokens", Some(&write), Some(body)),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert!(
        res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin")
    );
    let res = send(
        &app,
        request(Method::GET, "/api/v1/tokens", Some(&write), None),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(
        svc.list_tokens().await.unwrap().len(),
        1,
        "nothing was made"
    );
}

#[tokio::test]
async fn a_token_cannot_mint_a_scope_it_does_not_hold() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let admin = bearer(&token(&svc, &[Scope::Read, Scope::Admin]).await);
    for scopes in [r#"["signoff"]"#, r#"["read","write"]"#, r#"["scim"]"#] {
        let body = format!(r#"{{"name":"mine","scopes":{scopes}}}"#);
        let res = send(
            &app,
            request(Method::POST, "/api/v1/tokens", Some(&admin), Some(&body)),
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{scopes}: {}", res.body);
        assert!(
            res.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not hold"),
            "{}",
            res.body
        );
    }
    let body = r#"{"name":"reader","scopes":["read"]}"#;
    let res = send(
        &app,
        request(Method::POST, "/api/v1/tokens", Some(&admin), Some(body)),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    // The admin CLI, on the server itself, is not bound by the rule.
    svc.create_token(&Actor::cli(), "hr", &[Scope::Signoff], None, "")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_cannot_mint_one_that_outlives_it() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let until = svc.now() + 3600;
    let admin = svc
        .create_token(
            &Actor::cli(),
            "t",
            &[Scope::Read, Scope::Admin],
            Some(until),
            "",
        )
        .await
        .unwrap()
        .secret;
    for expires in ["null".to_owned(), (until + 1).to_string()] {
        let body = format!(r#"{{"name":"mine","scopes":["read"],"expires_at":{expires}}}"#);
        let res = send(
            &app,
            request(
                Method::POST,
                "/api/v1/tokens",
                Some(&bearer(&admin)),
                Some(&body),
            ),
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{expires}: {}", res.body);
    }
}

#[tokio::test]
async fn a_revocation_made_by_a_signoff_can_be_withdrawn_only_by_reenabling() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let admin = bearer(&token(&svc, &[Scope::Read, Scope::Write, Scope::Signoff]).await);
    let res = send(
        &app,
        request(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(r#"{"name":"mallory","key_ids":["mallory@corp"]}"#),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let res = send(
        &app,
        request(
            Method::POST,
            "/api/v1/users/mallory/signoff",
            Some(&admin),
            Some(r#"{"reason":"left"}"#),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let signoff = res.body["id"].as_i64().unwrap();
    let revocations = svc.list_revocations().await.unwrap();
    assert_eq!(revocations.len(), 1);
    let id = revocations[0].id;

    let res = send(
        &app,
        request(
            Method::DELETE,
            &format!("/api/v1/revocations/{id}?reason=oops"),
            Some(&admin),
            None,
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    let message = res.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("sign-off #{signoff}")) && message.contains("mallory"),
        "{message}"
    );
    assert_eq!(
        svc.list_revocations().await.unwrap().len(),
        1,
        "still in force"
    );

    let res = send(
        &app,
        request(
            Method::POST,
            "/api/v1/users/mallory/reenable",
            Some(&admin),
            Some(r#"{"reason":"rehired"}"#),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(svc.list_revocations().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_revocation_a_signoff_relies_on_is_kept_and_outlives_the_reenable() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let admin = bearer(&token(&svc, &[Scope::Read, Scope::Write, Scope::Signoff]).await);
    for (path, body) in [
        (
            "/api/v1/users",
            r#"{"name":"mallory","key_ids":["mallory@corp"]}"#,
        ),
        (
            "/api/v1/revocations",
            r#"{"kind":"key_id","key_id":"mallory@corp","reason":"laptop stolen"}"#,
        ),
        ("/api/v1/users/mallory/signoff", r#"{"reason":"left"}"#),
    ] {
        let res = send(&app, request(Method::POST, path, Some(&admin), Some(body))).await;
        assert_eq!(res.status, StatusCode::CREATED, "{path}: {}", res.body);
    }
    let id = svc.list_revocations().await.unwrap()[0].id;
    let delete = || {
        request(
            Method::DELETE,
            &format!("/api/v1/revocations/{id}"),
            Some(&admin),
            None,
        )
    };
    assert_eq!(send(&app, delete()).await.status, StatusCode::CONFLICT);
    let res = send(
        &app,
        request(
            Method::POST,
            "/api/v1/users/mallory/reenable",
            Some(&admin),
            Some(r#"{"reason":"rehired"}"#),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // The admin's own revocation was not the sign-off's to withdraw …
    assert_eq!(svc.list_revocations().await.unwrap().len(), 1);
    // … and with the sign-off over, the admin may withdraw it.
    assert_eq!(send(&app, delete()).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_wrong_scope_with_a_bad_body_is_forbidden_not_a_bad_request() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let read = bearer(&token(&svc, &[Scope::Read]).await);
    for (path, body) in [
        ("/api/v1/users", "{not json"),
        ("/api/v1/users/x/signoff", r#"{"unknown": 1}"#),
        ("/api/v1/tokens", &"x".repeat(1000)),
    ] {
        let res = send(&app, request(Method::POST, path, Some(&read), Some(body))).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}: {}", res.body);
    }
    // The query is not read either.
    let res = send(
        &app,
        request(
            Method::DELETE,
            "/api/v1/grants/1?bogus=%FF",
            Some(&read),
            None,
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
}

#[tokio::test]
async fn a_scim_token_opens_nothing_under_api_v1() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let scim = bearer(&token(&svc, &[Scope::Scim]).await);
    let legacy = bearer(&legacy_scim_token(&svc, Scope::Read).await);
    for auth in [&scim, &legacy] {
        for path in ["/api/v1/users", "/api/v1/revision", "/krl"] {
            let res = send(&app, request(Method::GET, path, Some(auth), None)).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}: {}", res.body);
        }
    }
    let res = send(
        &app,
        request(Method::GET, "/api/v1/users", Some(&legacy), None),
    )
    .await;
    assert!(
        res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/scim/v2 only"),
        "{}",
        res.body
    );
    // And a scim token is still a SCIM token.
    let res = send(
        &app,
        request(Method::GET, "/scim/v2/Users", Some(&scim), None),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

#[tokio::test]
async fn the_krl_needs_a_krl_token_unless_configured_public() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let res = send(&app, request(Method::GET, "/krl", None, None)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = send(&app, request(Method::GET, "/krl?ca=probe", None, None)).await;
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "CA names cannot be probed"
    );
    let read = bearer(&token(&svc, &[Scope::Read]).await);
    let res = send(&app, request(Method::GET, "/krl", Some(&read), None)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let krl = bearer(&token(&svc, &[Scope::Krl]).await);
    let res = send(&app, request(Method::GET, "/krl", Some(&krl), None)).await;
    assert_eq!(res.status, StatusCode::OK);
    // Krl opens nothing else.
    let res = send(
        &app,
        request(Method::GET, "/api/v1/revocations", Some(&krl), None),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let (_, public) = setup(HttpOptions {
        krl_public: true,
        ..Default::default()
    })
    .await;
    let res = send(&public, request(Method::GET, "/krl", None, None)).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_labels_stay_bounded_whatever_clients_send() {
    let (_, app) = setup(HttpOptions::default()).await;
    for i in 0..300 {
        let method = Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        send(
            &app,
            request(method, &format!("/api/v1/users/u{i}"), None, None),
        )
        .await;
        send(
            &app,
            request(Method::GET, &format!("/nowhere/{i}"), None, None),
        )
        .await;
        send(
            &app,
            request(Method::GET, &format!("/api/v1/users/u{i}"), None, None),
        )
        .await;
    }
    let res = app
        .clone()
        .oneshot(request(Method::GET, "/metrics", None, None))
        .await
        .unwrap();
    let text =
        String::from_utf8(to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("signoff_http_requests_total{"))
        .collect();
    assert!(series.len() <= 5, "{series:#?}");
    assert!(!text.contains("MADEUP") && !text.contains("/u1") && !text.contains("/nowhere"));
    assert!(
        text.contains(r#"method="other",route="/api/v1/users/{name}""#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched""#), "{text}");
}

#[tokio::test]
async fn metrics_on_their_own_listener_leave_the_api_listener() {
    let (svc, app) = setup(HttpOptions {
        metrics: false,
        ..Default::default()
    })
    .await;
    let res = send(&app, request(Method::GET, "/metrics", None, None)).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let own = super::metrics_router(svc, Arc::new(Metrics::default()));
    let res = own
        .oneshot(request(Method::GET, "/metrics", None, None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let secret = token(&svc, &[Scope::Read]).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {secret}");
        let res = send(
            &app,
            request(Method::GET, "/api/v1/revision", Some(&auth), None),
        )
        .await;
        assert_eq!(res.status, StatusCode::OK, "{scheme}");
    }
    let res = send(
        &app,
        request(
            Method::GET,
            "/api/v1/revision",
            Some(&format!("Bearerx {secret}")),
            None,
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    // SCIM reads the header the same way.
    let scim = token(&svc, &[Scope::Scim]).await;
    let auth = format!("bearer {scim}");
    let res = send(
        &app,
        request(Method::GET, "/scim/v2/Users", Some(&auth), None),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

#[tokio::test]
async fn a_401_names_the_bearer_scheme() {
    let (_, app) = setup(HttpOptions::default()).await;
    let res = send(&app, request(Method::GET, "/api/v1/users", None, None)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers.get(header::WWW_AUTHENTICATE).unwrap(),
        "Bearer realm=\"signoff\""
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_json_413() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let write = bearer(&token(&svc, &[Scope::Write]).await);
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(super::MAX_BODY));
    let res = send(
        &app,
        request(Method::POST, "/api/v1/users", Some(&write), Some(&big)),
    )
    .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(res.body["error"]["code"], "too_large");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_a_json_413() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let write = bearer(&token(&svc, &[Scope::Write]).await);
    // No Content-Length: the limit is found while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64).map(|_| Ok(vec![b' '; 16 * 1024])).collect();
    let body = Body::from_stream(tokio_stream::iter(chunks));
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/users")
        .header(header::AUTHORIZATION, &write)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let res = send(&app, req).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(res.body["error"]["code"], "too_large");
}

#[tokio::test]
async fn a_scim_body_over_the_limit_is_a_scim_error() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let scim = bearer(&token(&svc, &[Scope::Scim]).await);
    let big = "a".repeat(super::MAX_BODY + 1);
    let res = send(
        &app,
        request(Method::POST, "/scim/v2/Users", Some(&scim), Some(&big)),
    )
    .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(res.body["status"], "413", "{}", res.body);
}

#[tokio::test]
async fn a_query_that_is_not_utf8_is_a_400() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let read = bearer(&token(&svc, &[Scope::Read]).await);
    for query in ["user=%FF", "user=%C3", "us%FFer=x", "user=%G1", "user=%4"] {
        let res = send(
            &app,
            request(
                Method::GET,
                &format!("/api/v1/grants?{query}"),
                Some(&read),
                None,
            ),
        )
        .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}: {}", res.body);
        assert_eq!(res.body["error"]["code"], "bad_request");
    }
    let res = send(
        &app,
        request(Method::GET, "/api/v1/grants?user=%C3%A9", Some(&read), None),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "é is fine: {}", res.body);
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_json_400() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let read = bearer(&token(&svc, &[Scope::Read]).await);
    let res = send(
        &app,
        request(Method::GET, "/api/v1/users/%FF", Some(&read), None),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn a_json_body_without_its_content_type_is_a_415_json_error() {
    let (svc, app) = setup(HttpOptions::default()).await;
    let write = bearer(&token(&svc, &[Scope::Write]).await);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/groups")
        .header(header::AUTHORIZATION, &write)
        .body(Body::from(r#"{"name":"web"}"#))
        .unwrap();
    let res = send(&app, req).await;
    // 415, as the OpenAPI document says of every operation with a body.
    assert_eq!(
        res.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        res.body
    );
    assert_eq!(res.body["error"]["code"], "unsupported_media_type");
    assert!(
        res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type"),
        "{}",
        res.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_repeats_of_a_signoff_make_exactly_one() {
    // A store on disk with the server's pool of connections: the in-memory test store has
    // one connection, which serializes reads behind writes and would hide the race.
    let tmp = tempfile::tempdir().unwrap();
    let pool = crate::store::open(&crate::store::test_url(tmp.path()).await)
        .await
        .unwrap();
    let svc = Service::new(pool, Arc::new(crate::service::SystemClock))
        .await
        .unwrap();
    svc.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[1; 32]),
    ));
    let app = app(svc.clone(), HttpOptions::default());
    let admin = bearer(&token(&svc, &[Scope::Write, Scope::Signoff]).await);
    let res = send(
        &app,
        request(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(r#"{"name":"mallory","key_ids":["mallory@corp"]}"#),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            let admin = admin.clone();
            tokio::spawn(async move {
                send(
                    &app,
                    request(
                        Method::POST,
                        "/api/v1/users/mallory/signoff",
                        Some(&admin),
                        Some(r#"{"reason":"left"}"#),
                    ),
                )
                .await
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = Vec::new();
    for t in tasks {
        let res = t.await.unwrap();
        match res.status {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            s => panic!("{s}: {}", res.body),
        }
        ids.push(res.body["id"].clone());
    }
    assert_eq!(created, 1);
    assert!(ids[0].is_i64(), "{ids:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "one record: {ids:?}");
}
