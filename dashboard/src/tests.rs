//! Router-level tests: the whole router, driven with `oneshot`, over an in-memory
//! backend that records the actions it is asked for. The end-to-end tests in `tests/`
//! run the same router inside the real control plane with a real browser.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tokio::sync::mpsc;
use tower::ServiceExt as _;

use crate::backend::*;
use crate::{DashboardConfig, router};

const NOW: i64 = 1_800_000_000;
const XSS: &str = "<script>alert(1)</script>";

#[derive(Debug, Default)]
struct State {
    operators: Vec<(Operator, String)>,
    /// Web sessions by id, and failed logins by (name, address), as the control plane's
    /// store keeps them (it hashes the ids).
    web_sessions: HashMap<String, WebSession>,
    login_failures: HashMap<(String, Option<IpAddr>), LoginFailures>,
    /// The store fails every session and login-failure call.
    store_fails: bool,
    sessions: Vec<Session>,
    calls: Vec<String>,
    /// Listed after `web-1` and `mallory`.
    more_hosts: Vec<Host>,
    more_people: Vec<Person>,
}

/// An in-memory backend: operators `admin`, `op` and `viewer` (password = name + "-pw"),
/// one host and one session whose hostname and key ID try to inject a script.
#[derive(Debug, Clone)]
pub(crate) struct Fake {
    state: Arc<Mutex<State>>,
    clock: Arc<AtomicI64>,
}

impl Fake {
    pub(crate) fn new() -> Self {
        let op = |name: &str, role| {
            (
                Operator {
                    name: name.to_owned(),
                    role,
                    created_at: NOW,
                    disabled_at: None,
                },
                format!("{name}-pw"),
            )
        };
        let state = State {
            operators: vec![
                op("admin", Role::Admin),
                op("op", Role::Operator),
                op("viewer", Role::Viewer),
            ],
            sessions: vec![Session {
                host_id: "web-1".into(),
                id: "1234".into(),
                account: "deploy".into(),
                user: Some("mallory".into()),
                key_id: XSS.into(),
                serial: 7,
                source_address: "127.0.0.1".into(),
                source_port: 40000,
                started_at: NOW - 60,
                tty: "pts/0".into(),
                state: "live".into(),
                lingering: vec![],
                ended_at: None,
            }],
            calls: Vec::new(),
            more_hosts: Vec::new(),
            more_people: Vec::new(),
            ..Default::default()
        };
        Fake {
            state: Arc::new(Mutex::new(state)),
            clock: Arc::new(AtomicI64::new(NOW)),
        }
    }

    /// From now on the store fails (or works again).
    pub(crate) fn fail_store(&self, fails: bool) {
        self.state.lock().unwrap().store_fails = fails;
    }

    /// The names failed logins are counted under.
    pub(crate) fn stored_failure_names(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .login_failures
            .keys()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The state, or the store's failure.
    fn store(&self) -> BackendResult<std::sync::MutexGuard<'_, State>> {
        let state = self.state.lock().unwrap();
        if state.store_fails {
            return Err(BackendError::Internal("store error".into()));
        }
        Ok(state)
    }

    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    fn call(&self, what: String) {
        self.state.lock().unwrap().calls.push(what);
    }

    fn check(&self, by: &Operator, needed: Role) -> BackendResult<()> {
        if by.role >= needed {
            Ok(())
        } else {
            Err(BackendError::Forbidden("role".into()))
        }
    }
}

