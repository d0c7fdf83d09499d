use std::sync::Arc;
use std::sync::atomic::Ordering;

use signoff_proto::v1;

use crate::alerts::{AlertEvent, AlertRules};
use crate::service::testing::{ManualClock, service};
use crate::service::{Actor, NewHost, NewUser, Service};

const START: i64 = 1_800_000_000;

/// A service with hosts `h1` and `h2` connected, person mallory, and the rule's
/// threshold at one minute.
async fn setup() -> (Service, Arc<ManualClock>) {
    let (svc, clock) = service().await;
    let a = Actor::cli();
    svc.create_group(&a, "web", "").await.unwrap();
    for h in ["h1", "h2"] {
        let new = NewHost {
            id: h.into(),
            hostname: String::new(),
            groups: vec!["web".into()],
        };
        svc.create_host(&a, new, "").await.unwrap();
        svc.agent_connected(h, 0, "test", None).await.unwrap();
    }
    let new = NewUser {
        name: "mallory".into(),
        key_ids: vec!["mallory@corp".into()],
        ..Default::default()
    };
    svc.create_user(&a, new, "").await.unwrap();
    svc.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]),
    ));
    svc.set_alert_rules(rules("[incomplete_action]\noffline_after = \"1m\"\n"));
    (svc, clock)
}

fn rules(toml_text: &str) -> crate::alerts::Rules {
    toml::from_str::<AlertRules>(toml_text)
        .unwrap()
        .check()
        .unwrap()
}

fn at(clock: &ManualClock, t: i64) {
    clock.0.store(t, Ordering::SeqCst);
}

async fn offline_alerts(svc: &Service) -> Vec<AlertEvent> {
    svc.list_alerts(false, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.alert["rule"] == "incomplete_action")
        .collect()
}

/// `h1` confirms the sign-off and then goes offline; `h2`'s agent goes offline at
/// START + 10 without confirming. Only `h2` is alerted, once, after a minute.
#[tokio::test]
async fn a_signoff_waiting_on_an_offline_host_alerts_once_past_the_threshold() {
    let (svc, clock) = setup().await;
    let h1 = svc.host_connected("h1");
    let h2 = svc.host_connected("h2");
    let record = svc
        .sign_off(&Actor::cli(), "mallory", "left")
        .await
        .unwrap();
    svc.record_contact("h1", Some(record.revision), None, None)
        .await
        .unwrap();
    let confirm = v1::SignoffResult {
        signoff_id: record.id as u64,
        enforced: true,
        ..Default::default()
    };
    svc.record_signoff_result("h1", &confirm).await.unwrap();
    at(&clock, START + 10);
    svc.host_disconnected(h1).await.unwrap();
    svc.host_disconnected(h2).await.unwrap();

    at(&clock, START + 70);
    assert_eq!(svc.alert_offline_waits().await.unwrap(), 0, "not yet");
    assert!(offline_alerts(&svc).await.is_empty());

    at(&clock, START + 71);
    assert_eq!(svc.alert_offline_waits().await.unwrap(), 1);
    let alerts = offline_alerts(&svc).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0].alert;
    assert_eq!(alert["host_id"], "h2", "h1 confirmed: {alert}");
    assert_eq!(alert["person"], "mallory");
    assert_eq!(alert["subject"]["signoff"], record.id);
    let summary = alert["summary"].as_str().unwrap();
    assert!(summary.contains("offline for 61s"), "{summary}");

    at(&clock, START + 3600);
    assert_eq!(svc.alert_offline_waits().await.unwrap(), 0, "never again");
    assert_eq!(offline_alerts(&svc).await.len(), 1);
}

/// A host offline since before the sign-off is counted from the sign-off, not from its
/// disconnection; a connected host that has not confirmed is pending, not alerted.
#[tokio::test]
async fn the_wait_counts_from_the_signoff_and_a_connected_host_is_not_alerted() {
    let (svc, clock) = setup().await;
    let _h1 = svc.host_connected("h1");
    let h2 = svc.host_connected("h2");
    svc.host_disconnected(h2).await.unwrap();
    at(&clock, START + 1000);
    svc.sign_off(&Actor::cli(), "mallory", "left")
        .await
        .unwrap();
    at(&clock, START + 1060);
    assert_eq!(svc.alert_offline_waits().await.unwrap(), 0);
    at(&clock, START + 1061);
    assert_eq!(svc.alert_offline_waits().await.unwrap(), 1);
    let alerts = offline_alerts(&svc).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].alert["host_id"], "h2");
}

/// A kill order sent to a host that then went offline, without a result.
#[tokio::test]
async fn a_kill_order_without_a_result_on_an_offline_host_alerts_once() {
    let (svc, clock) = setup().await;
    let h1 = svc.host_connected("h1");
    let session = v1::Session {
        id: "1:1".into(),
        account: "deploy".into(),
        key_id: "alice@corp".into(),
        source_address: "127.0.0.1".into(),
        source_port: 50000,
        started_at: START as u64,
        ..Default::default()
    };
    svc.session_started("h1", &session).await.unwrap();
    let order = svc
        .kill_session(&Actor::cli(), "h1", "1:1", "test")
        .await
        .unwrap();
    assert_eq!(order.state, "sent");
    svc.host_disconnected(h1).await.unwrap();
    at(&clock, START + 60);
    assert_eq!(svc.alert_offline_waits().await.unwrap(), 0);
    at(&clock, START + 61);
    assert_eq!(svc.alert_offline_waits().await.unwrap(), 1);
    at(&clock, START + 600);
    assert_eq!(svc.alert_offline_waits().await.unwrap(), 0);
    let alerts = offline_alerts(&svc).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].alert["host_id"], "h1");
    assert_eq!(alerts[0].alert["subject"]["order"], order.nonce);
}

/// With the rule off nothing is raised, however long the wait.
#[tokio::test]
async fn the_rule_off_raises_nothing() {
    let (svc, clock) = setup().await;
    svc.set_alert_rules(rules("[incomplete_action]\nenabled = false\n"));
    let h2 = svc.host_connected("h2");
    svc.host_disconnected(h2).await.unwrap();
    svc.sign_off(&Actor::cli(), "mallory", "left")
        .await
        .unwrap();
    at(&clock, START + 86_400);
    assert_eq!(svc.alert_offline_waits().await.unwrap(), 0);
    assert!(offline_alerts(&svc).await.is_empty());
}
