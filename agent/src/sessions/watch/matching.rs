//! Matching log records to connections: the [`Tracker`] keeps what `/proc` shows of each
//! sshd connection and the `Accepted` lines waiting for their login, pairs them (by
//! address, logging PID and time), decides when a login is announced, attributed,
//! conflicting or ended, and paces the scans that follow a log line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use super::{CHANNEL_WAIT, LOG_GRACE, SessionEvent, TIMING, unix_ms};
use crate::sessions::cgroup;
use crate::sessions::log::{self, LogEvent, LogRecord};
use crate::sessions::procfs::{
    self, Connection, ProcessRef, ProcessTable, Procfs, Scanner, SshdSelector, TableIndex,
};
use crate::sessions::title::{Role, Ttys};
use crate::sessions::{Attribution, LingeringProcess, Session, SessionId};

/// How long a log line keeps the watcher scanning quickly.
const URGENT_FOR: Duration = Duration::from_secs(3);
/// First and longest pause between the quick scans.
const MIN_STEP: Duration = Duration::from_millis(2);
const MAX_STEP: Duration = Duration::from_millis(50);
/// How long an `Accepted` line that matched no login is kept.
const RECORD_TTL: Duration = Duration::from_secs(60);
/// At most this many unmatched `Accepted` lines are kept (oldest dropped first).
const MAX_RECORDS: usize = 10_000;
/// Log lines arrive with the clock tick they were read in; allow one tick of rounding
/// against a process start time.
const TICK_SLACK: u64 = 1;

/// When the stages of one login were first seen (see [`TIMING`]).
#[derive(Debug, Clone, Copy)]
struct LoginTiming {
    seen: Instant,
    authenticated: Option<Instant>,
    channel: Option<Instant>,
}

/// An `Accepted` line (or an unreadable one: `accepted` is `None`) waiting for, or
/// consumed by, its login.
#[derive(Debug, Clone)]
struct LoginRecord {
    accepted: Option<log::Accepted>,
    /// The logging PID, when the source tells.
    pid: Option<u32>,
    /// When it was read, in clock ticks since boot; `None` for lines read at start.
    read_at_ticks: Option<u64>,
    seen: Instant,
    /// Arrival order, for dropping the oldest.
    seq: u64,
}

impl LoginRecord {
    /// Read from the file at start: neither when nor by whom it was logged is known.
    fn is_backfill(&self) -> bool {
        self.read_at_ticks.is_none() && self.pid.is_none()
    }

    /// Whether this line can be about `conn`: logged by its monitor (when the PID is
    /// known) and not before the connection began.
    fn fits(&self, conn: &Connection) -> bool {
        self.pid.is_none_or(|p| p == conn.monitor.pid)
            && self
                .read_at_ticks
                .is_none_or(|t| t + TICK_SLACK >= conn.monitor.start_ticks)
    }
}

#[derive(Debug, Clone, Copy)]
struct Urgent {
    until: Instant,
    /// The line announced an end (`Disconnected`, `Connection closed` …).
    end: bool,
}

/// The watcher's state, without I/O of its own other than `/proc` reads: log records and
/// the time are given to it.
#[derive(Debug)]
pub(super) struct Tracker {
    pub(super) procfs: Procfs,
    pub(super) scanner: Scanner,
    log_enabled: bool,
    boot: SystemTime,
    reconcile_interval: Duration,
    pub(super) sessions: BTreeMap<SessionId, Session>,
    records: HashMap<SocketAddr, Vec<LoginRecord>>,
    /// Authenticated logins not announced yet, with when they were first seen.
    first_seen: HashMap<ProcessRef, Instant>,
    /// Logins announced before their first session channel was known (from their
    /// `Accepted` line, or after [`CHANNEL_WAIT`]): their shape (ttys) is sent as an
    /// [`SessionEvent::Updated`] once a channel shows.
    shape_pending: HashSet<SessionId>,
    /// When each stage of a connection's login was first seen, for the timing log (see
    /// [`TIMING`]); only kept while that log is enabled.
    timing: HashMap<ProcessRef, LoginTiming>,
    urgent: HashMap<SocketAddr, Urgent>,
    /// Client addresses of every connection (authenticated or not) at the last scan.
    last_peers: HashSet<SocketAddr>,
    records_seen: u64,
    /// Where the cgroup v2 hierarchy is, for logins' own cgroups.
    cgroup_mount: Option<PathBuf>,
    /// Look at lingering logins' processes at the next scan, not only at the next
    /// reconcile (a kill asked for a rescan).
    pub(super) recheck_lingering: bool,
    /// Sessions changed between scans (an attribution completed or withdrawn by a log
    /// line), announced by the next scan.
    changed: Vec<SessionEvent>,
    /// Pairs sshd's refusal reasons with the attempts they explain.
    refusals: crate::sessions::refused::Refusals,
    /// Refused attempts read since the loop last sent them.
    pub(super) refused: Vec<SessionEvent>,
    step: Duration,
    pub(super) next_scan: Instant,
    pub(super) next_reconcile: Instant,
}

impl Tracker {
    pub(super) fn new(
        procfs: Procfs,
        selector: SshdSelector,
        log_enabled: bool,
        reconcile_interval: Duration,
        boot: SystemTime,
    ) -> Tracker {
        let now = Instant::now();
        let cgroup_mount = cgroup::unified_mount(&procfs);
        Tracker {
            scanner: Scanner::new(procfs.clone(), selector),
            procfs,
            log_enabled,
            boot,
            reconcile_interval,
            sessions: BTreeMap::new(),
            records: HashMap::new(),
            first_seen: HashMap::new(),
            shape_pending: HashSet::new(),
            timing: HashMap::new(),
            urgent: HashMap::new(),
            last_peers: HashSet::new(),
            records_seen: 0,
            cgroup_mount,
            recheck_lingering: false,
            changed: Vec::new(),
            refusals: crate::sessions::refused::Refusals::default(),
            refused: Vec::new(),
            step: MIN_STEP,
            next_scan: now,
            next_reconcile: now,
        }
    }

