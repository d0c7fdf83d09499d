//! The pages (GET): each reads through the [`Backend`], shapes plain rows for its
//! template and renders it. Values reach the HTML only through askama's escaping, and
//! URLs are built here with every path segment percent-encoded.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::backend::{
    Backend, Certificate, FeedEntry, Host, Operator, PendingApproval, PendingReenable, Person,
    Role, Session, SessionFilter, Signoff, SignoffHostState,
};
use crate::chart::{self, Chart};
use crate::error::{PageError, safe_next};
use crate::layout::{Layout, ago, opt_time, query_value, render, seg, time_text};
use crate::{App, Authed, authenticate};

/// How many audit rows a page shows.
const AUDIT_PAGE: i64 = 100;

// ---- rows shared by several pages ----

/// A session as a table row.
#[derive(Debug, Clone)]
pub(crate) struct SessionRow {
    pub host: String,
    pub host_url: String,
    pub account: String,
    pub person: String,
    pub person_url: String,
    pub key_id: String,
    pub serial: String,
    pub source: String,
    pub started: String,
    pub started_ago: String,
    pub terminal: String,
    pub state: String,
    pub kill_url: String,
    /// While lingering: what the login left running.
    pub lingering: Vec<String>,
    /// The row's DOM id (tests and people find a session by it).
    pub dom_id: String,
}

impl SessionRow {
    pub(crate) fn new(s: &Session, now: i64) -> Self {
        let person = s.user.clone().unwrap_or_default();
        SessionRow {
            host_url: format!("/hosts/{}", seg(&s.host_id)),
            person_url: if person.is_empty() {
                String::new()
            } else {
                format!("/people/{}", seg(&person))
            },
            person,
            account: s.account.clone(),
            key_id: s.key_id.clone(),
            serial: if s.serial == 0 {
                "—".to_owned()
            } else {
                s.serial.to_string()
            },
            source: format!("{}:{}", s.source_address, s.source_port),
            started: time_text(s.started_at),
            started_ago: ago(now, s.started_at),
            terminal: if s.tty.is_empty() {
                "no".to_owned()
            } else {
                s.tty.clone()
            },
            state: s.state.clone(),
            lingering: s.lingering.clone(),
            kill_url: format!("/sessions/{}/{}/kill", seg(&s.host_id), seg(&s.id)),
            dom_id: format!("session-{}-{}", seg(&s.host_id), seg(&s.id)).replace('%', "_"),
            host: s.host_id.clone(),
        }
    }
}

fn session_rows(sessions: &[Session], now: i64) -> Vec<SessionRow> {
    sessions.iter().map(|s| SessionRow::new(s, now)).collect()
}

/// A host as a table row.
#[derive(Debug, Clone)]
pub(crate) struct HostRow {
    pub id: String,
    pub url: String,
    pub hostname: String,
    pub groups: String,
    pub status: &'static str,
    /// The applied revision and how far behind it is ([`applied_revision_text`]).
    pub applied_revision: String,
    pub agent_version: String,
    pub last_contact: String,
    pub cert_not_after: String,
}

/// `online`, `lagging` (online but behind) or `offline`.
fn host_status(h: &Host, revision: i64) -> &'static str {
    match (h.online, h.acked_revision < revision) {
        (false, _) => "offline",
        (true, true) => "lagging",
        (true, false) => "online",
    }
}

/// A host's applied revision against the control plane's, the same on the hosts list and
/// a host's page: `4 of 5 (1 behind)`, `5 of 5 (up to date)`, and, should a host report
/// more than the control plane has (a restored database), `7 of 5 (ahead)`.
pub(crate) fn applied_revision_text(applied: i64, current: i64) -> String {
    let state = match current.cmp(&applied) {
        std::cmp::Ordering::Greater => format!("{} behind", current - applied),
        std::cmp::Ordering::Equal => "up to date".to_owned(),
        std::cmp::Ordering::Less => "ahead".to_owned(),
    };
    format!("{applied} of {current} ({state})")
}

