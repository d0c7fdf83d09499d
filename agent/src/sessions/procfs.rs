//! What `/proc` says about sshd and the processes of its logins.
//!
//! A login of *our* sshd is a process that is an sshd (`comm` `sshd` or `sshd-session`),
//! has a connection title (see [`super::title`]), is a child of our listener (or, after the
//! listener restarted, an orphan whose connection socket is on our listening port), and
//! holds a TCP socket whose local end is our listening port: its other end is the client's
//! address and port, the key that ties the login to its `Accepted` log line.
//!
//! The processes of a login are the monitor's descendants and, under `UsePAM yes` with
//! `pam_loginuid`, every process with the login's kernel audit session id
//! (`/proc/PID/sessionid`), daemonized ones included. An audit session id is only used when
//! it is set (not 4294967295) and is not the listener's own (sshd started from someone's
//! login shell hands its id to every connection until PAM sets a fresh one).
//!
//! Every reader takes the `/proc` root as a parameter so tests can build a fake one.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::sockdiag;
use super::title::{self, Program, Role, Title, Ttys};

/// `/proc/PID/sessionid` when no audit session was ever set.
pub const AUDIT_UNSET: u32 = u32::MAX;

/// Clock ticks per second in `/proc/PID/stat` times (`USER_HZ`: 100 on every Linux
/// architecture that exposes it to user space).
pub const TICKS_PER_SECOND: u64 = 100;

/// A process, named so that a recycled PID is never mistaken for it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ProcessRef {
    /// The PID.
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
}

/// The fields of `/proc/PID/stat` that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The PID.
    pub pid: u32,
    /// The executable's name, at most 15 bytes (not changed by `setproctitle`).
    pub comm: String,
    /// `R`, `S`, `Z`, …
    pub state: char,
    /// The parent's PID.
    pub ppid: u32,
    /// The process group.
    pub pgrp: u32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

impl Stat {
    /// The process as a [`ProcessRef`].
    pub fn process_ref(&self) -> ProcessRef {
        ProcessRef {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }

    /// Whether the process has exited (a zombie waits only to be reaped).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// A TCP socket of a network namespace (`/proc/PID/net/tcp{,6}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// The kernel's state number (1 established, 10 listen, …).
    pub state: u8,
    /// The socket inode, as `/proc/PID/fd` links show it (`socket:[INODE]`).
    pub inode: u64,
}

/// The longest command line reported for a process (longer ones are cut).
pub const COMMAND_MAX: usize = 512;

/// `TCP_LISTEN` in `/proc/net/tcp`.
pub const TCP_LISTEN: u8 = 0x0A;

/// Reads a `/proc` tree (the real one, or a fake one in tests).
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Procfs::new("/proc")
    }
}

