//! `signoff-sshd`: the two commands sshd runs at every login, in a binary of their own.
//!
//! ```text
//! signoff-sshd principals [--config FILE] USER KEYID SERIAL CA_FP KEY_FP   # %u %i %s %F %f
//! signoff-sshd authorized-keys [--config FILE] USER                         # %u
//! ```
//!
//! They answer exactly as `signoff-agent principals` / `authorized-keys` do — the same
//! library functions, the same configuration file and default, the same output, log lines
//! and exit codes: 0 when something was printed, 1 when nothing was (the reason on stderr
//! and in the system log, see `signoff_agent::syslog`), 2 on a usage error or when the
//! answer could not be written.
//!
//! Why a second binary: sshd starts one of these processes twice per login, and on a
//! dynamically linked build most of a call is process start-up. `signoff-agent` links the
//! daemon (tokio, tonic, rustls, clap), whose relocated data the loader writes page by page
//! at every start; this binary reaches only the configuration, the host view reader and
//! the decision code, and parses its arguments by hand instead of with clap. See
//! `BENCHMARKS.md` ("`signoff-sshd`").

use std::ffi::OsString;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use signoff_agent::config::DEFAULT_CONFIG_PATH;
use signoff_agent::sshd_commands;
use signoff_core::error::chain as error_chain;

const EXIT_DENIED: u8 = 1;
const EXIT_ERROR: u8 = 2;

const USAGE: &str = "\
Usage: signoff-sshd principals [--config FILE] USER KEYID SERIAL CA_FP KEY_FP
       signoff-sshd authorized-keys [--config FILE] USER
";

const HELP: &str = "\
The commands sshd runs at every login (the same answers as `signoff-agent principals` and
`signoff-agent authorized-keys`, in a binary that starts faster).

  principals       sshd's AuthorizedPrincipalsCommand, run as `principals %u %i %s %F %f`:
                   prints the principals to accept for the certificate, one per line, or
                   nothing and exits 1 (the reason on stderr). After USER, every argument is
                   taken verbatim.
  authorized-keys  sshd's AuthorizedKeysCommand, run as `authorized-keys %u`: prints the
                   authorized keys of the account, or nothing and exits 1.

Options:
  --config FILE    agent configuration file [default: /etc/signoff/agent.toml]
  -h, --help       print this help
  -V, --version    print the version
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Invocation {
    /// `principals [--config FILE] USER KEYID SERIAL CA_FP KEY_FP`.
    Principals {
        config: PathBuf,
        certificate: [String; 5],
    },
    /// `authorized-keys [--config FILE] USER`.
    AuthorizedKeys { config: PathBuf, user: String },
    /// `--help`, anywhere an option may stand.
    Help,
    /// `--version`.
    Version,
}

/// A command line that does not fit [`USAGE`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum UsageError {
    /// No subcommand at all.
    #[error("a command is required: principals or authorized-keys")]
    NoCommand,
    /// A subcommand this binary does not have.
    #[error("unknown command {0:?} (signoff-sshd has only principals and authorized-keys)")]
    UnknownCommand(String),
    /// An option that is not `--config`, `--help` or `--version`.
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    /// `--config` without a file, or with an empty one.
    #[error("--config needs a file")]
    MissingConfigValue,
    /// `--config` twice.
    #[error("--config given more than once")]
    RepeatedConfig,
    /// The wrong number of positional arguments.
    #[error("{command} takes {expected}, got {got}")]
    WrongCount {
        command: &'static str,
        expected: &'static str,
        got: usize,
    },
    /// An argument that is not UTF-8 (sshd expands `%u`, `%i` … to UTF-8 or ASCII).
    #[error("argument {0:?} is not valid UTF-8")]
    NotUtf8(OsString),
}

