use std::sync::atomic::Ordering;

use super::*;
use crate::model::Revocation;
use crate::service::testing::{ManualClock, service};
use crate::service::{NewUser, UserUpdate};

const ALICE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT laptop";

fn key(seed: u8) -> String {
    ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
        .public_key()
        .to_openssh()
        .unwrap()
}

fn ca_key() -> ssh_key::PrivateKey {
    ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[42; 32]))
}

async fn setup() -> (Service, Arc<ManualClock>) {
    let (svc, clock) = service().await;
    let a = Actor::cli();
    svc.set_user_ca(UserCa::new(ca_key(), CertPolicy::default()).unwrap());
    let ca = svc.user_ca().unwrap();
    svc.ensure_trusted_ca(&a, "signoff", &ca.public_openssh, "test")
        .await
        .unwrap();
    for (name, k) in [("alice", ALICE_KEY.to_owned()), ("bob", key(2))] {
        let new = NewUser {
            name: name.into(),
            principals: vec![name.into(), format!("{name}-admin")],
            public_keys: vec![k],
            ..Default::default()
        };
        svc.create_user(&a, new, "").await.unwrap();
    }
    svc.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]),
    ));
    (svc, clock)
}

fn ask(public_key: &str) -> IssueRequest {
    IssueRequest {
        public_key: public_key.into(),
        ..Default::default()
    }
}

