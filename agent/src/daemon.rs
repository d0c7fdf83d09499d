//! `signoff-agent run`: keeps this host in step with the control plane.
//!
//! First, a KRL sshd can load is made sure of at `krl_path` (sshd refuses every key when
//! `RevokedKeys` is missing or unparsable). Then, forever: connect over mTLS, say Hello with
//! the last applied revision, and for each snapshot or delta apply it, persist the host view
//! and the KRL atomically, and only then ack it. Every message from the control plane
//! refreshes the contact time that strict mode checks. On any failure, reconnect after an
//! exponential backoff with full jitter, so that a restart of the control plane does not
//! bring every agent back in the same second.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng as _;
use serde::{Deserialize, Serialize};
use signoff_core::error::chain as error_chain;
use signoff_proto::v1;
use signoff_proto::v1::agent_sync_client::AgentSyncClient;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, error, info, warn};

use crate::atomic::write_atomic;
use crate::config::Config;
use crate::decisions::{DecisionsOutbox, DecisionsSocket};
use crate::guards::{Guards, GuardsError};
use crate::holds::HoldsError;
use crate::identity::{Identity, IdentityError};
use crate::kill::{self, KillError, KillReport};
use crate::kill_journal::{self, KillJournal};
use crate::krl_writer::{self, KrlWriteError};
use crate::orders;
use crate::refused_outbox::RefusedOutbox;
use crate::sessions::remembered;
use crate::sessions::{
    Attribution, Session, SessionEvent, SessionId, SessionWatcher, WatchError, WatcherHandle,
};
use crate::signoffs::{Enforceable, Signoffs, SignoffsError};
use crate::state::{self, ApplyError, State};
use crate::transport::{self, TransportError};
use crate::trusted_cas::{TrustedCas, TrustedCasError};

/// Where the daemon tells `signoff-agent status` how it is doing.
pub const STATUS_FILE: &str = "status.json";
/// Held locked (`flock`) by the running daemon for its whole life.
pub const LOCK_FILE: &str = "agent.lock";

/// First reconnect delay's ceiling; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The ceiling of any reconnect delay. After an outage of any length every agent must be
/// back in sync within 15 s of the control plane's return, and a strict host refuses logins
/// while it is stale: so 10 s, not more. Full jitter still spreads a fleet's reconnects
/// over those 10 s (the 10,000-agent storm in BENCHMARKS.md).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the sshd commands' decisions go to the control plane, at most.
const DECISIONS_EVERY: Duration = Duration::from_secs(1);
/// A stream that lasted this long was healthy: the next failure starts the backoff afresh.
const HEALTHY: Duration = Duration::from_secs(60);

