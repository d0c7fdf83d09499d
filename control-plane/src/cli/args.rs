//! The command line's clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use signoff_control_plane::service::{Role, Scope};

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
    /// The host CA, which certifies hosts' SSH host keys.
    #[command(subcommand)]
    HostCa(HostCaCommand),
    /// The admin commands, each on the store in this process.
    #[command(flatten)]
    Admin(AdminCommand),
}

/// `host-ca …` (reads the data directory only, not the store).
#[derive(Debug, Subcommand)]
pub enum HostCaCommand {
    /// Print the one known_hosts line that makes `ssh` trust every host the host CA
    /// certified (`@cert-authority PATTERN KEY`).
    KnownHosts {
        /// Which host names the line covers (known_hosts patterns, comma-separated).
        #[arg(long, default_value = "*")]
        hosts: String,
    },
}

/// The commands that operate on the store (everything but `serve` and `host-ca`).
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
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

/// A token scope on the command line: the names the API uses ([`Scope::as_str`]).
fn scope_arg() -> impl clap::builder::TypedValueParser<Value = Scope> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Scope::ALL.map(Scope::as_str))
        .try_map(|s| Scope::parse(&s).ok_or("unknown scope"))
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
        /// What it may do (repeatable or comma-separated): read; write (people, hosts,
        /// grants, CAs, revocations); signoff (sign off, re-enable, kill sessions); admin
        /// (API tokens); krl (download the KRL); issue (certificates); scim (SCIM only).
        #[arg(long = "scope", value_parser = scope_arg(), value_delimiter = ',', required = true)]
        scopes: Vec<Scope>,
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
