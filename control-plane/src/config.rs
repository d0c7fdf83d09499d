//! The server's configuration: a TOML file (every key optional), validated whole before
//! anything is bound.
//!
//! ```toml
//! data_dir = "/var/lib/signoff"          # default ./signoff-data
//! database_url = "sqlite:///var/lib/signoff/signoff.db"   # default: signoff.db in data_dir
//! drain_timeout = "10s"                  # how long shutdown waits for in-flight requests
//!
//! [http]
//! listen = "127.0.0.1:8080"
//! trusted_proxies = ["10.0.0.7"]        # whose X-Forwarded-For names the client (login
//!                                        # delays); addresses or networks; default none
//! [http.tls]                             # optional; plain HTTP without it
//! cert = "/etc/signoff/https.crt"        # PEM chain, leaf first
//! key = "/etc/signoff/https.key"         # PEM private key, mode 0600
//!
//! [agents]
//! listen = "127.0.0.1:7443"
//! cert_validity = "24h"                  # lifetime of agent client certificates
//! join_token_ttl = "1h"                  # lifetime of join tokens
//! server_names = ["localhost", "127.0.0.1"]  # names agents reach the listener by
//!
//! [webhook]                              # optional; POST /hooks/hr answers 404 without it
//! secret_file = "/etc/signoff/hr-webhook.secret"  # HMAC key, mode 0600, at least 32 bytes
//!
//! [krl]
//! public = false                         # GET /krl without a token; default: a token
//!                                        # with scope krl is needed
//!
//! [metrics]
//! listen = "127.0.0.1:9100"              # serve /metrics here only; default: on [http]
//!
//! [ca]                                   # signoff's own user CA (certificates for people)
//! key_file = "/etc/signoff/user-ca.key"  # an existing Ed25519 CA key, mode 0600; default:
//!                                        # user-ca.key in data_dir, made on first start
//! backup_public_key = "ssh-ed25519 AAAA… offline backup CA"  # trusted beside it
//! default_ttl = "8h"                     # validity when a request names none
//! max_ttl = "24h"                        # the longest validity issued (at most 24h)
//! ssh_listen = "0.0.0.0:2022"            # issue over SSH (`ssh -p 2022 cert@HOST <
//!                                        # KEY.pub`); default: off
//!
//! [sessions]
//! retention = "90d"                      # ended sessions older than this are deleted
//!
//! [dashboard]                            # the web dashboard at `/`
//! session_idle = "30m"                   # a web session unused this long ends
//! session_max = "12h"                    # and ends this long after login regardless
//! secure_cookies = true                  # default: true with [http.tls]; set it behind a
//!                                        # proxy that terminates TLS
//! ```
//!
//! Durations are a number and a unit (`s`, `m`, `h`, `d`), possibly several: `90s`, `15m`,
//! `1h30m`, `7d`. Relative paths are resolved against the working directory.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[sessions] retention` when the file names none: about a quarter of history.
pub const DEFAULT_SESSION_RETENTION: Duration = Duration::from_secs(90 * 86400);
/// `data_dir` when the file names none.
pub const DEFAULT_DATA_DIR: &str = "./signoff-data";
/// `http.listen` when the file names none.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// `agents.listen` when the file names none.
pub const DEFAULT_AGENTS_LISTEN: &str = "127.0.0.1:7443";
/// `agents.cert_validity` when the file names none.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// `agents.join_token_ttl` when the file names none.
pub const DEFAULT_JOIN_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The shortest HR webhook key accepted, in bytes: 256 bits of hex-encoded randomness is
/// 64; 32 bytes still leaves no room for guessing.
pub const MIN_WEBHOOK_SECRET: usize = 32;
/// `dashboard.session_idle` when the file names none.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// `dashboard.session_max` when the file names none.
pub const DEFAULT_SESSION_MAX: Duration = Duration::from_secs(12 * 3600);
/// `drain_timeout` when the file names none.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration that cannot be used. Displayed as `config FILE: KEY: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config {}: cannot read the file", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML, has an unknown key or a value of the wrong type; toml's
    /// message names the key and the line.
    #[error("config {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value parses but is not acceptable.
    #[error("config {origin}: {key}: {message}")]
    Invalid {
        /// The file, or `(defaults)`.
        origin: String,
        /// The key, dotted (`http.listen`).
        key: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
    /// The HTTPS key file may be read or written by group or others.
    #[error("config {origin}: {key}")]
    Insecure {
        /// The configuration file, or `(defaults)`.
        origin: String,
        /// The key naming the file.
        key: &'static str,
        /// What is wrong with the file and what to do.
        #[source]
        source: Box<crate::bootstrap::BootstrapError>,
    },
    /// A file the configuration names (TLS certificate or key) cannot be used.
    #[error("config {origin}: {key}: {message}")]
    File {
        /// The configuration file, or `(defaults)`.
        origin: String,
        /// The key naming the file.
        key: &'static str,
        /// What is wrong with the file and what to do.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The file as written: every key optional.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_timeout: Option<String>,
    #[serde(default)]
    http: HttpFile,
    #[serde(default)]
    agents: AgentsFile,
    #[serde(default, skip_serializing_if = "WebhookFile::is_empty")]
    webhook: WebhookFile,
    #[serde(default)]
    dashboard: DashboardFile,
    #[serde(default)]
    krl: KrlFile,
    #[serde(default, skip_serializing_if = "MetricsFile::is_empty")]
    metrics: MetricsFile,
    #[serde(default)]
    ca: CaFile,
    #[serde(default)]
    sessions: SessionsFile,
    #[serde(default)]
    alerts: crate::alerts::AlertRules,
    #[serde(default)]
    delivery: crate::delivery::DeliveryConfig,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SessionsFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    retention: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CaFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh_listen: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct KrlFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    public: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
}

impl MetricsFile {
    fn is_empty(&self) -> bool {
        self.listen.is_none()
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DashboardFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    session_idle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_max: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secure_cookies: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_file: Option<PathBuf>,
}

impl WebhookFile {
    fn is_empty(&self) -> bool {
        self.secret_file.is_none()
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_proxies: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsFiles>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AgentsFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_validity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    join_token_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_names: Option<Vec<String>>,
}

/// signoff's own user CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaConfig {
    /// An existing CA key to load instead of `user-ca.key` in the data directory.
    pub key_file: Option<PathBuf>,
    /// An offline backup CA's public key (one OpenSSH line), trusted beside the CA.
    pub backup_public_key: Option<String>,
    /// Validity when a request names none.
    pub default_ttl: Duration,
    /// The longest validity issued.
    pub max_ttl: Duration,
    /// Where people get certificates over SSH (`[ca] ssh_listen`); off when `None`.
    pub ssh_listen: Option<SocketAddr>,
}

impl CaConfig {
    /// The validity policy, in seconds.
    pub fn policy(&self) -> crate::service::CertPolicy {
        crate::service::CertPolicy {
            default_ttl: self.default_ttl.as_secs(),
            max_ttl: self.max_ttl.as_secs(),
        }
    }
}

/// `[ca] default_ttl` when the file names none.
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(8 * 3600);
/// `[ca] max_ttl` when the file names none, and the most it may be.
pub const MAX_CA_TTL: Duration = Duration::from_secs(24 * 3600);

/// The HTTPS certificate chain and key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1); readable by the server's user only.
    pub key: PathBuf,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from; `None` for the defaults.
    pub source: Option<PathBuf>,
    /// Where the store, the agent CA and the order-signing key live (absolute).
    pub data_dir: PathBuf,
    /// The store.
    pub database_url: DatabaseUrl,
    /// How long shutdown waits for in-flight requests before closing them.
    pub drain_timeout: Duration,
    /// The HTTP listener (API, metrics, KRL, dashboard).
    pub http: HttpConfig,
    /// The agent gRPC listener and agent credentials.
    pub agents: AgentsConfig,
    /// The HR webhook's HMAC key file; the webhook is off without it.
    pub webhook_secret_file: Option<PathBuf>,
    /// `[dashboard]`.
    pub dashboard: DashboardSettings,
    /// `GET /krl` without a token (`[krl] public`); off by default.
    pub krl_public: bool,
    /// `/metrics` on its own listener (`[metrics] listen`); on the HTTP listener if `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// `[ca]`: signoff's own user CA.
    pub ca: CaConfig,
    /// `[sessions] retention`: an ended session is deleted this long after it ended.
    pub session_retention: Duration,
    /// `[alerts]`: which rules raise alerts, with their thresholds (see [`crate::alerts`]).
    pub alerts: crate::alerts::AlertRules,
    /// `[delivery]`: where events are pushed (webhook, syslog).
    pub delivery: crate::delivery::DeliveryConfig,
}

/// `[dashboard]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSettings {
    /// A web session unused this long ends.
    pub session_idle: Duration,
    /// A web session ends this long after login, however active.
    pub session_max: Duration,
    /// Cookies are `Secure` (true by default when `[http.tls]` is set).
    pub secure_cookies: bool,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// HTTPS files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<signoff_dashboard::IpNet>,
}

