//! `signoff-agent`: parses arguments, calls the library, maps the outcome to an exit code.
//!
//! Exit codes: 0 success; 1 `krl check` found a revoked key (as `ssh-keygen -Q`), or
//! `principals` / `authorized-keys` printed nothing (the reason on stderr); 2 usage or input
//! error, reported on stderr as `signoff-agent: error: …`.

mod cli;

use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser as _;
use signoff_agent::krl_tool::{self, BuildOptions, CaChoice, KrlToolError};
use signoff_agent::principals;

use cli::{Cli, Command, KrlCommand};

const EXIT_REVOKED: u8 = 1;
const EXIT_DENIED: u8 = 1;
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help/--version.
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::from(EXIT_ERROR),
        Err(err) => {
            eprintln!("signoff-agent: error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Krl(KrlCommand::Build(args)) => {
            let options = BuildOptions {
                output: args.output,
                ca: args.ca.as_deref().map(CaChoice::from_arg),
                version: args.version,
                comment: args.comment.map(|c| c.as_bytes().to_vec()),
                spec_files: args.spec_files,
                generated_date: now_unix_secs(),
            };
            krl_tool::build(&options, &mut io::stdin().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Krl(KrlCommand::Check(args)) => {
            let mut out = io::stdout().lock();
            let outcome = krl_tool::check(&args.krl, &args.key_files, &mut out)?;
            out.flush().map_err(KrlToolError::Output)?;
            Ok(if outcome.revoked > 0 {
                ExitCode::from(EXIT_REVOKED)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Krl(KrlCommand::Dump(args)) => {
            krl_tool::dump(&args.krl, &mut io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Principals(args) => {
            let [user, key_id, serial, ca_fp, key_fp] = args.certificate.as_slice() else {
                anyhow::bail!("principals takes exactly five arguments");
            };
            let ok = principals::run_principals(
                &args.config,
                [user, key_id, serial, ca_fp, key_fp],
                now_unix_secs(),
                &mut io::stdout().lock(),
                &mut io::stderr().lock(),
            )?;
            Ok(exit_for(ok))
        }
        Command::AuthorizedKeys(args) => {
            let ok = principals::run_authorized_keys(
                &args.config,
                &args.user,
                now_unix_secs(),
                &mut io::stdout().lock(),
                &mut io::stderr().lock(),
            )?;
            Ok(exit_for(ok))
        }
    }
}

/// `principals` and `authorized-keys`: 0 when something was printed, 1 when nothing was
/// (sshd reads any non-zero status as "no principals" / "no keys").
fn exit_for(printed: bool) -> ExitCode {
    if printed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENIED)
    }
}

/// Seconds since the Unix epoch; 0 ("not set" in a KRL) if the clock is before 1970.
fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `signoff-agent krl dump -f x | head` ends with EPIPE: fail quietly, as a process killed
/// by SIGPIPE would.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<KrlToolError>(),
        Some(KrlToolError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe
    )
}
