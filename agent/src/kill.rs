//! Ending an SSH session completely.
//!
//! SIGTERM to sshd's session process ends the connection but leaves the commands of a
//! non-pty session running, re-parented to init, and a command started with `setsid` has
//! left the session's process group too. So a kill goes after every process of the login:
//!
//! 1. **Who.** The monitor and all its descendants (if the monitor is still the same
//!    process: PID *and* start time), and every process with the login's kernel audit
//!    session id (`/proc/PID/sessionid`, set by `pam_loginuid` and inherited by everything
//!    the login starts, daemons included). Without an audit session id only the sshd
//!    process tree is used: when unsure whether a process belongs to the login, it is left
//!    alone. Never PID 1, the agent itself or its ancestors, the sshd listener, or kernel
//!    threads; never by an audit session id the agent or the listener shares.
//! 2. **SIGTERM** to each, checked to still be the same process just before.
//! 3. **Wait** up to the grace period, looking again every 50 ms for processes the login
//!    started meanwhile (and sending them SIGTERM too).
//! 4. **SIGKILL** whatever is left, again looking for newcomers, for up to 2 s.
//! 5. **Report** which processes ended (after SIGTERM, after SIGKILL) and which did not.
//!
//! Blocking (it sleeps between checks): run it on a blocking thread.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::{info, warn};

use crate::sessions::procfs::{ProcessRef, ProcessTable, Procfs};
use crate::sessions::{Session, SessionId};

/// How long SIGKILLed processes get to disappear before the kill is reported incomplete.
pub const KILL_WAIT: Duration = Duration::from_secs(2);
/// How often the targets are checked.
const POLL: Duration = Duration::from_millis(5);
/// How often `/proc` is searched again for processes the login started since.
const RECOLLECT: Duration = Duration::from_millis(50);

/// Why a kill could not be attempted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KillError {
    /// The session is neither live nor among the recently ended ones.
    #[error("no live or recently ended session {0}")]
    UnknownSession(SessionId),
    /// `/proc` could not be read, so the login's processes cannot be found.
    #[error("cannot read /proc to find the session's processes")]
    Proc(#[source] io::Error),
}

/// What became of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ended after SIGTERM (or was already ending).
    Terminated,
    /// It ended after SIGKILL.
    Killed,
    /// It was still there when the agent gave up.
    Survived,
}

/// One process of the session and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutcome {
    /// The process.
    pub process: ProcessRef,
    /// Its `comm`, for the report.
    pub comm: String,
    /// What became of it.
    pub outcome: Outcome,
}

/// The result of [`kill_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillReport {
    /// The session.
    pub session: SessionId,
    /// Every process that was signalled, by PID.
    pub processes: Vec<ProcessOutcome>,
    /// Whether the audit session id was used to find processes (else only the tree).
    pub used_audit_session: bool,
    /// From the first signal to the last check.
    pub elapsed: Duration,
}

impl KillReport {
    /// PIDs that ended.
    pub fn ended_pids(&self) -> Vec<u32> {
        self.pids(|o| o != Outcome::Survived)
    }

    /// PIDs still running.
    pub fn remaining_pids(&self) -> Vec<u32> {
        self.pids(|o| o == Outcome::Survived)
    }

    /// Whether every process of the session is gone.
    pub fn is_complete(&self) -> bool {
        self.processes
            .iter()
            .all(|p| p.outcome != Outcome::Survived)
    }

    fn pids(&self, keep: impl Fn(Outcome) -> bool) -> Vec<u32> {
        self.processes
            .iter()
            .filter(|p| keep(p.outcome))
            .map(|p| p.process.pid)
            .collect()
    }
}

/// Ends `session`: SIGTERM to every process of it, SIGKILL after `grace` to what is left.
pub fn kill_session(session: &Session, grace: Duration) -> Result<KillReport, KillError> {
    kill_session_in(&Procfs::default(), session, grace)
}

