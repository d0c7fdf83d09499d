use proptest::prelude::*;

use super::*;
use crate::model::UserStatus;
use crate::service::testing::service;
use crate::service::{Actor, NewGrant, NewHost, NewUser, UserUpdate};

const CA: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT ca";
const HOSTS: [&str; 3] = ["h0", "h1", "h2"];
const GROUPS: [&str; 3] = ["g0", "g1", "g2"];
const USERS: [&str; 3] = ["u0", "u1", "u2"];
const ACCOUNTS: [&str; 2] = ["deploy", "root"];

#[derive(Debug, Clone)]
enum Op {
    Grant(usize, usize, usize),
    Ungrant(usize),
    Disable(usize),
    Enable(usize),
    KeyIds(usize, u8),
    HostGroups(usize, Vec<usize>),
    RevokeKeyId(u8),
    RevokeSerial(u64),
    Unrevoke(usize),
    SignOff(usize),
    Reenable(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..2usize, 0..3usize).prop_map(|(u, a, g)| Op::Grant(u, a, g)),
        2 => (0..8usize).prop_map(Op::Ungrant),
        1 => (0..3usize).prop_map(Op::Disable),
        1 => (0..3usize).prop_map(Op::Enable),
        1 => (0..3usize, 0..4u8).prop_map(|(u, n)| Op::KeyIds(u, n)),
        1 => (0..3usize, prop::collection::vec(0..3usize, 0..3)).prop_map(|(h, g)| Op::HostGroups(h, g)),
        1 => (0..4u8).prop_map(Op::RevokeKeyId),
        1 => (1..50u64).prop_map(Op::RevokeSerial),
        1 => (0..8usize).prop_map(Op::Unrevoke),
        1 => (0..3usize).prop_map(Op::SignOff),
        1 => (0..3usize).prop_map(Op::Reenable),
    ]
}

async fn setup() -> Service {
    let (svc, _) = service().await;
    let a = Actor::cli();
    for g in GROUPS {
        svc.create_group(&a, g, "").await.unwrap();
    }
    for (i, h) in HOSTS.iter().enumerate() {
        let new = NewHost {
            id: (*h).into(),
            hostname: String::new(),
            groups: vec![GROUPS[i].into()],
        };
        svc.create_host(&a, new, "").await.unwrap();
    }
    for u in USERS {
        let new = NewUser {
            name: u.into(),
            key_ids: vec![format!("{u}@corp")],
            ..Default::default()
        };
        svc.create_user(&a, new, "").await.unwrap();
    }
    svc.add_ca(&a, "ca", CA, "").await.unwrap();
    svc.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]),
    ));
    svc
}

