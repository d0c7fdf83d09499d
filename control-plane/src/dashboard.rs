//! The dashboard's [`Backend`], implemented with the service layer: each action reads the
//! operator again from the store, checks their role (fail closed: an unknown, disabled or
//! too-weak operator is refused) and calls the same service method as the API and the
//! CLI, which audits it as `operator:NAME`.

use std::collections::HashMap;
use std::net::IpAddr;

use signoff_dashboard::backend::{
    AlertEntry, ApprovalMark, AuditCheck, AuditEntry, Backend, BackendError, BackendResult,
    Certificate, Change, FeedEntry, Grant, HistoryFilter, HistoryPage, Host, LoginFailures,
    Operator, PendingApproval, PendingReenable, Person, Role, Session, SessionFilter,
    SessionLifetime, Signoff, SignoffHost, SignoffHostState, TimelineEntry, WebSession,
};
use tokio::sync::{broadcast, mpsc};

use crate::model::UserStatus;
use crate::service::{self, OperatorAccount, Service, ServiceError, SessionRecord, SignoffRecord};
use crate::store;

/// The audit reason of a kill from the dashboard, which asks for confirmation, not a
/// reason.
const KILL_REASON: &str = "killed from the dashboard";
/// The audit reason of a certificate revoked from the dashboard (confirmed, no reason).
const REVOKE_CERTIFICATE_REASON: &str = "certificate revoked from the dashboard";

/// The service layer, as the dashboard sees it.
#[derive(Debug, Clone)]
pub struct DashboardBackend {
    service: Service,
}

impl DashboardBackend {
    /// A backend over `service`.
    pub fn new(service: Service) -> Self {
        DashboardBackend { service }
    }

    /// The operator `by` as stored now, if enabled and at least `needed`.
    async fn authorize(&self, by: &Operator, needed: Role) -> BackendResult<OperatorAccount> {
        let account = self
            .service
            .get_operator(&by.name)
            .await
            .map_err(|e| match e {
                ServiceError::NotFound { .. } => {
                    BackendError::Forbidden(format!("operator {} does not exist", by.name))
                }
                e => backend_error(e),
            })?;
        if account.disabled_at.is_some() {
            return Err(BackendError::Forbidden(format!(
                "operator {} is disabled",
                by.name
            )));
        }
        if account.role < needed {
            return Err(BackendError::Forbidden(format!(
                "this needs the {} role; {} is {}",
                needed.as_str(),
                account.name,
                account.role.as_str()
            )));
        }
        Ok(account)
    }
}

fn backend_error(e: ServiceError) -> BackendError {
    match e {
        ServiceError::Invalid(i) => BackendError::Invalid(i.to_string()),
        e @ ServiceError::NotFound { .. } => BackendError::NotFound(e.to_string()),
        ServiceError::Conflict(m) => BackendError::Conflict(m),
        e => {
            tracing::warn!("dashboard: service error: {e}");
            BackendError::Internal(e.to_string())
        }
    }
}

fn limits(l: SessionLifetime) -> service::WebSessionLimits {
    service::WebSessionLimits {
        idle_secs: l.idle_secs,
        max_secs: l.max_secs,
    }
}

fn web_session(s: service::WebSession) -> WebSession {
    WebSession {
        operator: s.operator,
        csrf: s.csrf,
        created_at: s.created_at,
        last_seen: s.last_seen,
    }
}

fn login_failures(f: service::LoginFailures) -> LoginFailures {
    LoginFailures {
        failures: u32::try_from(f.failures.max(0)).unwrap_or(u32::MAX),
        last: f.last_failure,
    }
}

fn operator(a: OperatorAccount) -> Operator {
    Operator {
        name: a.name,
        role: a.role,
        created_at: a.created_at,
        disabled_at: a.disabled_at,
    }
}