/// [`kill_session`] against another `/proc` root (signals still go to real PIDs).
pub fn kill_session_in(
    procfs: &Procfs,
    session: &Session,
    grace: Duration,
) -> Result<KillReport, KillError> {
    let started = Instant::now();
    let guard = Guard::new(procfs, session);
    let audit = session
        .audit_session
        .filter(|id| !guard.shared_audit.contains(id));
    if session.audit_session.is_some() && audit.is_none() {
        warn!(
            session = %session.id,
            "the session's audit session id is shared with the agent or sshd: killing the \
             sshd process tree only"
        );
    }
    let mut kill = Kill {
        procfs,
        session,
        audit,
        guard,
        targets: BTreeMap::new(),
    };

    // SIGTERM, and wait for the grace period.
    kill.collect_and_signal(Signal::SIGTERM)?;
    let term_deadline = started + grace;
    let mut next_collect = Instant::now() + RECOLLECT;
    loop {
        kill.refresh();
        let now = Instant::now();
        if !kill.any_alive() || now >= next_collect {
            // Newcomers started since the last look get SIGTERM too.
            if kill.collect_and_signal(Signal::SIGTERM)? == 0 && !kill.any_alive() {
                break;
            }
            next_collect = now + RECOLLECT;
        }
        if now >= term_deadline {
            break;
        }
        thread::sleep(POLL.min(term_deadline - now));
    }

    // SIGKILL what is left, until nothing of the login remains or KILL_WAIT passes.
    let kill_deadline = Instant::now() + KILL_WAIT;
    if kill.any_alive() || kill.collect_quietly()? > 0 {
        loop {
            kill.collect_quietly()?;
            kill.signal_alive(Signal::SIGKILL);
            let round_end = (Instant::now() + RECOLLECT).min(kill_deadline);
            while kill.any_alive() && Instant::now() < round_end {
                thread::sleep(POLL);
                kill.refresh();
            }
            kill.refresh();
            if (!kill.any_alive() && kill.collect_quietly()? == 0)
                || Instant::now() >= kill_deadline
            {
                break;
            }
        }
    }
    kill.refresh();

    let report = KillReport {
        session: session.id,
        processes: kill
            .targets
            .into_iter()
            .map(|(process, t)| ProcessOutcome {
                process,
                comm: t.comm,
                outcome: t.outcome.unwrap_or(Outcome::Survived),
            })
            .collect(),
        used_audit_session: audit.is_some(),
        elapsed: started.elapsed(),
    };
    info!(
        session = %session.id,
        ended = report.ended_pids().len(),
        remaining = ?report.remaining_pids(),
        elapsed_ms = report.elapsed.as_millis() as u64,
        "session killed"
    );
    Ok(report)
}

/// Processes a kill never touches, and audit session ids it never uses.
#[derive(Debug)]
struct Guard {
    pids: HashSet<u32>,
    shared_audit: HashSet<u32>,
}

impl Guard {
    fn new(procfs: &Procfs, session: &Session) -> Guard {
        let me = std::process::id();
        // 0 would signal our own process group; 1 is init; 2 is kthreadd.
        let mut pids = HashSet::from([0, 1, 2, me]);
        let mut shared_audit = HashSet::new();
        // The agent's ancestors: whatever runs the agent is never part of a kill.
        let mut pid = me;
        while let Ok(stat) = procfs.stat(pid) {
            if !pids.insert(stat.ppid) && stat.ppid != me {
                break;
            }
            if stat.ppid <= 1 {
                break;
            }
            pid = stat.ppid;
        }
        if let Ok(Some(id)) = procfs.audit_session(me) {
            shared_audit.insert(id);
        }
        for l in &session.listeners {
            pids.insert(l.pid);
            if let Ok(Some(id)) = procfs.audit_session(l.pid) {
                shared_audit.insert(id);
            }
        }
        Guard { pids, shared_audit }
    }
}

#[derive(Debug)]
struct Target {
    comm: String,
    /// `None` while alive.
    outcome: Option<Outcome>,
    /// The last signal sent.
    signal: Option<Signal>,
}

struct Kill<'a> {
    procfs: &'a Procfs,
    session: &'a Session,
    audit: Option<u32>,
    guard: Guard,
    targets: BTreeMap<ProcessRef, Target>,
}

