//! Ending an SSH login completely: nothing of it may outlive a kill.
//!
//! SIGTERM to sshd's session process ends the connection but leaves the commands of a
//! non-pty session running, re-parented to init; a command started with `setsid` has left
//! the session's process group; a tree whose every generation forks the next and exits
//! outruns a kill that signals the PIDs it saw once; and a process may ignore SIGTERM. So
//! a kill freezes the whole login first, then kills it, then looks again:
//!
//! 1. **Who.** [`ProcessTable::login_processes`]: the monitor and all its descendants (if
//!    the monitor is still the same process: PID *and* start time), every process with
//!    the login's kernel audit session id (`/proc/PID/sessionid`, set by `pam_loginuid`
//!    and inherited by everything the login starts, daemons included), the processes last
//!    seen as the login's that are still the same processes, and every descendant of
//!    these. Never PID 1, the agent itself or its ancestors, the sshd listener, or kernel
//!    threads; never by an audit session id the agent or the listener shares.
//! 2. **Freeze.** SIGSTOP to each (checked to still be the same process just before),
//!    then wait until each is stopped or gone. A stopped process cannot fork, so sweeps
//!    repeat until one finds nothing new: at that point the whole login is frozen.
//! 3. **SIGKILL** every frozen process, and wait for them to be gone.
//! 4. **Final scan.** The login's processes are looked for once more; anything found
//!    starts another round, until [`KILL_BOUND`] has passed.
//! 5. **Report** which processes ended and which remain, from that final scan: a kill
//!    that leaves anything is never reported as complete.
//!
//! There is no SIGTERM grace: a grace period is time a departing insider's process gets
//! to react (fork, hand off, clean up traces) before it is stopped.
//!
//! Blocking (it sleeps between checks): run it on a blocking thread.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::sessions::cgroup;
use crate::sessions::procfs::{ProcessRef, ProcessTable, Procfs, TableIndex};
use crate::sessions::{Session, SessionId};

/// How long a kill keeps freezing, killing and looking again before it reports what is
/// left as remaining.
pub const KILL_BOUND: Duration = Duration::from_secs(2);
/// How often the targets are checked.
const POLL: Duration = Duration::from_millis(1);
/// How long one freeze sweep waits for its SIGSTOPs to take effect.
const STOP_WAIT: Duration = Duration::from_millis(100);

/// Why a kill could not be attempted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KillError {
    /// The session is neither live, lingering nor among the recently ended ones.
    #[error("no live or recently ended session {0}")]
    UnknownSession(SessionId),
    /// `/proc` could not be read, so the login's processes cannot be found.
    #[error("cannot read /proc to find the session's processes")]
    Proc(#[source] io::Error),
    /// The kill could not be journaled, so nothing was signalled.
    #[error("cannot journal the kill; nothing was signalled")]
    Journal(#[source] crate::kill_journal::JournalError),
}

/// What became of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ended before it was sent SIGKILL (it was exiting, or frozen while exiting).
    Exited,
    /// It ended after SIGKILL.
    Killed,
    /// It was still there at the final scan.
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

/// What a kill goes after: everything needed to find a login's processes again, also
/// after the agent restarted in the middle of the kill (it is journaled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillTarget {
    /// The session.
    pub session: SessionId,
    /// Its monitor (gone for a lingering login).
    pub monitor: ProcessRef,
    /// The login's audit session id, when it has one of its own.
    pub audit_session: Option<u32>,
    /// The processes last seen as the login's.
    pub known: Vec<ProcessRef>,
    /// The sshd listener(s): never touched.
    pub listeners: Vec<ProcessRef>,
    /// The login's own cgroup, where it has one: frozen and killed as one.
    #[serde(default)]
    pub cgroup: Option<std::path::PathBuf>,
}

impl KillTarget {
    /// The target for `session`.
    pub fn of(session: &Session) -> KillTarget {
        let mut known = session.processes.clone();
        if let Some(l) = &session.lingering {
            known.extend(l.iter().map(|p| p.process));
        }
        known.sort();
        known.dedup();
        KillTarget {
            session: session.id,
            monitor: session.monitor,
            audit_session: session.audit_session,
            known,
            listeners: session.listeners.clone(),
            cgroup: session.cgroup.clone(),
        }
    }
}

