//! Pushing events out: to a webhook (JSON, HMAC-signed like the HR webhook) and to syslog
//! (RFC 5424 over TCP, or TLS), for a SIEM that listens rather than pulls.
//!
//! ```toml
//! [delivery.webhook]
//! url = "https://siem.example/hooks/signoff"
//! secret_file = "/etc/signoff/alert-webhook.key"   # 0600, 32 bytes or more
//! kinds = ["alert", "refused_attempt"]             # default: every kind
//! [delivery.syslog]
//! address = "siem.example:6514"
//! tls = true                                       # RFC 5425; false: plain TCP (RFC 6587)
//! ca_file = "/etc/signoff/siem-ca.pem"             # trust for the receiver's certificate
//! server_name = "siem.example"                     # the name its certificate carries
//! kinds = ["alert"]
//! ```
//!
//! Each sink has a durable cursor in the store (`delivery_cursors`): an event is delivered,
//! then the cursor moves past it, so nothing is lost across a restart of the control plane
//! (an event may be delivered twice if the process stops in between; receivers
//! deduplicate by the event's `cursor`). A failed delivery is retried with backoff (from
//! half a second, doubling, at most 30 s) and holds the events after it back: they go out
//! in order. A new sink starts from the events recorded after it was first configured.
//!
//! A webhook POST carries the event as JSON (`{cursor, at, kind, data}`) and the headers of
//! the HR webhook: `X-Signoff-Timestamp: UNIX` and
//! `X-Signoff-Signature: sha256=HEX(HMAC-SHA256(key, UNIX + "." + body))`; any 2xx is
//! delivered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tracing::{info, warn};

use crate::events::Event;
use crate::hooks::WebhookSecret;
use crate::service::Service;
use crate::store;

/// `[delivery]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// `[delivery.webhook]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSink>,
    /// `[delivery.syslog]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogSink>,
}

/// `[delivery.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSink {
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// The HMAC key file (0600).
    pub secret_file: PathBuf,
    /// Event kinds delivered; empty: all.
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// `[delivery.syslog]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSink {
    /// `HOST:PORT` of the receiver.
    pub address: String,
    /// TLS (RFC 5425) rather than plain TCP.
    #[serde(default)]
    pub tls: bool,
    /// PEM CA certificate(s) trusted for the receiver (with `tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The name the receiver's certificate carries (with `tls`; default: the host part of
    /// `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Event kinds delivered; empty: all.
    #[serde(default)]
    pub kinds: Vec<String>,
}

const KINDS: &[&str] = &[
    "audit",
    "session_started",
    "session_ended",
    "refused_attempt",
    "refused_attempts_dropped",
    "alert",
];

fn check_kinds(key: &'static str, kinds: &[String]) -> Result<(), (&'static str, String)> {
    match kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
        Some(k) => Err((key, format!("{k:?} is not an event kind; use {KINDS:?}"))),
        None => Ok(()),
    }
}

impl DeliveryConfig {
    /// Checks what the types do not; the error names the key and what to change.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(w) = &self.webhook {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://"))
                || reqwest::Url::parse(&w.url).is_err()
            {
                return Err((
                    "delivery.webhook.url",
                    format!("{:?} is not an http:// or https:// URL", w.url),
                ));
            }
            if !w.secret_file.is_absolute() {
                return Err((
                    "delivery.webhook.secret_file",
                    "must be an absolute path".to_owned(),
                ));
            }
            check_kinds("delivery.webhook.kinds", &w.kinds)?;
        }
        if let Some(s) = &self.syslog {
            if s.address
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err((
                    "delivery.syslog.address",
                    format!("{:?} is not HOST:PORT", s.address),
                ));
            }
            if s.tls && s.ca_file.is_none() {
                return Err((
                    "delivery.syslog.ca_file",
                    "tls = true needs the CA certificate that signed the receiver's".to_owned(),
                ));
            }
            check_kinds("delivery.syslog.kinds", &s.kinds)?;
        }
        Ok(())
    }
}

/// Why a sink cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The webhook key file is unusable.
    #[error("[delivery.webhook] secret_file {path}: {message}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The syslog CA file is unusable.
    #[error("[delivery.syslog] ca_file {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error("cannot read or write the delivery cursor")]
    Store(#[from] sqlx::Error),
}

