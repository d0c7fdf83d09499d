//! The command line of `signoff-server`: the clap types, and the admin commands, each a
//! thin call into the service layer (which validates and audits) with its output as
//! aligned tables, or as JSON of the model types with `--json`.
//!
//! Admin commands open the store named by the configuration directly, in this process;
//! a running server picks their changes up within [`REVISION_POLL_INTERVAL`]. They are
//! recorded in the audit log as `cli:$USER`.
//!
//! [`REVISION_POLL_INTERVAL`]: signoff_control_plane::server::REVISION_POLL_INTERVAL

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use signoff_control_plane::api::{HttpOptions, Metrics};
use signoff_control_plane::bootstrap::{self, BootstrapError};
use signoff_control_plane::config::{self, Config, ConfigError};
use signoff_control_plane::model::{Grant, Host, Revocation, TrustedCa, User, UserStatus};
use signoff_control_plane::server::{self, ServerError};
use signoff_control_plane::service::{
    Actor, IssueError, IssueRequest, NewGrant, NewHost, NewOperator, NewUser, OperatorAccount,
    RevocationRecord, Role, Scope, Service, ServiceError, SystemClock, TokenInfo,
};
use signoff_control_plane::store::{self, OpenError};

/// `EX_USAGE` from sysexits.h: bad arguments or configuration.
pub const EXIT_USAGE: u8 = 64;

/// signoff control plane: the server, and the admin commands that operate on its store.
#[derive(Debug, Parser)]
#[command(name = "signoff-server", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Without it: data in ./signoff-data, HTTP on
    /// 127.0.0.1:8080, agents on 127.0.0.1:7443.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON (the API's model types) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// People: their key IDs, principals, keys and status.
    #[command(subcommand)]
    User(UserCommand),
    /// Host groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Hosts and their groups.
    #[command(subcommand)]
    Host(HostCommand),
    /// Who may log in as which account on which host group.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Approvals of grants to privileged accounts: what approvers sign, and their
    /// signatures (hosts count them against their own approvers file).
    #[command(subcommand)]
    Approval(ApprovalCommand),
    /// SSH certificate authorities whose user certificates hosts trust.
    #[command(subcommand)]
    Ca(CaCommand),
    /// The revocation set: key IDs, serials, keys.
    #[command(subcommand)]
    Revoke(RevokeCommand),
    /// Single-use join tokens for enrolling agents.
    #[command(subcommand)]
    Token(JoinTokenCommand),
    /// API bearer tokens (for HR systems, automation, scripts).
    #[command(subcommand, name = "api-token")]
    ApiToken(TokenCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Sign a person off everywhere: disable them, revoke their key IDs and keys, end every
    /// session of theirs on every host; prints progress until every host has confirmed.
    Signoff(SignoffArgs),
    /// Dashboard operator accounts (security staff) and their roles.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Certificates from signoff's own user CA.
    #[command(subcommand)]
    Cert(CertCommand),
}

/// `cert …`.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a certificate for one of the person's registered keys and print it (one
    /// OpenSSH line, for `KEY-cert.pub`).
    Issue {
        /// The person.
        user: String,
        /// Their public key file (`id_ed25519.pub`).
        key: PathBuf,
        /// Validity (`8h`, `30m`); default and maximum from `[ca]` or the person's policy.
        #[arg(long)]
        ttl: Option<String>,
        /// Addresses or networks the certificate may be used from (`10.0.0.0/8,192.0.2.7`).
        #[arg(long)]
        source_address: Option<String>,
    },
    /// The person's unexpired certificates.
    List {
        /// The person.
        user: String,
    },
    /// Set a host group's validity policy, within `[ca] max_ttl`: people holding a grant
    /// there get certificates no longer than it allows (the strictest policy applies).
    GroupPolicy {
        /// The host group.
        group: String,
        /// Validity when a request names none.
        #[arg(long)]
        default_ttl: String,
        /// The longest validity issued to people with a grant in the group.
        #[arg(long)]
        max_ttl: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Set a person's own validity policy, within `[ca] max_ttl`.
    Policy {
        /// The person.
        user: String,
        /// Validity when a request names none.
        #[arg(long)]
        default_ttl: String,
        /// The longest validity issued to them.
        #[arg(long)]
        max_ttl: String,
        /// Addresses or networks every certificate of theirs carries by default.
        #[arg(long)]
        source_address: Option<String>,
        #[command(flatten)]
        reason: Reason,
    },
}

/// `operator …`.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Create an account with a random password, printed once.
    Create {
        /// Login name.
        name: String,
        /// viewer (read), operator (also kill and sign off), admin (also re-enable people
        /// and manage operators).
        #[arg(long, value_parser = role_arg(), default_value = "viewer")]
        role: Role,
        #[command(flatten)]
        reason: Reason,
    },
    /// List accounts.
    List,
    /// Change an account's role.
    SetRole {
        /// Login name.
        name: String,
        /// The new role.
        #[arg(value_parser = role_arg())]
        role: Role,
        #[command(flatten)]
        reason: Reason,
    },
    /// Disable an account: no more logins; its web sessions end at their next request.
    Disable {
        /// Login name.
        name: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Give an account a new random password (printed once) and enable it again.
    ResetPassword {
        /// Login name.
        name: String,
        #[command(flatten)]
        reason: Reason,
    },
}

/// A dashboard role on the command line: one of [`Role::ALL`], listed in `--help`.
fn role_arg() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Role::ALL.map(Role::as_str))
        .try_map(|s| Role::parse(&s).ok_or("unknown role"))
}

