//! The session watcher: sshd's log as it is written, `/proc` when the log says something
//! happened, and `/proc` every few seconds regardless.
//!
//! - A log line about a connection (`Accepted …`, `Starting session …`, `Disconnected …`)
//!   makes the watcher scan `/proc` at once and then again after 2, 4, 8 … up to 50 ms
//!   until what the line announced is visible (the post-authentication process exists;
//!   the monitor is gone), or a few seconds passed.
//! - A login is announced ([`SessionEvent::Started`]) once `/proc` shows it authenticated
//!   and its `Accepted` line is in (a login without one is announced after
//!   [`LOG_GRACE`], unattributed), and once its session channel is open or
//!   [`CHANNEL_WAIT`] passed (so that the tty is known; `ssh -N` opens none).
//! - A session ends ([`SessionEvent::Ended`]) when its monitor process is gone.
//! - A login announced unattributed whose `Accepted` line arrives later is attributed
//!   then, and a second, different `Accepted` line withdraws an attribution: both are
//!   [`SessionEvent::Updated`]. Only two different lines for one connection (or a line
//!   that disagrees with `/proc` about the account) make a login conflicting; a late
//!   line never does.
//! - What else changes in a live session later (ttys as channels open, member
//!   processes) shows in the snapshot ([`WatcherHandle::snapshot`]), not as an event.
//! - Every `reconcile_interval` `/proc` is scanned and the log file re-read, whatever
//!   inotify said. Scans follow sshd's process trees; every 30 s (and when a listener or
//!   a followed orphan is gone, or a kill asks) one reads every process of the host and
//!   refreshes the member processes (see [`procfs::Scanner`]).
//!
//! The log file is followed through rotation (inotify on its directory; a new inode is
//! read from its start, the old one to its end) and truncation. At start the last
//! [`BACKFILL_BYTES`] of it are read, so that sessions older than the agent are
//! attributed too. The journal is read with `journalctl --follow --output=json`, from the
//! oldest live login on, and resumed after its cursor if `journalctl` exits.
//!
//! Here is the async loop that feeds the `matching::Tracker` (which pairs log records
//! with connections) and publishes what it decides; `tail` follows the log file,
//! `journal` reads the journal, `blocking` runs the watcher without a runtime.

mod blocking;
mod journal;
mod matching;
mod tail;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use super::log::LogRecord;
use super::procfs::{self, Procfs};
use super::{LogSource, Session, SessionId, SessionsConfig};
use crate::kill::{self, KillError, KillReport, KillTarget};

pub use blocking::BlockingWatcher;
use journal::spawn_journal;
use matching::Tracker;
use tail::{FileTail, watch_file};

/// How long a login with no `Accepted` line waits for one before it is announced
/// unattributed.
pub const LOG_GRACE: Duration = Duration::from_secs(2);
/// How long an authenticated login waits for its first session channel before it is
/// announced without one.
pub const CHANNEL_WAIT: Duration = Duration::from_millis(250);
/// How much of the end of the log file is read at start.
pub const BACKFILL_BYTES: u64 = 16 * 1024 * 1024;
/// How many ended sessions are remembered, so that a kill order that arrives after the
/// client left still finds the processes it left behind.
const ENDED_KEPT: usize = 1024;
/// The tracing target of the per-login timing lines (at `debug`): when the watcher first
/// saw a login's connection, its `Accepted` line, its authenticated titles and its first
/// session channel, and when it announced it, in Unix milliseconds. `sessions-bench
/// --breakdown` turns them into a per-stage report.
pub const TIMING: &str = "signoff_agent::sessions::timing";

/// `t` as Unix milliseconds (0 for none), for the timing log.
pub fn unix_ms(t: Option<Instant>) -> u128 {
    let Some(t) = t else { return 0 };
    let (now, wall) = (Instant::now(), SystemTime::now());
    let wall = if t <= now {
        wall.checked_sub(now.duration_since(t))
    } else {
        wall.checked_add(t.duration_since(now))
    };
    wall.and_then(|w| w.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis())
}

