use signoff_proto::orders::{self, SignoffStatement};
use signoff_proto::v1;

use super::*;
use crate::model::Revocation;
use crate::service::testing::service;
use crate::service::{NewHost, NewUser};

const PLAIN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT laptop";

fn signer() -> ssh_key::PrivateKey {
    ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]))
}

async fn setup(hosts: &[&str]) -> Service {
    let (svc, _) = service().await;
    let a = Actor::cli();
    svc.create_group(&a, "web", "").await.unwrap();
    for h in hosts {
        let new = NewHost {
            id: (*h).into(),
            hostname: String::new(),
            groups: vec!["web".into()],
        };
        svc.create_host(&a, new, "").await.unwrap();
    }
    let new = NewUser {
        name: "mallory".into(),
        key_ids: vec!["mallory@corp".into(), "mallory-old".into()],
        public_keys: vec![PLAIN_KEY.into()],
        ..Default::default()
    };
    svc.create_user(&a, new, "").await.unwrap();
    svc.set_order_signer(signer());
    svc
}

fn result(id: i64, sessions: &[&str]) -> v1::SignoffResult {
    v1::SignoffResult {
        signoff_id: id as u64,
        enforced: true,
        ended_sessions: sessions.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_signoff_disables_revokes_and_reaches_every_view_signed() {
    let svc = setup(&["h1", "h2"]).await;
    let hr = Actor("token:hr".into());
    let record = svc
        .sign_off(&hr, "mallory", "left the company")
        .await
        .unwrap();
    assert_eq!(record.user, "mallory");
    assert_eq!(record.actor, "token:hr");
    assert!(record.in_force && record.completed_at.is_none());
    assert_eq!(
        record.tally(),
        (0, 0, 2),
        "no agent is connected: both offline"
    );
    assert_eq!(record.key_ids, vec!["mallory-old", "mallory@corp"]);

    let user = svc.get_user("mallory").await.unwrap();
    assert_eq!(user.status, UserStatus::Disabled);
    let revoked: Vec<Revocation> = svc
        .list_revocations()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.revocation)
        .collect();
    assert!(revoked.contains(&Revocation::KeyId {
        ca: None,
        key_id: "mallory@corp".into()
    }));
    assert!(revoked.contains(&Revocation::KeyId {
        ca: None,
        key_id: "mallory-old".into()
    }));
    assert!(
        revoked
            .iter()
            .any(|r| matches!(r, Revocation::Key { public_key } if public_key.starts_with("ssh-ed25519 AAAAC3")))
    );

    let view = svc.host_view("h2", record.revision).await.unwrap();
    let st = &view.signoffs[&record.id];
    let trusted = [signer().public_key().clone()];
    orders::verify(&st.statement, &st.signature, &trusted).expect("statement verifies");
    let statement = SignoffStatement::decode(&st.statement).unwrap();
    assert_eq!(statement.user, "mallory");
    assert_eq!(statement.operator, "token:hr");
    assert_eq!(statement.key_fingerprints.len(), 1);
    let before = svc.host_view("h2", record.revision - 1).await.unwrap();
    let delta = svc
        .host_delta("h2", record.revision - 1, record.revision)
        .await
        .unwrap();
    assert!(before.signoffs.is_empty());
    assert_eq!(
        delta.add_signoffs.keys().collect::<Vec<_>>(),
        vec![&record.id]
    );
}

#[tokio::test]
async fn signing_off_twice_returns_the_same_record_and_changes_nothing() {
    let svc = setup(&["h1"]).await;
    let a = Actor::cli();
    let first = svc.sign_off(&a, "mallory", "left").await.unwrap();
    let revision = svc.revision();
    let audit_rows = svc.audit_log("", None, 1000).await.unwrap().len();
    let again = svc.sign_off(&a, "mallory", "left again").await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.reason, "left");
    assert_eq!(svc.revision(), revision, "no new revision");
    assert_eq!(
        svc.audit_log("", None, 1000).await.unwrap().len(),
        audit_rows
    );
}

