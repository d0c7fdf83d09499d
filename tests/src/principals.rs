//! Harness for `signoff-sshd principals` / `authorized-keys` (or the same commands of
//! `signoff-agent`) as sshd's `AuthorizedPrincipalsCommand` and `AuthorizedKeysCommand`.
//!
//! sshd runs a principals command only from a root-owned path none of whose directories is
//! group- or world-writable (so never from `target/` or `/tmp`), as an unprivileged user.
//! [`InstalledAgent`] copies a binary of the agent package to
//! `/usr/local/libexec/signoff-test/RANDOM/` and removes it on drop; [`ensure_system_user`] creates the `signoff` user the command
//! runs as; [`HostDir`] is a state directory that user can read; [`PrincipalsSshd`] is a
//! real sshd wired to all three.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use rand::Rng as _;
use tempfile::TempDir;

use crate::command::run;
use crate::sshd::{LogTo, Sshd, SshdSpec};

/// Where test copies of the agent go: root-owned, mode 0755 all the way up.
pub const INSTALL_ROOT: &str = "/usr/local/libexec/signoff-test";
/// The user sshd runs the principals command as, as in production.
pub const COMMAND_USER: &str = "signoff";

/// A copy of an agent binary (`signoff-sshd` or `signoff-agent`) at a path sshd accepts;
/// removed on drop.
#[derive(Debug)]
pub struct InstalledAgent {
    dir: PathBuf,
    bin: PathBuf,
}

impl InstalledAgent {
    /// Copies `bin` to `/usr/local/libexec/signoff-test/RANDOM/` under its own name,
    /// root-owned, mode 0755, directories included.
    pub fn install(bin: &Path) -> Result<InstalledAgent> {
        let name = bin
            .file_name()
            .with_context(|| format!("{} names no file", bin.display()))?;
        let root = Path::new(INSTALL_ROOT);
        fs::create_dir_all(root)
            .with_context(|| format!("creating {INSTALL_ROOT} (run as root)"))?;
        for dir in [Path::new("/usr/local/libexec"), root] {
            fs::set_permissions(dir, Permissions::from_mode(0o755))?;
        }
        let dir = root.join(format!("{:016x}", rand::rng().random::<u64>()));
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, Permissions::from_mode(0o755))?;
        let installed = InstalledAgent {
            bin: dir.join(name),
            dir,
        };
        fs::copy(bin, &installed.bin)
            .with_context(|| format!("copying {} to {}", bin.display(), installed.bin.display()))?;
        fs::set_permissions(&installed.bin, Permissions::from_mode(0o755))?;
        Ok(installed)
    }

    /// The installed binary.
    pub fn path(&self) -> &Path {
        &self.bin
    }
}

impl Drop for InstalledAgent {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Creates the system user `signoff` (no home, no shell) unless it exists.
pub fn ensure_system_user() -> Result<()> {
    if run(Command::new("id").arg(COMMAND_USER))?.success() {
        return Ok(());
    }
    let out = run(Command::new("useradd").args([
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        COMMAND_USER,
    ]))?;
    // Another test process may have created it meanwhile (useradd exits 9).
    if !out.success() && !run(Command::new("id").arg(COMMAND_USER))?.success() {
        bail!("useradd {COMMAND_USER} failed: {}", out.stderr);
    }
    Ok(())
}

/// A temporary state directory with an agent config, readable by [`COMMAND_USER`].
#[derive(Debug)]
pub struct HostDir {
    dir: TempDir,
}

impl HostDir {
    /// A new directory (mode 0755) holding `agent.toml` that names it as `state_dir` and
    /// `revoked.krl` in it as `krl_path`, followed by `extra_config`.
    pub fn new(extra_config: &str) -> Result<HostDir> {
        let dir = tempfile::Builder::new()
            .prefix("signoff-principals-")
            .tempdir()?;
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755))?;
        let host = HostDir { dir };
        host.write_config(extra_config)?;
        Ok(host)
    }

    /// Rewrites `agent.toml` with the directory's paths and `extra_config`.
    /// Unless `extra_config` names a `syslog_socket`, the commands log to none: a test
    /// never writes to the host's real `/dev/log`.
    pub fn write_config(&self, extra_config: &str) -> Result<()> {
        let syslog = if extra_config.contains("syslog_socket") {
            ""
        } else {
            "syslog_socket = \"\"\n"
        };
        let text = format!(
            "state_dir = {:?}\nkrl_path = {:?}\n{syslog}{extra_config}\n",
            self.path().display().to_string(),
            self.krl().display().to_string(),
        );
        fs::write(self.config(), text)?;
        fs::set_permissions(self.config(), Permissions::from_mode(0o644))?;
        Ok(())
    }

    /// The directory (the agent's `state_dir`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `agent.toml`.
    pub fn config(&self) -> PathBuf {
        self.path().join("agent.toml")
    }

    /// `revoked.krl`, sshd's `RevokedKeys`.
    pub fn krl(&self) -> PathBuf {
        self.path().join("revoked.krl")
    }
}

/// A running sshd (killed on drop) whose `AuthorizedPrincipalsCommand` is
/// `BIN principals --config CONFIG %u %i %s %F %f` and whose `AuthorizedKeysCommand` is
/// `BIN authorized-keys --config CONFIG %u`, both run as [`COMMAND_USER`]. (sshd asks the
/// keys command only about keys the principals rules did not admit.) An [`Sshd`] with
/// those lines; it derefs to it (`port`, `log`, `wait_for_log`, `login`, …).
#[derive(Debug)]
pub struct PrincipalsSshd(Sshd);

impl std::ops::Deref for PrincipalsSshd {
    type Target = Sshd;

    fn deref(&self) -> &Sshd {
        &self.0
    }
}

impl PrincipalsSshd {
    /// Starts sshd running the commands of `bin` (an installed `signoff-sshd` or
    /// `signoff-agent`), trusting user CA `ca_pub`, with `RevokedKeys` `krl` (which must
    /// exist), and waits until it listens.
    pub fn start(bin: &Path, config: &Path, ca_pub: &Path, krl: &Path) -> Result<PrincipalsSshd> {
        PrincipalsSshd::start_with(bin, config, ca_pub, krl, LogTo::Stderr)
    }

    /// [`PrincipalsSshd::start`] with sshd writing its log itself (`-E FILE`, as deployed
    /// with a log file) instead of to its stderr (`-e`): the commands' stderr does not reach
    /// that file.
    pub fn start_logging_to_file(
        bin: &Path,
        config: &Path,
        ca_pub: &Path,
        krl: &Path,
    ) -> Result<PrincipalsSshd> {
        PrincipalsSshd::start_with(bin, config, ca_pub, krl, LogTo::File)
    }

    fn start_with(
        bin: &Path,
        config: &Path,
        ca_pub: &Path,
        krl: &Path,
        log_to: LogTo,
    ) -> Result<PrincipalsSshd> {
        let extra = format!(
            "AuthorizedPrincipalsCommand {bin} principals --config {config} %u %i %s %F %f\n\
             AuthorizedPrincipalsCommandUser {COMMAND_USER}\n\
             AuthorizedKeysCommand {bin} authorized-keys --config {config} %u\n\
             AuthorizedKeysCommandUser {COMMAND_USER}\n",
            bin = bin.display(),
            config = config.display(),
        );
        Ok(PrincipalsSshd(Sshd::launch(&SshdSpec {
            revoked_keys: Some(krl.to_owned()),
            log_to,
            extra,
            ..SshdSpec::new(ca_pub)
        })?))
    }
}
