//! A Debian 12 system container with systemd as PID 1, for testing the packages, their
//! units and the Ansible roles under a real service manager.
//!
//! The root file system is built once from Debian's packages with `mmdebstrap` and kept in
//! a cache directory (`/var/cache/signoff-tests`, or `SIGNOFF_TEST_CACHE`), keyed by what
//! it holds; every test boots its own copy of it with `systemd-nspawn`, in a network
//! namespace of its own that has only a loopback interface (`--private-network`). The test
//! reaches it by entering its namespaces with `nsenter`: commands run inside with
//! [`Container::exec`], and host programs (`ssh`, `ansible-playbook`) run in its network
//! namespace with [`Container::in_netns`], where `127.0.0.1:22` is the container's sshd.
//! No traffic leaves that namespace.
//!
//! On a host whose PID 1 is not systemd (the test machine), `systemd-nspawn` needs
//! `--register=no --keep-unit` (there is no system bus), and then makes its `supervisor` and
//! `payload` cgroups under its own: each container is started in a cgroup of its own, which
//! is emptied and removed with the container, on every exit path (`Drop`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::command::{Finished, run, run_ok};
use crate::plane::wait_for;

/// The Debian packages of the root file system, besides `mmdebstrap`'s minimal base.
/// `libpam-systemd` gives each login its own cgroup (a session scope), as on a standard
/// Debian install; no rsyslog: journald is sshd's only log, the Debian 12 default.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "libpam-systemd",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
    "procps",
];

/// Bumped when the way the root file system is prepared changes.
const ROOTFS_FORMAT: u32 = 1;

/// The cache directory of built root file systems.
fn cache_dir() -> PathBuf {
    std::env::var_os("SIGNOFF_TEST_CACHE")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/var/cache/signoff-tests"), PathBuf::from)
        .join("system-container")
}

