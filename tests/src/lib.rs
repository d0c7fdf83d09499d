//! End-to-end test harness for signoff: drives the real OpenSSH tools (`ssh-keygen`,
//! `sshd`, `ssh`) and the real `signoff-agent` binary, and checks what a user would see.
//!
//! - [`browser`]: headless Chromium over WebDriver, for the dashboard.
//! - [`tools`]: where the OpenSSH programs are, and which package to install if not.
//! - [`agent`]: builds and locates `signoff-agent`.
//! - [`keys`]: key pairs and certificates made by `ssh-keygen`.
//! - [`krl`]: `ssh-keygen -k`/`-Q` and `signoff-agent krl build`/`check`/`dump`.
//! - [`sshd`]: a real sshd on a loopback port, and `ssh` logins to it.
//! - [`principals`]: `signoff-agent principals` installed where sshd runs it, and an sshd
//!   wired to it.
//! - [`fleet`]: a control plane and hosts (agent + sshd each) for sign-off tests.
//! - [`order_server`]: a stand-in for the control plane's end of the agent stream, to
//!   deliver crafted kill orders to a real agent.
//! - [`postgres`]: a throwaway PostgreSQL cluster a test owns, to stop and start at will.
//! - [`seed`]: replayable randomness.
//! - [`command`]: running programs with a deadline.
//! - [`bench_args`]: value parsers of the benchmarks' arguments.
//! - [`container`]: a Debian 12 system container with systemd as PID 1 (mmdebstrap,
//!   systemd-nspawn), for the packages and the Ansible roles.
//!
//! Tests run as root (sshd needs it); a missing tool fails the test with the package to
//! install, it never skips it.

pub mod agent;
pub mod bench_args;
pub mod browser;
pub mod command;
pub mod container;
pub mod fleet;
pub mod keys;
pub mod krl;
pub mod order_server;
pub mod plane;
pub mod postgres;
pub mod principals;
pub mod seed;
pub mod sessions;
pub mod siem;
pub mod sshd;
pub mod tools;

/// The wall clock in Unix seconds, as the control plane and the agent read it (the one
/// `now()` of the tests).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where a failing test leaves its inputs for a human to look at (`tests/artifacts/NAME`).
pub fn artifacts_dir(name: &str) -> std::path::PathBuf {
    agent::workspace_root()
        .join("tests")
        .join("artifacts")
        .join(name)
}