/// Backoff between attempts of one failed delivery.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);
/// How often a sink looks for new events (one indexed query).
const POLL: Duration = Duration::from_millis(100);

/// Starts the configured sinks; each runs until the process ends.
pub async fn start(service: &Service, config: &DeliveryConfig) -> Result<(), DeliveryError> {
    if let Some(w) = &config.webhook {
        let secret = read_secret(&w.secret_file)?;
        let cursor = start_cursor(service, "webhook").await?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DeliveryError::Secret {
                path: w.secret_file.clone(),
                message: format!("cannot make an HTTP client: {e}"),
            })?;
        let sink = Webhook {
            client,
            url: w.url.clone(),
            secret,
        };
        info!(url = %w.url, cursor, "delivering events to the webhook");
        tokio::spawn(run(
            service.clone(),
            "webhook",
            cursor,
            w.kinds.clone(),
            Sink::Webhook(sink),
        ));
    }
    if let Some(s) = &config.syslog {
        let tls = match &s.ca_file {
            Some(path) if s.tls => Some(tls_connector(path)?),
            _ => None,
        };
        let host = s
            .address
            .rsplit_once(':')
            .map_or(s.address.as_str(), |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_owned();
        let sink = Syslog {
            address: s.address.clone(),
            server_name: s.server_name.clone().unwrap_or(host),
            tls,
            conn: None,
        };
        let cursor = start_cursor(service, "syslog").await?;
        info!(address = %s.address, tls = s.tls, cursor, "delivering events to syslog");
        tokio::spawn(run(
            service.clone(),
            "syslog",
            cursor,
            s.kinds.clone(),
            Sink::Syslog(Box::new(sink)),
        ));
    }
    Ok(())
}

fn read_secret(path: &std::path::Path) -> Result<WebhookSecret, DeliveryError> {
    let bad = |message: String| DeliveryError::Secret {
        path: path.to_owned(),
        message,
    };
    crate::bootstrap::check_private_file(path).map_err(|e| bad(e.to_string()))?;
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let key = bytes.trim_ascii();
    if key.len() < crate::config::MIN_WEBHOOK_SECRET {
        return Err(bad(format!(
            "the key is {} bytes; make one of at least {} (e.g. openssl rand -hex 32)",
            key.len(),
            crate::config::MIN_WEBHOOK_SECRET
        )));
    }
    Ok(WebhookSecret::new(key.to_vec()))
}

fn tls_connector(path: &std::path::Path) -> Result<tokio_rustls::TlsConnector, DeliveryError> {
    let bad = |message: String| DeliveryError::Ca {
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = std::io::BufReader::new(pem.as_slice());
    for cert in rustls_pemfile_certs(&mut reader).map_err(bad)? {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no certificate".to_owned()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn rustls_pemfile_certs(
    reader: &mut dyn std::io::BufRead,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_reader_iter(reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))
}

/// The sink's stored cursor; a new sink starts after the newest event.
async fn start_cursor(service: &Service, sink: &str) -> Result<i64, sqlx::Error> {
    let mut c = service.store().conn().await?;
    store::delivery::create_cursor(c.db(), sink).await?;
    store::delivery::cursor(c.db(), sink)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

async fn save_cursor(service: &Service, sink: &str, cursor: i64) -> Result<(), sqlx::Error> {
    let mut c = service.store().conn().await?;
    store::delivery::save_cursor(c.db(), sink, cursor).await?;
    Ok(())
}

enum Sink {
    Webhook(Webhook),
    Syslog(Box<Syslog>),
}

impl Sink {
    async fn deliver(&mut self, event: &Event) -> Result<(), String> {
        match self {
            Sink::Webhook(w) => w.deliver(event).await,
            Sink::Syslog(s) => s.deliver(event).await,
        }
    }
}

async fn run(
    service: Service,
    name: &'static str,
    mut cursor: i64,
    kinds: Vec<String>,
    mut sink: Sink,
) {
    loop {
        let batch = match service.events_since(cursor, 100).await {
            Ok(b) => b,
            Err(e) => {
                warn!(sink = name, error = ?e, "cannot read events to deliver");
                tokio::time::sleep(FIRST_RETRY).await;
                continue;
            }
        };
        if batch.is_empty() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        for event in batch {
            if kinds.is_empty() || kinds.contains(&event.kind) {
                let mut wait = FIRST_RETRY;
                while let Err(e) = sink.deliver(&event).await {
                    warn!(sink = name, cursor = event.cursor, error = %e, retry_in = ?wait, "delivery failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LAST_RETRY);
                }
            }
            cursor = event.cursor;
            while let Err(e) = save_cursor(&service, name, cursor).await {
                warn!(sink = name, error = %e, "cannot store the delivery cursor");
                tokio::time::sleep(FIRST_RETRY).await;
            }
        }
    }
}

struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: WebhookSecret,
}

impl Webhook {
    async fn deliver(&self, event: &Event) -> Result<(), String> {
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let signature = self.secret.sign(&timestamp, &body);
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header(crate::hooks::TIMESTAMP_HEADER, &timestamp)
            .header("x-signoff-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {}", response.status()))
        }
    }
}

