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

mod leases_and_orders {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use signoff_proto::v1;

    use super::super::hosts::NewHost;
    use super::super::replicas::LEASE_SECS;
    use super::super::sessions::Connection;
    use super::super::testing::ManualClock;
    use super::super::{Actor, Service};
    use crate::store;

    /// Two replicas, "a" and "b", on one database with one clock, and host `web1`.
    async fn two() -> (Service, Service, Arc<ManualClock>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let url = store::test_url(tmp.path()).await;
        let clock = Arc::new(ManualClock(AtomicI64::new(1_800_000_000)));
        let mut replicas = Vec::new();
        for (n, id) in ["a", "b"].into_iter().enumerate() {
            let svc = Service::new(store::open(&url).await.unwrap(), clock.clone())
                .await
                .unwrap();
            svc.set_order_signer(ssh_key::PrivateKey::from(
                ssh_key::private::Ed25519Keypair::from_seed(&[u8::try_from(n).unwrap() + 7; 32]),
            ));
            svc.start_replica(id).await.unwrap();
            replicas.push(svc);
        }
        let b = replicas.pop().unwrap();
        let a = replicas.pop().unwrap();
        let host = NewHost {
            id: "web1".into(),
            hostname: String::new(),
            groups: vec![],
        };
        a.create_host(&Actor::cli(), host, "").await.unwrap();
        (a, b, clock, tmp)
    }

    /// `svc` holds web1's stream, with one live session `1:1` reported.
    async fn connect(svc: &Service) -> Connection {
        let conn = svc.host_connected("web1");
        svc.agent_connected("web1", 0, "test", None).await.unwrap();
        let s = v1::Session {
            id: "1:1".into(),
            account: "deploy".into(),
            key_id: "alice@corp".into(),
            source_address: "127.0.0.1".into(),
            source_port: 50000,
            started_at: 1_800_000_000,
            ..Default::default()
        };
        svc.session_started("web1", &s).await.unwrap();
        conn
    }