/// `signoff USER`.
#[derive(Debug, Args)]
pub struct SignoffArgs {
    /// The person.
    pub user: String,
    /// Why, for the audit log and the signed statement hosts receive.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// How long to print progress before giving up waiting (the sign-off itself is
    /// durable and goes on): e.g. 30s, 5m; 0 to not wait.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub wait: String,
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Validate the configuration (and the HTTPS files it names), print it resolved with
    /// secrets redacted, and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// Why an admin action is taken, recorded in the audit log.
#[derive(Debug, Args)]
pub struct Reason {
    /// Why, for the audit log.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
}

/// `user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a person, active.
    Add {
        /// Unique name; also their default certificate principal.
        name: String,
        /// A certificate key ID that identifies them (repeatable).
        #[arg(long = "key-id", value_name = "ID")]
        key_ids: Vec<String>,
        /// A certificate principal that is theirs (repeatable; default: NAME).
        #[arg(long = "principal", value_name = "P")]
        principals: Vec<String>,
        /// A file of plain public keys they may use, one per line (repeatable).
        #[arg(long = "key-file", value_name = "F.pub")]
        key_files: Vec<PathBuf>,
        #[command(flatten)]
        reason: Reason,
    },
    /// List everyone.
    List,
    /// Show one person.
    Show {
        /// Their name.
        name: String,
    },
    /// Disable a person: no login anywhere from the next revision hosts apply.
    Disable {
        /// Their name.
        name: String,
        /// Why, for the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Re-enable a signed-off person: withdraws the sign-off and the revocations it added.
    Reenable {
        /// Their name.
        name: String,
        /// Why, for the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Enable a disabled person again.
    Enable {
        /// Their name.
        name: String,
        /// Why, for the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

/// `group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a host group.
    Add {
        /// Unique name.
        name: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// List host groups and their hosts.
    List,
}

/// `host …`.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Register a host.
    Add {
        /// Unique id; it will appear in the host's agent certificate.
        id: String,
        /// The name people know it by (default: ID).
        #[arg(long)]
        hostname: Option<String>,
        /// A host group it belongs to (repeatable).
        #[arg(long = "group", value_name = "G")]
        groups: Vec<String>,
        #[command(flatten)]
        reason: Reason,
    },
    /// List hosts.
    List,
    /// Decommission a host: its agent's certificate is refused from now on.
    Remove {
        /// Its id.
        id: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Replace a host's groups (none: it leaves every group).
    Groups {
        /// Its id.
        id: String,
        /// The groups it belongs to from now on.
        groups: Vec<String>,
        #[command(flatten)]
        reason: Reason,
    },
}

/// `grant …`.
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Let USER log in as ACCOUNT on the hosts of GROUP.
    Add {
        /// The person.
        user: String,
        /// The Unix account.
        account: String,
        /// The host group.
        group: String,
        /// Until when: RFC 3339 (2026-12-31T18:00:00Z) or Unix seconds.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Propose it for approval: listed as pending (`approval list`) until it ends.
        #[arg(long)]
        propose: bool,
        #[command(flatten)]
        reason: Reason,
    },
    /// List grants.
    List {
        /// Only this person's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Withdraw a grant.
    Remove {
        /// The grant's id (see `grant list`).
        id: i64,
        #[command(flatten)]
        reason: Reason,
    },
}

/// `approval …`.
#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// Print the exact bytes approvers sign for ID (nothing else, so that
    /// `approval show ID > FILE` then `ssh-keygen -Y sign -n signoff-approval -f KEY FILE`
    /// signs them).
    Show {
        /// `grant-N` (or plain `N`) for grant N, `reenable-N` for re-enabling the person
        /// of sign-off N.
        id: ApprovalId,
    },
    /// Grants proposed for approval or holding approvals, and re-enables awaiting
    /// approvals, with their approvals.
    List,
    /// Add an approver's signature (`FILE.sig` from `ssh-keygen -Y sign`) to ID.
    Add {
        /// `grant-N` (or `N`), or `reenable-N`.
        id: ApprovalId,
        /// The signature file.
        signature: PathBuf,
    },
}

/// What an approval is for: a grant, or re-enabling the person of a sign-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalId {
    /// `grant-N` or `N`.
    Grant(i64),
    /// `reenable-N`: N is the sign-off's id.
    Reenable(i64),
}

impl std::str::FromStr for ApprovalId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an approval id: write grant-N (or N) or reenable-N");
        let number = |n: &str| n.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(bad);
        if let Some(n) = s.strip_prefix("reenable-") {
            Ok(ApprovalId::Reenable(number(n)?))
        } else {
            Ok(ApprovalId::Grant(number(
                s.strip_prefix("grant-").unwrap_or(s),
            )?))
        }
    }
}

impl std::fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApprovalId::Grant(n) => write!(f, "grant {n}"),
            ApprovalId::Reenable(n) => write!(f, "the re-enable of sign-off {n}"),
        }
    }
}

/// `ca …`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Trust a CA's user certificates.
    Add {
        /// Unique name.
        name: String,
        /// The CA's public key (OpenSSH format).
        file: PathBuf,
        #[command(flatten)]
        reason: Reason,
    },
    /// List trusted CAs.
    List,
    /// Stop trusting a CA; its revocations stay.
    Remove {
        /// Its name.
        name: String,
        #[command(flatten)]
        reason: Reason,
    },
}

/// `revoke …`.
#[derive(Debug, Subcommand)]
pub enum RevokeCommand {
    /// Revoke every certificate with this key ID.
    KeyId {
        /// The key ID.
        id: String,
        /// Only certificates of this CA (name or SHA256 fingerprint); default: any CA.
        #[arg(long)]
        ca: Option<String>,
        #[command(flatten)]
        reason: Reason,
    },
    /// Revoke a CA's certificates by serial: N or N-M.
    Serial {
        /// A serial or an inclusive range; serial 0 cannot be revoked.
        range: String,
        /// The CA (name or SHA256 fingerprint).
        #[arg(long)]
        ca: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// Revoke a plain public key and every certificate for it.
    Key {
        /// The public key (OpenSSH format).
        file: PathBuf,
        #[command(flatten)]
        reason: Reason,
    },
    /// Revoke the key with this fingerprint.
    Sha256 {
        /// `SHA256:…` as `ssh-keygen -l` prints it.
        fingerprint: String,
        #[command(flatten)]
        reason: Reason,
    },
    /// List the revocation set.
    List,
    /// Take an entry out of the revocation set.
    Remove {
        /// Its id (see `revoke list`).
        id: i64,
        #[command(flatten)]
        reason: Reason,
    },
}

/// A token scope on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Read everything.
    Read,
    /// Change users, hosts, grants, CAs, revocations.
    Write,
    /// Sign people off, re-enable them, kill sessions.
    Signoff,
    /// Manage API tokens (a token creates only tokens with scopes it holds).
    Admin,
    /// Download the KRL (`GET /krl`), for hosts without an agent.
    Krl,
    /// Issue certificates from signoff's user CA (`POST /api/v1/users/NAME/certificates`).
    Issue,
    /// SCIM 2.0 provisioning (`/scim/v2`) for an identity provider; good for nothing else.
    Scim,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Write => Scope::Write,
            ScopeArg::Signoff => Scope::Signoff,
            ScopeArg::Admin => Scope::Admin,
            ScopeArg::Krl => Scope::Krl,
            ScopeArg::Issue => Scope::Issue,
            ScopeArg::Scim => Scope::Scim,
        }
    }
}