/// `[agents]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentsConfig {
    /// Address of the agent gRPC listener (mTLS).
    pub listen: SocketAddr,
    /// Lifetime of the client certificates the agent CA issues.
    pub cert_validity: Duration,
    /// Lifetime of join tokens.
    pub join_token_ttl: Duration,
    /// DNS names and IP addresses in the agent listener's certificate: what agents'
    /// `--server` URLs may name.
    pub server_names: Vec<String>,
}

/// A database URL; `Debug` and `Display` hide its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included, for opening the store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _secret)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

impl Config {
    /// Reads and validates `path`, or the defaults when `path` is `None`. Files named
    /// by the configuration are checked by [`Config::tls_server_config`].
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Config::from_toml("", None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, Some(path))
    }

    /// Validates configuration text; `path` only names it in errors.
    pub fn from_toml(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.map(Path::to_owned).unwrap_or_default(),
            source: Box::new(source),
        })?;
        let k = Keys {
            origin: origin(path),
        };
        let (data_dir, database_url) = k.store(file.data_dir, file.database_url)?;
        let http = k.http(file.http)?;
        let agents = k.agents(file.agents)?;
        if http.listen == agents.listen && http.listen.port() != 0 {
            return Err(k.invalid(
                "agents.listen",
                format!(
                    "{} is also http.listen; give each its own port",
                    agents.listen
                ),
            ));
        }
        let drain_timeout = k.duration(
            "drain_timeout",
            file.drain_timeout,
            DEFAULT_DRAIN_TIMEOUT,
            (Duration::ZERO, Duration::from_secs(3600)),
        )?;
        let dashboard = k.dashboard(file.dashboard, http.tls.is_some())?;
        let metrics_listen = match file.metrics.listen {
            Some(addr) => Some(k.own_listener(
                "metrics.listen",
                addr,
                "127.0.0.1:9100",
                &[http.listen, agents.listen],
            )?),
            None => None,
        };
        let webhook_secret_file = file
            .webhook
            .secret_file
            .map(|p| k.absolute("webhook.secret_file", &p))
            .transpose()?;
        let mut listeners = vec![http.listen, agents.listen];
        listeners.extend(metrics_listen);
        let ca = k.ca(file.ca, &listeners)?;
        let session_retention = k.duration(
            "sessions.retention",
            file.sessions.retention,
            DEFAULT_SESSION_RETENTION,
            (Duration::from_secs(3600), Duration::from_secs(3660 * 86400)),
        )?;
        Ok(Config {
            source: path.map(Path::to_owned),
            ca,
            data_dir,
            database_url: DatabaseUrl(database_url),
            drain_timeout,
            http,
            agents,
            webhook_secret_file,
            dashboard,
            krl_public: file.krl.public.unwrap_or(false),
            metrics_listen,
            session_retention,
            alerts: {
                let alerts = file.alerts;
                alerts
                    .check()
                    .map_err(|(key, message)| k.invalid(key, message))?;
                alerts
            },
            delivery: {
                let delivery = file.delivery;
                delivery
                    .check()
                    .map_err(|(key, message)| k.invalid(key, message))?;
                delivery
            },
        })
    }

    /// The resolved configuration as TOML, every key present, the database password
    /// replaced by `***`. It is itself a valid configuration file.
    pub fn to_toml(&self) -> String {
        let file = File {
            data_dir: Some(self.data_dir.clone()),
            database_url: Some(self.database_url.to_string()),
            drain_timeout: Some(format_duration(self.drain_timeout)),
            http: HttpFile {
                listen: Some(self.http.listen.to_string()),
                trusted_proxies: Some(
                    self.http
                        .trusted_proxies
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                ),
                tls: self.http.tls.clone(),
            },
            agents: AgentsFile {
                listen: Some(self.agents.listen.to_string()),
                cert_validity: Some(format_duration(self.agents.cert_validity)),
                join_token_ttl: Some(format_duration(self.agents.join_token_ttl)),
                server_names: Some(self.agents.server_names.clone()),
            },
            webhook: WebhookFile {
                secret_file: self.webhook_secret_file.clone(),
            },
            dashboard: DashboardFile {
                session_idle: Some(format_duration(self.dashboard.session_idle)),
                session_max: Some(format_duration(self.dashboard.session_max)),
                secure_cookies: Some(self.dashboard.secure_cookies),
            },
            krl: KrlFile {
                public: Some(self.krl_public),
            },
            metrics: MetricsFile {
                listen: self.metrics_listen.map(|a| a.to_string()),
            },
            sessions: SessionsFile {
                retention: Some(format_duration(self.session_retention)),
            },
            alerts: self.alerts.clone(),
            delivery: self.delivery.clone(),
            ca: CaFile {
                key_file: self.ca.key_file.clone(),
                backup_public_key: self.ca.backup_public_key.clone(),
                default_ttl: Some(format_duration(self.ca.default_ttl)),
                max_ttl: Some(format_duration(self.ca.max_ttl)),
                ssh_listen: self.ca.ssh_listen.map(|a| a.to_string()),
            },
        };
        // Only strings and tables of strings: serialization cannot fail.
        toml::to_string(&file).unwrap_or_default()
    }

    /// Reads the HR webhook's HMAC key, if configured. Refuses a file that group or others
    /// may read or write, and a key shorter than [`MIN_WEBHOOK_SECRET`] bytes (surrounding
    /// whitespace, such as the newline an editor adds, is not part of it).
    pub fn webhook_secret(&self) -> Result<Option<crate::hooks::WebhookSecret>, ConfigError> {
        let Some(path) = &self.webhook_secret_file else {
            return Ok(None);
        };
        let origin = self.origin();
        crate::bootstrap::check_private_file(path).map_err(|e| ConfigError::Insecure {
            origin: origin.clone(),
            key: "webhook.secret_file",
            source: Box::new(e),
        })?;
        let bytes = std::fs::read(path).map_err(|e| ConfigError::File {
            origin: origin.clone(),
            key: "webhook.secret_file",
            message: format!("cannot read {}", path.display()),
            source: Some(Box::new(e)),
        })?;
        let secret = bytes.trim_ascii();
        if secret.len() < MIN_WEBHOOK_SECRET {
            return Err(ConfigError::File {
                origin,
                key: "webhook.secret_file",
                message: format!(
                    "{} holds {} bytes; use at least {MIN_WEBHOOK_SECRET} random bytes \
                     (e.g. `openssl rand -hex 32 > FILE`)",
                    path.display(),
                    secret.len()
                ),
                source: None,
            });
        }
        Ok(Some(crate::hooks::WebhookSecret::new(secret.to_vec())))
    }

    /// How errors name this configuration: its file, or `(defaults)`.
    pub fn origin(&self) -> String {
        origin(self.source.as_deref())
    }

    /// Loads the HTTPS certificate and key, if configured, into a rustls server
    /// configuration. Refuses a key file that group or others may read or write.
    pub fn tls_server_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
        let Some(tls) = &self.http.tls else {
            return Ok(None);
        };
        tls_server_config(&self.origin(), tls).map(Some)
    }
}

