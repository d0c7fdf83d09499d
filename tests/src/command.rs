//! Running external programs with a deadline, with errors that say what was run.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// How long any one tool may run before the harness gives up on it.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// A program that ran to completion.
#[derive(Debug)]
pub struct Finished {
    /// The command line, for messages.
    pub command: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossily decoded).
    pub stdout: String,
    /// Everything it wrote to stderr (lossily decoded).
    pub stderr: String,
}

impl Finished {
    /// Exit code, or `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Fails unless the program exited 0, quoting its stderr.
    pub fn ok(self) -> Result<Finished> {
        if !self.success() {
            bail!(
                "`{}` failed ({}):\n{}{}",
                self.command,
                self.status,
                self.stderr,
                self.stdout
            );
        }
        Ok(self)
    }
}

/// The command line, quoted well enough to read and paste.
pub fn describe(cmd: &Command) -> String {
    let mut out = shell_word(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&shell_word(&arg.to_string_lossy()));
    }
    out
}

fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=+,@%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with stdin closed and output captured, killing it after [`DEFAULT_DEADLINE`].
pub fn run(cmd: &mut Command) -> Result<Finished> {
    run_with_deadline(cmd, DEFAULT_DEADLINE)
}

/// Runs `cmd` and requires exit status 0.
pub fn run_ok(cmd: &mut Command) -> Result<Finished> {
    run(cmd)?.ok()
}

/// Runs `cmd` with stdin closed and output captured; kills it if it is still running after
/// `deadline`, and says so.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Result<Finished> {
    run_fed(cmd, Stdio::null(), deadline)
}

/// [`run_with_deadline`] with the contents of the file `input` on stdin (`cmd < input`).
pub fn run_with_input(
    cmd: &mut Command,
    input: &std::path::Path,
    deadline: Duration,
) -> Result<Finished> {
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    run_fed(cmd, Stdio::from(file), deadline)
}

fn run_fed(cmd: &mut Command, stdin: Stdio, deadline: Duration) -> Result<Finished> {
    let command = describe(cmd);
    // Output goes to anonymous files rather than pipes, so a chatty program can never block
    // on a full pipe while we wait for it.
    let mut out = tempfile::tempfile().context("creating a temporary file")?;
    let mut err = tempfile::tempfile().context("creating a temporary file")?;
    let mut child = cmd
        .stdin(stdin)
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .spawn()
        .with_context(|| format!("starting `{command}`"))?;
    let status = wait_until(&mut child, Instant::now() + deadline)
        .with_context(|| format!("waiting for `{command}`"))?;
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "`{command}` did not finish within {deadline:?}; killed it. stderr so far:\n{}",
            read_all(&mut err)?
        );
    };
    Ok(Finished {
        command,
        status,
        stdout: read_all(&mut out)?,
        stderr: read_all(&mut err)?,
    })
}

/// Polls `child` until it exits or `deadline` passes (then `None`).
pub fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn read_all(file: &mut File) -> Result<String> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