/// Why the daemon cannot run at all (errors of one connection are retried, not returned).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The KRL sshd reads cannot be made valid.
    #[error("cannot make sure a valid KRL is at {path}")]
    Krl {
        /// The KRL path.
        path: PathBuf,
        /// Why.
        #[source]
        source: KrlWriteError,
    },
    /// The state directory or the KRL's directory cannot be created.
    #[error("cannot create the directory {path}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No usable identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Another daemon holds the state directory.
    #[error("another signoff-agent is already running with state directory {0}")]
    AlreadyRunning(PathBuf),
    /// The session watcher cannot start.
    #[error("cannot watch sessions")]
    Sessions(#[from] WatchError),
    /// The holds or the witnessed audit head cannot be read.
    #[error(transparent)]
    Guards(#[from] GuardsError),
}

/// One connection's failure; the daemon reconnects after it.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A failed call: a refusal by the control plane, or no connection at all (see
    /// [`transport::describe_status`]; the status is the whole story, so it is no source).
    #[error("{}", transport::describe_status(.0))]
    Status(tonic::Status),
    #[error("certificate renewal failed")]
    Renew(#[source] IdentityError),
    #[error("cannot apply the update")]
    Apply(#[from] ApplyError),
    #[error("cannot persist the host view")]
    Persist(#[from] state::PersistError),
    #[error("cannot persist the sign-off statements")]
    Signoffs(#[from] SignoffsError),
    #[error("cannot write sshd's trusted user CA keys")]
    TrustedCas(#[from] TrustedCasError),
    #[error("cannot write the holds")]
    Holds(#[from] HoldsError),
    #[error("refused the control plane: {0}")]
    WitnessRefused(String),
    #[error("the control plane closed the stream")]
    Closed,
}

impl From<tonic::Status> for SessionError {
    fn from(status: tonic::Status) -> Self {
        SessionError::Status(status)
    }
}

/// What `signoff-agent status` shows of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Whether the sync stream is up.
    pub connected: bool,
    /// The control plane's agent URL.
    pub server: String,
    /// This host's id.
    pub host_id: String,
    /// Unix seconds at which `connected` last changed.
    pub since: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// Why the control plane is refused: its audit log no longer extends the head this
    /// host witnessed (cleared when a head is accepted again).
    #[serde(default)]
    pub witness_refusal: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn write_status(dir: &Path, status: &DaemonStatus) {
    // An empty file would read as a broken agent: on a (never expected) serialization
    // failure the previous status stays, and the log says why.
    let bytes = match serde_json::to_vec_pretty(status) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "cannot serialize the status; the status file is left as it was");
            return;
        }
    };
    if let Err(e) = write_atomic(&dir.join(STATUS_FILE), &bytes, state::writer::FILE_MODE) {
        warn!(error = %e, "cannot write the status file");
    }
}

/// Full-jitter exponential backoff: the n-th delay is uniform in [100 ms, min(2^n s,
/// [`MAX_BACKOFF`])]. Public so that `fleet-load` simulates agents with the same policy.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::with_cap(MAX_BACKOFF)
    }
}

impl Backoff {
    /// A backoff whose delays never exceed `cap` (the agent's is [`MAX_BACKOFF`]; other
    /// caps are for comparing policies in `fleet-load`).
    pub fn with_cap(cap: Duration) -> Self {
        Backoff { attempt: 0, cap }
    }

    /// The highest the next delay can be.
    pub fn ceiling(&self) -> Duration {
        MIN_BACKOFF
            .saturating_mul(1 << self.attempt.min(16))
            .min(self.cap)
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        // At least 100 ms so that a flapping server is not hammered.
        let millis = rand::rng().random_range(100..=ceiling.as_millis().max(100) as u64);
        Duration::from_millis(millis)
    }

    /// After a healthy connection: the next failure starts from [`MIN_BACKOFF`] again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Raises the calling thread's scheduling priority to nice `-boost` (see
/// [`Config::priority_boost`]); threads it starts afterwards inherit it, so it is called
/// before the runtime is built. A priority already as high or higher (systemd's `Nice=`,
/// which the packaged unit sets, as raising it needs `CAP_SYS_NICE`) is left as it is, and
/// 0 leaves any priority. Returns the nice value now in force.
pub fn raise_priority(boost: u8) -> std::io::Result<i32> {
    // `None`: the calling thread (the nice value is per thread on Linux).
    let current = rustix::process::getpriority_process(None)?;
    let wanted = -i32::from(boost);
    if boost > 0 && current > wanted {
        rustix::process::setpriority_process(None, wanted)?;
        return Ok(rustix::process::getpriority_process(None)?);
    }
    Ok(current)
}

/// Runs until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    // Before anything else: sshd must never find its RevokedKeys file missing or broken.
    for dir in [Some(config.state_dir.as_path()), config.krl_path.parent()]
        .into_iter()
        .flatten()
    {
        fs::create_dir_all(dir).map_err(|source| DaemonError::StateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    match krl_writer::ensure_krl(&config.krl_path, now()) {
        Ok(outcome) => info!(path = %config.krl_path.display(), ?outcome, "KRL checked"),
        Err(source) => {
            return Err(DaemonError::Krl {
                path: config.krl_path.clone(),
                source,
            });
        }
    }
    // One daemon per state directory; `status` also learns from this lock whether one runs.
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(config.state_dir.join(LOCK_FILE))
        .map_err(|source| DaemonError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
    if lock.try_lock().is_err() {
        return Err(DaemonError::AlreadyRunning(config.state_dir.clone()));
    }
    remove_leftover_temp_files(&config);
    let identity = Identity::load(&config.identity_dir)?;
    let guards = Guards::load(&config)?;
    let mut state = match state::load(&config.state_dir) {
        Ok(Some(s)) => {
            info!(revision = s.revision(), "host view loaded");
            // A crash may have left the KRL behind the view: bring it level now (with the
            // key IDs held out).
            let held = guards.held_revocations();
            if let Err(e) =
                s.persist_holding(&config.state_dir, &config.krl_path, now(), held.as_ref())
            {
                warn!(error = %error_chain(&e), "cannot rewrite the KRL from the host view");
            }
            s
        }
        Ok(None) => State::new(),
        Err(e) => {
            // Start afresh: the control plane sends a snapshot for revision 0. Until then
            // the principals command refuses (the file is corrupt), which fails closed.
            warn!(error = %e, "persisted host view unusable; asking for a snapshot");
            State::new()
        }
    };
    let signoffs = match Signoffs::load(&config.state_dir) {
        Ok(s) => s,
        Err(e) => {
            // Which statements are in force is unknown: ask for a snapshot (revision 0),
            // which carries them all again.
            warn!(error = %error_chain(&e), "sign-off statements unusable; asking for a snapshot");
            state = State::new();
            Signoffs::default()
        }
    };
    // sshd's TrustedUserCAKeys, when this agent keeps it: the file is its persisted form.
    // Without the file the keys are unknown: ask for a snapshot (revision 0).
    let trusted_cas = match &config.trusted_user_ca_keys {
        None => None,
        Some(path) => match TrustedCas::load(path) {
            Ok(Some(cas)) => Some(cas),
            Ok(None) => {
                state = State::new();
                Some(TrustedCas::unwritten())
            }
            Err(e) => {
                warn!(error = %error_chain(&e), "trusted user CA keys unreadable; asking for a snapshot");
                state = State::new();
                Some(TrustedCas::unwritten())
            }
        },
    };
    let status = DaemonStatus {
        connected: false,
        server: identity.server.clone(),
        host_id: identity.host_id.clone(),
        since: now(),
        last_error: None,
        witness_refusal: None,
    };
    write_status(&config.state_dir, &status);

    let journal = match KillJournal::load(&config.state_dir) {
        Ok(j) => j,
        Err(e) => {
            // Which kills were under way is unknown; their orders' results are then lost,
            // and the control plane settles them as never reported.
            warn!(error = %error_chain(&e), "kill journal unusable; starting a new one");
            KillJournal::empty(&config.state_dir)
        }
    };
    let (events_tx, events) = mpsc::channel(4096);
    let boot = crate::sessions::procfs::Procfs::default()
        .boot_time()
        .unwrap_or(UNIX_EPOCH);
    let remembered = remembered::load(&config.state_dir, boot);
    let watcher =
        SessionWatcher::start_remembering(config.sessions.clone(), events_tx, remembered).await?;
    let sessions = Killer {
        watcher: watcher.handle(),
        journal: Arc::new(Mutex::new(journal)),
        state_dir: config.state_dir.clone(),
        boot,
        in_flight: Arc::new(Mutex::new(HashSet::new())),
        unsure: Arc::new(Mutex::new(BTreeMap::new())),
        remember: Arc::new(Notify::new()),
    };
    let _remembering = AbortOnDrop(tokio::spawn(sessions.clone().remember_task()));
    // Host certificates beside the stream: a failure there never holds up revocations.
    let _host_certs = config.host_certificates.clone().map(|hc| {
        AbortOnDrop(tokio::spawn(crate::host_certs::keep(
            hc,
            config.identity_dir.clone(),
        )))
    });
    sessions.remember();
    // Kills the agent was in the middle of when it stopped: finish them first.
    let finishing = sessions.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || finishing.finish_unfinished()).await {
        warn!(error = %e, "finishing journaled kills failed");
    }
    // Results of sign-off enforcement not yet told to the control plane.
    let unreported: Vec<v1::SignoffResult> = Vec::new();
    // The sshd commands' decisions, counted for the control plane (beside the stream).
    let decisions = Arc::new(Mutex::new(DecisionsOutbox::default()));
    let _decisions = config
        .decisions_socket
        .as_deref()
        .and_then(|path| bind_decisions(path, &config.command_user))
        .map(|socket| AbortOnDrop(tokio::spawn(receive_decisions(socket, decisions.clone()))));
    // Refused login attempts not yet sent, rate-bounded.
    let refused = RefusedOutbox::new(
        config.sessions.refused_rate,
        config.sessions.refused_burst,
        Instant::now(),
    );

    let mut d = Daemon {
        config: &config,
        identity,
        state,
        signoffs,
        trusted_cas,
        guards,
        status,
        sessions,
        events,
        unreported,
        refused,
        decisions,
    };
    tokio::pin!(shutdown);
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = d.session() => r,
            () = &mut shutdown => {
                blocking(|| d.sessions.save_now());
                stopped(&config, &mut d.status);
                return Ok(());
            }
        };
        let error = match result {
            Ok(()) => SessionError::Closed,
            Err(e) => e,
        };
        warn!(error = %error_chain(&error), "sync stream ended; reconnecting");
        d.status.connected = false;
        d.status.since = now();
        d.status.last_error = Some(error_chain(&error));
        write_status(&config.state_dir, &d.status);
        if started.elapsed() >= HEALTHY {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => break,
                () = &mut shutdown => {
                blocking(|| d.sessions.save_now());
                stopped(&config, &mut d.status);
                return Ok(());
            }
                // Session events while disconnected: the full list sent on reconnect
                // covers them; a signed-off person's new session still ends at once.
                Some(event) = d.events.recv() => {
                    if let SessionEvent::Refused { attempt, at } = &event {
                        d.refused.push(attempt, *at, Instant::now());
                        continue;
                    }
                    d.sessions.remember();
                    if let SessionEvent::Started(s) | SessionEvent::Updated(s) = event {
                        d.unreported.extend(enforce(&config, &d.signoffs, None, Some(&[*s]), &d.sessions).await);
                    }
                    d.unreported.extend(reenforce_unsure(&config, &d.signoffs, &d.sessions).await);
                }
            }
        }
    }
}