/// The result of [`kill_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillReport {
    /// The session.
    pub session: SessionId,
    /// Every process that was frozen, by PID, and what became of it.
    pub processes: Vec<ProcessOutcome>,
    /// Processes of the login the final scan found alive (frozen survivors, and any the
    /// kill never got to).
    pub remaining: Vec<ProcessRef>,
    /// Whether the audit session id was used to find processes.
    pub used_audit_session: bool,
    /// From the first signal to the final scan.
    pub elapsed: Duration,
}

impl KillReport {
    /// PIDs that ended.
    pub fn ended_pids(&self) -> Vec<u32> {
        self.processes
            .iter()
            .filter(|p| p.outcome != Outcome::Survived)
            .map(|p| p.process.pid)
            .collect()
    }

    /// PIDs still running at the final scan.
    pub fn remaining_pids(&self) -> Vec<u32> {
        self.remaining.iter().map(|p| p.pid).collect()
    }

    /// Whether the final scan found nothing of the login.
    pub fn is_complete(&self) -> bool {
        self.remaining.is_empty()
    }
}

/// Ends `session`: freezes every process of it, kills them, and looks again.
pub fn kill_session(session: &Session) -> Result<KillReport, KillError> {
    kill_target(&Procfs::default(), &KillTarget::of(session))
}

/// Ends what `target` names, reading `procfs` (signals still go to real PIDs).
pub fn kill_target(procfs: &Procfs, target: &KillTarget) -> Result<KillReport, KillError> {
    kill_targets(procfs, std::slice::from_ref(target))
        .pop()
        .unwrap_or(Err(KillError::UnknownSession(target.session)))
}