impl HostRow {
    fn new(h: &Host, revision: i64, now: i64) -> Self {
        HostRow {
            id: h.id.clone(),
            url: format!("/hosts/{}", seg(&h.id)),
            hostname: h.hostname.clone(),
            groups: h.groups.join(", "),
            status: host_status(h, revision),
            applied_revision: applied_revision_text(h.acked_revision, revision),
            agent_version: h.agent_version.clone().unwrap_or_else(|| "—".to_owned()),
            last_contact: h
                .last_contact
                .map(|t| format!("{} ({})", time_text(t), ago(now, t)))
                .unwrap_or_else(|| "never".to_owned()),
            cert_not_after: opt_time(h.cert_not_after),
        }
    }
}

/// A sign-off as a list row.
#[derive(Debug, Clone)]
pub(crate) struct SignoffRow {
    pub url: String,
    pub person: String,
    pub person_url: String,
    pub reason: String,
    pub actor: String,
    pub created: String,
    pub confirmed: usize,
    pub total: usize,
    pub status: &'static str,
}

fn signoff_status(s: &Signoff) -> &'static str {
    if !s.in_force {
        "withdrawn"
    } else if s.completed_at.is_some() {
        "complete"
    } else {
        "in progress"
    }
}

impl SignoffRow {
    fn new(s: &Signoff) -> Self {
        SignoffRow {
            url: format!("/signoffs/{}", s.id),
            person_url: format!("/people/{}", seg(&s.user)),
            person: s.user.clone(),
            reason: s.reason.clone(),
            actor: s.actor.clone(),
            created: time_text(s.created_at),
            confirmed: s
                .hosts
                .iter()
                .filter(|h| h.state == SignoffHostState::Confirmed)
                .count(),
            total: s.hosts.len(),
            status: signoff_status(s),
        }
    }
}

// ---- login ----

#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub layout: Layout,
    pub next: String,
    pub login_csrf: String,
    pub name: String,
    pub error: String,
}

/// `GET /login`: the form, with a fresh double-submit token in a cookie and the form.
pub(crate) async fn login_page_handler<B: Backend>(
    State(app): State<App<B>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Result<Response, PageError> {
    let next = safe_next(q.next.as_deref().unwrap_or("/")).to_owned();
    if authenticate(&app, &headers).await?.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    login_form(
        &app,
        next,
        String::new(),
        String::new(),
        axum::http::StatusCode::OK,
    )
}

/// The login form with a new double-submit token.
pub(crate) fn login_form<B: Backend>(
    app: &App<B>,
    next: String,
    name: String,
    error: String,
    status: axum::http::StatusCode,
) -> Result<Response, PageError> {
    let token = crate::auth::random_token();
    let page = LoginPage {
        layout: Layout::anonymous("Log in"),
        next,
        login_csrf: token.clone(),
        name,
        error,
    };
    let mut res = render(&page)?;
    *res.status_mut() = status;
    let cookie = app.auth.cookie(app.auth.login_cookie_name(), &token, 3600);
    if let Ok(v) = cookie.parse() {
        res.headers_mut().append(SET_COOKIE, v);
    }
    Ok(res)
}

// ---- overview ----

#[derive(Template)]
#[template(path = "overview.html")]
pub(crate) struct OverviewPage {
    pub layout: Layout,
    pub hosts_online: usize,
    pub hosts_offline: usize,
    pub hosts_lagging: usize,
    pub live_sessions: usize,
    pub in_progress: Vec<SignoffRow>,
    pub chart: Chart,
    pub chart_width: i64,
    pub chart_height: i64,
    pub chart_left: i64,
    pub feed: Vec<FeedRow>,
    pub alerts: Vec<AlertRow>,
}

/// `GET /`.
pub(crate) async fn overview_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
) -> Result<Response, PageError> {
    let b = &app.backend;
    let now = b.now();
    let revision = b.revision();
    let hosts = b.hosts().await?;
    let sessions = b.sessions(&SessionFilter::default()).await?;
    let signoffs = b.signoffs().await?;
    let logins = b.logins_per_hour(now).await?;
    let feed = b.feed(FEED_ROWS).await?;
    let alerts = b.open_alerts().await?;
    let count = |status: &str| {
        hosts
            .iter()
            .filter(|h| host_status(h, revision) == status)
            .count()
    };
    render(&OverviewPage {
        layout: Layout::new(&authed, "overview", "Overview"),
        hosts_online: count("online"),
        hosts_offline: count("offline"),
        hosts_lagging: count("lagging"),
        live_sessions: sessions.iter().filter(|s| s.state == "live").count(),
        in_progress: signoffs
            .iter()
            .filter(|s| s.in_force && s.completed_at.is_none())
            .map(SignoffRow::new)
            .collect(),
        chart: chart::logins_per_hour(now, &logins),
        chart_width: chart::WIDTH,
        chart_height: chart::HEIGHT,
        chart_left: chart::LEFT,
        feed: feed.iter().map(|f| FeedRow::new(f, now)).collect(),
        alerts: alerts
            .iter()
            .map(|a| AlertRow {
                url: format!("/alerts/{}/acknowledge", a.cursor),
                at: time_text(a.at),
                rule: a.rule.clone(),
                summary: a.summary.clone(),
            })
            .collect(),
    })
}

