//! Command-line interface of `signoff-agent`: clap types only, no behavior.
//!
//! One variant per command; each variant's arguments live in their own struct.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use signoff_agent::config::DEFAULT_CONFIG_PATH;

/// signoff host agent and the commands sshd runs.
#[derive(Debug, Parser)]
#[command(name = "signoff-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, check and print OpenSSH key revocation lists (KRLs).
    #[command(subcommand)]
    Krl(KrlCommand),
    /// sshd's AuthorizedPrincipalsCommand: print the principals to accept for a certificate.
    ///
    /// Run by sshd as `principals [--config FILE] %u %i %s %F %f`. Prints one principal per
    /// line from the persisted host view, or nothing and exits 1 (the reason on stderr).
    Principals(PrincipalsArgs),
    /// sshd's AuthorizedKeysCommand: print the authorized keys of an account.
    ///
    /// Run by sshd as `authorized-keys [--config FILE] %u`. Prints the plain public keys
    /// that live grants of the account hold, minus revoked ones, or nothing and exits 1.
    AuthorizedKeys(AuthorizedKeysArgs),
    /// Enroll this host with the control plane (once; `--force` to do it again).
    Enroll(EnrollArgs),
    /// Run the agent daemon: keep the host view and the KRL in step with the control plane.
    Run(RunArgs),
    /// Show whether the daemon is connected, what it has applied, the KRL and certificate.
    Status(StatusArgs),
}

/// `enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The control plane's agent listener, `https://HOST:PORT`; several replicas' listeners
    /// separated by commas, tried in turn whenever the agent connects.
    #[arg(long, value_name = "URL[,URL…]")]
    pub server: String,
    /// The single-use join token from `signoff-server token create`.
    #[arg(long, value_name = "TOKEN")]
    pub token: String,
    /// The agent CA pin `SHA256:…` printed by `signoff-server` (the server is trusted only
    /// if its CA matches it).
    #[arg(long, value_name = "PIN")]
    pub ca_pin: String,
    /// Host id to ask for; default: this machine's hostname.
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
    /// Replace an existing identity.
    #[arg(long)]
    pub force: bool,
    /// Agent configuration file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Agent configuration file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Agent configuration file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `signoff-agent krl …`.
#[derive(Debug, Subcommand)]
pub enum KrlCommand {
    /// Build a KRL from revocation spec files (the format of `ssh-keygen -k`).
    ///
    /// Spec lines: `serial: N`, `serial: N-M`, `id: KEYID` (these two need -s),
    /// `hash: SHA256:…`, `key: KEY`, `sha1: KEY`, `sha256: KEY`, or a bare public key or
    /// certificate line. OUT is replaced atomically, and only when every line is valid.
    Build(KrlBuildArgs),
    /// Check public keys or certificates against a KRL, like `ssh-keygen -Q`.
    ///
    /// Prints `FILE (comment): ok` or `FILE (comment): REVOKED` per key; exits 1 if any is
    /// revoked, 2 on errors. With no KEY, only checks that the KRL loads.
    Check(KrlCheckArgs),
    /// Print a KRL as a readable listing, a spec file where possible.
    Dump(KrlDumpArgs),
}

/// `principals`.
#[derive(Debug, Args)]
pub struct PrincipalsArgs {
    /// Agent configuration file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// `%u %i %s %F %f`: account, key ID, serial, CA fingerprint, key fingerprint. Taken
    /// verbatim once the first one is seen, so a key ID that looks like an option (the
    /// certificate's holder may choose it) is still only a key ID.
    #[arg(
        value_names = ["USER", "KEYID", "SERIAL", "CA_FP", "KEY_FP"],
        num_args = 5,
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub certificate: Vec<String>,
}

/// `authorized-keys`.
#[derive(Debug, Args)]
pub struct AuthorizedKeysArgs {
    /// Agent configuration file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// `%u`: the account.
    #[arg(value_name = "USER")]
    pub user: String,
}

/// `krl build`.
#[derive(Debug, Args)]
pub struct KrlBuildArgs {
    /// Write the KRL to this file (mode 0644, replaced atomically).
    #[arg(short = 'f', long = "file", value_name = "OUT")]
    pub output: PathBuf,
    /// CA public key whose certificates `serial:` and `id:` lines revoke; `none` for any CA.
    #[arg(short = 's', long = "ca", value_name = "CA.pub|none")]
    pub ca: Option<PathBuf>,
    /// KRL version number stored in the header.
    #[arg(
        short = 'z',
        long = "krl-version",
        value_name = "VERSION",
        default_value_t = 0
    )]
    pub version: u64,
    /// Comment stored in the header.
    #[arg(short = 'C', long = "comment", value_name = "COMMENT")]
    pub comment: Option<OsString>,
    /// Revocation spec files; `-` reads standard input.
    #[arg(value_name = "SPECFILE", required = true)]
    pub spec_files: Vec<PathBuf>,
}

