//! The narrow interface the dashboard needs from the control plane, with its own plain
//! data types. The control plane implements [`Backend`] with its service layer, which
//! checks the operator's role again and writes the audit row (`operator:NAME`): the
//! dashboard never touches the store.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// What an operator may do. Ordered: each role may do everything the one before may. The
/// one role type: the control plane's operator accounts and its checks use it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page.
    Viewer,
    /// Also kills sessions and signs people off.
    Operator,
    /// Also re-enables people and manages operators.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// `viewer`, `operator` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named `s`, if any.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator account: a member of the security staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Login name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once disabled; a disabled operator cannot log in or act.
    pub disabled_at: Option<i64>,
}

/// A host and its agent, as the Hosts page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Id (the name in its agent's certificate).
    pub id: String,
    /// Hostname, as enrolled (free text: may contain anything).
    pub hostname: String,
    /// Host groups.
    pub groups: Vec<String>,
    /// Whether its agent holds a sync stream now.
    pub online: bool,
    /// The revision its agent has applied.
    pub acked_revision: i64,
    /// The agent's version, once it reported it.
    pub agent_version: Option<String>,
    /// Unix seconds of its agent's last message.
    pub last_contact: Option<i64>,
    /// Unix seconds at which its agent's client certificate expires.
    pub cert_not_after: Option<i64>,
}

/// An SSH session on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The host.
    pub host_id: String,
    /// Unique on the host.
    pub id: String,
    /// The Unix account.
    pub account: String,
    /// The person the certificate's key ID belongs to, if known.
    pub user: Option<String>,
    /// Certificate key ID (empty for a plain key).
    pub key_id: String,
    /// Certificate serial (0 for none).
    pub serial: u64,
    /// Client address.
    pub source_address: String,
    /// Client port.
    pub source_port: u32,
    /// Unix seconds.
    pub started_at: i64,
    /// `pts/N`, or empty for a session without a terminal.
    pub tty: String,
    /// `live`; `lingering` when its connection ended but processes of it remain; or
    /// `unknown` while its host's agent is disconnected.
    pub state: String,
    /// While lingering: what the login left running, one `PID account: command` each.
    pub lingering: Vec<String>,
    /// Unix seconds, once ended (`state` is then `ended`).
    pub ended_at: Option<i64>,
}

/// Which sessions to list; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SessionFilter {
    /// Only this person's.
    #[serde(default)]
    pub user: Option<String>,
    /// Only on this host.
    #[serde(default)]
    pub host: Option<String>,
    /// Only as this Unix account.
    #[serde(default)]
    pub account: Option<String>,
}

/// Which sessions a history search lists, live and ended alike; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only this person's.
    pub user: Option<String>,
    /// Only on this host.
    pub host: Option<String>,
    /// Only as this Unix account.
    pub account: Option<String>,
    /// Only from this client address.
    pub source: Option<IpAddr>,
    /// Only started at or after this Unix time.
    pub started_after: Option<i64>,
    /// Only started before this Unix time (later than `started_after`).
    pub started_before: Option<i64>,
}

/// One page of a history search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// Newest first.
    pub sessions: Vec<Session>,
    /// The opaque cursor of the next, older, page; `None` on the last page.
    pub next: Option<String>,
}

/// A grant: the person may log in as `account` on the hosts of `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Unix account.
    pub account: String,
    /// Host group.
    pub group: String,
    /// Unix seconds after which it no longer holds.
    pub not_after: Option<i64>,
}

/// A person who may log in to hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Name.
    pub name: String,
    /// Whether they may log in (false once signed off or disabled).
    pub active: bool,
    /// Whether a sign-off of theirs is in force (signed off and not re-enabled since).
    pub signed_off: bool,
    /// Certificate key IDs that identify them.
    pub key_ids: Vec<String>,
    /// Plain public keys (OpenSSH lines) they may use.
    pub public_keys: Vec<String>,
    /// Certificate principals that are theirs.
    pub principals: Vec<String>,
    /// Where they may log in.
    pub grants: Vec<Grant>,
}

/// A certificate signoff's own CA issued, not yet expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Serial (unique per CA; what revoking it names).
    pub serial: u64,
    /// `SHA256:…` of the certified key.
    pub key_fingerprint: String,
    /// Principals it carries.
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: i64,
    /// Unix seconds.
    pub valid_before: i64,
    /// Whether its serial is revoked.
    pub revoked: bool,
}

/// Where one host stands on a sign-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignoffHostState {
    /// Applied it and ended every session of the person.
    Confirmed,
    /// Connected, not confirmed yet.
    Pending,
    /// Its agent is not connected; it converges when it returns.
    Offline,
}