fn origin(path: Option<&Path>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "(defaults)".to_owned(),
    }
}

/// Validates the keys of one configuration file: each error names the file and the key.
struct Keys {
    origin: String,
}

impl Keys {
    fn invalid(&self, key: &'static str, message: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.clone(),
            key,
            message,
        }
    }

    /// An `IP:PORT`, `default` when unset.
    fn listen(
        &self,
        key: &'static str,
        value: Option<String>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let value = value.unwrap_or_else(|| default.to_owned());
        value.parse::<SocketAddr>().map_err(|_| {
            self.invalid(
                key,
                format!("{value:?} is not an address (expected IP:PORT, e.g. \"{default}\")"),
            )
        })
    }

    /// An optional listener's address, which must not be one of `others`.
    fn own_listener(
        &self,
        key: &'static str,
        value: String,
        example: &str,
        others: &[SocketAddr],
    ) -> Result<SocketAddr, ConfigError> {
        let addr = self.listen(key, Some(value), example)?;
        if addr.port() != 0 && others.contains(&addr) {
            return Err(self.invalid(
                key,
                format!("{addr} is also another listener's; give it its own port"),
            ));
        }
        Ok(addr)
    }

    /// A duration (`default` when unset) within `(min, max)`.
    fn duration(
        &self,
        key: &'static str,
        value: Option<String>,
        default: Duration,
        (min, max): (Duration, Duration),
    ) -> Result<Duration, ConfigError> {
        let value = match value {
            None => default,
            Some(v) => parse_duration(&v).map_err(|e| self.invalid(key, e.to_string()))?,
        };
        if value < min || value > max {
            return Err(self.invalid(
                key,
                format!(
                    "{} is out of range (allowed {} to {})",
                    format_duration(value),
                    format_duration(min),
                    format_duration(max)
                ),
            ));
        }
        Ok(value)
    }

    /// A file's path, made absolute.
    fn absolute(&self, key: &'static str, path: &Path) -> Result<PathBuf, ConfigError> {
        if path.as_os_str().is_empty() {
            return Err(self.invalid(key, "is empty; name a PEM file".to_owned()));
        }
        std::path::absolute(path)
            .map_err(|e| self.invalid(key, format!("cannot resolve {}: {e}", path.display())))
    }

    /// `data_dir` (absolute) and `database_url` (SQLite in it by default).
    fn store(
        &self,
        data_dir: Option<PathBuf>,
        database_url: Option<String>,
    ) -> Result<(PathBuf, String), ConfigError> {
        let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(self.invalid("data_dir", "is empty; name a directory".to_owned()));
        }
        let data_dir = std::path::absolute(&data_dir).map_err(|e| {
            self.invalid(
                "data_dir",
                format!("cannot resolve {:?}: {e}", data_dir.display().to_string()),
            )
        })?;
        let database_url = match database_url {
            Some(url) => {
                if crate::store::Backend::of_url(&url).is_none() {
                    return Err(self.invalid(
                        "database_url",
                        format!(
                            "{:?} is not supported: SQLite (\"sqlite://PATH\") or PostgreSQL \
                             (\"postgres://USER@HOST/DATABASE\")",
                            redact_url(&url)
                        ),
                    ));
                }
                url
            }
            None => crate::store::default_url(&data_dir),
        };
        Ok((data_dir, database_url))
    }

    /// `[http]`.
    fn http(&self, f: HttpFile) -> Result<HttpConfig, ConfigError> {
        let listen = self.listen("http.listen", f.listen, DEFAULT_HTTP_LISTEN)?;
        let tls = match f.tls {
            Some(tls) => Some(TlsFiles {
                cert: self.absolute("http.tls.cert", &tls.cert)?,
                key: self.absolute("http.tls.key", &tls.key)?,
            }),
            None => None,
        };
        let trusted_proxies = f
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<signoff_dashboard::IpNet>, _>>()
            .map_err(|e| self.invalid("http.trusted_proxies", e.to_string()))?;
        Ok(HttpConfig {
            listen,
            tls,
            trusted_proxies,
        })
    }

    /// `[agents]`.
    fn agents(&self, f: AgentsFile) -> Result<AgentsConfig, ConfigError> {
        let listen = self.listen("agents.listen", f.listen, DEFAULT_AGENTS_LISTEN)?;
        let cert_validity = self.duration(
            "agents.cert_validity",
            f.cert_validity,
            DEFAULT_CERT_VALIDITY,
            (
                Duration::from_secs(5 * 60),
                Duration::from_secs(366 * 86400),
            ),
        )?;
        let join_token_ttl = self.duration(
            "agents.join_token_ttl",
            f.join_token_ttl,
            DEFAULT_JOIN_TOKEN_TTL,
            (Duration::from_secs(60), Duration::from_secs(366 * 86400)),
        )?;
        let server_names = f
            .server_names
            .unwrap_or_else(|| vec!["localhost".to_owned(), "127.0.0.1".to_owned()]);
        if server_names.is_empty() || server_names.len() > 64 {
            return Err(self.invalid("agents.server_names", "give 1 to 64 names".to_owned()));
        }
        for name in &server_names {
            if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                return Err(self.invalid(
                    "agents.server_names",
                    format!("{name:?} is not a DNS name or IP address"),
                ));
            }
        }
        Ok(AgentsConfig {
            listen,
            cert_validity,
            join_token_ttl,
            server_names,
        })
    }

    /// `[dashboard]`; cookies are `Secure` by default when the server serves HTTPS.
    fn dashboard(&self, f: DashboardFile, https: bool) -> Result<DashboardSettings, ConfigError> {
        let session_idle = self.duration(
            "dashboard.session_idle",
            f.session_idle,
            DEFAULT_SESSION_IDLE,
            (Duration::from_secs(60), Duration::from_secs(7 * 86400)),
        )?;
        let session_max = self.duration(
            "dashboard.session_max",
            f.session_max,
            DEFAULT_SESSION_MAX,
            (session_idle, Duration::from_secs(30 * 86400)),
        )?;
        Ok(DashboardSettings {
            session_idle,
            session_max,
            secure_cookies: f.secure_cookies.unwrap_or(https),
        })
    }

    /// `[ca]`; its SSH listener must not be one of `listeners`.
    fn ca(&self, f: CaFile, listeners: &[SocketAddr]) -> Result<CaConfig, ConfigError> {
        let max_ttl = self.duration(
            "ca.max_ttl",
            f.max_ttl,
            MAX_CA_TTL,
            (Duration::from_secs(60), MAX_CA_TTL),
        )?;
        let default_ttl = self.duration(
            "ca.default_ttl",
            f.default_ttl,
            DEFAULT_CA_TTL.min(max_ttl),
            (Duration::from_secs(60), max_ttl),
        )?;
        let key_file = f
            .key_file
            .map(|p| self.absolute("ca.key_file", &p))
            .transpose()?;
        let backup_public_key = match f.backup_public_key {
            Some(line) => Some(
                crate::model::parse_public_key("ca.backup_public_key", &line)
                    .map_err(|e| self.invalid("ca.backup_public_key", e.message))?
                    .openssh,
            ),
            None => None,
        };
        let ssh_listen = f
            .ssh_listen
            .map(|addr| self.own_listener("ca.ssh_listen", addr, "0.0.0.0:2022", listeners))
            .transpose()?;
        Ok(CaConfig {
            key_file,
            backup_public_key,
            default_ttl,
            max_ttl,
            ssh_listen,
        })
    }
}