/// `krl check`.
#[derive(Debug, Args)]
pub struct KrlCheckArgs {
    /// The KRL to check against.
    #[arg(short = 'f', long = "file", value_name = "KRL")]
    pub krl: PathBuf,
    /// Public key or certificate files (`*.pub`, `*-cert.pub`).
    #[arg(value_name = "KEY.pub")]
    pub key_files: Vec<PathBuf>,
}

/// `krl dump`.
#[derive(Debug, Args)]
pub struct KrlDumpArgs {
    /// The KRL to print.
    #[arg(short = 'f', long = "file", value_name = "KRL")]
    pub krl: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn build_parses_like_ssh_keygen() {
        let cli = Cli::try_parse_from([
            "signoff-agent",
            "krl",
            "build",
            "-f",
            "out.krl",
            "-s",
            "none",
            "-z",
            "12",
            "-C",
            "weekly",
            "a.spec",
            "-",
        ])
        .unwrap();
        let Command::Krl(KrlCommand::Build(args)) = cli.command else {
            panic!("{cli:?}");
        };
        assert_eq!(args.output, PathBuf::from("out.krl"));
        assert_eq!(args.ca, Some(PathBuf::from("none")));
        assert_eq!(args.version, 12);
        assert_eq!(args.comment, Some(OsString::from("weekly")));
        assert_eq!(
            args.spec_files,
            [PathBuf::from("a.spec"), PathBuf::from("-")]
        );
    }

    #[test]
    fn build_needs_output_and_a_spec_file() {
        assert!(Cli::try_parse_from(["signoff-agent", "krl", "build", "a.spec"]).is_err());
        assert!(Cli::try_parse_from(["signoff-agent", "krl", "build", "-f", "o"]).is_err());
    }

    #[test]
    fn build_refuses_a_non_numeric_version() {
        let args = ["signoff-agent", "krl", "build", "-f", "o", "-z", "x", "s"];
        assert!(Cli::try_parse_from(args).is_err());
    }

    fn principals_args(argv: &[&str]) -> PrincipalsArgs {
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Principals(args) = cli.command else {
            panic!("{cli:?}");
        };
        args
    }

    #[test]
    fn principals_parses_as_sshd_runs_it() {
        let args = principals_args(&[
            "signoff-agent",
            "principals",
            "root",
            "alice@corp",
            "7",
            "SHA256:ca",
            "SHA256:k",
        ]);
        assert_eq!(args.config, PathBuf::from(DEFAULT_CONFIG_PATH));
        assert_eq!(
            args.certificate,
            ["root", "alice@corp", "7", "SHA256:ca", "SHA256:k"]
        );
        let args = principals_args(&[
            "signoff-agent",
            "principals",
            "--config",
            "/etc/x.toml",
            "root",
            "",
            "0",
            "a",
            "b",
        ]);
        assert_eq!(args.config, PathBuf::from("/etc/x.toml"));
        assert_eq!(args.certificate, ["root", "", "0", "a", "b"]);
    }

    #[test]
    fn principals_takes_a_key_id_that_looks_like_an_option_verbatim() {
        for key_id in [
            "--config=/tmp/evil.toml",
            "--config",
            "-h",
            "--help",
            "--",
            "-",
        ] {
            let args = principals_args(&[
                "signoff-agent",
                "principals",
                "root",
                key_id,
                "7",
                "SHA256:ca",
                "SHA256:k",
            ]);
            assert_eq!(args.config, PathBuf::from(DEFAULT_CONFIG_PATH), "{key_id}");
            assert_eq!(args.certificate[1], key_id);
        }
    }

    #[test]
    fn principals_needs_five_arguments() {
        assert!(
            Cli::try_parse_from(["signoff-agent", "principals", "root", "id", "7", "a"]).is_err()
        );
        assert!(
            Cli::try_parse_from([
                "signoff-agent",
                "principals",
                "root",
                "id",
                "7",
                "a",
                "b",
                "c"
            ])
            .is_err()
        );
    }

    #[test]
    fn authorized_keys_parses() {
        let cli =
            Cli::try_parse_from(["signoff-agent", "authorized-keys", "--config", "c", "root"])
                .unwrap();
        let Command::AuthorizedKeys(args) = cli.command else {
            panic!("{cli:?}");
        };
        assert_eq!(
            (args.config, args.user),
            (PathBuf::from("c"), "root".to_owned())
        );
    }

    #[test]
    fn check_and_dump_parse() {
        let cli =
            Cli::try_parse_from(["signoff-agent", "krl", "check", "-f", "k", "a.pub", "b.pub"])
                .unwrap();
        let Command::Krl(KrlCommand::Check(args)) = cli.command else {
            panic!("{cli:?}");
        };
        assert_eq!(args.key_files.len(), 2);
        let cli = Cli::try_parse_from(["signoff-agent", "krl", "dump", "-f", "k"]).unwrap();
        assert!(matches!(cli.command, Command::Krl(KrlCommand::Dump(_))));
    }
}
