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
use signoff_agent::config::Config;
use signoff_agent::krl_tool::{self, BuildOptions, CaChoice, KrlToolError};
use signoff_agent::{daemon, host_certs, identity, sshd_commands, status};

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
            let ok = sshd_commands::run_principals(
                &args.config,
                [user, key_id, serial, ca_fp, key_fp],
                now_unix_secs(),
                &mut io::stdout().lock(),
                &mut io::stderr().lock(),
                sshd_commands::Syslog::FromConfig,
            )?;
            Ok(exit_for(ok))
        }
        Command::Enroll(args) => {
            let config = Config::load(&args.config)?;
            let host_id = match args.host_id {
                Some(id) => id,
                None => hostname()?,
            };
            // The host keys, bound to this host at enrollment. Keys that cannot be read or
            // signed are not sent (said so); the daemon gets them certified later.
            let host_keys = match &config.host_certificates {
                None => Vec::new(),
                Some(hc) => host_certs::proven_keys(hc, &host_id).unwrap_or_else(|e| {
                    eprintln!(
                        "signoff-agent: warning: enrolling without host keys ({:#})",
                        anyhow::Error::from(e)
                    );
                    Vec::new()
                }),
            };
            let options = identity::EnrollOptions {
                server: args.server,
                token: args.token,
                ca_pin: args.ca_pin,
                hostname: host_id.clone(),
                host_id,
                dir: config.identity_dir.clone(),
                force: args.force,
                host_keys,
            };
            let rt = runtime()?;
            let identity = rt.block_on(identity::enroll(&options))?;
            print_quietly(&format!(
                "enrolled as {} with {}; certificate valid until {} (Unix). Start the agent: signoff-agent run\n",
                identity.host_id, identity.server, identity.not_after
            ))?;
            // Host certificates at enrollment; a failure leaves enrollment done, and the
            // daemon retries.
            if let Some(hc) = &config.host_certificates {
                match rt.block_on(host_certs::renew_all(hc, &identity)) {
                    Ok(round) => print_quietly(&format!(
                        "host certificates: {} written\n",
                        round.changed.len()
                    ))?,
                    Err(e) => eprintln!(
                        "signoff-agent: warning: no host certificates yet ({:#}); `signoff-agent run` retries",
                        anyhow::Error::from(e)
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let config = Config::load(&args.config)?;
            tracing_subscriber::fmt()
                .with_writer(io::stderr)
                .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            // Before the runtime's threads are started: they inherit it.
            match daemon::raise_priority(config.priority_boost) {
                Ok(nice) => tracing::info!(nice, "scheduling priority (priority_boost)"),
                Err(e) => tracing::warn!(
                    boost = config.priority_boost,
                    "could not raise the scheduling priority (priority_boost; needs root or \
                     CAP_SYS_NICE): {e}; scans and kills may wait behind the host's load"
                ),
            }
            let rt = runtime()?;
            rt.block_on(async {
                let shutdown = shutdown_signal()?;
                daemon::run(config, shutdown).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            let config = Config::load(&args.config)?;
            let status = status::gather(&config, now_unix_secs());
            let text = if args.json {
                serde_json::to_string_pretty(&status)? + "\n"
            } else {
                status.to_string()
            };
            print_quietly(&text)?;
            Ok(if status.connected {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DENIED)
            })
        }
        Command::AuthorizedKeys(args) => {
            let ok = sshd_commands::run_authorized_keys(
                &args.config,
                &args.user,
                now_unix_secs(),
                &mut io::stdout().lock(),
                &mut io::stderr().lock(),
                sshd_commands::Syslog::FromConfig,
            )?;
            Ok(exit_for(ok))
        }
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
fn print_quietly(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A runtime for the networked commands; the sshd commands never start one.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Completes on SIGTERM or SIGINT; installed before the daemon starts so none is lost.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// This machine's hostname, the default host id.
fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(name.trim().to_owned())
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