#[tokio::test]
async fn hosts_confirm_only_after_acking_the_revision_and_the_last_one_completes_it() {
    let svc = setup(&["h1", "h2"]).await;
    let record = svc
        .sign_off(&Actor::cli(), "mallory", "left")
        .await
        .unwrap();
    svc.set_host_online("h1", true).await.unwrap();
    assert_eq!(svc.get_signoff(record.id).await.unwrap().tally(), (0, 1, 1));

    // A result from a host that has not acked the revision does not confirm it.
    svc.record_signoff_result("h1", &result(record.id, &[]))
        .await
        .unwrap();
    assert_eq!(svc.get_signoff(record.id).await.unwrap().tally(), (0, 1, 1));

    svc.record_contact("h1", Some(record.revision), None, None)
        .await
        .unwrap();
    svc.record_signoff_result("h1", &result(record.id, &["111:222"]))
        .await
        .unwrap();
    let r = svc.get_signoff(record.id).await.unwrap();
    assert_eq!(r.tally(), (1, 0, 1));
    assert_eq!(r.hosts[0].killed_sessions, vec!["111:222"]);
    assert!(r.completed_at.is_none());

    // Processes left after SIGKILL: not confirmed, and why is shown.
    svc.record_contact("h2", Some(record.revision), None, None)
        .await
        .unwrap();
    let mut stuck = result(record.id, &[]);
    stuck.remaining_pids = vec![4242];
    svc.record_signoff_result("h2", &stuck).await.unwrap();
    let r = svc.get_signoff(record.id).await.unwrap();
    assert_eq!(r.tally(), (1, 0, 1));
    assert!(r.hosts[1].last_error.as_deref().unwrap().contains("4242"));

    svc.record_signoff_result("h2", &result(record.id, &[]))
        .await
        .unwrap();
    let r = svc.get_signoff(record.id).await.unwrap();
    assert_eq!(r.tally(), (2, 0, 0));
    assert!(r.completed_at.is_some());
    let audit = svc.audit_log("signoff", None, 100).await.unwrap();
    assert!(
        audit.iter().any(|e| e.action == "signoff.enforced"),
        "the session h1 ended is audited"
    );
}

#[tokio::test]
async fn a_signoff_with_no_enrolled_host_is_complete_at_once() {
    let svc = setup(&[]).await;
    let r = svc
        .sign_off(&Actor::cli(), "mallory", "left")
        .await
        .unwrap();
    assert!(r.completed_at.is_some());
}

#[tokio::test]
async fn reenabling_withdraws_the_statement_and_the_revocations_it_added() {
    let svc = setup(&["h1"]).await;
    let a = Actor::cli();
    // Revoked by hand before: stays revoked after re-enabling.
    svc.revoke(
        &a,
        Revocation::KeyId {
            ca: None,
            key_id: "mallory-old".into(),
        },
        "old laptop lost",
    )
    .await
    .unwrap();
    let record = svc.sign_off(&a, "mallory", "left").await.unwrap();
    assert_eq!(svc.list_revocations().await.unwrap().len(), 3);

    let refused = svc
        .set_user_status(&a, "mallory", UserStatus::Active, "oops")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("reenable"), "{refused}");

    let user = svc.reenable_user(&a, "mallory", "rehired").await.unwrap();
    assert_eq!(user.status, UserStatus::Active);
    let left: Vec<Revocation> = svc
        .list_revocations()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.revocation)
        .collect();
    assert_eq!(
        left,
        vec![Revocation::KeyId {
            ca: None,
            key_id: "mallory-old".into()
        }]
    );
    let view = svc.host_view("h1", svc.revision()).await.unwrap();
    assert!(view.signoffs.is_empty());
    assert!(!svc.get_signoff(record.id).await.unwrap().in_force);
    let err = svc.reenable_user(&a, "mallory", "again").await.unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(_)), "{err}");

    // Signed off again: a new record.
    let second = svc.sign_off(&a, "mallory", "left again").await.unwrap();
    assert_ne!(second.id, record.id);
}

#[tokio::test]
async fn signed_off_users_are_those_with_a_signoff_in_force() {
    let svc = setup(&["h1"]).await;
    let a = Actor::cli();
    let bob = NewUser {
        name: "bob".into(),
        key_ids: vec!["bob@corp".into()],
        ..Default::default()
    };
    svc.create_user(&a, bob, "").await.unwrap();
    // Disabled by hand: not signed off.
    svc.set_user_status(&a, "bob", UserStatus::Disabled, "on leave")
        .await
        .unwrap();
    assert!(svc.signed_off_users().await.unwrap().is_empty());
    svc.sign_off(&a, "mallory", "left").await.unwrap();
    assert_eq!(
        svc.signed_off_users().await.unwrap(),
        ["mallory".to_owned()].into()
    );
    svc.reenable_user(&a, "mallory", "rehired").await.unwrap();
    assert!(svc.signed_off_users().await.unwrap().is_empty());
}

#[tokio::test]
async fn without_a_signing_key_or_a_reason_nothing_is_signed_off() {
    let (svc, _) = service().await;
    let a = Actor::cli();
    svc.create_user(
        &a,
        NewUser {
            name: "mallory".into(),
            ..Default::default()
        },
        "",
    )
    .await
    .unwrap();
    let revision = svc.revision();
    let err = svc.sign_off(&a, "mallory", "left").await.unwrap_err();
    assert!(err.to_string().contains("order-signing key"), "{err}");
    svc.set_order_signer(signer());
    let err = svc.sign_off(&a, "mallory", "  ").await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(_)), "{err}");
    let err = svc.sign_off(&a, "nobody", "left").await.unwrap_err();
    assert!(matches!(err, ServiceError::NotFound { .. }), "{err}");
    assert_eq!(svc.revision(), revision);
    assert_eq!(
        svc.get_user("mallory").await.unwrap().status,
        UserStatus::Active
    );
}