/// `token …`.
#[derive(Debug, Subcommand)]
pub enum JoinTokenCommand {
    /// Make a single-use join token; its secret is printed once, with the enroll command.
    Create {
        /// Host groups the enrolled host joins (repeatable or comma-separated).
        #[arg(long = "groups", alias = "group", value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime, e.g. 1h; default: `agents.join_token_ttl` of the config.
        #[arg(long)]
        ttl: Option<String>,
        /// How many tokens (one per host of a fleet being rolled out); more than one prints
        /// one per line (`--json`: an array).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        count: u32,
        #[command(flatten)]
        reason: Reason,
    },
}

/// `api-token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a bearer token; its secret is printed once.
    Create {
        /// Name, recorded as `token:NAME` in the audit log.
        name: String,
        /// What it may do (repeatable or comma-separated).
        #[arg(long = "scope", value_enum, value_delimiter = ',', required = true)]
        scopes: Vec<ScopeArg>,
        /// Lifetime, e.g. 30d or 12h; default: until revoked.
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        reason: Reason,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token.
    Revoke {
        /// Its id (see `token list`).
        id: i64,
        #[command(flatten)]
        reason: Reason,
    },
}

/// `audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; exit 1 and name the first broken row if it does not hold.
    Verify {
        /// Also check the chain heads hosts witnessed: a file of one JSON object a line,
        /// `{"host":"web1","seq":N,"hash":"HEX"}`. A log rewritten with every later hash
        /// recomputed passes the chain check but not this one.
        #[arg(long, value_name = "FILE")]
        witness: Option<PathBuf>,
    },
    /// Show the latest entries, newest first.
    List {
        /// Only entries whose actor, action or target contains this.
        #[arg(long, default_value = "")]
        filter: String,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only entries before this sequence number (for paging).
        #[arg(long, value_name = "SEQ")]
        before: Option<i64>,
    },
}

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
    match cli.command {
        Command::Serve(args) if args.check_config => {
            config.tls_server_config()?;
            let mut out = io::stdout().lock();
            write!(out, "{}", config.to_toml())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(_) => {
            server::run(config, app).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(JoinTokenCommand::Create {
            groups,
            ttl,
            count,
            reason,
        }) => {
            let service = open_store(&config).await?;
            let mut out = Output {
                json: cli.json,
                w: io::stdout().lock(),
            };
            let result = join_token(
                &service,
                &config,
                groups,
                ttl,
                count,
                &reason.reason,
                &mut out,
            )
            .await;
            service.pool().close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Cert(c) => {
            let service = open_store(&config).await?;
            bootstrap::install_user_ca(&service, &config.data_dir, &config.ca).await?;
            let mut out = Output {
                json: cli.json,
                w: io::stdout().lock(),
            };
            let result = cert(&service, c, &mut out).await;
            service.pool().close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Signoff(args) => {
            let service = open_store(&config).await?;
            let keys = bootstrap::prepare_keys(&config.data_dir, service.now())?;
            service.set_order_signer(keys.order_signer.private_key().clone());
            let mut out = Output {
                json: cli.json,
                w: io::stdout().lock(),
            };
            let result = signoff(&service, args, &mut out).await;
            service.pool().close().await;
            result
        }
        command => {
            let service = open_store(&config).await?;
            let mut out = Output {
                json: cli.json,
                w: io::stdout().lock(),
            };
            let result = admin(&service, command, &mut out).await;
            service.pool().close().await;
            result
        }
    }
}

/// `cert …`.
async fn cert(svc: &Service, c: CertCommand, out: &mut Output<'_>) -> Result<(), CliError> {
    let secs = |flag: &str, t: &str| {
        config::parse_duration(t)
            .map(|d| d.as_secs())
            .map_err(|e| CliError::Usage(format!("{flag}: {e}")))
    };
    match c {
        CertCommand::Issue {
            user,
            key,
            ttl,
            source_address,
        } => {
            let request = IssueRequest {
                public_key: read_one_key(&key)?,
                ttl: ttl.as_deref().map(|t| secs("--ttl", t)).transpose()?,
                source_address,
            };
            let issued = svc.issue_certificate(&actor(), &user, &request).await?;
            out.emit(&issued, |w| writeln!(w, "{}", issued.certificate))?;
        }
        CertCommand::List { user } => {
            let certs = svc.list_certificates(&user).await?;
            out.emit(&certs, |w| {
                let mut t = Table::new([
                    "SERIAL",
                    "KEY",
                    "PRINCIPALS",
                    "VALID AFTER",
                    "VALID BEFORE",
                    "SOURCE",
                ]);
                for c in &certs {
                    t.row([
                        c.serial.to_string(),
                        c.key_fingerprint.clone(),
                        c.principals.join(","),
                        time_text(c.valid_after),
                        time_text(c.valid_before),
                        c.source_address.clone().unwrap_or_default(),
                    ]);
                }
                t.write(w)
            })?;
        }
        CertCommand::GroupPolicy {
            group,
            default_ttl,
            max_ttl,
            reason,
        } => {
            let default_ttl = secs("--default-ttl", &default_ttl)?;
            let max_ttl = secs("--max-ttl", &max_ttl)?;
            svc.set_group_certificate_policy(
                &actor(),
                &group,
                default_ttl,
                max_ttl,
                &reason.reason,
            )
            .await?;
            out.emit(
                &serde_json::json!({"group": group, "default_ttl": default_ttl, "max_ttl": max_ttl}),
                |w| {
                    writeln!(
                        w,
                        "group {group}: certificates valid {default_ttl}s by default, at most {max_ttl}s"
                    )
                },
            )?;
        }
        CertCommand::Policy {
            user,
            default_ttl,
            max_ttl,
            source_address,
            reason,
        } => {
            let default_ttl = secs("--default-ttl", &default_ttl)?;
            let max_ttl = secs("--max-ttl", &max_ttl)?;
            svc.set_certificate_policy(
                &actor(),
                &user,
                default_ttl,
                max_ttl,
                source_address.as_deref(),
                &reason.reason,
            )
            .await?;
            out.emit(
                &serde_json::json!({"user": user, "default_ttl": default_ttl, "max_ttl": max_ttl}),
                |w| {
                    writeln!(
                        w,
                        "{user}: certificates valid {default_ttl}s by default, at most {max_ttl}s"
                    )
                },
            )?;
        }
    }
    Ok(())
}

/// `token create`: the secret, and the command that enrolls a host with it.
async fn join_token(
    svc: &Service,
    config: &Config,
    groups: Vec<String>,
    ttl: Option<String>,
    count: u32,
    reason: &str,
    out: &mut Output<'_>,
) -> Result<(), CliError> {
    let ttl = match ttl {
        Some(t) => {
            config::parse_duration(&t).map_err(|e| CliError::Usage(format!("--ttl: {e}")))?
        }
        None => config.agents.join_token_ttl,
    };
    let ttl =
        i64::try_from(ttl.as_secs()).map_err(|_| CliError::Usage("--ttl: too long".into()))?;
    let ca = bootstrap::agent_ca_pin(&config.data_dir)?;
    let mut tokens = Vec::with_capacity(count as usize);
    for _ in 0..count {
        tokens.push(
            svc.create_join_token(&actor(), &groups, ttl, reason)
                .await?,
        );
    }
    let host = config
        .agents
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let url = format!("https://{host}:{}", config.agents.listen.port());
    #[derive(Serialize)]
    struct JoinTokenOut<'a> {
        #[serde(flatten)]
        token: &'a signoff_control_plane::service::JoinToken,
        server: &'a str,
        ca_pin: &'a str,
    }
    let shown: Vec<JoinTokenOut<'_>> = tokens
        .iter()
        .map(|token| JoinTokenOut {
            token,
            server: &url,
            ca_pin: &ca,
        })
        .collect();
    if let [one] = shown.as_slice() {
        let token = one.token;
        return emit_join_token(out, one, token, &url, &ca);
    }
    out.emit(&shown, |w| {
        writeln!(
            w,
            "{} join tokens for groups [{}], shown only this once; on each host, one of:",
            tokens.len(),
            groups.join(", ")
        )?;
        for t in &tokens {
            writeln!(
                w,
                "signoff-agent enroll --server {url} --token {} --ca-pin {ca}",
                t.secret
            )?;
        }
        Ok(())
    })
}

fn emit_join_token<T: Serialize>(
    out: &mut Output<'_>,
    shown: &T,
    token: &signoff_control_plane::service::JoinToken,
    url: &str,
    ca: &str,
) -> Result<(), CliError> {
    out.emit(shown, |w| {
        writeln!(
            w,
            "join token {} for groups [{}], valid until {}; shown only this once. On the host:",
            token.id,
            token.groups.join(", "),
            token.expires_at
        )?;
        writeln!(w)?;
        writeln!(
            w,
            "    signoff-agent enroll --server {url} --token {} --ca-pin {ca}",
            token.secret
        )
    })?;
    Ok(())
}

/// `signoff USER`: signs off, then prints each change of progress until the sign-off is
/// complete (exit 0) or `--wait` runs out (exit 75, EX_TEMPFAIL: it goes on without us).
async fn signoff(
    svc: &Service,
    args: SignoffArgs,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    let wait = if args.wait.trim() == "0" {
        Duration::ZERO
    } else {
        config::parse_duration(&args.wait)
            .map_err(|e| CliError::Usage(format!("--wait {:?}: {e}", args.wait)))?
    };
    let record = svc.sign_off(&actor(), &args.user, &args.reason).await?;
    let deadline = std::time::Instant::now() + wait;
    let mut progress = svc.watch_signoffs();
    let mut last = None;
    let mut record = record;
    loop {
        let tally = record.tally();
        if !out.json && last != Some(tally) {
            let (confirmed, pending, offline) = tally;
            writeln!(
                out.w,
                "sign-off #{} of {}: {confirmed}/{} hosts confirmed, {pending} pending, {offline} offline",
                record.id,
                record.user,
                record.hosts.len()
            )?;
            out.w.flush()?;
            last = Some(tally);
        }
        if record.completed_at.is_some() || std::time::Instant::now() >= deadline {
            break;
        }
        // Confirmations are written by the server process: poll the store, and wake early
        // when this process sees progress itself.
        let _ = tokio::time::timeout(Duration::from_millis(100), progress.changed()).await;
        record = svc.get_signoff(record.id).await?;
    }
    let complete = record.completed_at.is_some();
    out.emit(&record, |w| {
        if complete {
            writeln!(w, "complete: every host has confirmed")
        } else {
            writeln!(
                w,
                "not complete yet; it goes on and offline hosts converge when they reconnect"
            )?;
            for h in record.hosts.iter().filter(|h| h.confirmed_at.is_none()) {
                let state = serde_json::to_value(h.state).unwrap_or_default();
                writeln!(
                    w,
                    "  waiting for {} ({}){}",
                    h.host,
                    state.as_str().unwrap_or("?"),
                    h.last_error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )?;
            }
            Ok(())
        }
    })?;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_TEMPFAIL)
    })
}