    /// Takes back remembered sessions that are not live now but of which processes
    /// remain, as lingering; returns their events.
    pub(super) fn take_back(&mut self, remembered: Vec<Session>) -> io::Result<Vec<SessionEvent>> {
        let mut events = Vec::new();
        let remembered: Vec<Session> = remembered
            .into_iter()
            // A live monitor is found by the scan as ever.
            .filter(|s| !self.sessions.contains_key(&s.id) && !self.procfs.is_alive(s.monitor))
            .collect();
        if remembered.is_empty() {
            return Ok(events);
        }
        let table = self.procfs.table()?;
        let index = table.index();
        let listeners = self.scanner.scan()?.listener.processes;
        for mut session in remembered {
            if let Some((processes, left)) = lingering(&self.procfs, &index, &session, &listeners) {
                info!(
                    session = %session.id,
                    account = %session.account,
                    pids = ?processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
                    "a login remembered from before the agent restarted is lingering"
                );
                session.processes = processes;
                session.lingering = Some(left);
                self.sessions.insert(session.id, session.clone());
                events.push(SessionEvent::Started(Box::new(session)));
            }
        }
        Ok(events)
    }

    /// Whether a process of a lingering login is gone (then it is looked at again).
    fn lingering_process_gone(&self) -> bool {
        self.sessions
            .values()
            .filter(|s| s.is_lingering())
            .any(|s| s.processes.iter().any(|p| !self.procfs.is_alive(*p)))
    }

    /// Scan now and quickly after.
    pub(super) fn hurry(&mut self, now: Instant) {
        self.step = MIN_STEP;
        self.next_scan = now;
    }

    /// A line read at start: only the latest `Accepted` per connection counts (earlier
    /// ones are older connections from the same address and port).
    pub(super) fn on_backfill(&mut self, record: LogRecord, now: Instant) {
        let (source, accepted) = match record.event {
            LogEvent::Accepted(a) => (a.source, Some(a)),
            LogEvent::Unreadable(source) => (source, None),
            LogEvent::Mention(_) | LogEvent::Channel(_) | LogEvent::Refusal(_) => return,
        };
        self.records_seen += 1;
        self.records.insert(
            source,
            vec![LoginRecord {
                accepted,
                pid: record.pid,
                read_at_ticks: None,
                seen: now,
                seq: self.records_seen,
            }],
        );
    }

    /// Drops what the start-up backfill found for no current connection. (A connection
    /// still authenticating keeps its line: it may be its own, just logged; if a line is
    /// logged for it later, that one replaces it.)
    pub(super) fn forget_backfill(&mut self) {
        let peers = &self.last_peers;
        self.records.retain(|peer, list| {
            list.retain(|r| !r.is_backfill() || peers.contains(peer));
            !list.is_empty()
        });
    }

    pub(super) fn on_records(&mut self, records: Vec<LogRecord>, procfs: &Procfs, now: Instant) {
        if records.is_empty() {
            return;
        }
        let ticks = procfs.uptime_ticks().ok();
        for record in records {
            self.on_record(record, ticks, now);
        }
    }

    fn on_record(&mut self, record: LogRecord, read_at_ticks: Option<u64>, now: Instant) {
        let event = match record.event {
            LogEvent::Refusal(part) => {
                let source = part.source();
                if let Some(attempt) = self.refusals.push_part(record.pid, part) {
                    self.refused.push(SessionEvent::Refused {
                        attempt: Box::new(attempt),
                        at: SystemTime::now(),
                    });
                }
                match source {
                    Some(source) => LogEvent::Mention(source),
                    None => return,
                }
            }
            other => {
                self.refusals.other_line(record.pid);
                other
            }
        };
        let (source, accepted) = match event {
            LogEvent::Accepted(a) => (a.source, Some(a)),
            LogEvent::Unreadable(source) => (source, None),
            LogEvent::Refusal(_) => return,
            LogEvent::Mention(source) | LogEvent::Channel(source) => {
                let known = self.sessions.values().any(|s| s.source == source)
                    || self.records.contains_key(&source);
                if known {
                    // A new channel changes a title at most, and sshd sets it before it
                    // logs the line: scanned quickly for a moment (the login is read
                    // afresh, not settled, while it is urgent). Anything else may be the
                    // connection's end, which is looked for until it shows.
                    let channel = matches!(event, LogEvent::Channel(_));
                    let until = now + if channel { CHANNEL_WAIT } else { URGENT_FOR };
                    self.urgent.insert(source, Urgent { until, end: true });
                    self.hurry(now);
                }
                return;
            }
        };
        self.records_seen += 1;
        let login = LoginRecord {
            accepted,
            pid: record.pid,
            read_at_ticks,
            seen: now,
            seq: self.records_seen,
        };
        // A line for a login already announced. Announced without one (its line came
        // after `LOG_GRACE`, as it does when sshd's log lags under load), this is its
        // line: it completes the attribution. Announced with one, a second, different
        // line means the log cannot be trusted about this connection.
        let mut consumed = false;
        for s in self.sessions.values_mut() {
            if s.source != source
                || login.pid.is_some_and(|p| p != s.monitor.pid)
                || read_at_ticks.is_some_and(|t| t + TICK_SLACK < s.monitor.start_ticks)
            {
                continue;
            }
            consumed = true;
            let now_attributed = match (&s.attribution, &login.accepted) {
                (Attribution::Unknown, Some(a)) if a.account == s.account => {
                    info!(session = %s.id, %source, "a late Accepted line completes the attribution");
                    Attribution::Logged(Box::new(a.clone()))
                }
                // The same line seen again is no second line.
                (Attribution::Logged(known), Some(a)) if **known == *a => continue,
                (Attribution::Conflicting, _) => continue,
                (Attribution::Unknown, _) => {
                    warn!(
                        session = %s.id,
                        %source,
                        "a late Accepted line disagrees with /proc about the session (account, or unreadable): its attribution is not trusted"
                    );
                    Attribution::Conflicting
                }
                (Attribution::Logged(_), _) => {
                    warn!(
                        session = %s.id,
                        %source,
                        "a second, different Accepted line for a live session: its attribution is no longer trusted"
                    );
                    Attribution::Conflicting
                }
            };
            s.attribution = now_attributed;
            self.changed
                .push(SessionEvent::Updated(Box::new(s.clone())));
        }
        if consumed {
            self.hurry(now);
            return;
        }
        let list = self.records.entry(source).or_default();
        if login.read_at_ticks.is_some() {
            list.retain(|r| !r.is_backfill());
        }
        list.push(login);
        self.urgent.insert(
            source,
            Urgent {
                until: now + URGENT_FOR,
                end: false,
            },
        );
        self.trim_records(now);
        self.hurry(now);
    }

