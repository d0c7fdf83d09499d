use std::sync::atomic::Ordering;

use super::*;
use crate::service::NewHost;
use crate::service::testing::service;

fn host_key(seed: u8) -> String {
    ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
        .public_key()
        .to_openssh()
        .unwrap()
}

fn host_ca() -> HostCa {
    HostCa::new(
        ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[77; 32])),
        3600,
    )
    .unwrap()
}

async fn setup() -> (Service, Arc<crate::service::testing::ManualClock>) {
    let (svc, clock) = service().await;
    svc.set_host_ca(host_ca());
    for id in ["web1", "web2"] {
        svc.create_host(
            &Actor::cli(),
            NewHost {
                id: id.into(),
                hostname: format!("{id}.example.com"),
                groups: vec![],
            },
            "",
        )
        .await
        .unwrap();
    }
    (svc, clock)
}

async fn last_audit(svc: &Service) -> crate::audit::Record {
    svc.audit_log("", None, 1).await.unwrap().remove(0)
}

#[tokio::test]
async fn an_enrolled_host_gets_a_host_certificate_for_its_names() {
    let (svc, clock) = setup().await;
    let now = clock.0.load(Ordering::SeqCst);
    let c = svc
        .sign_host_key(&Actor::cli(), "web1", &host_key(1), None, &[])
        .await
        .unwrap();
    assert_eq!(c.principals, ["web1.example.com", "web1"]);
    assert_eq!(c.valid_before, now + 3600);
    let cert = ssh_key::Certificate::from_openssh(&c.certificate).unwrap();
    assert_eq!(cert.cert_type(), ssh_key::certificate::CertType::Host);
    assert_eq!(cert.key_id(), "host:web1");
    assert_eq!(cert.valid_principals(), ["web1.example.com", "web1"]);
    let ca = svc.host_ca().unwrap();
    assert_eq!(
        cert.signature_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string(),
        ca.fingerprint
    );
    assert_eq!(
        ca.known_hosts_line("*.example.com"),
        format!("@cert-authority *.example.com {}", ca.public_openssh)
    );
    let audit = last_audit(&svc).await;
    assert_eq!(audit.action, "host_certificate.issue");
    assert_eq!(audit.target, "host:web1");
}

#[tokio::test]
async fn a_name_the_host_was_not_enrolled_with_is_refused_and_audited() {
    let (svc, _) = setup().await;
    let err = svc
        .sign_host_key(
            &Actor::cli(),
            "web1",
            &host_key(1),
            None,
            &["db1.example.com".to_owned()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostCertError::Refused(HostRefusal::NameNotEnrolled { name, .. }) if name == "db1.example.com"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not enrolled as"), "{err}");
    let audit = last_audit(&svc).await;
    assert_eq!(audit.action, "host_certificate.refuse");
    assert!(audit.details.contains("name_not_enrolled"), "{audit:?}");
}

#[tokio::test]
async fn an_unknown_host_gets_nothing() {
    let (svc, _) = setup().await;
    let err = svc
        .sign_host_key(&Actor::cli(), "db1", &host_key(1), None, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, HostCertError::Service(ServiceError::NotFound { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn without_a_host_ca_nothing_is_signed() {
    let (svc, _) = service().await;
    let err = svc
        .sign_host_key(&Actor::cli(), "web1", &host_key(1), None, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, HostCertError::NoCa), "{err:?}");
}

#[tokio::test]
async fn a_host_asking_to_sign_another_hosts_key_is_refused_and_audited() {
    let (svc, _) = setup().await;
    svc.sign_host_key(&Actor::cli(), "web1", &host_key(1), None, &[])
        .await
        .unwrap();
    let err = svc
        .sign_host_key(&Actor::cli(), "web2", &host_key(1), None, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostCertError::Refused(HostRefusal::KeyOfAnotherHost { owner, .. }) if owner == "web1"),
        "{err:?}"
    );
    let audit = last_audit(&svc).await;
    assert_eq!(audit.action, "host_certificate.refuse");
    assert_eq!(audit.target, "host:web2");
    assert!(audit.details.contains("key_of_another_host"), "{audit:?}");
    // Its own keys, and renewing web1's, still work.
    svc.sign_host_key(&Actor::cli(), "web2", &host_key(2), None, &[])
        .await
        .unwrap();
    svc.sign_host_key(&Actor::cli(), "web1", &host_key(1), None, &[])
        .await
        .unwrap();
}

fn host_private(seed: u8) -> ssh_key::PrivateKey {
    ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
}

#[tokio::test]
async fn a_host_that_proves_holding_the_key_gets_its_certificate() {
    let (svc, _) = setup().await;
    let proof = signoff_proto::host_keys::prove(&host_private(1), "web1").unwrap();
    svc.sign_host_key(&Actor::cli(), "web1", &host_key(1), Some(&proof), &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_key_without_a_valid_proof_is_refused_and_audited() {
    let (svc, _) = setup().await;
    // No proof, a proof made for another host (web2 replaying web1's), a proof by
    // another key.
    let for_web2 = signoff_proto::host_keys::prove(&host_private(1), "web2").unwrap();
    let by_other = signoff_proto::host_keys::prove(&host_private(9), "web1").unwrap();
    for (proof, why) in [
        ("", signoff_proto::host_keys::ProofError::Missing),
        (
            for_web2.as_str(),
            signoff_proto::host_keys::ProofError::Invalid,
        ),
        (
            by_other.as_str(),
            signoff_proto::host_keys::ProofError::OtherKey,
        ),
    ] {
        let err = svc
            .sign_host_key(&Actor::cli(), "web1", &host_key(1), Some(proof), &[])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HostCertError::Refused(HostRefusal::NoPossession { why: w, .. }) if *w == why),
            "{err:?}"
        );
        let audit = last_audit(&svc).await;
        assert_eq!(audit.action, "host_certificate.refuse");
        assert!(
            audit.details.contains("\"refusal\":\"no_possession\""),
            "{}",
            audit.details
        );
    }
    // Nothing was bound: web2, which holds the key, still gets it certified.
    let proof = signoff_proto::host_keys::prove(&host_private(1), "web2").unwrap();
    svc.sign_host_key(&Actor::cli(), "web2", &host_key(1), Some(&proof), &[])
        .await
        .unwrap();
}