impl SignoffHostState {
    /// `confirmed`, `pending` or `offline`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignoffHostState::Confirmed => "confirmed",
            SignoffHostState::Pending => "pending",
            SignoffHostState::Offline => "offline",
        }
    }
}

/// One host's part in a sign-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignoffHost {
    /// The host id.
    pub host: String,
    /// Where it stands.
    pub state: SignoffHostState,
    /// Unix seconds of its confirmation.
    pub confirmed_at: Option<i64>,
    /// Sessions it ended for this sign-off.
    pub killed_sessions: Vec<String>,
    /// What it reported when it could not enforce the sign-off.
    pub last_error: Option<String>,
}

/// A sign-off and its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signoff {
    /// Its id.
    pub id: i64,
    /// The person.
    pub user: String,
    /// Why.
    pub reason: String,
    /// Who (`operator:NAME`, `token:NAME`, `cli:USER`).
    pub actor: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds at which every host had confirmed.
    pub completed_at: Option<i64>,
    /// False once the person was re-enabled.
    pub in_force: bool,
    /// The hosts it waits for.
    pub hosts: Vec<SignoffHost>,
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What (`user.create`, `session.kill`, …).
    pub action: String,
    /// On what.
    pub target: String,
    /// Why, as given.
    pub reason: String,
}

/// The result of checking the audit log's hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    /// Rows that verified.
    pub rows: i64,
    /// The first broken row and what is wrong with it.
    pub broken: Option<(i64, String)>,
}

/// One entry of the overview's live feed: a login, or an attempt sshd refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// Unix seconds.
    pub at: i64,
    /// True for a refused attempt, false for a login.
    pub refused: bool,
    /// The host.
    pub host: String,
    /// The unix account.
    pub account: String,
    /// The person, when the key names one.
    pub person: Option<String>,
    /// The client's address.
    pub source: String,
    /// Why sshd refused (`revoked`, `principal_refused`, …); empty for a login.
    pub reason: String,
}

/// An alert raised by the control plane's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEntry {
    /// Its id (the event's cursor).
    pub cursor: i64,
    /// Unix seconds.
    pub at: i64,
    /// The rule (`signed_off_attempt`, `privileged_login`, …).
    pub rule: String,
    /// One line for a human.
    pub summary: String,
}

/// One entry of a person's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Unix seconds.
    pub at: i64,
    /// `login`, `refused`, `alert`, or the audit action (`user.signoff`, …).
    pub what: String,
    /// One line: host, account and source; the alert's summary; the audit reason.
    pub detail: String,
}

/// Something the pages show has changed; open pages re-render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A session started or ended, or a host's sessions became unknown.
    Sessions,
    /// A sign-off's progress moved.
    Signoffs,
    /// People, hosts or grants changed (a new revision).
    Fleet,
}

impl Change {
    /// The SSE event name.
    pub fn event_name(self) -> &'static str {
        match self {
            Change::Sessions => "sessions",
            Change::Signoffs => "signoffs",
            Change::Fleet => "fleet",
        }
    }
}

/// Why the backend refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The input is not acceptable; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The change conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// The operator's role does not allow it (or the operator is disabled).
    #[error("{0}")]
    Forbidden(String),
    /// The control plane failed; details are in its log.
    #[error("{0}")]
    Internal(String),
}

/// A grant awaiting approvers' signatures, with the exact bytes they sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    /// The grant's id.
    pub grant_id: i64,
    /// The person.
    pub user: String,
    /// The Unix account.
    pub account: String,
    /// The host group.
    pub group: String,
    /// Unix seconds; `None` for never.
    pub not_after: Option<i64>,
    /// The canonical bytes approvers sign (text).
    pub bytes: String,
    /// The `ssh-keygen -Y sign` command that signs them, saved as `grant-ID.approval`.
    pub sign_command: String,
    /// The approvals collected so far (hosts count those of their own approvers).
    pub approvals: Vec<ApprovalMark>,
}

/// A re-enable awaiting approvers' signatures (issue 20): hosts with approvals keep the
/// person out until enough of their approvers signed these bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReenable {
    /// The sign-off being undone.
    pub signoff_id: i64,
    /// The person.
    pub user: String,
    /// Whether they were re-enabled already (else approvals are collected in advance).
    pub reenabled: bool,
    /// The canonical bytes approvers sign (text).
    pub bytes: String,
    /// The `ssh-keygen -Y sign` command that signs them, saved as `reenable-ID.approval`.
    pub sign_command: String,
    /// The approvals collected so far (hosts count those of their own approvers).
    pub approvals: Vec<ApprovalMark>,
}

/// One approval of a grant or a re-enable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalMark {
    /// `SHA256:…` of the signing key.
    pub fingerprint: String,
    /// Who submitted it.
    pub submitted_by: String,
    /// Unix seconds.
    pub at: i64,
}

