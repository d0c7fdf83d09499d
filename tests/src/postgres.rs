//! A throwaway PostgreSQL cluster a test owns, from Debian's packages: `initdb` in a
//! temporary directory (trust authentication, `--no-sync`), run as the unprivileged
//! `postgres` user when the tests run as root, and `pg_ctl` to start it on a free loopback
//! port, stop it (fast or immediate, as a crash would) and start it again on that port.
//! Dropping the cluster stops it and removes the directory.
//!
//! Each test makes its own, so one test can stop its database without disturbing the
//! others that nextest runs beside it. The server is only ever signalled through `pg_ctl`.
//! `fsync` is off: the cluster lives for one test, and even `pg_ctl stop -m immediate`
//! loses nothing committed (only a crash of the machine would).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};
use tempfile::TempDir;

use crate::command::{Finished, run};
use crate::sshd::free_port;

/// How many fresh ports to try when another process takes ours first.
const PORT_ATTEMPTS: usize = 5;
/// How long `pg_ctl` may wait for the server to start or stop (`-t`, seconds).
const PG_CTL_WAIT: &str = "60";
/// Connections the cluster accepts: each replica's pool and listeners, times several.
const MAX_CONNECTIONS: u32 = 200;

/// How to stop the server (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect the clients, then shut down cleanly.
    Fast,
    /// Quit at once without a checkpoint, as after a crash: recovery replays the WAL at
    /// the next start.
    Immediate,
}

impl StopMode {
    fn arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 (and on a socket
/// in that directory). Stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    running: bool,
}

impl Cluster {
    /// `initdb` a new cluster and start it on a free port.
    pub fn start() -> Result<Cluster> {
        let bin = postgres_bin()?;
        let dir = tempfile::Builder::new().prefix("signoff-pg-").tempdir()?;
        if as_root() {
            run_checked(Command::new("chown").arg("postgres:").arg(dir.path()))?;
        }
        let mut cluster = Cluster {
            bin,
            dir,
            port: 0,
            running: false,
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            cluster.port = free_port()?;
            match cluster.start_again() {
                Ok(()) => return Ok(cluster),
                // Most likely the port was taken meanwhile: try another.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no attempt made"))).context(format!(
            "PostgreSQL did not start in {PORT_ATTEMPTS} attempts"
        ))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with `pg_ctl stop -m MODE` and waits until it is down.
    pub fn stop(&mut self, mode: StopMode) -> Result<()> {
        if !self.running {
            bail!("PostgreSQL is not running");
        }
        let data = self.data().display().to_string();
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-m",
                mode.arg(),
                "-w",
                "-t",
                PG_CTL_WAIT,
                "stop",
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn start_again(&mut self) -> Result<()> {
        if self.running {
            bail!("PostgreSQL is running");
        }
        let data = self.data().display().to_string();
        let log = self.log_path().display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={MAX_CONNECTIONS} \
             -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log,
                "-w",
                "-t",
                PG_CTL_WAIT,
                "-o",
                &options,
                "start",
            ],
        )
        .with_context(|| format!("server log:\n{}", self.log()))?;
        self.running = true;
        Ok(())
    }

    /// Runs `sql` with `psql` in the `postgres` database and returns what it prints,
    /// unaligned and without headers (`-At`), trimmed: for a test to look at what the
    /// product stored, never to change it.
    pub fn query(&self, sql: &str) -> Result<String> {
        let port = self.port.to_string();
        let out = self.pg(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-At",
                "-c",
                sql,
            ],
        )?;
        Ok(out.stdout.trim().to_owned())
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Runs the PostgreSQL program `program` with `args`, as `postgres` when we are root.
    fn pg(&self, program: &str, args: &[&str]) -> Result<Finished> {
        let path = self.bin.join(program);
        let mut cmd = if as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        run_checked(cmd.args(args).current_dir(self.dir.path()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop(StopMode::Immediate);
        }
    }
}

fn run_checked(cmd: &mut Command) -> Result<Finished> {
    run(cmd)?.ok()
}

fn as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The newest `/usr/lib/postgresql/VERSION/bin` with an `initdb`.
fn postgres_bin() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow!("PostgreSQL is not installed (apt-get install postgresql)"))
}