/// Applies an op; an op the model refuses (duplicate grant, …) changes nothing, which is
/// part of what is checked.
async fn run(svc: &Service, op: &Op) {
    let a = Actor::cli();
    let _ = match op {
        Op::Grant(u, acc, g) => {
            let new = NewGrant {
                user: USERS[*u].into(),
                account: ACCOUNTS[*acc].into(),
                group: GROUPS[*g].into(),
                not_after: None,
                approval_requested: false,
            };
            svc.create_grant(&a, new, "").await.map(drop)
        }
        Op::Ungrant(i) => match svc.list_grants(None).await.unwrap().get(*i) {
            Some(g) => svc.delete_grant(&a, g.id, "").await.map(drop),
            None => Ok(()),
        },
        Op::Disable(u) => svc
            .set_user_status(&a, USERS[*u], UserStatus::Disabled, "")
            .await
            .map(drop),
        Op::Enable(u) => svc
            .set_user_status(&a, USERS[*u], UserStatus::Active, "")
            .await
            .map(drop),
        Op::KeyIds(u, n) => {
            let ids = (0..*n).map(|i| format!("{}-k{i}", USERS[*u])).collect();
            let update = UserUpdate {
                key_ids: Some(ids),
                ..Default::default()
            };
            svc.update_user(&a, USERS[*u], update, "").await.map(drop)
        }
        Op::HostGroups(h, gs) => {
            let groups: Vec<String> = gs.iter().map(|g| GROUPS[*g].to_owned()).collect();
            svc.set_host_groups(&a, HOSTS[*h], &groups, "")
                .await
                .map(drop)
        }
        Op::RevokeKeyId(n) => {
            let r = Revocation::KeyId {
                ca: if n % 2 == 0 { None } else { Some("ca".into()) },
                key_id: format!("k{n}"),
            };
            svc.revoke(&a, r, "").await.map(drop)
        }
        Op::RevokeSerial(s) => svc
            .revoke(
                &a,
                Revocation::Serial {
                    ca: "ca".into(),
                    lo: *s,
                    hi: s + 3,
                },
                "",
            )
            .await
            .map(drop),
        Op::Unrevoke(i) => match svc.list_revocations().await.unwrap().get(*i) {
            Some(r) => svc.unrevoke(&a, r.id, "").await,
            None => Ok(()),
        },
        Op::SignOff(u) => svc.sign_off(&a, USERS[*u], "left").await.map(drop),
        Op::Reenable(u) => svc.reenable_user(&a, USERS[*u], "back").await.map(drop),
    };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// For every host and every pair of revisions, applying the delta to the older view
    /// gives the newer view, recomputed from scratch.
    #[test]
    fn delta_applied_to_old_view_is_new_view(ops in prop::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let svc = setup().await;
            let start = svc.revision();
            for op in &ops {
                run(&svc, op).await;
            }
            let end = svc.revision();
            for host in HOSTS {
                for from in start..=end {
                    let old = svc.host_view(host, from).await.unwrap();
                    for to in from..=end {
                        let mut applied = old.clone();
                        let delta = svc.host_delta(host, from, to).await.unwrap();
                        applied.apply(&delta);
                        assert_eq!(applied, svc.host_view(host, to).await.unwrap(), "{host} {from}->{to} after {ops:?}");
                        // The fan-out path gives the same delta to every host it serves.
                        let plan = svc.fanout_plan(from, to).await.unwrap();
                        if !plan.membership_changed.contains(host) {
                            let shared = svc.plan_delta(&plan, plan.groups_of(host)).await.unwrap();
                            assert_eq!(shared, delta, "fan-out delta of {host} {from}->{to} after {ops:?}");
                        }
                    }
                }
            }
        });
    }
}

#[tokio::test]
async fn grant_disable_and_revoke_show_in_the_view() {
    let svc = setup().await;
    let a = Actor::cli();
    let before = svc.revision();
    let new = NewGrant {
        user: "u0".into(),
        account: "deploy".into(),
        group: "g0".into(),
        not_after: None,
        approval_requested: false,
    };
    svc.create_grant(&a, new, "").await.unwrap();
    let granted = svc.revision();
    assert!(granted > before);
    let v = svc.host_view("h0", granted).await.unwrap();
    let e = &v.entries[&("deploy".to_owned(), "u0".to_owned())];
    assert_eq!(e.key_ids.iter().collect::<Vec<_>>(), vec!["u0@corp"]);
    assert_eq!(e.principals.iter().collect::<Vec<_>>(), vec!["u0"]);
    assert!(
        svc.host_view("h1", granted)
            .await
            .unwrap()
            .entries
            .is_empty(),
        "grant is for g0 only"
    );

    svc.set_user_status(&a, "u0", UserStatus::Disabled, "left")
        .await
        .unwrap();
    let disabled = svc.revision();
    let v = svc.host_view("h0", disabled).await.unwrap();
    assert!(v.entries.is_empty());
    assert!(v.disabled_users.contains("u0"));
    let d = svc.host_delta("h0", granted, disabled).await.unwrap();
    assert_eq!(d.remove.len(), 1);
    assert_eq!(d.add_disabled.iter().collect::<Vec<_>>(), vec!["u0"]);

    // A revocation reaches every host, even one where nothing else changed.
    svc.revoke(
        &a,
        Revocation::KeyId {
            ca: None,
            key_id: "u1@corp".into(),
        },
        "lost laptop",
    )
    .await
    .unwrap();
    let d = svc
        .host_delta("h2", disabled, svc.revision())
        .await
        .unwrap();
    assert_eq!(d.add_revocations.len(), 1);
    assert!(d.upsert.is_empty() && d.remove.is_empty());
}

#[tokio::test]
async fn unknown_ca_in_a_revocation_is_refused() {
    let svc = setup().await;
    let r = Revocation::Serial {
        ca: "nope".into(),
        lo: 1,
        hi: 2,
    };
    let err = svc.revoke(&Actor::cli(), r, "").await.unwrap_err();
    assert!(err.to_string().contains("not a trusted CA"), "{err}");
    let r = Revocation::Serial {
        ca: "ca".into(),
        lo: 0,
        hi: 2,
    };
    assert!(svc.revoke(&Actor::cli(), r, "").await.is_err());
}