fn tls_server_config(
    origin: &str,
    files: &TlsFiles,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let file_error =
        |key: &'static str,
         message: String,
         source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            ConfigError::File {
                origin: origin.to_owned(),
                key,
                message,
                source,
            }
        };
    let read = |key: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| {
            file_error(
                key,
                format!("cannot read {}", path.display()),
                Some(Box::new(e)),
            )
        })
    };

    crate::bootstrap::check_private_file(&files.key).map_err(|e| ConfigError::Insecure {
        origin: origin.to_owned(),
        key: "http.tls.key",
        source: Box::new(e),
    })?;
    let cert_pem = read("http.tls.cert", &files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            file_error(
                "http.tls.cert",
                format!("{} is not a PEM certificate chain", files.cert.display()),
                Some(Box::new(e)),
            )
        })?;
    if chain.is_empty() {
        return Err(file_error(
            "http.tls.cert",
            format!(
                "{} holds no \"BEGIN CERTIFICATE\" block",
                files.cert.display()
            ),
            None,
        ));
    }
    let key_pem = read("http.tls.key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        file_error(
            "http.tls.key",
            format!(
                "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                files.key.display()
            ),
            Some(Box::new(e)),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            file_error(
                "http.tls",
                "no usable TLS versions".to_owned(),
                Some(Box::new(e)),
            )
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            file_error(
                "http.tls.key",
                format!(
                    "{} does not go with the certificate in {}",
                    files.key.display(),
                    files.cert.display()
                ),
                Some(Box::new(e)),
            )
        })?;
    // HTTP/2 where the browser offers it: a browser opens at most six HTTP/1.1
    // connections to one server, and every dashboard tab holds one for its live stream.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The one duration grammar of signoff's configuration files (see