impl Backend for Fake {
    fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }
    fn revision(&self) -> i64 {
        5
    }
    async fn authenticate(&self, name: &str, password: &str) -> BackendResult<Option<Operator>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .operators
            .iter()
            .find(|(o, p)| o.name == name && p == password && o.disabled_at.is_none())
            .map(|(o, _)| o.clone()))
    }
    async fn operator(&self, name: &str) -> BackendResult<Option<Operator>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .operators
            .iter()
            .find(|(o, _)| o.name == name && o.disabled_at.is_none())
            .map(|(o, _)| o.clone()))
    }
    async fn hosts(&self) -> BackendResult<Vec<Host>> {
        let mut hosts = vec![self.host("web-1").await?];
        hosts.extend(self.state.lock().unwrap().more_hosts.iter().cloned());
        Ok(hosts)
    }
    async fn host(&self, id: &str) -> BackendResult<Host> {
        if id != "web-1" {
            return Err(BackendError::NotFound(format!(
                "host {id:?} does not exist"
            )));
        }
        Ok(Host {
            id: "web-1".into(),
            hostname: XSS.into(),
            groups: vec!["web".into()],
            online: true,
            acked_revision: 4,
            agent_version: Some("0.1.0".into()),
            last_contact: Some(NOW - 5),
            cert_not_after: Some(NOW + 86_400),
        })
    }
    async fn sessions(&self, filter: &SessionFilter) -> BackendResult<Vec<Session>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .sessions
            .iter()
            .filter(|s| filter.host.as_ref().is_none_or(|h| *h == s.host_id))
            .filter(|s| filter.user.is_none() || filter.user == s.user)
            .cloned()
            .collect())
    }
    /// The live sessions and one ended one, newest first; a first page has the cursor
    /// `page-2`, whose page has none; the cursor `forged` is refused as the control plane
    /// refuses one it did not make.
    async fn session_history(
        &self,
        filter: &HistoryFilter,
        after: Option<&str>,
        limit: u32,
    ) -> BackendResult<HistoryPage> {
        self.call(format!("history {filter:?} after={after:?} limit={limit}"));
        if after == Some("forged") {
            return Err(BackendError::Invalid(
                "after: is not the cursor of a page of sessions".into(),
            ));
        }
        let mut sessions = self.sessions(&SessionFilter::default()).await?;
        sessions.push(Session {
            host_id: "web-1".into(),
            id: "99".into(),
            account: "root".into(),
            user: Some("mallory".into()),
            key_id: "mallory@corp".into(),
            serial: 0,
            source_address: "192.0.2.7".into(),
            source_port: 50000,
            started_at: NOW - 3600,
            tty: String::new(),
            state: "ended".into(),
            lingering: vec![],
            ended_at: Some(NOW - 1800),
        });
        Ok(HistoryPage {
            sessions,
            next: after.is_none().then(|| "page-2".to_owned()),
        })
    }
    async fn logins_per_hour(&self, _now: i64) -> BackendResult<Vec<u64>> {
        let mut counts = vec![0; 24];
        counts[23] = 1;
        counts[21] = 1;
        Ok(counts)
    }
    async fn people(&self) -> BackendResult<Vec<Person>> {
        let mut people = vec![self.person("mallory").await?];
        people.extend(self.state.lock().unwrap().more_people.iter().cloned());
        Ok(people)
    }
    async fn person(&self, name: &str) -> BackendResult<Person> {
        if name != "mallory" {
            return Err(BackendError::NotFound(format!(
                "user {name:?} does not exist"
            )));
        }
        Ok(Person {
            name: "mallory".into(),
            active: true,
            signed_off: false,
            key_ids: vec![XSS.into()],
            public_keys: vec![],
            principals: vec!["mallory".into()],
            grants: vec![Grant {
                account: "deploy".into(),
                group: "web".into(),
                not_after: None,
            }],
        })
    }
    async fn signoffs(&self) -> BackendResult<Vec<Signoff>> {
        Ok(vec![self.signoff(1).await?])
    }
    async fn approvals(&self) -> BackendResult<Vec<PendingApproval>> {
        Ok(vec![PendingApproval {
            grant_id: 7,
            user: "mallory".into(),
            account: "root".into(),
            group: "web".into(),
            not_after: None,
            bytes: format!(
                "signoff grant approval v1\ngrant: 7\nperson: mallory\naccount: root\nhost-group: {XSS}\nnot-after: never\n"
            ),
            sign_command:
                "ssh-keygen -Y sign -n signoff-approval -f ~/.ssh/id_ed25519 grant-7.approval"
                    .into(),
            approvals: vec![ApprovalMark {
                fingerprint: "SHA256:abc".into(),
                submitted_by: "token:ops".into(),
                at: NOW - 5,
            }],
        }])
    }
    async fn reenables(&self) -> BackendResult<Vec<PendingReenable>> {
        Ok(vec![PendingReenable {
            signoff_id: 3,
            user: "mallory".into(),
            reenabled: true,
            bytes: "signoff re-enable approval v1\nsignoff: 3\nperson: mallory\n".into(),
            sign_command:
                "ssh-keygen -Y sign -n signoff-approval -f ~/.ssh/id_ed25519 reenable-3.approval"
                    .into(),
            approvals: vec![ApprovalMark {
                fingerprint: "SHA256:def".into(),
                submitted_by: "token:hr".into(),
                at: NOW - 5,
            }],
        }])
    }
    async fn signoff(&self, id: i64) -> BackendResult<Signoff> {
        if id != 1 {
            return Err(BackendError::NotFound(format!(
                "sign-off {id} does not exist"
            )));
        }
        Ok(Signoff {
            id: 1,
            user: "mallory".into(),
            reason: XSS.into(),
            actor: "operator:op".into(),
            created_at: NOW - 10,
            completed_at: None,
            in_force: true,
            hosts: vec![SignoffHost {
                host: "web-1".into(),
                state: SignoffHostState::Pending,
                confirmed_at: None,
                killed_sessions: vec![],
                last_error: None,
            }],
        })
    }
    async fn latest_signoff(&self, _user: &str) -> BackendResult<Option<Signoff>> {
        Ok(None)
    }
    async fn audit(
        &self,
        _filter: &str,
        _before: Option<i64>,
        _limit: i64,
    ) -> BackendResult<Vec<AuditEntry>> {
        Ok(vec![AuditEntry {
            seq: 1,
            at: NOW,
            actor: "operator:op".into(),
            action: "session.kill".into(),
            target: XSS.into(),
            reason: String::new(),
        }])
    }
    async fn verify_audit(&self) -> BackendResult<AuditCheck> {
        Ok(AuditCheck {
            rows: 1,
            broken: None,
        })
    }
    async fn operators(&self) -> BackendResult<Vec<Operator>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .operators
            .iter()
            .map(|(o, _)| o.clone())
            .collect())
    }
    async fn certificates(&self, user: &str) -> BackendResult<Vec<Certificate>> {
        if user != "mallory" {
            return Ok(Vec::new());
        }
        let revoked = self
            .calls()
            .iter()
            .any(|c| c.starts_with("revoke-certificate mallory/42 "));
        Ok(vec![Certificate {
            serial: 42,
            key_fingerprint: "SHA256:abc".into(),
            principals: vec!["mallory".into()],
            valid_after: NOW - 60,
            valid_before: NOW + 8 * 3600,
            revoked,
        }])
    }
    async fn revoke_certificate(
        &self,
        by: &Operator,
        user: &str,
        serial: u64,
    ) -> BackendResult<()> {
        self.check(by, Role::Operator)?;
        if user != "mallory" || serial != 42 {
            return Err(BackendError::NotFound(format!("no certificate {serial}")));
        }
        self.call(format!("revoke-certificate {user}/{serial} by {}", by.name));
        Ok(())
    }
    async fn kill_session(&self, by: &Operator, host: &str, id: &str) -> BackendResult<()> {
        self.check(by, Role::Operator)?;
        self.call(format!("kill {host}/{id} by {}", by.name));
        Ok(())
    }
    async fn kill_person_sessions(&self, by: &Operator, user: &str) -> BackendResult<usize> {
        self.check(by, Role::Operator)?;
        self.call(format!("kill-all {user} by {}", by.name));
        Ok(1)
    }
    async fn sign_off(&self, by: &Operator, user: &str, reason: &str) -> BackendResult<i64> {
        self.check(by, Role::Operator)?;
        self.call(format!("signoff {user} ({reason}) by {}", by.name));
        Ok(1)
    }
    async fn reenable(&self, by: &Operator, user: &str, reason: &str) -> BackendResult<()> {
        self.check(by, Role::Admin)?;
        self.call(format!("reenable {user} ({reason}) by {}", by.name));
        Ok(())
    }
    async fn create_operator(
        &self,
        by: &Operator,
        name: &str,
        role: Role,
    ) -> BackendResult<String> {
        self.check(by, Role::Admin)?;
        self.call(format!("create-operator {name} {role} by {}", by.name));
        Ok("generated-password".into())
    }
    async fn set_operator_role(&self, by: &Operator, name: &str, role: Role) -> BackendResult<()> {
        self.check(by, Role::Admin)?;
        if name == "admin" && role != Role::Admin {
            return Err(BackendError::Conflict(
                "admin is the last enabled admin; make another admin first".into(),
            ));
        }
        self.call(format!("role {name} {role} by {}", by.name));
        Ok(())
    }
    async fn disable_operator(&self, by: &Operator, name: &str) -> BackendResult<()> {
        self.check(by, Role::Admin)?;
        let mut state = self.state.lock().unwrap();
        for (o, _) in state.operators.iter_mut().filter(|(o, _)| o.name == name) {
            o.disabled_at = Some(NOW);
        }
        state.calls.push(format!("disable {name} by {}", by.name));
        Ok(())
    }
    async fn feed(&self, _limit: usize) -> BackendResult<Vec<FeedEntry>> {
        Ok(vec![
            FeedEntry {
                at: NOW - 30,
                refused: true,
                host: "web-1".into(),
                account: "root".into(),
                person: Some("mallory".into()),
                source: "203.0.113.9".into(),
                reason: "revoked".into(),
            },
            FeedEntry {
                at: NOW - 60,
                refused: false,
                host: "web-1".into(),
                account: "deploy".into(),
                person: None,
                source: "127.0.0.1".into(),
                reason: String::new(),
            },
        ])
    }
    async fn timeline(&self, name: &str) -> BackendResult<Vec<TimelineEntry>> {
        Ok(vec![
            TimelineEntry {
                at: NOW - 30,
                what: "refused".into(),
                detail: format!("root on web-1 from 203.0.113.9 (revoked) {XSS}"),
            },
            TimelineEntry {
                at: NOW - 40,
                what: "user.signoff".into(),
                detail: format!("by operator:admin: {name} left"),
            },
        ])
    }
    async fn open_alerts(&self) -> BackendResult<Vec<AlertEntry>> {
        let acked = self
            .state
            .lock()
            .unwrap()
            .calls
            .iter()
            .any(|c| c.starts_with("ack 41 "));
        Ok(if acked {
            Vec::new()
        } else {
            vec![AlertEntry {
                cursor: 41,
                at: NOW - 30,
                rule: "signed_off_attempt".into(),
                summary: format!("signed-off person mallory tried to log in {XSS}"),
            }]
        })
    }
    async fn acknowledge_alert(&self, by: &Operator, cursor: i64) -> BackendResult<()> {
        self.check(by, Role::Operator)?;
        self.call(format!("ack {cursor} by {}", by.name));
        Ok(())
    }
    fn changes(&self) -> mpsc::Receiver<Change> {
        let (tx, rx) = mpsc::channel(4);
        let _ = tx.try_send(Change::Sessions);
        // Keep the sender alive as long as the receiver, like a real subscription.
        tokio::spawn(async move { tx.closed().await });
        rx
    }
    async fn create_web_session(
        &self,
        id: &str,
        session: &WebSession,
        lifetime: SessionLifetime,
    ) -> BackendResult<()> {
        let mut state = self.store()?;
        state
            .web_sessions
            .retain(|_, s| lifetime.is_live(s, session.created_at));
        state.web_sessions.insert(id.to_owned(), session.clone());
        Ok(())
    }
    async fn web_session(
        &self,
        id: &str,
        now: i64,
        lifetime: SessionLifetime,
    ) -> BackendResult<Option<WebSession>> {
        let mut state = self.store()?;
        Ok(state
            .web_sessions
            .get_mut(id)
            .filter(|s| lifetime.is_live(s, now))
            .map(|s| {
                s.last_seen = s.last_seen.max(now);
                s.clone()
            }))
    }
    async fn web_session_is_live(
        &self,
        id: &str,
        now: i64,
        lifetime: SessionLifetime,
    ) -> BackendResult<bool> {
        let state = self.store()?;
        Ok(state
            .web_sessions
            .get(id)
            .is_some_and(|s| lifetime.is_live(s, now)))
    }
    async fn end_web_session(&self, id: &str) -> BackendResult<()> {
        self.store()?.web_sessions.remove(id);
        Ok(())
    }
    async fn login_failures(
        &self,
        name: &str,
        ip: Option<IpAddr>,
    ) -> BackendResult<Option<LoginFailures>> {
        let state = self.store()?;
        Ok(state.login_failures.get(&(name.to_owned(), ip)).copied())
    }
    async fn record_login_failure(
        &self,
        name: &str,
        ip: Option<IpAddr>,
        now: i64,
        forget_before: i64,
    ) -> BackendResult<LoginFailures> {
        let mut state = self.store()?;
        state.login_failures.retain(|_, f| f.last > forget_before);
        let f = state
            .login_failures
            .entry((name.to_owned(), ip))
            .or_insert(LoginFailures {
                failures: 0,
                last: now,
            });
        f.failures = f.failures.saturating_add(1);
        f.last = f.last.max(now);
        Ok(*f)
    }
    async fn clear_login_failures(&self, name: &str, ip: Option<IpAddr>) -> BackendResult<()> {
        self.store()?.login_failures.remove(&(name.to_owned(), ip));
        Ok(())
    }
}