fn main() -> ExitCode {
    let invocation = match parse_args(std::env::args_os().skip(1)) {
        Ok(invocation) => invocation,
        Err(err) => {
            eprint!("signoff-sshd: error: {err}\n{USAGE}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let mut out = io::stdout().lock();
    let mut log = io::stderr().lock();
    let answered = match invocation {
        Invocation::Help => return print_text(&mut out, HELP),
        Invocation::Version => {
            return print_text(
                &mut out,
                concat!("signoff-sshd ", env!("CARGO_PKG_VERSION"), "\n"),
            );
        }
        Invocation::Principals {
            config,
            certificate: [user, key_id, serial, ca_fp, key_fp],
        } => sshd_commands::run_principals(
            &config,
            [&user, &key_id, &serial, &ca_fp, &key_fp],
            now_unix_secs(),
            &mut out,
            &mut log,
            sshd_commands::Syslog::FromConfig,
        ),
        Invocation::AuthorizedKeys { config, user } => sshd_commands::run_authorized_keys(
            &config,
            &user,
            now_unix_secs(),
            &mut out,
            &mut log,
            sshd_commands::Syslog::FromConfig,
        ),
    };
    match answered {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_DENIED),
        Err(err) => {
            let _ = writeln!(log, "signoff-sshd: error: {}", error_chain(&err));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Parses the arguments after the program name, with the rules `signoff-agent`'s clap
/// definition gives the same two commands: `--config FILE` or `--config=FILE` once; for
/// `principals` the options come before USER and every argument from USER on is taken
/// verbatim (the certificate's holder chooses the key ID, which may look like an option);
/// `--` ends the options.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, UsageError> {
    let mut args = args.into_iter();
    let command = match utf8(args.next().ok_or(UsageError::NoCommand)?)?.as_str() {
        "-h" | "--help" => return Ok(Invocation::Help),
        "-V" | "--version" => return Ok(Invocation::Version),
        "principals" => Command::Principals,
        "authorized-keys" => Command::AuthorizedKeys,
        other if other.starts_with('-') => {
            return Err(UsageError::UnknownOption(other.to_owned()));
        }
        other => return Err(UsageError::UnknownCommand(other.to_owned())),
    };

    let mut config: Option<PathBuf> = None;
    let mut positional: Vec<String> = Vec::new();
    let mut options_ended = false;
    while let Some(arg) = args.next() {
        // After USER, `principals` takes everything verbatim.
        let verbatim = options_ended || (command == Command::Principals && !positional.is_empty());
        if verbatim {
            positional.push(utf8(arg)?);
            continue;
        }
        let text = arg.to_str();
        match text {
            Some("--") => options_ended = true,
            Some("-h" | "--help") => return Ok(Invocation::Help),
            Some("--config") => {
                let value = args.next().ok_or(UsageError::MissingConfigValue)?;
                set_config(&mut config, value)?;
            }
            Some(t) if t.starts_with("--config=") => {
                set_config(&mut config, OsString::from(&t["--config=".len()..]))?;
            }
            Some(t) if t.starts_with('-') && t != "-" => {
                return Err(UsageError::UnknownOption(t.to_owned()));
            }
            _ => positional.push(utf8(arg)?),
        }
    }

    let config = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    match command {
        Command::Principals => {
            let got = positional.len();
            let certificate: [String; 5] =
                positional.try_into().map_err(|_| UsageError::WrongCount {
                    command: "principals",
                    expected: "five arguments (USER KEYID SERIAL CA_FP KEY_FP)",
                    got,
                })?;
            Ok(Invocation::Principals {
                config,
                certificate,
            })
        }
        Command::AuthorizedKeys => {
            let got = positional.len();
            let [user]: [String; 1] =
                positional.try_into().map_err(|_| UsageError::WrongCount {
                    command: "authorized-keys",
                    expected: "one argument (USER)",
                    got,
                })?;
            Ok(Invocation::AuthorizedKeys { config, user })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Principals,
    AuthorizedKeys,
}

fn set_config(config: &mut Option<PathBuf>, value: OsString) -> Result<(), UsageError> {
    if value.is_empty() {
        return Err(UsageError::MissingConfigValue);
    }
    if config.is_some() {
        return Err(UsageError::RepeatedConfig);
    }
    *config = Some(PathBuf::from(value));
    Ok(())
}

fn utf8(arg: OsString) -> Result<String, UsageError> {
    arg.into_string().map_err(UsageError::NotUtf8)
}

/// `--help` and `--version`: a closed stdout is not worth an error.
fn print_text(out: &mut impl io::Write, text: &str) -> ExitCode {
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    ExitCode::SUCCESS
}

/// Seconds since the Unix epoch; 0 if the clock is before 1970 (as in `signoff-agent`).
fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Invocation, UsageError> {
        parse_args(argv.iter().map(OsString::from))
    }

    fn default_config() -> PathBuf {
        PathBuf::from(DEFAULT_CONFIG_PATH)
    }

    fn certificate(args: [&str; 5]) -> [String; 5] {
        args.map(str::to_owned)
    }

    #[test]
    fn principals_parses_as_sshd_runs_it() {
        let argv = [
            "principals",
            "root",
            "alice@corp",
            "7",
            "SHA256:ca",
            "SHA256:k",
        ];
        assert_eq!(
            parse(&argv),
            Ok(Invocation::Principals {
                config: default_config(),
                certificate: certificate(["root", "alice@corp", "7", "SHA256:ca", "SHA256:k"]),
            })
        );
        for config in [&["--config", "/etc/x.toml"][..], &["--config=/etc/x.toml"]] {
            let mut argv = vec!["principals"];
            argv.extend_from_slice(config);
            argv.extend(["root", "", "0", "a", "b"]);
            assert_eq!(
                parse(&argv),
                Ok(Invocation::Principals {
                    config: PathBuf::from("/etc/x.toml"),
                    certificate: certificate(["root", "", "0", "a", "b"]),
                }),
                "{argv:?}"
            );
        }
    }

    #[test]
    fn principals_takes_a_key_id_that_looks_like_an_option_verbatim() {
        for key_id in [
            "--config=/tmp/evil.toml",
            "--config",
            "-h",
            "--help",
            "--version",
            "--",
            "-",
        ] {
            let argv = ["principals", "root", key_id, "7", "SHA256:ca", "SHA256:k"];
            assert_eq!(
                parse(&argv),
                Ok(Invocation::Principals {
                    config: default_config(),
                    certificate: certificate(["root", key_id, "7", "SHA256:ca", "SHA256:k"]),
                }),
                "{key_id}"
            );
        }
    }

    #[test]
    fn double_dash_ends_the_options() {
        let argv = ["principals", "--", "--config", "id", "7", "a", "b"];
        assert_eq!(
            parse(&argv),
            Ok(Invocation::Principals {
                config: default_config(),
                certificate: certificate(["--config", "id", "7", "a", "b"]),
            })
        );
        assert_eq!(
            parse(&["authorized-keys", "--", "-x"]),
            Ok(Invocation::AuthorizedKeys {
                config: default_config(),
                user: "-x".to_owned(),
            })
        );
    }

    #[test]
    fn principals_needs_exactly_five_arguments() {
        for argv in [
            &["principals", "root", "id", "7", "a"][..],
            &["principals", "root", "id", "7", "a", "b", "c"],
            &["principals"],
            &["principals", "--config", "c"],
        ] {
            assert!(
                matches!(parse(argv), Err(UsageError::WrongCount { .. })),
                "{argv:?}"
            );
        }
    }

    #[test]
    fn authorized_keys_parses_with_the_option_before_or_after_the_user() {
        for argv in [
            &["authorized-keys", "--config", "c", "root"][..],
            &["authorized-keys", "root", "--config", "c"],
            &["authorized-keys", "--config=c", "root"],
        ] {
            assert_eq!(
                parse(argv),
                Ok(Invocation::AuthorizedKeys {
                    config: PathBuf::from("c"),
                    user: "root".to_owned(),
                }),
                "{argv:?}"
            );
        }
        assert_eq!(
            parse(&["authorized-keys", "root"]),
            Ok(Invocation::AuthorizedKeys {
                config: default_config(),
                user: "root".to_owned(),
            })
        );
    }

    #[test]
    fn authorized_keys_needs_exactly_one_user() {
        for argv in [
            &["authorized-keys"][..],
            &["authorized-keys", "root", "alice"],
        ] {
            assert!(
                matches!(parse(argv), Err(UsageError::WrongCount { .. })),
                "{argv:?}"
            );
        }
    }

    #[test]
    fn bad_config_options_are_refused() {
        assert_eq!(
            parse(&["principals", "--config"]),
            Err(UsageError::MissingConfigValue)
        );
        assert_eq!(
            parse(&["principals", "--config=", "root", "id", "7", "a", "b"]),
            Err(UsageError::MissingConfigValue)
        );
        assert_eq!(
            parse(&["authorized-keys", "--config", "a", "--config=b", "root"]),
            Err(UsageError::RepeatedConfig)
        );
    }

    #[test]
    fn unknown_options_and_commands_are_refused() {
        assert_eq!(
            parse(&["principals", "--verbose", "root", "id", "7", "a", "b"]),
            Err(UsageError::UnknownOption("--verbose".to_owned()))
        );
        assert_eq!(
            parse(&["authorized-keys", "-x"]),
            Err(UsageError::UnknownOption("-x".to_owned()))
        );
        assert_eq!(parse(&[]), Err(UsageError::NoCommand));
        assert_eq!(
            parse(&["--config", "c"]),
            Err(UsageError::UnknownOption("--config".to_owned()))
        );
        // The daemon's commands are not here.
        for command in ["run", "enroll", "status", "krl"] {
            assert_eq!(
                parse(&[command]),
                Err(UsageError::UnknownCommand(command.to_owned()))
            );
        }
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(&["--help"]), Ok(Invocation::Help));
        assert_eq!(parse(&["-V"]), Ok(Invocation::Version));
        assert_eq!(parse(&["principals", "-h"]), Ok(Invocation::Help));
        assert_eq!(
            parse(&["authorized-keys", "root", "--help"]),
            Ok(Invocation::Help)
        );
    }

    #[test]
    fn non_utf8_arguments_are_refused() {
        use std::os::unix::ffi::OsStringExt as _;
        let bad = OsString::from_vec(vec![b'r', 0xff]);
        let argv = [
            OsString::from("principals"),
            bad.clone(),
            "id".into(),
            "7".into(),
            "a".into(),
            "b".into(),
        ];
        assert_eq!(parse_args(argv), Err(UsageError::NotUtf8(bad)));
    }
}