/// Binds the decisions socket, counting datagrams from root and `command_user`; or logs
/// why not and returns `None`: the metrics are not worth a host that does not sync.
fn bind_decisions(path: &Path, command_user: &str) -> Option<DecisionsSocket> {
    let mut allowed = vec![0];
    match nix::unistd::User::from_name(command_user) {
        Ok(Some(user)) => allowed.push(user.uid.as_raw()),
        Ok(None) => {
            warn!(
                user = command_user,
                "command_user does not exist; counting decisions from root only"
            )
        }
        Err(e) => {
            warn!(user = command_user, error = %e, "cannot look up command_user; counting decisions from root only")
        }
    }
    match DecisionsSocket::bind(path, allowed) {
        Ok(socket) => Some(socket),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot bind the decisions socket; decisions are not counted");
            None
        }
    }
}

/// Counts every datagram on `socket` into `outbox`, for as long as the daemon runs.
async fn receive_decisions(socket: DecisionsSocket, outbox: Arc<Mutex<DecisionsOutbox>>) {
    loop {
        match socket.recv().await {
            Ok(received) => lock(&outbox).push(received),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                warn!(error = %e, "decisions socket failed; decisions are no longer counted");
                return;
            }
        }
    }
}

/// Runs fsync-heavy `f` without holding up the other tasks: through `block_in_place` on a
/// multi-threaded runtime; inline on a current-thread one, where `block_in_place` panics
/// (and there is no other worker to hand the tasks to anyway).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Records a clean stop for `status`.
fn stopped(config: &Config, status: &mut DaemonStatus) {
    status.connected = false;
    status.since = now();
    status.last_error = Some("the agent was stopped".into());
    write_status(&config.state_dir, status);
}

/// Removes the temporary files a crash in the middle of an atomic write leaves behind
/// (`.NAME.XXXXXX.tmp`, see `atomic::write_atomic`): a host view can be large, and a crash
/// loop must not fill the disk.
fn remove_leftover_temp_files(config: &Config) {
    let dirs = [Some(config.state_dir.as_path()), config.krl_path.parent()];
    for dir in dirs.into_iter().flatten() {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                match fs::remove_file(entry.path()) {
                    Ok(()) => {
                        info!(file = %entry.path().display(), "removed a temporary file left by a crash")
                    }
                    Err(e) => {
                        warn!(file = %entry.path().display(), error = %e, "cannot remove a leftover temporary file")
                    }
                }
            }
        }
    }
}

fn client(
    identity: &Identity,
) -> Result<AgentSyncClient<tonic::transport::Channel>, TransportError> {
    Ok(AgentSyncClient::new(transport::channel(
        &identity.server,
        identity.tls()?,
    )?))
}

/// What the daemon keeps across connections to the control plane: what it has applied and
/// persisted, what it owes the control plane, and the session watcher's feed. One
/// connection at a time borrows it all ([`Daemon::session`]).
struct Daemon<'c> {
    config: &'c Config,
    identity: Identity,
    /// The applied host view.
    state: State,
    /// The sign-off statements in force.
    signoffs: Signoffs,
    /// sshd's `TrustedUserCAKeys`, when this agent keeps it.
    trusted_cas: Option<TrustedCas>,
    /// Re-enable holds and the witnessed audit head.
    guards: Guards,
    status: DaemonStatus,
    sessions: Killer,
    events: mpsc::Receiver<SessionEvent>,
    /// Results of sign-off enforcement not yet told to the control plane.
    unreported: Vec<v1::SignoffResult>,
    /// Refused login attempts not yet sent, rate-bounded.
    refused: RefusedOutbox,
    /// The sshd commands' decisions not yet sent, bounded; filled by [`receive_decisions`].
    decisions: Arc<Mutex<DecisionsOutbox>>,
}