/// A response, read whole.
#[derive(Debug)]
struct Res {
    status: StatusCode,
    headers: header::HeaderMap,
    body: String,
}

impl Res {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The value of the hidden input `csrf` in the page.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a csrf field") + marker.len();
        let end = self.body[start..].find('"').expect("closing quote") + start;
        self.body[start..end].to_owned()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Res {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        String::new()
    } else {
        let bytes = to_bytes(res.into_body(), 1 << 20).await.expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Res {
        status,
        headers,
        body,
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).expect("request")
}

fn post(path: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut b =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::from(form.to_owned())).expect("request")
}

/// `name=value` of the first `Set-Cookie` whose name is `name`.
fn cookie_pair(res: &Res, name: &str) -> String {
    res.set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next().map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", res.set_cookies()))
}

fn app_with(fake: &Fake, config: DashboardConfig) -> Router {
    router(fake.clone(), config)
}

fn app(fake: &Fake) -> Router {
    app_with(fake, DashboardConfig::default())
}

/// Logs `name` in; returns the session cookie (`signoff_session=…`).
async fn login(app: &Router, name: &str) -> String {
    let page = send(app, get("/login", None)).await;
    assert_eq!(page.status, StatusCode::OK);
    let login_cookie = cookie_pair(&page, "signoff_login");
    let res = send(
        app,
        post(
            "/login",
            Some(&login_cookie),
            &format!("name={name}&password={name}-pw&csrf={}&next=/", page.csrf()),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    cookie_pair(&res, "signoff_session")
}

const PAGES: [&str; 13] = [
    "/",
    "/sessions",
    "/sessions/history",
    "/sessions/web-1/1234/kill",
    "/hosts",
    "/hosts/web-1",
    "/people",
    "/people/mallory",
    "/signoffs",
    "/signoffs/1",
    "/approvals",
    "/audit",
    "/operators",
];

#[tokio::test]
async fn without_a_session_every_page_redirects_to_login_and_the_stream_refuses() {
    let fake = Fake::new();
    let app = app(&fake);
    for page in PAGES {
        let res = send(&app, get(page, None)).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{page}");
        assert!(
            res.location().starts_with("/login?next="),
            "{page}: {}",
            res.location()
        );
    }
    let res = send(&app, get("/events", None)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    // A forged cookie is no session either.
    let res = send(&app, get("/sessions", Some("signoff_session=forged"))).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let res = send(&app, get("/events", Some("signoff_session=forged"))).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_session_no_action_is_taken() {
    let fake = Fake::new();
    let app = app(&fake);
    for (path, form) in [
        ("/sessions/web-1/1234/kill", "csrf=x"),
        ("/people/mallory/kill-sessions", "csrf=x"),
        ("/people/mallory/signoff", "csrf=x&reason=r&confirm=yes"),
        ("/people/mallory/reenable", "csrf=x&reason=r&confirm=yes"),
        ("/operators", "csrf=x&name=eve&role=admin"),
        ("/operators/op/role", "csrf=x&role=admin"),
        ("/operators/op/disable", "csrf=x"),
        ("/logout", "csrf=x"),
    ] {
        let res = send(&app, post(path, None, form)).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{path}");
        assert!(res.location().starts_with("/login"), "{path}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_pages_carry_the_csp() {
    let fake = Fake::new();
    let app = app(&fake);
    let page = send(&app, get("/login", None)).await;
    let login_cookie = cookie_pair(&page, "signoff_login");
    let res = send(
        &app,
        post(
            "/login",
            Some(&login_cookie),
            &format!("name=op&password=op-pw&csrf={}&next=/sessions", page.csrf()),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/sessions");
    let set = res
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("signoff_session="))
        .expect("session cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP: {set}");

    let cookie = cookie_pair(&res, "signoff_session");
    for page in PAGES.iter().filter(|p| **p != "/operators") {
        let res = send(&app, get(page, Some(&cookie))).await;
        assert_eq!(res.status, StatusCode::OK, "{page}: {}", res.body);
        let csp = res.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(!res.body.contains("<script>"), "{page}: no inline script");
        assert!(!res.body.contains("style=\""), "{page}: no inline style");
    }
}

#[tokio::test]
async fn login_refuses_a_wrong_password_a_missing_token_and_an_open_redirect() {
    let fake = Fake::new();
    let app = app(&fake);
    let page = send(&app, get("/login", None)).await;
    let login_cookie = cookie_pair(&page, "signoff_login");
    let token = page.csrf();

    let res = send(
        &app,
        post(
            "/login",
            Some(&login_cookie),
            &format!("name=op&password=nope&csrf={token}"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.body.contains("Wrong name or password."));
    assert!(
        res.set_cookies()
            .iter()
            .all(|c| !c.starts_with("signoff_session="))
    );

    // The login form's token must match its cookie (login CSRF).
    let res = send(
        &app,
        post(
            "/login",
            None,
            &format!("name=op&password=op-pw&csrf={token}"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = send(
        &app,
        post(
            "/login",
            Some(&login_cookie),
            "name=op&password=op-pw&csrf=other",
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let res = send(
        &app,
        post(
            "/login",
            Some(&login_cookie),
            &format!("name=op&password=op-pw&csrf={token}&next=//evil.example/"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/");
}

/// `req` as if it came over TCP from `peer`, as the server records it.
fn from_peer(mut req: Request<Body>, peer: &str) -> Request<Body> {
    let addr: std::net::SocketAddr = format!("{peer}:40000").parse().expect("address");
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

/// `req` with `X-Forwarded-For: xff`.
fn forwarded_for(mut req: Request<Body>, xff: &str) -> Request<Body> {
    req.headers_mut()
        .insert("x-forwarded-for", xff.parse().expect("header"));
    req
}

#[tokio::test]
async fn failed_logins_delay_the_next_try_with_growing_waits() {
    let fake = Fake::new();
    let app = app(&fake);
    let page = send(&app, get("/login", None)).await;
    let login_cookie = cookie_pair(&page, "signoff_login");
    let token = page.csrf();
    let wrong = format!("name=op&password=guess&csrf={token}");
    let right = format!("name=op&password=op-pw&csrf={token}");
    // Three typos cost nothing.
    for _ in 0..3 {
        let res = send(&app, post("/login", Some(&login_cookie), &wrong)).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = send(&app, post("/login", Some(&login_cookie), &wrong)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    // The fourth makes the next try wait a second, the right password too.
    let res = send(&app, post("/login", Some(&login_cookie), &right)).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers.get(header::RETRY_AFTER).unwrap(), "1");
    fake.clock.fetch_add(1, Ordering::SeqCst);
    let res = send(&app, post("/login", Some(&login_cookie), &wrong)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = send(&app, post("/login", Some(&login_cookie), &right)).await;
    assert_eq!(res.headers.get(header::RETRY_AFTER).unwrap(), "2");
    // Not a lockout: once the wait has passed, the right password gets in.
    fake.clock.fetch_add(2, Ordering::SeqCst);
    let res = send(&app, post("/login", Some(&login_cookie), &right)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn failures_from_one_address_never_refuse_the_right_password_from_another() {
    let fake = Fake::new();
    let app = app(&fake);
    let page = send(&app, get("/login", None)).await;
    let login_cookie = cookie_pair(&page, "signoff_login");
    let token = page.csrf();
    let wrong = format!("name=op&password=guess&csrf={token}");
    for _ in 0..20 {
        let req = from_peer(post("/login", Some(&login_cookie), &wrong), "203.0.113.9");
        let res = send(&app, req).await;
        assert!(
            res.status == StatusCode::UNAUTHORIZED || res.status == StatusCode::TOO_MANY_REQUESTS
        );
    }
    let right = format!("name=op&password=op-pw&csrf={token}");
    let req = from_peer(post("/login", Some(&login_cookie), &right), "203.0.113.9");
    assert_eq!(send(&app, req).await.status, StatusCode::TOO_MANY_REQUESTS);
    // The operator, from their own address with no failures.
    let req = from_peer(post("/login", Some(&login_cookie), &right), "198.51.100.7");
    assert_eq!(send(&app, req).await.status, StatusCode::SEE_OTHER);
    // An attacker cannot pick someone else's bucket by writing X-Forwarded-For: it is not
    // believed from a peer that is not a trusted proxy.
    let req = forwarded_for(
        from_peer(post("/login", Some(&login_cookie), &right), "203.0.113.9"),
        "198.51.100.8",
    );
    assert_eq!(send(&app, req).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_bucket() {
    let fake = Fake::new();
    let app = app_with(
        &fake,
        DashboardConfig {
            trusted_proxies: crate::TrustedProxies::new(vec!["10.0.0.1".parse().unwrap()]),
            ..Default::default()
        },
    );
    let page = send(&app, get("/login", None)).await;
    let login_cookie = cookie_pair(&page, "signoff_login");
    let token = page.csrf();
    let wrong = format!("name=op&password=guess&csrf={token}");
    let right = format!("name=op&password=op-pw&csrf={token}");
    let via_proxy = |form: &str, client: &str| {
        forwarded_for(
            from_peer(post("/login", Some(&login_cookie), form), "10.0.0.1"),
            client,
        )
    };
    for _ in 0..10 {
        send(&app, via_proxy(&wrong, "203.0.113.9")).await;
    }
    let res = send(&app, via_proxy(&right, "203.0.113.9")).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy (a shared NAT, a load balancer) is not delayed.
    let res = send(&app, via_proxy(&right, "198.51.100.7")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "op").await;
    for form in ["", "csrf=", "csrf=forged"] {
        let res = send(&app, post("/sessions/web-1/1234/kill", Some(&cookie), form)).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(res.body.contains("reload the page"), "{}", res.body);
        let res = send(
            &app,
            post(
                "/people/mallory/signoff",
                Some(&cookie),
                &format!("{form}&reason=r&confirm=yes"),
            ),
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{form:?}");
    }
    // Another session's token is no good either.
    let other = login(&app, "admin").await;
    let other_token = send(&app, get("/sessions", Some(&other))).await.csrf();
    let res = send(
        &app,
        post(
            "/sessions/web-1/1234/kill",
            Some(&cookie),
            &format!("csrf={other_token}"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    let token = send(&app, get("/sessions", Some(&cookie))).await.csrf();
    let res = send(
        &app,
        post(
            "/sessions/web-1/1234/kill",
            Some(&cookie),
            &format!("csrf={token}"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(fake.calls(), ["kill web-1/1234 by op"]);
}

#[tokio::test]
async fn a_viewer_sees_no_controls_and_their_hand_made_posts_are_refused() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;
    let sessions = send(&app, get("/sessions", Some(&cookie))).await;
    assert_eq!(sessions.status, StatusCode::OK);
    assert!(sessions.body.contains("deploy"), "the session is listed");
    assert!(
        !sessions.body.contains(">Kill<"),
        "no Kill button for a viewer"
    );
    let person = send(&app, get("/people/mallory", Some(&cookie))).await;
    assert!(
        !person.body.contains("Sign off"),
        "no Sign off for a viewer"
    );
    assert!(
        !person.body.contains("Kill all"),
        "no Kill all for a viewer"
    );
    let nav = send(&app, get("/", Some(&cookie))).await;
    assert!(
        !nav.body.contains("href=\"/operators\""),
        "no Operators for a viewer"
    );

    let token = sessions.csrf();
    for (path, form) in [
        ("/sessions/web-1/1234/kill", format!("csrf={token}")),
        ("/people/mallory/kill-sessions", format!("csrf={token}")),
        (
            "/people/mallory/signoff",
            format!("csrf={token}&reason=r&confirm=yes"),
        ),
        (
            "/people/mallory/reenable",
            format!("csrf={token}&reason=r&confirm=yes"),
        ),
        ("/operators", format!("csrf={token}&name=eve&role=admin")),
        ("/operators/viewer/role", format!("csrf={token}&role=admin")),
        ("/operators/op/disable", format!("csrf={token}")),
        (
            "/people/mallory/certificates/42/revoke",
            format!("csrf={token}"),
        ),
    ] {
        let res = send(&app, post(path, Some(&cookie), &form)).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}: {}", res.body);
    }
    for page in [
        "/sessions/web-1/1234/kill",
        "/people/mallory/kill-sessions",
        "/operators",
    ] {
        let res = send(&app, get(page, Some(&cookie))).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{page}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test]
async fn the_person_page_lists_certificates_and_an_operator_revokes_one_with_the_csrf_token() {
    let fake = Fake::new();
    let app = app(&fake);
    let viewer = login(&app, "viewer").await;
    let page = send(&app, get("/people/mallory", Some(&viewer))).await;
    assert!(page.body.contains("id=\"certificate-42\""), "{}", page.body);
    assert!(page.body.contains("SHA256:abc"));
    assert!(!page.body.contains(">Revoke<"), "no Revoke for a viewer");

    let cookie = login(&app, "op").await;
    let page = send(&app, get("/people/mallory", Some(&cookie))).await;
    assert!(
        page.body
            .contains("href=\"/people/mallory/certificates/42/revoke\""),
        "{}",
        page.body
    );
    let confirm = send(
        &app,
        get("/people/mallory/certificates/42/revoke", Some(&cookie)),
    )
    .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Revoke certificate 42 of mallory?"));
    let missing = send(
        &app,
        get("/people/mallory/certificates/43/revoke", Some(&cookie)),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for form in ["", "csrf=forged"] {
        let res = send(
            &app,
            post(
                "/people/mallory/certificates/42/revoke",
                Some(&cookie),
                form,
            ),
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{form:?}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    let token = confirm.csrf();
    let res = send(
        &app,
        post(
            "/people/mallory/certificates/42/revoke",
            Some(&cookie),
            &format!("csrf={token}"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(fake.calls(), ["revoke-certificate mallory/42 by op"]);
    let page = send(&app, get("/people/mallory", Some(&cookie))).await;
    assert!(page.body.contains(">revoked<"), "{}", page.body);
}

#[tokio::test]
async fn an_operator_sees_kill_and_sign_off_but_not_admin_controls() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "op").await;
    let sessions = send(&app, get("/sessions", Some(&cookie))).await;
    assert!(sessions.body.contains(">Kill<"));
    let person = send(&app, get("/people/mallory", Some(&cookie))).await;
    assert!(person.body.contains("Sign off mallory"));
    let res = send(&app, get("/operators", Some(&cookie))).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn script_in_a_key_id_hostname_or_reason_is_shown_as_text() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "admin").await;
    for page in [
        "/sessions",
        "/hosts",
        "/hosts/web-1",
        "/people",
        "/people/mallory",
        "/signoffs",
        "/signoffs/1",
        "/approvals",
        "/audit",
    ] {
        let res = send(&app, get(page, Some(&cookie))).await;
        assert_eq!(res.status, StatusCode::OK, "{page}");
        assert!(!res.body.contains(XSS), "{page} carries the raw script");
        assert!(
            res.body
                .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || res.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page} shows it as text:\n{}",
            res.body
        );
    }
}

/// A login that ended with processes left is shown as lingering, with what it left (as
/// text), and can still be killed.
#[tokio::test]
async fn a_lingering_session_shows_what_it_left_and_can_be_killed() {
    let fake = Fake::new();
    {
        let mut st = fake.state.lock().unwrap();
        st.sessions[0].state = "lingering".into();
        st.sessions[0].lingering = vec![format!("4242 deploy: sleep 600 {XSS}")];
    }
    let app = app(&fake);
    let cookie = login(&app, "op").await;
    let res = send(&app, get("/sessions", Some(&cookie))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.contains(">lingering<"), "{}", res.body);
    assert!(res.body.contains("4242 deploy: sleep 600"), "{}", res.body);
    assert!(!res.body.contains(XSS), "the command is shown as text");
    assert!(
        res.body.contains("/sessions/web-1/1234/kill"),
        "{}",
        res.body
    );
}

#[tokio::test]
async fn sign_off_needs_a_reason_and_the_confirmation() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "op").await;
    let token = send(&app, get("/people/mallory", Some(&cookie)))
        .await
        .csrf();
    for form in [
        format!("csrf={token}&reason=&confirm=yes"),
        format!("csrf={token}&reason=left"),
        format!("csrf={token}&reason=left&confirm=no"),
    ] {
        let res = send(&app, post("/people/mallory/signoff", Some(&cookie), &form)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{form}");
    }
    assert!(fake.calls().is_empty());
    let res = send(
        &app,
        post(
            "/people/mallory/signoff",
            Some(&cookie),
            &format!("csrf={token}&reason=left+the+company&confirm=yes"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/signoffs/1");
    assert_eq!(fake.calls(), ["signoff mallory (left the company) by op"]);
}

#[tokio::test]
async fn sessions_expire_and_logout_ends_them() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "op").await;
    fake.clock.fetch_add(31 * 60, Ordering::SeqCst);
    let res = send(&app, get("/", Some(&cookie))).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "idle for 31 minutes");

    let cookie = login(&app, "op").await;
    let token = send(&app, get("/", Some(&cookie))).await.csrf();
    let res = send(
        &app,
        post("/logout", Some(&cookie), &format!("csrf={token}")),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/login");
    let res = send(&app, get("/", Some(&cookie))).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_disabled_operator_is_logged_out_at_once() {
    let fake = Fake::new();
    let app = app(&fake);
    let op = login(&app, "op").await;
    let admin = login(&app, "admin").await;
    let token = send(&app, get("/operators", Some(&admin))).await.csrf();
    let res = send(
        &app,
        post(
            "/operators/op/disable",
            Some(&admin),
            &format!("csrf={token}"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let res = send(&app, get("/sessions", Some(&op))).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let res = send(&app, get("/events", Some(&op))).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_admin_creates_an_operator_and_sees_the_password_once() {
    let fake = Fake::new();
    let app = app(&fake);
    let admin = login(&app, "admin").await;
    let token = send(&app, get("/operators", Some(&admin))).await.csrf();
    let res = send(
        &app,
        post(
            "/operators",
            Some(&admin),
            &format!("csrf={token}&name=eve&role=viewer"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("generated-password"));
    let res = send(
        &app,
        post(
            "/operators",
            Some(&admin),
            &format!("csrf={token}&name=eve&role=root"),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(fake.calls(), ["create-operator eve viewer by admin"]);
}

#[tokio::test]
async fn tls_cookies_are_secure_with_the_host_prefix() {
    let fake = Fake::new();
    let app = app_with(
        &fake,
        DashboardConfig {
            secure_cookies: true,
            ..Default::default()
        },
    );
    let page = send(&app, get("/login", None)).await;
    let login_cookie = cookie_pair(&page, "__Host-signoff_login");
    let res = send(
        &app,
        post(
            "/login",
            Some(&login_cookie),
            &format!("name=op&password=op-pw&csrf={}", page.csrf()),
        ),
    )
    .await;
    let set = res
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-signoff_session="))
        .expect("session cookie");
    assert!(set.contains("; Secure"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
}

#[tokio::test]
async fn the_event_stream_serves_a_logged_in_operator() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;
    let res = send(&app, get("/events", Some(&cookie))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.headers[header::CONTENT_TYPE].to_str().unwrap(),
        "text/event-stream"
    );
}

#[tokio::test]
async fn static_files_and_unknown_pages() {
    let fake = Fake::new();
    let app = app(&fake);
    let res = send(&app, get("/static/live.js", None)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.contains("EventSource"));
    let res = send(&app, get("/static/style.css", None)).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = send(&app, get("/nothing-here", None)).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let cookie = login(&app, "viewer").await;
    let res = send(&app, get("/hosts/nope", Some(&cookie))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.body.contains("does not exist"));
}

#[tokio::test]
async fn every_page_links_the_favicon_and_it_is_served_as_an_svg_image() {
    let fake = Fake::new();
    let app = app(&fake);
    let link = r#"<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">"#;
    let res = send(&app, get("/login", None)).await;
    assert!(res.body.contains(link), "{}", res.body);
    let cookie = login(&app, "viewer").await;
    let res = send(&app, get("/hosts", Some(&cookie))).await;
    assert!(res.body.contains(link), "{}", res.body);
    let res = send(&app, get("/static/favicon.svg", None)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.headers.get(header::CONTENT_TYPE).unwrap(),
        "image/svg+xml"
    );
    assert!(res.body.starts_with("<svg"), "{}", res.body);
}

#[tokio::test]
async fn error_pages_keep_the_navigation_and_logout_for_a_logged_in_operator() {
    let fake = Fake::new();
    let app = app(&fake);
    let nav = r#"<nav aria-label="Main">"#;
    let logout = r#"<form class="logout" method="post" action="/logout">"#;
    // Before logging in an error page has neither.
    let res = send(&app, get("/nothing-here", None)).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(
        !res.body.contains(nav) && !res.body.contains(logout),
        "{}",
        res.body
    );

    let cookie = login(&app, "admin").await;
    let csrf = send(&app, get("/operators", Some(&cookie))).await.csrf();
    let not_found_page = send(&app, get("/nothing-here", Some(&cookie))).await;
    let not_found_host = send(&app, get("/hosts/nope", Some(&cookie))).await;
    let conflict = send(
        &app,
        post(
            "/operators/admin/role",
            Some(&cookie),
            &format!("csrf={csrf}&role=viewer"),
        ),
    )
    .await;
    for (res, status, says) in [
        (
            &not_found_page,
            StatusCode::NOT_FOUND,
            "there is no page here",
        ),
        (&not_found_host, StatusCode::NOT_FOUND, "does not exist"),
        (&conflict, StatusCode::CONFLICT, "last enabled admin"),
    ] {
        assert_eq!(res.status, status, "{}", res.body);
        assert!(res.body.contains(says), "{}", res.body);
        assert!(res.body.contains(nav), "{}", res.body);
        for (_, path, label) in crate::layout::NAV {
            assert!(
                res.body
                    .contains(&format!(r#"<a href="{path}">{label}</a>"#)),
                "{label}: {}",
                res.body
            );
        }
        assert!(res.body.contains(logout), "{}", res.body);
        assert!(
            res.body.contains(&format!(r#"value="{csrf}""#)),
            "{}",
            res.body
        );
        assert!(res.body.contains("Log out"), "{}", res.body);
    }
}

#[tokio::test]
async fn the_hosts_list_and_a_hosts_page_show_its_revision_the_same_way() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;
    // web-1 applied revision 4; the control plane is at 5.
    for page in ["/hosts", "/hosts/web-1"] {
        let res = send(&app, get(page, Some(&cookie))).await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(
            res.body.contains("4 of 5 (1 behind)"),
            "{page}: {}",
            res.body
        );
        assert!(!res.body.contains("(−"), "{page}: {}", res.body);
    }
}

/// `n` hosts `db-0000`… in group `db`, every third offline, and `n` people `p0000`…, every
/// fourth disabled.
fn fleet(fake: &Fake, n: usize) {
    let mut st = fake.state.lock().unwrap();
    st.more_hosts = (0..n)
        .map(|i| Host {
            id: format!("db-{i:04}"),
            hostname: format!("db-{i:04}.corp.example"),
            groups: vec!["db".into()],
            online: i % 3 != 0,
            acked_revision: 4,
            agent_version: Some("0.1.0".into()),
            last_contact: Some(NOW - 5),
            cert_not_after: Some(NOW + 86_400),
        })
        .collect();
    st.more_people = (0..n)
        .map(|i| Person {
            name: format!("p{i:04}"),
            // Every fourth may not log in: half of those signed off, half disabled.
            active: i % 4 != 0,
            signed_off: i % 8 == 0,
            key_ids: vec![format!("p{i:04}@corp")],
            public_keys: vec![],
            principals: vec![],
            grants: vec![],
        })
        .collect();
}

/// The rows of the first table on a page.
fn rows(body: &str) -> usize {
    body.matches("<tr>").count().saturating_sub(1)
}

#[tokio::test]
async fn the_hosts_page_searches_filters_by_status_and_caps_its_rows() {
    let fake = Fake::new();
    fleet(&fake, 1200);
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;

    let all = send(&app, get("/hosts", Some(&cookie))).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(rows(&all.body), crate::pages::LIST_ROWS);
    assert!(
        all.body
            .contains("1201 hosts; current revision 5. Showing the first 500: narrow the filter"),
        "{}",
        all.body
    );

    let one = send(&app, get("/hosts?q=DB-0042.CORP", Some(&cookie))).await;
    assert_eq!(rows(&one.body), 1, "{}", one.body);
    assert!(one.body.contains(">db-0042</a>"));
    assert!(one.body.contains("1 of 1201 hosts match"));
    assert!(
        one.body.contains(r#"value="DB-0042.CORP""#),
        "the search stays in the form"
    );

    let offline = send(&app, get("/hosts?status=offline&q=db-00", Some(&cookie))).await;
    // db-0000 … db-0099, every third: 34.
    assert_eq!(rows(&offline.body), 34, "{}", offline.body);
    assert!(!offline.body.contains("badge online"));
    assert!(
        offline
            .body
            .contains(r#"<option value="offline" selected>"#)
    );

    let none = send(&app, get("/hosts?q=nothing-like-this", Some(&cookie))).await;
    assert!(none.body.contains("No host matches."));

    let bad = send(&app, get("/hosts?status=asleep", Some(&cookie))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .contains("there is no status &#34;asleep&#34;; it is one of online, lagging, offline")
            || bad.body.contains(
                "there is no status &quot;asleep&quot;; it is one of online, lagging, offline"
            ),
        "{}",
        bad.body
    );
}

#[tokio::test]
async fn the_people_page_searches_filters_by_status_and_caps_its_rows() {
    let fake = Fake::new();
    fleet(&fake, 800);
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;

    let all = send(&app, get("/people", Some(&cookie))).await;
    assert_eq!(rows(&all.body), crate::pages::LIST_ROWS);
    assert!(
        all.body.contains("801 people. Showing the first 500"),
        "{}",
        all.body
    );

    let by_key_id = send(&app, get("/people?q=p0123%40corp", Some(&cookie))).await;
    assert_eq!(rows(&by_key_id.body), 1, "{}", by_key_id.body);
    assert!(by_key_id.body.contains(">p0123</a>"));

    let by_grant = send(&app, get("/people?q=deploy%40web", Some(&cookie))).await;
    assert_eq!(rows(&by_grant.body), 1);
    assert!(by_grant.body.contains(">mallory</a>"));

    let signed_off = send(&app, get("/people?status=signed-off", Some(&cookie))).await;
    assert_eq!(rows(&signed_off.body), 100, "every eighth of 800");
    assert!(signed_off.body.contains("100 of 801 people match"));
    assert_eq!(
        signed_off
            .body
            .matches(r#"<span class="badge offline">signed off</span>"#)
            .count(),
        100
    );
    assert!(
        signed_off
            .body
            .contains(r#"<option value="signed-off" selected>"#)
    );

    let disabled = send(&app, get("/people?status=disabled", Some(&cookie))).await;
    assert_eq!(
        rows(&disabled.body),
        100,
        "every fourth of 800 not signed off"
    );
    assert!(disabled.body.contains("100 of 801 people match"));
    assert!(!disabled.body.contains("badge online"));
    assert!(!disabled.body.contains(">signed off<"));

    let active = send(&app, get("/people?status=active", Some(&cookie))).await;
    assert!(
        active.body.contains("601 of 801 people match"),
        "{}",
        active.body
    );
    assert!(!active.body.contains("badge offline") && !active.body.contains("badge warn"));

    let bad = send(&app, get("/people?status=fired", Some(&cookie))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .contains("it is one of active, signed-off, disabled"),
        "{}",
        bad.body
    );
}

/// The approvals page shows each pending grant's exact bytes and the command that signs
/// them, to any operator (viewers included: approvers need not be operators).
#[tokio::test]
async fn pending_approvals_show_the_bytes_and_the_sign_command() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;
    let res = send(&app, get("/approvals", Some(&cookie))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body.contains(
            "<pre class=\"bytes\">signoff grant approval v1\ngrant: 7\nperson: mallory\naccount: root\n"
        ),
        "{}",
        res.body
    );
    assert!(
        res.body.contains(
            "ssh-keygen -Y sign -n signoff-approval -f ~/.ssh/id_ed25519 grant-7.approval"
        )
    );
    assert!(
        res.body
            .contains("signoff-server approval show 7 &#62; grant-7.approval")
            || res
                .body
                .contains("signoff-server approval show 7 &gt; grant-7.approval"),
        "{}",
        res.body
    );
    assert!(res.body.contains("SHA256:abc"));
    // The re-enable awaiting approvals, with its own bytes and command.
    assert!(
        res.body.contains(
            "<pre class=\"bytes\">signoff re-enable approval v1\nsignoff: 3\nperson: mallory\n</pre>"
        ),
        "{}",
        res.body
    );
    assert!(res.body.contains(
        "ssh-keygen -Y sign -n signoff-approval -f ~/.ssh/id_ed25519 reenable-3.approval"
    ));
    assert!(
        res.body
            .contains("signoff-server approval show reenable-3 &#62; reenable-3.approval")
            || res
                .body
                .contains("signoff-server approval show reenable-3 &gt; reenable-3.approval"),
        "{}",
        res.body
    );
    assert!(res.body.contains("POST /api/v1/signoffs/3/approvals"));
    assert!(res.body.contains("SHA256:def"));
}

/// The overview shows the latest logins and refused attempts, and the open alerts, each
/// with Acknowledge for an operator; acknowledging takes the session's CSRF token and the
/// operator role, and the alert is gone from the page.
#[tokio::test]
async fn the_overview_shows_the_feed_and_an_operator_acknowledges_an_alert() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "op").await;
    let page = send(&app, get("/", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("refused: revoked"), "{}", page.body);
    assert!(page.body.contains("203.0.113.9"), "{}", page.body);
    assert!(page.body.contains("unattributed"), "{}", page.body);
    assert!(page.body.contains("signed_off_attempt"), "{}", page.body);
    assert!(!page.body.contains(XSS), "the summary is escaped");
    assert!(page.body.contains("action=\"/alerts/41/acknowledge\""));

    let res = send(
        &app,
        post("/alerts/41/acknowledge", Some(&cookie), "csrf=forged"),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    let viewer = login(&app, "viewer").await;
    let seen = send(&app, get("/", Some(&viewer))).await;
    assert!(
        seen.body.contains("signed_off_attempt"),
        "a viewer sees the alert"
    );
    assert!(!seen.body.contains(">Acknowledge<"), "but no button");
    let res = send(
        &app,
        post(
            "/alerts/41/acknowledge",
            Some(&viewer),
            &format!("csrf={}", seen.csrf()),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    let res = send(
        &app,
        post(
            "/alerts/41/acknowledge",
            Some(&cookie),
            &format!("csrf={}", page.csrf()),
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/");
    assert_eq!(fake.calls(), ["ack 41 by op"]);
    let after = send(&app, get("/", Some(&cookie))).await;
    assert!(after.body.contains("No alert waits"), "{}", after.body);
}

/// The person page shows their timeline, newest first, as text.
#[tokio::test]
async fn the_person_page_shows_their_timeline() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;
    let page = send(&app, get("/people/mallory", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    let refused = page.body.find("(revoked)").expect("the refused attempt");
    let signoff = page.body.find("user.signoff").expect("the sign-off");
    assert!(refused < signoff, "newest first");
    assert!(page.body.contains("mallory left"), "{}", page.body);
    assert!(!page.body.contains(XSS), "escaped");
}

/// The history search hands every filter to the backend as typed (times read as UTC),
/// shows ended sessions with their end, and pages with the backend's cursor, the filter
/// kept; a viewer may use it.
#[tokio::test]
async fn history_search_passes_the_filter_and_pages_with_the_cursor() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;

    let search = "/sessions/history?user=mallory&host=web-1&account=root&source=192.0.2.7\
                  &from=2027-01-15T07%3A00&to=2027-01-15T08%3A00%3A30";
    let first = send(&app, get(search, Some(&cookie))).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let filter = HistoryFilter {
        user: Some("mallory".into()),
        host: Some("web-1".into()),
        account: Some("root".into()),
        source: Some("192.0.2.7".parse().unwrap()),
        started_after: Some(NOW - 3600),
        started_before: Some(NOW + 30),
    };
    assert_eq!(
        fake.calls().last().unwrap(),
        &format!("history {filter:?} after=None limit=50")
    );
    // The ended session: started, ended, state.
    let row = first
        .body
        .split("id=\"history-web-1-99\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the ended session's row");
    assert!(
        row.contains("<td class=\"started\">2027-01-15 07:00:00 UTC</td>"),
        "{row}"
    );
    assert!(
        row.contains("<td class=\"ended\">2027-01-15 07:30:00 UTC</td>"),
        "{row}"
    );
    assert!(row.contains(">ended</span>"), "{row}");
    assert!(row.contains("192.0.2.7:50000"), "{row}");
    // The live one: no end yet.
    let live = first
        .body
        .split("id=\"history-web-1-1234\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the live session's row");
    assert!(live.contains("<td class=\"ended\">—</td>"), "{live}");
    assert!(live.contains(">live</span>"), "{live}");
    assert!(!first.body.contains(XSS), "the key ID is escaped");
    // The form keeps the search; the next page keeps it too.
    assert!(
        first
            .body
            .contains(r#"name="from" type="datetime-local" step="1" value="2027-01-15T07:00""#)
    );
    assert!(first.body.contains(r#"name="source" value="192.0.2.7""#));
    let older = "/sessions/history?user=mallory&host=web-1&account=root&source=192.0.2.7\
                 &from=2027-01-15T07%3A00&to=2027-01-15T08%3A00%3A30&after=page-2";
    let older_link = format!(
        r#"<a id="older" href="{}" rel="next">Older →</a>"#,
        older.replace('&', "&#38;")
    );
    assert!(first.body.contains(&older_link), "{}", first.body);
    assert!(!first.body.contains("id=\"newest\""));

    let second = send(&app, get(older, Some(&cookie))).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(
        fake.calls().last().unwrap(),
        &format!("history {filter:?} after=Some(\"page-2\") limit=50")
    );
    assert!(!second.body.contains("id=\"older\""), "the last page");
    assert!(second.body.contains("← Newest"));

    // No filter: everything, first page; `limit` chosen in the URL stays on the next page.
    let all = send(&app, get("/sessions/history?user=&limit=2", Some(&cookie))).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(
        fake.calls().last().unwrap(),
        &format!("history {:?} after=None limit=2", HistoryFilter::default())
    );
    assert!(
        all.body
            .contains(r#"href="/sessions/history?limit=2&#38;after=page-2""#),
        "{}",
        all.body
    );
}

/// Each value the history search cannot take is a 400 page that says which and what to
/// write instead, and the backend is not asked.
#[tokio::test]
async fn history_search_refuses_each_bad_value_with_a_message() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;
    for (query, message) in [
        (
            "from=yesterday",
            "from: &#34;yesterday&#34; is not a date and time; write it as YYYY-MM-DDTHH:MM in UTC",
        ),
        (
            "to=2027-02-30T10:00",
            "to: &#34;2027-02-30T10:00&#34; is not a date and time",
        ),
        (
            "from=1969-12-31T00:00",
            "from: &#34;1969-12-31T00:00&#34; is before 1970",
        ),
        (
            "from=2027-01-15T08:00&to=2027-01-15T08:00",
            "to (2027-01-15 08:00:00 UTC) must be later than from (2027-01-15 08:00:00 UTC)",
        ),
        (
            "source=web-1",
            "source address: &#34;web-1&#34; is not an IP address",
        ),
        (
            "limit=0",
            "limit: &#34;0&#34; is not a number of rows from 1 to 500",
        ),
        (
            "limit=many",
            "limit: &#34;many&#34; is not a number of rows from 1 to 500",
        ),
    ] {
        let calls = fake.calls().len();
        let res = send(
            &app,
            get(&format!("/sessions/history?{query}"), Some(&cookie)),
        )
        .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}: {}", res.body);
        assert!(res.body.contains(message), "{query}: {}", res.body);
        assert!(
            res.body.contains("Log out"),
            "{query}: the page keeps the layout"
        );
        assert_eq!(
            fake.calls().len(),
            calls,
            "{query}: the backend was not asked"
        );
    }
    // A cursor the control plane did not make: its refusal, as a 400.
    let res = send(&app, get("/sessions/history?after=forged", Some(&cookie))).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body
            .contains("after: is not the cursor of a page of sessions"),
        "{}",
        res.body
    );
}

/// The history is in the navigation, and the Sessions page links to it with its filter.
#[tokio::test]
async fn history_is_linked_from_the_nav_and_the_sessions_page() {
    let fake = Fake::new();
    let app = app(&fake);
    let cookie = login(&app, "viewer").await;
    let res = send(
        &app,
        get("/sessions?user=mallory&host=web+1", Some(&cookie)),
    )
    .await;
    assert!(
        res.body
            .contains(r#"<a href="/sessions/history">History</a>"#),
        "{}",
        res.body
    );
    assert!(
        res.body.contains(
            r#"id="history-link" href="/sessions/history?user=mallory&#38;host=web%201""#
        ),
        "{}",
        res.body
    );
    let res = send(&app, get("/sessions/history", Some(&cookie))).await;
    assert!(
        res.body
            .contains(r#"<a href="/sessions/history" aria-current="page">History</a>"#)
    );
}