/// What `ssh-keygen -L` says about a certificate.
fn keygen_listing(cert: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id-cert.pub");
    std::fs::write(&path, format!("{cert}\n")).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn last_audit(svc: &Service) -> crate::audit::Record {
    svc.audit_log("", None, 1).await.unwrap().remove(0)
}

#[tokio::test]
async fn ssh_keygen_reads_what_is_issued() {
    let (svc, clock) = setup().await;
    let now = clock.0.load(Ordering::SeqCst);
    let req = IssueRequest {
        public_key: ALICE_KEY.into(),
        ttl: Some(3600),
        source_address: Some("10.0.0.0/8,192.0.2.7".into()),
    };
    let c = svc
        .issue_certificate(&Actor::cli(), "alice", &req)
        .await
        .unwrap();
    assert_eq!(c.serial, 1);
    assert_eq!(c.valid_before, now + 3600);
    let listing = keygen_listing(&c.certificate);
    let ca_fp = svc.user_ca().unwrap().fingerprint.clone();
    for expected in [
        "Type: ssh-ed25519-cert-v01@openssh.com user certificate",
        "Key ID: \"alice\"",
        "Serial: 1",
        &format!("Signing CA: ED25519 {ca_fp}"),
        "alice-admin",
        "source-address 10.0.0.0/8,192.0.2.7",
        "permit-pty",
    ] {
        assert!(listing.contains(expected), "{expected:?} not in\n{listing}");
    }
    let principals = listing
        .split("Principals:")
        .nth(1)
        .and_then(|s| s.split("Critical Options:").next())
        .unwrap();
    assert_eq!(
        principals.split_whitespace().collect::<Vec<_>>(),
        ["alice", "alice-admin"]
    );

    // The next one gets the next serial, the default 8 h, and no source-address.
    let c2 = svc
        .issue_certificate(&Actor::cli(), "alice", &ask(ALICE_KEY))
        .await
        .unwrap();
    assert_eq!(c2.serial, 2);
    assert_eq!(c2.valid_before - now, 8 * 3600);
    assert!(!keygen_listing(&c2.certificate).contains("source-address"));

    let audit = last_audit(&svc).await;
    assert_eq!(audit.action, "certificate.issue");
    assert_eq!(audit.target, "user:alice");
    assert!(audit.details.contains("\"serial\":2"), "{}", audit.details);
    assert_eq!(svc.list_certificates("alice").await.unwrap().len(), 2);
    // The key ID hosts attribute the certificate by is the person's now.
    assert_eq!(svc.get_user("alice").await.unwrap().key_ids, ["alice"]);
}

#[tokio::test]
async fn expired_certificates_leave_the_listing() {
    let (svc, clock) = setup().await;
    let req = IssueRequest {
        ttl: Some(60),
        ..ask(ALICE_KEY)
    };
    svc.issue_certificate(&Actor::cli(), "alice", &req)
        .await
        .unwrap();
    assert_eq!(svc.list_certificates("alice").await.unwrap().len(), 1);
    clock.0.fetch_add(61, Ordering::SeqCst);
    assert!(svc.list_certificates("alice").await.unwrap().is_empty());
}

async fn refused(svc: &Service, user: &str, req: &IssueRequest) -> Refusal {
    match svc.issue_certificate(&Actor::cli(), user, req).await {
        Err(IssueError::Refused(r)) => {
            let audit = last_audit(svc).await;
            assert_eq!(audit.action, "certificate.refuse");
            assert_eq!(audit.target, format!("user:{user}"));
            assert!(audit.details.contains(r.code()), "{}", audit.details);
            assert!(svc.list_certificates(user).await.unwrap().is_empty());
            r
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_disabled_person_is_refused() {
    let (svc, _) = setup().await;
    svc.set_user_status(&Actor::cli(), "alice", UserStatus::Disabled, "left")
        .await
        .unwrap();
    assert_eq!(
        refused(&svc, "alice", &ask(ALICE_KEY)).await,
        Refusal::Disabled("alice".into())
    );
}

#[tokio::test]
async fn a_signed_off_person_is_refused() {
    let (svc, _) = setup().await;
    svc.sign_off(&Actor::cli(), "alice", "left").await.unwrap();
    assert_eq!(
        refused(&svc, "alice", &ask(ALICE_KEY)).await,
        Refusal::SignedOff("alice".into())
    );
}

#[tokio::test]
async fn an_unregistered_key_is_refused() {
    let (svc, _) = setup().await;
    assert!(matches!(
        refused(&svc, "alice", &ask(&key(9))).await,
        Refusal::KeyNotRegistered(_)
    ));
}

#[tokio::test]
async fn a_key_of_another_person_is_refused() {
    let (svc, _) = setup().await;
    assert!(matches!(
        refused(&svc, "alice", &ask(&key(2))).await,
        Refusal::KeyOfAnotherPerson(_)
    ));
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    let (svc, _) = setup().await;
    let revocation = Revocation::Key {
        public_key: ALICE_KEY.into(),
    };
    svc.revoke(&Actor::cli(), revocation, "stolen")
        .await
        .unwrap();
    assert!(matches!(
        refused(&svc, "alice", &ask(ALICE_KEY)).await,
        Refusal::KeyRevoked(_)
    ));
}

#[tokio::test]
async fn a_revoked_key_id_is_refused() {
    let (svc, _) = setup().await;
    let revocation = Revocation::KeyId {
        ca: None,
        key_id: "alice".into(),
    };
    svc.revoke(&Actor::cli(), revocation, "lost laptop")
        .await
        .unwrap();
    assert_eq!(
        refused(&svc, "alice", &ask(ALICE_KEY)).await,
        Refusal::KeyIdRevoked("alice".into())
    );
}

#[tokio::test]
async fn a_key_id_held_by_another_person_is_refused() {
    let (svc, _) = setup().await;
    let update = UserUpdate {
        key_ids: Some(vec!["alice".into()]),
        ..Default::default()
    };
    svc.update_user(&Actor::cli(), "bob", update, "")
        .await
        .unwrap();
    assert_eq!(
        refused(&svc, "alice", &ask(ALICE_KEY)).await,
        Refusal::KeyIdTaken("alice".into())
    );
}

#[tokio::test]
async fn longer_than_policy_is_refused_and_a_person_policy_narrows_it() {
    let (svc, _) = setup().await;
    let req = IssueRequest {
        ttl: Some(24 * 3600 + 1),
        ..ask(ALICE_KEY)
    };
    assert_eq!(
        refused(&svc, "alice", &req).await,
        Refusal::TooLong {
            asked: 24 * 3600 + 1,
            max: 24 * 3600
        }
    );
    svc.set_certificate_policy(
        &Actor::cli(),
        "alice",
        600,
        3600,
        Some("10.1.0.0/16"),
        "contractor",
    )
    .await
    .unwrap();
    let req = IssueRequest {
        ttl: Some(3601),
        ..ask(ALICE_KEY)
    };
    assert!(matches!(
        refused(&svc, "alice", &req).await,
        Refusal::TooLong { max: 3600, .. }
    ));
    let c = svc
        .issue_certificate(&Actor::cli(), "alice", &ask(ALICE_KEY))
        .await
        .unwrap();
    assert_eq!(c.valid_before - c.valid_after, 600 + BACKDATE_SECS);
    assert_eq!(c.source_address.as_deref(), Some("10.1.0.0/16"));
    // A person's policy cannot exceed the server's.
    assert!(
        svc.set_certificate_policy(&Actor::cli(), "alice", 600, 25 * 3600, None, "")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn bad_input_is_invalid_not_a_refusal() {
    let (svc, _) = setup().await;
    for req in [
        ask("not a key"),
        IssueRequest {
            ttl: Some(0),
            ..ask(ALICE_KEY)
        },
        IssueRequest {
            source_address: Some("10.0.0.0/8;rm".into()),
            ..ask(ALICE_KEY)
        },
    ] {
        assert!(matches!(
            svc.issue_certificate(&Actor::cli(), "alice", &req).await,
            Err(IssueError::Service(ServiceError::Invalid(_)))
        ));
    }
    assert!(matches!(
        svc.issue_certificate(&Actor::cli(), "nobody", &ask(ALICE_KEY))
            .await,
        Err(IssueError::Service(ServiceError::NotFound { .. }))
    ));
}

#[tokio::test]
async fn without_a_ca_nothing_is_issued() {
    let (svc, _) = service().await;
    assert!(matches!(
        svc.issue_certificate(&Actor::cli(), "alice", &ask(ALICE_KEY))
            .await,
        Err(IssueError::NoCa)
    ));
}

/// A revoked serial of an issued certificate stays in the KRL while the certificate could
/// be used, and leaves it (and every host view) once it has expired.
#[tokio::test]
async fn a_revoked_issued_serial_leaves_the_krl_after_its_expiry() {
    let (svc, clock) = setup().await;
    let req = IssueRequest {
        ttl: Some(600),
        ..ask(ALICE_KEY)
    };
    let c = svc
        .issue_certificate(&Actor::cli(), "alice", &req)
        .await
        .unwrap();
    let ca = svc.user_ca().unwrap().fingerprint.clone();
    let serial = Revocation::Serial {
        ca: ca.clone(),
        lo: c.serial,
        hi: c.serial,
    };
    let record = svc
        .revoke(&Actor::cli(), serial.clone(), "stolen")
        .await
        .unwrap();
    assert_eq!(record.valid_before, Some(c.valid_before));
    let empty = svc.krl(None).await.map(|k| k.len()).unwrap();
    assert!(
        svc.host_view("h", svc.revision())
            .await
            .unwrap()
            .revocations
            .contains(&serial)
    );
    // Not yet: the certificate is still valid.
    clock.0.store(c.valid_before - 1, Ordering::SeqCst);
    assert_eq!(svc.expire_revocations(&Actor::cli()).await.unwrap(), 0);
    assert_eq!(svc.list_revocations().await.unwrap().len(), 1);

    clock.0.store(c.valid_before, Ordering::SeqCst);
    assert_eq!(svc.expire_revocations(&Actor::cli()).await.unwrap(), 1);
    assert!(svc.list_revocations().await.unwrap().is_empty());
    assert!(
        svc.krl(None).await.unwrap().len() < empty,
        "the serial left the KRL"
    );
    let view = svc.host_view("h", svc.revision()).await.unwrap();
    assert!(view.revocations.is_empty());
    let audit = last_audit(&svc).await;
    assert_eq!(audit.action, "revocation.expire");
    let details: serde_json::Value = serde_json::from_str(&audit.details).unwrap();
    assert_eq!(details["count"], 1);
    assert_eq!(details["ids"], serde_json::json!([record.id]));
    assert_eq!(details["until_rev"], svc.revision());
    // Nothing more to do.
    assert_eq!(svc.expire_revocations(&Actor::cli()).await.unwrap(), 0);
}

/// An outside revocation given a `valid_before` leaves the same way; one without stays.
#[tokio::test]
async fn an_outside_revocation_with_valid_before_expires_and_one_without_stays() {
    let (svc, clock) = setup().await;
    let now = svc.now();
    let until = Revocation::KeyId {
        ca: None,
        key_id: "old@corp".into(),
    };
    let forever = Revocation::KeyId {
        ca: None,
        key_id: "other@corp".into(),
    };
    svc.revoke_until(&Actor::cli(), until, Some(now + 60), "")
        .await
        .unwrap();
    svc.revoke(&Actor::cli(), forever.clone(), "")
        .await
        .unwrap();
    clock.0.store(now + 60, Ordering::SeqCst);
    assert_eq!(svc.expire_revocations(&Actor::cli()).await.unwrap(), 1);
    let left: Vec<Revocation> = svc
        .list_revocations()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.revocation)
        .collect();
    assert_eq!(left, [forever]);
}

/// A revocation that would end before it starts is refused, not acknowledged and never in
/// force (schemathesis sent `valid_before` far in the past and got a 201).
#[tokio::test]
async fn a_valid_before_in_the_past_is_refused() {
    let (svc, _) = service().await;
    let now = svc.now();
    for before in [now, now - 1, i64::MIN] {
        let err = svc
            .revoke_until(
                &Actor::cli(),
                Revocation::KeyId {
                    ca: None,
                    key_id: "mallory@corp".into(),
                },
                Some(before),
                "",
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("valid_before"), "{err}");
    }
    assert!(svc.list_revocations().await.unwrap().is_empty());
}

fn fingerprint(line: &str) -> String {
    parse_public_key("k", line).unwrap().fingerprint
}

#[tokio::test]
async fn the_holder_of_a_registered_key_gets_certificates_for_their_own_keys_only() {
    let (svc, _) = setup().await;
    svc.update_user(
        &Actor::cli(),
        "alice",
        UserUpdate {
            public_keys: Some(vec![ALICE_KEY.into(), key(5)]),
            ..Default::default()
        },
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        svc.key_owner(&fingerprint(ALICE_KEY)).await.unwrap(),
        Some("alice".to_owned())
    );
    // Authenticated with one key, certified for the other.
    let c = svc
        .issue_certificate_to_key_holder(&fingerprint(ALICE_KEY), &ask(&key(5)))
        .await
        .unwrap();
    assert_eq!(c.user, "alice");
    assert_eq!(c.key_fingerprint, fingerprint(&key(5)));
    let audit = last_audit(&svc).await;
    assert_eq!(audit.action, "certificate.issue");
    assert_eq!(audit.actor, "ssh:alice");
    // Bob's key is not Alice's to certify.
    match svc
        .issue_certificate_to_key_holder(&fingerprint(ALICE_KEY), &ask(&key(2)))
        .await
    {
        Err(IssueError::Refused(Refusal::KeyOfAnotherPerson(_))) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_key_holder_whose_key_is_registered_to_nobody_is_refused_and_audited() {
    let (svc, _) = setup().await;
    let stranger = fingerprint(&key(9));
    assert_eq!(svc.key_owner(&stranger).await.unwrap(), None);
    match svc
        .issue_certificate_to_key_holder(&stranger, &ask(&key(9)))
        .await
    {
        Err(IssueError::Refused(Refusal::KeyNotRegistered(fp))) => assert_eq!(fp, stranger),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let audit = last_audit(&svc).await;
    assert_eq!(audit.action, "certificate.refuse");
    assert_eq!(audit.target, format!("key:{stranger}"));
    assert!(
        audit.details.contains("key_not_registered"),
        "{}",
        audit.details
    );
}

#[tokio::test]
async fn a_certificate_is_revoked_by_serial_only_for_the_person_it_was_issued_to() {
    let (svc, _) = setup().await;
    let c = svc
        .issue_certificate(&Actor::cli(), "alice", &ask(ALICE_KEY))
        .await
        .unwrap();
    assert!(!svc.list_certificates("alice").await.unwrap()[0].revoked);
    let err = svc
        .revoke_certificate(&Actor::cli(), "bob", c.serial, "stolen")
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound { .. }), "{err:?}");
    let record = svc
        .revoke_certificate(&Actor::cli(), "alice", c.serial, "stolen")
        .await
        .unwrap();
    assert_eq!(
        record.revocation,
        Revocation::Serial {
            ca: c.ca_fingerprint.clone(),
            lo: c.serial,
            hi: c.serial
        }
    );
    assert_eq!(record.valid_before, Some(c.valid_before));
    assert!(svc.list_certificates("alice").await.unwrap()[0].revoked);
}

#[tokio::test]
async fn a_group_policy_bounds_the_people_with_a_grant_there_and_the_strictest_applies() {
    let (svc, clock) = setup().await;
    let a = Actor::cli();
    svc.create_group(&a, "prod", "").await.unwrap();
    svc.create_group(&a, "dev", "").await.unwrap();
    svc.set_group_certificate_policy(&a, "prod", 1800, 3600, "prod is strict")
        .await
        .unwrap();
    svc.set_group_certificate_policy(&a, "dev", 4 * 3600, 12 * 3600, "")
        .await
        .unwrap();
    assert!(matches!(
        svc.set_group_certificate_policy(&a, "prod", 60, 25 * 3600, "")
            .await,
        Err(ServiceError::Invalid(_))
    ));
    assert!(matches!(
        svc.set_group_certificate_policy(&a, "nowhere", 60, 60, "")
            .await,
        Err(ServiceError::NotFound { .. })
    ));
    let validity = |c: &IssuedCertificate| c.valid_before - c.valid_after - BACKDATE_SECS;

    // No grant: the server's policy.
    let c = svc
        .issue_certificate(&a, "alice", &ask(ALICE_KEY))
        .await
        .unwrap();
    assert_eq!(validity(&c), 8 * 3600);
    // A grant in dev: dev's.
    svc.create_grant(&a, grant("alice", "dev", None), "")
        .await
        .unwrap();
    let c = svc
        .issue_certificate(&a, "alice", &ask(ALICE_KEY))
        .await
        .unwrap();
    assert_eq!(validity(&c), 4 * 3600);
    // And one in prod: the strictest, prod's.
    let now = clock.0.load(Ordering::SeqCst);
    svc.create_grant(&a, grant("alice", "prod", Some(now + 100)), "")
        .await
        .unwrap();
    let c = svc
        .issue_certificate(&a, "alice", &ask(ALICE_KEY))
        .await
        .unwrap();
    assert_eq!(validity(&c), 1800);
    let long = IssueRequest {
        ttl: Some(3601),
        ..ask(ALICE_KEY)
    };
    assert!(matches!(
        svc.issue_certificate(&a, "alice", &long).await,
        Err(IssueError::Refused(Refusal::TooLong {
            asked: 3601,
            max: 3600
        }))
    ));
    // The prod grant has ended: dev's again.
    clock.0.fetch_add(101, Ordering::SeqCst);
    let c = svc
        .issue_certificate(&a, "alice", &ask(ALICE_KEY))
        .await
        .unwrap();
    assert_eq!(validity(&c), 4 * 3600);
    let audit = svc
        .audit_log("certificate.group_policy", None, 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 2);
}

fn grant(user: &str, group: &str, not_after: Option<i64>) -> crate::service::NewGrant {
    crate::service::NewGrant {
        user: user.into(),
        account: "deploy".into(),
        group: group.into(),
        not_after,
        approval_requested: false,
    }
}

#[tokio::test]
async fn a_corrupt_stored_certificate_is_an_error_not_an_empty_listing() {
    let (svc, _) = setup().await;
    svc.issue_certificate(&Actor::cli(), "alice", &ask(ALICE_KEY))
        .await
        .unwrap();
    svc.store()
        .exec_for_test("UPDATE issued_certificates SET principals = '[\"alice\",'")
        .await;
    let err = svc.list_certificates("alice").await.unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Corrupt {
                what: "certificate principals",
                ..
            }
        ),
        "{err}"
    );
}
