//! The HR webhook, `POST /hooks/hr`: sign-off for HR systems that cannot speak SCIM.
//!
//! The sender signs each delivery with a key both sides hold (`[webhook] secret_file`):
//!
//! ```text
//! X-Signoff-Timestamp: 1767225600                      (Unix seconds)
//! X-Signoff-Signature: sha256=HEX(HMAC-SHA256(key, "1767225600" + "." + body))
//!
//! {"event": "termination", "user": "alice", "reason": "last day 2026-01-01"}
//! ```
//!
//! A delivery is refused (401) when either header is missing or malformed, the signature
//! does not verify (compared in constant time), or the timestamp is more than
//! [`REPLAY_WINDOW`] seconds from the server's clock; and (409) when the same signature was
//! accepted before. Accepted signatures are kept in the store until their timestamp leaves
//! the window, so a restart does not reopen it. A termination signs the person off exactly
//! as the API does, audited under the actor `webhook:hr`. Without a configured key the
//! endpoint answers 404: an unauthenticated sign-off door must not exist by default.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;

use crate::api::ApiError;
use crate::service::{Actor, Service, ServiceError};

/// How far a delivery's timestamp may be from the server's clock, either way, in seconds.
pub const REPLAY_WINDOW: i64 = 300;

/// The audit actor of webhook sign-offs.
pub const ACTOR: &str = "webhook:hr";

/// Header carrying the delivery's Unix time.
pub const TIMESTAMP_HEADER: &str = "x-signoff-timestamp";

/// Header carrying `sha256=HEX` of the delivery.
pub const SIGNATURE_HEADER: &str = "x-signoff-signature";

/// Largest delivery accepted; a termination notice is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

/// The webhook's HMAC key. `Debug` does not show it.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// A key from its bytes.
    pub fn new(key: Vec<u8>) -> Self {
        WebhookSecret(key)
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, once configuration accepted it).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `sha256=HEX` of a delivery: what a sender puts in `X-Signoff-Signature`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(self.mac(timestamp, body).finalize().into_bytes())
        )
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecret({} bytes)", self.0.len())
    }
}

/// Why a delivery is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The server has no `[webhook] secret_file`.
    #[error("no such endpoint: the HR webhook is not configured on this server")]
    NotConfigured,
    /// A required header is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// `X-Signoff-Timestamp` is not Unix seconds.
    #[error("X-Signoff-Timestamp is not Unix seconds")]
    BadTimestamp,
    /// `X-Signoff-Signature` is not `sha256=` and 64 hex digits.
    #[error("X-Signoff-Signature is not \"sha256=\" followed by 64 hex digits")]
    MalformedSignature,
    /// The signature does not match the timestamp and body under the configured key.
    #[error("signature does not verify")]
    BadSignature,
    /// The timestamp is outside the replay window.
    #[error(
        "timestamp is {skew} s from the server's clock; deliveries must be signed within {REPLAY_WINDOW} s"
    )]
    Stale {
        /// Server time minus the delivery's timestamp, in seconds.
        skew: i64,
    },
    /// This exact delivery was accepted before.
    #[error("this delivery was accepted before (replay); sign a new one with a fresh timestamp")]
    Replayed,
    /// The body is not the documented JSON.
    #[error("body: {0}")]
    BadBody(#[source] serde_json::Error),
    /// The event is not one the webhook acts on.
    #[error("event {0:?} is not supported (only \"termination\")")]
    UnknownEvent(String),
    /// The sign-off failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let error = match self {
            HookError::NotConfigured => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            HookError::MissingHeader(_)
            | HookError::BadTimestamp
            | HookError::MalformedSignature
            | HookError::BadSignature
            | HookError::Stale { .. } => ApiError::unauthorized(&message),
            HookError::Replayed => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            HookError::BadBody(_) => ApiError::bad_request(message),
            HookError::UnknownEvent(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            }
            HookError::Service(e) => ApiError::from(e),
        };
        error.into_response()
    }
}

/// A delivery's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Delivery {
    /// `termination`.
    event: String,
    /// The person's signoff name.
    user: String,
    /// Why, for the audit log.
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Clone)]
struct HookState {
    service: Service,
    secret: Option<Arc<WebhookSecret>>,
}

/// `POST /hooks/hr`, answering 404 when `secret` is `None`.
pub fn router(service: Service, secret: Option<WebhookSecret>) -> Router {
    Router::new()
        .route("/hooks/hr", post(hr_webhook_handler))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .with_state(HookState {
            service,
            secret: secret.map(Arc::new),
        })
}

/// Checks a delivery's headers against the key and the clock; returns its signature (hex),
/// the replay cache's key.
fn verify(
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(String, i64), HookError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .ok_or(HookError::MissingHeader(name))
            .map(|v| v.to_str().unwrap_or_default().trim())
    };
    let timestamp = header(TIMESTAMP_HEADER)?;
    let signature = header(SIGNATURE_HEADER)?;
    let at: i64 = if !timestamp.is_empty() && timestamp.bytes().all(|b| b.is_ascii_digit()) {
        timestamp.parse().map_err(|_| HookError::BadTimestamp)?
    } else {
        return Err(HookError::BadTimestamp);
    };
    let hex_sig = signature
        .strip_prefix("sha256=")
        .filter(|h| h.len() == 64)
        .ok_or(HookError::MalformedSignature)?;
    let raw = hex::decode(hex_sig).map_err(|_| HookError::MalformedSignature)?;
    secret
        .mac(timestamp, body)
        .verify_slice(&raw)
        .map_err(|_| HookError::BadSignature)?;
    let skew = now - at;
    if skew.abs() > REPLAY_WINDOW {
        return Err(HookError::Stale { skew });
    }
    Ok((hex_sig.to_ascii_lowercase(), at))
}

/// Verifies, then signs the person off: 201 with the new record, or 200 with the existing
/// one when they are signed off already.
async fn hr_webhook_handler(
    State(s): State<HookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HookError> {
    let secret = s.secret.as_deref().ok_or(HookError::NotConfigured)?;
    let (signature, at) = verify(secret, &headers, &body, s.service.now())?;
    let delivery: Delivery = serde_json::from_slice(&body).map_err(HookError::BadBody)?;
    if delivery.event != "termination" {
        return Err(HookError::UnknownEvent(delivery.event));
    }
    if !s
        .service
        .claim_webhook_delivery(&signature, at + REPLAY_WINDOW)
        .await?
    {
        return Err(HookError::Replayed);
    }
    let result = sign_off(&s.service, &delivery).await;
    if result.is_err() {
        // Nothing happened: let the sender retry this very delivery.
        if let Err(e) = s.service.release_webhook_delivery(&signature).await {
            tracing::warn!(error = ?e, "cannot release a failed webhook delivery");
        }
    }
    result
}

async fn sign_off(service: &Service, delivery: &Delivery) -> Result<Response, HookError> {
    let actor = Actor(ACTOR.to_owned());
    let reason = if delivery.reason.trim().is_empty() {
        "HR webhook: termination".to_owned()
    } else {
        format!("HR webhook: termination: {}", delivery.reason)
    };
    let (record, created) = service
        .sign_off_once(&actor, &delivery.user, &reason)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(record)).into_response())
}

#[cfg(test)]
mod tests;