impl Kill<'_> {
    /// The login's processes now, less the protected ones and kernel threads.
    fn members(&self, table: &ProcessTable) -> Vec<(ProcessRef, String)> {
        table
            .members(self.session.monitor, self.audit)
            .into_iter()
            .filter(|p| !self.guard.pids.contains(&p.pid))
            .filter_map(|p| {
                let info = table.procs.get(&p.pid)?;
                // Kernel threads are children of kthreadd; none is ever a login's.
                (info.stat.ppid != 2 && !info.stat.is_dead()).then(|| (p, info.stat.comm.clone()))
            })
            .collect()
    }

    /// Adds processes not seen before; returns how many.
    fn collect(&mut self) -> Result<Vec<ProcessRef>, KillError> {
        let table = self.procfs.table().map_err(KillError::Proc)?;
        let mut new = Vec::new();
        for (p, comm) in self.members(&table) {
            if let Entry::Vacant(slot) = self.targets.entry(p) {
                slot.insert(Target {
                    comm,
                    outcome: None,
                    signal: None,
                });
                new.push(p);
            }
        }
        Ok(new)
    }

    fn collect_and_signal(&mut self, signal: Signal) -> Result<usize, KillError> {
        let new = self.collect()?;
        for p in &new {
            self.signal(*p, signal);
        }
        Ok(new.len())
    }

    fn collect_quietly(&mut self) -> Result<usize, KillError> {
        Ok(self.collect()?.len())
    }

    fn signal_alive(&mut self, signal: Signal) {
        let alive: Vec<ProcessRef> = self
            .targets
            .iter()
            .filter(|(_, t)| t.outcome.is_none())
            .map(|(p, _)| *p)
            .collect();
        for p in alive {
            self.signal(p, signal);
        }
    }

    /// Sends `signal` to `p` if it is still the same process.
    fn signal(&mut self, p: ProcessRef, signal: Signal) {
        let Some(target) = self.targets.get_mut(&p) else {
            return;
        };
        if target.outcome.is_some() {
            return;
        }
        if !self.procfs.is_alive(p) {
            target.outcome = Some(ended_by(target.signal));
            return;
        }
        let Ok(raw) = i32::try_from(p.pid) else {
            return;
        };
        match kill(Pid::from_raw(raw), signal) {
            Ok(()) => target.signal = Some(signal),
            Err(Errno::ESRCH) => target.outcome = Some(ended_by(target.signal)),
            Err(e) => warn!(pid = p.pid, ?signal, error = %e, "cannot signal"),
        }
    }

    /// Marks the targets that have ended.
    fn refresh(&mut self) {
        for (p, t) in &mut self.targets {
            if t.outcome.is_none() && !self.procfs.is_alive(*p) {
                t.outcome = Some(ended_by(t.signal));
            }
        }
    }

    fn any_alive(&self) -> bool {
        self.targets.values().any(|t| t.outcome.is_none())
    }
}