impl Daemon<'_> {
    /// One connection: renew if due, then the sync stream until it fails.
    async fn session(&mut self) -> Result<(), SessionError> {
        let config = self.config;
        let Daemon {
            config: _,
            identity,
            state,
            signoffs,
            trusted_cas,
            guards,
            status,
            sessions,
            events,
            unreported,
            refused,
            decisions,
        } = self;
        let sessions: &Killer = sessions;
        let mut sync = client(identity)?;
        if identity.renewal_due(i64::try_from(now()).unwrap_or(i64::MAX)) {
            identity
                .renew(&mut sync)
                .await
                .map_err(SessionError::Renew)?;
            info!(not_after = identity.not_after, "client certificate renewed");
            sync = client(identity)?;
        }
        // Room for a burst of session reports: the loop that fills it also takes the
        // control plane's messages (kill orders), and waits while it is full.
        let (tx, rx) = mpsc::channel(OUTBOUND);
        let hello = v1::AgentMessage {
            body: Some(v1::agent_message::Body::Hello(v1::Hello {
                host_id: identity.host_id.clone(),
                applied_revision: state.revision(),
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                heartbeat_secs: heartbeat_secs(config),
                witnessed_seq: guards.witnessed_seq(),
            })),
        };
        // The channel has room: this cannot block.
        let _ = tx.send(hello).await;
        let mut stream = sync.sync(ReceiverStream::new(rx)).await?.into_inner();
        status.connected = true;
        status.since = now();
        status.last_error = None;
        write_status(&config.state_dir, status);
        info!(server = %identity.server, revision = state.revision(), "sync stream up");
        // The outcome of every kill order journaled lately, before the session list: the
        // control plane records the first result of each order and ignores repeats, and once
        // the list arrives it settles every order of this host that still has no result.
        for result in sessions.journaled_order_results() {
            let msg = v1::AgentMessage {
                body: Some(v1::agent_message::Body::OrderResult(result)),
            };
            if tx.send(msg).await.is_err() {
                return Err(SessionError::Closed);
            }
        }
        // Every live session, so the control plane's view heals after any gap.
        let list = v1::AgentMessage {
            body: Some(v1::agent_message::Body::SessionList(v1::SessionList {
                sessions: sessions
                    .watcher
                    .snapshot()
                    .iter()
                    .map(to_proto_session)
                    .collect(),
            })),
        };
        if tx.send(list).await.is_err() {
            return Err(SessionError::Closed);
        }
        // Every statement this host holds, enforced again and reported: a result lost with a
        // previous stream must not leave a sign-off waiting for this host forever.
        let mut results = std::mem::take(unreported);
        results.extend(enforce(config, signoffs, None, None, sessions).await);
        send_results(&tx, results).await?;

        // Kill orders are executed beside this loop, so that the stream (deltas, heartbeats,
        // more orders) never waits on a kill, and orders arriving together are killed
        // together. Aborted with this stream; a kill under way finishes on its blocking thread
        // and its result is re-reported from the journal on the next stream.
        let (kills, queue) = mpsc::unbounded_channel();
        let worker = tokio::spawn(kill_worker(
            queue,
            tx.clone(),
            sessions.clone(),
            config.state_dir.join(NONCE_FILE),
        ));
        let _worker = AbortOnDrop(worker);
        let renew_at = identity.not_after - (identity.not_after - identity.not_before) / 3;
        let mut last_contact: Option<u64> = None;
        // The approvers file is Ansible's, not the control plane's: a change to it is
        // looked for here, and counts the approvals holds kept (`Guards::recheck_holds`).
        let mut holds_check = tokio::time::interval(HOLDS_RECHECK);
        holds_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut decisions_due = tokio::time::interval(DECISIONS_EVERY);
        decisions_due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let until_renewal =
                Duration::from_secs(u64::try_from(renew_at - now() as i64).unwrap_or(0));
            let message = tokio::select! {
                m = stream.message() => m?,
                // Renewal is due: end this stream; the next session renews first.
                () = tokio::time::sleep(until_renewal) => return Ok(()),
                _ = holds_check.tick(), if config.approvals.is_some() => {
                    let released = blocking(|| guards.recheck_holds(config))?;
                    if !released.is_empty() {
                        // The holds file first (done), then the KRL without their key IDs.
                        let held = guards.held_revocations();
                        let at = now();
                        blocking(|| {
                            state.persist_holding(
                                &config.state_dir,
                                &config.krl_path,
                                at,
                                held.as_ref(),
                            )
                        })?;
                    }
                    continue;
                }
                // Refused attempts go out in batches, whatever piled up meanwhile; a full
                // channel waits here rather than growing the queue past its bound.
                permit = tx.reserve(), if refused.has_news() => {
                    let Ok(permit) = permit else {
                        return Err(SessionError::Closed);
                    };
                    permit.send(v1::AgentMessage {
                        body: Some(v1::agent_message::Body::RefusedAttempts(refused.take())),
                    });
                    continue;
                }
                // The sshd commands' decisions, at most once a second whatever the rate of
                // logins.
                _ = decisions_due.tick() => {
                    if !lock(decisions).has_news() {
                        continue;
                    }
                    let Ok(permit) = tx.reserve().await else {
                        return Err(SessionError::Closed);
                    };
                    let batch = lock(decisions).take();
                    permit.send(v1::AgentMessage {
                        body: Some(v1::agent_message::Body::PrincipalsDecisions(batch)),
                    });
                    continue;
                }
                Some(first) = events.recv() => {
                    // Every event already waiting is handled with it: a storm of logins
                    // costs one look at the sign-offs (one kill for all of theirs) and
                    // one re-check of the unsure ones per burst, not per login.
                    let received = Instant::now();
                    let mut batch = vec![first];
                    while batch.len() < EVENT_BATCH {
                        match events.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                    let mut changed = Vec::new();
                    let mut messages = Vec::new();
                    for event in batch {
                        let body = match event {
                            SessionEvent::Refused { attempt, at } => {
                                refused.push(&attempt, at, Instant::now());
                                continue;
                            }
                            SessionEvent::Started(s) | SessionEvent::Updated(s) => {
                                let body = v1::agent_message::Body::SessionStarted(to_proto_session(&s));
                                changed.push(*s);
                                body
                            }
                            SessionEvent::Ended(id) => v1::agent_message::Body::SessionEnded(v1::SessionEnded {
                                id: id.to_string(),
                                ended_at: now(),
                            }),
                        };
                        messages.push(v1::AgentMessage { body: Some(body) });
                    }
                    if messages.is_empty() {
                        continue;
                    }
                    sessions.remember();
                    // A login started and updated within the burst is looked at once, as
                    // it is last (one kill per session).
                    let mut seen = HashSet::new();
                    changed.reverse();
                    changed.retain(|s| seen.insert(s.id));
                    changed.reverse();
                    let results = enforce(config, signoffs, None, Some(&changed), sessions).await;
                    for msg in messages {
                        let port = match &msg.body {
                            Some(v1::agent_message::Body::SessionStarted(s)) => Some(s.source_port),
                            _ => None,
                        };
                        if tx.send(msg).await.is_err() {
                            return Err(SessionError::Closed);
                        }
                        if let Some(port) = port {
                            debug!(
                                target: crate::sessions::watch::TIMING,
                                port,
                                received_ms = crate::sessions::watch::unix_ms(Some(received)),
                                sent_ms = crate::sessions::watch::unix_ms(Some(Instant::now())),
                                "session sent"
                            );
                        }
                    }
                    send_results(&tx, results).await?;
                    let again = reenforce_unsure(config, signoffs, sessions).await;
                    send_results(&tx, again).await?;
                    continue;
                }
            };
            let Some(message) = message else {
                return Err(SessionError::Closed);
            };
            let at = now();
            // The file holds Unix seconds: written once per second at most, not once per
            // message (a burst of kill orders paid an fsync each before it was executed).
            if last_contact != Some(at) {
                match state::record_contact(&config.state_dir, at) {
                    Ok(()) => last_contact = Some(at),
                    Err(e) => warn!(error = %e, "cannot record the contact time"),
                }
            }
            // The audit head first: nothing from a control plane whose log no longer extends
            // the head this host witnessed is applied.
            let carried = match &message.body {
                Some(v1::control_message::Body::Snapshot(v)) => {
                    Some((v.audit_head.as_ref(), &v.audit_links))
                }
                Some(v1::control_message::Body::Delta(d)) => {
                    Some((d.audit_head.as_ref(), &d.audit_links))
                }
                _ => None,
            };
            if let Some((head, links)) = carried {
                match blocking(|| guards.check_head(config, head, links)) {
                    Ok(()) => {
                        if status.witness_refusal.take().is_some() {
                            write_status(&config.state_dir, status);
                        }
                    }
                    Err(refusal) => {
                        error!(held_seq = refusal.held_seq, held_hash = %refusal.held_hash, reason = %refusal.reason, "REFUSING the control plane: its audit log no longer extends the head this host witnessed; nothing it sends is applied");
                        status.witness_refusal = Some(refusal.reason.clone());
                        write_status(&config.state_dir, status);
                        let reason = refusal.reason.clone();
                        let msg = v1::AgentMessage {
                            body: Some(v1::agent_message::Body::WitnessRefusal(refusal)),
                        };
                        let _ = tx.send(msg).await;
                        // Delivered before the stream is dropped: the control plane ends the
                        // stream once it has recorded the refusal (dropping ours at once
                        // could lose the report in flight). Nothing received is applied.
                        let _ = tokio::time::timeout(Duration::from_secs(10), async {
                            while let Ok(Some(_)) = stream.message().await {}
                        })
                        .await;
                        return Err(SessionError::WitnessRefused(reason));
                    }
                }
            }
            let reenables: Vec<v1::Reenable> = match &message.body {
                Some(v1::control_message::Body::Snapshot(v)) => v.reenables.clone(),
                Some(v1::control_message::Body::Delta(d)) => d.upsert_reenables.clone(),
                _ => Vec::new(),
            };
            let applied = match message.body {
                Some(v1::control_message::Body::Snapshot(view)) => {
                    signoffs.replace(&view.signoffs);
                    if let Some(cas) = trusted_cas.as_mut() {
                        cas.replace(&view.trusted_user_ca_keys);
                    }
                    *state = State::from_snapshot(view)?;
                    Some(signoffs.ids())
                }
                Some(v1::control_message::Body::Delta(delta)) => {
                    state.apply_delta(&delta)?;
                    if let Some(cas) = trusted_cas.as_mut() {
                        cas.apply(
                            &delta.add_trusted_user_ca_keys,
                            &delta.remove_trusted_user_ca_keys,
                        );
                    }
                    Some(signoffs.apply(&delta.add_signoffs, &delta.remove_signoffs))
                }
                Some(v1::control_message::Body::Kill(order)) => {
                    match verify_kill(config, &identity.host_id, &order, at, sessions) {
                        Ok(verified) => {
                            // The worker lives as long as this loop: it cannot be gone.
                            let _ = kills.send(verified);
                        }
                        Err(result) => {
                            let msg = v1::AgentMessage {
                                body: Some(v1::agent_message::Body::OrderResult(result)),
                            };
                            if tx.send(msg).await.is_err() {
                                return Err(SessionError::Closed);
                            }
                        }
                    }
                    None
                }
                Some(v1::control_message::Body::Heartbeat(_)) | None => None,
            };
            if let Some(new_statements) = applied {
                // The holds of the statements this view brought (those that verify), and of
                // its re-enables.
                let enforced: Vec<Enforceable> =
                    if config.approvals.is_some() && !new_statements.is_empty() {
                        match &config.allowed_signers {
                            Some(path) => match orders::load_allowed_signers(path) {
                                Ok(keys) => signoffs
                                    .check(Some(&new_statements), Ok(&keys))
                                    .into_iter()
                                    .filter_map(Result::ok)
                                    .collect(),
                                Err(_) => Vec::new(),
                            },
                            None => Vec::new(),
                        }
                    } else {
                        Vec::new()
                    };
                // fsync-heavy: off the async workers. The holds and the statements go first:
                // the host view carries the revision, so a crash in between makes the control
                // plane resend them.
                let report = blocking(|| {
                    guards.update_holds(config, &enforced, &reenables)?;
                    signoffs.persist(&config.state_dir)?;
                    if let (Some(cas), Some(path)) =
                        (trusted_cas.as_mut(), &config.trusted_user_ca_keys)
                    {
                        cas.persist(path, false)?;
                    }
                    let held = guards.held_revocations();
                    Ok::<_, SessionError>(state.persist_holding(
                        &config.state_dir,
                        &config.krl_path,
                        at,
                        held.as_ref(),
                    )?)
                })?;
                info!(
                    revision = state.revision(),
                    bytes = report.state_bytes,
                    "host view applied"
                );
                let ack = v1::AgentMessage {
                    body: Some(v1::agent_message::Body::Ack(v1::Ack {
                        revision: state.revision(),
                    })),
                };
                if tx.send(ack).await.is_err() {
                    return Err(SessionError::Closed);
                }
                // Revocations and disabled identities are in force now; then the sessions.
                if !new_statements.is_empty() {
                    let results =
                        enforce(config, signoffs, Some(&new_statements), None, sessions).await;
                    send_results(&tx, results).await?;
                }
            }
        }
    }
}

