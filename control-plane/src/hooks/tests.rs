//! The webhook router through `oneshot`: every refusal, and that nothing is signed off
//! when it refuses.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;
use crate::service::NewUser;
use crate::service::testing::service;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef";

async fn setup() -> (Service, Arc<crate::service::testing::ManualClock>) {
    let (svc, clock) = service().await;
    svc.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]),
    ));
    let alice = NewUser {
        name: "alice".into(),
        key_ids: vec!["alice@corp".into()],
        ..Default::default()
    };
    svc.create_user(&Actor::cli(), alice, "hired")
        .await
        .unwrap();
    (svc, clock)
}

fn secret() -> WebhookSecret {
    WebhookSecret::new(KEY.to_vec())
}

fn body(user: &str) -> String {
    json!({"event": "termination", "user": user, "reason": "last day"}).to_string()
}

/// Sends `body` with the given headers (`None` leaves a header out).
async fn send(
    svc: &Service,
    secret: Option<WebhookSecret>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::post("/hooks/hr").header("content-type", "application/json");
    if let Some(t) = timestamp {
        req = req.header("X-Signoff-Timestamp", t);
    }
    if let Some(s) = signature {
        req = req.header("X-Signoff-Signature", s);
    }
    let resp = router(svc.clone(), secret)
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A correctly signed delivery at `at`.
async fn deliver(svc: &Service, at: i64, body: &str) -> (StatusCode, Value) {
    let ts = at.to_string();
    let sig = secret().sign(&ts, body.as_bytes());
    send(svc, Some(secret()), Some(&ts), Some(&sig), body).await
}

async fn signed_off(svc: &Service) -> bool {
    svc.latest_signoff("alice").await.unwrap().is_some()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn a_signed_termination_signs_the_person_off_as_the_webhook() {
    let (svc, _) = setup().await;
    let (status, v) = deliver(&svc, svc.now(), &body("alice")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["actor"], ACTOR);
    assert_eq!(v["reason"], "HR webhook: termination: last day");
    assert_eq!(v["key_ids"], json!(["alice@corp"]));
    let audit = svc.audit_log("", None, 10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.actor == ACTOR && r.action == "user.signoff"),
        "{audit:?}"
    );
    // A second, fresh delivery for the same person returns the same record.
    let (status, again) = deliver(&svc, svc.now() + 1, &body("alice")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], v["id"]);
}

#[tokio::test]
async fn without_a_configured_key_the_endpoint_does_not_exist() {
    let (svc, _) = setup().await;
    let ts = svc.now().to_string();
    let sig = secret().sign(&ts, body("alice").as_bytes());
    let (status, v) = send(&svc, None, Some(&ts), Some(&sig), &body("alice")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(!signed_off(&svc).await);
}

#[tokio::test]
async fn a_signature_that_does_not_verify_is_refused() {
    let (svc, _) = setup().await;
    let ts = svc.now().to_string();
    // Signed with another key.
    let other = WebhookSecret::new(b"another key, just as long as the real one".to_vec());
    let sig = other.sign(&ts, body("alice").as_bytes());
    let (status, v) = send(&svc, Some(secret()), Some(&ts), Some(&sig), &body("alice")).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not verify")
    );
    // Signed for another body (the person swapped after signing).
    let sig = secret().sign(&ts, body("bob").as_bytes());
    let (status, _) = send(&svc, Some(secret()), Some(&ts), Some(&sig), &body("alice")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Signed for another timestamp.
    let sig = secret().sign(&(svc.now() - 1).to_string(), body("alice").as_bytes());
    let (status, _) = send(&svc, Some(secret()), Some(&ts), Some(&sig), &body("alice")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!signed_off(&svc).await);
}

#[tokio::test]
async fn missing_or_malformed_headers_are_refused() {
    let (svc, _) = setup().await;
    let b = body("alice");
    let ts = svc.now().to_string();
    let sig = secret().sign(&ts, b.as_bytes());
    let cases: [(Option<&str>, Option<&str>, &str); 6] = [
        (None, Some(&sig), "missing x-signoff-timestamp"),
        (Some(&ts), None, "missing x-signoff-signature"),
        (Some("yesterday"), Some(&sig), "not Unix seconds"),
        (Some("-5"), Some(&sig), "not Unix seconds"),
        (Some(&ts), Some(&sig[7..]), "sha256="),
        (Some(&ts), Some("sha256=zz"), "sha256="),
    ];
    for (t, s, expect) in cases {
        let (status, v) = send(&svc, Some(secret()), t, s, &b).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{t:?} {s:?}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(expect), "{message}");
    }
    assert!(!signed_off(&svc).await);
}

#[tokio::test]
async fn a_stale_or_future_timestamp_is_refused() {
    let (svc, _) = setup().await;
    for at in [svc.now() - REPLAY_WINDOW - 1, svc.now() + REPLAY_WINDOW + 1] {
        let (status, v) = deliver(&svc, at, &body("alice")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("within 300 s"),
            "{v}"
        );
    }
    assert!(!signed_off(&svc).await);
}

#[tokio::test]
async fn a_replayed_delivery_is_refused_even_after_a_re_enable() {
    let (svc, clock) = setup().await;
    let at = svc.now();
    let b = body("alice");
    assert_eq!(deliver(&svc, at, &b).await.0, StatusCode::CREATED);
    svc.reenable_user(&Actor::cli(), "alice", "mistake")
        .await
        .unwrap();
    clock.0.fetch_add(REPLAY_WINDOW, Ordering::SeqCst);
    let (status, v) = deliver(&svc, at, &b).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::CONFLICT, "conflict"),
        "{v}"
    );
    assert_eq!(
        svc.get_user("alice").await.unwrap().status,
        crate::model::UserStatus::Active
    );
    assert_eq!(svc.list_signoffs().await.unwrap().len(), 1);
}

#[tokio::test]
async fn bad_bodies_and_unknown_events_are_refused() {
    let (svc, _) = setup().await;
    let now = svc.now();
    let (status, v) = deliver(&svc, now, "{not json").await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{v}"
    );
    let (status, v) = deliver(&svc, now, r#"{"event":"termination","usr":"alice"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = deliver(&svc, now, r#"{"event":"hire","user":"alice"}"#).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        "{v}"
    );
    assert!(!signed_off(&svc).await);
}

#[tokio::test]
async fn an_unknown_person_is_404_and_the_same_delivery_can_be_retried() {
    let (svc, _) = setup().await;
    let b = body("carol");
    let at = svc.now();
    let (status, v) = deliver(&svc, at, &b).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::NOT_FOUND, "not_found"),
        "{v}"
    );
    let carol = NewUser {
        name: "carol".into(),
        ..Default::default()
    };
    svc.create_user(&Actor::cli(), carol, "late paperwork")
        .await
        .unwrap();
    let (status, v) = deliver(&svc, at, &b).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}
