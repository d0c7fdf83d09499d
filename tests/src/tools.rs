//! The OpenSSH programs the tests drive, at the paths Debian installs them.
//!
//! A missing tool is an error naming the package to install, never a skipped test: a suite
//! that quietly skips its end-to-end checks on a machine without sshd tests nothing.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

/// An external program and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// Absolute path of the program.
    pub path: &'static str,
    /// Debian package that installs it.
    pub package: &'static str,
}

/// `ssh-keygen`, for keys, certificates and the reference KRL encoder/checker.
pub const SSH_KEYGEN: Tool = Tool {
    path: "/usr/bin/ssh-keygen",
    package: "openssh-client",
};

/// The OpenSSH client.
pub const SSH: Tool = Tool {
    path: "/usr/bin/ssh",
    package: "openssh-client",
};

/// The OpenSSH server (the absolute path matters: sshd re-executes itself).
pub const SSHD: Tool = Tool {
    path: "/usr/sbin/sshd",
    package: "openssh-server",
};

impl Tool {
    /// The program's path, or an error saying which package to install.
    pub fn path(&self) -> Result<&'static Path> {
        let path = Path::new(self.path);
        if !path.is_file() {
            bail!(
                "{} not found: install the Debian package {} \
                 (`apt-get install --no-install-recommends {}`; scripts/test does this)",
                self.path,
                self.package,
                self.package
            );
        }
        Ok(path)
    }

    /// A [`Command`] for the program.
    pub fn command(&self) -> Result<Command> {
        Ok(Command::new(self.path()?))
    }
}

/// A program installed with pip (`ansible-playbook`, `ansible-lint`): on `PATH`, or in the
/// scripts directory of the `python3` that installed it.
pub fn pip_tool(name: &str) -> Result<std::path::PathBuf> {
    use crate::command::run;
    if let Ok(out) = run(Command::new("sh").args(["-c", &format!("command -v {name}")]))
        && out.success()
        && !out.stdout.trim().is_empty()
    {
        return Ok(std::path::PathBuf::from(out.stdout.trim()));
    }
    let out = run(Command::new("python3").args([
        "-c",
        "import sysconfig; print(sysconfig.get_path('scripts'))",
    ]))?;
    let path = Path::new(out.stdout.trim()).join(name);
    if !path.is_file() {
        bail!(
            "{name} not found: install it with `python3 -m pip install ansible-core ansible-lint` \
             (scripts/test does this)"
        );
    }
    Ok(path)
}