/// Rows of the overview's feed.
const FEED_ROWS: usize = 20;

/// One login or refused attempt on the overview.
pub(crate) struct FeedRow {
    pub at: String,
    pub refused: bool,
    pub host: String,
    pub account: String,
    pub person: String,
    pub person_url: String,
    pub source: String,
    pub reason: String,
}

impl FeedRow {
    fn new(f: &FeedEntry, _now: i64) -> FeedRow {
        FeedRow {
            at: time_text(f.at),
            refused: f.refused,
            host: f.host.clone(),
            account: f.account.clone(),
            person: f.person.clone().unwrap_or_default(),
            person_url: f
                .person
                .as_deref()
                .map(|p| format!("/people/{}", seg(p)))
                .unwrap_or_default(),
            source: f.source.clone(),
            reason: f.reason.replace('_', " "),
        }
    }
}

/// One unacknowledged alert on the overview.
pub(crate) struct AlertRow {
    pub url: String,
    pub at: String,
    pub rule: String,
    pub summary: String,
}

// ---- sessions ----

#[derive(Template)]
#[template(path = "sessions.html")]
pub(crate) struct SessionsPage {
    pub layout: Layout,
    pub filter_user: String,
    pub filter_host: String,
    pub filter_account: String,
    pub sessions: Vec<SessionRow>,
    /// How many match; `sessions` holds the first [`LIST_ROWS`].
    pub matched: usize,
    pub kill_person_url: String,
    /// The history search with the same filter.
    pub history_url: String,
}

/// Empty query values mean "any".
fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// At most this many rows on a list page: a fleet has thousands of hosts and people, and
/// a page that big is neither readable nor quick to refresh live. The filter narrows.
pub(crate) const LIST_ROWS: usize = 500;

/// `?q=&status=` of the Hosts and People pages.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    q: Option<String>,
    status: Option<String>,
}

impl ListQuery {
    /// The search text as typed, and the status, which must be one of `statuses`.
    fn parse(self, statuses: &[&str]) -> Result<(String, Option<String>), PageError> {
        let status = non_empty(self.status);
        if let Some(s) = &status
            && !statuses.contains(&s.as_str())
        {
            return Err(PageError::Invalid(format!(
                "there is no status {s:?}; it is one of {}",
                statuses.join(", ")
            )));
        }
        Ok((non_empty(self.q).unwrap_or_default(), status))
    }
}

/// True when `needle` (lowercase) is empty or, ignoring case, part of one of `fields`.
fn found(needle: &str, fields: &[&str]) -> bool {
    needle.is_empty() || fields.iter().any(|f| f.to_lowercase().contains(needle))
}

/// The status options of a filter form: (value, selected).
fn status_options(statuses: &[&'static str], chosen: Option<&str>) -> Vec<(&'static str, bool)> {
    statuses.iter().map(|s| (*s, chosen == Some(*s))).collect()
}

/// `GET /sessions?user=&host=&account=`.
pub(crate) async fn sessions_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Query(filter): Query<SessionFilter>,
) -> Result<Response, PageError> {
    let filter = SessionFilter {
        user: non_empty(filter.user),
        host: non_empty(filter.host),
        account: non_empty(filter.account),
    };
    let mut sessions = app.backend.sessions(&filter).await?;
    let matched = sessions.len();
    sessions.truncate(LIST_ROWS);
    let history_query: Vec<String> = [
        ("user", &filter.user),
        ("host", &filter.host),
        ("account", &filter.account),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| format!("{k}={}", query_value(v))))
    .collect();
    render(&SessionsPage {
        layout: Layout::new(&authed, "sessions", "Sessions"),
        history_url: if history_query.is_empty() {
            "/sessions/history".to_owned()
        } else {
            format!("/sessions/history?{}", history_query.join("&"))
        },
        kill_person_url: filter
            .user
            .as_deref()
            .map(|u| format!("/people/{}/kill-sessions", seg(u)))
            .unwrap_or_default(),
        filter_user: filter.user.unwrap_or_default(),
        filter_host: filter.host.unwrap_or_default(),
        filter_account: filter.account.unwrap_or_default(),
        sessions: session_rows(&sessions, app.backend.now()),
        matched,
    })
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub(crate) struct ConfirmPage {
    pub layout: Layout,
    pub question: String,
    pub details: Vec<(String, String)>,
    pub action: String,
    pub button: String,
    pub cancel_url: String,
}