/// The Debian mirror: `SIGNOFF_TEST_DEBIAN_MIRROR`, else the first one apt on this
/// machine uses, else deb.debian.org.
fn debian_mirror() -> String {
    if let Some(m) = std::env::var_os("SIGNOFF_TEST_DEBIAN_MIRROR").filter(|m| !m.is_empty()) {
        return m.to_string_lossy().into_owned();
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let url = match words.as_slice() {
                ["URIs:", url, ..] => *url,
                ["deb", rest @ ..] => match rest.iter().find(|w| w.contains("://")) {
                    Some(url) => *url,
                    None => continue,
                },
                _ => continue,
            };
            if url.contains("debian") && !url.contains("security") {
                return url.to_owned();
            }
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// The cached root file system, built on first use (about 260 MB; 20 s to 2 min).
pub fn rootfs() -> Result<PathBuf> {
    let key = format!("bookworm-{ROOTFS_FORMAT}-{}", PACKAGES.join("-"));
    let key = format!("{:016x}", fnv1a(key.as_bytes()));
    let dir = cache_dir().join(format!("bookworm-{key}"));
    let done = dir.join("rootfs");
    if done.join("usr/lib/systemd/systemd").exists() {
        return Ok(done);
    }
    fs::create_dir_all(&dir)?;
    let building = tempfile::Builder::new()
        .prefix("rootfs-building-")
        .tempdir_in(&dir)?;
    let target = building.path().join("rootfs");
    let mirror = debian_mirror();
    let out = run(Command::new("mmdebstrap")
        .args(["--variant=minbase", "--mode=root"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg("bookworm")
        .arg(&target)
        .arg(format!("deb {mirror} bookworm main")))
    .context("running mmdebstrap (scripts/test installs it: apt-get install mmdebstrap)")?;
    if !out.success() {
        bail!(
            "mmdebstrap could not build a Debian 12 root file system from {mirror}:\n{}",
            out.stderr
        );
    }
    // Another test may have finished first: then its copy is used and ours dropped.
    match fs::rename(&target, &done) {
        Ok(()) => Ok(done),
        Err(_) if done.join("usr/lib/systemd/systemd").exists() => Ok(done),
        Err(e) => {
            Err(e).with_context(|| format!("moving the root file system to {}", done.display()))
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The cgroup hierarchies a container's cgroup is made in: the named `systemd` one and
/// the unified one of a hybrid host, or the one unified tree.
fn cgroup_roots() -> Vec<PathBuf> {
    let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists();
    if hybrid {
        vec![
            PathBuf::from("/sys/fs/cgroup/systemd"),
            PathBuf::from("/sys/fs/cgroup/unified"),
        ]
    } else {
        vec![PathBuf::from("/sys/fs/cgroup")]
    }
}

/// A booted container: its own copy of the root file system, `systemd-nspawn` with systemd
/// as PID 1 inside, and the cgroups it runs in. Stopped and removed on drop.
#[derive(Debug)]
pub struct Container {
    name: String,
    nspawn: Option<Child>,
    init_pid: u32,
    cgroups: Vec<PathBuf>,
    root: tempfile::TempDir,
    log: PathBuf,
}

impl Container {
    /// Boots a copy of [`rootfs`] named `name`, after `prepare` has written what it needs
    /// into the copy (keys, files), and waits until systemd reports the system running.
    pub fn boot(name: &str, prepare: impl FnOnce(&Path) -> Result<()>) -> Result<Container> {
        let image = rootfs()?;
        let parent = image
            .parent()
            .ok_or_else(|| anyhow!("{} has no parent", image.display()))?;
        let root = tempfile::Builder::new()
            .prefix(&format!("run-{name}-"))
            .tempdir_in(parent)?;
        let tree = root.path().join("rootfs");
        run_ok(Command::new("cp").arg("-a").arg(&image).arg(&tree))?;
        prepare(&tree)?;
        let log = root.path().join("console.log");
        let unique = format!("signoff-test-{name}-{}", std::process::id());
        let cgroups: Vec<PathBuf> = cgroup_roots().iter().map(|r| r.join(&unique)).collect();
        let mut container = Container {
            name: name.to_owned(),
            nspawn: None,
            init_pid: 0,
            cgroups: cgroups.clone(),
            root,
            log: log.clone(),
        };
        for dir in &cgroups {
            fs::create_dir_all(dir)
                .with_context(|| format!("creating cgroup {}", dir.display()))?;
        }
        // The shell moves itself into the container's cgroups, then becomes nspawn.
        let mut script = String::new();
        for dir in &cgroups {
            script.push_str(&format!("echo $$ > '{}/cgroup.procs' && ", dir.display()));
        }
        script.push_str("exec systemd-nspawn \"$@\"");
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args([
                "--quiet",
                "--boot",
                "--register=no",
                "--keep-unit",
                "--private-network",
            ])
            .arg("--console=passive")
            .arg(format!("--machine={name}"))
            .arg("--directory")
            .arg(&tree)
            // The container's systemd on cgroup v2 alone, as on a Debian 12 install.
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log)?)
            .stderr(fs::File::create(root_log_err(&log))?)
            .spawn()
            .context("starting systemd-nspawn (scripts/test installs it: systemd-container)")?;
        let nspawn_pid = child.id();
        container.nspawn = Some(child);
        container.init_pid = container.wait_for_init(nspawn_pid)?;
        // Until systemd listens, systemctl cannot ask it: "offline", or an error.
        let mut last = String::new();
        let booted = wait_for(
            "the container's systemd to report 'running'",
            Duration::from_secs(60),
            || {
                let running = container.exec(&["systemctl", "is-system-running", "--wait"])?;
                match running.stdout.trim() {
                    "running" => Ok(Some(())),
                    "degraded" => {
                        let failed = container.exec(&["systemctl", "--failed", "--no-legend"])?;
                        bail!(
                            "the container's systemd reports 'degraded'; failed units:\n{}",
                            failed.stdout
                        );
                    }
                    state => {
                        last = format!("'{state}' {}", running.stderr);
                        Ok(None)
                    }
                }
            },
        );
        match booted {
            Ok(()) => Ok(container),
            Err(e) => Err(anyhow!("{e}: last {last}\n{}", container.console())),
        }
    }

    /// The PID of the container's systemd: nspawn's child, once it runs systemd.
    fn wait_for_init(&mut self, nspawn_pid: u32) -> Result<u32> {
        let found = wait_for(
            "systemd running in the container",
            Duration::from_secs(30),
            || {
                if let Some(child) = self.nspawn.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    bail!("systemd-nspawn exited {status} before the container booted");
                }
                let children =
                    fs::read_to_string(format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children"))
                        .unwrap_or_default();
                Ok(children.split_whitespace().find_map(|pid| {
                    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    (comm.trim() == "systemd")
                        .then(|| pid.parse().ok())
                        .flatten()
                }))
            },
        );
        found.map_err(|e| anyhow!("{e}:\n{}", self.console()))
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's root directory, seen from the host.
    pub fn root(&self) -> PathBuf {
        self.root.path().join("rootfs")
    }

    /// What systemd-nspawn and the container's console printed.
    pub fn console(&self) -> String {
        let out = fs::read_to_string(&self.log).unwrap_or_default();
        let err = fs::read_to_string(root_log_err(&self.log)).unwrap_or_default();
        format!("{out}{err}")
    }

    /// A command run inside the container (all its namespaces), not yet started.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.init_pid.to_string())
            .args([
                "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--",
            ])
            .args(argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    /// Runs `argv` inside the container to completion.
    pub fn exec(&self, argv: &[&str]) -> Result<Finished> {
        run(&mut self.command(argv))
    }

    /// Runs `argv` inside the container; it must succeed.
    pub fn exec_ok(&self, argv: &[&str]) -> Result<Finished> {
        run_ok(&mut self.command(argv))
    }

    /// Runs a shell script inside the container; it must succeed.
    pub fn sh(&self, script: &str) -> Result<Finished> {
        self.exec_ok(&["sh", "-c", script])
    }

    /// A host program run in the container's network namespace only (host files, the
    /// container's loopback).
    pub fn in_netns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.init_pid.to_string())
            .args(["--net", "--"])
            .arg(program);
        cmd
    }

    /// `systemctl is-active UNIT` inside.
    pub fn is_active(&self, unit: &str) -> Result<String> {
        Ok(self
            .exec(&["systemctl", "is-active", unit])?
            .stdout
            .trim()
            .to_owned())
    }

    /// `systemctl show -p MainPID --value UNIT` inside.
    pub fn main_pid(&self, unit: &str) -> Result<u32> {
        let out = self.exec_ok(&["systemctl", "show", "-p", "MainPID", "--value", unit])?;
        out.stdout
            .trim()
            .parse()
            .with_context(|| format!("MainPID of {unit}: {:?}", out.stdout))
    }

    /// The journal of `unit` inside, messages only.
    pub fn journal(&self, unit: &str) -> Result<String> {
        Ok(self
            .exec_ok(&["journalctl", "--no-pager", "-o", "cat", "-u", unit])?
            .stdout)
    }

    fn stop(&mut self) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SIGRTMIN+4 asks systemd for a clean poweroff; nspawn exits after it.
            let _ = Command::new("kill")
                .args(["-s", "RTMIN+4"])
                .arg(self.init_pid.to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            if !matches!(
                crate::command::wait_until(&mut child, deadline),
                Ok(Some(_))
            ) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Anything left in the container's cgroups is killed, then the cgroups removed.
        for dir in &self.cgroups {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for dir in &self.cgroups {
            while remove_cgroup_tree(dir).is_err() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
    }
}

fn root_log_err(log: &Path) -> PathBuf {
    log.with_extension("stderr")
}

/// Removes a cgroup directory and every cgroup below it, deepest first.
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}