trait Stream: tokio::io::AsyncWrite + Unpin + Send + Sync {}
impl<T: tokio::io::AsyncWrite + Unpin + Send + Sync> Stream for T {}

struct Syslog {
    address: String,
    server_name: String,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: Option<Box<dyn Stream>>,
}

impl Syslog {
    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.address))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.server_name.clone())
                    .map_err(|e| format!("{:?}: {e}", self.server_name))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.address))?;
                Ok(Box::new(stream))
            }
        }
    }

    async fn deliver(&mut self, event: &Event) -> Result<(), String> {
        let frame = octet_counted(&rfc5424(event));
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".to_owned());
        };
        let written = async {
            conn.write_all(&frame).await?;
            conn.flush().await
        }
        .await;
        if let Err(e) = written {
            self.conn = None;
            return Err(format!("writing to {}: {e}", self.address));
        }
        Ok(())
    }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOST signoff - KIND [signoff@32473 cursor="N"] JSON`.
/// Facility auth (4); severity warning (4) for alerts, notice (5) for the rest.
pub fn rfc5424(event: &Event) -> String {
    let severity = if event.kind == "alert" { 4 } else { 5 };
    let pri = 4 * 8 + severity;
    let timestamp = time::OffsetDateTime::from_unix_timestamp(event.at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".to_owned());
    let msg = serde_json::to_string(event).unwrap_or_default();
    format!(
        "<{pri}>1 {timestamp} {host} signoff - {} [signoff@32473 cursor=\"{}\"] {msg}",
        event.kind, event.cursor
    )
}

/// RFC 6587 octet counting: `LEN SP MSG`.
fn octet_counted(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_rfc5424_with_its_cursor() {
        let e = Event {
            cursor: 42,
            at: 0,
            kind: "alert".into(),
            data: serde_json::json!({"rule": "signed_off_attempt"}),
        };
        let m = rfc5424(&e);
        assert!(m.starts_with("<36>1 1970-01-01T00:00:00Z "), "{m}");
        assert!(
            m.contains(" signoff - alert [signoff@32473 cursor=\"42\"] {"),
            "{m}"
        );
        let framed = octet_counted(&m);
        assert!(framed.starts_with(format!("{} <36>", m.len()).as_bytes()));
    }

    #[test]
    fn bad_sinks_are_refused_with_their_key() {
        let bad = |t: &str| {
            toml::from_str::<DeliveryConfig>(t)
                .unwrap()
                .check()
                .unwrap_err()
                .0
        };
        assert_eq!(
            bad("[webhook]\nurl = \"ftp://x\"\nsecret_file = \"/k\""),
            "delivery.webhook.url"
        );
        assert_eq!(
            bad("[webhook]\nurl = \"http://x/\"\nsecret_file = \"k\""),
            "delivery.webhook.secret_file"
        );
        assert_eq!(
            bad("[webhook]\nurl = \"http://x/\"\nsecret_file = \"/k\"\nkinds = [\"alerts\"]"),
            "delivery.webhook.kinds"
        );
        assert_eq!(
            bad("[syslog]\naddress = \"nohost\""),
            "delivery.syslog.address"
        );
        assert_eq!(
            bad("[syslog]\naddress = \"h:6514\"\ntls = true"),
            "delivery.syslog.ca_file"
        );
    }
}