/// `GET /sessions/{host}/{id}/kill`: asks for confirmation (works without JavaScript).
pub(crate) async fn kill_session_page_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path((host, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    authed.require(Role::Operator)?;
    let filter = SessionFilter {
        host: Some(host.clone()),
        ..Default::default()
    };
    let session = app
        .backend
        .sessions(&filter)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| {
            PageError::NotFound(format!("no live session {id} on {host}; it may have ended"))
        })?;
    let row = SessionRow::new(&session, app.backend.now());
    render(&ConfirmPage {
        layout: Layout::new(&authed, "sessions", "Kill this session?"),
        question: format!(
            "End the SSH session of {} as {} on {}? Its connection and every process it started are terminated.",
            if row.person.is_empty() {
                &row.key_id
            } else {
                &row.person
            },
            row.account,
            row.host
        ),
        details: vec![
            ("Host".into(), row.host.clone()),
            ("Account".into(), row.account.clone()),
            ("Person".into(), row.person.clone()),
            ("Key ID".into(), row.key_id.clone()),
            ("From".into(), row.source.clone()),
            ("Started".into(), row.started.clone()),
        ],
        action: row.kill_url.clone(),
        button: "Kill session".into(),
        cancel_url: "/sessions".into(),
    })
}

// ---- hosts ----

#[derive(Template)]
#[template(path = "hosts.html")]
pub(crate) struct HostsPage {
    pub layout: Layout,
    pub hosts: Vec<HostRow>,
    pub revision: i64,
    pub q: String,
    pub statuses: Vec<(&'static str, bool)>,
    /// Hosts in all, and how many match (`hosts` holds the first [`LIST_ROWS`]).
    pub total: usize,
    pub matched: usize,
}

const HOST_STATUSES: [&str; 3] = ["online", "lagging", "offline"];

/// `GET /hosts?q=&status=`: `q` searches id, hostname and groups.
pub(crate) async fn hosts_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let (q, status) = query.parse(&HOST_STATUSES)?;
    let revision = app.backend.revision();
    let now = app.backend.now();
    let hosts = app.backend.hosts().await?;
    let total = hosts.len();
    let needle = q.to_lowercase();
    let matching: Vec<&Host> = hosts
        .iter()
        .filter(|h| {
            status
                .as_deref()
                .is_none_or(|s| host_status(h, revision) == s)
        })
        .filter(|h| found(&needle, &[&h.id, &h.hostname, &h.groups.join(" ")]))
        .collect();
    let matched = matching.len();
    render(&HostsPage {
        layout: Layout::new(&authed, "hosts", "Hosts"),
        hosts: matching
            .into_iter()
            .take(LIST_ROWS)
            .map(|h| HostRow::new(h, revision, now))
            .collect(),
        revision,
        statuses: status_options(&HOST_STATUSES, status.as_deref()),
        q,
        total,
        matched,
    })
}

#[derive(Template)]
#[template(path = "host.html")]
pub(crate) struct HostPage {
    pub layout: Layout,
    pub host: HostRow,
    pub sessions: Vec<SessionRow>,
}

/// `GET /hosts/{id}`.
pub(crate) async fn host_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let revision = app.backend.revision();
    let now = app.backend.now();
    let host = app.backend.host(&id).await?;
    let sessions = app
        .backend
        .sessions(&SessionFilter {
            host: Some(id.clone()),
            ..Default::default()
        })
        .await?;
    render(&HostPage {
        layout: Layout::new(&authed, "hosts", format!("Host {id}")),
        host: HostRow::new(&host, revision, now),
        sessions: session_rows(&sessions, now),
    })
}

// ---- people ----