    fn trim_records(&mut self, now: Instant) {
        self.records.retain(|_, list| {
            list.retain(|r| now.duration_since(r.seen) < RECORD_TTL);
            !list.is_empty()
        });
        let total: usize = self.records.values().map(Vec::len).sum();
        if total > MAX_RECORDS {
            // Down to 90%, so that a flood does not sort on every line.
            let keep = MAX_RECORDS * 9 / 10;
            let mut seqs: Vec<u64> = self.records.values().flatten().map(|r| r.seq).collect();
            seqs.sort_unstable();
            let cutoff = seqs[total - keep];
            self.records.retain(|_, list| {
                list.retain(|r| r.seq >= cutoff);
                !list.is_empty()
            });
        }
    }

    /// What the log says about `conn` (whose titles name `account`), and whether it said
    /// anything at all.
    fn attribution(&self, conn: &Connection, account: &str) -> (Attribution, bool) {
        let fitting: Vec<&LoginRecord> = self
            .records
            .get(&conn.peer)
            .into_iter()
            .flatten()
            .filter(|r| r.fits(conn))
            .collect();
        let Some(first) = fitting.first() else {
            return (Attribution::Unknown, false);
        };
        let conflict = fitting.iter().any(|r| r.accepted != first.accepted);
        match &first.accepted {
            Some(a) if !conflict && a.account == account => {
                (Attribution::Logged(Box::new(a.clone())), true)
            }
            _ => (Attribution::Conflicting, true),
        }
    }

    /// Whether `conn`, not authenticated by its titles, is by its log: its monitor
    /// (`U [priv]`) logged an `Accepted` line for it, for that account, and no other,
    /// read while the connection was up (a line read from the file at start may be an
    /// older connection's from the same address and port: it never makes a login).
    fn accepted_by_log(&self, conn: &Connection) -> bool {
        let Role::Monitor { user } = &conn.monitor_title.role else {
            return false;
        };
        let fresh = self
            .records
            .get(&conn.peer)
            .into_iter()
            .flatten()
            .filter(|r| r.fits(conn))
            .all(|r| !r.is_backfill());
        fresh && matches!(self.attribution(conn, user), (Attribution::Logged(_), true))
    }

