//! Live sessions as agents report them, and kill orders: signed here, delivered on the
//! host's sync stream, their outcome recorded and audited.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use signoff_proto::orders::{self, KillOrder};
use signoff_proto::v1;
use tokio::sync::{broadcast, mpsc};

use super::reports::{Effects, Report};
use super::{Actor, Result, Service, ServiceError, stored_json, unsigned};
use crate::model::{Invalid, validate_text};
use crate::store::{self, Db};

/// How long a kill order is valid after it is signed.
pub const KILL_ORDER_TTL_SECS: i64 = 300;

/// A session as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The host.
    pub host_id: String,
    /// Unique on the host.
    pub id: String,
    /// The Unix account.
    pub account: String,
    /// The person the login's key belongs to, if known: by the certificate's key ID, or
    /// for a plain key by its fingerprint among people's registered keys.
    pub user: Option<String>,
    /// Certificate key ID (empty for a plain key).
    pub key_id: String,
    /// Certificate serial (0 for none).
    pub serial: u64,
    /// CA fingerprint (empty for a plain key).
    pub ca_fingerprint: String,
    /// Key fingerprint.
    pub key_fingerprint: String,
    /// Client address.
    pub source_address: String,
    /// Client port.
    pub source_port: u32,
    /// Unix seconds.
    pub started_at: i64,
    /// `pts/N`, or empty.
    pub tty: String,
    /// Processes of the login.
    pub pids: Vec<u32>,
    /// `live`; `lingering` (its connection ended, but processes of it remain: see
    /// [`SessionRecord::lingering`]); `unknown` (its agent is disconnected); or `ended`
    /// (nothing of it remains).
    pub state: String,
    /// While lingering: the processes the login left, who runs them and what.
    pub lingering: Vec<LingeringProcess>,
    /// Unix seconds, once ended.
    pub ended_at: Option<i64>,
}

/// A process a login left running after its connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LingeringProcess {
    /// Its PID on the host.
    pub pid: u32,
    /// Its effective uid.
    pub uid: u32,
    /// The account of that uid (empty when it has none).
    pub account: String,
    /// Its command line.
    pub command: String,
}

/// What changed, for live views (the dashboard's event stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SessionEvent {
    /// A session the table did not have (or had as ended).
    Started(Box<SessionRecord>),
    /// A known session changed: live again after its agent reconnected, or its processes.
    Updated(Box<SessionRecord>),
    /// Ended.
    Ended {
        /// The host.
        host_id: String,
        /// The session.
        id: String,
    },
    /// The host's agent disconnected: its sessions are of unknown state.
    HostUnknown {
        /// The host.
        host_id: String,
    },
}

/// Which sessions to list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFilter {
    /// Only this person's (by key ID, or plain key fingerprint).
    pub user: Option<String>,
    /// Only on this host.
    pub host: Option<String>,
    /// Only as this account.
    pub account: Option<String>,
    /// Only in this state; default: live and unknown; [`ANY_STATE`] for every state,
    /// ended included (the dashboard's history search).
    pub state: Option<String>,
    /// Only from this client address.
    #[serde(default)]
    pub source: Option<String>,
    /// Only started at or after this Unix time.
    #[serde(default)]
    pub started_after: Option<i64>,
    /// Only started before this Unix time.
    #[serde(default)]
    pub started_before: Option<i64>,
}

/// The [`SessionFilter::state`] that lists sessions in every state, live and ended.
pub const ANY_STATE: &str = "any";

/// The most sessions one page holds.
pub const SESSION_PAGE_MAX: u32 = 10_000;

/// Which page of sessions to list.
#[derive(Debug, Clone)]
pub struct SessionPage {
    /// At most this many (1 to [`SESSION_PAGE_MAX`]).
    pub limit: u32,
    /// Those after this one, in the list's order (newest first).
    pub after: Option<SessionCursor>,
}

/// Where a page of sessions ended: the last session it showed. As text (`?after=`), an
/// opaque URL-safe token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCursor {
    started_at: i64,
    host_id: String,
    id: String,
}