#[derive(Debug, Clone)]
pub(crate) struct PersonRow {
    pub name: String,
    pub url: String,
    /// One of [`PERSON_STATUSES`] ([`person_status`]).
    pub status: &'static str,
    pub key_ids: String,
    pub keys: usize,
    pub grants: String,
}

impl PersonRow {
    fn new(p: &Person) -> Self {
        PersonRow {
            url: format!("/people/{}", seg(&p.name)),
            name: p.name.clone(),
            status: person_status(p),
            key_ids: p.key_ids.join(", "),
            keys: p.public_keys.len(),
            grants: p
                .grants
                .iter()
                .map(|g| format!("{}@{}", g.account, g.group))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[derive(Template)]
#[template(path = "people.html")]
pub(crate) struct PeoplePage {
    pub layout: Layout,
    pub people: Vec<PersonRow>,
    pub q: String,
    pub statuses: Vec<(&'static str, bool)>,
    /// People in all, and how many match (`people` holds the first [`LIST_ROWS`]).
    pub total: usize,
    pub matched: usize,
}

const PERSON_STATUSES: [&str; 3] = ["active", "signed-off", "disabled"];

/// `signed-off` while a sign-off of theirs is in force, else `active` or `disabled` (kept
/// out by hand, without a sign-off).
pub(crate) fn person_status(p: &Person) -> &'static str {
    if p.signed_off {
        "signed-off"
    } else if p.active {
        "active"
    } else {
        "disabled"
    }
}

/// `GET /people?q=&status=`: `q` searches names, key IDs and grants.
pub(crate) async fn people_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let (q, status) = query.parse(&PERSON_STATUSES)?;
    let people = app.backend.people().await?;
    let total = people.len();
    let needle = q.to_lowercase();
    let rows: Vec<PersonRow> = people
        .iter()
        .map(PersonRow::new)
        .filter(|p| status.as_deref().is_none_or(|s| s == p.status))
        .filter(|p| found(&needle, &[&p.name, &p.key_ids, &p.grants]))
        .collect();
    let matched = rows.len();
    render(&PeoplePage {
        layout: Layout::new(&authed, "people", "People"),
        people: rows.into_iter().take(LIST_ROWS).collect(),
        statuses: status_options(&PERSON_STATUSES, status.as_deref()),
        q,
        total,
        matched,
    })
}

#[derive(Debug, Clone)]
pub(crate) struct GrantRow {
    pub account: String,
    pub group: String,
    pub until: String,
}

/// A row of the person page's certificate table.
#[derive(Debug, Clone)]
pub(crate) struct CertificateRow {
    pub serial: u64,
    pub key_fingerprint: String,
    pub principals: String,
    pub valid_after: String,
    pub valid_before: String,
    /// `valid`, `revoked` or `not yet valid`.
    pub state: &'static str,
    pub revoke_url: String,
    /// The row's DOM id (`certificate-SERIAL`).
    pub dom_id: String,
}

impl CertificateRow {
    fn new(user: &str, c: &Certificate, now: i64) -> Self {
        CertificateRow {
            serial: c.serial,
            key_fingerprint: c.key_fingerprint.clone(),
            principals: c.principals.join(", "),
            valid_after: time_text(c.valid_after),
            valid_before: time_text(c.valid_before),
            state: if c.revoked {
                "revoked"
            } else if c.valid_after > now {
                "not yet valid"
            } else {
                "valid"
            },
            revoke_url: format!("/people/{}/certificates/{}/revoke", seg(user), c.serial),
            dom_id: format!("certificate-{}", c.serial),
        }
    }
}

#[derive(Template)]
#[template(path = "person.html")]
pub(crate) struct PersonPage {
    pub layout: Layout,
    pub name: String,
    pub active: bool,
    /// [`person_status`].
    pub status: &'static str,
    pub key_ids: Vec<String>,
    pub public_keys: Vec<String>,
    pub principals: String,
    pub grants: Vec<GrantRow>,
    pub certificates: Vec<CertificateRow>,
    pub sessions: Vec<SessionRow>,
    pub latest_signoff: Option<SignoffRow>,
    pub signoff_url: String,
    pub reenable_url: String,
    pub kill_all_url: String,
    pub timeline: Vec<TimelineRow>,
}

/// One entry of the person page's timeline.
pub(crate) struct TimelineRow {
    pub at: String,
    pub what: String,
    pub detail: String,
}

/// `GET /people/{name}`.
pub(crate) async fn person_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let person = app.backend.person(&name).await?;
    let sessions = app
        .backend
        .sessions(&SessionFilter {
            user: Some(name.clone()),
            ..Default::default()
        })
        .await?;
    let latest = app.backend.latest_signoff(&name).await?;
    let timeline = app.backend.timeline(&name).await?;
    let now = app.backend.now();
    let certificates = app
        .backend
        .certificates(&name)
        .await?
        .iter()
        .map(|c| CertificateRow::new(&name, c, now))
        .collect();
    render(&PersonPage {
        layout: Layout::new(&authed, "people", name.clone()),
        signoff_url: format!("/people/{}/signoff", seg(&name)),
        reenable_url: format!("/people/{}/reenable", seg(&name)),
        kill_all_url: format!("/people/{}/kill-sessions", seg(&name)),
        status: person_status(&person),
        name: person.name,
        active: person.active,
        key_ids: person.key_ids,
        public_keys: person.public_keys,
        principals: person.principals.join(", "),
        grants: person
            .grants
            .iter()
            .map(|g| GrantRow {
                account: g.account.clone(),
                group: g.group.clone(),
                until: g
                    .not_after
                    .map(time_text)
                    .unwrap_or_else(|| "no end".to_owned()),
            })
            .collect(),
        certificates,
        sessions: session_rows(&sessions, now),
        latest_signoff: latest.as_ref().map(SignoffRow::new),
        timeline: timeline
            .into_iter()
            .map(|t| TimelineRow {
                at: time_text(t.at),
                what: t.what,
                detail: t.detail,
            })
            .collect(),
    })
}

/// `GET /people/{name}/certificates/{serial}/revoke`: asks for confirmation.
pub(crate) async fn revoke_certificate_page_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path((name, serial)): Path<(String, u64)>,
) -> Result<Response, PageError> {
    authed.require(Role::Operator)?;
    let cert = app
        .backend
        .certificates(&name)
        .await?
        .into_iter()
        .find(|c| c.serial == serial)
        .ok_or_else(|| {
            PageError::NotFound(format!(
                "no unexpired certificate of {name} has serial {serial}"
            ))
        })?;
    let row = CertificateRow::new(&name, &cert, app.backend.now());
    render(&ConfirmPage {
        layout: Layout::new(&authed, "people", format!("Revoke certificate {serial}?")),
        question: format!(
            "Revoke certificate {serial} of {name}? Every host refuses it from its next update; sessions already open with it stay open."
        ),
        details: vec![
            ("Serial".into(), serial.to_string()),
            ("Key".into(), row.key_fingerprint.clone()),
            ("Principals".into(), row.principals.clone()),
            ("Valid until".into(), row.valid_before.clone()),
        ],
        action: row.revoke_url.clone(),
        button: "Revoke certificate".into(),
        cancel_url: format!("/people/{}", seg(&name)),
    })
}

