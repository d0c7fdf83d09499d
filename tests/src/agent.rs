//! The `signoff-agent` binary under test.
//!
//! This package is not the agent's, so Cargo gives us no `CARGO_BIN_EXE_signoff-agent`:
//! the harness builds the binary itself, once per test process, and finds it in the
//! workspace target directory (honouring `CARGO_TARGET_DIR`). `SIGNOFF_AGENT_BIN` points
//! the tests at a binary built elsewhere.

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
    cached(&BIN, Profile::Debug)
}

/// The release `signoff-agent`, built on first use in this process.
pub fn release_agent_binary() -> Result<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    cached(&BIN, Profile::Release)
}

fn cached(
    cell: &'static OnceLock<Result<PathBuf, String>>,
    profile: Profile,
) -> Result<&'static Path> {
    cell.get_or_init(|| locate_or_build(profile).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| anyhow!("{e}"))
}

fn locate_or_build(profile: Profile) -> Result<PathBuf> {
    if let Some(bin) = env::var_os("SIGNOFF_AGENT_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("SIGNOFF_AGENT_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    build(profile)
}

/// Runs `cargo build --workspace --bins` (a no-op when up to date; the same features as
/// `scripts/test`'s build, so nothing is rebuilt with other features) and returns the
/// agent binary's path.
pub fn build(profile: Profile) -> Result<PathBuf> {
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
    run_ok(&mut cmd).map_err(|e| anyhow!("building signoff-agent: {e:#}"))?;
    let bin = target_dir().join(dir).join("signoff-agent");
    if !bin.is_file() {
        bail!(
            "cargo built signoff-agent but {} does not exist; set CARGO_TARGET_DIR or \
             SIGNOFF_AGENT_BIN to where it is",
            bin.display()
        );
    }
    Ok(bin)
}

/// A [`Command`] for the debug agent.
pub fn agent_command() -> Result<Command> {
    Ok(Command::new(agent_binary()?))
}