impl SessionCursor {
    /// The token a client passes back as `?after=`.
    pub fn to_token(&self) -> String {
        use base64::Engine as _;
        let text = format!("{}\n{}\n{}", self.started_at, self.host_id, self.id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    /// Reads a token made by [`SessionCursor::to_token`].
    pub fn from_token(token: &str) -> Result<SessionCursor, Invalid> {
        use base64::Engine as _;
        let bad = || Invalid::new("after", "is not the cursor of a page of sessions");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(3, '\n');
        let (Some(at), Some(host_id), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        Ok(SessionCursor {
            started_at: at.parse().map_err(|_| bad())?,
            host_id: host_id.to_owned(),
            id: id.to_owned(),
        })
    }
}

/// A kill order on its way to a host.
#[derive(Debug, Clone, Serialize)]
pub struct KillOrderRecord {
    /// The order's nonce, hex; identifies it.
    pub nonce: String,
    /// The host.
    pub host_id: String,
    /// The session.
    pub session_id: String,
    /// `sent`, `executed` (a final scan found nothing left), `incomplete` (carried out,
    /// but processes remained), `refused`, `undelivered`, or `expired` (no result came
    /// before the order expired: the agent never carried it out).
    pub state: String,
    /// Unix seconds after which the agent refuses it.
    pub not_after: i64,
}

/// Per-host outboxes of the connected agents' sync streams, with a connection number so
/// that a stream ending late never unregisters the newer stream of a reconnected agent.
#[derive(Debug, Default)]
pub(crate) struct Outboxes {
    by_host: Mutex<HashMap<String, (u64, mpsc::UnboundedSender<v1::SignedOrder>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Outboxes {
    /// Whether this process holds `host`'s stream.
    pub(super) fn holds(&self, host: &str) -> bool {
        self.by_host.lock().is_ok_and(|m| m.contains_key(host))
    }

    /// The hosts whose streams this process holds.
    pub(super) fn held(&self) -> Vec<String> {
        self.by_host
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn send(&self, host: &str, order: v1::SignedOrder) -> bool {
        self.by_host
            .lock()
            .ok()
            .and_then(|m| m.get(host).map(|(_, tx)| tx.send(order).is_ok()))
            .unwrap_or(false)
    }
}

/// A connected agent's stream, as registered.
#[derive(Debug)]
pub struct Connection {
    /// The host.
    pub host: String,
    number: u64,
    /// Kill orders to send on the stream.
    pub orders: mpsc::UnboundedReceiver<v1::SignedOrder>,
}

fn record(r: store::sessions::SessionRow) -> Result<SessionRecord> {
    Ok(SessionRecord {
        serial: unsigned("sessions.serial", r.serial)?,
        source_port: u32::try_from(r.source_port)
            .map_err(|e| ServiceError::corrupt("sessions.source_port", e))?,
        pids: stored_json("sessions.pids", &r.pids)?,
        lingering: stored_json("sessions.lingering", &r.lingering)?,
        host_id: r.host_id,
        id: r.id,
        account: r.account,
        user: r.user,
        key_id: r.key_id,
        ca_fingerprint: r.ca_fingerprint,
        key_fingerprint: r.key_fingerprint,
        source_address: r.source_address,
        started_at: r.started_at,
        tty: r.tty,
        state: r.state,
        ended_at: r.ended_at,
    })
}

impl Service {
    /// Events of sessions starting and ending, as they are recorded.
    pub fn watch_sessions(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.session_events.subscribe()
    }

    /// Registers a connected agent's stream; [`Service::host_disconnected`] ends it.
    pub fn host_connected(&self, host: &str) -> Connection {
        let (tx, orders) = mpsc::unbounded_channel();
        let number = self
            .inner
            .outboxes
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut m) = self.inner.outboxes.by_host.lock() {
            m.insert(host.to_owned(), (number, tx));
        }
        Connection {
            host: host.to_owned(),
            number,
            orders,
        }
    }

    /// An agent reports a new session.
    pub async fn session_started(&self, host: &str, s: &v1::Session) -> Result<()> {
        self.report(Report::SessionStarted {
            host: host.to_owned(),
            session: s.clone(),
        })
        .await
    }

    /// Queues an agent's report of a new or changed session without waiting for it to be
    /// written; [`Service::written`] waits. A host's reports that arrive in a row (a storm
    /// of logins) are queued together and share one commit instead of one each.
    pub(crate) fn queue_session_started(
        &self,
        host: &str,
        s: &v1::Session,
    ) -> super::reports::Pending {
        self.queue_report(Report::SessionStarted {
            host: host.to_owned(),
            session: s.clone(),
        })
    }

    /// Queues an agent's report of an ended session, as [`Service::queue_session_started`].
    pub(crate) fn queue_session_ended(
        &self,
        host: &str,
        id: &str,
        ended_at: i64,
    ) -> super::reports::Pending {
        self.queue_report(Report::SessionEnded {
            host: host.to_owned(),
            id: id.to_owned(),
            ended_at,
        })
    }

    /// An agent reports a session ended.
    pub async fn session_ended(&self, host: &str, id: &str, ended_at: i64) -> Result<()> {
        self.report(Report::SessionEnded {
            host: host.to_owned(),
            id: id.to_owned(),
            ended_at,
        })
        .await
    }

    /// An agent's full list after it (re)connected: what it no longer lists has ended.
    pub async fn session_list(&self, host: &str, list: &[v1::Session]) -> Result<()> {
        self.report(Report::SessionList {
            host: host.to_owned(),
            sessions: list.to_vec(),
        })
        .await
    }

    /// The host's agent disconnected: it is offline, and its sessions are of unknown state,
    /// not dropped — unless it has connected again meanwhile.
    pub async fn host_disconnected(&self, connection: Connection) -> Result<()> {
        let host = connection.host.as_str();
        // Queued under the outboxes' lock: a new stream of this host registers under it
        // too, so its connection report can only queue after this one.
        let pending = match self.inner.outboxes.by_host.lock() {
            Ok(mut m) if m.get(host).is_some_and(|(n, _)| *n == connection.number) => {
                m.remove(host);
                self.queue_report(Report::Disconnected {
                    host: host.to_owned(),
                    replica: self.replica().to_owned(),
                })
            }
            _ => return Ok(()),
        };
        self.written(pending).await
    }

    /// Sessions matching `filter`, newest first: the live ones a dashboard shows (at most
    /// [`SESSION_PAGE_MAX`]; history is read a page at a time with
    /// [`Service::list_sessions_page`]).
    pub async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        let page = SessionPage {
            limit: SESSION_PAGE_MAX,
            after: None,
        };
        Ok(self.list_sessions_page(filter, &page).await?.0)
    }

    /// One page of the sessions matching `filter`, newest first, and the cursor of the next
    /// page if there is one. Pages are stable under inserts: a cursor names the last
    /// session shown, not an offset.
    pub async fn list_sessions_page(
        &self,
        filter: &SessionFilter,
        page: &SessionPage,
    ) -> Result<(Vec<SessionRecord>, Option<SessionCursor>)> {
        if !(1..=SESSION_PAGE_MAX).contains(&page.limit) {
            return Err(
                Invalid::new("limit", format!("must be between 1 and {SESSION_PAGE_MAX}")).into(),
            );
        }
        if let (Some(from), Some(to)) = (filter.started_after, filter.started_before)
            && from >= to
        {
            return Err(Invalid::new(
                "started_before",
                format!("must be after started_after ({from}); {to} leaves nothing"),
            )
            .into());
        }
        let after = page.after.as_ref();
        // Addresses are stored as the agent printed them (`IpAddr`'s form): the same form
        // here, so `::ffff:10.0.0.1` finds `10.0.0.1`; anything else is compared as is.
        let source = filter.source.as_deref().map(|a| {
            a.parse::<std::net::IpAddr>()
                .map_or_else(|_| a.to_owned(), |ip| ip.to_canonical().to_string())
        });
        let f = store::sessions::Filter {
            host: filter.host.as_deref(),
            account: filter.account.as_deref(),
            user: filter.user.as_deref(),
            state: filter.state.as_deref(),
            any_state: ANY_STATE,
            source: source.as_deref(),
            started_after: filter.started_after,
            started_before: filter.started_before,
            after: after.map(|c| (c.started_at, c.host_id.as_str(), c.id.as_str())),
        };
        let mut c = self.store().conn().await?;
        let mut rows = store::sessions::list(c.db(), &f, i64::from(page.limit) + 1).await?;
        let more = rows.len() > page.limit as usize;
        rows.truncate(page.limit as usize);
        let sessions = rows.into_iter().map(record).collect::<Result<Vec<_>>>()?;
        let next = match sessions.last() {
            Some(last) if more => Some(SessionCursor {
                started_at: last.started_at,
                host_id: last.host_id.clone(),
                id: last.id.clone(),
            }),
            _ => None,
        };
        Ok((sessions, next))
    }

    /// Deletes the sessions that ended more than `retention_secs` ago, at most `batch` per
    /// call (a short write: agents' reports wait behind it); returns how many. Live,
    /// lingering and unknown sessions stay, however old.
    pub async fn prune_ended_sessions(&self, retention_secs: i64, batch: u32) -> Result<u64> {
        let before = self.now() - retention_secs;
        let mut c = self.store().conn().await?;
        Ok(store::sessions::prune_ended(c.db(), before, i64::from(batch)).await?)
    }

    /// Logins per hour over the `hours` hours before `now`, oldest first: every session
    /// started then, live or ended, counted by the store whatever their number. A login
    /// at `now` itself counts in the last hour.
    pub async fn logins_per_hour(&self, now: i64, hours: u32) -> Result<Vec<u64>> {
        let start = now - i64::from(hours) * 3600;
        let mut c = self.store().conn().await?;
        let rows = store::sessions::logins_per_hour(c.db(), start, now, i64::from(hours)).await?;
        let mut counts = vec![0u64; hours as usize];
        for (hour, n) in rows {
            let slot = usize::try_from(hour)
                .ok()
                .and_then(|h| counts.get_mut(h))
                .ok_or_else(|| ServiceError::corrupt("logins per hour", hour))?;
            *slot = unsigned("logins per hour", n)?;
        }
        Ok(counts)
    }

    /// One session.
    pub async fn get_session(&self, host: &str, id: &str) -> Result<SessionRecord> {
        let mut c = self.store().conn().await?;
        store::sessions::get(c.db(), host, id)
            .await?
            .map(record)
            .ok_or_else(|| ServiceError::not_found("session", format!("{host}/{id}")))?
    }

    /// Signs a kill order for a live session and sends it on the host's stream. Audited
    /// whether or not the host is connected; an order that could not be sent is
    /// `undelivered` (a one-shot order expires within minutes: it is not queued).
    #[tracing::instrument(skip_all, fields(actor = %actor.0, host, session = id))]
    pub async fn kill_session(
        &self,
        actor: &Actor,
        host: &str,
        id: &str,
        reason: &str,
    ) -> Result<KillOrderRecord> {
        validate_text("reason", reason, crate::model::MAX_REASON)?;
        let session = self.get_session(host, id).await?;
        if session.state == "ended" {
            return Err(ServiceError::Conflict(format!(
                "session {host}/{id} has already ended"
            )));
        }
        let mut records = self.kill_sessions(actor, &[session], reason).await?;
        records
            .pop()
            .ok_or_else(|| ServiceError::Conflict(format!("no order for session {host}/{id}")))
    }

    /// Kill orders for every live session of a person.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, user))]
    pub async fn kill_user_sessions(
        &self,
        actor: &Actor,
        user: &str,
        reason: &str,
    ) -> Result<Vec<KillOrderRecord>> {
        validate_text("reason", reason, crate::model::MAX_REASON)?;
        self.get_user(user).await?;
        let filter = SessionFilter {
            user: Some(user.to_owned()),
            ..SessionFilter::default()
        };
        let sessions: Vec<SessionRecord> = self
            .list_sessions(&filter)
            .await?
            .into_iter()
            .filter(|s| s.state != "ended")
            .collect();
        self.kill_sessions(actor, &sessions, reason).await
    }

    /// Signs and sends a kill order for each of `sessions`, all of them before anything
    /// is written, then records and audits them in one transaction: a person's hundred
    /// logins reach their hosts at once, not one commit apart.
    async fn kill_sessions(
        &self,
        actor: &Actor,
        sessions: &[SessionRecord],
        reason: &str,
    ) -> Result<Vec<KillOrderRecord>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let signer = self
            .inner
            .order_signer
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| {
                ServiceError::Conflict("this server has no order-signing key loaded".into())
            })?;
        let now = self.now();
        let mut sent = Vec::with_capacity(sessions.len());
        for session in sessions {
            let mut nonce = [0u8; 16];
            rand::rng().fill_bytes(&mut nonce);
            let order = KillOrder {
                host_id: session.host_id.clone(),
                session_id: session.id.clone(),
                reason: reason.to_owned(),
                operator: actor.0.clone(),
                not_before: unsigned("clock", now)?,
                not_after: unsigned("clock", now + KILL_ORDER_TTL_SECS)?,
                nonce,
            };
            let bytes = order
                .encode()
                .map_err(|e| Invalid::new("order", e.to_string()))?;
            let signature =
                orders::sign(&signer, &bytes).map_err(|e| Invalid::new("order", e.to_string()))?;
            let delivered = self.inner.outboxes.send(
                &session.host_id,
                v1::SignedOrder {
                    order: bytes.clone(),
                    signature: signature.clone(),
                },
            );
            sent.push((session, hex::encode(nonce), bytes, signature, delivered));
        }
        // An order for a host whose stream another replica holds goes to it through the
        // store; one for a host no replica holds is not queued.
        let mut holders = HashMap::new();
        {
            let mut c = self.store().conn().await?;
            for (session, ..) in sent.iter().filter(|s| !s.4) {
                if !holders.contains_key(&session.host_id) {
                    let holder = store::hosts::holder(c.db(), &session.host_id).await?;
                    holders.insert(session.host_id.clone(), holder);
                }
            }
        }
        let me = self.replica();
        let sent: Vec<_> = sent
            .into_iter()
            .map(|(session, nonce, bytes, signature, delivered)| {
                let state = match holders.get(&session.host_id) {
                    _ if delivered => "sent",
                    Some(Some(r)) if r != me => "forwarded",
                    _ => "undelivered",
                };
                (session, nonce, bytes, signature, state)
            })
            .collect();
        let mut w = self.write(actor, "session.kill", false).await?;
        let mut forwarded_to = std::collections::BTreeSet::new();
        let mut records = Vec::with_capacity(sent.len());
        let mut audits = Vec::with_capacity(sent.len());
        for (session, nonce_hex, bytes, signature, state) in sent {
            let (host, id) = (&session.host_id, &session.id);
            let order = store::sessions::NewKillOrder {
                nonce: &nonce_hex,
                host_id: host,
                session_id: id,
                operator: &actor.0,
                reason,
                created_at: now,
                not_after: now + KILL_ORDER_TTL_SECS,
                order_bytes: &bytes,
                signature: &signature,
                state,
            };
            store::sessions::insert_kill_order(w.tx.db(), &order).await?;
            if state == "forwarded" && forwarded_to.insert(host.clone()) {
                w.tx.announce_orders(host).await?;
            }
            audits.push((
                format!("session:{host}/{id}"),
                serde_json::json!({ "order": nonce_hex, "state": state, "user": session.user, "account": session.account }),
            ));
            records.push(KillOrderRecord {
                nonce: nonce_hex,
                host_id: host.clone(),
                session_id: id.clone(),
                state: state.to_owned(),
                not_after: now + KILL_ORDER_TTL_SECS,
            });
        }
        // One audit row per order, the last one written by the commit.
        let Some((last_target, last_details)) = audits.pop() else {
            return Ok(records);
        };
        let forwarded = !forwarded_to.is_empty();
        for (target, details) in audits {
            let entry = crate::audit::Entry {
                actor: &actor.0,
                action: "session.kill",
                target: &target,
                reason,
                details,
                revision: None,
            };
            crate::audit::append(w.tx.db(), w.now, &entry).await?;
        }
        w.commit("session.kill", &last_target, reason, last_details)
            .await?;
        if forwarded {
            self.await_forwarded(&mut records).await?;
        }
        Ok(records)
    }

    /// Waits (at most [`super::replicas::FORWARD_WAIT`]) for the replicas holding the
    /// hosts' streams to send the forwarded `records`, and says what became of each: `sent`
    /// (or a result already), or `undelivered` when no replica took it in time.
    async fn await_forwarded(&self, records: &mut [KillOrderRecord]) -> Result<()> {
        let deadline = tokio::time::Instant::now() + super::replicas::FORWARD_WAIT;
        loop {
            {
                let mut c = self.store().conn().await?;
                for r in records.iter_mut().filter(|r| r.state == "forwarded") {
                    if let Some(state) = store::sessions::order_state(c.db(), &r.nonce).await? {
                        r.state = state;
                    }
                }
            }
            if records.iter().all(|r| r.state != "forwarded") {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut tx = self.store().begin_write().await?;
        for r in records.iter_mut().filter(|r| r.state == "forwarded") {
            store::sessions::undeliver_forwarded(tx.db(), Some(&r.nonce), i64::MAX).await?;
            if let Some(state) = store::sessions::order_state(tx.db(), &r.nonce).await? {
                r.state = state;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records what an agent did with an order, in the audit log too. Only the first
    /// result of an order counts: agents report the results they journaled again on every
    /// connection, so that one lost in a crash on either side is still told, and a repeat
    /// (or a replay's refusal) changes nothing.
    #[tracing::instrument(skip_all, fields(host))]
    pub async fn record_order_result(&self, host: &str, result: &v1::OrderResult) -> Result<()> {
        let nonce = hex::encode(&result.nonce);
        let state = match (result.executed, result.remaining_pids.is_empty()) {
            (true, true) => "executed",
            (true, false) => "incomplete",
            (false, _) => "refused",
        };
        let pending = {
            let mut c = self.store().conn().await?;
            store::sessions::order_pending(c.db(), &nonce, host).await?
        };
        if !pending {
            return Ok(());
        }
        let details = serde_json::json!({
            "order": nonce, "executed": result.executed, "state": state, "refusal": result.refusal,
            "ended_pids": result.ended_pids, "remaining_pids": result.remaining_pids,
        });
        let actor = Actor(format!("agent:{host}"));
        let mut w = self.write(&actor, "session.kill.result", false).await?;
        let updated = store::sessions::record_order_result(
            w.tx.db(),
            &nonce,
            host,
            state,
            &details.to_string(),
        )
        .await?;
        if !updated {
            // Recorded by a concurrent report meanwhile.
            return Ok(());
        }
        if state != "executed" {
            let summary = match state {
                "incomplete" => format!(
                    "a kill on {host} left processes running: {:?}",
                    result.remaining_pids
                ),
                _ => format!("a kill order was refused by {host}: {}", result.refusal),
            };
            let alert = self
                .alert_rules()
                .on_incomplete(host, None, summary, details.clone());
            crate::alerts::record(w.tx.db(), w.now, alert.as_slice()).await?;
        }
        w.commit(
            "session.kill.result",
            &format!("host:{host}"),
            &result.refusal,
            details,
        )
        .await
    }

    /// Settles the kill orders of `host` that have no result, once its reconnected agent
    /// has re-reported every result it journaled (they come before its session list): an
    /// order still valid is sent again (the agent never saw it, or never journaled it, so
    /// it was never carried out); an expired one is recorded as `expired`, not executed.
    pub async fn settle_orders(&self, host: &str) -> Result<()> {
        // Orders another replica forwarded while this host was connecting.
        self.deliver_forwarded(Some(host)).await?;
        let now = self.now();
        let open = {
            let mut c = self.store().conn().await?;
            store::sessions::sent_orders(c.db(), host).await?
        };
        for (nonce, order, signature, not_after) in open {
            if not_after > now {
                self.inner
                    .outboxes
                    .send(host, v1::SignedOrder { order, signature });
                continue;
            }
            let details = serde_json::json!({
                "order": nonce, "executed": false, "state": "expired",
                "refusal": "no result before the order expired: it was not carried out",
            });
            let actor = Actor(format!("agent:{host}"));
            let mut w = self.write(&actor, "session.kill.result", false).await?;
            let updated =
                store::sessions::expire_order(w.tx.db(), &nonce, host, &details.to_string())
                    .await?;
            if !updated {
                continue;
            }
            w.commit(
                "session.kill.result",
                &format!("host:{host}"),
                "expired without a result",
                details,
            )
            .await?;
        }
        Ok(())
    }

    /// Loads the key orders are signed with.
    pub fn set_order_signer(&self, key: ssh_key::PrivateKey) {
        if let Ok(mut s) = self.inner.order_signer.lock() {
            *s = Some(key);
        }
    }
}

/// Records a reported session; only a change is an event (a reconnecting fleet repeats
/// every session it has).
pub(super) async fn upsert(
    mut db: Db<'_>,
    host: &str,
    s: &v1::Session,
    (rules, now): (&crate::alerts::Rules, i64),
    fx: &mut Effects,
) -> Result<()> {
    let started_at = i64::try_from(s.started_at)
        .map_err(|_| Invalid::new("started_at", "is past the range of Unix times"))?;
    let pids = serde_json::to_string(&s.pids).map_err(|e| ServiceError::corrupt("pids", e))?;
    let state = if s.lingering { "lingering" } else { "live" };
    let lingering: Vec<LingeringProcess> = s
        .lingering_processes
        .iter()
        .map(|p| LingeringProcess {
            pid: p.pid,
            uid: p.uid,
            account: p.account.clone(),
            command: p.command.clone(),
        })
        .collect();
    let lingering =
        serde_json::to_string(&lingering).map_err(|e| ServiceError::corrupt("lingering", e))?;
    // The attribution may change after a session is first reported: a late `Accepted`
    // line completes it, a second, different one withdraws it (the agent then reports
    // empty key fields). The tty too: a login announced from its `Accepted` line, before
    // sshd forked its session process, gets its tty in a later report.
    let reported = store::sessions::Reported {
        state: state.to_owned(),
        pids,
        lingering,
        key_id: s.key_id.clone(),
        serial: i64::try_from(s.serial).unwrap_or(i64::MAX),
        ca_fingerprint: s.ca_fingerprint.clone(),
        key_fingerprint: s.key_fingerprint.clone(),
        tty: s.tty.clone(),
    };
    let before = store::sessions::reported(db.re(), host, &s.id).await?;
    let event: fn(Box<SessionRecord>) -> SessionEvent = match &before {
        None => SessionEvent::Started,
        Some(old) if old.state == "ended" => SessionEvent::Started,
        Some(old) if *old != reported => SessionEvent::Updated,
        // Known as it is: no write.
        Some(_) => return Ok(()),
    };
    let new = store::sessions::NewSession {
        host_id: host,
        id: &s.id,
        account: &s.account,
        started_at,
        source_address: &s.source_address,
        source_port: i64::from(s.source_port),
        reported: &reported,
    };
    store::sessions::upsert(db.re(), &new).await?;
    if let Some(r) = store::sessions::get(db.re(), host, &s.id).await? {
        let r = record(r)?;
        if before.as_ref().is_none_or(|old| old.state == "ended") {
            let data = serde_json::json!(&r);
            crate::events::record(
                db.re(),
                started_at,
                crate::events::Kind::SessionStarted,
                &data,
            )
            .await?;
            // Raised when the session is first known, whatever state it is reported in.
            let alerts = rules.on_session_started(&data, now);
            crate::alerts::record(db.re(), now, &alerts).await?;
        }
        fx.events.push(event(Box::new(r)));
    }
    Ok(())
}

/// Records that a session ended; an end already recorded (from a full list, then the
/// agent's own report) or of a session never known is no news.
pub(super) async fn end(
    mut db: Db<'_>,
    host: &str,
    id: &str,
    ended_at: i64,
    fx: &mut Effects,
) -> Result<()> {
    if store::sessions::end(db.re(), host, id, ended_at).await? {
        let data = serde_json::json!({"host_id": host, "id": id});
        crate::events::record(db, ended_at, crate::events::Kind::SessionEnded, &data).await?;
        fx.events.push(SessionEvent::Ended {
            host_id: host.to_owned(),
            id: id.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use signoff_proto::v1;

    use super::super::testing::service;
    use super::super::{NewUser, SessionFilter};
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT bob";

    fn fingerprint(line: &str) -> String {
        ssh_key::PublicKey::from_openssh(line)
            .unwrap()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    }

    fn plain(id: &str, fp: &str) -> v1::Session {
        v1::Session {
            id: id.into(),
            account: "deploy".into(),
            key_fingerprint: fp.into(),
            source_address: "127.0.0.1".into(),
            source_port: 50000,
            started_at: 1_800_000_000,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_plain_key_login_belongs_to_the_person_who_registered_the_key() {
        let (svc, _) = service().await;
        svc.create_user(
            &Actor::cli(),
            NewUser {
                name: "bob".into(),
                key_ids: vec![],
                principals: vec![],
                public_keys: vec![KEY.into()],
            },
            "",
        )
        .await
        .unwrap();
        let fp = fingerprint(KEY);
        svc.session_started("web1", &plain("1:1", &fp))
            .await
            .unwrap();
        // Another key: nobody's.
        let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        svc.session_started("web1", &plain("2:1", other))
            .await
            .unwrap();

        assert_eq!(
            svc.get_session("web1", "1:1")
                .await
                .unwrap()
                .user
                .as_deref(),
            Some("bob")
        );
        assert_eq!(svc.get_session("web1", "2:1").await.unwrap().user, None);
        let bobs = svc
            .list_sessions(&SessionFilter {
                user: Some("bob".into()),
                ..SessionFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            bobs.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["1:1"]
        );

        // A certificate login carries the certificate's key fingerprint too: it is the key
        // ID's person, never the plain key's.
        let cert = v1::Session {
            key_id: "carol@corp".into(),
            ca_fingerprint: fp.clone(),
            ..plain("3:1", &fp)
        };
        svc.session_started("web1", &cert).await.unwrap();
        assert_eq!(svc.get_session("web1", "3:1").await.unwrap().user, None);
    }

    /// A login announced from its `Accepted` line has no tty yet: the agent's later
    /// report with it updates the record and says so on the feed.
    #[tokio::test]
    async fn a_later_report_with_the_tty_updates_the_session() {
        let (svc, _) = service().await;
        let mut events = svc.watch_sessions();
        svc.session_started("web1", &live("1:1")).await.unwrap();
        assert_eq!(svc.get_session("web1", "1:1").await.unwrap().tty, "");
        let shaped = v1::Session {
            tty: "pts/3".into(),
            ..live("1:1")
        };
        svc.session_started("web1", &shaped).await.unwrap();
        assert_eq!(svc.get_session("web1", "1:1").await.unwrap().tty, "pts/3");
        let mut kinds = Vec::new();
        while let Ok(e) = events.try_recv() {
            kinds.push(match e {
                SessionEvent::Started(_) => "started",
                SessionEvent::Updated(_) => "updated",
                _ => "other",
            });
        }
        assert_eq!(kinds, ["started", "updated"]);
        // The same report again changes nothing.
        svc.session_started("web1", &shaped).await.unwrap();
        assert!(events.try_recv().is_err());
    }

    fn live(id: &str) -> v1::Session {
        v1::Session {
            id: id.into(),
            account: "deploy".into(),
            key_id: "alice@corp".into(),
            source_address: "127.0.0.1".into(),
            source_port: 50000,
            started_at: 1_800_000_000,
            ..Default::default()
        }
    }

    fn result(nonce: &str, executed: bool, remaining: Vec<u32>) -> v1::OrderResult {
        v1::OrderResult {
            nonce: hex::decode(nonce).unwrap(),
            executed,
            refusal: if executed {
                String::new()
            } else {
                "replayed".into()
            },
            ended_pids: vec![100],
            remaining_pids: remaining,
        }
    }

    async fn state_of(svc: &Service, nonce: &str) -> String {
        let mut c = svc.store().conn().await.unwrap();
        store::sessions::order_state(c.db(), nonce)
            .await
            .unwrap()
            .expect("the order is recorded")
    }

    async fn with_order() -> (Service, std::sync::Arc<super::super::testing::ManualClock>) {
        let (svc, clock) = service().await;
        svc.set_order_signer(ssh_key::PrivateKey::from(
            ssh_key::private::Ed25519Keypair::from_seed(&[5; 32]),
        ));
        svc.session_started("web1", &live("1:1")).await.unwrap();
        (svc, clock)
    }

    /// Agents re-report journaled results on every connection: only the first result of an
    /// order counts, and a replay's refusal never overwrites an execution.
    #[tokio::test]
    async fn only_the_first_result_of_an_order_counts() {
        let (svc, _) = with_order().await;
        let connection = svc.host_connected("web1");
        let order = svc
            .kill_session(&Actor::cli(), "web1", "1:1", "test")
            .await
            .unwrap();
        svc.record_order_result("web1", &result(&order.nonce, true, vec![]))
            .await
            .unwrap();
        svc.record_order_result("web1", &result(&order.nonce, true, vec![]))
            .await
            .unwrap();
        svc.record_order_result("web1", &result(&order.nonce, false, vec![]))
            .await
            .unwrap();
        assert_eq!(state_of(&svc, &order.nonce).await, "executed");
        let results = svc
            .audit_log("session.kill.result", None, 10)
            .await
            .unwrap();
        assert_eq!(results.len(), 1, "{results:?}");
        drop(connection);
    }

    /// What a final scan found left is never called executed.
    #[tokio::test]
    async fn an_order_that_left_processes_is_incomplete() {
        let (svc, _) = with_order().await;
        let _connection = svc.host_connected("web1");
        let order = svc
            .kill_session(&Actor::cli(), "web1", "1:1", "test")
            .await
            .unwrap();
        svc.record_order_result("web1", &result(&order.nonce, true, vec![4242]))
            .await
            .unwrap();
        assert_eq!(state_of(&svc, &order.nonce).await, "incomplete");
        let alerts: Vec<_> = svc
            .list_alerts(true, 10)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.alert["rule"] == "incomplete_action")
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].alert["host_id"], "web1");
        assert!(
            alerts[0].alert["summary"]
                .as_str()
                .is_some_and(|s| s.contains("4242")),
            "{alerts:?}"
        );
    }

    /// A kill that ended everything raises no alert.
    #[tokio::test]
    async fn an_executed_order_raises_no_alert() {
        let (svc, _) = with_order().await;
        let _connection = svc.host_connected("web1");
        let order = svc
            .kill_session(&Actor::cli(), "web1", "1:1", "test")
            .await
            .unwrap();
        svc.record_order_result("web1", &result(&order.nonce, true, vec![]))
            .await
            .unwrap();
        let alerts = svc.list_alerts(false, 10).await.unwrap();
        assert!(
            alerts
                .iter()
                .all(|a| a.alert["rule"] != "incomplete_action"),
            "{alerts:?}"
        );
    }

    /// An order with no result when its agent reconnects and has re-reported: re-sent while
    /// it is valid, recorded `expired` (never carried out) once it is not.
    #[tokio::test]
    async fn orders_without_a_result_are_settled_when_the_agent_is_back() {
        let (svc, clock) = with_order().await;
        let first = svc.host_connected("web1");
        let order = svc
            .kill_session(&Actor::cli(), "web1", "1:1", "test")
            .await
            .unwrap();
        assert_eq!(order.state, "sent");
        svc.host_disconnected(first).await.unwrap();

        let mut second = svc.host_connected("web1");
        svc.settle_orders("web1").await.unwrap();
        let resent = second.orders.try_recv().expect("the order is sent again");
        let decoded = KillOrder::decode(&resent.order).unwrap();
        assert_eq!(hex::encode(decoded.nonce), order.nonce);
        assert_eq!(state_of(&svc, &order.nonce).await, "sent");
        svc.host_disconnected(second).await.unwrap();

        clock.0.fetch_add(KILL_ORDER_TTL_SECS + 1, Ordering::SeqCst);
        let mut third = svc.host_connected("web1");
        svc.settle_orders("web1").await.unwrap();
        assert!(
            third.orders.try_recv().is_err(),
            "an expired order is not sent"
        );
        assert_eq!(state_of(&svc, &order.nonce).await, "expired");
        // A late result of it changes nothing.
        svc.record_order_result("web1", &result(&order.nonce, true, vec![]))
            .await
            .unwrap();
        assert_eq!(state_of(&svc, &order.nonce).await, "expired");
    }

    #[tokio::test]
    async fn a_corrupt_stored_session_is_an_error_and_an_impossible_start_is_refused() {
        let (svc, _) = service().await;
        svc.session_started("web1", &plain("1:1", ""))
            .await
            .unwrap();
        svc.store()
            .exec_for_test("UPDATE sessions SET pids = '[1,'")
            .await;
        let err = svc.get_session("web1", "1:1").await.unwrap_err();
        assert!(
            matches!(
                err,
                ServiceError::Corrupt {
                    what: "sessions.pids",
                    ..
                }
            ),
            "{err}"
        );
        let err = svc
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::Corrupt { .. }), "{err}");

        let mut late = plain("2:2", "");
        late.started_at = u64::MAX;
        let err = svc.session_started("web1", &late).await.unwrap_err();
        assert!(
            matches!(&err, ServiceError::Invalid(i) if i.field == "started_at"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn logins_per_hour_are_counted_by_the_store_past_ten_thousand() {
        let (svc, _) = service().await;
        let now = 1_800_000_000_i64;
        // 10,500 ended sessions in the last hour (the list stops at 10,000), and the edges.
        svc.store()
            .exec_for_test(&format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10500)
                 INSERT INTO sessions (host_id, id, account, key_id, serial, ca_fingerprint,
                     key_fingerprint, source_address, source_port, started_at, tty, pids, state,
                     lingering, ended_at)
                 SELECT 'web1', CAST(i AS TEXT), 'deploy', '', 0, '', '', '127.0.0.1', 1,
                     {now} - (i % 3000), '', '[]', 'ended', '[]', {now}
                 FROM n"
            ))
            .await;
        for (id, at) in [
            ("a", now - 3601),
            ("b", now - 24 * 3600),
            ("c", now - 24 * 3600 - 1),
            ("d", now + 5),
        ] {
            let mut s = plain(id, "");
            s.started_at = at as u64;
            svc.session_started("web2", &s).await.unwrap();
        }
        let counts = svc.logins_per_hour(now, 24).await.unwrap();
        assert_eq!(counts.len(), 24);
        assert_eq!(counts[23], 10_500);
        assert_eq!(counts[22], 1, "an hour and a second ago");
        assert_eq!(counts[0], 1, "exactly a day ago is the first hour");
        assert_eq!(
            counts.iter().sum::<u64>(),
            10_502,
            "older and future ones are left out"
        );
    }

    #[tokio::test]
    async fn history_is_read_a_page_at_a_time_without_gaps_or_repeats() {
        let (svc, _) = service().await;
        for i in 0..7u64 {
            let mut s = plain(&format!("{i}:1"), "");
            // Two sessions share each start time, so the cursor must break ties.
            s.started_at = 1_800_000_000 + i / 2;
            svc.session_started(if i % 2 == 0 { "web1" } else { "web2" }, &s)
                .await
                .unwrap();
        }
        let filter = SessionFilter::default();
        let all = svc.list_sessions(&filter).await.unwrap();
        assert_eq!(all.len(), 7);
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = SessionPage { limit: 3, after };
            let (sessions, next) = svc.list_sessions_page(&filter, &page).await.unwrap();
            assert!(sessions.len() <= 3);
            paged.extend(sessions);
            match next {
                Some(c) => after = Some(SessionCursor::from_token(&c.to_token()).unwrap()),
                None => break,
            }
        }
        assert_eq!(paged, all);
    }

    #[tokio::test]
    async fn history_is_searched_by_source_and_time_range() {
        let (svc, _) = service().await;
        for (id, source, at) in [
            ("1:1", "10.0.0.1", 1_800_000_000),
            ("2:1", "10.0.0.2", 1_800_000_100),
            ("3:1", "2001:db8::1", 1_800_000_200),
            ("4:1", "10.0.0.1", 1_800_000_300),
        ] {
            let mut s = plain(id, "");
            s.source_address = source.into();
            s.started_at = at;
            svc.session_started("web1", &s).await.unwrap();
        }
        let ids = |f: SessionFilter| {
            let svc = svc.clone();
            async move {
                let mut ids: Vec<String> = svc
                    .list_sessions(&f)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| s.id)
                    .collect();
                ids.sort();
                ids
            }
        };
        let source = |a: &str| SessionFilter {
            source: Some(a.into()),
            ..SessionFilter::default()
        };
        assert_eq!(ids(source("10.0.0.1")).await, ["1:1", "4:1"]);
        assert_eq!(
            ids(source("::ffff:10.0.0.1")).await,
            ["1:1", "4:1"],
            "IPv4-mapped"
        );
        assert_eq!(
            ids(source("2001:0db8:0::1")).await,
            ["3:1"],
            "any IPv6 spelling"
        );
        assert!(ids(source("10.0.0.9")).await.is_empty());
        let range = |after: Option<i64>, before: Option<i64>| SessionFilter {
            started_after: after,
            started_before: before,
            ..SessionFilter::default()
        };
        assert_eq!(
            ids(range(Some(1_800_000_100), Some(1_800_000_300))).await,
            ["2:1", "3:1"],
            "from inclusive, to exclusive"
        );
        assert_eq!(ids(range(Some(1_800_000_250), None)).await, ["4:1"]);
        assert_eq!(ids(range(None, Some(1_800_000_001))).await, ["1:1"]);
        let both = SessionFilter {
            source: Some("10.0.0.1".into()),
            started_after: Some(1_800_000_001),
            ..SessionFilter::default()
        };
        assert_eq!(ids(both).await, ["4:1"]);
        for (after, before) in [
            (1_800_000_100, 1_800_000_100),
            (1_800_000_200, 1_800_000_100),
        ] {
            let err = svc
                .list_sessions(&range(Some(after), Some(before)))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ServiceError::Invalid(i) if i.field == "started_before"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn any_state_lists_live_and_ended_sessions_newest_first() {
        let (svc, _) = service().await;
        for (id, at) in [("1:1", 1_800_000_000), ("2:1", 1_800_000_100)] {
            let mut s = plain(id, "");
            s.started_at = at;
            svc.session_started("web1", &s).await.unwrap();
        }
        svc.session_ended("web1", "1:1", 1_800_000_050)
            .await
            .unwrap();
        let listed = |state: Option<&str>| {
            let svc = svc.clone();
            let filter = SessionFilter {
                state: state.map(str::to_owned),
                ..SessionFilter::default()
            };
            async move {
                svc.list_sessions(&filter)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| (s.id, s.state, s.ended_at))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            listed(Some(ANY_STATE)).await,
            [
                ("2:1".to_owned(), "live".to_owned(), None),
                ("1:1".to_owned(), "ended".to_owned(), Some(1_800_000_050)),
            ]
        );
        assert_eq!(listed(None).await.len(), 1, "the default leaves ended out");
        assert_eq!(listed(Some("ended")).await.len(), 1);
    }

    #[tokio::test]
    async fn a_bad_page_is_refused() {
        let (svc, _) = service().await;
        let filter = SessionFilter::default();
        for limit in [0, SESSION_PAGE_MAX + 1] {
            let err = svc
                .list_sessions_page(&filter, &SessionPage { limit, after: None })
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ServiceError::Invalid(i) if i.field == "limit"),
                "{err}"
            );
        }
        for token in ["", "!!", "bm90IGEgY3Vyc29y"] {
            let err = SessionCursor::from_token(token).unwrap_err();
            assert_eq!(err.field, "after", "{token}");
        }
    }

    #[tokio::test]
    async fn ended_sessions_past_retention_are_deleted_and_live_ones_stay() {
        let (svc, clock) = service().await;
        for id in ["old:1", "recent:1", "live:1"] {
            svc.session_started("web1", &plain(id, "")).await.unwrap();
        }
        let start = clock.0.load(Ordering::SeqCst);
        svc.session_ended("web1", "old:1", start).await.unwrap();
        svc.session_ended("web1", "recent:1", start + 7200)
            .await
            .unwrap();
        clock.0.store(start + 3600 * 3, Ordering::SeqCst);
        // Retention two hours: only the session that ended three hours ago goes.
        assert_eq!(svc.prune_ended_sessions(7200, 1000).await.unwrap(), 1);
        assert!(svc.get_session("web1", "old:1").await.is_err());
        assert!(svc.get_session("web1", "recent:1").await.is_ok());
        assert!(svc.get_session("web1", "live:1").await.is_ok());
        assert_eq!(svc.prune_ended_sessions(7200, 1000).await.unwrap(), 0);
    }
}