fn session(s: SessionRecord) -> Session {
    Session {
        host_id: s.host_id,
        id: s.id,
        account: s.account,
        user: s.user,
        key_id: s.key_id,
        serial: s.serial,
        source_address: s.source_address,
        source_port: s.source_port,
        started_at: s.started_at,
        tty: s.tty,
        state: s.state,
        ended_at: s.ended_at,
        lingering: s
            .lingering
            .into_iter()
            .map(|p| {
                let who = if p.account.is_empty() {
                    format!("uid {}", p.uid)
                } else {
                    p.account
                };
                format!("{} {who}: {}", p.pid, p.command)
            })
            .collect(),
    }
}

fn signoff(r: SignoffRecord) -> Signoff {
    Signoff {
        id: r.id,
        user: r.user,
        reason: r.reason,
        actor: r.actor,
        created_at: r.created_at,
        completed_at: r.completed_at,
        in_force: r.in_force,
        hosts: r
            .hosts
            .into_iter()
            .map(|h| SignoffHost {
                host: h.host,
                state: match h.state {
                    service::SignoffHostState::Confirmed => SignoffHostState::Confirmed,
                    service::SignoffHostState::Pending => SignoffHostState::Pending,
                    service::SignoffHostState::Offline => SignoffHostState::Offline,
                },
                confirmed_at: h.confirmed_at,
                killed_sessions: h.killed_sessions,
                last_error: h.last_error,
            })
            .collect(),
    }
}

/// What the agent reports about itself: read beside the host model, as telemetry (like
/// the metrics endpoint does), not a decision.
#[derive(Debug, Default)]
struct AgentFacts {
    online: bool,
    agent_version: Option<String>,
    cert_not_after: Option<i64>,
}

impl Service {
    /// What every live host's agent reports about itself (connected, version, client
    /// certificate expiry): telemetry, read outside the model.
    pub async fn agent_facts(&self) -> service::Result<Vec<store::dashboard::AgentFacts>> {
        let mut c = self.store().conn().await?;
        Ok(store::dashboard::agent_facts(c.db()).await?)
    }

    /// The id of the newest refused attempt or alert in the events feed, 0 before the
    /// first.
    pub async fn newest_refusal_or_alert(&self) -> service::Result<i64> {
        let mut c = self.store().conn().await?;
        Ok(store::dashboard::newest_refusal_or_alert(c.db()).await?)
    }
}

impl DashboardBackend {
    async fn agent_facts(&self) -> BackendResult<HashMap<String, AgentFacts>> {
        let rows = self.service.agent_facts().await.map_err(backend_error)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    AgentFacts {
                        online: r.online,
                        agent_version: r.agent_version,
                        cert_not_after: r.cert_not_after,
                    },
                )
            })
            .collect())
    }

    fn host(h: crate::model::Host, facts: Option<&AgentFacts>) -> Host {
        let facts_default = AgentFacts::default();
        let f = facts.unwrap_or(&facts_default);
        Host {
            id: h.id,
            hostname: h.hostname,
            groups: h.groups,
            online: f.online,
            acked_revision: h.acked_revision,
            agent_version: f.agent_version.clone(),
            last_contact: h.last_contact,
            cert_not_after: f.cert_not_after,
        }
    }

    fn person(u: crate::model::User, grants: Vec<Grant>, signed_off: bool) -> Person {
        Person {
            name: u.name,
            active: u.status == UserStatus::Active,
            signed_off,
            key_ids: u.key_ids,
            public_keys: u.public_keys,
            principals: u.principals,
            grants,
        }
    }
}

fn grant(g: &crate::model::Grant) -> Grant {
    Grant {
        account: g.account.clone(),
        group: g.group.clone(),
        not_after: g.not_after,
    }
}

impl Backend for DashboardBackend {
    fn now(&self) -> i64 {
        self.service.now()
    }

    fn revision(&self) -> i64 {
        self.service.revision()
    }

    async fn authenticate(&self, name: &str, password: &str) -> BackendResult<Option<Operator>> {
        Ok(self
            .service
            .authenticate_operator(name, password)
            .await
            .map_err(backend_error)?
            .map(operator))
    }