#[tokio::test]
async fn the_list_shows_every_signoff_with_its_own_hosts_newest_first() {
    let svc = setup(&["h1", "h2", "h3"]).await;
    let a = Actor::cli();
    let first = svc.sign_off(&a, "mallory", "left").await.unwrap();
    svc.reenable_user(&a, "mallory", "rehired").await.unwrap();
    svc.create_host(
        &a,
        NewHost {
            id: "h4".into(),
            hostname: String::new(),
            groups: vec![],
        },
        "",
    )
    .await
    .unwrap();
    let second = svc.sign_off(&a, "mallory", "left again").await.unwrap();
    svc.set_host_online("h2", true).await.unwrap();
    svc.record_contact("h1", Some(second.revision), None, None)
        .await
        .unwrap();
    svc.record_signoff_result("h1", &result(second.id, &["9:9"]))
        .await
        .unwrap();

    let listed = svc.list_signoffs().await.unwrap();
    let ids: Vec<i64> = listed.iter().map(|r| r.id).collect();
    assert_eq!(ids, [second.id, first.id]);
    for r in &listed {
        assert_eq!(
            *r,
            svc.get_signoff(r.id).await.unwrap(),
            "sign-off {}",
            r.id
        );
    }
    let hosts = |r: &SignoffRecord| r.hosts.iter().map(|h| h.host.clone()).collect::<Vec<_>>();
    assert_eq!(hosts(&listed[0]), ["h1", "h2", "h3", "h4"]);
    assert_eq!(hosts(&listed[1]), ["h1", "h2", "h3"], "h4 came later");
    assert_eq!(listed[0].tally(), (1, 1, 2));
    assert_eq!(listed[0].hosts[0].killed_sessions, ["9:9"]);
    assert!(listed[0].in_force && !listed[1].in_force);
}

#[tokio::test]
async fn a_corrupt_stored_progress_is_an_error_not_an_empty_list() {
    let svc = setup(&["h1"]).await;
    let record = svc
        .sign_off(&Actor::cli(), "mallory", "left")
        .await
        .unwrap();
    svc.store()
        .exec_for_test("UPDATE signoff_hosts SET ended_sessions = 'not json'")
        .await;
    for err in [
        svc.get_signoff(record.id).await.unwrap_err(),
        svc.list_signoffs().await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                ServiceError::Corrupt {
                    what: "signoff_hosts.ended_sessions",
                    ..
                }
            ),
            "{err}"
        );
    }
    let err = svc
        .record_signoff_result("h1", &result(record.id, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Corrupt { .. }), "{err}");

    // One zero byte, in each engine's literal for a blob.
    let zero = match svc.store().backend() {
        store::Backend::Sqlite => "x'00'",
        store::Backend::Postgres => "'\\x00'::bytea",
    };
    svc.store()
        .exec_for_test(&format!("UPDATE signoffs SET statement = {zero}"))
        .await;
    svc.store()
        .exec_for_test("UPDATE signoff_hosts SET ended_sessions = '[]'")
        .await;
    let err = svc.get_signoff(record.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::Corrupt {
                what: "signoffs.statement",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn every_signoff_a_person_was_reenabled_from_is_pending_until_signed_off_again() {
    let svc = setup(&["h1"]).await;
    let a = Actor::cli();
    let pending = || async {
        svc.pending_reenables()
            .await
            .unwrap()
            .iter()
            .map(|r| (r.signoff_id, r.reenabled))
            .collect::<Vec<_>>()
    };
    let first = svc.sign_off(&a, "mallory", "left").await.unwrap();
    assert!(pending().await.is_empty(), "in force, no approvals yet");
    svc.reenable_user(&a, "mallory", "rehired").await.unwrap();
    assert_eq!(pending().await, [(first.id, true)]);

    // Signed off again: the first re-enable is moot while the second sign-off is in force.
    let second = svc.sign_off(&a, "mallory", "left again").await.unwrap();
    assert!(pending().await.is_empty());
    // An approval collected before the re-enable lists it.
    let bytes = svc.reenable_approvals(second.id).await.unwrap().bytes;
    let approver = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]));
    let signature = approver
        .sign(
            signoff_proto::approvals::NAMESPACE,
            ssh_key::HashAlg::Sha512,
            bytes.as_bytes(),
        )
        .unwrap()
        .to_pem(ssh_key::LineEnding::LF)
        .unwrap();
    svc.approve_reenable(&a, second.id, &signature)
        .await
        .unwrap();
    assert_eq!(pending().await, [(second.id, false)]);
    // Re-enabled again: hosts hold her out until each sign-off they enforced has its
    // approvals, so both are listed, oldest first.
    svc.reenable_user(&a, "mallory", "rehired again")
        .await
        .unwrap();
    assert_eq!(pending().await, [(first.id, true), (second.id, true)]);
}
