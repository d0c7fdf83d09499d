//! Building and checking KRLs with `ssh-keygen` (the reference) and `signoff-agent krl`
//! (the code under test), through the same interface: `-f FILE`, `-s CA.pub|none`, spec
//! files in `ssh-keygen -k` format, and `FILE: ok|REVOKED` verdict lines.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::agent::{agent_binary, agent_command};
use crate::command::{Finished, run};
use crate::tools::SSH_KEYGEN;

/// The `-s` argument of a KRL build: which CA `serial:` and `id:` lines apply to.
#[derive(Debug, Clone, Copy)]
pub enum CaArg<'a> {
    /// No `-s`: spec files may not use `serial:` or `id:`.
    Absent,
    /// `-s CA.pub`.
    Key(&'a Path),
    /// `-s none`: `serial:` and `id:` lines revoke for certificates of any CA.
    Wildcard,
}

impl CaArg<'_> {
    fn apply(&self, cmd: &mut Command) {
        match self {
            CaArg::Absent => {}
            CaArg::Key(path) => {
                cmd.arg("-s").arg(path);
            }
            CaArg::Wildcard => {
                cmd.args(["-s", "none"]);
            }
        }
    }
}

/// `ssh-keygen -k -f OUT [-s …] SPEC…`, which must succeed.
pub fn ssh_keygen_build(out: &Path, ca: CaArg<'_>, specs: &[PathBuf]) -> Result<Finished> {
    let mut cmd = SSH_KEYGEN.command()?;
    cmd.args(["-q", "-k", "-f"]).arg(out);
    ca.apply(&mut cmd);
    cmd.args(specs);
    run(&mut cmd)?.ok()
}

/// `signoff-agent krl build -f OUT [-s …] SPEC…` with the debug agent; must succeed.
pub fn agent_build(out: &Path, ca: CaArg<'_>, specs: &[PathBuf]) -> Result<Finished> {
    agent_build_with(agent_binary()?, out, ca, specs)
}

/// `AGENT krl build -f OUT [-s …] SPEC…` with a given agent binary; must succeed.
pub fn agent_build_with(
    agent: &Path,
    out: &Path,
    ca: CaArg<'_>,
    specs: &[PathBuf],
) -> Result<Finished> {
    let mut cmd = Command::new(agent);
    cmd.args(["krl", "build", "-f"]).arg(out);
    ca.apply(&mut cmd);
    cmd.args(specs);
    run(&mut cmd)?.ok()
}

/// `ssh-keygen -Q -f KRL KEY…`.
pub fn ssh_keygen_check(krl: &Path, keys: &[PathBuf]) -> Result<Check> {
    let mut cmd = SSH_KEYGEN.command()?;
    cmd.args(["-Q", "-f"]).arg(krl).args(keys);
    Check::parse(run(&mut cmd)?, keys)
}

/// `signoff-agent krl check -f KRL KEY…`.
pub fn agent_check(krl: &Path, keys: &[PathBuf]) -> Result<Check> {
    let mut cmd = agent_command()?;
    cmd.args(["krl", "check", "-f"]).arg(krl).args(keys);
    Check::parse(run(&mut cmd)?, keys)
}

/// `signoff-agent krl dump -f KRL` (not required to succeed).
pub fn agent_dump(krl: &Path) -> Result<Finished> {
    let mut cmd = agent_command()?;
    cmd.args(["krl", "dump", "-f"]).arg(krl);
    run(&mut cmd)
}

/// What a checker said about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `ok`.
    Ok,
    /// `REVOKED`.
    Revoked,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Revoked => "REVOKED",
        })
    }
}

/// The outcome of `ssh-keygen -Q` or `krl check`.
#[derive(Debug)]
pub enum Check {
    /// The KRL loaded; one verdict per key, in argument order.
    Loaded(Vec<Verdict>),
    /// The KRL did not load (or the checker failed): no verdicts.
    Refused(Finished),
}

impl Check {
    /// Parses `PATH[ (COMMENT)]: ok|REVOKED` lines, one per key in order. Exit status 0
    /// must mean "none revoked" and 1 "some revoked"; a run that printed no verdicts and
    /// failed is a refusal. Anything else is an error in the checker's output contract.
    pub fn parse(out: Finished, keys: &[PathBuf]) -> Result<Check> {
        let lines: Vec<&str> = out.stdout.lines().collect();
        if !out.success() && lines.is_empty() {
            return Ok(Check::Refused(out));
        }
        if !matches!(out.code(), Some(0 | 1)) {
            bail!(
                "`{}` exited {} after printing verdicts:\n{}{}",
                out.command,
                out.status,
                out.stdout,
                out.stderr
            );
        }
        if lines.len() != keys.len() {
            bail!(
                "`{}` printed {} lines for {} keys:\n{}{}",
                out.command,
                lines.len(),
                keys.len(),
                out.stdout,
                out.stderr
            );
        }
        let mut verdicts = Vec::with_capacity(keys.len());
        for (line, key) in lines.iter().zip(keys) {
            let path = key.display().to_string();
            let verdict = match line.rsplit_once(": ") {
                Some((who, "ok")) if who.starts_with(&path) => Verdict::Ok,
                Some((who, "REVOKED")) if who.starts_with(&path) => Verdict::Revoked,
                _ => bail!(
                    "`{}`: expected `{path}: ok|REVOKED`, got `{line}`",
                    out.command
                ),
            };
            verdicts.push(verdict);
        }
        let any_revoked = verdicts.contains(&Verdict::Revoked);
        if out.code() != Some(i32::from(any_revoked)) {
            bail!(
                "`{}` exited {} but {} revoked:\n{}",
                out.command,
                out.status,
                if any_revoked {
                    "some keys are"
                } else {
                    "no key is"
                },
                out.stdout
            );
        }
        Ok(Check::Loaded(verdicts))
    }

    /// The verdicts, or an error quoting why the KRL was refused.
    pub fn verdicts(self) -> Result<Vec<Verdict>> {
        match self {
            Check::Loaded(v) => Ok(v),
            Check::Refused(out) => bail!(
                "`{}` refused the KRL ({}):\n{}{}",
                out.command,
                out.status,
                out.stderr,
                out.stdout
            ),
        }
    }
}