    /// Scans `/proc`; returns what started and ended.
    pub(super) fn scan(&mut self, now: Instant) -> io::Result<Vec<SessionEvent>> {
        // Quiet: the periodic scan, with no log line or login waiting on it.
        let quiet =
            now >= self.next_reconcile && self.urgent.is_empty() && self.first_seen.is_empty();
        // Logins with nothing left to learn but their end: their titles are not read
        // again until the next whole scan (a scan costs what changed, not every login).
        let settled = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                s.lingering.is_none()
                    && !self.shape_pending.contains(id)
                    && !self.urgent.contains_key(&s.source)
            })
            .map(|(id, _)| id.0)
            .collect();
        self.scanner.set_settled(settled);
        let scan = self.scanner.scan_at(now, quiet)?;
        let reconcile = now >= self.next_reconcile;
        self.last_peers = scan.connections.iter().map(|c| c.peer).collect();
        if tracing::enabled!(target: TIMING, tracing::Level::DEBUG) {
            for c in &scan.connections {
                let t = self.timing.entry(c.monitor).or_insert(LoginTiming {
                    seen: now,
                    authenticated: None,
                    channel: None,
                });
                if c.is_authenticated() && t.authenticated.is_none() {
                    t.authenticated = Some(now);
                }
                if c.ttys().is_some_and(|t| *t != Ttys::NoChannel) && t.channel.is_none() {
                    t.channel = Some(now);
                }
            }
            let monitors: HashSet<ProcessRef> =
                scan.connections.iter().map(|c| c.monitor).collect();
            self.timing.retain(|m, _| monitors.contains(m));
        } else {
            self.timing.clear();
        }
        // A login is live once its titles show it authenticated, or once its monitor
        // (`U [priv]`) has logged its `Accepted` line: sshd logs that line when it has
        // accepted the key, before its post-authentication work (the PAM session, the
        // session process, the channel), which under load takes seconds. Such a login
        // is announced at once; its shape follows as an update.
        let live: HashMap<ProcessRef, &Connection> = scan
            .connections
            .iter()
            .filter(|c| {
                c.is_authenticated()
                    || self.sessions.contains_key(&SessionId(c.monitor))
                    || self.accepted_by_log(c)
            })
            .map(|c| (c.monitor, c))
            .collect();

        let mut events = std::mem::take(&mut self.changed);
        // Logins whose monitor is gone: lingering while any process of theirs remains.
        // A login that just lost its monitor is looked at now; one already lingering at
        // each whole scan, when a kill asked, or when a process of it is gone.
        let recheck = scan.whole
            || std::mem::take(&mut self.recheck_lingering)
            || (reconcile && self.lingering_process_gone());
        let gone: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| !live.contains_key(&id.0) && (recheck || !s.is_lingering()))
            .map(|(id, _)| *id)
            .collect();
        self.first_seen.retain(|m, _| live.contains_key(m));

        // New logins ready to be announced: authenticated, their log line in (or the
        // grace period over), their channel open (or the wait over).
        let mut waiting = false;
        let mut fresh: Vec<&Connection> = live
            .values()
            .filter(|c| !self.sessions.contains_key(&SessionId(c.monitor)))
            .copied()
            .collect();
        fresh.sort_by_key(|c| c.monitor);
        let mut ready = Vec::new();
        for conn in fresh {
            let first = *self.first_seen.entry(conn.monitor).or_insert(now);
            let age = now.duration_since(first);
            let Some(account) = conn.account().map(str::to_owned) else {
                continue;
            };
            let ttys = conn.ttys().cloned().unwrap_or(Ttys::NoChannel);
            let (attribution, logged) = self.attribution(conn, &account);
            // Live by its log line alone: announced now, its channel sent later.
            let early = !conn.is_authenticated();
            let channel_ready = early || ttys != Ttys::NoChannel || age >= CHANNEL_WAIT;
            let log_ready = logged || !self.log_enabled || age >= LOG_GRACE;
            if !(channel_ready && log_ready) {
                waiting = true;
                continue;
            }
            ready.push((conn, account, ttys, attribution));
        }

        // One table, indexed once, for every login this scan looks up. Between whole
        // scans a new login's processes are its tree (processes it lost already are found
        // by the next whole scan, and by any kill, which looks at the whole host).
        let refresh = scan.whole && !self.sessions.is_empty();
        let trees = self.scanner.follows_trees() && !scan.whole;
        let table = if !gone.is_empty() || (!ready.is_empty() && !trees) || refresh {
            Some(self.procfs.table()?)
        } else {
            None
        };
        let index = table.as_ref().map(ProcessTable::index);

        if let Some(index) = &index {
            for id in gone {
                let Some(session) = self.sessions.get_mut(&id) else {
                    continue;
                };
                match lingering(&self.procfs, index, session, &scan.listener.processes) {
                    None => {
                        self.sessions.remove(&id);
                        events.push(SessionEvent::Ended(id));
                    }
                    Some((processes, left)) => {
                        let changed = session.processes != processes || session.lingering.is_none();
                        if session.lingering.is_none() {
                            info!(
                                session = %id,
                                account = %session.account,
                                pids = ?processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
                                "connection ended; processes of the login remain (lingering)"
                            );
                        }
                        session.processes = processes;
                        session.lingering = Some(left);
                        if changed {
                            events.push(SessionEvent::Updated(Box::new(session.clone())));
                        }
                    }
                }
            }
        }

        for (conn, account, ttys, attribution) in ready {
            let processes = match &index {
                Some(t) => t.members(conn.monitor, conn.audit_session),
                None => self.procfs.tree(conn.monitor),
            };
            let session = Session {
                id: SessionId(conn.monitor),
                account,
                source: conn.peer,
                local: conn.local,
                started_at: procfs::start_time(self.boot, conn.monitor.start_ticks),
                ttys,
                attribution,
                monitor: conn.monitor,
                session_process: conn.session_process.as_ref().map(|(p, _)| *p),
                audit_session: conn.audit_session,
                processes,
                listeners: scan.listener.processes.clone(),
                lingering: None,
                cgroup: self.cgroup_mount.as_deref().and_then(|mount| {
                    let pid = conn
                        .session_process
                        .as_ref()
                        .map_or(conn.monitor.pid, |(p, _)| p.pid);
                    cgroup::login_cgroup_of(&self.procfs, pid, mount)
                }),
            };
            if session.ttys == Ttys::NoChannel {
                self.shape_pending.insert(session.id);
            }
            if let Some(t) = self.timing.get(&conn.monitor) {
                let line = self
                    .records
                    .get(&conn.peer)
                    .into_iter()
                    .flatten()
                    .filter(|r| r.fits(conn))
                    .map(|r| r.seen)
                    .min();
                debug!(
                    target: TIMING,
                    port = conn.peer.port(),
                    seen_ms = unix_ms(Some(t.seen)),
                    line_ms = unix_ms(line),
                    authenticated_ms = unix_ms(t.authenticated),
                    channel_ms = unix_ms(t.channel),
                    announced_ms = unix_ms(Some(now)),
                    by_line = !conn.is_authenticated(),
                    "login timing"
                );
            }
            // The line is used up; a later one for this connection is a conflict.
            if let Some(list) = self.records.get_mut(&conn.peer) {
                list.retain(|r| !r.fits(conn));
            }
            self.records.retain(|_, l| !l.is_empty());
            self.first_seen.remove(&conn.monitor);
            self.sessions.insert(session.id, session.clone());
            events.push(SessionEvent::Started(Box::new(session)));
        }

        // Keep live sessions current: ttys change as channels open, processes come and go.
        for (id, s) in &mut self.sessions {
            let Some(conn) = live.get(&id.0) else {
                continue;
            };
            if let Some(t) = conn.ttys() {
                s.ttys = t.clone();
            }
            let session_process = conn.session_process.as_ref().map(|(p, _)| *p);
            // Announced by its log line before the session process was forked: the
            // login's cgroup (pam_systemd's scope) is that process's.
            if s.session_process.is_none()
                && s.cgroup.is_none()
                && let (Some(p), Some(mount)) = (session_process, self.cgroup_mount.as_deref())
            {
                s.cgroup = cgroup::login_cgroup_of(&self.procfs, p.pid, mount);
            }
            s.session_process = session_process;
            // pam_loginuid may set it only after the login was announced.
            if s.audit_session.is_none() {
                s.audit_session = conn.audit_session;
            }
            if refresh && let Some(t) = &index {
                s.processes = t.members(conn.monitor, conn.audit_session);
            }
            // Announced before its first channel: its shape, now known, is sent.
            if s.ttys != Ttys::NoChannel && self.shape_pending.remove(id) {
                if let Some(t) = self.timing.get(&id.0) {
                    debug!(
                        target: TIMING,
                        port = s.source.port(),
                        authenticated_ms = unix_ms(t.authenticated),
                        channel_ms = unix_ms(t.channel),
                        "login shape"
                    );
                }
                events.push(SessionEvent::Updated(Box::new(s.clone())));
            }
        }
        let sessions = &self.sessions;
        self.shape_pending.retain(|id| sessions.contains_key(id));

        // Quick scans go on while a log line's news is not visible yet.
        // (A login announced by its log line is followed quickly until its channel shows.)
        let connections = &scan.connections;
        let sessions = &self.sessions;
        let pending = &self.shape_pending;
        self.urgent.retain(|addr, u| {
            if now >= u.until {
                return false;
            }
            let mut conns = connections.iter().filter(|c| c.peer == *addr);
            if u.end {
                conns.next().is_some()
            } else {
                conns.any(|c| {
                    let id = SessionId(c.monitor);
                    !sessions.contains_key(&id) || pending.contains(&id)
                })
            }
        });
        if reconcile {
            self.trim_records(now);
            self.next_reconcile = now + self.reconcile_interval;
        }
        if waiting || !self.urgent.is_empty() {
            self.next_scan = now + self.step;
            self.step = (self.step * 2).min(MAX_STEP);
        } else {
            self.step = MIN_STEP;
            self.next_scan = self.next_reconcile;
        }
        self.next_scan = self.next_scan.min(self.next_reconcile);
        Ok(events)
    }
}