impl Procfs {
    /// A reader of the tree at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Procfs {
        Procfs { root: root.into() }
    }

    /// The root it reads (`/proc`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, pid: u32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    /// Every PID in the tree (processes only; threads are not listed at the top).
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let mut pids = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// `/proc/PID/stat`.
    pub fn stat(&self, pid: u32) -> io::Result<Stat> {
        let bytes = read_small(&self.path(pid, "stat"))?;
        String::from_utf8(bytes)
            .ok()
            .and_then(|text| parse_stat(&text))
            .ok_or_else(|| invalid(format!("unparsable /proc/{pid}/stat")))
    }

    /// `/proc/PID/cmdline`, raw.
    pub fn cmdline(&self, pid: u32) -> io::Result<Vec<u8>> {
        read_small(&self.path(pid, "cmdline"))
    }

    /// The process's sshd title, if it has one.
    pub fn title(&self, pid: u32) -> Option<Title> {
        self.cmdline(pid)
            .ok()
            .and_then(|c| title::parse_cmdline(&c))
    }

    /// The children of `pid` (`/proc/PID/task/PID/children`: those its main thread forked,
    /// which for sshd, single-threaded, are all of them).
    pub fn children(&self, pid: u32) -> io::Result<Vec<u32>> {
        let bytes = read_small(&self.root.join(format!("{pid}/task/{pid}/children")))?;
        Ok(String::from_utf8_lossy(&bytes)
            .split_ascii_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Whether the kernel lists children (`CONFIG_PROC_CHILDREN`), which following a
    /// process tree without reading every process needs.
    pub fn lists_children(&self) -> bool {
        self.root.join("thread-self/children").exists()
    }

    /// `root` (if still the same process) and its descendants, found through children
    /// lists: a cost of the tree's size, not the host's. Sorted by PID.
    pub fn tree(&self, root: ProcessRef) -> Vec<ProcessRef> {
        let mut out = Vec::new();
        let mut queue = vec![root];
        let mut seen = HashSet::new();
        while let Some(p) = queue.pop() {
            match self.stat(p.pid) {
                Ok(stat) if stat.start_ticks == p.start_ticks && !stat.is_dead() => {}
                _ => continue,
            }
            if !seen.insert(p.pid) {
                continue;
            }
            out.push(p);
            for child in self.children(p.pid).unwrap_or_default() {
                // A child cannot be older than its parent: guards against a PID reused
                // between the two reads.
                if let Ok(stat) = self.stat(child)
                    && stat.start_ticks >= p.start_ticks
                {
                    queue.push(stat.process_ref());
                }
            }
        }
        out.sort();
        out
    }

    /// `/proc/PID/sessionid`: the kernel audit session id, `None` when unset (or when the
    /// kernel has no audit support).
    pub fn audit_session(&self, pid: u32) -> io::Result<Option<u32>> {
        match read_small(&self.path(pid, "sessionid")) {
            Ok(bytes) => {
                let id: u32 = std::str::from_utf8(&bytes)
                    .map_err(|_| invalid(format!("unparsable /proc/{pid}/sessionid")))?
                    .trim()
                    .parse()
                    .map_err(|_| invalid(format!("unparsable /proc/{pid}/sessionid")))?;
                Ok((id != AUDIT_UNSET).then_some(id))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.path(pid, "stat").exists() => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Inodes of the sockets the process has open.
    pub fn socket_inodes(&self, pid: u32) -> io::Result<Vec<u64>> {
        let mut inodes = Vec::new();
        for entry in fs::read_dir(self.path(pid, "fd"))? {
            let Ok(entry) = entry else { continue };
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            {
                inodes.push(inode);
            }
        }
        Ok(inodes)
    }

    /// Every TCP socket (IPv4 and IPv6) of the network namespace `pid` is in.
    pub fn tcp_sockets(&self, pid: u32) -> io::Result<Vec<TcpSocket>> {
        let mut sockets = Vec::new();
        for (file, v6) in [("net/tcp", false), ("net/tcp6", true)] {
            match fs::read_to_string(self.path(pid, file)) {
                Ok(text) => sockets.extend(text.lines().skip(1).filter_map(|l| parse_tcp(l, v6))),
                // A kernel without IPv6 has no tcp6.
                Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sockets)
    }

    /// Time since boot, in clock ticks (`/proc/uptime`), on the clock process start times
    /// use.
    pub fn uptime_ticks(&self) -> io::Result<u64> {
        let text = fs::read_to_string(self.root.join("uptime"))?;
        let first = text.split_whitespace().next().unwrap_or_default();
        let (secs, frac) = first.split_once('.').unwrap_or((first, "0"));
        let secs: u64 = secs
            .parse()
            .map_err(|_| invalid("unparsable /proc/uptime"))?;
        let hundredths: u64 = format!("{frac:0<2}")[..2]
            .parse()
            .map_err(|_| invalid("unparsable /proc/uptime"))?;
        Ok(secs * TICKS_PER_SECOND + hundredths * TICKS_PER_SECOND / 100)
    }

    /// Boot time, from `btime` in `/proc/stat`.
    pub fn boot_time(&self) -> io::Result<SystemTime> {
        let text = fs::read_to_string(self.root.join("stat"))?;
        let secs: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| invalid("no btime in /proc/stat"))?;
        Ok(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Whether the process runs as root (its `/proc/PID` directory is owned by its
    /// effective uid).
    pub fn is_root(&self, pid: u32) -> bool {
        fs::metadata(self.root.join(pid.to_string())).is_ok_and(|m| m.uid() == 0)
    }

    /// Whether `process` is still the same live process (not exited, PID not reused).
    pub fn is_alive(&self, process: ProcessRef) -> bool {
        self.stat(process.pid)
            .is_ok_and(|s| s.start_ticks == process.start_ticks && !s.is_dead())
    }

    /// Who runs `pid` and what: its effective user (the owner of `/proc/PID`) and its
    /// command line with NULs as spaces, at most [`COMMAND_MAX`] bytes.
    pub fn owner_and_command(&self, pid: u32) -> io::Result<(u32, String)> {
        let uid = fs::metadata(self.root.join(pid.to_string()))?.uid();
        let raw = self.cmdline(pid)?;
        let mut command: String = String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " ");
        if command.is_empty() {
            // A kernel-cleared or emptied command line: the comm is all there is.
            command = format!("[{}]", self.stat(pid)?.comm);
        }
        if command.len() > COMMAND_MAX {
            let mut end = COMMAND_MAX;
            while !command.is_char_boundary(end) {
                end -= 1;
            }
            command.truncate(end);
        }
        Ok((uid, command))
    }

    /// Brings `table` up to date cheaply: processes gone from `/proc` are dropped, and only
    /// PIDs not in it yet are read. What is known of the others may be stale (a parent
    /// that exited, a zombie): for following a login whose processes fork faster than a
    /// whole table can be read, where a process once seen as the login's stays so.
    pub fn update_table(&self, table: &mut ProcessTable) -> io::Result<()> {
        let pids: HashSet<u32> = self.pids()?.into_iter().collect();
        table.procs.retain(|pid, _| pids.contains(pid));
        for pid in pids {
            if table.procs.contains_key(&pid) {
                continue;
            }
            let Ok(stat) = self.stat(pid) else { continue };
            let audit_session = self.audit_session(pid).ok().flatten();
            table.procs.insert(
                pid,
                ProcInfo {
                    stat,
                    audit_session,
                },
            );
        }
        Ok(())
    }

    /// Every process's stat and audit session id. Processes that vanish while being read
    /// are left out.
    pub fn table(&self) -> io::Result<ProcessTable> {
        let mut procs = HashMap::new();
        for pid in self.pids()? {
            let Ok(stat) = self.stat(pid) else { continue };
            let audit_session = self.audit_session(pid).ok().flatten();
            procs.insert(
                pid,
                ProcInfo {
                    stat,
                    audit_session,
                },
            );
        }
        Ok(ProcessTable { procs })
    }
}

/// Reads a small `/proc` file with as few system calls as the kernel allows. `fs::read`
/// asks for the size first (always 0 here) and then reads in small growing steps, several
/// calls per file; every scan reads a few files of every process on the host, so those
/// calls were most of an idle agent's CPU time.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// `PID (COMM) STATE PPID …`; `COMM` may hold spaces and parentheses, so the fields start
/// after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find(" (")?;
    let close = text.rfind(')')?;
    let pid = text[..open].parse().ok()?;
    let comm = text.get(open + 2..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state); start time is field 22.
    Some(Stat {
        pid,
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// One line of `/proc/net/tcp` or `tcp6`.
fn parse_tcp(line: &str, v6: bool) -> Option<TcpSocket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    Some(TcpSocket {
        local: parse_hex_endpoint(f.get(1)?, v6)?,
        remote: parse_hex_endpoint(f.get(2)?, v6)?,
        state: u8::from_str_radix(f.get(3)?, 16).ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

/// `0100007F:08AE`: the address as the kernel's 32-bit words in native byte order, printed
/// in hex, then the port in hex.
fn parse_hex_endpoint(s: &str, v6: bool) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for i in 0..4 {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(bytes)).to_canonical()
    } else {
        if addr.len() != 8 {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some(SocketAddr::new(ip, port))
}

/// One process in a [`ProcessTable`].
#[derive(Debug, Clone)]
pub struct ProcInfo {
    /// Its stat.
    pub stat: Stat,
    /// Its audit session id, `None` when unset.
    pub audit_session: Option<u32>,
}

/// Every process at one moment.
#[derive(Debug, Clone, Default)]
pub struct ProcessTable {
    /// By PID.
    pub procs: HashMap<u32, ProcInfo>,
}

impl ProcessTable {
    /// The table with its parent links and audit session ids indexed, for looking up many
    /// logins in it: each lookup then costs the login's processes, not the host's.
    pub fn index(&self) -> TableIndex<'_> {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut by_audit: HashMap<u32, Vec<ProcessRef>> = HashMap::new();
        for p in self.procs.values() {
            children.entry(p.stat.ppid).or_default().push(p.stat.pid);
            if let Some(id) = p.audit_session {
                by_audit.entry(id).or_default().push(p.stat.process_ref());
            }
        }
        TableIndex {
            table: self,
            children,
            by_audit,
        }
    }

    /// See [`TableIndex::descendants`] (one lookup: for many, index once).
    pub fn descendants(&self, root: ProcessRef) -> Vec<ProcessRef> {
        self.index().descendants(root)
    }

    /// See [`TableIndex::with_audit_session`].
    pub fn with_audit_session(&self, id: u32) -> Vec<ProcessRef> {
        self.index().with_audit_session(id)
    }

    /// See [`TableIndex::login_processes`].
    pub fn login_processes(
        &self,
        monitor: ProcessRef,
        audit_session: Option<u32>,
        known: &[ProcessRef],
    ) -> Vec<ProcessRef> {
        self.index().login_processes(monitor, audit_session, known)
    }

    /// See [`TableIndex::members`].
    pub fn members(&self, monitor: ProcessRef, audit_session: Option<u32>) -> Vec<ProcessRef> {
        self.index().members(monitor, audit_session)
    }
}

/// A [`ProcessTable`] indexed by parent and by audit session id.
#[derive(Debug)]
pub struct TableIndex<'a> {
    table: &'a ProcessTable,
    children: HashMap<u32, Vec<u32>>,
    by_audit: HashMap<u32, Vec<ProcessRef>>,
}

impl TableIndex<'_> {
    /// `root` (if still the same process) and all its descendants, by parent links.
    pub fn descendants(&self, root: ProcessRef) -> Vec<ProcessRef> {
        let procs = &self.table.procs;
        let Some(info) = procs.get(&root.pid) else {
            return Vec::new();
        };
        if info.stat.start_ticks != root.start_ticks {
            return Vec::new();
        }
        let mut out = vec![root];
        let mut seen = HashSet::from([root.pid]);
        let mut i = 0;
        while i < out.len() {
            for &child in self.children.get(&out[i].pid).into_iter().flatten() {
                if let Some(c) = procs.get(&child)
                    // A child cannot be older than its parent: guards against a PID that
                    // was reused between reading the two.
                    && c.stat.start_ticks >= out[i].start_ticks
                    && seen.insert(child)
                {
                    out.push(c.stat.process_ref());
                }
            }
            i += 1;
        }
        out
    }

    /// Every live process whose audit session id is `id`.
    pub fn with_audit_session(&self, id: u32) -> Vec<ProcessRef> {
        self.by_audit.get(&id).cloned().unwrap_or_default()
    }

    /// The processes of a login, for as long as any remains: the monitor's descendants
    /// (while the monitor is the same process), every process with the login's audit
    /// session id, the processes `known` to be the login's that are still the same
    /// processes, and every descendant of all of these (a child forked from a login
    /// process is the login's, whatever its audit session). Exited processes and kernel
    /// threads are left out. Sorted by PID.
    pub fn login_processes(
        &self,
        monitor: ProcessRef,
        audit_session: Option<u32>,
        known: &[ProcessRef],
    ) -> Vec<ProcessRef> {
        let mut roots: Vec<ProcessRef> = vec![monitor];
        if let Some(id) = audit_session {
            roots.extend(self.with_audit_session(id));
        }
        roots.extend(known.iter().copied());
        let mut all: HashSet<ProcessRef> = HashSet::new();
        for root in roots {
            if all.contains(&root) {
                continue;
            }
            all.extend(self.descendants(root));
        }
        let procs = &self.table.procs;
        let mut all: Vec<ProcessRef> = all
            .into_iter()
            .filter(|p| {
                procs
                    .get(&p.pid)
                    .is_some_and(|i| !i.stat.is_dead() && i.stat.ppid != 2 && p.pid > 2)
            })
            .collect();
        all.sort();
        all
    }

    /// The processes of a login: the monitor's descendants and, when `audit_session` is
    /// given, every process with it. Sorted by PID.
    pub fn members(&self, monitor: ProcessRef, audit_session: Option<u32>) -> Vec<ProcessRef> {
        let mut all: HashSet<ProcessRef> = self.descendants(monitor).into_iter().collect();
        if let Some(id) = audit_session {
            all.extend(self.with_audit_session(id));
        }
        let mut all: Vec<ProcessRef> = all.into_iter().collect();
        all.sort();
        all
    }
}

/// Which sshd the agent watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshdSelector {
    /// The listener whose PID is in this file (sshd's `PidFile`; Debian: `/run/sshd.pid`).
    PidFile(PathBuf),
    /// The sshd listening on this TCP port (any address).
    Port(u16),
}

/// The listener(s) of the watched sshd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listener {
    /// The listener processes (one per sshd; empty when none is running).
    pub processes: Vec<ProcessRef>,
    /// The ports they listen on.
    pub ports: Vec<u16>,
    /// The listener's audit session id, which a login must not share to be told apart by
    /// it.
    pub audit_session: Option<u32>,
}

/// One client connection of the watched sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The per-connection monitor (the listener's child).
    pub monitor: ProcessRef,
    /// The monitor's title.
    pub monitor_title: Title,
    /// The post-authentication session process, when it is not the monitor itself (a
    /// non-root login, or any login from OpenSSH 9.8 on).
    pub session_process: Option<(ProcessRef, Title)>,
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The server's address and port.
    pub local: SocketAddr,
    /// The login's audit session id, if set and distinct from the listener's.
    pub audit_session: Option<u32>,
}

impl Connection {
    /// Whether the login is authenticated (titles tell; the log line alone does not make a
    /// session).
    pub fn is_authenticated(&self) -> bool {
        self.monitor_title.is_authenticated()
            || self
                .session_process
                .as_ref()
                .is_some_and(|(_, t)| t.is_authenticated())
    }

    /// The account, from the session process's title or the monitor's.
    pub fn account(&self) -> Option<&str> {
        match self.session_title().map(|t| &t.role) {
            Some(Role::Session { user, .. }) => Some(user.as_str()),
            _ => match &self.monitor_title.role {
                Role::Session { user, .. }
                | Role::PostauthMonitor { user }
                | Role::Monitor { user } => Some(user.as_str()),
                _ => None,
            },
        }
    }

    /// The ttys part of the session title, if the login has reached it.
    pub fn ttys(&self) -> Option<&Ttys> {
        match self.session_title().map(|t| &t.role) {
            Some(Role::Session { ttys, .. }) => Some(ttys),
            _ => None,
        }
    }

    /// The title of the process that runs the login's session channels: the child, or the
    /// monitor itself for root on OpenSSH before 9.8.
    fn session_title(&self) -> Option<&Title> {
        match &self.session_process {
            Some((_, t)) => Some(t),
            None if matches!(self.monitor_title.role, Role::Session { .. }) => {
                Some(&self.monitor_title)
            }
            None => None,
        }
    }
}

/// What one scan found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The watched sshd's listener.
    pub listener: Listener,
    /// Its client connections, authenticated or not.
    pub connections: Vec<Connection>,
    /// Whether this scan read every process of the host (see [`Scanner`]), not only the
    /// watched sshd's process trees.
    pub whole: bool,
}

/// The children lists of the roots a [`Scanner`] follows, in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RootChildren(Vec<Vec<u32>>);

/// sshd processes: the listener(s) and connection processes, by PID.
#[derive(Debug, Clone)]
struct SshdProcs {
    stats: HashMap<u32, (Stat, Option<Title>)>,
}

impl Procfs {
    fn sshd_procs(&self) -> io::Result<SshdProcs> {
        let mut stats = HashMap::new();
        for pid in self.pids()? {
            let Ok(stat) = self.stat(pid) else { continue };
            if Program::from_comm(&stat.comm).is_none() || stat.is_dead() {
                continue;
            }
            let title = self.title(pid);
            stats.insert(pid, (stat, title));
        }
        Ok(SshdProcs { stats })
    }

    /// The sshd processes in the trees under `roots`, found through children lists (see
    /// [`Scanner`]); `None` when a root is not the same live process any more, and only
    /// a whole scan can tell what happened.
    ///
    /// With `reuse`, a connection whose monitor is one of the settled ones there (its
    /// login announced with its shape, nothing in the log about it since) and is still
    /// the same process is taken from the previous walk with every sshd process under it:
    /// one read of its stat instead of a stat, a title and a children list for each of
    /// its processes. Under a storm of logins scans follow one another quickly, and
    /// reading every open login's processes again each time made a new login wait for
    /// all the others.
    fn sshd_tree(
        &self,
        roots: &[ProcessRef],
        reuse: Option<(&SshdProcs, &HashSet<ProcessRef>)>,
    ) -> Option<(SshdProcs, RootChildren)> {
        let reuse = reuse.filter(|(_, settled)| !settled.is_empty());
        // The previous walk's children, by parent.
        let mut previous_children: HashMap<u32, Vec<u32>> = HashMap::new();
        if let Some((previous, _)) = reuse {
            for (pid, (stat, _)) in &previous.stats {
                previous_children.entry(stat.ppid).or_default().push(*pid);
            }
        }
        let mut stats = HashMap::new();
        let mut queue = Vec::new();
        for root in roots {
            let stat = self.stat(root.pid).ok()?;
            if stat.process_ref() != *root || stat.is_dead() {
                return None;
            }
            let title = self.title(root.pid);
            stats.insert(root.pid, (stat, title));
            queue.push(*root);
        }
        let root_children = self.root_children(roots)?;
        while let Some(parent) = queue.pop() {
            // A process that exited meanwhile has no children left to list.
            let children = match roots.iter().position(|r| *r == parent) {
                Some(i) => root_children.0[i].clone(),
                None => self.children(parent.pid).unwrap_or_default(),
            };
            for child in children {
                if stats.contains_key(&child) {
                    continue;
                }
                let Ok(stat) = self.stat(child) else { continue };
                if Program::from_comm(&stat.comm).is_none()
                    || stat.is_dead()
                    || stat.start_ticks < parent.start_ticks
                {
                    continue;
                }
                if let Some((previous, settled)) = reuse
                    && settled.contains(&stat.process_ref())
                    && let Some((before, title)) = previous.stats.get(&child)
                    && before.process_ref() == stat.process_ref()
                {
                    let title = title.clone();
                    stats.insert(child, (stat, title));
                    let mut below = vec![child];
                    while let Some(p) = below.pop() {
                        for c in previous_children.get(&p).into_iter().flatten() {
                            if let Some(entry) = previous.stats.get(c)
                                && !stats.contains_key(c)
                            {
                                stats.insert(*c, entry.clone());
                                below.push(*c);
                            }
                        }
                    }
                    continue;
                }
                let title = self.title(child);
                queue.push(stat.process_ref());
                stats.insert(child, (stat, title));
            }
        }
        Some((SshdProcs { stats }, root_children))
    }

    /// The children lists of `roots`, each sorted; `None` when a root is not the same
    /// live process any more.
    fn root_children(&self, roots: &[ProcessRef]) -> Option<RootChildren> {
        let mut lists = Vec::with_capacity(roots.len());
        for root in roots {
            if !self.is_alive(*root) {
                return None;
            }
            let mut children = self.children(root.pid).ok()?;
            children.sort_unstable();
            lists.push(children);
        }
        Some(RootChildren(lists))
    }

    /// The ports `pid` listens on.
    fn listening_ports(&self, pid: u32) -> io::Result<Vec<u16>> {
        let inodes = self.socket_inodes(pid)?;
        let mut ports: Vec<u16> = self
            .tcp_sockets(pid)?
            .iter()
            .filter(|s| s.state == TCP_LISTEN && inodes.contains(&s.inode))
            .map(|s| s.local.port())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        Ok(ports)
    }

    /// The inode of the network namespace `pid` is in.
    pub fn net_namespace(&self, pid: u32) -> Option<u64> {
        fs::metadata(self.path(pid, "ns/net")).ok().map(|m| m.ino())
    }

    /// Whether this is the kernel's own `/proc` (not a test's tree), so that what the
    /// kernel says over netlink describes the same processes.
    fn is_the_kernels(&self) -> bool {
        self.root == Path::new("/proc")
    }

    /// The connection socket of a monitor: the TCP socket it holds whose local port is one
    /// of `ports` (any non-listening TCP socket when no port is known), as (local, peer).
    /// The socket tables are read at most once per scan, through `tables`.
    fn connection_socket(
        &self,
        pid: u32,
        ports: &[u16],
        tables: &mut SocketTables,
    ) -> Option<(SocketAddr, SocketAddr)> {
        let inodes = self.socket_inodes(pid).ok()?;
        if inodes.is_empty() {
            return None;
        }
        let namespace = self.net_namespace(pid);
        if self.is_the_kernels() && !ports.is_empty() && namespace == tables.own_namespace {
            let found = tables
                .diag
                .get_or_insert_with(|| sockdiag::connections_on(ports));
            match found {
                Ok(connections) => {
                    return inodes.iter().find_map(|i| connections.get(i).copied());
                }
                Err(e) => {
                    // Once per scan at most; the text table below still answers.
                    if !tables.diag_failed {
                        tracing::debug!(error = %e, "sock_diag failed; reading /proc/PID/net/tcp");
                        tables.diag_failed = true;
                    }
                }
            }
        }
        let sockets = match tables.text.entry(namespace.unwrap_or(0)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(self.tcp_sockets(pid).ok()?),
        };
        sockets
            .iter()
            .filter(|s| s.state != TCP_LISTEN && inodes.contains(&s.inode))
            .find(|s| ports.is_empty() || ports.contains(&s.local.port()))
            .map(|s| (s.local, s.remote))
    }

    /// One scan for the connections of the sshd `selector` names (see [`Scanner`]).
    pub fn scan(&self, selector: &SshdSelector, known_ports: &[u16]) -> io::Result<Scan> {
        let mut scanner = Scanner::new(self.clone(), selector.clone());
        scanner.known_ports = known_ports.to_vec();
        scanner.scan()
    }
}

/// The socket tables one scan has read, so that each is read at most once per scan
/// whatever the number of new connections: the `sock_diag` answer for our ports in the
/// agent's own network namespace, and `/proc/PID/net/tcp{,6}` per other namespace (or
/// when netlink is unavailable).
#[derive(Debug, Default)]
struct SocketTables {
    own_namespace: Option<u64>,
    diag: Option<io::Result<sockdiag::Connections>>,
    diag_failed: bool,
    text: HashMap<u64, Vec<TcpSocket>>,
}

/// How long a listener's ports are trusted before they are read again (sshd re-executes
/// itself on SIGHUP, keeping its PID, and may listen elsewhere afterwards).
const LISTENER_PORTS_TTL: Duration = Duration::from_secs(60);

/// How often the [`Scanner`] reads every process of the host even when following the
/// watched sshd's process trees shows nothing amiss.
pub const WHOLE_SCAN_EVERY: Duration = Duration::from_secs(30);

/// Finds one sshd's connections, scan after scan.
///
/// A *whole* scan reads the stat of every process of the host to find the sshd processes.
/// In between, a scan follows the trees it found (the listeners and any orphaned
/// connections) through the kernel's children lists, so that its cost is that of the
/// watched sshd's processes, not of the host's. A whole scan is made at the first scan,
/// every [`WHOLE_SCAN_EVERY`], when one of those roots is gone or the listener changed,
/// when asked ([`Scanner::request_whole`]), and always where the kernel lists no children.
///
/// The kernel builds `/proc/PID/net/tcp` by walking its whole connection table, which
/// makes it the one expensive read here (milliseconds on an idle machine, more on a busy
/// one). So what cannot change for a process is remembered: a listener's ports (for a
/// minute), a connection's addresses (for its lifetime); a scan reads the TCP tables only
/// for processes it has not seen before.
#[derive(Debug)]
pub struct Scanner {
    procfs: Procfs,
    selector: SshdSelector,
    known_ports: Vec<u16>,
    listener_ports: HashMap<ProcessRef, (Vec<u16>, Instant)>,
    sockets: HashMap<ProcessRef, (SocketAddr, SocketAddr)>,
    /// Whether the kernel lists children, so that scans can follow trees.
    lists_children: bool,
    /// The listeners the last scan found.
    listeners: Vec<ProcessRef>,
    /// What scans between whole ones follow: the listeners and orphaned connections.
    roots: Vec<ProcessRef>,
    /// When the next whole scan is due (`None`: at the next scan).
    next_whole: Option<Instant>,
    /// The last walk of the roots' trees, for a quiet scan to reuse while the roots'
    /// children are the same processes and every connection was authenticated.
    last_walk: Option<(RootChildren, SshdProcs)>,
    /// Whether every connection the last scan found was authenticated (no title left to
    /// change but ttys, which sshd logs).
    settled: bool,
    /// Monitors of logins announced with their shape and nothing logged about since: a
    /// scan following the trees takes what is under them from `previous` (see
    /// [`Scanner::set_settled`]).
    settled_monitors: HashSet<ProcessRef>,
    /// The sshd processes the last scan found, whole or following the trees.
    previous: Option<SshdProcs>,
    /// The audit session ids of connections, once set (the kernel lets a process set it
    /// once).
    audit_sessions: HashMap<ProcessRef, u32>,
}

impl Scanner {
    /// A scanner for the sshd `selector` names.
    pub fn new(procfs: Procfs, selector: SshdSelector) -> Scanner {
        Scanner {
            lists_children: procfs.lists_children(),
            procfs,
            selector,
            known_ports: Vec::new(),
            listener_ports: HashMap::new(),
            sockets: HashMap::new(),
            listeners: Vec::new(),
            roots: Vec::new(),
            next_whole: None,
            last_walk: None,
            settled: false,
            settled_monitors: HashSet::new(),
            previous: None,
            audit_sessions: HashMap::new(),
        }
    }

    /// Whether scans between whole ones follow trees (the kernel lists children).
    pub fn follows_trees(&self) -> bool {
        self.lists_children
    }

    /// Makes the next scan a whole one.
    pub fn request_whole(&mut self) {
        self.next_whole = None;
    }

    /// The sshd processes, from the trees followed when that can be trusted, else from
    /// every process; and whether it was the latter.
    fn sshd_procs(&mut self, now: Instant, quiet: bool) -> io::Result<(SshdProcs, bool)> {
        let follow = matches!(self.next_whole, Some(due) if now < due)
            && self.lists_children
            && !self.roots.is_empty();
        if follow {
            if quiet
                && self.settled
                && let Some((lists, procs)) = &self.last_walk
                && self.procfs.root_children(&self.roots).as_ref() == Some(lists)
            {
                return Ok((procs.clone(), false));
            }
            let reuse = self.previous.as_ref().map(|p| (p, &self.settled_monitors));
            if let Some((procs, lists)) = self.procfs.sshd_tree(&self.roots, reuse) {
                self.last_walk = Some((lists, procs.clone()));
                self.previous = Some(procs.clone());
                return Ok((procs, false));
            }
        }
        self.last_walk = None;
        self.next_whole = Some(now + WHOLE_SCAN_EVERY);
        let procs = self.procfs.sshd_procs()?;
        self.previous = Some(procs.clone());
        Ok((procs, true))
    }

    /// Says which monitors belong to logins that are settled: announced, their shape
    /// known, nothing in sshd's log about them since. Until the next whole scan (or the
    /// next call), scans that follow the trees do not read their titles again: a login
    /// whose titles change with nothing logged (another channel opened) shows it at the
    /// next whole scan. Their monitors' stats are still read at every scan, so a login
    /// that ends is seen at once.
    pub fn set_settled(&mut self, monitors: HashSet<ProcessRef>) {
        self.settled_monitors = monitors;
    }

    /// The sshd it looks for.
    pub fn selector(&self) -> &SshdSelector {
        &self.selector
    }

    /// Finds the watched sshd's listener(s) among `procs`.
    fn listener(&mut self, procs: &SshdProcs) -> io::Result<Listener> {
        let candidates: Vec<u32> = match &self.selector {
            SshdSelector::PidFile(path) => match fs::read_to_string(path) {
                Ok(text) => text.trim().parse().ok().into_iter().collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            },
            SshdSelector::Port(_) => {
                let is_listener =
                    |t: &Option<Title>| t.as_ref().is_some_and(|t| t.role == Role::Listener);
                // A connection's process just forked by the listener still bears the
                // listener's title until it re-executes or renames itself: a listener is
                // never the child of a process with that title.
                procs
                    .stats
                    .iter()
                    .filter(|(_, (s, t))| {
                        is_listener(t)
                            && !procs
                                .stats
                                .get(&s.ppid)
                                .is_some_and(|(_, pt)| is_listener(pt))
                    })
                    .map(|(&pid, _)| pid)
                    .collect()
            }
        };
        let now = Instant::now();
        self.listener_ports.retain(|p, (_, read)| {
            procs
                .stats
                .get(&p.pid)
                .is_some_and(|(s, _)| s.start_ticks == p.start_ticks)
                && now.duration_since(*read) < LISTENER_PORTS_TTL
        });
        let mut listener = Listener::default();
        for pid in candidates {
            let Some((stat, _)) = procs.stats.get(&pid) else {
                continue;
            };
            let process = stat.process_ref();
            let ports = match self.listener_ports.get(&process) {
                Some((ports, _)) => ports.clone(),
                None => {
                    let Ok(ports) = self.procfs.listening_ports(pid) else {
                        continue;
                    };
                    self.listener_ports.insert(process, (ports.clone(), now));
                    ports
                }
            };
            if let SshdSelector::Port(port) = &self.selector
                && !ports.contains(port)
            {
                continue;
            }
            listener.processes.push(process);
            for p in ports {
                if !listener.ports.contains(&p) {
                    listener.ports.push(p);
                }
            }
            if listener.audit_session.is_none() {
                listener.audit_session = self.procfs.audit_session(pid).ok().flatten();
            }
        }
        if let SshdSelector::Port(port) = &self.selector
            && !listener.ports.contains(port)
        {
            listener.ports.push(*port);
        }
        listener.processes.sort();
        Ok(listener)
    }

    /// The watched sshd's connections, authenticated or not. Ports it listened on before
    /// are remembered, to find the logins it left orphaned when its listener is gone or
    /// restarted.
    pub fn scan(&mut self) -> io::Result<Scan> {
        self.scan_at(Instant::now(), false)
    }

    /// [`Scanner::scan`], at `now` (which says when a whole scan is due). A `quiet` scan
    /// (nothing in sshd's log asked for it) may reuse the last walk of the followed trees
    /// when the roots' children are the same and every connection was authenticated
    /// already: all that could change unseen then is a title's ttys, and sshd logs the
    /// channel that changes them, which makes the next scan not quiet.
    pub fn scan_at(&mut self, now: Instant, quiet: bool) -> io::Result<Scan> {
        let (procs, whole) = self.sshd_procs(now, quiet)?;
        let listener = self.listener(&procs)?;
        if !whole && listener.processes != self.listeners {
            // The pid file names another process: only a whole scan can say what became
            // of the old listener's connections.
            self.request_whole();
            return self.scan_at(now, false);
        }
        for p in &listener.ports {
            if !self.known_ports.contains(p) {
                self.known_ports.push(*p);
            }
        }
        let listener_pids: HashSet<u32> = listener.processes.iter().map(|p| p.pid).collect();
        let ports = self.known_ports.clone();
        self.sockets.retain(|p, _| {
            procs
                .stats
                .get(&p.pid)
                .is_some_and(|(s, _)| s.start_ticks == p.start_ticks)
        });

        let connection_role = |t: &Option<Title>| {
            t.as_ref().is_some_and(|t| {
                matches!(
                    t.role,
                    Role::Monitor { .. } | Role::PostauthMonitor { .. } | Role::Session { .. }
                )
            })
        };
        let mut tables = SocketTables {
            own_namespace: self.procfs.net_namespace(std::process::id()),
            ..SocketTables::default()
        };
        let mut connections = Vec::new();
        let mut orphans = Vec::new();
        for (stat, title) in procs.stats.values() {
            if !connection_role(title) || listener_pids.contains(&stat.pid) {
                continue;
            }
            let parent_is_listener = listener_pids.contains(&stat.ppid);
            // An sshd connection process whose parent is another connection process is a
            // monitor's child, not a connection of its own.
            let parent_is_connection = procs
                .stats
                .get(&stat.ppid)
                .is_some_and(|(_, t)| connection_role(t));
            if parent_is_connection {
                continue;
            }
            let Some(title) = title.clone() else { continue };
            let process = stat.process_ref();
            let addresses = match self.sockets.get(&process) {
                Some(a) => Some(*a),
                // Read only for this sshd's children and orphans, never for another
                // sshd's connections (their sockets are not on our ports anyway).
                None if parent_is_listener || !procs.stats.contains_key(&stat.ppid) => {
                    let found = self.procfs.connection_socket(stat.pid, &ports, &mut tables);
                    if let Some(a) = found {
                        self.sockets.insert(process, a);
                    }
                    found
                }
                None => None,
            };
            let Some((local, peer)) = addresses else {
                continue;
            };
            // Not our listener's child: accept an orphan only on our port, and only if it
            // runs as root as every monitor does (anyone can name a process "sshd").
            if !parent_is_listener {
                if !ports.contains(&local.port()) || !self.procfs.is_root(stat.pid) {
                    continue;
                }
                orphans.push(process);
            }
            let session_process = procs
                .stats
                .values()
                .filter(|(s, _)| s.ppid == stat.pid && s.start_ticks >= stat.start_ticks)
                .find_map(|(s, t)| match t {
                    Some(t) if matches!(t.role, Role::Session { .. }) => {
                        Some((s.process_ref(), t.clone()))
                    }
                    _ => None,
                });
            let audit_session = match self.audit_sessions.get(&process) {
                Some(id) => Some(*id),
                None => {
                    let id = self
                        .procfs
                        .audit_session(stat.pid)
                        .ok()
                        .flatten()
                        .filter(|id| Some(*id) != listener.audit_session);
                    if let Some(id) = id {
                        self.audit_sessions.insert(process, id);
                    }
                    id
                }
            };
            connections.push(Connection {
                monitor: process,
                monitor_title: title,
                session_process,
                peer,
                local,
                audit_session,
            });
        }
        connections.sort_by_key(|c| c.monitor);
        self.settled = connections.iter().all(Connection::is_authenticated);
        self.audit_sessions
            .retain(|p, _| connections.iter().any(|c| c.monitor == *p));
        self.listeners.clone_from(&listener.processes);
        if whole {
            self.roots = listener.processes.iter().copied().chain(orphans).collect();
        }
        Ok(Scan {
            listener,
            connections,
            whole,
        })
    }
}

/// The wall-clock time of a process start, given boot time.
pub fn start_time(boot: SystemTime, start_ticks: u64) -> SystemTime {
    boot + Duration::from_millis(start_ticks.saturating_mul(1000 / TICKS_PER_SECOND))
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake `/proc` tree for tests.

    use std::fs;
    use std::net::SocketAddr;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use tempfile::TempDir;

    /// A `/proc` with `stat` (btime) and `uptime`.
    pub struct FakeProc {
        pub dir: TempDir,
    }

    /// A process to put into it.
    pub struct FakeProcess<'a> {
        pub pid: u32,
        pub ppid: u32,
        pub comm: &'a str,
        pub cmdline: &'a str,
        pub start: u64,
        pub sessionid: u32,
        pub sockets: &'a [u64],
    }

    fn hex_endpoint(addr: SocketAddr) -> String {
        match addr {
            SocketAddr::V4(a) => format!(
                "{:08X}:{:04X}",
                u32::from_ne_bytes(a.ip().octets()),
                a.port()
            ),
            SocketAddr::V6(a) => {
                let o = a.ip().octets();
                let words: String = o
                    .chunks(4)
                    .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                    .collect();
                format!("{words}:{:04X}", a.port())
            }
        }
    }

    impl FakeProc {
        pub fn new() -> FakeProc {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join("stat"), "cpu 1 2 3\nbtime 1700000000\n").unwrap();
            fs::write(dir.path().join("uptime"), "1234.56 99.00\n").unwrap();
            fs::create_dir(dir.path().join("net")).unwrap();
            // The kernel lists children (CONFIG_PROC_CHILDREN).
            fs::create_dir(dir.path().join("thread-self")).unwrap();
            fs::write(dir.path().join("thread-self/children"), "").unwrap();
            let f = FakeProc { dir };
            f.set_sockets(&[]);
            f
        }

        pub fn root(&self) -> &Path {
            self.dir.path()
        }

        pub fn add(&self, p: &FakeProcess<'_>) {
            let d = self.root().join(p.pid.to_string());
            fs::create_dir_all(d.join("fd")).unwrap();
            // One network namespace for all.
            symlink("../net", d.join("net")).unwrap();
            fs::write(
                d.join("stat"),
                format!(
                    "{} ({}) S {} {} {} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {} 1000 100",
                    p.pid, p.comm, p.ppid, p.pid, p.pid, p.start
                ),
            )
            .unwrap();
            let mut cmdline = p.cmdline.as_bytes().to_vec();
            cmdline.extend_from_slice(&[0; 8]);
            fs::write(d.join("cmdline"), cmdline).unwrap();
            fs::write(d.join("sessionid"), p.sessionid.to_string()).unwrap();
            symlink("/dev/null", d.join("fd/0")).unwrap();
            for (i, inode) in p.sockets.iter().enumerate() {
                symlink(format!("socket:[{inode}]"), d.join(format!("fd/{}", i + 3))).unwrap();
            }
            let own = d.join(format!("task/{}/children", p.pid));
            fs::create_dir_all(own.parent().unwrap()).unwrap();
            if !own.exists() {
                fs::write(&own, "").unwrap();
            }
            self.set_children(p.ppid, |c| c.push(p.pid));
        }

        /// Edits the children list of `pid`, if it exists.
        fn set_children(&self, pid: u32, edit: impl FnOnce(&mut Vec<u32>)) {
            let path = self.root().join(format!("{pid}/task/{pid}/children"));
            let Ok(text) = fs::read_to_string(&path) else {
                return;
            };
            let mut children: Vec<u32> = text
                .split_ascii_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
            edit(&mut children);
            let text: String = children.iter().map(|c| format!("{c} ")).collect();
            fs::write(path, text).unwrap();
        }

        /// Sets the TCP tables.
        pub fn set_sockets(&self, sockets: &[(SocketAddr, SocketAddr, u8, u64)]) {
            let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
            let mut v4 = header.to_owned();
            let mut v6 = header.to_owned();
            for (i, (local, remote, state, inode)) in sockets.iter().enumerate() {
                let line = format!(
                    "{i:4}: {} {} {state:02X} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n",
                    hex_endpoint(*local),
                    hex_endpoint(*remote)
                );
                if local.is_ipv4() {
                    v4.push_str(&line);
                } else {
                    v6.push_str(&line);
                }
            }
            let d = self.root().join("net");
            fs::write(d.join("tcp"), v4).unwrap();
            fs::write(d.join("tcp6"), v6).unwrap();
        }

        pub fn remove(&self, pid: u32) {
            let d = self.root().join(pid.to_string());
            if let Ok(stat) = fs::read_to_string(d.join("stat")) {
                let ppid = super::parse_stat(&stat).unwrap().ppid;
                self.set_children(ppid, |c| c.retain(|&p| p != pid));
            }
            fs::remove_dir_all(d).unwrap();
        }

        pub fn set_cmdline(&self, pid: u32, cmdline: &str) {
            fs::write(
                self.root().join(pid.to_string()).join("cmdline"),
                format!("{cmdline}\0\0"),
            )
            .unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeProc, FakeProcess};
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn stat_with_hostile_comm() {
        let s = parse_stat(
            "4242 (a) b (c)) S 1 4242 4242 34816 4242 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 1",
        )
        .unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_ticks, 987_654);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S").is_none());
    }

    #[test]
    fn real_proc_self() {
        let p = Procfs::default();
        let me = std::process::id();
        let stat = p.stat(me).unwrap();
        assert_eq!(stat.pid, me);
        assert!(p.is_alive(stat.process_ref()));
        assert!(!p.is_alive(ProcessRef {
            pid: me,
            start_ticks: stat.start_ticks + 1
        }));
        assert!(p.uptime_ticks().unwrap() >= stat.start_ticks);
        assert!(p.boot_time().unwrap() < SystemTime::now());
        let table = p.table().unwrap();
        assert!(table.procs.contains_key(&me));
        assert!(
            table
                .descendants(stat.process_ref())
                .contains(&stat.process_ref())
        );
    }

    #[test]
    fn real_tcp_sockets_parse() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let p = Procfs::default();
        let me = std::process::id();
        let sockets = p.tcp_sockets(me).unwrap();
        let inodes = p.socket_inodes(me).unwrap();
        let local = client.local_addr().unwrap();
        let ours = sockets
            .iter()
            .find(|s| s.local == local && inodes.contains(&s.inode))
            .unwrap();
        assert_eq!(ours.remote, addr(&format!("127.0.0.1:{port}")));
        assert!(
            sockets
                .iter()
                .any(|s| s.state == TCP_LISTEN && s.local.port() == port)
        );
    }

    #[test]
    fn hex_endpoints() {
        assert_eq!(
            parse_hex_endpoint(
                &format!("{:08X}:08AE", u32::from_ne_bytes([127, 0, 0, 1])),
                false
            ),
            Some(addr("127.0.0.1:2222"))
        );
        let v6 = format!(
            "{:08X}{:08X}{:08X}{:08X}:0016",
            0,
            0,
            u32::from_ne_bytes([0, 0, 0xff, 0xff]),
            u32::from_ne_bytes([10, 0, 0, 9])
        );
        // IPv4-mapped, as an IPv6 listener sees an IPv4 client.
        assert_eq!(parse_hex_endpoint(&v6, true), Some(addr("10.0.0.9:22")));
        assert_eq!(parse_hex_endpoint("zz:0016", false), None);
        assert_eq!(parse_hex_endpoint("0100007F", false), None);
    }

    const LISTENER: &str = "sshd: /usr/sbin/sshd -D -p 2222 [listener] 0 of 10-100 startups";

    /// Two sshds (ports 2222 and 2223), with a non-root login, a root login, a login in
    /// pre-authentication and an unrelated process on the first, a login on the second.
    fn two_sshds() -> FakeProc {
        let f = FakeProc::new();
        let sp = |pid, ppid, cmdline, sessionid, sockets| FakeProcess {
            pid,
            ppid,
            comm: "sshd",
            cmdline,
            start: u64::from(pid) * 10,
            sessionid,
            sockets,
        };
        f.add(&sp(100, 1, LISTENER, AUDIT_UNSET, &[1]));
        f.add(&sp(
            200,
            1,
            "sshd: /usr/sbin/sshd -D -p 2223 [listener] 0 of 10-100 startups",
            AUDIT_UNSET,
            &[2],
        ));
        // Non-root: monitor and child, sharing the socket; a shell below.
        f.add(&sp(110, 100, "sshd: alice [priv]", 5, &[11]));
        f.add(&sp(111, 110, "sshd: alice@pts/3", 5, &[11]));
        f.add(&FakeProcess {
            pid: 112,
            ppid: 111,
            comm: "bash",
            cmdline: "-bash",
            start: 1120,
            sessionid: 5,
            sockets: &[],
        });
        // A process of alice's that left the tree (setsid + reparented to init).
        f.add(&FakeProcess {
            pid: 300,
            ppid: 1,
            comm: "sleep",
            cmdline: "sleep",
            start: 3000,
            sessionid: 5,
            sockets: &[],
        });
        // Root, one process.
        f.add(&sp(120, 100, "sshd: root@notty", 6, &[12]));
        // Pre-authentication: a monitor and its [net] child.
        f.add(&sp(130, 100, "sshd: bob [priv]", AUDIT_UNSET, &[13]));
        f.add(&sp(131, 130, "sshd: bob [net]", AUDIT_UNSET, &[13]));
        // The other sshd's login.
        f.add(&sp(210, 200, "sshd: carol [priv]", 7, &[21]));
        f.add(&sp(211, 210, "sshd: carol@notty", 7, &[21]));
        // Something that calls itself sshd but is nobody's child and has no socket.
        f.add(&sp(400, 1, "sshd: mallory@pts/9", AUDIT_UNSET, &[]));
        f.set_sockets(&[
            (addr("0.0.0.0:2222"), addr("0.0.0.0:0"), TCP_LISTEN, 1),
            (addr("0.0.0.0:2223"), addr("0.0.0.0:0"), TCP_LISTEN, 2),
            (addr("127.0.0.1:2222"), addr("127.0.0.1:40001"), 1, 11),
            (addr("[::1]:2222"), addr("[::1]:40002"), 1, 12),
            (addr("127.0.0.1:2222"), addr("127.0.0.1:40003"), 1, 13),
            (addr("127.0.0.1:2223"), addr("127.0.0.1:40004"), 1, 21),
        ]);
        f
    }

    /// The TCP table of [`two_sshds`]' port 2222 alone: its listener (inode 1) and the
    /// connections of alice (40001, inode 11), root (40002, 12) and bob (40003, 13), less
    /// those whose inode is in `gone`, then `new` (peer port, inode) on 127.0.0.1.
    fn port_2222_sockets(
        gone: &[u64],
        new: &[(u16, u64)],
    ) -> Vec<(SocketAddr, SocketAddr, u8, u64)> {
        let mut sockets: Vec<_> = [
            (addr("0.0.0.0:2222"), addr("0.0.0.0:0"), TCP_LISTEN, 1),
            (addr("127.0.0.1:2222"), addr("127.0.0.1:40001"), 1, 11),
            (addr("[::1]:2222"), addr("[::1]:40002"), 1, 12),
            (addr("127.0.0.1:2222"), addr("127.0.0.1:40003"), 1, 13),
        ]
        .into_iter()
        .filter(|s| !gone.contains(&s.3))
        .collect();
        for &(port, inode) in new {
            let peer = SocketAddr::from(([127, 0, 0, 1], port));
            sockets.push((addr("127.0.0.1:2222"), peer, 1, inode));
        }
        sockets
    }

    /// Dave logs in on port 2222: his monitor (pid 150, still authenticating) under the
    /// listener, his connection (40007, inode 16) in the TCP table with those of
    /// [`port_2222_sockets`] not in `gone`.
    fn dave_logs_in(f: &FakeProc, gone: &[u64]) {
        f.add(&FakeProcess {
            pid: 150,
            ppid: 100,
            comm: "sshd",
            cmdline: "sshd: dave [priv]",
            start: 1500,
            sessionid: AUDIT_UNSET,
            sockets: &[16],
        });
        f.set_sockets(&port_2222_sockets(gone, &[(40007, 16)]));
    }

    #[test]
    fn scans_between_whole_ones_follow_the_listeners_tree() {
        let f = two_sshds();
        let mut scanner = Scanner::new(Procfs::new(f.root()), SshdSelector::Port(2222));
        let t0 = Instant::now();
        let peers =
            |scan: &Scan| -> Vec<u16> { scan.connections.iter().map(|c| c.peer.port()).collect() };
        let first = scanner.scan_at(t0, false).unwrap();
        assert!(first.whole, "the first scan reads every process");
        let second = scanner.scan_at(t0 + Duration::from_secs(3), false).unwrap();
        assert!(!second.whole, "then it follows the listener's tree");
        assert_eq!(peers(&second), peers(&first));
        assert_eq!(second.connections, first.connections);

        // A new login under the listener is found without a whole scan.
        let sp = |pid: u32, ppid, cmdline| FakeProcess {
            pid,
            ppid,
            comm: "sshd",
            cmdline,
            start: u64::from(pid) * 10,
            sessionid: 8,
            sockets: &[14],
        };
        f.add(&sp(140, 100, "sshd: dave [priv]"));
        f.add(&sp(141, 140, "sshd: dave@notty"));
        let mut sockets = port_2222_sockets(&[], &[(40005, 14)]);
        f.set_sockets(&sockets);
        let third = scanner.scan_at(t0 + Duration::from_secs(6), false).unwrap();
        assert!(!third.whole);
        assert_eq!(peers(&third), [40001, 40002, 40003, 40005]);

        // An orphaned login on our port (not in the tree) waits for the next whole scan.
        f.add(&FakeProcess {
            sockets: &[15],
            ..sp(500, 1, "sshd: erin [priv]")
        });
        f.add(&FakeProcess {
            sockets: &[15],
            ..sp(501, 500, "sshd: erin@notty")
        });
        sockets.push((addr("127.0.0.1:2222"), addr("127.0.0.1:40006"), 1, 15));
        f.set_sockets(&sockets);
        let fourth = scanner.scan_at(t0 + Duration::from_secs(9), false).unwrap();
        assert!(!fourth.whole);
        assert!(!peers(&fourth).contains(&40006));
        let whole = scanner
            .scan_at(t0 + WHOLE_SCAN_EVERY + Duration::from_secs(1), false)
            .unwrap();
        assert!(whole.whole);
        assert!(peers(&whole).contains(&40006), "{:?}", peers(&whole));
        // From then on it is followed as a root of its own.
        let after = scanner
            .scan_at(t0 + WHOLE_SCAN_EVERY + Duration::from_secs(4), false)
            .unwrap();
        assert!(!after.whole);
        assert_eq!(peers(&after), peers(&whole));

        // The listener gone: a whole scan at once.
        f.remove(100);
        let gone = scanner
            .scan_at(t0 + WHOLE_SCAN_EVERY + Duration::from_secs(7), false)
            .unwrap();
        assert!(gone.whole);
        assert!(gone.listener.processes.is_empty());
    }

    /// The ttys of the connection from client `port` in `scan`.
    fn ttys_of(scan: &Scan, port: u16) -> Option<Ttys> {
        scan.connections
            .iter()
            .find(|c| c.peer.port() == port)
            .and_then(|c| c.ttys().cloned())
    }

    #[test]
    fn a_quiet_scan_reuses_the_last_walk_only_while_nothing_can_have_changed_unseen() {
        let f = two_sshds();
        let mut scanner = Scanner::new(Procfs::new(f.root()), SshdSelector::Port(2222));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let authenticated = |scan: &Scan, port: u16| {
            scan.connections
                .iter()
                .any(|c| c.peer.port() == port && c.is_authenticated())
        };
        assert!(scanner.scan_at(at(0), false).unwrap().whole);
        // Bob is still authenticating: a quiet scan looks again, and sees him in.
        assert!(!authenticated(
            &scanner.scan_at(at(3), true).unwrap(),
            40003
        ));
        f.set_cmdline(131, "sshd: bob@notty");
        let scan = scanner.scan_at(at(6), true).unwrap();
        assert!(authenticated(&scan, 40003));
        let pts3 = ttys_of(&scan, 40001);
        // Everyone in: a quiet scan reuses the walk (a channel opening, which changes a
        // title, is logged by sshd, and that scan is not quiet)…
        f.set_cmdline(111, "sshd: alice@pts/3,pts/4");
        assert_eq!(ttys_of(&scanner.scan_at(at(9), true).unwrap(), 40001), pts3);
        let scan = scanner.scan_at(at(12), false).unwrap();
        assert_ne!(
            ttys_of(&scan, 40001),
            pts3,
            "a scan that is not quiet reads titles"
        );
        // …and a new child of the listener is never missed by one.
        dave_logs_in(&f, &[]);
        let scan = scanner.scan_at(at(15), true).unwrap();
        assert!(!scan.whole);
        assert!(
            scan.connections.iter().any(|c| c.monitor.pid == 150),
            "{:?}",
            scan.connections
        );
    }

    #[test]
    fn a_settled_login_is_not_read_again_but_its_end_and_new_logins_are_seen() {
        let f = two_sshds();
        let mut scanner = Scanner::new(Procfs::new(f.root()), SshdSelector::Port(2222));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let first = scanner.scan_at(at(0), false).unwrap();
        assert!(first.whole);
        let pts3 = ttys_of(&first, 40001);
        // Alice's login is settled: a scan that follows the tree takes it from the last
        // one, and does not see her title change…
        let alice = ProcessRef {
            pid: 110,
            start_ticks: 1100,
        };
        scanner.set_settled(HashSet::from([alice]));
        f.set_cmdline(111, "sshd: alice@pts/3,pts/4");
        // …while bob, not settled, is read again and seen authenticated.
        f.set_cmdline(131, "sshd: bob@notty");
        let scan = scanner.scan_at(at(3), false).unwrap();
        assert!(!scan.whole);
        assert_eq!(ttys_of(&scan, 40001), pts3);
        assert!(
            scan.connections
                .iter()
                .any(|c| c.peer.port() == 40003 && c.is_authenticated()),
            "{:?}",
            scan.connections
        );
        assert_eq!(scan.connections.len(), first.connections.len());
        // No longer settled (sshd logged something about it): read again.
        scanner.set_settled(HashSet::new());
        let scan = scanner.scan_at(at(6), false).unwrap();
        assert_ne!(ttys_of(&scan, 40001), pts3);
        // Settled again, then its monitor goes: the next scan no longer lists it, and a
        // new login beside it is found.
        scanner.set_settled(HashSet::from([alice]));
        f.remove(111);
        f.remove(110);
        dave_logs_in(&f, &[11]);
        let scan = scanner.scan_at(at(9), false).unwrap();
        assert!(!scan.whole);
        let ports: Vec<u16> = scan.connections.iter().map(|c| c.peer.port()).collect();
        assert!(!ports.contains(&40001), "{ports:?}");
        assert!(ports.contains(&40007), "{ports:?}");
    }

    #[test]
    fn without_children_lists_every_scan_is_whole() {
        let f = two_sshds();
        fs::remove_file(f.root().join("thread-self/children")).unwrap();
        let mut scanner = Scanner::new(Procfs::new(f.root()), SshdSelector::Port(2222));
        let t0 = Instant::now();
        assert!(scanner.scan_at(t0, false).unwrap().whole);
        assert!(
            scanner
                .scan_at(t0 + Duration::from_secs(3), false)
                .unwrap()
                .whole
        );
    }

    #[test]
    fn scan_finds_only_the_selected_sshds_connections() {
        let f = two_sshds();
        let p = Procfs::new(f.root());
        let scan = p.scan(&SshdSelector::Port(2222), &[]).unwrap();
        assert_eq!(
            scan.listener.processes,
            [ProcessRef {
                pid: 100,
                start_ticks: 1000
            }]
        );
        assert_eq!(scan.listener.ports, [2222]);
        type Summary<'a> = (u32, SocketAddr, bool, Option<&'a str>, Option<u32>);
        let summary: Vec<Summary<'_>> = scan
            .connections
            .iter()
            .map(|c| {
                (
                    c.monitor.pid,
                    c.peer,
                    c.is_authenticated(),
                    c.account(),
                    c.audit_session,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (110, addr("127.0.0.1:40001"), true, Some("alice"), Some(5)),
                (120, addr("[::1]:40002"), true, Some("root"), Some(6)),
                (130, addr("127.0.0.1:40003"), false, Some("bob"), None),
            ]
        );
        assert_eq!(
            scan.connections[0].ttys(),
            Some(&Ttys::Pty(vec!["pts/3".into()]))
        );
        assert_eq!(scan.connections[1].ttys(), Some(&Ttys::NoTty));
        assert_eq!(scan.connections[2].ttys(), None);

        let scan = p.scan(&SshdSelector::Port(2223), &[]).unwrap();
        assert_eq!(scan.connections.len(), 1);
        assert_eq!(scan.connections[0].account(), Some("carol"));
        assert_eq!(scan.connections[0].local, addr("127.0.0.1:2223"));
    }

    #[test]
    fn a_child_the_listener_just_forked_is_not_a_listener() {
        let f = two_sshds();
        // Forked for a new connection, not yet re-executed: the listener's title, its
        // listening socket inherited, and (for the test) an audit session id of its own.
        f.add(&FakeProcess {
            pid: 140,
            ppid: 100,
            comm: "sshd",
            cmdline: LISTENER,
            start: 1400,
            sessionid: 8,
            sockets: &[1],
        });
        let p = Procfs::new(f.root());
        let mut scanner = Scanner::new(p, SshdSelector::Port(2222));
        let scan = scanner.scan().unwrap();
        assert_eq!(
            scan.listener.processes,
            [ProcessRef {
                pid: 100,
                start_ticks: 1000
            }]
        );
        assert_eq!(scan.listener.audit_session, None);
        assert_eq!(scan.connections.len(), 3);
        // Between whole scans too, following the listener's tree.
        let scan = scanner.scan().unwrap();
        assert!(!scan.whole);
        assert_eq!(scan.listener.processes.len(), 1);
    }

    #[test]
    fn scanner_reads_tcp_tables_once_per_process() {
        let f = two_sshds();
        let p = Procfs::new(f.root());
        let mut scanner = Scanner::new(p.clone(), SshdSelector::Port(2222));
        assert_eq!(scanner.scan().unwrap().connections.len(), 3);
        // Known processes keep their addresses without the tables.
        f.set_sockets(&[]);
        assert_eq!(scanner.scan().unwrap().connections.len(), 3);
        assert!(
            p.scan(&SshdSelector::Port(2222), &[])
                .unwrap()
                .connections
                .is_empty()
        );
        // A new process (same PID, new start time) is looked up afresh.
        f.remove(120);
        f.add(&FakeProcess {
            pid: 120,
            ppid: 100,
            comm: "sshd",
            cmdline: "sshd: root@notty",
            start: 9999,
            sessionid: 6,
            sockets: &[12],
        });
        let pids: Vec<u32> = scanner
            .scan()
            .unwrap()
            .connections
            .iter()
            .map(|c| c.monitor.pid)
            .collect();
        assert_eq!(pids, [110, 130]);
    }

    #[test]
    fn scan_by_pid_file() {
        let f = two_sshds();
        let pid_file = f.root().join("sshd.pid");
        fs::write(&pid_file, "200\n").unwrap();
        let p = Procfs::new(f.root());
        let scan = p
            .scan(&SshdSelector::PidFile(pid_file.clone()), &[])
            .unwrap();
        assert_eq!(scan.listener.ports, [2223]);
        assert_eq!(scan.connections.len(), 1);
        // No pid file: no listener, no connections (unless ports were known).
        fs::remove_file(&pid_file).unwrap();
        let scan = p.scan(&SshdSelector::PidFile(pid_file), &[]).unwrap();
        assert!(scan.listener.processes.is_empty());
        assert!(scan.connections.is_empty());
    }

    #[test]
    fn orphaned_logins_after_a_listener_restart() {
        let f = two_sshds();
        // The listener is gone; its logins were re-parented to init.
        f.remove(100);
        f.remove(110);
        f.add(&FakeProcess {
            pid: 110,
            ppid: 1,
            comm: "sshd",
            cmdline: "sshd: alice [priv]",
            start: 1100,
            sessionid: 5,
            sockets: &[11],
        });
        f.set_sockets(&[
            (addr("0.0.0.0:2223"), addr("0.0.0.0:0"), TCP_LISTEN, 2),
            (addr("127.0.0.1:2222"), addr("127.0.0.1:40001"), 1, 11),
            (addr("127.0.0.1:2223"), addr("127.0.0.1:40004"), 1, 21),
        ]);
        let p = Procfs::new(f.root());
        let scan = p.scan(&SshdSelector::Port(2222), &[]).unwrap();
        assert!(scan.listener.processes.is_empty());
        let pids: Vec<u32> = scan.connections.iter().map(|c| c.monitor.pid).collect();
        // alice's orphan holds a socket on 2222; mallory's process holds none.
        assert_eq!(pids, [110]);
    }

    #[test]
    fn audit_session_shared_with_the_listener_is_not_used() {
        let f = FakeProc::new();
        let sp = |pid, ppid, cmdline, sockets| FakeProcess {
            pid,
            ppid,
            comm: "sshd",
            cmdline,
            start: 1,
            sessionid: 9,
            sockets,
        };
        f.add(&sp(100, 1, LISTENER, &[1]));
        f.add(&sp(110, 100, "sshd: root@notty", &[11]));
        f.set_sockets(&[
            (addr("0.0.0.0:2222"), addr("0.0.0.0:0"), TCP_LISTEN, 1),
            (addr("127.0.0.1:2222"), addr("127.0.0.1:40001"), 1, 11),
        ]);
        let scan = Procfs::new(f.root())
            .scan(&SshdSelector::Port(2222), &[])
            .unwrap();
        assert_eq!(scan.listener.audit_session, Some(9));
        assert_eq!(scan.connections[0].audit_session, None);
    }

    #[test]
    fn members_of_a_login() {
        let f = two_sshds();
        let p = Procfs::new(f.root());
        let table = p.table().unwrap();
        let monitor = ProcessRef {
            pid: 110,
            start_ticks: 1100,
        };
        let pids = |v: Vec<ProcessRef>| v.into_iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(table.members(monitor, Some(5))), [110, 111, 112, 300]);
        // Without an audit session id only the tree is known.
        assert_eq!(pids(table.members(monitor, None)), [110, 111, 112]);
        // A recycled monitor PID matches nothing.
        let stale = ProcessRef {
            pid: 110,
            start_ticks: 1,
        };
        assert_eq!(pids(table.members(stale, None)), Vec::<u32>::new());
    }

    #[test]
    fn uptime_and_boot_time() {
        let f = FakeProc::new();
        let p = Procfs::new(f.root());
        assert_eq!(p.uptime_ticks().unwrap(), 123_456);
        assert_eq!(
            p.boot_time().unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(
            start_time(UNIX_EPOCH, 250),
            UNIX_EPOCH + Duration::from_millis(2500)
        );
    }
}
