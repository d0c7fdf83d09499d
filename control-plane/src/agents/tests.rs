//! The agent listener over real TLS on a loopback port, with the agent's own transport.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use signoff_agent::transport;
use signoff_proto::v1;
use signoff_proto::v1::agent_sync_client::AgentSyncClient;
use signoff_proto::v1::enrollment_client::EnrollmentClient;
use tokio::sync::oneshot;
use tonic::Code;

use super::listener;
use super::pki::AgentCa;
use super::sync::AgentServer;
use crate::api::Metrics;
use crate::model::Revocation;
use crate::service::testing::{ManualClock, service};
use crate::service::{Actor, NewGrant, NewUser, Service, ServiceError};

struct Plane {
    url: String,
    ca: Arc<AgentCa>,
    service: Service,
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
    _stop: oneshot::Sender<()>,
}

fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn start() -> Plane {
    let (svc, clock) = service().await;
    // rustls checks certificate validity against the system clock.
    clock.0.store(real_now(), Ordering::SeqCst);
    let a = Actor::cli();
    svc.create_group(&a, "web", "").await.unwrap();
    let new = NewUser {
        name: "alice".into(),
        key_ids: vec!["alice@corp".into()],
        ..Default::default()
    };
    svc.create_user(&a, new, "").await.unwrap();
    let grant = NewGrant {
        user: "alice".into(),
        account: "deploy".into(),
        group: "web".into(),
        not_after: None,
        approval_requested: false,
    };
    svc.create_grant(&a, grant, "").await.unwrap();
    let now = svc.now();
    let ca = Arc::new(AgentCa::generate(now).unwrap());
    let (cert, key) = ca.issue_server(&["localhost".into()], now, 86_400).unwrap();
    let tls = Arc::new(super::tls::server_config(&ca, &cert.pem, &key).unwrap());
    let metrics = Arc::new(Metrics::default());
    let server = AgentServer::new(
        svc.clone(),
        ca.clone(),
        metrics.clone(),
        86_400,
        Duration::from_secs(3600),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(listener::serve(listener, tls, server, async {
        let _ = stopped.await;
    }));
    Plane {
        url: format!("https://localhost:{port}"),
        ca,
        service: svc,
        clock,
        metrics,
        _stop: stop,
    }
}

fn csr() -> (Vec<u8>, String) {
    let key = KeyPair::generate().unwrap();
    let der = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    (der, key.serialize_pem())
}

impl Plane {
    async fn join_token(&self) -> String {
        self.service
            .create_join_token(&Actor::cli(), &["web".into()], 3600, "")
            .await
            .unwrap()
            .secret
    }

    async fn enroll(
        &self,
        pin: &str,
        token: &str,
        host: &str,
    ) -> Result<(String, String), tonic::Status> {
        let channel =
            transport::channel(&self.url, transport::enroll_config(pin).unwrap()).unwrap();
        let (csr, key) = csr();
        let resp = EnrollmentClient::new(channel)
            .enroll(v1::EnrollRequest {
                join_token: token.into(),
                host_id: host.into(),
                hostname: String::new(),
                csr_der: csr,
                host_keys: vec![],
            })
            .await?
            .into_inner();
        assert_eq!(resp.ca_certificate_pem, self.ca.cert_pem());
        Ok((resp.certificate_pem, key))
    }

    async fn enrolled(&self, host: &str) -> (String, String) {
        let token = self.join_token().await;
        self.enroll(&self.ca.pin(), &token, host).await.unwrap()
    }

    fn client(&self, cert: Option<(&str, &str)>) -> AgentSyncClient<tonic::transport::Channel> {
        let tls = transport::mtls_config(self.ca.cert_pem(), cert).unwrap();
        AgentSyncClient::new(transport::channel(&self.url, tls).unwrap())
    }
}

type Outbox = tokio::sync::mpsc::Sender<v1::AgentMessage>;

async fn open(
    client: &mut AgentSyncClient<tonic::transport::Channel>,
    host: &str,
    applied: u64,
) -> Result<(Outbox, tonic::Streaming<v1::ControlMessage>), tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(v1::AgentMessage {
        body: Some(v1::agent_message::Body::Hello(v1::Hello {
            host_id: host.into(),
            applied_revision: applied,
            agent_version: "test".into(),
            heartbeat_secs: 0,
            witnessed_seq: 0,
        })),
    })
    .await
    .unwrap();
    let stream = client
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

async fn next(
    stream: &mut tonic::Streaming<v1::ControlMessage>,
) -> Result<v1::control_message::Body, tonic::Status> {
    let msg = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message within 10 s")?;
    Ok(msg.expect("stream open").body.expect("a body"))
}

#[tokio::test]
async fn an_enrolled_agent_gets_its_view_then_each_change() {
    let p = start().await;
    let (cert, key) = p.enrolled("web1").await;
    let mut client = p.client(Some((&cert, &key)));
    let (tx, mut stream) = open(&mut client, "web1", 0).await.unwrap();
    let v1::control_message::Body::Snapshot(view) = next(&mut stream).await.unwrap() else {
        panic!("expected a snapshot");
    };
    assert_eq!(view.revision, p.service.revision() as u64);
    assert_eq!(view.principals.len(), 1);
    assert_eq!(view.principals[0].account, "deploy");
    assert_eq!(view.principals[0].key_ids, vec!["alice@corp"]);
    assert_eq!(p.metrics.connected_agents(), 1);

    p.service
        .revoke(
            &Actor::cli(),
            Revocation::KeyId {
                ca: None,
                key_id: "bob@corp".into(),
            },
            "",
        )
        .await
        .unwrap();
    let v1::control_message::Body::Delta(delta) = next(&mut stream).await.unwrap() else {
        panic!("expected a delta");
    };
    assert_eq!(delta.from_revision, view.revision);
    assert_eq!(delta.revision, p.service.revision() as u64);
    assert_eq!(
        delta.add_revocations.unwrap().certificates[0].key_ids,
        vec!["bob@corp"]
    );

    tx.send(v1::AgentMessage {
        body: Some(v1::agent_message::Body::Ack(v1::Ack {
            revision: delta.revision,
        })),
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while p.service.get_host("web1").await.unwrap().acked_revision != delta.revision as i64 {
        assert!(tokio::time::Instant::now() < deadline, "ack never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One ack covers the snapshot and the delta: two revisions waited for it.
    let text = p.metrics.text();
    assert!(
        text.contains("signoff_agent_ack_duration_seconds_count 2"),
        "{text}"
    );

    // The stream ends: the guard takes the agent off the gauge.
    drop(tx);
    drop(stream);
    while p.metrics.connected_agents() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still counted as connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reconnecting_agent_gets_only_the_delta() {
    let p = start().await;
    let (cert, key) = p.enrolled("web1").await;
    let applied = p.service.revision() as u64;
    p.service
        .set_user_status(
            &Actor::cli(),
            "alice",
            crate::model::UserStatus::Disabled,
            "",
        )
        .await
        .unwrap();
    let mut client = p.client(Some((&cert, &key)));
    let (_tx, mut stream) = open(&mut client, "web1", applied).await.unwrap();
    let v1::control_message::Body::Delta(d) = next(&mut stream).await.unwrap() else {
        panic!("expected a delta")
    };
    assert_eq!(d.from_revision, applied);
    assert_eq!(d.add_disabled_users, vec!["alice"]);
    assert_eq!(d.remove_principals.len(), 1);
}

#[tokio::test]
async fn a_wrong_pin_fails_enrollment_and_spends_nothing() {
    let p = start().await;
    let token = p.join_token().await;
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let err = p.enroll(wrong, &token, "web1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(format!("{err:?}").contains("pin"), "{err:?}");
    // The token is still good.
    p.enroll(&p.ca.pin(), &token, "web1").await.unwrap();
}

#[tokio::test]
async fn a_reused_join_token_is_refused() {
    let p = start().await;
    let token = p.join_token().await;
    p.enroll(&p.ca.pin(), &token, "web1").await.unwrap();
    let err = p.enroll(&p.ca.pin(), &token, "web2").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("already used"), "{err}");
}

/// A token whose stored groups do not parse enrolls nobody (before: a host in no groups).
#[tokio::test]
async fn a_join_token_with_corrupt_groups_is_refused() {
    let p = start().await;
    let token = p.join_token().await;
    p.service
        .store()
        .exec_for_test("UPDATE join_tokens SET groups = 'not json'")
        .await;
    let err = p.enroll(&p.ca.pin(), &token, "web1").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("groups are corrupt"), "{err}");
    assert!(p.service.list_hosts().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_join_token_is_refused() {
    let p = start().await;
    let token = p.join_token().await;
    p.clock.0.fetch_add(3600, Ordering::SeqCst);
    let err = p.enroll(&p.ca.pin(), &token, "web1").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("expired"), "{err}");
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let p = start().await;
    p.enrolled("web1").await;
    let mut client = p.client(None);
    let err = open(&mut client, "web1", 0).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let p = start().await;
    let other = AgentCa::generate(p.service.now()).unwrap();
    let (csr, key) = csr();
    let forged = other
        .issue_client(&csr, "web1", p.service.now(), 3600)
        .unwrap();
    p.enrolled("web1").await;
    let mut client = p.client(Some((&forged.pem, &key)));
    let err = format!("{:?}", open(&mut client, "web1", 0).await.unwrap_err());
    // The server's TLS refuses the certificate (it carries the same CA name, so the
    // signature check is what fails): the request never reaches the service.
    assert!(
        err.contains("received fatal alert: DecryptError") || err.contains("UnknownCA"),
        "{err}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let p = start().await;
    p.enrolled("web1").await;
    let (csr, key) = csr();
    // Issued two days ago for one day. (The clock here is the real one: rustls checks
    // validity against the system time.)
    let now = real_now();
    let expired =
        p.ca.issue_client(&csr, "web1", now - 2 * 86_400, 86_400)
            .unwrap();
    let mut client = p.client(Some((&expired.pem, &key)));
    let err = format!("{:?}", open(&mut client, "web1", 0).await.unwrap_err());
    assert!(
        err.contains("received fatal alert: CertificateExpired"),
        "{err}"
    );
}

#[tokio::test]
async fn a_removed_host_is_refused_and_its_open_stream_ends() {
    let p = start().await;
    let (cert, key) = p.enrolled("web1").await;
    let mut client = p.client(Some((&cert, &key)));
    let (_tx, mut stream) = open(&mut client, "web1", 0).await.unwrap();
    next(&mut stream).await.unwrap();
    p.service
        .remove_host(&Actor::cli(), "web1", "decommissioned")
        .await
        .unwrap();
    let err = next(&mut stream).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let err = open(&mut client, "web1", 0).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
}

#[tokio::test]
async fn a_stream_claiming_another_host_is_refused() {
    let p = start().await;
    let (cert, key) = p.enrolled("web1").await;
    p.enrolled("web2").await;
    let mut client = p.client(Some((&cert, &key)));
    let err = open(&mut client, "web2", 0).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("claims host \"web2\""), "{err}");
}

#[tokio::test]
async fn a_hello_with_an_impossible_revision_is_refused() {
    let p = start().await;
    let (cert, key) = p.enrolled("web1").await;
    let mut client = p.client(Some((&cert, &key)));
    let err = open(&mut client, "web1", u64::MAX).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("applied_revision"), "{err}");
}

fn session(id: &str, port: u32) -> v1::Session {
    v1::Session {
        id: id.into(),
        account: "deploy".into(),
        key_id: "alice@corp".into(),
        serial: 42,
        ca_fingerprint: "SHA256:ca".into(),
        key_fingerprint: "SHA256:key".into(),
        source_address: "127.0.0.1".into(),
        source_port: port,
        started_at: 1_800_000_000,
        tty: String::new(),
        pids: vec![100, 101],
        ..Default::default()
    }
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_host_confirming_a_signoff_is_timed_from_the_revision_that_carried_it() {
    let p = start().await;
    let signer = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[5; 32]));
    p.service.set_order_signer(signer);
    let (cert, key) = p.enrolled("web1").await;
    let mut client = p.client(Some((&cert, &key)));
    let (tx, mut stream) = open(&mut client, "web1", 0).await.unwrap();
    next(&mut stream).await.unwrap();
    let record = p
        .service
        .sign_off(&Actor::cli(), "alice", "left the company")
        .await
        .unwrap();
    let v1::control_message::Body::Delta(delta) = next(&mut stream).await.unwrap() else {
        panic!("expected the sign-off's delta");
    };
    assert_eq!(delta.add_signoffs.len(), 1);
    let send = |body| v1::AgentMessage { body: Some(body) };
    let result = |remaining_pids: Vec<u32>| {
        send(v1::agent_message::Body::SignoffResult(v1::SignoffResult {
            signoff_id: record.id as u64,
            enforced: remaining_pids.is_empty(),
            remaining_pids,
            ..Default::default()
        }))
    };
    tx.send(send(v1::agent_message::Body::Ack(v1::Ack {
        revision: delta.revision,
    })))
    .await
    .unwrap();
    // Processes left: not confirmed, so not timed.
    tx.send(result(vec![4242])).await.unwrap();
    let svc = p.service.clone();
    until("the host's error recorded", async || {
        svc.get_signoff(record.id).await.unwrap().hosts[0]
            .last_error
            .is_some()
    })
    .await;
    let text = p.metrics.text();
    assert!(
        text.contains("signoff_signoff_confirm_duration_seconds_count 0"),
        "{text}"
    );
    tx.send(result(vec![])).await.unwrap();
    until("the host confirmed", async || {
        svc.get_signoff(record.id)
            .await
            .unwrap()
            .completed_at
            .is_some()
    })
    .await;
    let text = p.metrics.text();
    assert!(
        text.contains("signoff_signoff_confirm_duration_seconds_count 1"),
        "{text}"
    );
    // A repeat of the result confirms nothing new and is not timed again.
    // (The stream's messages are handled in order: once the list that follows is
    // recorded, the repeat was handled.)
    tx.send(result(vec![])).await.unwrap();
    tx.send(send(v1::agent_message::Body::SessionList(
        v1::SessionList {
            sessions: vec![session("1:1", 50001)],
        },
    )))
    .await
    .unwrap();
    until("the list after the repeat recorded", async || {
        svc.list_sessions(&Default::default()).await.unwrap().len() == 1
    })
    .await;
    let text = p.metrics.text();
    assert!(
        text.contains("signoff_signoff_confirm_duration_seconds_count 1"),
        "{text}"
    );
}

#[tokio::test]
async fn reported_sessions_are_listed_killed_by_signed_order_and_marked_unknown_on_disconnect() {
    let p = start().await;
    let signer = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[5; 32]));
    p.service.set_order_signer(signer.clone());
    let (cert, key) = p.enrolled("web1").await;
    let mut client = p.client(Some((&cert, &key)));
    let (tx, mut stream) = open(&mut client, "web1", 0).await.unwrap();
    next(&mut stream).await.unwrap();
    let send = |body| v1::AgentMessage { body: Some(body) };
    tx.send(send(v1::agent_message::Body::SessionList(
        v1::SessionList {
            sessions: vec![session("1:1", 50001), session("2:2", 50002)],
        },
    )))
    .await
    .unwrap();
    let svc = p.service.clone();
    let filter = crate::service::SessionFilter {
        user: Some("alice".into()),
        ..Default::default()
    };
    until("both sessions listed", async || {
        svc.list_sessions(&filter).await.unwrap().len() == 2
    })
    .await;
    tx.send(send(v1::agent_message::Body::SessionEnded(
        v1::SessionEnded {
            id: "2:2".into(),
            ended_at: 1,
        },
    )))
    .await
    .unwrap();
    until("the ended one gone", async || {
        svc.list_sessions(&filter).await.unwrap().len() == 1
    })
    .await;

    let order = p
        .service
        .kill_session(&Actor::cli(), "web1", "1:1", "suspicious")
        .await
        .unwrap();
    assert_eq!(order.state, "sent");
    let v1::control_message::Body::Kill(signed) = next(&mut stream).await.unwrap() else {
        panic!("expected a kill order");
    };
    signoff_proto::orders::verify(
        &signed.order,
        &signed.signature,
        &[signer.public_key().clone()],
    )
    .unwrap();
    let kill = signoff_proto::orders::KillOrder::decode(&signed.order).unwrap();
    assert_eq!(
        (kill.host_id.as_str(), kill.session_id.as_str()),
        ("web1", "1:1")
    );
    assert_eq!(kill.operator, "cli");
    tx.send(send(v1::agent_message::Body::OrderResult(
        v1::OrderResult {
            nonce: kill.nonce.to_vec(),
            executed: true,
            refusal: String::new(),
            ended_pids: vec![100, 101],
            remaining_pids: vec![],
        },
    )))
    .await
    .unwrap();
    until("the result audited", async || {
        !svc.audit_log("session.kill.result", None, 10)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    // The answer is timed from the order's send on this stream.
    let text = p.metrics.text();
    assert!(
        text.contains("signoff_kill_duration_seconds_count 1"),
        "{text}"
    );
    assert_eq!(
        svc.audit_log("session.kill", None, 10).await.unwrap().len(),
        2
    );

    drop(tx);
    drop(stream);
    until(
        "sessions of a disconnected host marked unknown",
        async || {
            svc.list_sessions(&filter)
                .await
                .unwrap()
                .iter()
                .all(|s| s.state == "unknown")
        },
    )
    .await;
    // An order for a host that is not connected is not queued.
    let order = p
        .service
        .kill_session(&Actor::cli(), "web1", "1:1", "again")
        .await
        .unwrap();
    assert_eq!(order.state, "undelivered");
    let ended = p
        .service
        .kill_session(&Actor::cli(), "web1", "2:2", "")
        .await
        .unwrap_err();
    assert!(matches!(ended, ServiceError::Conflict(_)), "{ended}");
}

#[tokio::test]
async fn reported_principals_decisions_fill_the_histogram_by_outcome() {
    let p = start().await;
    let (cert, key) = p.enrolled("web1").await;
    let mut client = p.client(Some((&cert, &key)));
    let (tx, mut stream) = open(&mut client, "web1", 0).await.unwrap();
    next(&mut stream).await.unwrap();
    let decision = |outcome: v1::DecisionOutcome, duration_us| v1::PrincipalsDecision {
        outcome: outcome.into(),
        duration_us,
    };
    let mut unknown = decision(v1::DecisionOutcome::Granted, 1);
    unknown.outcome = 77;
    tx.send(v1::AgentMessage {
        body: Some(v1::agent_message::Body::PrincipalsDecisions(
            v1::PrincipalsDecisions {
                decisions: vec![
                    decision(v1::DecisionOutcome::Granted, 900),
                    decision(v1::DecisionOutcome::Granted, 2_500),
                    decision(v1::DecisionOutcome::Denied, 400),
                    decision(v1::DecisionOutcome::Unspecified, 1),
                    unknown,
                ],
                dropped: 3,
                refused: 2,
            },
        )),
    })
    .await
    .unwrap();
    let metrics = p.metrics.clone();
    until("the decisions observed", async || {
        metrics
            .text()
            .contains("signoff_principals_decision_seconds_count{outcome=\"denied\"} 1")
    })
    .await;
    let text = p.metrics.text();
    for line in [
        "signoff_principals_decision_seconds_count{outcome=\"granted\"} 2",
        // 900 µs falls in the 1.6 ms bucket, 2.5 ms does not.
        "signoff_principals_decision_seconds_bucket{le=\"0.0016\",outcome=\"granted\"} 1",
        "signoff_principals_decisions_lost_total{reason=\"dropped\"} 3",
        "signoff_principals_decisions_lost_total{reason=\"refused\"} 2",
        "signoff_principals_decisions_lost_total{reason=\"unknown_outcome\"} 2",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    // No label for what was never reported.
    assert!(!text.contains("outcome=\"break_glass\""), "{text}");
}