/// Ends every login `targets` name at once, with one `/proc` table per sweep for all of
/// them, not one per login: a person's hundred logins are frozen, killed and looked for
/// again together. One report per target, in order, each as exact as a kill of that
/// login alone (its own processes, its own final scan).
pub fn kill_targets(procfs: &Procfs, targets: &[KillTarget]) -> Vec<Result<KillReport, KillError>> {
    let started = Instant::now();
    let mut listeners: Vec<ProcessRef> = targets
        .iter()
        .flat_map(|t| t.listeners.iter().copied())
        .collect();
    listeners.sort();
    listeners.dedup();
    let guard = Guard::new(procfs, &listeners);
    let logins: Vec<Login<'_>> = targets
        .iter()
        .map(|target| {
            // pam_loginuid may have set it after the session was announced: ask the
            // monitor.
            let current = || {
                procfs
                    .is_alive(target.monitor)
                    .then(|| procfs.audit_session(target.monitor.pid).ok().flatten())
                    .flatten()
            };
            let audit = target
                .audit_session
                .or_else(current)
                .filter(|id| !guard.shared_audit.contains(id));
            if target.audit_session.is_some() && audit.is_none() {
                warn!(
                    session = %target.session,
                    "the session's audit session id is shared with the agent or sshd: killing \
                     the sshd process tree and the processes seen as the login's only"
                );
            }
            Login {
                target,
                audit,
                processes: BTreeSet::new(),
            }
        })
        .collect();
    let mut kill = Kill {
        procfs,
        logins,
        guard,
        targets: BTreeMap::new(),
        table: ProcessTable::default(),
        frozen_cgroups: Vec::new(),
    };
    // Logins' own cgroups first: each frozen as one, no fork can race it.
    for dir in targets
        .iter()
        .filter_map(|t| t.cgroup.as_deref())
        .filter(|d| d.is_dir())
    {
        match cgroup::freeze(dir, true) {
            Ok(true) => kill.frozen_cgroups.push(dir.to_owned()),
            Ok(false) => {}
            Err(e) => {
                warn!(cgroup = %dir.display(), error = %e, "cannot freeze the login's cgroup")
            }
        }
    }
    let deadline = started + KILL_BOUND;
    let rounds = (|| -> Result<Vec<Vec<ProcessRef>>, KillError> {
        loop {
            // Freeze: sweep until a sweep finds nothing new with everything before it
            // stopped.
            loop {
                let new = kill.collect()?;
                kill.signal_groups(&new, Signal::SIGSTOP);
                for p in &new {
                    kill.signal(*p, Signal::SIGSTOP);
                }
                kill.wait_until(deadline.min(Instant::now() + STOP_WAIT), |k| {
                    k.all_stopped_or_gone()
                });
                if new.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
            for dir in targets
                .iter()
                .filter_map(|t| t.cgroup.as_deref())
                .filter(|d| d.is_dir())
            {
                if let Err(e) = cgroup::kill(dir) {
                    warn!(cgroup = %dir.display(), error = %e, "cannot kill the login's cgroup");
                }
            }
            let all: Vec<ProcessRef> = kill.targets.keys().copied().collect();
            kill.signal_groups(&all, Signal::SIGKILL);
            kill.signal_alive(Signal::SIGKILL);
            kill.wait_until(deadline, |k| !k.any_alive());
            // The final scan: what of each login is alive now, seen before or not.
            let left = kill.alive_members()?;
            if left.iter().all(Vec::is_empty) || Instant::now() >= deadline {
                return Ok(left);
            }
        }
    })();
    let remaining = match rounds {
        Ok(r) => r,
        Err(e) => {
            // /proc unreadable: every kill of the batch failed alike (io::Error is not
            // Clone, so each gets its own with the same kind and text).
            let (kind, text) = match &e {
                KillError::Proc(io) => (io.kind(), io.to_string()),
                other => (io::ErrorKind::Other, other.to_string()),
            };
            return targets
                .iter()
                .map(|_| Err(KillError::Proc(io::Error::new(kind, text.clone()))))
                .collect();
        }
    };
    kill.refresh();
    let elapsed = started.elapsed();

    kill.logins
        .iter()
        .zip(remaining)
        .map(|(login, remaining)| {
            let report = KillReport {
                session: login.target.session,
                processes: login
                    .processes
                    .iter()
                    .filter_map(|process| {
                        let t = kill.targets.get(process)?;
                        Some(ProcessOutcome {
                            process: *process,
                            comm: t.comm.clone(),
                            outcome: if remaining.contains(process) {
                                Outcome::Survived
                            } else {
                                t.outcome.unwrap_or(Outcome::Survived)
                            },
                        })
                    })
                    .collect(),
                remaining,
                used_audit_session: login.audit.is_some(),
                elapsed,
            };
            if report.is_complete() {
                info!(
                    session = %login.target.session,
                    ended = report.ended_pids().len(),
                    audit_session = ?login.audit,
                    elapsed_ms = report.elapsed.as_millis() as u64,
                    batch = targets.len(),
                    "session killed"
                );
            } else {
                warn!(
                    session = %login.target.session,
                    ended = report.ended_pids().len(),
                    audit_session = ?login.audit,
                    remaining = ?report.remaining_pids(),
                    elapsed_ms = report.elapsed.as_millis() as u64,
                    batch = targets.len(),
                    "session kill incomplete: processes remain"
                );
            }
            Ok(report)
        })
        .collect()
}

/// Processes a kill never touches, and audit session ids it never uses.
#[derive(Debug)]
struct Guard {
    pids: HashSet<u32>,
    shared_audit: HashSet<u32>,
}

impl Guard {
    fn new(procfs: &Procfs, listeners: &[ProcessRef]) -> Guard {
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
        for l in listeners {
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

/// One login of a kill.
struct Login<'a> {
    target: &'a KillTarget,
    /// The audit session id used to find its processes.
    audit: Option<u32>,
    /// Its processes found so far.
    processes: BTreeSet<ProcessRef>,
}

struct Kill<'a> {
    procfs: &'a Procfs,
    logins: Vec<Login<'a>>,
    guard: Guard,
    /// Every process found of every login.
    targets: BTreeMap<ProcessRef, Target>,
    /// Kept between sweeps and brought up to date by reading new PIDs only, so that a
    /// sweep is faster than a tree that forks and exits generation after generation.
    table: ProcessTable,
    /// Logins' cgroups frozen as one: their processes will not stop on SIGSTOP (they are
    /// already still), so they are not waited for.
    frozen_cgroups: Vec<std::path::PathBuf>,
}

impl Kill<'_> {
    /// Sends `signal` to the process groups of `processes` that hold nothing but the
    /// login's processes: the kernel signals a whole group at once, members not seen yet
    /// (a generation forked a moment ago) included.
    fn signal_groups(&self, processes: &[ProcessRef], signal: Signal) {
        let groups: HashSet<u32> = processes
            .iter()
            .filter_map(|p| self.table.procs.get(&p.pid).map(|i| i.stat.pgrp))
            .collect();
        for group in groups {
            if group <= 2 || self.guard.pids.contains(&group) {
                continue;
            }
            let only_the_logins = self
                .table
                .procs
                .values()
                .filter(|i| i.stat.pgrp == group && !i.stat.is_dead())
                .all(|i| {
                    !self.guard.pids.contains(&i.stat.pid)
                        && self.targets.contains_key(&i.stat.process_ref())
                });
            let Ok(raw) = i32::try_from(group) else {
                continue;
            };
            if only_the_logins {
                match kill(Pid::from_raw(-raw), signal) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => warn!(group, ?signal, error = %e, "cannot signal a process group"),
                }
            }
        }
    }

    /// The processes of `login` in `table`, less the protected ones.
    fn members(&self, table: &TableIndex<'_>, login: &Login<'_>) -> Vec<ProcessRef> {
        // Everything frozen of it so far counts as known: its children are the login's
        // too. So does everything in the login's own cgroup.
        let mut known = login.target.known.clone();
        known.extend(login.processes.iter().copied());
        if let Some(dir) = login.target.cgroup.as_deref() {
            known.extend(
                cgroup::procs(dir)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|pid| self.table.procs.get(&pid).map(|i| i.stat.process_ref())),
            );
        }
        table
            .login_processes(login.target.monitor, login.audit, &known)
            .into_iter()
            .filter(|p| !self.guard.pids.contains(&p.pid))
            .collect()
    }

    /// Adds processes not seen before; returns them.
    fn collect(&mut self) -> Result<Vec<ProcessRef>, KillError> {
        let mut table = std::mem::take(&mut self.table);
        let updated = self.procfs.update_table(&mut table);
        self.table = table;
        updated.map_err(KillError::Proc)?;
        // One index of the table for every login: a lookup then costs the login's
        // processes, not the host's.
        let found: Vec<Vec<ProcessRef>> = {
            let index = self.table.index();
            self.logins
                .iter()
                .map(|login| self.members(&index, login))
                .collect()
        };
        let mut new = Vec::new();
        for (i, members) in found.into_iter().enumerate() {
            for p in members {
                self.logins[i].processes.insert(p);
                if let Entry::Vacant(slot) = self.targets.entry(p) {
                    let Some(info) = self.table.procs.get(&p.pid) else {
                        continue;
                    };
                    slot.insert(Target {
                        comm: info.stat.comm.clone(),
                        outcome: None,
                        signal: None,
                    });
                    new.push(p);
                }
            }
        }
        Ok(new)
    }

    /// Every process of each login alive now (one table read afresh for all).
    fn alive_members(&mut self) -> Result<Vec<Vec<ProcessRef>>, KillError> {
        let table = self.procfs.table().map_err(KillError::Proc)?;
        let index = table.index();
        Ok(self
            .logins
            .iter()
            .map(|login| self.members(&index, login))
            .collect())
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

    /// Whether every target is stopped (SIGSTOP took effect, or its cgroup is frozen) or
    /// gone.
    fn all_stopped_or_gone(&mut self) -> bool {
        self.refresh();
        let in_frozen_cgroup: HashSet<u32> = self
            .frozen_cgroups
            .iter()
            .flat_map(|dir| cgroup::procs(dir).unwrap_or_default())
            .collect();
        self.targets
            .iter()
            .filter(|(_, t)| t.outcome.is_none())
            .all(|(p, _)| {
                in_frozen_cgroup.contains(&p.pid)
                    || self.procfs.stat(p.pid).map_or(true, |s| {
                        s.start_ticks != p.start_ticks || matches!(s.state, 'T' | 't')
                    })
            })
    }

    /// Polls until `done` or `deadline`.
    fn wait_until(&mut self, deadline: Instant, mut done: impl FnMut(&mut Self) -> bool) {
        loop {
            self.refresh();
            if done(self) || Instant::now() >= deadline {
                return;
            }
            thread::sleep(POLL);
        }
    }
}