/// What is left of a login whose monitor is gone: its processes and who runs what, or
/// `None` when nothing is (the login has ended). The listeners and the agent itself are
/// never counted.
fn lingering(
    procfs: &Procfs,
    table: &TableIndex<'_>,
    session: &Session,
    listeners: &[ProcessRef],
) -> Option<(Vec<ProcessRef>, Vec<LingeringProcess>)> {
    let me = std::process::id();
    let mut known = session.processes.clone();
    known.retain(|p| !listeners.contains(p) && !session.listeners.contains(p));
    let processes: Vec<ProcessRef> = table
        .login_processes(session.monitor, session.audit_session, &known)
        .into_iter()
        .filter(|p| {
            p.pid != me
                && !listeners.iter().any(|l| l.pid == p.pid)
                && !session.listeners.iter().any(|l| l.pid == p.pid)
        })
        .collect();
    let left: Vec<LingeringProcess> = processes
        .iter()
        .filter_map(|p| {
            // Gone between the table and now: not left behind after all.
            let (uid, command) = procfs.owner_and_command(p.pid).ok()?;
            Some(LingeringProcess {
                process: *p,
                uid,
                account: account_name(uid),
                command,
            })
        })
        .collect();
    if left.is_empty() {
        return None;
    }
    let processes = left.iter().map(|l| l.process).collect();
    Some((processes, left))
}