async fn send_results(
    tx: &mpsc::Sender<v1::AgentMessage>,
    results: Vec<v1::SignoffResult>,
) -> Result<(), SessionError> {
    for r in results {
        let msg = v1::AgentMessage {
            body: Some(v1::agent_message::Body::SignoffResult(r)),
        };
        if tx.send(msg).await.is_err() {
            return Err(SessionError::Closed);
        }
    }
    Ok(())
}

/// Ends the sessions of the people the statements `ids` (all when `None`) sign off: every
/// live session, or only `new_sessions` when they just started (or changed). A statement
/// that does not verify kills nothing. With `new_sessions`, only statements that ended one
/// of them are reported.
///
/// The sessions of all statements are killed together (one set of `/proc` sweeps). A live
/// session whose attribution is unknown or conflicting may be the person's: while one is
/// there, the host does not report the statement enforced, and says which and why; such
/// statements are looked at again whenever a session changes ([`reenforce_unsure`]).
async fn enforce(
    config: &Config,
    signoffs: &Signoffs,
    ids: Option<&std::collections::BTreeSet<u64>>,
    new_sessions: Option<&[Session]>,
    sessions: &Killer,
) -> Vec<v1::SignoffResult> {
    if signoffs.is_empty() || new_sessions.is_some_and(<[Session]>::is_empty) {
        return Vec::new();
    }
    let signers = match &config.allowed_signers {
        None => Err(
            "no allowed_signers file is configured: this agent enforces no sign-off statements"
                .to_owned(),
        ),
        Some(path) => orders::load_allowed_signers(path).map_err(|e| error_chain(&e)),
    };
    let checked = signoffs.check(ids, signers.as_deref().map_err(String::as_str));
    let live = match new_sessions {
        Some(new) => new.to_vec(),
        None => sessions.watcher.snapshot(),
    };
    let mut results = Vec::new();
    let mut enforcing = Vec::new();
    for c in checked {
        match c {
            Ok(e) => enforcing.push(e),
            Err((id, why)) => {
                warn!(signoff = id, refusal = %why, "sign-off statement not enforced");
                if new_sessions.is_none() {
                    results.push(v1::SignoffResult {
                        signoff_id: id,
                        refusal: why,
                        ..Default::default()
                    });
                }
            }
        }
    }
    // Every session to end, of every statement, killed in one go.
    let mut kills: Vec<(String, SessionId)> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    for (n, e) in enforcing.iter().enumerate() {
        for s in live.iter().filter(|s| {
            e.statement.covers(
                s.key_id().unwrap_or_default(),
                s.key_fingerprint().unwrap_or_default(),
            )
        }) {
            kills.push((kill_journal::signoff_key(e.id, &s.id), s.id));
            owner.push(n);
        }
    }
    let reports = if kills.is_empty() {
        Vec::new()
    } else {
        let killer = sessions.clone();
        let batch = kills.clone();
        match tokio::task::spawn_blocking(move || killer.kill_many(&batch, |_| {})).await {
            Ok(r) => r.into_iter().map(Ok).collect(),
            Err(err) => kills
                .iter()
                .map(|_| Err(format!("kill task failed: {err}")))
                .collect::<Vec<Result<Result<KillReport, KillError>, String>>>(),
        }
    };
    // Every live session of the host, also when only `new_sessions` are being enforced: the
    // host is not done while one of unknown owner runs.
    let unsure_here = {
        let unsure = lock(&sessions.unsure);
        enforcing.iter().any(|e| unsure.contains_key(&e.id))
    };
    let all_live = match new_sessions {
        // A copy of every session per new one is too much in a storm of logins: only
        // when it can change an answer.
        Some(_) if unsure_here => sessions.watcher.snapshot(),
        Some(_) => Vec::new(),
        None => live.clone(),
    };
    let unattributed: Vec<String> = all_live
        .iter()
        .filter_map(|s| {
            let why = match s.attribution {
                Attribution::Logged(_) => return None,
                Attribution::Unknown => "no Accepted line was logged for it",
                Attribution::Conflicting => "sshd's log contradicts itself about it",
            };
            Some(format!(
                "session {} (account {} from {}): whose it is is not known ({why}); it was not ended",
                s.id, s.account, s.source
            ))
        })
        .collect();
    for (n, e) in enforcing.iter().enumerate() {
        let mut r = v1::SignoffResult {
            signoff_id: e.id,
            enforced: true,
            ..Default::default()
        };
        let mut problems = Vec::new();
        for (((_, id), report), _) in kills
            .iter()
            .zip(&reports)
            .zip(&owner)
            .filter(|(_, o)| **o == n)
        {
            match report {
                Ok(Ok(report)) => {
                    info!(signoff = e.id, user = %e.statement.user, session = %id, ended = ?report.ended_pids(), remaining = ?report.remaining_pids(), "session of a signed-off person ended");
                    r.ended_sessions.push(id.to_string());
                    r.ended_pids.extend(report.ended_pids());
                    if !report.is_complete() {
                        // The final scan found processes: this host is not done.
                        problems.push(format!(
                            "session {id}: processes {:?} remain after the kill",
                            report.remaining_pids()
                        ));
                    }
                    r.remaining_pids.extend(report.remaining_pids());
                }
                // Gone by itself meanwhile.
                Ok(Err(KillError::UnknownSession(_))) => {}
                Ok(Err(err)) => problems.push(format!("session {id}: {}", error_chain(err))),
                Err(err) => problems.push(format!("session {id}: {err}")),
            }
        }
        // With `new_sessions`, only a sign-off the host already reported unsure is
        // reported unsure again: one reported done stays done.
        if new_sessions.is_none() || lock(&sessions.unsure).contains_key(&e.id) {
            problems.extend(unattributed.iter().cloned());
        }
        if !problems.is_empty() {
            r.enforced = false;
            r.refusal = problems.join("; ");
            warn!(signoff = e.id, refusal = %r.refusal, "sign-off not fully enforced");
        }
        if new_sessions.is_none() || lock(&sessions.unsure).contains_key(&e.id) {
            let mut unsure = lock(&sessions.unsure);
            if r.enforced {
                unsure.remove(&e.id);
            } else {
                unsure.insert(e.id, r.refusal.clone());
            }
        }
        if new_sessions.is_none() || !r.ended_sessions.is_empty() || !r.enforced {
            results.push(r);
        }
    }
    results
}