fn ended_by(last_signal: Option<Signal>) -> Outcome {
    match last_signal {
        Some(Signal::SIGKILL) => Outcome::Killed,
        _ => Outcome::Terminated,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::process::{Child, Command, Stdio};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::sessions::{Attribution, Ttys};

    fn session_for(monitor: ProcessRef, audit: Option<u32>) -> Session {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Session {
            id: SessionId(monitor),
            account: "nobody".into(),
            source: addr,
            local: addr,
            started_at: UNIX_EPOCH,
            ttys: Ttys::NoTty,
            attribution: Attribution::Unknown,
            monitor,
            session_process: None,
            audit_session: audit,
            processes: vec![],
            listeners: vec![],
        }
    }

    /// A child standing in for a monitor, with `script` as its body; reaped on drop.
    struct Fake(Child);

    impl Fake {
        fn spawn(script: &str) -> Fake {
            Fake(
                Command::new("sh")
                    .args(["-c", script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        }

        fn process(&self) -> ProcessRef {
            Procfs::default().stat(self.0.id()).unwrap().process_ref()
        }

        /// Waits until the script's children exist.
        fn wait_for_children(&self, n: usize) -> Vec<ProcessRef> {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let table = Procfs::default().table().unwrap();
                let tree = table.descendants(self.process());
                if tree.len() > n {
                    return tree;
                }
                assert!(Instant::now() < deadline, "children did not start");
                thread::sleep(Duration::from_millis(5));
            }
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            // The whole tree: a `sleep` left behind would outlive the test.
            if let (Ok(table), Ok(stat)) = (
                Procfs::default().table(),
                Procfs::default().stat(self.0.id()),
            ) {
                for p in table.descendants(stat.process_ref()) {
                    if let Ok(pid) = i32::try_from(p.pid) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn kills_the_tree_with_sigterm() {
        let fake = Fake::spawn("sleep 600 & sleep 600 & wait");
        let tree = fake.wait_for_children(2);
        let report =
            kill_session(&session_for(fake.process(), None), Duration::from_secs(5)).unwrap();
        assert!(report.is_complete(), "{report:?}");
        assert!(!report.used_audit_session);
        let mut ended = report.ended_pids();
        ended.sort_unstable();
        let mut expected: Vec<u32> = tree.iter().map(|p| p.pid).collect();
        expected.sort_unstable();
        assert_eq!(ended, expected);
        let p = Procfs::default();
        assert!(tree.iter().all(|t| !p.is_alive(*t)));
        assert!(
            report
                .processes
                .iter()
                .all(|o| o.outcome == Outcome::Terminated),
            "{report:?}"
        );
    }

    #[test]
    fn sigkill_after_the_grace_for_what_ignores_sigterm() {
        let fake = Fake::spawn("trap '' TERM; sleep 600 & wait; sleep 600");
        fake.wait_for_children(1);
        let started = Instant::now();
        let report = kill_session(
            &session_for(fake.process(), None),
            Duration::from_millis(200),
        )
        .unwrap();
        assert!(report.is_complete(), "{report:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        let shell = report
            .processes
            .iter()
            .find(|o| o.process == fake.process())
            .unwrap();
        assert_eq!(shell.outcome, Outcome::Killed, "{report:?}");
    }

    #[test]
    fn a_gone_monitor_without_audit_id_kills_nothing() {
        let fake = Fake::spawn("sleep 600");
        let mut monitor = fake.process();
        // Same PID, another start time: not the session's monitor.
        monitor.start_ticks += 1;
        let report = kill_session(&session_for(monitor, None), Duration::from_millis(50)).unwrap();
        assert!(report.processes.is_empty());
        assert!(Procfs::default().is_alive(fake.process()));
    }

    #[test]
    fn never_the_agent_or_its_ancestors() {
        let p = Procfs::default();
        let me = p.stat(std::process::id()).unwrap();
        let monitor = ProcessRef {
            pid: 4_000_000,
            start_ticks: 1,
        };
        let mut session = session_for(monitor, None);
        session.listeners = vec![ProcessRef {
            pid: 77,
            start_ticks: 1,
        }];
        let guard = Guard::new(&p, &session);
        for pid in [0, 1, 2, me.pid, me.ppid, 77] {
            assert!(guard.pids.contains(&pid), "{pid}");
        }
    }

    #[test]
    fn report_lists() {
        let p = |pid| ProcessRef {
            pid,
            start_ticks: 1,
        };
        let report = KillReport {
            session: SessionId(p(1)),
            processes: vec![
                ProcessOutcome {
                    process: p(10),
                    comm: "a".into(),
                    outcome: Outcome::Terminated,
                },
                ProcessOutcome {
                    process: p(11),
                    comm: "b".into(),
                    outcome: Outcome::Killed,
                },
                ProcessOutcome {
                    process: p(12),
                    comm: "c".into(),
                    outcome: Outcome::Survived,
                },
            ],
            used_audit_session: true,
            elapsed: Duration::ZERO,
        };
        assert_eq!(report.ended_pids(), [10, 11]);
        assert_eq!(report.remaining_pids(), [12]);
        assert!(!report.is_complete());
    }
}
