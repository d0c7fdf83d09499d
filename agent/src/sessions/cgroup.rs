//! A login's own cgroup, where it has one.
//!
//! With `pam_systemd` in sshd's PAM stack, systemd puts every login in a scope of its own
//! (`/user.slice/user-1000.slice/session-7.scope`), and everything the login starts stays
//! in it unless moved out by a privileged hand. In the cgroup v2 hierarchy that scope can
//! be frozen (`cgroup.freeze`) and killed (`cgroup.kill`) as one: no fork can race the
//! kernel, which is what a kill needs against a tree that forks as fast as it can. A
//! cgroup counts as the login's own only when it is such a session scope; the cgroup sshd
//! itself runs in is never one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::procfs::Procfs;

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid v1 system), from `/proc/self/mountinfo`.
pub fn unified_mount(procfs: &Procfs) -> Option<PathBuf> {
    let text = fs::read_to_string(procfs.root().join("self/mountinfo")).ok()?;
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(unescape(mount_point)))
    })
}

/// mountinfo escapes spaces and a few other bytes as `\NNN` (octal).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let n = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The login cgroup `pid` is in: its cgroup v2 directory under `mount`, if it is a
/// session scope (`session-*.scope`).
pub fn login_cgroup_of(procfs: &Procfs, pid: u32, mount: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(procfs.root().join(pid.to_string()).join("cgroup")).ok()?;
    let relative = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_start_matches('/');
    let name = Path::new(relative).file_name()?.to_str()?;
    if !(name.starts_with("session-") && name.ends_with(".scope")) {
        return None;
    }
    // A path from the kernel never climbs; refuse one that would, rather than trust it.
    if Path::new(relative)
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some(mount.join(relative))
}

/// The PIDs in cgroup `dir` now.
pub fn procs(dir: &Path) -> io::Result<Vec<u32>> {
    Ok(fs::read_to_string(dir.join("cgroup.procs"))?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Freezes (or thaws) every process in `dir` at once; `false` when the kernel has no
/// cgroup freezer there.
pub fn freeze(dir: &Path, frozen: bool) -> io::Result<bool> {
    write_control(dir, "cgroup.freeze", if frozen { "1" } else { "0" })
}

/// SIGKILLs every process in `dir` at once, forks in flight included; `false` when the
/// kernel has no `cgroup.kill` (before Linux 5.14).
pub fn kill(dir: &Path) -> io::Result<bool> {
    write_control(dir, "cgroup.kill", "1")
}

fn write_control(dir: &Path, file: &str, value: &str) -> io::Result<bool> {
    let path = dir.join(file);
    if !path.exists() {
        return Ok(false);
    }
    fs::write(path, value)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/sys/fs/cgroup"), "/sys/fs/cgroup");
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/a\\04"), "/a\\04");
    }

    #[test]
    fn only_a_session_scope_is_a_login_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let procfs = Procfs::new(root.path());
        let mount = Path::new("/sys/fs/cgroup");
        let write = |pid: u32, text: &str| {
            fs::create_dir_all(root.path().join(pid.to_string())).unwrap();
            fs::write(root.path().join(format!("{pid}/cgroup")), text).unwrap();
        };
        write(
            10,
            "1:name=systemd:/user.slice/user-1000.slice/session-7.scope\n0::/user.slice/user-1000.slice/session-7.scope\n",
        );
        write(11, "0::/system.slice/ssh.service\n");
        write(12, "0::/\n");
        write(13, "0::/user.slice/../session-7.scope\n");
        write(14, "7:freezer:/session-1.scope\n");
        assert_eq!(
            login_cgroup_of(&procfs, 10, mount),
            Some(PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/session-7.scope"
            ))
        );
        for pid in [11, 12, 13, 14, 15] {
            assert_eq!(login_cgroup_of(&procfs, pid, mount), None, "{pid}");
        }
    }

    #[test]
    fn the_real_mount_is_found() {
        // Every machine this runs on has a cgroup v2 hierarchy (pure or hybrid).
        let mount = unified_mount(&Procfs::default()).unwrap();
        assert!(mount.join("cgroup.procs").exists(), "{mount:?}");
    }
}