/// [`signoff_core::duration`]).
pub use signoff_core::duration::{BadDuration, format as format_duration, parse as parse_duration};

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text, Some(Path::new("/etc/signoff/server.toml")))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults() {
        let c = Config::load(None).unwrap();
        assert!(c.data_dir.is_absolute() && c.data_dir.ends_with("signoff-data"));
        assert_eq!(
            c.database_url.expose(),
            format!("sqlite://{}", c.data_dir.join("signoff.db").display())
        );
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.agents.listen.to_string(), "127.0.0.1:7443");
        assert_eq!(c.agents.cert_validity, Duration::from_secs(86400));
        assert_eq!(c.agents.join_token_ttl, Duration::from_secs(3600));
        assert_eq!(c.drain_timeout, Duration::from_secs(10));
        assert_eq!(c.http.tls, None);
        assert!(
            !c.krl_public,
            "the KRL names who was revoked: not public by default"
        );
        assert_eq!(c.metrics_listen, None);
        assert!(c.http.trusted_proxies.is_empty());
    }

    #[test]
    fn krl_metrics_and_proxies() {
        let c = Config::from_toml(
            "[http]\ntrusted_proxies = [\"10.0.0.7\", \"fd00::/8\"]\n\
             [krl]\npublic = true\n[metrics]\nlisten = \"127.0.0.1:9100\"\n",
            None,
        )
        .unwrap();
        assert!(c.krl_public);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(c.http.trusted_proxies.len(), 2);
        let again = Config::from_toml(&c.to_toml(), None).unwrap();
        assert_eq!(again, Config { source: None, ..c });
        let e = err("[http]\ntrusted_proxies = [\"proxy.example\"]\n");
        assert!(
            e.contains("http.trusted_proxies") && e.contains("proxy.example"),
            "{e}"
        );
        let e = err("[metrics]\nlisten = \"127.0.0.1:8080\"\n");
        assert!(e.contains("metrics.listen"), "{e}");
    }

    #[test]
    fn the_certificate_listener_is_off_unless_given_its_own_port() {
        assert_eq!(Config::load(None).unwrap().ca.ssh_listen, None);
        let c = Config::from_toml("[ca]\nssh_listen = \"0.0.0.0:2022\"\n", None).unwrap();
        assert_eq!(c.ca.ssh_listen, Some("0.0.0.0:2022".parse().unwrap()));
        let again = Config::from_toml(&c.to_toml(), None).unwrap();
        assert_eq!(again, Config { source: None, ..c });
        let e = err("[ca]\nssh_listen = \"127.0.0.1:8080\"\n");
        assert!(
            e.contains("ca.ssh_listen") && e.contains("another listener"),
            "{e}"
        );
        let e = err("[ca]\nssh_listen = \"2022\"\n");
        assert!(
            e.contains("ca.ssh_listen") && e.contains("not an address"),
            "{e}"
        );
    }

    #[test]
    fn full_file() {
        let c = Config::from_toml(
            r#"
            data_dir = "/var/lib/signoff"
            drain_timeout = "30s"
            [http]
            listen = "[::1]:8443"
            [http.tls]
            cert = "/etc/signoff/https.crt"
            key = "/etc/signoff/https.key"
            [agents]
            listen = "0.0.0.0:7443"
            cert_validity = "7d"
            join_token_ttl = "15m"
            "#,
            None,
        )
        .unwrap();
        assert_eq!(c.data_dir, Path::new("/var/lib/signoff"));
        assert_eq!(
            c.database_url.expose(),
            "sqlite:///var/lib/signoff/signoff.db"
        );
        assert_eq!(c.http.listen.to_string(), "[::1]:8443");
        assert_eq!(
            c.http.tls.as_ref().unwrap().key,
            Path::new("/etc/signoff/https.key")
        );
        assert_eq!(c.agents.cert_validity, Duration::from_secs(7 * 86400));
        assert_eq!(c.agents.join_token_ttl, Duration::from_secs(900));
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
    }

    #[test]
    fn resolved_toml_reads_back_the_same() {
        let c = Config::from_toml(
            "data_dir = \"/srv/so\"\n[agents]\ncert_validity = \"90m\"\n",
            None,
        )
        .unwrap();
        let text = c.to_toml();
        assert!(text.contains("cert_validity = \"1h30m\""), "{text}");
        assert_eq!(Config::from_toml(&text, None).unwrap(), c);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[http]\nlisten_on = \"x\"\n", Some(Path::new("/c.toml")))
            .unwrap_err();
        let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(chain.starts_with("config /c.toml: "), "{chain}");
        assert!(chain.contains("unknown field `listen_on`"), "{chain}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::from_toml("drain_timeout = 10\n", None).unwrap_err();
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(source.contains("drain_timeout"), "{source}");
    }

    #[test]
    fn bad_address() {
        assert_eq!(
            err("[http]\nlisten = \"localhost:80x\"\n"),
            "config /etc/signoff/server.toml: http.listen: \"localhost:80x\" is not an address (expected IP:PORT, e.g. \"127.0.0.1:8080\")"
        );
        assert!(err("[agents]\nlisten = \"7443\"\n").contains("agents.listen: \"7443\""));
    }

    #[test]
    fn same_port_twice() {
        assert!(
            err("[http]\nlisten = \"127.0.0.1:9000\"\n[agents]\nlisten = \"127.0.0.1:9000\"\n")
                .contains("agents.listen: 127.0.0.1:9000 is also http.listen")
        );
    }

    #[test]
    fn bad_durations() {
        let e = err("[agents]\ncert_validity = \"24 hours\"\n");
        assert!(
            e.contains("agents.cert_validity: \"24 hours\" is not a duration"),
            "{e}"
        );
        let e = err("drain_timeout = \"10\"\n");
        assert!(e.contains("drain_timeout: \"10\" is not a duration"), "{e}");
        let e = err("[agents]\njoin_token_ttl = \"0s\"\n");
        assert!(
            e.contains("agents.join_token_ttl: 0s is out of range (allowed 1m to 366d)"),
            "{e}"
        );
        let e = err("[agents]\ncert_validity = \"400d\"\n");
        assert!(
            e.contains("agents.cert_validity: 400d is out of range"),
            "{e}"
        );
    }

    #[test]
    fn session_retention() {
        assert_eq!(
            Config::load(None).unwrap().session_retention,
            DEFAULT_SESSION_RETENTION
        );
        let c = Config::from_toml("[sessions]\nretention = \"30d\"\n", None).unwrap();
        assert_eq!(c.session_retention, Duration::from_secs(30 * 86400));
        assert!(
            c.to_toml().contains("retention = \"30d\""),
            "{}",
            c.to_toml()
        );
        let e = err("[sessions]\nretention = \"forever\"\n");
        assert!(
            e.contains("sessions.retention: \"forever\" is not a duration"),
            "{e}"
        );
        let e = err("[sessions]\nretention = \"10m\"\n");
        assert!(
            e.contains("sessions.retention: 10m is out of range (allowed 1h to 3660d)"),
            "{e}"
        );
        let e = Config::from_toml("[sessions]\nkeep = \"1d\"\n", None).unwrap_err();
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert!(
            cause
                .as_deref()
                .is_some_and(|c| c.contains("unknown field `keep`")),
            "{e}: {cause:?}"
        );
    }

    #[test]
    fn unsupported_database_is_refused_without_its_password() {
        let e = err("database_url = \"mysql://so:hunter2@db/signoff\"\n");
        assert!(e.contains("database_url: \"mysql://so:***@db/signoff\" is not supported"));
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn a_postgres_url_is_taken_and_shown_without_its_password() {
        for url in [
            "postgres://so:hunter2@db/signoff",
            "postgresql://so:hunter2@db:5433/signoff?sslmode=require",
        ] {
            let c = Config::from_toml(&format!("database_url = \"{url}\"\n"), None).unwrap();
            assert_eq!(c.database_url.expose(), url);
            assert!(
                !c.database_url.to_string().contains("hunter2"),
                "{}",
                c.database_url
            );
        }
    }

    #[test]
    fn empty_paths_are_refused() {
        assert!(err("data_dir = \"\"\n").contains("data_dir: is empty"));
        assert!(err("[http.tls]\ncert = \"\"\nkey = \"/k\"\n").contains("http.tls.cert: is empty"));
        let e = Config::from_toml("[http.tls]\ncert = \"/c\"\n", None).unwrap_err();
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(source.contains("missing field `key`"), "{source}");
    }

    #[test]
    fn passwords_are_redacted() {
        let url = DatabaseUrl("postgres://so:hunter2@db:5432/signoff?x=1".into());
        assert_eq!(url.to_string(), "postgres://so:***@db:5432/signoff?x=1");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(url.expose(), "postgres://so:hunter2@db:5432/signoff?x=1");
        assert_eq!(redact_url("sqlite:///a@b/c.db"), "sqlite:///a@b/c.db");
        assert_eq!(redact_url("postgres://so@db/x"), "postgres://so@db/x");
    }

    #[test]
    fn durations() {
        for (text, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("24h", 86400),
            ("7d", 604800),
            ("1h30m", 5400),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
            assert_eq!(
                parse_duration(&format_duration(Duration::from_secs(secs))),
                Ok(Duration::from_secs(secs))
            );
        }
        for bad in [
            "",
            "10",
            "h",
            "1.5h",
            "1w",
            "-1s",
            "1h 30m",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(86400 + 61)), "1d1m1s");
    }

    fn webhook_config(dir: &Path, secret: &[u8], mode: u32) -> Config {
        use std::os::unix::fs::PermissionsExt as _;
        let file = dir.join("hr.secret");
        std::fs::write(&file, secret).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let c = Config::from_toml(
            &format!(
                "[webhook]\nsecret_file = {:?}\n",
                file.display().to_string()
            ),
            Some(Path::new("/c.toml")),
        )
        .unwrap();
        assert_eq!(c.webhook_secret_file.as_deref(), Some(file.as_path()));
        c
    }

    #[test]
    fn webhook_secret_is_read_from_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = webhook_config(
            dir.path(),
            format!("{}\n", "ab".repeat(32)).as_bytes(),
            0o600,
        );
        let secret = c.webhook_secret().unwrap().unwrap();
        // The trailing newline is not part of the key, and the key is never printed.
        assert_eq!(secret.len(), 64);
        assert!(!format!("{secret:?}").contains("abab"));
        assert!(c.to_toml().contains("[webhook]"), "{}", c.to_toml());
        assert!(
            Config::load(None)
                .unwrap()
                .webhook_secret()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn webhook_secret_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = webhook_config(dir.path(), "ab".repeat(32).as_bytes(), 0o644);
        let e = c.webhook_secret().unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Insecure {
                    key: "webhook.secret_file",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn short_or_missing_webhook_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = webhook_config(dir.path(), b"hunter2\n", 0o600);
        let e = c.webhook_secret().unwrap_err().to_string();
        assert!(
            e.contains("webhook.secret_file") && e.contains("holds 7 bytes"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("hr.secret")).unwrap();
        let e = c.webhook_secret().unwrap_err().to_string();
        assert!(e.contains("webhook.secret_file"), "{e}");
    }
}