/// `GET /people/{name}/kill-sessions`: asks for confirmation.
pub(crate) async fn kill_person_page_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    authed.require(Role::Operator)?;
    let person = app.backend.person(&name).await?;
    let sessions = app
        .backend
        .sessions(&SessionFilter {
            user: Some(name.clone()),
            ..Default::default()
        })
        .await?;
    let hosts: std::collections::BTreeSet<&str> =
        sessions.iter().map(|s| s.host_id.as_str()).collect();
    render(&ConfirmPage {
        layout: Layout::new(&authed, "sessions", format!("Kill all sessions of {name}?")),
        question: format!(
            "End every live SSH session of {} ({} now)? They can log in again unless they are signed off.",
            person.name,
            sessions.len()
        ),
        details: vec![
            ("Person".into(), person.name.clone()),
            ("Sessions".into(), sessions.len().to_string()),
            (
                "Hosts".into(),
                hosts.into_iter().collect::<Vec<_>>().join(", "),
            ),
        ],
        action: format!("/people/{}/kill-sessions", seg(&name)),
        button: "Kill all their sessions".into(),
        cancel_url: format!("/people/{}", seg(&name)),
    })
}

// ---- sign-offs ----

#[derive(Template)]
#[template(path = "signoffs.html")]
pub(crate) struct SignoffsPage {
    pub layout: Layout,
    pub signoffs: Vec<SignoffRow>,
}