/// The sign-offs this host reported as not enforced, enforced again over every live
/// session (after a session changed: one unattributed may now be attributed, or gone).
/// Only what changed is reported.
async fn reenforce_unsure(
    config: &Config,
    signoffs: &Signoffs,
    sessions: &Killer,
) -> Vec<v1::SignoffResult> {
    let before: BTreeMap<u64, String> = lock(&sessions.unsure).clone();
    if before.is_empty() {
        return Vec::new();
    }
    let ids: std::collections::BTreeSet<u64> = before.keys().copied().collect();
    enforce(config, signoffs, Some(&ids), None, sessions)
        .await
        .into_iter()
        .filter(|r| {
            r.enforced
                || !r.ended_sessions.is_empty()
                || before.get(&r.signoff_id) != Some(&r.refusal)
        })
        .collect()
}

/// Checks a kill order; if it holds, it is returned for execution (with the others that
/// arrive with it, see [`kill_worker`]), else its refusal. Nothing is killed on any doubt.
fn verify_kill(
    config: &Config,
    host_id: &str,
    order: &v1::SignedOrder,
    now: u64,
    sessions: &Killer,
) -> Result<VerifiedKill, v1::OrderResult> {
    let nonce = signoff_proto::orders::KillOrder::decode(&order.order)
        .map(|o| o.nonce.to_vec())
        .unwrap_or_default();
    let refuse = |why: String| {
        warn!(refusal = %why, "kill order refused");
        v1::OrderResult {
            nonce: nonce.clone(),
            executed: false,
            refusal: why,
            ..Default::default()
        }
    };
    let Some(path) = &config.allowed_signers else {
        return Err(refuse(
            "no allowed_signers file is configured: this agent executes no orders".into(),
        ));
    };
    let signers = match orders::load_allowed_signers(path) {
        Ok(s) => s,
        Err(e) => return Err(refuse(error_chain(&e))),
    };
    let nonces = orders::NonceStore::load(&config.state_dir.join(NONCE_FILE), now);
    let key = kill_journal::order_key(&nonce);
    if sessions.journaled(&key) || lock(&sessions.in_flight).contains(&key) {
        // Journaled before its nonce was recorded, then the agent stopped: it was
        // carried out on restart. Or queued a moment ago. Never twice.
        return Err(refuse(orders::Refusal::Replayed.to_string()));
    }
    let kill = match orders::check_unrecorded(
        &order.order,
        &order.signature,
        &signers,
        host_id,
        now,
        &nonces,
    ) {
        Ok(kill) => kill,
        Err(e) => return Err(refuse(error_chain(&e))),
    };
    info!(session = %kill.session_id, operator = %kill.operator, reason = %kill.reason, "kill order verified");
    let session: SessionId = match kill.session_id.parse() {
        Ok(id) => id,
        Err(e) => return Err(refuse(e.to_string())),
    };
    lock(&sessions.in_flight).insert(key.clone());
    Ok(VerifiedKill {
        key,
        session,
        nonce,
        order_nonce: kill.nonce,
        not_after: kill.not_after,
    })
}