    async fn online(svc: &Service) -> bool {
        let mut c = svc.store().conn().await.unwrap();
        store::hosts::online(c.db(), "web1").await.unwrap().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kill_made_on_one_replica_is_sent_once_by_the_replica_holding_the_stream() {
        let (a, b, _, _tmp) = two().await;
        let mut conn = connect(&b).await;
        // Replica b's loop: claims what is forwarded to it (on PostgreSQL a NOTIFY wakes it;
        // the poll is the same call).
        let claimer = {
            let b = b.clone();
            tokio::spawn(async move {
                loop {
                    b.deliver_forwarded(None).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        // And replica a's: it holds no stream of web1, so it claims nothing.
        let a_claims = {
            let a = a.clone();
            tokio::spawn(async move {
                let mut n = 0;
                for _ in 0..100 {
                    n += a.deliver_forwarded(None).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                n
            })
        };
        let order = a
            .kill_session(&Actor::cli(), "web1", "1:1", "stolen laptop")
            .await
            .unwrap();
        assert_eq!(order.state, "sent", "{order:?}");
        let got = tokio::time::timeout(Duration::from_secs(5), conn.orders.recv())
            .await
            .expect("the order reaches b's stream")
            .unwrap();
        let parsed = signoff_proto::orders::KillOrder::decode(&got.order).unwrap();
        assert_eq!(hex::encode(parsed.nonce), order.nonce);
        assert_eq!(parsed.session_id, "1:1");
        assert_eq!(a_claims.await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        claimer.abort();
        assert!(conn.orders.try_recv().is_err(), "sent exactly once");
        let mut c = a.store().conn().await.unwrap();
        let state = store::sessions::order_state(c.db(), &order.nonce)
            .await
            .unwrap();
        assert_eq!(state.as_deref(), Some("sent"));
    }

    #[tokio::test]
    async fn a_forwarded_kill_nobody_claims_is_reported_undelivered_and_never_sent_later() {
        let (a, b, _, _tmp) = two().await;
        let mut conn = connect(&b).await;
        // Replica b holds the stream but never looks (it hangs, or is cut off).
        let order = a
            .kill_session(&Actor::cli(), "web1", "1:1", "")
            .await
            .unwrap();
        assert_eq!(order.state, "undelivered");
        assert_eq!(b.deliver_forwarded(None).await.unwrap(), 0);
        assert!(conn.orders.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_replica_whose_lease_lapses_has_its_hosts_counted_offline_until_it_renews() {
        let (a, b, clock, _tmp) = two().await;
        let _conn = connect(&b).await;
        assert!(online(&a).await);
        a.renew_lease().await.unwrap();
        assert!(online(&a).await, "b's lease holds");

        clock.0.fetch_add(LEASE_SECS + 1, Ordering::SeqCst);
        a.renew_lease().await.unwrap();
        assert!(!online(&a).await, "b stopped renewing: web1 is offline");
        let s = a.get_session("web1", "1:1").await.unwrap();
        assert_eq!(s.state, "unknown");

        // b comes back (the database was out of its reach): it still holds the stream.
        b.renew_lease().await.unwrap();
        assert!(online(&a).await, "b holds web1's stream again");
        a.renew_lease().await.unwrap();
        assert!(online(&a).await);
    }

    /// Both replicas come back from a database outage and renew at the same moment: a
    /// sweep waits for the other's renewal in flight instead of judging the lease being
    /// renewed, so it never marks offline a host its replica is claiming again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_renewing_at_once_after_an_outage_leave_each_others_hosts_online() {
        let (a, b, clock, _tmp) = two().await;
        let _conn = connect(&b).await;
        for round in 0..40 {
            clock.0.fetch_add(LEASE_SECS + 1, Ordering::SeqCst);
            let renew = |svc: &Service| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.renew_lease().await })
            };
            let (x, y) = tokio::join!(renew(&a), renew(&b));
            x.unwrap().unwrap();
            y.unwrap().unwrap();
            assert!(
                online(&a).await,
                "round {round}: web1 offline while b holds it"
            );
        }
    }

    /// A stream whose connect could not be written (the database was out of reach) is
    /// recorded at the replica's next renewal; a dead stream never takes the host back
    /// from the replica the agent connected to since.
    #[tokio::test]
    async fn a_held_stream_the_database_does_not_know_is_recorded_at_the_next_renewal() {
        let (a, b, _, _tmp) = two().await;
        let _conn = b.host_connected("web1");
        assert!(!online(&a).await, "its connect was never written");
        b.renew_lease().await.unwrap();
        assert!(
            online(&a).await,
            "b holds the stream: recorded at its renewal"
        );
        assert_eq!(holder(&a).await.as_deref(), Some("b"));

        // The agent fails over to a; b's stream has not noticed it is dead.
        let _new = connect(&a).await;
        assert_eq!(holder(&a).await.as_deref(), Some("a"));
        b.renew_lease().await.unwrap();
        assert_eq!(
            holder(&a).await.as_deref(),
            Some("a"),
            "b's dead stream does not take web1 back"
        );
    }

    async fn holder(svc: &Service) -> Option<String> {
        let mut c = svc.store().conn().await.unwrap();
        store::hosts::holder(c.db(), "web1").await.unwrap()
    }

    #[tokio::test]
    async fn a_stream_ending_late_on_one_replica_leaves_the_host_online_at_the_other() {
        let (a, b, _, _tmp) = two().await;
        let old = connect(&a).await;
        // The agent failed over to b before a saw its old stream end.
        let _new = connect(&b).await;
        a.host_disconnected(old).await.unwrap();
        assert!(online(&a).await);
        assert_eq!(a.get_session("web1", "1:1").await.unwrap().state, "live");
    }

    #[tokio::test]
    async fn a_restarted_replica_counts_its_old_streams_offline_and_leaves_others_online() {
        let (a, b, clock, _tmp) = two().await;
        let _conn = connect(&b).await;
        let other = NewHost {
            id: "web2".into(),
            hostname: String::new(),
            groups: vec![],
        };
        a.create_host(&Actor::cli(), other, "").await.unwrap();
        let _held = a.host_connected("web2");
        a.agent_connected("web2", 0, "test", None).await.unwrap();
        drop(a);

        // Replica a restarts (a new process on the same database, the same replica id).
        let again = Service::new(b.store().clone(), clock).await.unwrap();
        again.start_replica("a").await.unwrap();
        let mut c = again.store().conn().await.unwrap();
        assert_eq!(
            store::hosts::online(c.db(), "web2").await.unwrap(),
            Some(false)
        );
        assert_eq!(
            store::hosts::online(c.db(), "web1").await.unwrap(),
            Some(true)
        );
    }
}