/// The account name of `uid`, from the system's user database.
fn account_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    use crate::sessions::log::{Accepted, AcceptedKey};
    use crate::sessions::procfs::WHOLE_SCAN_EVERY;
    use crate::sessions::procfs::fake::{FakeProc, FakeProcess};
    use crate::sessions::procfs::{AUDIT_UNSET, TCP_LISTEN};
    use crate::sessions::refused::Reason;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const LISTENER: &str = "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups";

    struct World {
        fake: FakeProc,
        tracker: Tracker,
        now: Instant,
    }

    impl World {
        fn new(log_enabled: bool) -> World {
            let fake = FakeProc::new();
            fake.add(&FakeProcess {
                pid: 100,
                ppid: 1,
                comm: "sshd",
                cmdline: LISTENER,
                start: 10,
                sessionid: AUDIT_UNSET,
                sockets: &[1],
            });
            let selector = SshdSelector::Port(2222);
            let tracker = Tracker::new(
                Procfs::new(fake.root()),
                selector,
                log_enabled,
                Duration::from_secs(3),
                UNIX_EPOCH,
            );
            let mut w = World {
                fake,
                tracker,
                now: Instant::now(),
            };
            w.sockets(&[]);
            w
        }

        /// Client connections `(port, inode)` to 127.0.0.1:2222.
        fn sockets(&mut self, clients: &[(u16, u64)]) {
            let mut all = vec![(addr("0.0.0.0:2222"), addr("0.0.0.0:0"), TCP_LISTEN, 1)];
            for (port, inode) in clients {
                all.push((
                    addr("127.0.0.1:2222"),
                    SocketAddr::new("127.0.0.1".parse().unwrap(), *port),
                    1,
                    *inode,
                ));
            }
            self.fake.set_sockets(&all);
        }

        fn sshd(&self, pid: u32, ppid: u32, title: &str, sessionid: u32, inode: u64) {
            self.fake.add(&FakeProcess {
                pid,
                ppid,
                comm: "sshd",
                cmdline: title,
                start: u64::from(pid),
                sessionid,
                sockets: &[inode],
            });
        }

        fn scan(&mut self) -> Vec<SessionEvent> {
            self.tracker.scan(self.now).unwrap()
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
        }

        fn accepted(&mut self, port: u16, account: &str, key_id: &str) {
            let record = LogRecord {
                pid: None,
                event: LogEvent::Accepted(Accepted {
                    method: "publickey".into(),
                    account: account.into(),
                    source: SocketAddr::new("127.0.0.1".parse().unwrap(), port),
                    key: Some(AcceptedKey::Certificate {
                        key_type: "ED25519-CERT".into(),
                        key_fingerprint: "SHA256:k".into(),
                        key_id: key_id.into(),
                        serial: 9,
                        ca_type: "ED25519".into(),
                        ca_fingerprint: "SHA256:ca".into(),
                    }),
                }),
            };
            // Read "now": well after the fake processes' start ticks.
            self.tracker.on_record(record, Some(100_000), self.now);
        }

        /// A line naming the connection from `port` (`Starting session: … port P`).
        fn mention(&mut self, port: u16) {
            let record = LogRecord {
                pid: None,
                event: LogEvent::Mention(SocketAddr::new("127.0.0.1".parse().unwrap(), port)),
            };
            self.tracker.on_record(record, Some(100_000), self.now);
        }
    }

    fn started(events: &[SessionEvent]) -> Vec<&Session> {
        events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Started(s) => Some(&**s),
                SessionEvent::Updated(_)
                | SessionEvent::Ended(_)
                | SessionEvent::Refused { .. } => None,
            })
            .collect()
    }

    /// sshd's refusal lines, as a syslog file carries them, become refused attempts with
    /// their reason; they announce no session.
    #[test]
    fn refusal_lines_become_refused_attempts_with_their_reason() {
        let mut w = World::new(true);
        for line in [
            "Dec  5 06:00:00 h sshd[700]: Authentication key ED25519-CERT SHA256:k revoked by file /var/lib/signoff/revoked.krl",
            "Dec  5 06:00:00 h sshd[701]: Invalid user nobody-here from 192.0.2.9 port 4001",
            "Dec  5 06:00:00 h sshd[700]: Failed publickey for deploy from 192.0.2.8 port 4000 ssh2: ED25519-CERT SHA256:k ID bob@corp (serial 12) CA ED25519 SHA256:ca",
            "Dec  5 06:00:00 h sshd[702]: Failed publickey for deploy from 192.0.2.7 port 4002 ssh2: ED25519 SHA256:plain",
        ] {
            let record = log::parse_file_line(line).unwrap();
            w.tracker.on_record(record, Some(100_000), w.now);
        }
        let refused: Vec<(String, Reason)> = std::mem::take(&mut w.tracker.refused)
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::Refused { attempt, .. } => Some((attempt.account, attempt.reason)),
                _ => None,
            })
            .collect();
        assert_eq!(
            refused,
            [
                ("nobody-here".to_owned(), Reason::InvalidUser),
                ("deploy".to_owned(), Reason::Revoked),
            ],
            "a plain key's Failed line is no news"
        );
        assert!(w.scan().is_empty());
    }

    #[test]
    fn login_announced_with_its_log_line_and_ended_when_the_monitor_goes() {
        let mut w = World::new(true);
        assert!(w.scan().is_empty());
        // Pre-authentication: nothing yet.
        w.sockets(&[(40001, 11)]);
        w.sshd(110, 100, "sshd: alice [priv]", AUDIT_UNSET, 11);
        w.sshd(111, 110, "sshd: alice [net]", AUDIT_UNSET, 11);
        assert!(w.scan().is_empty());
        // Authenticated: the log line, then the session child.
        w.accepted(40001, "alice", "alice@corp");
        assert_eq!(
            w.tracker.next_scan, w.now,
            "a log line asks for a scan at once"
        );
        w.fake.remove(111);
        w.sshd(112, 110, "sshd: alice@pts/4", 7, 11);
        let events = w.scan();
        let s = started(&events);
        assert_eq!(s.len(), 1);
        let s = s[0];
        assert_eq!(s.id.to_string(), "110:110");
        assert_eq!(s.account, "alice");
        assert_eq!(s.source, addr("127.0.0.1:40001"));
        assert_eq!(s.key_id(), Some("alice@corp"));
        assert_eq!(s.tty(), Some("pts/4"));
        assert_eq!(s.session_process.map(|p| p.pid), Some(112));
        assert_eq!(s.listeners.len(), 1);
        // Announced once.
        w.advance(Duration::from_millis(10));
        assert!(w.scan().is_empty());
        // The monitor goes.
        w.fake.remove(112);
        w.fake.remove(110);
        assert_eq!(
            w.scan(),
            [SessionEvent::Ended(SessionId(ProcessRef {
                pid: 110,
                start_ticks: 110
            }))]
        );
        assert!(w.tracker.sessions.is_empty());
    }

    /// Under load sshd's post-authentication work (the PAM session, forking the session
    /// process) takes seconds after it logged `Accepted`: the login is announced from its
    /// line and its monitor, and its shape follows as an update.
    #[test]
    fn a_login_is_announced_by_its_accepted_line_and_its_shape_follows() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(110, 100, "sshd: alice [priv]", AUDIT_UNSET, 11);
        w.sshd(111, 110, "sshd: alice [net]", AUDIT_UNSET, 11);
        assert!(w.scan().is_empty(), "not authenticated yet");
        w.accepted(40001, "alice", "alice@corp");
        let events = w.scan();
        let s = started(&events);
        assert_eq!(s.len(), 1, "{events:?}");
        assert_eq!(s[0].id.to_string(), "110:110");
        assert_eq!(s[0].key_id(), Some("alice@corp"));
        assert_eq!(s[0].ttys, Ttys::NoChannel);
        assert_eq!(s[0].session_process, None);
        // Still waiting for its session process: scanned quickly, announced once.
        assert!(w.tracker.next_scan <= w.now + MAX_STEP);
        w.advance(Duration::from_millis(5));
        assert!(w.scan().is_empty());
        // The session process, with its channel.
        w.fake.remove(111);
        w.sshd(112, 110, "sshd: alice@pts/4", 7, 11);
        w.advance(Duration::from_millis(5));
        let events = w.scan();
        let [SessionEvent::Updated(s)] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(s.tty(), Some("pts/4"));
        assert_eq!(s.session_process.map(|p| p.pid), Some(112));
        assert_eq!(s.key_id(), Some("alice@corp"), "the attribution stays");
        // Sent once; later channels show in the snapshot only.
        w.fake.set_cmdline(112, "sshd: alice@pts/4,pts/5");
        w.advance(Duration::from_millis(5));
        assert!(w.scan().is_empty());
        // The monitor goes.
        w.fake.remove(112);
        w.fake.remove(110);
        let events = w.scan();
        assert!(
            matches!(&events[..], [SessionEvent::Ended(_)]),
            "{events:?}"
        );
    }

    /// Only a line that is the connection's own, for the monitor's account, and alone
    /// makes a login of a monitor that titles do not show authenticated.
    #[test]
    fn a_line_that_is_not_the_connections_own_announces_nothing_early() {
        // For another account than the monitor's.
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(110, 100, "sshd: alice [priv]", AUDIT_UNSET, 11);
        w.accepted(40001, "root", "root@corp");
        assert!(w.scan().is_empty());
        w.advance(LOG_GRACE + LOG_GRACE);
        assert!(
            w.scan().is_empty(),
            "never announced while not authenticated"
        );

        // Two different lines for one connection.
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(110, 100, "sshd: alice [priv]", AUDIT_UNSET, 11);
        w.accepted(40001, "alice", "alice@corp");
        w.accepted(40001, "alice", "mallory@corp");
        assert!(w.scan().is_empty());
        // ... announced by its titles then, as conflicting.
        w.sshd(112, 110, "sshd: alice@notty", 7, 11);
        let events = w.scan();
        assert_eq!(started(&events)[0].attribution, Attribution::Conflicting);

        // Logged by another process.
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(110, 100, "sshd: alice [priv]", AUDIT_UNSET, 11);
        let record = LogRecord {
            pid: Some(999),
            event: LogEvent::Accepted(Accepted {
                method: "password".into(),
                account: "alice".into(),
                source: addr("127.0.0.1:40001"),
                key: None,
            }),
        };
        w.tracker.on_record(record, Some(100_000), w.now);
        assert!(w.scan().is_empty());

        // Logged before the connection began (an earlier connection's line).
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(110, 100, "sshd: alice [priv]", AUDIT_UNSET, 11);
        let record = LogRecord {
            pid: None,
            event: LogEvent::Accepted(Accepted {
                method: "password".into(),
                account: "alice".into(),
                source: addr("127.0.0.1:40001"),
                key: None,
            }),
        };
        w.tracker.on_record(record, Some(50), w.now);
        assert!(w.scan().is_empty());

        // With the log switched off there is no line: titles only.
        let mut w = World::new(false);
        w.sockets(&[(40001, 11)]);
        w.sshd(110, 100, "sshd: alice [priv]", AUDIT_UNSET, 11);
        assert!(w.scan().is_empty());
    }

    #[test]
    fn login_waits_for_its_log_line_then_goes_unattributed() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(120, 100, "sshd: root@notty", 5, 11);
        assert!(w.scan().is_empty(), "waits for the Accepted line");
        assert!(w.tracker.next_scan < w.now + MAX_STEP + MAX_STEP);
        w.advance(LOG_GRACE);
        let events = w.scan();
        let s = started(&events);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].attribution, Attribution::Unknown);
        assert_eq!(s[0].audit_session, Some(5));
    }

    /// Under load sshd's log can lag the login by more than the grace period: the line
    /// then completes the attribution of the login announced without one, and never
    /// marks it conflicting.
    #[test]
    fn a_line_delayed_past_the_grace_period_completes_the_attribution() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(120, 100, "sshd: alice@notty", 5, 11);
        assert!(w.scan().is_empty(), "waits for the Accepted line");
        w.advance(LOG_GRACE + Duration::from_secs(10));
        let events = w.scan();
        assert_eq!(started(&events)[0].attribution, Attribution::Unknown);
        // The line arrives at last.
        w.accepted(40001, "alice", "alice@corp");
        assert_eq!(w.tracker.next_scan, w.now, "announced at the next scan");
        let events = w.scan();
        let [SessionEvent::Updated(s)] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(s.key_id(), Some("alice@corp"));
        let s = w.tracker.sessions.values().next().unwrap();
        assert_eq!(s.key_id(), Some("alice@corp"));
        assert!(w.tracker.records.is_empty(), "the line is used up");
        // The same line read again is not a second line.
        w.accepted(40001, "alice", "alice@corp");
        assert!(w.scan().is_empty());
        // A different one is.
        w.accepted(40001, "alice", "mallory@corp");
        let events = w.scan();
        let [SessionEvent::Updated(s)] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(s.attribution, Attribution::Conflicting);
    }

    #[test]
    fn a_late_line_for_another_account_is_a_conflict() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(120, 100, "sshd: alice@notty", 5, 11);
        w.scan();
        w.advance(LOG_GRACE);
        assert_eq!(started(&w.scan())[0].attribution, Attribution::Unknown);
        w.accepted(40001, "root", "root@corp");
        let events = w.scan();
        let [SessionEvent::Updated(s)] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(s.attribution, Attribution::Conflicting);
    }

    #[test]
    fn without_a_log_logins_are_announced_at_once() {
        let mut w = World::new(false);
        w.sockets(&[(40001, 11)]);
        w.sshd(120, 100, "sshd: root@notty", 5, 11);
        assert_eq!(started(&w.scan()).len(), 1);
    }

    #[test]
    fn login_waits_briefly_for_its_channel() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(130, 100, "sshd: bob", AUDIT_UNSET, 11);
        w.accepted(40001, "bob", "bob@corp");
        assert!(w.scan().is_empty(), "no channel yet");
        w.fake.set_cmdline(130, "sshd: bob@notty");
        w.advance(Duration::from_millis(5));
        let events = w.scan();
        assert_eq!(started(&events)[0].ttys, Ttys::NoTty);
        // Another channel, with a pty, on the same connection: sshd logs `Starting
        // session: shell on pts/7 … port 40001`, which has the login's processes read again
        // (a settled login's titles are not, until the next whole scan).
        w.fake.set_cmdline(130, "sshd: bob@pts/7");
        w.mention(40001);
        w.advance(Duration::from_millis(5));
        assert!(w.scan().is_empty());
        let s = w.tracker.sessions.values().next().unwrap();
        assert_eq!(s.tty(), Some("pts/7"), "the snapshot follows");

        // `ssh -N`: no channel ever.
        w.sockets(&[(40001, 11), (40002, 12)]);
        w.sshd(140, 100, "sshd: carol", AUDIT_UNSET, 12);
        w.accepted(40002, "carol", "carol@corp");
        assert!(w.scan().is_empty());
        w.advance(CHANNEL_WAIT);
        let events = w.scan();
        assert_eq!(started(&events)[0].ttys, Ttys::NoChannel);
    }

    #[test]
    fn two_accepted_lines_for_one_connection_are_a_conflict() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(150, 100, "sshd: root@notty", 5, 11);
        w.accepted(40001, "root", "forged");
        w.accepted(40001, "root", "real");
        let events = w.scan();
        assert_eq!(started(&events)[0].attribution, Attribution::Conflicting);
    }

    #[test]
    fn a_later_second_line_withdraws_the_attribution() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(150, 100, "sshd: root@notty", 5, 11);
        w.accepted(40001, "root", "real");
        assert_eq!(started(&w.scan())[0].key_id(), Some("real"));
        w.accepted(40001, "root", "forged");
        let s = w.tracker.sessions.values().next().unwrap();
        assert_eq!(s.attribution, Attribution::Conflicting);
    }

    #[test]
    fn account_mismatch_is_a_conflict() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(150, 100, "sshd: root@notty", 5, 11);
        w.accepted(40001, "alice", "alice@corp");
        assert_eq!(started(&w.scan())[0].attribution, Attribution::Conflicting);
    }

    #[test]
    fn a_line_older_than_the_connection_is_not_its_line() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(150, 100, "sshd: root@notty", 5, 11);
        // Read at tick 50, the monitor started at tick 150: an earlier connection's line.
        let record = LogRecord {
            pid: None,
            event: LogEvent::Accepted(Accepted {
                method: "password".into(),
                account: "root".into(),
                source: addr("127.0.0.1:40001"),
                key: None,
            }),
        };
        w.tracker.on_record(record, Some(50), w.now);
        assert!(w.scan().is_empty());
        // A line logged by another PID is not its line either.
        let record = LogRecord {
            pid: Some(999),
            event: LogEvent::Accepted(Accepted {
                method: "password".into(),
                account: "root".into(),
                source: addr("127.0.0.1:40001"),
                key: None,
            }),
        };
        w.tracker.on_record(record, None, w.now);
        assert!(w.scan().is_empty());
        w.advance(LOG_GRACE);
        assert_eq!(started(&w.scan())[0].attribution, Attribution::Unknown);
    }

    #[test]
    fn quick_scans_after_a_disconnect_until_the_session_is_gone() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(150, 100, "sshd: root@notty", 5, 11);
        w.accepted(40001, "root", "k");
        assert_eq!(started(&w.scan()).len(), 1);
        w.advance(Duration::from_millis(1));
        w.scan();
        assert_eq!(w.tracker.next_scan, w.tracker.next_reconcile, "quiet again");
        let mention = LogRecord {
            pid: None,
            event: LogEvent::Mention(addr("127.0.0.1:40001")),
        };
        w.tracker.on_record(mention, Some(100_000), w.now);
        assert_eq!(w.tracker.next_scan, w.now);
        assert!(w.scan().is_empty(), "still there");
        assert!(w.tracker.next_scan <= w.now + MAX_STEP);
        w.fake.remove(150);
        w.advance(Duration::from_millis(2));
        assert!(matches!(w.scan()[..], [SessionEvent::Ended(_)]));
        assert_eq!(w.tracker.next_scan, w.tracker.next_reconcile);
        // A mention of an unknown connection does not hurry anything.
        w.advance(Duration::from_millis(2));
        let mention = LogRecord {
            pid: None,
            event: LogEvent::Mention(addr("127.0.0.1:5")),
        };
        w.tracker.on_record(mention, None, w.now);
        assert!(w.tracker.next_scan > w.now);
    }

    #[test]
    fn a_new_channel_hurries_scans_for_a_moment_and_its_tty_shows() {
        let mut w = World::new(true);
        w.sockets(&[(40001, 11)]);
        w.sshd(150, 100, "sshd: root@notty", 5, 11);
        w.accepted(40001, "root", "k");
        assert_eq!(started(&w.scan()).len(), 1);
        w.advance(Duration::from_millis(1));
        w.scan();
        assert_eq!(w.tracker.next_scan, w.tracker.next_reconcile, "quiet again");
        // A second channel, with a pty: sshd renames the session process, then logs.
        w.fake.set_cmdline(150, "sshd: root@pts/4");
        let channel = LogRecord {
            pid: None,
            event: LogEvent::Channel(addr("127.0.0.1:40001")),
        };
        w.tracker.on_record(channel, Some(100_000), w.now);
        assert_eq!(w.tracker.next_scan, w.now);
        w.scan();
        assert_eq!(
            w.tracker.sessions.values().next().unwrap().ttys,
            Ttys::Pty(vec!["pts/4".into()]),
            "read afresh at once, although the login was settled"
        );
        assert!(w.tracker.next_scan <= w.now + MAX_STEP);
        // The connection stays: the quick scans stop after CHANNEL_WAIT, not URGENT_FOR.
        w.advance(CHANNEL_WAIT);
        w.scan();
        assert_eq!(w.tracker.next_scan, w.tracker.next_reconcile, "quiet again");
    }

    #[test]
    fn processes_refresh_on_a_whole_scan() {
        let mut w = World::new(false);
        w.sockets(&[(40001, 11)]);
        w.sshd(150, 100, "sshd: root@notty", 5, 11);
        let events = w.scan();
        assert_eq!(started(&events)[0].processes.len(), 1);
        w.fake.add(&FakeProcess {
            pid: 160,
            ppid: 1,
            comm: "sleep",
            cmdline: "sleep",
            start: 160,
            sessionid: 5,
            sockets: &[],
        });
        let pids = |w: &World| -> Vec<u32> {
            let s = w.tracker.sessions.values().next().unwrap();
            s.processes.iter().map(|p| p.pid).collect()
        };
        // A process that left the login's tree is not looked for at every scan…
        w.advance(Duration::from_secs(3));
        w.scan();
        assert_eq!(pids(&w), [150]);
        // …but at the next whole one.
        w.advance(WHOLE_SCAN_EVERY);
        w.scan();
        assert_eq!(pids(&w), [150, 160]);
    }

    #[test]
    fn records_are_bounded() {
        let mut w = World::new(true);
        for i in 0..(MAX_RECORDS + 100) {
            let port = u16::try_from(i % 60_000).unwrap() + 1;
            let ip = if i < 60_000 { "127.0.0.2" } else { "127.0.0.3" };
            let record = LogRecord {
                pid: None,
                event: LogEvent::Accepted(Accepted {
                    method: "password".into(),
                    account: "x".into(),
                    source: SocketAddr::new(ip.parse().unwrap(), port),
                    key: None,
                }),
            };
            w.tracker.on_record(record, None, w.now);
        }
        let total: usize = w.tracker.records.values().map(Vec::len).sum();
        assert!(total <= MAX_RECORDS, "{total}");
    }

    #[test]
    fn backfill_keeps_the_latest_line_per_connection() {
        let mut w = World::new(true);
        let rec = |key_id: &str| LogRecord {
            pid: None,
            event: LogEvent::Accepted(Accepted {
                method: "publickey".into(),
                account: "root".into(),
                source: addr("127.0.0.1:40001"),
                key: Some(AcceptedKey::Plain {
                    key_type: "ED25519".into(),
                    fingerprint: format!("SHA256:{key_id}"),
                }),
            }),
        };
        w.tracker.on_backfill(rec("old"), w.now);
        w.tracker.on_backfill(rec("new"), w.now);
        w.sockets(&[(40001, 11)]);
        w.sshd(150, 100, "sshd: root@notty", 5, 11);
        let events = w.scan();
        assert_eq!(started(&events)[0].key_fingerprint(), Some("SHA256:new"));
        w.tracker.forget_backfill();
        assert!(w.tracker.records.is_empty());
    }

    #[test]
    fn backfill_for_a_connection_still_authenticating_waits_for_it() {
        let mut w = World::new(true);
        let rec = |key_id: &str| LogRecord {
            pid: None,
            event: LogEvent::Accepted(Accepted {
                method: "publickey".into(),
                account: "alice".into(),
                source: addr("127.0.0.1:40001"),
                key: Some(AcceptedKey::Plain {
                    key_type: "ED25519".into(),
                    fingerprint: format!("SHA256:{key_id}"),
                }),
            }),
        };
        w.tracker.on_backfill(rec("old"), w.now);
        w.tracker.on_backfill(
            LogRecord {
                pid: None,
                event: LogEvent::Mention(addr("1.1.1.1:1")),
            },
            w.now,
        );
        w.sockets(&[(40001, 11)]);
        w.sshd(110, 100, "sshd: alice [priv]", AUDIT_UNSET, 11);
        assert!(w.scan().is_empty());
        w.tracker.forget_backfill();
        assert_eq!(
            w.tracker.records.len(),
            1,
            "kept for the connection in progress"
        );
        // Its own line arrives: it replaces the backfilled one, no conflict.
        let mut own = rec("own");
        if let LogEvent::Accepted(a) = &mut own.event {
            a.account = "alice".into();
        }
        w.tracker.on_record(own, Some(100_000), w.now);
        w.sshd(111, 110, "sshd: alice@notty", 7, 11);
        let events = w.scan();
        assert_eq!(started(&events)[0].key_fingerprint(), Some("SHA256:own"));
    }
}
