//! The agent package's binaries under test: `signoff-agent` (the daemon and tools) and
//! `signoff-sshd` (the commands sshd runs at every login).
//!
//! This package is not the agent's, so Cargo gives us no `CARGO_BIN_EXE_signoff-agent`:
//! the harness builds the binaries itself, once per test process, and finds them in the
//! workspace target directory (honouring `CARGO_TARGET_DIR`). `SIGNOFF_AGENT_BIN` points
//! the tests at a `signoff-agent` built elsewhere, and `SIGNOFF_SSHD_BIN` at a
//! `signoff-sshd` (by default, the `signoff-sshd` beside `SIGNOFF_AGENT_BIN`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};

use crate::command::run_ok;

/// Cargo profile to build the agent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `dev`, in `target/debug`: what the tests use.
    Debug,
    /// `release`, in `target/release`: what the benchmark measures.
    Release,
}

/// The workspace root (the parent of this package).
pub fn workspace_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set (relative to the workspace root),
/// else `target/` in the workspace root.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The debug `signoff-agent`, built on first use in this process.
pub fn agent_binary() -> Result<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    cached(&BIN, Binary::Agent, Profile::Debug)
}

/// The release `signoff-agent`, built on first use in this process.
pub fn release_agent_binary() -> Result<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    cached(&BIN, Binary::Agent, Profile::Release)
}

/// The debug `signoff-sshd` (what sshd's `AuthorizedPrincipalsCommand` and
/// `AuthorizedKeysCommand` run), built on first use in this process.
pub fn sshd_commands_binary() -> Result<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    cached(&BIN, Binary::SshdCommands, Profile::Debug)
}

/// The release `signoff-sshd`, built on first use in this process.
pub fn release_sshd_commands_binary() -> Result<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    cached(&BIN, Binary::SshdCommands, Profile::Release)
}

/// A binary of the agent package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    /// `signoff-agent`.
    Agent,
    /// `signoff-sshd`.
    SshdCommands,
}

impl Binary {
    fn file_name(self) -> &'static str {
        match self {
            Binary::Agent => "signoff-agent",
            Binary::SshdCommands => "signoff-sshd",
        }
    }
}

fn cached(
    cell: &'static OnceLock<Result<PathBuf, String>>,
    binary: Binary,
    profile: Profile,
) -> Result<&'static Path> {
    cell.get_or_init(|| locate_or_build(binary, profile).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| anyhow!("{e}"))
}

fn locate_or_build(binary: Binary, profile: Profile) -> Result<PathBuf> {
    let given = match binary {
        Binary::Agent => env::var_os("SIGNOFF_AGENT_BIN").map(|bin| ("SIGNOFF_AGENT_BIN", bin)),
        Binary::SshdCommands => env::var_os("SIGNOFF_SSHD_BIN")
            .map(|bin| ("SIGNOFF_SSHD_BIN", bin))
            .or_else(|| {
                // Built elsewhere: both binaries come out of the same build.
                let agent = PathBuf::from(env::var_os("SIGNOFF_AGENT_BIN")?);
                let sibling = agent.with_file_name(binary.file_name());
                Some((
                    "SIGNOFF_SSHD_BIN (beside SIGNOFF_AGENT_BIN)",
                    sibling.into(),
                ))
            }),
    };
    if let Some((var, bin)) = given {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("{var}={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    build_binary(binary, profile)
}

/// Runs `cargo build --workspace --bins` (a no-op when up to date; the same features as
/// `scripts/test`'s build, so nothing is rebuilt with other features) and returns the
/// agent binary's path.
pub fn build(profile: Profile) -> Result<PathBuf> {
    build_binary(Binary::Agent, profile)
}

fn build_binary(binary: Binary, profile: Profile) -> Result<PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "--workspace", "--bins"]);
    let dir = match profile {
        Profile::Debug => "debug",
        Profile::Release => {
            cmd.arg("--release");
            "release"
        }
    };
    let name = binary.file_name();
    run_ok(&mut cmd).map_err(|e| anyhow!("building {name}: {e:#}"))?;
    let bin = target_dir().join(dir).join(name);
    if !bin.is_file() {
        bail!(
            "cargo built {name} but {} does not exist; set CARGO_TARGET_DIR, \
             SIGNOFF_AGENT_BIN or SIGNOFF_SSHD_BIN to where it is",
            bin.display()
        );
    }
    Ok(bin)
}

/// A [`Command`] for the debug agent.
pub fn agent_command() -> Result<Command> {
    Ok(Command::new(agent_binary()?))
}