    async fn operator(&self, name: &str) -> BackendResult<Option<Operator>> {
        match self.service.get_operator(name).await {
            Ok(a) if a.disabled_at.is_none() => Ok(Some(operator(a))),
            Ok(_) | Err(ServiceError::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend_error(e)),
        }
    }

    async fn hosts(&self) -> BackendResult<Vec<Host>> {
        let facts = self.agent_facts().await?;
        let hosts = self.service.list_hosts().await.map_err(backend_error)?;
        Ok(hosts
            .into_iter()
            .map(|h| {
                let f = facts.get(&h.id);
                Self::host(h, f)
            })
            .collect())
    }

    async fn host(&self, id: &str) -> BackendResult<Host> {
        let h = self.service.get_host(id).await.map_err(backend_error)?;
        let facts = self.agent_facts().await?;
        let f = facts.get(&h.id);
        Ok(Self::host(h, f))
    }

    async fn sessions(&self, filter: &SessionFilter) -> BackendResult<Vec<Session>> {
        let filter = service::SessionFilter {
            user: filter.user.clone(),
            host: filter.host.clone(),
            account: filter.account.clone(),
            ..service::SessionFilter::default()
        };
        Ok(self
            .service
            .list_sessions(&filter)
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(session)
            .collect())
    }

    async fn session_history(
        &self,
        filter: &HistoryFilter,
        after: Option<&str>,
        limit: u32,
    ) -> BackendResult<HistoryPage> {
        let filter = service::SessionFilter {
            user: filter.user.clone(),
            host: filter.host.clone(),
            account: filter.account.clone(),
            state: Some(service::ANY_STATE.to_owned()),
            source: filter.source.map(|a| a.to_string()),
            started_after: filter.started_after,
            started_before: filter.started_before,
        };
        let after = after
            .map(service::SessionCursor::from_token)
            .transpose()
            .map_err(|e| BackendError::Invalid(e.to_string()))?;
        let (sessions, next) = self
            .service
            .list_sessions_page(&filter, &service::SessionPage { limit, after })
            .await
            .map_err(backend_error)?;
        Ok(HistoryPage {
            sessions: sessions.into_iter().map(session).collect(),
            next: next.map(|c| c.to_token()),
        })
    }

    async fn logins_per_hour(&self, now: i64) -> BackendResult<Vec<u64>> {
        self.service
            .logins_per_hour(now, 24)
            .await
            .map_err(backend_error)
    }

    async fn people(&self) -> BackendResult<Vec<Person>> {
        let users = self.service.list_users().await.map_err(backend_error)?;
        let mut grants: HashMap<String, Vec<Grant>> = HashMap::new();
        for g in self
            .service
            .list_grants(None)
            .await
            .map_err(backend_error)?
        {
            grants.entry(g.user.clone()).or_default().push(grant(&g));
        }
        let signed_off = self
            .service
            .signed_off_users()
            .await
            .map_err(backend_error)?;
        Ok(users
            .into_iter()
            .map(|u| {
                let g = grants.remove(&u.name).unwrap_or_default();
                let off = signed_off.contains(&u.name);
                Self::person(u, g, off)
            })
            .collect())
    }

    async fn person(&self, name: &str) -> BackendResult<Person> {
        let u = self.service.get_user(name).await.map_err(backend_error)?;
        let grants = self
            .service
            .list_grants(Some(name))
            .await
            .map_err(backend_error)?;
        let signed_off = self
            .service
            .latest_signoff(name)
            .await
            .map_err(backend_error)?
            .is_some_and(|s| s.in_force);
        Ok(Self::person(
            u,
            grants.iter().map(grant).collect(),
            signed_off,
        ))
    }

    async fn certificates(&self, user: &str) -> BackendResult<Vec<Certificate>> {
        Ok(self
            .service
            .list_certificates(user)
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(|c| Certificate {
                serial: c.serial,
                key_fingerprint: c.key_fingerprint,
                principals: c.principals,
                valid_after: c.valid_after,
                valid_before: c.valid_before,
                revoked: c.revoked,
            })
            .collect())
    }