/// `EX_TEMPFAIL` from sysexits.h: not done yet, try again later.
pub const EXIT_TEMPFAIL: u8 = 75;

async fn open_store(config: &Config) -> Result<Service, CliError> {
    bootstrap::ensure_data_dir(&config.data_dir)?;
    let pool = store::open(config.database_url.expose()).await?;
    Ok(Service::new(pool, Arc::new(SystemClock)).await?)
}

/// `cli:$USER`, or `cli` when the user is unknown.
fn actor() -> Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    if user.is_empty() {
        Actor::cli()
    } else {
        Actor(format!("cli:{user}"))
    }
}

async fn admin(
    svc: &Service,
    command: Command,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    let who = actor();
    let who = &who;
    match command {
        Command::Serve(_) => return Err(CliError::Usage("serve is not an admin command".into())),
        Command::User(c) => match c {
            UserCommand::Add {
                name,
                key_ids,
                principals,
                key_files,
                reason,
            } => {
                let mut public_keys = Vec::new();
                for f in &key_files {
                    public_keys.extend(read_keys(f)?);
                }
                let new = NewUser {
                    name,
                    key_ids,
                    principals,
                    public_keys,
                };
                let user = svc.create_user(who, new, &reason.reason).await?;
                out.emit(&user, |w| user_details(w, &user))?;
            }
            UserCommand::List => {
                let users = svc.list_users().await?;
                out.emit(&users, |w| users_table(w, &users))?;
            }
            UserCommand::Show { name } => {
                let user = svc.get_user(&name).await?;
                out.emit(&user, |w| user_details(w, &user))?;
            }
            UserCommand::Disable { name, reason } => {
                let user = svc
                    .set_user_status(who, &name, UserStatus::Disabled, &reason)
                    .await?;
                out.emit(&user, |w| user_details(w, &user))?;
            }
            UserCommand::Reenable { name, reason } => {
                let user = svc.reenable_user(who, &name, &reason).await?;
                out.emit(&user, |w| user_details(w, &user))?;
            }
            UserCommand::Enable { name, reason } => {
                let user = svc
                    .set_user_status(who, &name, UserStatus::Active, &reason)
                    .await?;
                out.emit(&user, |w| user_details(w, &user))?;
            }
        },
        Command::Group(c) => match c {
            GroupCommand::Add { name, reason } => {
                let group = svc.create_group(who, &name, &reason.reason).await?;
                out.emit(&group, |w| writeln!(w, "host group {} created", group.name))?;
            }
            GroupCommand::List => {
                let groups = svc.list_groups().await?;
                out.emit(&groups, |w| {
                    let mut t = Table::new(["NAME", "HOSTS"]);
                    for g in &groups {
                        t.row([g.name.clone(), g.hosts.join(",")]);
                    }
                    t.write(w)
                })?;
            }
        },
        Command::Host(c) => match c {
            HostCommand::Add {
                id,
                hostname,
                groups,
                reason,
            } => {
                let new = NewHost {
                    id,
                    hostname: hostname.unwrap_or_default(),
                    groups,
                };
                let host = svc.create_host(who, new, &reason.reason).await?;
                out.emit(&host, |w| hosts_table(w, std::slice::from_ref(&host)))?;
            }
            HostCommand::List => {
                let hosts = svc.list_hosts().await?;
                out.emit(&hosts, |w| hosts_table(w, &hosts))?;
            }
            HostCommand::Remove { id, reason } => {
                let host = svc.get_host(&id).await?;
                svc.remove_host(who, &id, &reason.reason).await?;
                out.emit(&host, |w| writeln!(w, "host {} removed", host.id))?;
            }
            HostCommand::Groups { id, groups, reason } => {
                let host = svc
                    .set_host_groups(who, &id, &groups, &reason.reason)
                    .await?;
                out.emit(&host, |w| hosts_table(w, std::slice::from_ref(&host)))?;
            }
        },
        Command::Grant(c) => match c {
            GrantCommand::Add {
                user,
                account,
                group,
                until,
                propose,
                reason,
            } => {
                let not_after = until.as_deref().map(parse_time).transpose()?;
                let new = NewGrant {
                    user,
                    account,
                    group,
                    not_after,
                    approval_requested: propose,
                };
                let grant = svc.create_grant(who, new, &reason.reason).await?;
                out.emit(&grant, |w| grants_table(w, std::slice::from_ref(&grant)))?;
            }
            GrantCommand::List { user } => {
                let grants = svc.list_grants(user.as_deref()).await?;
                out.emit(&grants, |w| grants_table(w, &grants))?;
            }
            GrantCommand::Remove { id, reason } => {
                let grant = svc.delete_grant(who, id, &reason.reason).await?;
                out.emit(&grant, |w| {
                    writeln!(
                        w,
                        "grant {} removed ({} as {} on {})",
                        grant.id, grant.user, grant.account, grant.group
                    )
                })?;
            }
        },
        Command::Approval(c) => match c {
            ApprovalCommand::Show { id } => match id {
                ApprovalId::Grant(id) => {
                    let a = svc.grant_approvals(id).await?;
                    // The bytes, exactly: this output is what gets signed.
                    out.emit(&a, |w| w.write_all(a.bytes.as_bytes()))?;
                }
                ApprovalId::Reenable(id) => {
                    let a = svc.reenable_approvals(id).await?;
                    out.emit(&a, |w| w.write_all(a.bytes.as_bytes()))?;
                }
            },
            ApprovalCommand::List => {
                let pending = svc.pending_approvals().await?;
                let reenables = svc.pending_reenables().await?;
                let both = serde_json::json!({ "grants": pending, "reenables": reenables });
                out.emit(&both, |w| {
                    let mut t =
                        Table::new(["GRANT", "USER", "ACCOUNT", "GROUP", "APPROVALS", "BY"]);
                    for a in &pending {
                        t.row([
                            a.grant.id.to_string(),
                            a.grant.user.clone(),
                            a.grant.account.clone(),
                            a.grant.group.clone(),
                            a.approvals.len().to_string(),
                            a.approvals
                                .iter()
                                .map(|r| r.fingerprint.as_str())
                                .collect::<Vec<_>>()
                                .join(" "),
                        ]);
                    }
                    t.write(w)?;
                    if !reenables.is_empty() {
                        writeln!(w)?;
                        let mut t = Table::new(["ID", "USER", "RE-ENABLED", "APPROVALS", "BY"]);
                        for a in &reenables {
                            t.row([
                                format!("reenable-{}", a.signoff_id),
                                a.user.clone(),
                                if a.reenabled { "yes" } else { "no" }.to_owned(),
                                a.approvals.len().to_string(),
                                a.approvals
                                    .iter()
                                    .map(|r| r.fingerprint.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" "),
                            ]);
                        }
                        t.write(w)?;
                    }
                    Ok(())
                })?;
            }
            ApprovalCommand::Add { id, signature } => {
                let text = std::fs::read_to_string(&signature).map_err(|e| {
                    CliError::Usage(format!("cannot read {}: {e}", signature.display()))
                })?;
                let r = match id {
                    ApprovalId::Grant(n) => svc.approve_grant(who, n, &text).await?,
                    ApprovalId::Reenable(n) => svc.approve_reenable(who, n, &text).await?,
                };
                out.emit(&r, |w| {
                    writeln!(w, "approval {} of {id} by {}", r.id, r.fingerprint)
                })?;
            }
        },
        Command::Ca(c) => match c {
            CaCommand::Add { name, file, reason } => {
                let key = read_one_key(&file)?;
                let ca = svc.add_ca(who, &name, &key, &reason.reason).await?;
                out.emit(&ca, |w| cas_table(w, std::slice::from_ref(&ca)))?;
            }
            CaCommand::List => {
                let cas = svc.list_cas().await?;
                out.emit(&cas, |w| cas_table(w, &cas))?;
            }
            CaCommand::Remove { name, reason } => {
                let ca = svc.list_cas().await?.into_iter().find(|ca| ca.name == name);
                svc.remove_ca(who, &name, &reason.reason).await?;
                match ca {
                    Some(ca) => out.emit(&ca, |w| writeln!(w, "CA {} removed", ca.name))?,
                    None => out.emit(&name, |w| writeln!(w, "CA {name} removed"))?,
                }
            }
        },
        Command::Revoke(c) => {
            let (revocation, reason) = match c {
                RevokeCommand::KeyId { id, ca, reason } => {
                    (Revocation::KeyId { ca, key_id: id }, reason)
                }
                RevokeCommand::Serial { range, ca, reason } => {
                    let (lo, hi) = parse_serials(&range)?;
                    (Revocation::Serial { ca, lo, hi }, reason)
                }
                RevokeCommand::Key { file, reason } => (
                    Revocation::Key {
                        public_key: read_one_key(&file)?,
                    },
                    reason,
                ),
                RevokeCommand::Sha256 {
                    fingerprint,
                    reason,
                } => (Revocation::Sha256 { fingerprint }, reason),
                RevokeCommand::List => {
                    let records = svc.list_revocations().await?;
                    out.emit(&records, |w| revocations_table(w, &records))?;
                    return Ok(ExitCode::SUCCESS);
                }
                RevokeCommand::Remove { id, reason } => {
                    let record = svc
                        .list_revocations()
                        .await?
                        .into_iter()
                        .find(|r| r.id == id);
                    svc.unrevoke(who, id, &reason.reason).await?;
                    match record {
                        Some(r) => out.emit(&r, |w| writeln!(w, "revocation {id} removed"))?,
                        None => out.emit(&id, |w| writeln!(w, "revocation {id} removed"))?,
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            };
            let record = svc.revoke(who, revocation, &reason.reason).await?;
            out.emit(&record, |w| {
                revocations_table(w, std::slice::from_ref(&record))
            })?;
        }
        Command::Token(_) | Command::Signoff(_) | Command::Cert(_) => {
            unreachable!("join tokens, sign-offs and certificates are handled in run()")
        }
        Command::ApiToken(c) => match c {
            TokenCommand::Create {
                name,
                scopes,
                ttl,
                reason,
            } => {
                let expires_at = match ttl {
                    Some(ttl) => {
                        let ttl = config::parse_duration(&ttl)
                            .map_err(|e| CliError::Usage(format!("--ttl: {e}")))?;
                        let secs = i64::try_from(ttl.as_secs())
                            .map_err(|_| CliError::Usage("--ttl: too long".into()))?;
                        Some(svc.now().saturating_add(secs))
                    }
                    None => None,
                };
                let scopes: Vec<Scope> = scopes.into_iter().map(Scope::from).collect();
                let token = svc
                    .create_token(who, &name, &scopes, expires_at, &reason.reason)
                    .await?;
                out.emit(&token, |w| {
                    writeln!(
                        w,
                        "token {} created (id {}); its secret is shown only this once:",
                        token.info.name, token.info.id
                    )?;
                    writeln!(w)?;
                    writeln!(w, "    {}", token.secret)?;
                    writeln!(w)?;
                    tokens_table(w, std::slice::from_ref(&token.info))
                })?;
            }
            TokenCommand::List => {
                let tokens = svc.list_tokens().await?;
                out.emit(&tokens, |w| tokens_table(w, &tokens))?;
            }
            TokenCommand::Revoke { id, reason } => {
                svc.revoke_token(who, id, &reason.reason).await?;
                let token = svc.list_tokens().await?.into_iter().find(|t| t.id == id);
                match token {
                    Some(t) => {
                        out.emit(&t, |w| writeln!(w, "token {} ({}) revoked", t.id, t.name))?
                    }
                    None => out.emit(&id, |w| writeln!(w, "token {id} revoked"))?,
                }
            }
        },
        Command::Operator(c) => operator_command(svc, who, c, out).await?,
        Command::Audit(c) => match c {
            AuditCommand::Verify { witness } => {
                let v = match witness {
                    None => svc.verify_audit().await?,
                    Some(path) => {
                        let text = std::fs::read_to_string(&path).map_err(|source| {
                            CliError::ReadFile {
                                path: path.clone(),
                                source,
                            }
                        })?;
                        let heads = signoff_control_plane::audit::parse_witness(&text).map_err(|e| {
                            CliError::Usage(format!(
                                "witness file {}: {e}; write one head a line as `signoff-agent status` shows it",
                                path.display()
                            ))
                        })?;
                        svc.verify_audit_witnessed(&heads).await?
                    }
                };
                out.emit(&v, |w| match &v.broken {
                    None => writeln!(w, "audit log intact: {} rows", v.rows),
                    Some(b) => writeln!(
                        w,
                        "audit log BROKEN at row {}: {} ({} rows before it verified)",
                        b.seq, b.problem, v.rows
                    ),
                })?;
                if v.broken.is_some() {
                    return Ok(ExitCode::FAILURE);
                }
            }
            AuditCommand::List {
                filter,
                limit,
                before,
            } => {
                let records = svc.audit_log(&filter, before, limit).await?;
                out.emit(&records, |w| {
                    let mut t = Table::new(["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "REASON"]);
                    for r in &records {
                        t.row([
                            r.seq.to_string(),
                            time_text(r.at),
                            r.actor.clone(),
                            r.action.clone(),
                            r.target.clone(),
                            r.reason.clone(),
                        ]);
                    }
                    t.write(w)
                })?;
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Where results go: JSON or human text.
struct Output<'a> {
    json: bool,
    w: io::StdoutLock<'a>,
}

impl Output<'_> {
    fn emit<T: Serialize>(
        &mut self,
        value: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), CliError> {
        if self.json {
            serde_json::to_writer_pretty(&mut self.w, value).map_err(io::Error::from)?;
            writeln!(self.w)?;
        } else {
            human(&mut self.w)?;
        }
        self.w.flush()?;
        Ok(())
    }
}

/// A table whose columns are as wide as their widest cell, two spaces apart.
struct Table<const N: usize> {
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    fn new(header: [&str; N]) -> Self {
        Table {
            rows: vec![header.map(str::to_owned)],
        }
    }

    fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }

    fn write(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut widths = [0usize; N];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == N {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            writeln!(w, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

fn time_text(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn opt_time(t: Option<i64>) -> String {
    t.map(time_text).unwrap_or_else(|| "-".to_owned())
}

fn status_text(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Active => "active",
        UserStatus::Disabled => "disabled",
    }
}

fn users_table(w: &mut dyn Write, users: &[User]) -> io::Result<()> {
    let mut t = Table::new(["NAME", "STATUS", "KEY IDS", "PRINCIPALS", "KEYS"]);
    for u in users {
        t.row([
            u.name.clone(),
            status_text(u.status).to_owned(),
            or_dash(u.key_ids.join(", ")),
            or_dash(u.principals.join(",")),
            u.public_keys.len().to_string(),
        ]);
    }
    t.write(w)
}

fn user_details(w: &mut dyn Write, u: &User) -> io::Result<()> {
    let field = |w: &mut dyn Write, label: &str, values: &[String]| -> io::Result<()> {
        if values.is_empty() {
            return writeln!(w, "{label:<12} -");
        }
        for (i, v) in values.iter().enumerate() {
            writeln!(w, "{:<12} {v}", if i == 0 { label } else { "" })?;
        }
        Ok(())
    };
    writeln!(w, "{:<12} {}", "name:", u.name)?;
    writeln!(w, "{:<12} {}", "status:", status_text(u.status))?;
    writeln!(w, "{:<12} {}", "created:", time_text(u.created_at))?;
    field(w, "key ids:", &u.key_ids)?;
    field(w, "principals:", &u.principals)?;
    field(w, "keys:", &u.public_keys)
}

fn hosts_table(w: &mut dyn Write, hosts: &[Host]) -> io::Result<()> {
    let mut t = Table::new(["ID", "HOSTNAME", "GROUPS", "ACKED", "LAST CONTACT"]);
    for h in hosts {
        t.row([
            h.id.clone(),
            h.hostname.clone(),
            or_dash(h.groups.join(",")),
            h.acked_revision.to_string(),
            opt_time(h.last_contact),
        ]);
    }
    t.write(w)
}

fn grants_table(w: &mut dyn Write, grants: &[Grant]) -> io::Result<()> {
    let mut t = Table::new(["ID", "USER", "ACCOUNT", "GROUP", "UNTIL"]);
    for g in grants {
        t.row([
            g.id.to_string(),
            g.user.clone(),
            g.account.clone(),
            g.group.clone(),
            opt_time(g.not_after),
        ]);
    }
    t.write(w)
}

fn cas_table(w: &mut dyn Write, cas: &[TrustedCa]) -> io::Result<()> {
    let mut t = Table::new(["NAME", "FINGERPRINT"]);
    for ca in cas {
        t.row([ca.name.clone(), ca.fingerprint.clone()]);
    }
    t.write(w)
}

fn revocations_table(w: &mut dyn Write, records: &[RevocationRecord]) -> io::Result<()> {
    let mut t = Table::new(["ID", "KIND", "WHAT", "CA", "REVISION", "REASON"]);
    for r in records {
        let (kind, what, ca) = match &r.revocation {
            Revocation::KeyId { ca, key_id } => (
                "key-id",
                key_id.clone(),
                ca.clone().unwrap_or_else(|| "any".to_owned()),
            ),
            Revocation::Serial { ca, lo, hi } if lo == hi => ("serial", lo.to_string(), ca.clone()),
            Revocation::Serial { ca, lo, hi } => ("serial", format!("{lo}-{hi}"), ca.clone()),
            Revocation::Key { public_key } => ("key", public_key.clone(), "-".to_owned()),
            Revocation::Sha256 { fingerprint } => ("sha256", fingerprint.clone(), "-".to_owned()),
        };
        t.row([
            r.id.to_string(),
            kind.to_owned(),
            what,
            ca,
            r.revision.to_string(),
            or_dash(r.reason.clone()),
        ]);
    }
    t.write(w)
}

/// `operator …`.
async fn operator_command(
    svc: &Service,
    who: &Actor,
    command: OperatorCommand,
    out: &mut Output<'_>,
) -> Result<(), CliError> {
    let created = |w: &mut dyn Write, op: &NewOperator, what: &str| {
        writeln!(
            w,
            "operator {} ({}) {what}; the password is shown only this once:",
            op.account.name,
            op.account.role.as_str()
        )?;
        writeln!(w)?;
        writeln!(w, "    {}", op.password)?;
        writeln!(w)
    };
    match command {
        OperatorCommand::Create { name, role, reason } => {
            let op = svc
                .create_operator(who, &name, role, &reason.reason)
                .await?;
            out.emit(&op, |w| created(w, &op, "created"))?;
        }
        OperatorCommand::List => {
            let ops = svc.list_operators().await?;
            out.emit(&ops, |w| operators_table(w, &ops))?;
        }
        OperatorCommand::SetRole { name, role, reason } => {
            let op = svc
                .set_operator_role(who, &name, role, &reason.reason)
                .await?;
            out.emit(&op, |w| operators_table(w, std::slice::from_ref(&op)))?;
        }
        OperatorCommand::Disable { name, reason } => {
            let op = svc.disable_operator(who, &name, &reason.reason).await?;
            out.emit(&op, |w| operators_table(w, std::slice::from_ref(&op)))?;
        }
        OperatorCommand::ResetPassword { name, reason } => {
            let op = svc
                .reset_operator_password(who, &name, &reason.reason)
                .await?;
            out.emit(&op, |w| created(w, &op, "has a new password"))?;
        }
    }
    Ok(())
}

fn operators_table(w: &mut dyn Write, ops: &[OperatorAccount]) -> io::Result<()> {
    let mut t = Table::new(["NAME", "ROLE", "CREATED", "DISABLED"]);
    for o in ops {
        t.row([
            o.name.clone(),
            o.role.as_str().to_owned(),
            time_text(o.created_at),
            opt_time(o.disabled_at),
        ]);
    }
    t.write(w)
}

fn tokens_table(w: &mut dyn Write, tokens: &[TokenInfo]) -> io::Result<()> {
    let mut t = Table::new(["ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "REVOKED"]);
    for tok in tokens {
        let scopes: Vec<&str> = tok.scopes.iter().map(|s| s.as_str()).collect();
        t.row([
            tok.id.to_string(),
            tok.name.clone(),
            scopes.join(","),
            time_text(tok.created_at),
            opt_time(tok.expires_at),
            opt_time(tok.revoked_at),
        ]);
    }
    t.write(w)
}

/// The public keys in a file: every line that is not empty or a `#` comment.
fn read_keys(path: &Path) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err(CliError::Usage(format!(
            "{} holds no public key",
            path.display()
        )));
    }
    Ok(keys)
}

fn read_one_key(path: &Path) -> Result<String, CliError> {
    let mut keys = read_keys(path)?;
    if keys.len() > 1 {
        return Err(CliError::Usage(format!(
            "{} holds {} keys; give a file with exactly one",
            path.display(),
            keys.len()
        )));
    }
    Ok(keys.remove(0))
}

/// RFC 3339 or Unix seconds.
fn parse_time(s: &str) -> Result<i64, CliError> {
    if let Ok(unix) = s.parse::<i64>() {
        return Ok(unix);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            CliError::Usage(format!(
                "--until: {s:?} is not a time (expected RFC 3339 like 2026-12-31T18:00:00Z, or Unix seconds)"
            ))
        })
}

/// `N` or `N-M`.
fn parse_serials(s: &str) -> Result<(u64, u64), CliError> {
    let bad = || {
        CliError::Usage(format!(
            "{s:?} is not a serial or a range (expected N or N-M, e.g. 42 or 100-199)"
        ))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (lo, hi),
        None => (s, s),
    };
    let lo = lo.trim().parse::<u64>().map_err(|_| bad())?;
    let hi = hi.trim().parse::<u64>().map_err(|_| bad())?;
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(["ID", "NAME", "NOTE"]);
        t.row(["1".into(), "alice".into(), "x".into()]);
        t.row(["10".into(), "bo".into(), String::new()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID  NAME   NOTE\n1   alice  x\n10  bo\n"
        );
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1800000000").unwrap(), 1_800_000_000);
        assert_eq!(parse_time("2027-01-15T08:00:00Z").unwrap(), 1_800_000_000);
        assert_eq!(
            parse_time("2027-01-15T09:00:00+01:00").unwrap(),
            1_800_000_000
        );
        assert_eq!(time_text(1_800_000_000), "2027-01-15T08:00:00Z");
        let e = parse_time("tomorrow").unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }

    #[test]
    fn serials() {
        assert_eq!(parse_serials("42").unwrap(), (42, 42));
        assert_eq!(parse_serials("100-199").unwrap(), (100, 199));
        for bad in ["", "a", "1-", "-5", "1-2-3", "0x10"] {
            assert!(parse_serials(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_files() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("k.pub");
        std::fs::write(&f, "# comment\n\nssh-ed25519 AAAA a\nssh-ed25519 BBBB b\n").unwrap();
        assert_eq!(read_keys(&f).unwrap().len(), 2);
        assert!(
            read_one_key(&f)
                .unwrap_err()
                .to_string()
                .contains("holds 2 keys")
        );
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(
            read_keys(&f)
                .unwrap_err()
                .to_string()
                .contains("holds no public key")
        );
        assert!(matches!(
            read_keys(&tmp.path().join("missing.pub")),
            Err(CliError::ReadFile { .. })
        ));
    }
}
