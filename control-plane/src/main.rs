//! `signoff-server`: parses arguments, sets up logging, runs the command, maps the outcome
//! to an exit code.
//!
//! Exit codes: 0 success; 1 failure, reported on stderr as `signoff-server: error: …`
//! (and for `audit verify`, a broken chain); 64 (`EX_USAGE`) for bad arguments or a bad
//! configuration.

mod cli;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use signoff_core::error::chain;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to stdout and succeed.
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let serving = matches!(&cli.command, Command::Serve(args) if !args.check_config);
    init_logging(if serving { "info" } else { "warn" });

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signoff-server: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(
        cli,
        signoff_control_plane::api::router_with_metrics,
    )) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("signoff-server: error: {}", chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default level.
fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
