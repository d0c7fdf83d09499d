//! Several control planes on one database (issue 18): every change is serialised by the
//! database, not by a process, so concurrent writers keep one audit chain and one gapless
//! sequence of revisions. Runs on SQLite (three pools on one file) and, under
//! `SIGNOFF_TEST_POSTGRES`, on PostgreSQL (the advisory lock).

use std::sync::Arc;

use super::grants::NewGrant;
use super::users::NewUser;
use super::{Actor, Service, SystemClock};
use crate::model::Revocation;
use crate::store;

const REPLICAS: usize = 3;
const PEOPLE: usize = 6;

async fn replica(url: &str, n: usize) -> Service {
    let svc = Service::new(store::open(url).await.unwrap(), Arc::new(SystemClock))
        .await
        .unwrap();
    svc.set_order_signer(ssh_key::PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&[u8::try_from(n).unwrap() + 1; 32]),
    ));
    svc
}

/// One replica's share of the load: people, a group, grants, a revocation and a sign-off
/// per person, interleaved with the other replicas' writes.
async fn work(svc: Service, r: usize) {
    let a = Actor::cli();
    svc.create_group(&a, &format!("g{r}"), "load")
        .await
        .unwrap();
    for p in 0..PEOPLE {
        let name = format!("p{r}x{p}");
        let new = NewUser {
            name: name.clone(),
            key_ids: vec![format!("{name}@example.com")],
            ..Default::default()
        };
        svc.create_user(&a, new, "load").await.unwrap();
        let grant = NewGrant {
            user: name.clone(),
            account: "deploy".into(),
            group: format!("g{r}"),
            not_after: None,
            approval_requested: false,
        };
        svc.create_grant(&a, grant, "load").await.unwrap();
        let key_id = Revocation::KeyId {
            ca: None,
            key_id: format!("stolen-{name}"),
        };
        svc.revoke(&a, key_id, "load").await.unwrap();
        if p % 2 == 0 {
            svc.sign_off(&a, &name, "left").await.unwrap();
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_on_every_replica_keep_one_chain_and_gapless_revisions() {
    let tmp = tempfile::tempdir().unwrap();
    let url = store::test_url(tmp.path()).await;
    let mut replicas = Vec::new();
    for n in 0..REPLICAS {
        replicas.push(replica(&url, n).await);
    }
    let tasks: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(r, svc)| tokio::spawn(work(svc.clone(), r)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    let svc = &replicas[0];
    let check = crate::audit::verify(svc.store()).await.unwrap();
    assert_eq!(check.broken, None, "{check:?}");
    assert_eq!(
        check.rows,
        i64::try_from(REPLICAS * (1 + PEOPLE * 3 + PEOPLE.div_ceil(2))).unwrap(),
        "one audit row per change"
    );

    let mut c = svc.store().conn().await.unwrap();
    let revisions = store::audit::revision_numbers(c.db()).await.unwrap();
    // Per person a user, a grant, a revocation, and every other one a sign-off: each is one
    // revision, numbered 1, 2, … with none twice and none missing. (An empty group changes
    // no host's view: it is audited without a revision.)
    let expected = REPLICAS * (PEOPLE * 3 + PEOPLE.div_ceil(2));
    let want: Vec<i64> = (1..=i64::try_from(expected).unwrap()).collect();
    assert_eq!(revisions, want);
    // Every replica reads the same latest revision from the store.
    for other in &replicas {
        other.refresh_revision().await.unwrap();
        assert_eq!(other.revision(), i64::try_from(expected).unwrap());
    }
}