    async fn revoke_certificate(
        &self,
        by: &Operator,
        user: &str,
        serial: u64,
    ) -> BackendResult<()> {
        let who = self.authorize(by, Role::Operator).await?;
        self.service
            .revoke_certificate(&who.actor(), user, serial, REVOKE_CERTIFICATE_REASON)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn signoffs(&self) -> BackendResult<Vec<Signoff>> {
        Ok(self
            .service
            .list_signoffs()
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(signoff)
            .collect())
    }

    async fn approvals(&self) -> BackendResult<Vec<PendingApproval>> {
        Ok(self
            .service
            .pending_approvals()
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(|a| PendingApproval {
                grant_id: a.grant.id,
                user: a.grant.user,
                account: a.grant.account,
                group: a.grant.group,
                not_after: a.grant.not_after,
                bytes: a.bytes,
                sign_command: a.sign_command,
                approvals: a
                    .approvals
                    .into_iter()
                    .map(|r| ApprovalMark {
                        fingerprint: r.fingerprint,
                        submitted_by: r.submitted_by,
                        at: r.created_at,
                    })
                    .collect(),
            })
            .collect())
    }

    async fn reenables(&self) -> BackendResult<Vec<PendingReenable>> {
        Ok(self
            .service
            .pending_reenables()
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(|a| PendingReenable {
                signoff_id: a.signoff_id,
                user: a.user,
                reenabled: a.reenabled,
                bytes: a.bytes,
                sign_command: a.sign_command,
                approvals: a
                    .approvals
                    .into_iter()
                    .map(|r| ApprovalMark {
                        fingerprint: r.fingerprint,
                        submitted_by: r.submitted_by,
                        at: r.created_at,
                    })
                    .collect(),
            })
            .collect())
    }

    async fn signoff(&self, id: i64) -> BackendResult<Signoff> {
        self.service
            .get_signoff(id)
            .await
            .map(signoff)
            .map_err(backend_error)
    }

    async fn latest_signoff(&self, user: &str) -> BackendResult<Option<Signoff>> {
        Ok(self
            .service
            .latest_signoff(user)
            .await
            .map_err(backend_error)?
            .map(signoff))
    }

    async fn audit(
        &self,
        filter: &str,
        before: Option<i64>,
        limit: i64,
    ) -> BackendResult<Vec<AuditEntry>> {
        Ok(self
            .service
            .audit_log(filter, before, limit)
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(|r| AuditEntry {
                seq: r.seq,
                at: r.at,
                actor: r.actor,
                action: r.action,
                target: r.target,
                reason: r.reason,
            })
            .collect())
    }

    async fn verify_audit(&self) -> BackendResult<AuditCheck> {
        let v = self.service.verify_audit().await.map_err(backend_error)?;
        Ok(AuditCheck {
            rows: v.rows,
            broken: v.broken.map(|b| (b.seq, b.problem)),
        })
    }

    async fn operators(&self) -> BackendResult<Vec<Operator>> {
        Ok(self
            .service
            .list_operators()
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(operator)
            .collect())
    }

    async fn kill_session(&self, by: &Operator, host: &str, id: &str) -> BackendResult<()> {
        let who = self.authorize(by, Role::Operator).await?;
        self.service
            .kill_session(&who.actor(), host, id, KILL_REASON)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn kill_person_sessions(&self, by: &Operator, user: &str) -> BackendResult<usize> {
        let who = self.authorize(by, Role::Operator).await?;
        Ok(self
            .service
            .kill_user_sessions(&who.actor(), user, KILL_REASON)
            .await
            .map_err(backend_error)?
            .len())
    }

    async fn sign_off(&self, by: &Operator, user: &str, reason: &str) -> BackendResult<i64> {
        let who = self.authorize(by, Role::Operator).await?;
        Ok(self
            .service
            .sign_off(&who.actor(), user, reason)
            .await
            .map_err(backend_error)?
            .id)
    }

    async fn reenable(&self, by: &Operator, user: &str, reason: &str) -> BackendResult<()> {
        let who = self.authorize(by, Role::Admin).await?;
        self.service
            .reenable_user(&who.actor(), user, reason)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn create_operator(
        &self,
        by: &Operator,
        name: &str,
        role: Role,
    ) -> BackendResult<String> {
        let who = self.authorize(by, Role::Admin).await?;
        Ok(self
            .service
            .create_operator(&who.actor(), name, role, "")
            .await
            .map_err(backend_error)?
            .password)
    }

    async fn set_operator_role(&self, by: &Operator, name: &str, role: Role) -> BackendResult<()> {
        let who = self.authorize(by, Role::Admin).await?;
        self.service
            .set_operator_role(&who.actor(), name, role, "")
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn disable_operator(&self, by: &Operator, name: &str) -> BackendResult<()> {
        let who = self.authorize(by, Role::Admin).await?;
        self.service
            .disable_operator(&who.actor(), name, "")
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn feed(&self, limit: usize) -> BackendResult<Vec<FeedEntry>> {
        let limit = i64::try_from(limit).unwrap_or(1000);
        let events = self
            .service
            .latest_events(&["session_started", "refused_attempt"], limit)
            .await
            .map_err(backend_error)?;
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
        Ok(events
            .iter()
            .map(|e| {
                let refused = e.kind == "refused_attempt";
                let d = &e.data;
                FeedEntry {
                    at: e.at,
                    refused,
                    host: text(d, "host_id"),
                    account: text(d, "account"),
                    person: d[if refused { "person" } else { "user" }]
                        .as_str()
                        .map(str::to_owned),
                    source: text(d, "source_address"),
                    reason: if refused {
                        text(d, "reason")
                    } else {
                        String::new()
                    },
                }
            })
            .collect())
    }

    async fn timeline(&self, name: &str) -> BackendResult<Vec<TimelineEntry>> {
        let events = self
            .service
            .person_timeline(name, 100)
            .await
            .map_err(backend_error)?;
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
        Ok(events
            .iter()
            .map(|e| {
                let d = &e.data;
                let (what, detail) = match e.kind.as_str() {
                    "session_started" => (
                        "login".to_owned(),
                        format!(
                            "{} on {} from {}",
                            text(d, "account"),
                            text(d, "host_id"),
                            text(d, "source_address")
                        ),
                    ),
                    "refused_attempt" => (
                        "refused".to_owned(),
                        format!(
                            "{} on {} from {} ({})",
                            text(d, "account"),
                            text(d, "host_id"),
                            text(d, "source_address"),
                            text(d, "reason").replace('_', " ")
                        ),
                    ),
                    "alert" => ("alert".to_owned(), text(d, "summary")),
                    _ => (
                        text(d, "action"),
                        format!("by {}: {}", text(d, "actor"), text(d, "reason")),
                    ),
                };
                TimelineEntry {
                    at: e.at,
                    what,
                    detail,
                }
            })
            .collect())
    }

    async fn open_alerts(&self) -> BackendResult<Vec<AlertEntry>> {
        let alerts = self
            .service
            .list_alerts(true, 100)
            .await
            .map_err(backend_error)?;
        Ok(alerts
            .into_iter()
            .map(|a| AlertEntry {
                cursor: a.cursor,
                at: a.at,
                rule: a.alert["rule"].as_str().unwrap_or("").to_owned(),
                summary: a.alert["summary"].as_str().unwrap_or("").to_owned(),
            })
            .collect())
    }

    async fn acknowledge_alert(&self, by: &Operator, cursor: i64) -> BackendResult<()> {
        let who = self.authorize(by, Role::Operator).await?;
        self.service
            .acknowledge_alert(&who.actor(), cursor, "acknowledged on the dashboard")
            .await
            .map_err(backend_error)
    }

    fn changes(&self) -> mpsc::Receiver<Change> {
        let (tx, rx) = mpsc::channel(64);
        let mut sessions = self.service.watch_sessions();
        // Refused attempts and alerts are rows of the events feed, not session events:
        // looked for every second (one indexed query), so the overview's feed is live.
        let service = self.service.clone();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut newest: Option<i64> = None;
        let mut signoffs = self.service.watch_signoffs();
        let mut revisions = self.service.subscribe();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    event = sessions.recv() => match event {
                        // Missed events still mean "sessions changed".
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Change::Sessions,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    changed = signoffs.changed() => match changed {
                        Ok(()) => Change::Signoffs,
                        Err(_) => return,
                    },
                    changed = revisions.changed() => match changed {
                        Ok(()) => Change::Fleet,
                        Err(_) => return,
                    },
                    _ = tick.tick() => {
                        // A failed look is no change; the next one tells.
                        let latest = service.newest_refusal_or_alert().await.unwrap_or(0);
                        let before = newest.replace(latest);
                        if before.is_none_or(|b| b >= latest) {
                            continue;
                        }
                        Change::Sessions
                    }
                    () = tx.closed() => return,
                };
                // A full channel means the page has a refresh queued already.
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(change) {
                    return;
                }
            }
        });
        rx
    }

    async fn create_web_session(
        &self,
        id: &str,
        session: &WebSession,
        lifetime: SessionLifetime,
    ) -> BackendResult<()> {
        self.service
            .create_web_session(
                id,
                &session.operator,
                &session.csrf,
                session.created_at,
                limits(lifetime),
            )
            .await
            .map_err(backend_error)
    }

    async fn web_session(
        &self,
        id: &str,
        now: i64,
        lifetime: SessionLifetime,
    ) -> BackendResult<Option<WebSession>> {
        Ok(self
            .service
            .web_session(id, now, limits(lifetime))
            .await
            .map_err(backend_error)?
            .map(web_session))
    }

    async fn web_session_is_live(
        &self,
        id: &str,
        now: i64,
        lifetime: SessionLifetime,
    ) -> BackendResult<bool> {
        self.service
            .web_session_is_live(id, now, limits(lifetime))
            .await
            .map_err(backend_error)
    }

    async fn end_web_session(&self, id: &str) -> BackendResult<()> {
        self.service
            .end_web_session(id)
            .await
            .map_err(backend_error)
    }

    async fn login_failures(
        &self,
        name: &str,
        ip: Option<IpAddr>,
    ) -> BackendResult<Option<LoginFailures>> {
        Ok(self
            .service
            .login_failures(name, ip)
            .await
            .map_err(backend_error)?
            .map(login_failures))
    }

    async fn record_login_failure(
        &self,
        name: &str,
        ip: Option<IpAddr>,
        now: i64,
        forget_before: i64,
    ) -> BackendResult<LoginFailures> {
        self.service
            .record_login_failure(name, ip, now, forget_before)
            .await
            .map(login_failures)
            .map_err(backend_error)
    }

    async fn clear_login_failures(&self, name: &str, ip: Option<IpAddr>) -> BackendResult<()> {
        self.service
            .clear_login_failures(name, ip)
            .await
            .map_err(backend_error)
    }
}

/// The dashboard's router over `service`, with the session and cookie settings of
/// `config`.
pub fn router(service: Service, config: &crate::config::Config) -> axum::Router {
    let settings = &config.dashboard;
    let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    signoff_dashboard::router(
        DashboardBackend::new(service),
        signoff_dashboard::DashboardConfig {
            secure_cookies: settings.secure_cookies,
            session_idle_secs: secs(settings.session_idle),
            session_max_secs: secs(settings.session_max),
            trusted_proxies: signoff_dashboard::TrustedProxies::new(
                config.http.trusted_proxies.clone(),
            ),
            ..Default::default()
        },
    )
}