/// `GET /signoffs`.
pub(crate) async fn signoffs_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
) -> Result<Response, PageError> {
    let signoffs = app.backend.signoffs().await?;
    render(&SignoffsPage {
        layout: Layout::new(&authed, "signoffs", "Sign-offs"),
        signoffs: signoffs.iter().map(SignoffRow::new).collect(),
    })
}

/// A grant awaiting approvals, as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct ApprovalRow {
    pub grant_id: i64,
    pub person: String,
    pub person_url: String,
    pub account: String,
    pub group: String,
    pub not_after: String,
    pub bytes: String,
    pub file: String,
    pub sign_command: String,
    /// (fingerprint, submitted by, when).
    pub approvals: Vec<(String, String, String)>,
}

impl ApprovalRow {
    fn new(a: &PendingApproval) -> Self {
        ApprovalRow {
            grant_id: a.grant_id,
            person: a.user.clone(),
            person_url: format!("/people/{}", seg(&a.user)),
            account: a.account.clone(),
            group: a.group.clone(),
            not_after: a.not_after.map_or_else(|| "never".to_owned(), time_text),
            bytes: a.bytes.clone(),
            file: format!("grant-{}.approval", a.grant_id),
            sign_command: a.sign_command.clone(),
            approvals: a
                .approvals
                .iter()
                .map(|m| {
                    (
                        m.fingerprint.clone(),
                        m.submitted_by.clone(),
                        time_text(m.at),
                    )
                })
                .collect(),
        }
    }
}

/// A re-enable awaiting approvals, as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct ReenableRow {
    pub signoff_id: i64,
    pub person: String,
    pub person_url: String,
    pub reenabled: bool,
    pub bytes: String,
    pub file: String,
    pub sign_command: String,
    /// (fingerprint, submitted by, when).
    pub approvals: Vec<(String, String, String)>,
}

impl ReenableRow {
    fn new(a: &PendingReenable) -> Self {
        ReenableRow {
            signoff_id: a.signoff_id,
            person: a.user.clone(),
            person_url: format!("/people/{}", seg(&a.user)),
            reenabled: a.reenabled,
            bytes: a.bytes.clone(),
            file: format!("reenable-{}.approval", a.signoff_id),
            sign_command: a.sign_command.clone(),
            approvals: a
                .approvals
                .iter()
                .map(|m| {
                    (
                        m.fingerprint.clone(),
                        m.submitted_by.clone(),
                        time_text(m.at),
                    )
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "approvals.html")]
pub(crate) struct ApprovalsPage {
    pub layout: Layout,
    pub approvals: Vec<ApprovalRow>,
    pub reenables: Vec<ReenableRow>,
}

/// Grants and re-enables awaiting approvals: the exact bytes to sign and the command that
/// signs them.
pub(crate) async fn approvals_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
) -> Result<Response, PageError> {
    let approvals = app.backend.approvals().await?;
    let reenables = app.backend.reenables().await?;
    render(&ApprovalsPage {
        layout: Layout::new(&authed, "approvals", "Approvals"),
        approvals: approvals.iter().map(ApprovalRow::new).collect(),
        reenables: reenables.iter().map(ReenableRow::new).collect(),
    })
}

#[derive(Debug, Clone)]
pub(crate) struct SignoffHostRow {
    pub host: String,
    pub url: String,
    pub state: &'static str,
    pub confirmed_at: String,
    pub killed: Vec<String>,
    pub error: String,
}

#[derive(Template)]
#[template(path = "signoff.html")]
pub(crate) struct SignoffPage {
    pub layout: Layout,
    pub signoff: SignoffRow,
    pub completed_at: String,
    pub pending: usize,
    pub offline: usize,
    pub hosts: Vec<SignoffHostRow>,
    pub killed_total: usize,
}

/// `GET /signoffs/{id}`.
pub(crate) async fn signoff_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::NotFound(format!("no sign-off {id:?}")))?;
    let s = app.backend.signoff(id).await?;
    let count = |state| s.hosts.iter().filter(|h| h.state == state).count();
    render(&SignoffPage {
        layout: Layout::new(&authed, "signoffs", format!("Sign-off of {}", s.user)),
        signoff: SignoffRow::new(&s),
        completed_at: opt_time(s.completed_at),
        pending: count(SignoffHostState::Pending),
        offline: count(SignoffHostState::Offline),
        killed_total: s.hosts.iter().map(|h| h.killed_sessions.len()).sum(),
        hosts: s
            .hosts
            .iter()
            .map(|h| SignoffHostRow {
                url: format!("/hosts/{}", seg(&h.host)),
                host: h.host.clone(),
                state: h.state.as_str(),
                confirmed_at: opt_time(h.confirmed_at),
                killed: h.killed_sessions.clone(),
                error: h.last_error.clone().unwrap_or_default(),
            })
            .collect(),
    })
}

