//! The command line of `signoff-server`: the clap types (`args`), the admin commands
//! (`commands`), each a thin call into the service layer (which validates and audits),
//! with their output as aligned tables, or as JSON of the model types with `--json`
//! (`output`).
//!
//! Admin commands open the store named by the configuration directly, in this process;
//! a running server picks their changes up within [`REVISION_POLL_INTERVAL`]. They are
//! recorded in the audit log as `cli:$USER`.
//!
//! [`REVISION_POLL_INTERVAL`]: signoff_control_plane::server::REVISION_POLL_INTERVAL

mod args;
mod commands;
mod input;
mod output;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use signoff_control_plane::api::{HttpOptions, Metrics};
use signoff_control_plane::bootstrap::{self, BootstrapError};
use signoff_control_plane::config::{Config, ConfigError};
use signoff_control_plane::server::{self, ServerError};
use signoff_control_plane::service::{IssueError, Service, ServiceError, SystemClock};
use signoff_control_plane::store::{self, OpenError};

use args::HostCaCommand;
pub use args::{Cli, Command};
use output::Output;

/// `EX_USAGE` from sysexits.h: bad arguments or configuration.
pub const EXIT_USAGE: u8 = 64;

/// `EX_TEMPFAIL` from sysexits.h: not done yet, try again later.
pub const EXIT_TEMPFAIL: u8 = 75;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// An argument is not acceptable.
    #[error("{0}")]
    Usage(String),
    /// The configuration is not acceptable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server failed to start or stopped.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The data directory is not usable.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// An input file cannot be read.
    #[error("cannot read {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// stdout is closed or full.
    #[error("cannot write to stdout")]
    Output(#[from] io::Error),
    /// No certificate was issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

impl CliError {
    /// The process exit code for this error: 64 for usage and configuration, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => EXIT_USAGE,
            CliError::Server(e) if e.is_config() => EXIT_USAGE,
            _ => 1,
        }
    }

    /// Whether stdout went away (`… | head`): exit quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Runs a command. `app` makes the HTTP router for `serve`.
pub async fn run(
    cli: Cli,
    app: impl FnOnce(Service, Arc<Metrics>, HttpOptions) -> Router,
) -> Result<ExitCode, CliError> {
    let config = Config::load(cli.config.as_deref())?;
    let command = match cli.command {
        Command::Serve(args) if args.check_config => {
            config.tls_server_config()?;
            let mut out = io::stdout().lock();
            write!(out, "{}", config.to_toml())?;
            out.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Serve(_) => {
            server::run(config, app).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::HostCa(HostCaCommand::KnownHosts { hosts }) => {
            signoff_control_plane::service::validate_known_hosts_patterns("--hosts", &hosts)
                .map_err(ServiceError::from)?;
            let line = bootstrap::host_ca_known_hosts_line(&config.data_dir, &hosts)?;
            let mut out = io::stdout().lock();
            if cli.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"hosts": hosts, "known_hosts_line": line})
                )?;
            } else {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Admin(command) => command,
    };
    let service = open_store(&config).await?;
    let mut out = Output {
        json: cli.json,
        w: io::stdout().lock(),
    };
    let result = commands::admin(&service, &config, command, &mut out).await;
    service.store().close().await;
    result
}

async fn open_store(config: &Config) -> Result<Service, CliError> {
    bootstrap::ensure_data_dir(&config.data_dir)?;
    let pool = store::open(config.database_url.expose()).await?;
    Ok(Service::new(pool, Arc::new(SystemClock)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
