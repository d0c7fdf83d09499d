//! The dashboard on two replicas of one database, behind a load balancer without
//! stickiness (issue 18): each request may reach either router, and a login, a logout, a
//! session's CSRF token and failed logins count on both. Runs on SQLite (two pools on one
//! file) and, under `SIGNOFF_TEST_POSTGRES`, on PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt as _;

use crate::config::Config;
use crate::service::Service;
use crate::service::testing::ManualClock;
use crate::store;

const T0: i64 = 1_800_000_000;

struct Replicas {
    a: Router,
    b: Router,
    clock: Arc<ManualClock>,
    password: String,
    _dir: tempfile::TempDir,
}

async fn replicas() -> Replicas {
    let dir = tempfile::tempdir().unwrap();
    let url = store::test_url(dir.path()).await;
    let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
    let open = || async {
        Service::new(store::open(&url).await.unwrap(), clock.clone())
            .await
            .unwrap()
    };
    let (a, b) = (open().await, open().await);
    let password = a.bootstrap_operator().await.unwrap().unwrap().password;
    let config = Config::from_toml("", None).unwrap();
    Replicas {
        a: crate::dashboard::router(a, &config),
        b: crate::dashboard::router(b, &config),
        clock,
        password,
        _dir: dir,
    }
}

struct Res {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Res {
    /// `name=value` of the `Set-Cookie` named `name`.
    fn cookie(&self, name: &str) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next().map(str::to_owned))
            .unwrap_or_else(|| panic!("no {name} cookie: {:?}", self.headers))
    }

    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a csrf field") + marker.len();
        let end = self.body[start..].find('"').expect("closing quote") + start;
        self.body[start..end].to_owned()
    }
}

async fn send(app: &Router, method: &str, path: &str, cookie: Option<&str>, form: &str) -> Res {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    if method == "POST" {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(form.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    Res {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The login page of `app`: its double-submit cookie and the form's token.
async fn login_page(app: &Router) -> (String, String) {
    let page = send(app, "GET", "/login", None, "").await;
    assert_eq!(page.status, StatusCode::OK);
    (page.cookie("signoff_login"), page.csrf())
}

async fn try_login(app: &Router, login: &(String, String), password: &str) -> Res {
    let (cookie, token) = login;
    let form = format!("name=admin&password={password}&csrf={token}&next=/sessions");
    send(app, "POST", "/login", Some(cookie), &form).await
}

#[tokio::test]
async fn a_login_on_one_replica_works_on_the_other_and_a_logout_on_it_ends_it_on_both() {
    let r = replicas().await;
    let login = login_page(&r.a).await;
    let res = try_login(&r.a, &login, &r.password).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let session = res.cookie("signoff_session");

    // Replica B knows the session, and its page carries the session's CSRF token.
    let page = send(&r.b, "GET", "/sessions", Some(&session), "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let token = page.csrf();
    assert_eq!(
        send(&r.a, "GET", "/sessions", Some(&session), "")
            .await
            .csrf(),
        token,
        "one token on every replica"
    );
    let forged = send(&r.a, "POST", "/logout", Some(&session), "csrf=forged").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // The token B rendered logs out on A; the session then ends on B too.
    let res = send(
        &r.a,
        "POST",
        "/logout",
        Some(&session),
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers.get(header::LOCATION).unwrap(), "/login");
    for app in [&r.b, &r.a] {
        let res = send(app, "GET", "/sessions", Some(&session), "").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "logged out everywhere");
        assert!(
            res.headers
                .get(header::LOCATION)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("/login"),
        );
    }
}

#[tokio::test]
async fn an_idle_session_is_refused_by_both_replicas() {
    let r = replicas().await;
    let login = login_page(&r.b).await;
    let session = try_login(&r.b, &login, &r.password)
        .await
        .cookie("signoff_session");
    // Used on A at 29 minutes: still live for B at 58.
    r.clock.0.fetch_add(29 * 60, Ordering::SeqCst);
    let res = send(&r.a, "GET", "/sessions", Some(&session), "").await;
    assert_eq!(res.status, StatusCode::OK);
    r.clock.0.fetch_add(29 * 60, Ordering::SeqCst);
    let res = send(&r.b, "GET", "/sessions", Some(&session), "").await;
    assert_eq!(res.status, StatusCode::OK);
    r.clock.0.fetch_add(30 * 60, Ordering::SeqCst);
    for app in [&r.a, &r.b] {
        let res = send(app, "GET", "/sessions", Some(&session), "").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "expired everywhere");
    }
}

#[tokio::test]
async fn failed_logins_on_one_replica_delay_the_next_try_on_the_other_capped() {
    let r = replicas().await;
    let login_a = login_page(&r.a).await;
    let login_b = login_page(&r.b).await;
    // Three free failures, alternating replicas, then a fourth on A.
    for (app, login) in [(&r.a, &login_a), (&r.b, &login_b)].repeat(2) {
        let res = try_login(app, login, "guess").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    // The right password on B waits for the failures counted on A and B.
    let res = try_login(&r.b, &login_b, &r.password).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers.get(header::RETRY_AFTER).unwrap(), "1");

    // Many more failures, each after its wait, alternating: the wait doubles and stops at
    // five minutes, on whichever replica asks.
    let mut waits = Vec::new();
    for n in 0..12 {
        let (app, login) = if n % 2 == 0 {
            (&r.a, &login_a)
        } else {
            (&r.b, &login_b)
        };
        let res = try_login(app, login, "guess").await;
        let wait: i64 = res
            .headers
            .get(header::RETRY_AFTER)
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        waits.push(wait);
        r.clock.0.fetch_add(wait, Ordering::SeqCst);
        let res = try_login(app, login, "guess").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "after the wait");
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);

    // Never a lockout: after the wait, the right password gets in on either.
    let res = try_login(&r.a, &login_a, &r.password).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    r.clock.0.fetch_add(300, Ordering::SeqCst);
    let res = try_login(&r.a, &login_a, &r.password).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    // And the success forgot the failures for B too.
    let res = try_login(&r.b, &login_b, "guess").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = try_login(&r.b, &login_b, &r.password).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
}