/// Result of a backend call.
pub type BackendResult<T> = Result<T, BackendError>;

/// A logged-in browser's web session, as the control plane keeps it (in its database, so
/// every server behind a load balancer sees the same sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// The operator logged in.
    pub operator: String,
    /// The session's CSRF token, checked on every form.
    pub csrf: String,
    /// Unix seconds of the login.
    pub created_at: i64,
    /// Unix seconds of its latest use.
    pub last_seen: i64,
}

/// How long web sessions live: the backend refuses a session past either bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    /// A session unused for this long (seconds) ends.
    pub idle_secs: i64,
    /// A session ends this long (seconds) after login, however active.
    pub max_secs: i64,
}

impl SessionLifetime {
    /// Whether `s` is live at `now`: used less than `idle_secs` ago, made less than
    /// `max_secs` ago.
    pub fn is_live(self, s: &WebSession, now: i64) -> bool {
        now - s.last_seen < self.idle_secs && now - s.created_at < self.max_secs
    }
}

/// The failed logins of one name from one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// How many since the pair last succeeded or was forgotten.
    pub failures: u32,
    /// Unix seconds of the latest.
    pub last: i64,
}

/// What the dashboard needs from the control plane. Every action takes the operator it
/// acts for; the implementation authorizes and audits it.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Unix seconds now, by the control plane's clock.
    fn now(&self) -> i64;
    /// The latest revision (to tell how far a host lags).
    fn revision(&self) -> i64;
    /// Checks a password; `None` for a wrong name or password or a disabled operator.
    fn authenticate(
        &self,
        name: &str,
        password: &str,
    ) -> impl Future<Output = BackendResult<Option<Operator>>> + Send;
    /// The operator `name` if it exists and is enabled.
    fn operator(&self, name: &str) -> impl Future<Output = BackendResult<Option<Operator>>> + Send;
    /// Every host, by id.
    fn hosts(&self) -> impl Future<Output = BackendResult<Vec<Host>>> + Send;
    /// One host.
    fn host(&self, id: &str) -> impl Future<Output = BackendResult<Host>> + Send;
    /// Live (and unknown) sessions matching `filter`, newest first.
    fn sessions(
        &self,
        filter: &SessionFilter,
    ) -> impl Future<Output = BackendResult<Vec<Session>>> + Send;
    /// One page of at most `limit` sessions, live and ended, matching `filter`, newest
    /// first: the first page, or the one after the cursor `after` of the previous page
    /// (an `after` that is no such cursor is [`BackendError::Invalid`]).
    fn session_history(
        &self,
        filter: &HistoryFilter,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = BackendResult<HistoryPage>> + Send;
    /// Logins (sessions started, live or ended) in each of the 24 hours before `now`,
    /// oldest first, counted by the store.
    fn logins_per_hour(&self, now: i64) -> impl Future<Output = BackendResult<Vec<u64>>> + Send;
    /// Every person, by name.
    fn people(&self) -> impl Future<Output = BackendResult<Vec<Person>>> + Send;
    /// One person.
    fn person(&self, name: &str) -> impl Future<Output = BackendResult<Person>> + Send;
    /// The person's unexpired certificates from signoff's own CA, newest first.
    fn certificates(
        &self,
        user: &str,
    ) -> impl Future<Output = BackendResult<Vec<Certificate>>> + Send;
    /// Revokes the person's certificate `serial` (operators).
    fn revoke_certificate(
        &self,
        by: &Operator,
        user: &str,
        serial: u64,
    ) -> impl Future<Output = BackendResult<()>> + Send;
    /// Every sign-off, newest first.
    fn signoffs(&self) -> impl Future<Output = BackendResult<Vec<Signoff>>> + Send;
    /// Grants proposed for approval or holding approvals, oldest first.
    fn approvals(&self) -> impl Future<Output = BackendResult<Vec<PendingApproval>>> + Send;
    /// Re-enables awaiting approvals, oldest sign-off first.
    fn reenables(&self) -> impl Future<Output = BackendResult<Vec<PendingReenable>>> + Send;
    /// One sign-off.
    fn signoff(&self, id: i64) -> impl Future<Output = BackendResult<Signoff>> + Send;
    /// The person's latest sign-off, if any.
    fn latest_signoff(
        &self,
        user: &str,
    ) -> impl Future<Output = BackendResult<Option<Signoff>>> + Send;
    /// Audit rows whose actor, action or target contains `filter`, newest first, before
    /// sequence number `before` if given.
    fn audit(
        &self,
        filter: &str,
        before: Option<i64>,
        limit: i64,
    ) -> impl Future<Output = BackendResult<Vec<AuditEntry>>> + Send;
    /// Checks the audit log's hash chain.
    fn verify_audit(&self) -> impl Future<Output = BackendResult<AuditCheck>> + Send;
    /// Every operator account, by name.
    fn operators(&self) -> impl Future<Output = BackendResult<Vec<Operator>>> + Send;
    /// Sends a kill order for one session.
    fn kill_session(
        &self,
        by: &Operator,
        host: &str,
        id: &str,
    ) -> impl Future<Output = BackendResult<()>> + Send;
    /// Sends kill orders for every live session of a person; returns how many.
    fn kill_person_sessions(
        &self,
        by: &Operator,
        user: &str,
    ) -> impl Future<Output = BackendResult<usize>> + Send;
    /// Signs a person off everywhere; returns the sign-off's id (the existing one if
    /// they are signed off already).
    fn sign_off(
        &self,
        by: &Operator,
        user: &str,
        reason: &str,
    ) -> impl Future<Output = BackendResult<i64>> + Send;
    /// Re-enables a signed-off person (admins).
    fn reenable(
        &self,
        by: &Operator,
        user: &str,
        reason: &str,
    ) -> impl Future<Output = BackendResult<()>> + Send;
    /// Creates an operator account with a random password, which it returns (admins).
    fn create_operator(
        &self,
        by: &Operator,
        name: &str,
        role: Role,
    ) -> impl Future<Output = BackendResult<String>> + Send;
    /// Changes an operator's role (admins).
    fn set_operator_role(
        &self,
        by: &Operator,
        name: &str,
        role: Role,
    ) -> impl Future<Output = BackendResult<()>> + Send;
    /// Disables an operator account (admins); its web sessions end at their next request.
    fn disable_operator(
        &self,
        by: &Operator,
        name: &str,
    ) -> impl Future<Output = BackendResult<()>> + Send;
    /// Changes as they happen; the sender side ends when the receiver is dropped.
    fn changes(&self) -> mpsc::Receiver<Change>;
    /// Stores web session `id` (the cookie's value; the backend keeps only a hash of it).
    /// Sessions expired by `session.created_at` under `lifetime` may be deleted.
    fn create_web_session(
        &self,
        id: &str,
        session: &WebSession,
        lifetime: SessionLifetime,
    ) -> impl Future<Output = BackendResult<()>> + Send;
    /// Web session `id` if it is live at `now` under `lifetime`, marked used at `now`.
    fn web_session(
        &self,
        id: &str,
        now: i64,
        lifetime: SessionLifetime,
    ) -> impl Future<Output = BackendResult<Option<WebSession>>> + Send;
    /// Whether web session `id` is live at `now` (without marking it used).
    fn web_session_is_live(
        &self,
        id: &str,
        now: i64,
        lifetime: SessionLifetime,
    ) -> impl Future<Output = BackendResult<bool>> + Send;
    /// Ends web session `id` (nothing if there is none).
    fn end_web_session(&self, id: &str) -> impl Future<Output = BackendResult<()>> + Send;
    /// The failed logins of `name` from `ip`, if any are recorded.
    fn login_failures(
        &self,
        name: &str,
        ip: Option<IpAddr>,
    ) -> impl Future<Output = BackendResult<Option<LoginFailures>>> + Send;
    /// Counts a failed login of `name` from `ip` at `now`; failures at or before
    /// `forget_before` no longer count. Returns the pair's failures with this one.
    fn record_login_failure(
        &self,
        name: &str,
        ip: Option<IpAddr>,
        now: i64,
        forget_before: i64,
    ) -> impl Future<Output = BackendResult<LoginFailures>> + Send;
    /// Forgets the failed logins of `name` from `ip` (a login succeeded).
    fn clear_login_failures(
        &self,
        name: &str,
        ip: Option<IpAddr>,
    ) -> impl Future<Output = BackendResult<()>> + Send;
    /// The latest logins and refused attempts, newest first, at most `limit`.
    fn feed(&self, limit: usize) -> impl Future<Output = BackendResult<Vec<FeedEntry>>> + Send;
    /// A person's logins, refused attempts, alerts and audited changes, newest first.
    fn timeline(
        &self,
        name: &str,
    ) -> impl Future<Output = BackendResult<Vec<TimelineEntry>>> + Send;
    /// Alerts nobody has acknowledged yet, newest first.
    fn open_alerts(&self) -> impl Future<Output = BackendResult<Vec<AlertEntry>>> + Send;
    /// Acknowledges an alert (operator role; audited under `by`).
    fn acknowledge_alert(
        &self,
        by: &Operator,
        cursor: i64,
    ) -> impl Future<Output = BackendResult<()>> + Send;
}