/// A session came, changed state, or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A login was detected (also sent for every login live when the watcher starts).
    Started(Box<Session>),
    /// A login's connection ended but processes of it remain (it is lingering), the
    /// processes a lingering login left changed, or its attribution changed (a late
    /// `Accepted` line completed it, or a second, different one withdrew it).
    Updated(Box<Session>),
    /// A login ended: its monitor is gone and no process of it remains.
    Ended(SessionId),
    /// sshd refused a login attempt (read from its log when the line was read, `at`).
    Refused {
        /// Who tried, from where, with what, and why sshd said no.
        attempt: Box<super::refused::RefusedAttempt>,
        /// When the agent read the line.
        at: SystemTime,
    },
}

/// Why the watcher cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The `[sessions]` configuration is invalid.
    #[error("invalid [sessions] configuration: {0}")]
    Config(String),
    /// `/proc` cannot be read.
    #[error("cannot read /proc")]
    Proc(#[source] io::Error),
    /// The log file's directory cannot be watched.
    #[error("cannot watch {path} for changes")]
    Notify {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
    /// `journalctl` cannot be started.
    #[error("cannot start journalctl to read sshd's log")]
    Journal(#[source] io::Error),
    /// The thread of a [`BlockingWatcher`] could not start or ended.
    #[error("the session watcher thread failed")]
    Thread(#[source] io::Error),
}

/// What the watcher shares with its handles.
#[derive(Debug, Default)]
struct Shared {
    sessions: Mutex<BTreeMap<SessionId, Session>>,
    ended: Mutex<VecDeque<Session>>,
    rescan: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere never leaves these maps half-updated (every update is one call).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A cheap, cloneable view of a running watcher.
#[derive(Debug, Clone)]
pub struct WatcherHandle {
    shared: Arc<Shared>,
}

impl WatcherHandle {
    /// Every live session, as of the last scan.
    pub fn snapshot(&self) -> Vec<Session> {
        lock(&self.shared.sessions).values().cloned().collect()
    }

    /// One live session.
    pub fn get(&self, id: &SessionId) -> Option<Session> {
        lock(&self.shared.sessions).get(id).cloned()
    }

    /// Asks for a scan of `/proc` now (after a kill, say).
    pub fn rescan(&self) {
        self.shared.rescan.notify_one();
    }

    /// What a kill of session `id` would go after: a live or lingering session, or one
    /// that ended recently (a process it left may have appeared since).
    pub fn kill_target(&self, id: &SessionId) -> Result<KillTarget, KillError> {
        let session = self.get(id).or_else(|| {
            lock(&self.shared.ended)
                .iter()
                .find(|s| s.id == *id)
                .cloned()
        });
        session
            .map(|s| KillTarget::of(&s))
            .ok_or(KillError::UnknownSession(*id))
    }

    /// Kills session `id` (see [`WatcherHandle::kill_target`]), then asks for a rescan.
    /// Blocks for up to [`kill::KILL_BOUND`]: call it from `spawn_blocking`.
    pub fn kill_blocking(&self, id: &SessionId) -> Result<KillReport, KillError> {
        let target = self.kill_target(id)?;
        let report = kill::kill_target(&Procfs::default(), &target);
        self.rescan();
        report
    }
}

/// The watcher, running on the caller's tokio runtime; stops when dropped or when the
/// event receiver is dropped.
#[derive(Debug)]
pub struct SessionWatcher {
    handle: WatcherHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SessionWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SessionWatcher {
    /// Starts watching: reads the end of the log, scans `/proc`, sends
    /// [`SessionEvent::Started`] for every live login, then follows both. Never waits for
    /// `events` to have room: when its receiver falls a whole channel behind, events are
    /// dropped (with a warning) and [`WatcherHandle::snapshot`] is the way to catch up.
    pub async fn start(
        config: SessionsConfig,
        events: mpsc::Sender<SessionEvent>,
    ) -> Result<SessionWatcher, WatchError> {
        Self::start_in(config, Procfs::default(), events, Vec::new()).await
    }

    /// [`SessionWatcher::start`], taking back the `remembered` sessions (of an earlier run
    /// of the agent, see [`super::remembered`]) whose monitor is gone but of which
    /// processes remain: they are lingering, as they were before.
    pub async fn start_remembering(
        config: SessionsConfig,
        events: mpsc::Sender<SessionEvent>,
        remembered: Vec<Session>,
    ) -> Result<SessionWatcher, WatchError> {
        Self::start_in(config, Procfs::default(), events, remembered).await
    }

    /// [`SessionWatcher::start_remembering`] against another `/proc` tree (tests).
    pub async fn start_in(
        config: SessionsConfig,
        procfs: Procfs,
        events: mpsc::Sender<SessionEvent>,
        remembered: Vec<Session>,
    ) -> Result<SessionWatcher, WatchError> {
        config.validate().map_err(WatchError::Config)?;
        let shared = Arc::new(Shared::default());
        let boot = procfs.boot_time().map_err(WatchError::Proc)?;
        let source_kind = resolve_source(&config.sshd_log);
        let mut tracker = Tracker::new(
            procfs.clone(),
            config.selector(),
            !matches!(source_kind, LogSource::None),
            config.reconcile_interval,
            boot,
        );
        let now = Instant::now();

        let mut source = match &source_kind {
            LogSource::File(path) => {
                let mut tail = FileTail::open(path.clone());
                for record in tail.backfill() {
                    tracker.on_backfill(record, now);
                }
                let wake = Arc::new(Notify::new());
                let watcher = watch_file(path, Arc::clone(&wake))?;
                Source::File {
                    tail,
                    wake,
                    _watcher: watcher,
                }
            }
            LogSource::Journal => {
                // From a little before the oldest live login, so that it is attributed.
                let initial = procfs
                    .scan(tracker.scanner.selector(), &[])
                    .map_err(WatchError::Proc)?;
                let oldest = initial
                    .connections
                    .iter()
                    .map(|c| procfs::start_time(boot, c.monitor.start_ticks))
                    .min()
                    .unwrap_or_else(SystemTime::now);
                let since = oldest
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    .saturating_sub(5);
                Source::Journal(spawn_journal(since)?)
            }
            LogSource::None | LogSource::Auto => Source::None,
        };
        info!(log = ?source_kind, sshd = ?tracker.scanner.selector(), "watching SSH sessions");

        // First scan before returning: the caller's snapshot starts complete (logins
        // waiting for their log line or channel are announced by the loop).
        let mut first = tracker.scan(Instant::now()).map_err(WatchError::Proc)?;
        first.extend(tracker.take_back(remembered).map_err(WatchError::Proc)?);
        tracker.forget_backfill();
        publish(&shared, &first);
        if let Source::File { tail, .. } = &mut source {
            // Lines written since the backfill.
            let records = tail.read_new();
            tracker.on_records(records, &procfs, Instant::now());
        }

        let handle = WatcherHandle {
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(run(tracker, source, shared, events, first));
        Ok(SessionWatcher { handle, task })
    }

    /// A handle for snapshots, rescans and kills.
    pub fn handle(&self) -> WatcherHandle {
        self.handle.clone()
    }

    /// Every live session.
    pub fn snapshot(&self) -> Vec<Session> {
        self.handle.snapshot()
    }
}

fn resolve_source(configured: &LogSource) -> LogSource {
    match configured {
        LogSource::Auto => {
            if Path::new("/run/systemd/journal/socket").exists() {
                LogSource::Journal
            } else if Path::new("/var/log/auth.log").exists() {
                LogSource::File(PathBuf::from("/var/log/auth.log"))
            } else {
                warn!(
                    "no journal and no /var/log/auth.log: sessions are found in /proc only, \
                     without key attribution; set [sessions] sshd_log"
                );
                LogSource::None
            }
        }
        other => other.clone(),
    }
}

/// Applies events to the shared snapshot before they are sent, so that a receiver that
/// looks at the snapshot sees at least what it was told.
fn publish(shared: &Shared, events: &[SessionEvent]) {
    let mut sessions = lock(&shared.sessions);
    for event in events {
        match event {
            SessionEvent::Started(s) | SessionEvent::Updated(s) => {
                sessions.insert(s.id, (**s).clone());
            }
            SessionEvent::Ended(id) => {
                if let Some(s) = sessions.remove(id) {
                    let mut ended = lock(&shared.ended);
                    if ended.len() >= ENDED_KEPT {
                        ended.pop_front();
                    }
                    ended.push_back(s);
                }
            }
            SessionEvent::Refused { .. } => {}
        }
    }
}

async fn run(
    mut tracker: Tracker,
    mut source: Source,
    shared: Arc<Shared>,
    events: mpsc::Sender<SessionEvent>,
    first: Vec<SessionEvent>,
) {
    let procfs = tracker.procfs.clone();
    let mut last_error: Option<Instant> = None;
    let mut sender = EventSender::new(events);
    if sender.send_all(first).is_err() {
        return;
    }
    loop {
        let events = &sender.events;
        let due = tracker.next_scan;
        tokio::select! {
            () = events.closed() => return,
            () = shared.rescan.notified() => {
                tracker.recheck_lingering = true;
                tracker.scanner.request_whole();
                tracker.hurry(Instant::now());
            }
            records = source.next() => tracker.on_records(records, &procfs, Instant::now()),
            () = tokio::time::sleep_until(due.into()) => {}
        }
        if !tracker.refused.is_empty() {
            let refused = std::mem::take(&mut tracker.refused);
            if sender.send_all(refused).is_err() {
                return;
            }
        }
        let now = Instant::now();
        if now < tracker.next_scan {
            continue;
        }
        let reconciling = now >= tracker.next_reconcile;
        match tracker.scan(now) {
            Ok(found) => {
                if tracing::enabled!(target: TIMING, tracing::Level::DEBUG) {
                    // When the scan's news leaves it: a login waits for the whole scan.
                    let done = Instant::now();
                    debug!(
                        target: TIMING,
                        scan_us = done.duration_since(now).as_micros(),
                        events = found.len(),
                        sessions = tracker.sessions.len(),
                        "scan done"
                    );
                    for e in &found {
                        if let SessionEvent::Started(s) = e {
                            debug!(
                                target: TIMING,
                                port = s.source.port(),
                                published_ms = unix_ms(Some(done)),
                                "login published"
                            );
                        }
                    }
                }
                // Refresh what the snapshot holds of live sessions (ttys, processes).
                {
                    let mut sessions = lock(&shared.sessions);
                    for (id, s) in &tracker.sessions {
                        if let Some(old) = sessions.get_mut(id) {
                            *old = s.clone();
                        }
                    }
                }
                publish(&shared, &found);
                if sender.send_all(found).is_err() {
                    return;
                }
            }
            Err(e) => {
                // Once a minute at most: a broken /proc would otherwise flood the log.
                if last_error.is_none_or(|t| now.duration_since(t) > Duration::from_secs(60)) {
                    warn!(error = %e, "cannot scan /proc for SSH sessions");
                    last_error = Some(now);
                }
            }
        }
        if reconciling && let Source::File { tail, .. } = &mut source {
            // In case inotify missed a write (a log on a network file system, say).
            let records = tail.read_new();
            tracker.on_records(records, &procfs, Instant::now());
        }
    }
}

/// Sends events without ever waiting: a receiver that falls a whole channel behind
/// loses events (and is told in the log) rather than stopping the watcher, whose
/// snapshot, which kills rely on, must stay current.
struct EventSender {
    events: mpsc::Sender<SessionEvent>,
    dropped: u64,
    last_warning: Option<Instant>,
}

/// The receiver is gone.
struct Closed;

impl EventSender {
    fn new(events: mpsc::Sender<SessionEvent>) -> EventSender {
        EventSender {
            events,
            dropped: 0,
            last_warning: None,
        }
    }

    fn send_all(&mut self, events: Vec<SessionEvent>) -> Result<(), Closed> {
        for event in events {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Closed),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped += 1;
                    let now = Instant::now();
                    if self
                        .last_warning
                        .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
                    {
                        warn!(
                            dropped = self.dropped,
                            "session events dropped: their receiver is a whole channel behind \
                             (the snapshot still has every session)"
                        );
                        self.last_warning = Some(now);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where log lines come from.
enum Source {
    File {
        tail: FileTail,
        wake: Arc<Notify>,
        _watcher: notify::RecommendedWatcher,
    },
    Journal(mpsc::Receiver<LogRecord>),
    None,
}

impl Source {
    /// Waits for new log records (forever for [`Source::None`]).
    async fn next(&mut self) -> Vec<LogRecord> {
        match self {
            Source::File { tail, wake, .. } => {
                wake.notified().await;
                tail.read_new()
            }
            Source::Journal(rx) => match rx.recv().await {
                Some(first) => {
                    let mut out = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        out.push(more);
                    }
                    out
                }
                None => std::future::pending().await,
            },
            Source::None => std::future::pending().await,
        }
    }
}