// ---- audit ----

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    before: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub(crate) struct AuditPage {
    pub layout: Layout,
    pub filter: String,
    pub rows: Vec<AuditRow>,
    pub chain_rows: i64,
    pub broken: Option<(i64, String)>,
    pub older_url: String,
}

/// `GET /audit?filter=&before=`.
pub(crate) async fn audit_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let before =
        match q.before.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse::<i64>().map_err(|_| {
                PageError::Invalid(format!("before={s:?} is not a sequence number"))
            })?),
            None => None,
        };
    let filter = q.filter.trim().to_owned();
    let entries = app.backend.audit(&filter, before, AUDIT_PAGE).await?;
    let check = app.backend.verify_audit().await?;
    let older_url = match entries.last() {
        Some(last) if entries.len() as i64 == AUDIT_PAGE => {
            format!("/audit?filter={}&before={}", query_value(&filter), last.seq)
        }
        _ => String::new(),
    };
    render(&AuditPage {
        layout: Layout::new(&authed, "audit", "Audit log"),
        rows: entries
            .into_iter()
            .map(|e| AuditRow {
                seq: e.seq,
                at: time_text(e.at),
                actor: e.actor,
                action: e.action,
                target: e.target,
                reason: e.reason,
            })
            .collect(),
        filter,
        chain_rows: check.rows,
        broken: check.broken,
        older_url,
    })
}

// ---- operators ----

#[derive(Debug, Clone)]
pub(crate) struct OperatorRow {
    pub name: String,
    pub role: Role,
    pub created: String,
    pub disabled: String,
    pub role_url: String,
    pub disable_url: String,
    pub is_self: bool,
}

#[derive(Template)]
#[template(path = "operators.html")]
pub(crate) struct OperatorsPage {
    pub layout: Layout,
    pub operators: Vec<OperatorRow>,
    pub roles: [Role; 3],
    /// A just-created account: (name, password), shown once.
    pub created: Option<(String, String)>,
}

/// `GET /operators` (admins).
pub(crate) async fn operators_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
) -> Result<Response, PageError> {
    operators_page(&app, &authed, None).await
}

/// The Operators page, with a just-created account's password if any.
pub(crate) async fn operators_page<B: Backend>(
    app: &App<B>,
    authed: &Authed,
    created: Option<(String, String)>,
) -> Result<Response, PageError> {
    authed.require(Role::Admin)?;
    let operators = app.backend.operators().await?;
    render(&OperatorsPage {
        layout: Layout::new(authed, "operators", "Operators"),
        operators: operators
            .iter()
            .map(|o: &Operator| OperatorRow {
                role_url: format!("/operators/{}/role", seg(&o.name)),
                disable_url: format!("/operators/{}/disable", seg(&o.name)),
                is_self: o.name == authed.operator.name,
                name: o.name.clone(),
                role: o.role,
                created: time_text(o.created_at),
                disabled: opt_time(o.disabled_at),
            })
            .collect(),
        roles: Role::ALL,
        created,
    })
}

/// Anything else.
pub(crate) async fn not_found_handler() -> PageError {
    PageError::NotFound("there is no page here".to_owned())
}

#[cfg(test)]
mod tests {
    use super::applied_revision_text;

    #[test]
    fn applied_revision_reads_the_same_everywhere() {
        assert_eq!(applied_revision_text(0, 210), "0 of 210 (210 behind)");
        assert_eq!(applied_revision_text(4, 5), "4 of 5 (1 behind)");
        assert_eq!(applied_revision_text(5, 5), "5 of 5 (up to date)");
        assert_eq!(applied_revision_text(0, 0), "0 of 0 (up to date)");
        assert_eq!(applied_revision_text(7, 5), "7 of 5 (ahead)");
    }
}