/// Executes verified kill orders and sends their results. Orders that arrive while a kill
/// runs are executed together next, with one set of `/proc` sweeps: `kill-sessions` of a
/// person's hundred logins sends a hundred orders at once.
async fn kill_worker(
    mut queue: mpsc::UnboundedReceiver<VerifiedKill>,
    tx: mpsc::Sender<v1::AgentMessage>,
    sessions: Killer,
    nonces_path: PathBuf,
) {
    while let Some(first) = queue.recv().await {
        // Orders sent together (kill-sessions, a sign-off) arrive a message each: take
        // every one that follows within `KILL_BATCH_QUIET` of the last, for at most
        // `KILL_BATCH_MAX`, so that they are killed with one set of sweeps.
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + KILL_BATCH_MAX;
        loop {
            let quiet = tokio::time::Instant::now() + KILL_BATCH_QUIET;
            match tokio::time::timeout_at(quiet.min(until), queue.recv()).await {
                Ok(Some(more)) => batch.push(more),
                Ok(None) | Err(_) => break,
            }
        }
        let started = Instant::now();
        let orders = batch.len();
        let killer = sessions.clone();
        let path = nonces_path.clone();
        let nonces: Vec<Vec<u8>> = batch.iter().map(|o| o.nonce.clone()).collect();
        let results =
            match tokio::task::spawn_blocking(move || killer.execute_orders(&batch, &path)).await {
                Ok(results) => results,
                Err(e) => nonces
                    .into_iter()
                    .map(|nonce| v1::OrderResult {
                        nonce,
                        executed: false,
                        refusal: format!("kill task failed: {e}"),
                        ..Default::default()
                    })
                    .collect(),
            };
        info!(
            orders,
            elapsed_ms = started.elapsed().as_millis(),
            "kill orders executed"
        );
        for result in results {
            let msg = v1::AgentMessage {
                body: Some(v1::agent_message::Body::OrderResult(result)),
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    }
}

/// Messages to the control plane queued before the sync loop waits for the stream.
const OUTBOUND: usize = 256;

/// The most session events the sync loop takes in one go (see its use).
const EVENT_BATCH: usize = 256;

/// How often the approvers file is looked at for a change (see `Guards::recheck_holds`).
const HOLDS_RECHECK: Duration = Duration::from_secs(5);

/// How long the kill worker waits for the next order of a burst.
const KILL_BATCH_QUIET: Duration = Duration::from_millis(5);
/// How long it gathers a burst at most before it kills.
const KILL_BATCH_MAX: Duration = Duration::from_millis(50);

/// Kills sessions with every kill journaled: the watcher's handle, and the journal.
#[derive(Debug, Clone)]
struct Killer {
    watcher: WatcherHandle,
    journal: Arc<Mutex<KillJournal>>,
    state_dir: PathBuf,
    boot: SystemTime,
    /// Journal keys of kill orders verified and queued but not journaled yet: a replay of
    /// one arriving meanwhile is refused like one of a journaled order.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// Sign-offs this host reported as not enforced, with the refusal last reported:
    /// looked at again whenever a session changes (a late attribution, an end).
    unsure: Arc<Mutex<BTreeMap<u64, String>>>,
    /// Wakes the task that writes the sessions down.
    remember: Arc<Notify>,
}

/// The shortest time between two writes of the sessions to the state directory. Each is
/// the whole snapshot with an fsync: at one per session event, a storm of logins spent
/// its time writing the same file over and over.
const REMEMBER_EVERY: Duration = Duration::from_millis(500);

/// A kill order that verified, waiting to be executed with the others that arrived with it.
#[derive(Debug)]
struct VerifiedKill {
    key: String,
    session: SessionId,
    /// The order's nonce as the result carries it, and as recorded.
    nonce: Vec<u8>,
    order_nonce: [u8; 16],
    not_after: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every change under these locks is one call: a panic elsewhere never leaves one
    // half-done.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Killer {
    /// Asks for the sessions to be written down (soon: see [`REMEMBER_EVERY`]), so that a
    /// restarted agent still knows the lingering ones.
    fn remember(&self) {
        self.remember.notify_one();
    }

    /// Writes the sessions down now (at a clean stop: a change asked for in the last
    /// [`REMEMBER_EVERY`] must not be lost). Blocking.
    fn save_now(&self) {
        if let Err(e) = remembered::save(&self.state_dir, self.boot, &self.watcher.snapshot()) {
            warn!(error = %e, "cannot write the sessions to the state directory");
        }
    }

    /// Writes the sessions down whenever asked, at most once per [`REMEMBER_EVERY`]; the
    /// last state asked for is always written.
    async fn remember_task(self) {
        loop {
            self.remember.notified().await;
            let killer = self.clone();
            // fsync-heavy: off the async workers.
            let saved = tokio::task::spawn_blocking(move || {
                remembered::save(&killer.state_dir, killer.boot, &killer.watcher.snapshot())
            })
            .await;
            match saved {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "cannot write the sessions to the state directory"),
                Err(e) => warn!(error = %e, "writing the sessions down failed"),
            }
            tokio::time::sleep(REMEMBER_EVERY).await;
        }
    }

    /// Kills the sessions `kills` names (journal key, session) together: every target
    /// journaled in one write, `journaled` run, one kill for them all (see
    /// [`kill::kill_targets`]), the outcomes journaled in one write. One result per kill,
    /// in order. Blocking.
    fn kill_many(
        &self,
        kills: &[(String, SessionId)],
        journaled: impl FnOnce(&[bool]),
    ) -> Vec<Result<KillReport, KillError>> {
        let mut results: Vec<Option<Result<KillReport, KillError>>> =
            kills.iter().map(|_| None).collect();
        let mut batch: Vec<(usize, String, kill::KillTarget)> = Vec::new();
        for (i, (key, id)) in kills.iter().enumerate() {
            match self.watcher.kill_target(id) {
                Ok(target) => batch.push((i, key.clone(), target)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let entries: Vec<(String, kill::KillTarget)> = batch
            .iter()
            .map(|(_, k, t)| (k.clone(), t.clone()))
            .collect();
        if self.journal().begin_many(&entries, now()).is_err() {
            // Each on its own, so that each failure is told with its own error.
            batch.retain(
                |(i, key, target)| match self.journal().begin(key, target, now()) {
                    Ok(()) => true,
                    Err(e) => {
                        results[*i] = Some(Err(KillError::Journal(e)));
                        false
                    }
                },
            );
        }
        let mut is_journaled = vec![false; kills.len()];
        for (i, _, _) in &batch {
            is_journaled[*i] = true;
        }
        journaled(&is_journaled);
        let targets: Vec<kill::KillTarget> = batch.iter().map(|(_, _, t)| t.clone()).collect();
        let reports = kill::kill_targets(&crate::sessions::procfs::Procfs::default(), &targets);
        let mut outcomes = Vec::new();
        for ((i, key, _), report) in batch.into_iter().zip(reports) {
            outcomes.push((
                key,
                match &report {
                    Ok(r) => kill_journal::Outcome::of(r),
                    Err(e) => kill_journal::Outcome {
                        ended_pids: Vec::new(),
                        remaining_pids: Vec::new(),
                        error: Some(error_chain(e)),
                    },
                },
            ));
            results[i] = Some(report);
        }
        if !outcomes.is_empty()
            && let Err(e) = self.journal().finish_many(outcomes)
        {
            warn!(error = %error_chain(&e), "cannot record kills' outcomes in the journal");
        }
        self.watcher.rescan();
        results
            .into_iter()
            .zip(kills)
            .map(|(r, (_, id))| r.unwrap_or(Err(KillError::UnknownSession(*id))))
            .collect()
    }

    /// Executes verified kill orders together; their results, in order. Blocking.
    fn execute_orders(&self, orders: &[VerifiedKill], nonces_path: &Path) -> Vec<v1::OrderResult> {
        let kills: Vec<(String, SessionId)> =
            orders.iter().map(|o| (o.key.clone(), o.session)).collect();
        let reports = self.kill_many(&kills, |journaled| {
            // Journaled first, then the nonces recorded, so a crash leaves each order either
            // unseen or journaled and finished on restart.
            let at = now();
            let mut nonces = orders::NonceStore::load(nonces_path, at);
            let seen: Vec<([u8; 16], u64)> = orders
                .iter()
                .zip(journaled)
                .filter(|(_, j)| **j)
                .map(|(o, _)| (o.order_nonce, o.not_after))
                .collect();
            if let Err(e) = nonces.record_all(&seen, at) {
                warn!(error = %error_chain(&e), "cannot record the orders' nonces (the kill journal holds them)");
            }
        });
        {
            let mut in_flight = lock(&self.in_flight);
            for o in orders {
                in_flight.remove(&o.key);
            }
        }
        orders
            .iter()
            .zip(reports)
            .map(|(o, report)| match report {
                Ok(report) => v1::OrderResult {
                    nonce: o.nonce.clone(),
                    executed: true,
                    refusal: String::new(),
                    ended_pids: report.ended_pids(),
                    remaining_pids: report.remaining_pids(),
                },
                Err(e) => {
                    let why = error_chain(&e);
                    warn!(refusal = %why, "kill order refused");
                    v1::OrderResult {
                        nonce: o.nonce.clone(),
                        executed: false,
                        refusal: why,
                        ..Default::default()
                    }
                }
            })
            .collect()
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, KillJournal> {
        lock(&self.journal)
    }

    fn journaled(&self, key: &str) -> bool {
        self.journal().get(key).is_some()
    }

    /// Finishes the kills journaled but not finished when the agent last stopped.
    fn finish_unfinished(&self) {
        let unfinished = self.journal().unfinished();
        for entry in unfinished {
            warn!(kill = %entry.key, session = %entry.target.session, "finishing a kill the agent was in the middle of when it stopped");
            let outcome =
                match kill::kill_target(&crate::sessions::procfs::Procfs::default(), &entry.target)
                {
                    Ok(report) => kill_journal::Outcome::of(&report),
                    Err(e) => kill_journal::Outcome {
                        ended_pids: Vec::new(),
                        remaining_pids: Vec::new(),
                        error: Some(error_chain(&e)),
                    },
                };
            if let Err(e) = self.journal().finish(&entry.key, outcome) {
                warn!(error = %error_chain(&e), "cannot record a kill's outcome in the journal");
            }
        }
    }

    /// The outcome of every kill order still in the journal, as results to report.
    fn journaled_order_results(&self) -> Vec<v1::OrderResult> {
        self.journal()
            .entries()
            .iter()
            .filter_map(|e| {
                let nonce = hex::decode(e.key.strip_prefix("order:")?).ok()?;
                let outcome = e.outcome.as_ref()?;
                Some(match &outcome.error {
                    None => v1::OrderResult {
                        nonce,
                        executed: true,
                        refusal: String::new(),
                        ended_pids: outcome.ended_pids.clone(),
                        remaining_pids: outcome.remaining_pids.clone(),
                    },
                    Some(why) => v1::OrderResult {
                        nonce,
                        executed: false,
                        refusal: why.clone(),
                        ..Default::default()
                    },
                })
            })
            .collect()
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Nonces of kill orders seen, kept until the orders expire.
const NONCE_FILE: &str = "order-nonces";

/// The heartbeat interval to ask for: in strict mode a third of `max_staleness`, so that a
/// connected, idle agent never goes stale; otherwise the control plane's default.
fn heartbeat_secs(config: &Config) -> u32 {
    match config.mode {
        crate::config::Mode::Strict => {
            u32::try_from((config.max_staleness.as_secs() / 3).max(1)).unwrap_or(u32::MAX)
        }
        crate::config::Mode::BestEffort => 0,
    }
}

/// A session as the protocol carries it.
fn to_proto_session(s: &Session) -> v1::Session {
    v1::Session {
        id: s.id.to_string(),
        account: s.account.clone(),
        key_id: s.key_id().unwrap_or_default().to_owned(),
        serial: s.serial().unwrap_or(0),
        ca_fingerprint: s.ca_fingerprint().unwrap_or_default().to_owned(),
        key_fingerprint: s.key_fingerprint().unwrap_or_default().to_owned(),
        source_address: s.source.ip().to_string(),
        source_port: u32::from(s.source.port()),
        started_at: s.started_at_unix(),
        tty: s.tty().unwrap_or_default().to_owned(),
        pids: s.processes.iter().map(|p| p.pid).collect(),
        lingering: s.is_lingering(),
        lingering_processes: s
            .lingering
            .iter()
            .flatten()
            .map(|p| v1::LingeringProcess {
                pid: p.process.pid,
                uid: p.uid,
                account: p.account.clone().unwrap_or_default(),
                command: p.command.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Backoff, MAX_BACKOFF, MIN_BACKOFF, blocking};

    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_runs_on_a_current_thread_runtime() {
        // block_in_place would panic here.
        assert_eq!(blocking(|| 7), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_work_runs_on_a_multi_threaded_runtime() {
        assert_eq!(blocking(|| 7), 7);
    }

    #[test]
    fn a_raised_priority_holds_for_the_thread_and_the_threads_it_starts() {
        // On a thread of its own: the nice value is per thread on Linux.
        use super::raise_priority;
        std::thread::spawn(|| {
            let before = raise_priority(0).unwrap();
            assert_eq!(raise_priority(3).unwrap(), -3);
            let child = std::thread::spawn(|| raise_priority(0).unwrap());
            assert_eq!(child.join().unwrap(), -3);
            // Never lowered: a smaller boost leaves the higher priority in force.
            assert_eq!(raise_priority(1).unwrap(), -3);
            assert_eq!(before, 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn blocking_work_runs_outside_any_runtime() {
        assert_eq!(blocking(|| 7), 7);
    }

    #[test]
    fn the_backoff_doubles_from_one_second_and_never_exceeds_ten() {
        let mut b = Backoff::default();
        assert_eq!(b.ceiling(), MIN_BACKOFF);
        let mut ceilings = Vec::new();
        for _ in 0..200 {
            ceilings.push(b.ceiling().as_secs());
            let d = b.next_delay();
            // However long the outage, the next attempt comes within the cap: an agent is
            // back within 15 s of the control plane's return.
            assert!(d <= MAX_BACKOFF && d.as_millis() >= 100, "{d:?}");
        }
        assert_eq!(ceilings[..5], [1, 2, 4, 8, 10]);
        assert!(ceilings.iter().all(|c| *c <= 10));
        assert_eq!(MAX_BACKOFF.as_secs(), 10);
        b.reset();
        assert_eq!(b.ceiling(), MIN_BACKOFF);
    }
}