fn ended_by(last_signal: Option<Signal>) -> Outcome {
    match last_signal {
        Some(Signal::SIGKILL) => Outcome::Killed,
        _ => Outcome::Exited,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;
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
            lingering: None,
            cgroup: None,
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

        /// Like [`Fake::spawn`], in a kernel audit session of its own (what `pam_loginuid`
        /// does at a login: writing the loginuid of a process that has none starts one).
        fn spawn_in_audit_session(script: &str) -> (Fake, u32) {
            let fake = Fake::spawn(&format!(
                "echo 0 > /proc/self/loginuid || exit 1; exec sh -c '{script}'"
            ));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(id)) = Procfs::default().audit_session(fake.0.id())
                    && Procfs::default()
                        .audit_session(std::process::id())
                        .ok()
                        .flatten()
                        != Some(id)
                {
                    return (fake, id);
                }
                assert!(Instant::now() < deadline, "no audit session");
                thread::sleep(Duration::from_millis(2));
            }
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
            // Everything in the audit session this test created, frozen first.
            if let Ok(Some(id)) = Procfs::default().audit_session(self.0.id())
                && Procfs::default()
                    .audit_session(std::process::id())
                    .ok()
                    .flatten()
                    != Some(id)
            {
                for signal in [Signal::SIGSTOP, Signal::SIGKILL] {
                    if let Ok(table) = Procfs::default().table() {
                        for p in table.with_audit_session(id) {
                            if let Ok(pid) = i32::try_from(p.pid) {
                                let _ = kill(Pid::from_raw(pid), signal);
                            }
                        }
                    }
                }
            }
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
    fn kills_the_tree() {
        let fake = Fake::spawn("sleep 600 & sleep 600 & wait");
        let tree = fake.wait_for_children(2);
        let report = kill_session(&session_for(fake.process(), None)).unwrap();
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
                .all(|o| o.outcome == Outcome::Killed),
            "{report:?}"
        );
    }

    /// Logins killed together: one set of sweeps for all, a report per login that names
    /// its own processes only.
    #[test]
    fn many_logins_killed_at_once_each_reported_exactly() {
        let fakes: Vec<Fake> = (0..3)
            .map(|_| Fake::spawn("sleep 600 & sleep 600 & wait"))
            .collect();
        let trees: Vec<Vec<ProcessRef>> = fakes.iter().map(|f| f.wait_for_children(2)).collect();
        let targets: Vec<KillTarget> = fakes
            .iter()
            .map(|f| KillTarget::of(&session_for(f.process(), None)))
            .collect();
        let reports = kill_targets(&Procfs::default(), &targets);
        assert_eq!(reports.len(), 3);
        for (report, tree) in reports.into_iter().zip(&trees) {
            let report = report.unwrap();
            assert!(report.is_complete(), "{report:?}");
            let mut ended = report.ended_pids();
            ended.sort_unstable();
            let mut expected: Vec<u32> = tree.iter().map(|p| p.pid).collect();
            expected.sort_unstable();
            assert_eq!(ended, expected, "only its own processes");
        }
        let p = Procfs::default();
        assert!(trees.iter().flatten().all(|t| !p.is_alive(*t)));
    }

    #[test]
    fn what_ignores_sigterm_and_sighup_is_killed_at_once() {
        let fake = Fake::spawn("trap '' TERM HUP; sleep 600 & wait; sleep 600");
        fake.wait_for_children(1);
        let report = kill_session(&session_for(fake.process(), None)).unwrap();
        assert!(report.is_complete(), "{report:?}");
        assert!(report.elapsed < KILL_BOUND, "{report:?}");
        let shell = report
            .processes
            .iter()
            .find(|o| o.process == fake.process())
            .unwrap();
        assert_eq!(shell.outcome, Outcome::Killed, "{report:?}");
    }

    /// Each generation starts the next and exits: signalling the PIDs seen once leaves
    /// the newest generation running. Freezing first catches every one.
    #[test]
    fn a_tree_that_keeps_forking_is_frozen_then_killed() {
        let (fake, audit) = Fake::spawn_in_audit_session(
            "trap \"\" TERM HUP; f() { sleep 0.005; f & exit 0; }; f & f & wait; sleep 600",
        );
        // The generations run (their parents exit: look by the audit session).
        let deadline = Instant::now() + Duration::from_secs(10);
        while Procfs::default()
            .table()
            .unwrap()
            .with_audit_session(audit)
            .len()
            < 4
        {
            assert!(Instant::now() < deadline, "the tree did not start");
            thread::sleep(Duration::from_millis(2));
        }
        let report = kill_session(&session_for(fake.process(), Some(audit))).unwrap();
        assert!(report.is_complete(), "{report:?}");
        assert!(report.used_audit_session);
        // Nothing of the audit session is left, now or a moment later (a generation the
        // kill missed would have started the next by then).
        for _ in 0..2 {
            let table = Procfs::default().table().unwrap();
            let left: Vec<_> = table
                .with_audit_session(audit)
                .into_iter()
                .filter(|p| table.procs.get(&p.pid).is_some_and(|i| !i.stat.is_dead()))
                .collect();
            assert!(left.is_empty(), "{left:?} left after {report:?}");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A cgroup of the test's own under the cgroup v2 hierarchy, named like pam_systemd's
    /// session scopes; removed on drop.
    struct TestScope(std::path::PathBuf);

    impl TestScope {
        fn new(name: &str) -> TestScope {
            let mount = cgroup::unified_mount(&Procfs::default()).unwrap();
            let parent = mount.join(format!("signoff-test-{}-{name}", std::process::id()));
            let dir = parent.join("session-1.scope");
            std::fs::create_dir_all(&dir).unwrap();
            TestScope(dir)
        }
    }

    impl Drop for TestScope {
        fn drop(&mut self) {
            let _ = cgroup::kill(&self.0);
            let deadline = Instant::now() + Duration::from_secs(5);
            while cgroup::procs(&self.0).is_ok_and(|p| !p.is_empty()) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            let _ = std::fs::remove_dir(&self.0);
            if let Some(parent) = self.0.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }

    /// Without an audit session id, a tree that forks generation after generation and
    /// leaves its parents is beyond a sweep of `/proc`; in the login's own cgroup it is
    /// frozen and killed as one.
    #[test]
    fn a_login_cgroup_is_frozen_and_killed_as_one() {
        let scope = TestScope::new("fork");
        let procs = scope.0.join("cgroup.procs");
        let fake = Fake::spawn(&format!(
            "echo $$ > {} || exit 1; trap '' TERM HUP; \
             f() {{ sleep 0.002; f & exit 0; }}; f & f & wait; sleep 600",
            procs.display()
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while cgroup::procs(&scope.0).map_or(0, |p| p.len()) < 3 {
            assert!(Instant::now() < deadline, "the tree did not start");
            thread::sleep(Duration::from_millis(5));
        }
        let login_cgroup = cgroup::login_cgroup_of(
            &Procfs::default(),
            fake.0.id(),
            Path::new(&cgroup::unified_mount(&Procfs::default()).unwrap()),
        );
        assert_eq!(login_cgroup.as_deref(), Some(scope.0.as_path()));
        let mut session = session_for(fake.process(), None);
        session.cgroup = login_cgroup;
        let report = kill_session(&session).unwrap();
        assert!(report.is_complete(), "{report:?}");
        for _ in 0..3 {
            let left = cgroup::procs(&scope.0).unwrap();
            assert!(left.is_empty(), "{left:?} left after {report:?}");
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// A lingering login: its monitor is gone, what it left is found by the processes
    /// last seen as the login's and their descendants.
    #[test]
    fn a_lingering_login_is_found_by_its_known_processes() {
        let fake = Fake::spawn("sleep 600 & sleep 600 & wait");
        let tree = fake.wait_for_children(2);
        let mut session = session_for(
            ProcessRef {
                pid: 4_000_000,
                start_ticks: 1,
            },
            None,
        );
        session.processes = vec![fake.process()];
        let report = kill_session(&session).unwrap();
        assert!(report.is_complete(), "{report:?}");
        let p = Procfs::default();
        assert!(tree.iter().all(|t| !p.is_alive(*t)), "{report:?}");
    }

    #[test]
    fn a_gone_monitor_without_audit_id_kills_nothing() {
        let fake = Fake::spawn("sleep 600");
        let mut monitor = fake.process();
        // Same PID, another start time: not the session's monitor.
        monitor.start_ticks += 1;
        let report = kill_session(&session_for(monitor, None)).unwrap();
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
        let guard = Guard::new(&p, &session.listeners);
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
                    outcome: Outcome::Exited,
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
            remaining: vec![p(12)],
            used_audit_session: true,
            elapsed: Duration::ZERO,
        };
        assert_eq!(report.ended_pids(), [10, 11]);
        assert_eq!(report.remaining_pids(), [12]);
        assert!(!report.is_complete());
    }
}
