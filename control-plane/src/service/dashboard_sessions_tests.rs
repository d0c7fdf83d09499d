//! Dashboard sessions and the login limiter across replicas (issue 18): two services on
//! one database, as two servers behind a load balancer without stickiness. Runs on SQLite
//! (two pools on one file) and, under `SIGNOFF_TEST_POSTGRES`, on PostgreSQL.

use std::net::IpAddr;
use std::sync::Arc;

use super::{MAX_WEB_SESSIONS, Service, SystemClock, WebSessionLimits};
use crate::store;

const T0: i64 = 1_800_000_000;
const LIMITS: WebSessionLimits = WebSessionLimits {
    idle_secs: 30 * 60,
    max_secs: 12 * 3600,
};
const DAY: i64 = 24 * 3600;

async fn replicas(dir: &std::path::Path) -> (Service, Service) {
    let url = store::test_url(dir).await;
    let open = || async {
        Service::new(store::open(&url).await.unwrap(), Arc::new(SystemClock))
            .await
            .unwrap()
    };
    (open().await, open().await)
}

#[tokio::test]
async fn a_session_made_on_one_replica_is_honoured_by_the_other_until_logout_on_either() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = replicas(tmp.path()).await;
    a.create_web_session("sid-1", "alice", "csrf-1", T0, LIMITS)
        .await
        .unwrap();

    let on_b = b.web_session("sid-1", T0 + 10, LIMITS).await.unwrap();
    let on_b = on_b.expect("replica B honours A's session");
    assert_eq!(on_b.operator, "alice");
    assert_eq!(on_b.csrf, "csrf-1", "the same CSRF token on every replica");
    assert_eq!((on_b.created_at, on_b.last_seen), (T0, T0 + 10));
    assert!(
        a.web_session_is_live("sid-1", T0 + 10, LIMITS)
            .await
            .unwrap()
    );
    assert!(
        b.web_session("sid-2", T0 + 10, LIMITS)
            .await
            .unwrap()
            .is_none(),
        "an unknown id is no session"
    );

    b.end_web_session("sid-1").await.unwrap();
    assert!(
        a.web_session("sid-1", T0 + 11, LIMITS)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !a.web_session_is_live("sid-1", T0 + 11, LIMITS)
            .await
            .unwrap()
    );

    // And the other way round.
    b.create_web_session("sid-3", "bob", "csrf-3", T0, LIMITS)
        .await
        .unwrap();
    assert!(
        a.web_session("sid-3", T0 + 1, LIMITS)
            .await
            .unwrap()
            .is_some()
    );
    a.end_web_session("sid-3").await.unwrap();
    assert!(
        b.web_session("sid-3", T0 + 2, LIMITS)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_session_expires_on_every_replica_when_idle_and_at_its_maximum_age() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = replicas(tmp.path()).await;
    a.create_web_session("idle", "alice", "c", T0, LIMITS)
        .await
        .unwrap();
    // Used on B just before it would go idle: idle time starts again, for A too.
    assert!(
        b.web_session("idle", T0 + 29 * 60, LIMITS)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        a.web_session_is_live("idle", T0 + 58 * 60, LIMITS)
            .await
            .unwrap()
    );
    let idle_at = T0 + 29 * 60 + 30 * 60;
    for r in [&a, &b] {
        assert!(
            !r.web_session_is_live("idle", idle_at, LIMITS)
                .await
                .unwrap()
        );
        assert!(
            r.web_session("idle", idle_at, LIMITS)
                .await
                .unwrap()
                .is_none()
        );
    }

    a.create_web_session("old", "alice", "c", T0, LIMITS)
        .await
        .unwrap();
    let mut t = T0;
    let mut replica = [&a, &b].into_iter().cycle();
    while t < T0 + 13 * 3600 {
        t += 20 * 60;
        let live = replica
            .next()
            .unwrap()
            .web_session("old", t, LIMITS)
            .await
            .unwrap()
            .is_some();
        assert_eq!(live, t < T0 + 12 * 3600, "at {}", t - T0);
    }
    for r in [&a, &b] {
        assert!(!r.web_session_is_live("old", t, LIMITS).await.unwrap());
    }
}

#[tokio::test]
async fn only_the_hash_of_a_session_id_is_stored_and_expired_rows_are_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = replicas(tmp.path()).await;
    let id = "the-secret-session-id";
    a.create_web_session(id, "alice", "c", T0, LIMITS)
        .await
        .unwrap();
    let store = a.store();
    let rows_with = |clause: String| {
        let sql = format!("UPDATE dashboard_sessions SET csrf = csrf WHERE {clause}");
        async move { store.exec_for_test(&sql).await }
    };
    assert_eq!(rows_with(format!("id_hash = '{id}'")).await, 0);
    assert_eq!(
        rows_with("id_hash LIKE '%secret%' OR operator LIKE '%secret%'".into()).await,
        0
    );
    let expected = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(id.as_bytes()))
    };
    assert_eq!(rows_with(format!("id_hash = '{expected}'")).await, 1);

    // Making a session on B after A's has expired deletes A's row.
    b.create_web_session("later", "bob", "c", T0 + LIMITS.idle_secs, LIMITS)
        .await
        .unwrap();
    assert_eq!(rows_with(format!("id_hash = '{expected}'")).await, 0);
    assert_eq!(rows_with("1 = 1".into()).await, 1);
}

#[tokio::test]
async fn the_number_of_stored_sessions_is_bounded_by_dropping_the_least_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = replicas(tmp.path()).await;
    a.create_web_session("oldest", "alice", "c", T0, LIMITS)
        .await
        .unwrap();
    a.store()
        .exec_for_test(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {})
             INSERT INTO dashboard_sessions (id_hash, operator, csrf, created_at, last_seen)
             SELECT 'filler' || i, 'bob', 'c', {T0}, {} FROM n",
            MAX_WEB_SESSIONS - 1,
            T0 + 1
        ))
        .await;
    b.create_web_session("newest", "carol", "c", T0 + 2, LIMITS)
        .await
        .unwrap();
    assert!(
        a.web_session("newest", T0 + 3, LIMITS)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        a.web_session("oldest", T0 + 3, LIMITS)
            .await
            .unwrap()
            .is_none(),
        "the least recently used session made room"
    );
    let all = a
        .store()
        .exec_for_test("UPDATE dashboard_sessions SET csrf = csrf")
        .await;
    assert_eq!(i64::try_from(all).unwrap(), MAX_WEB_SESSIONS);
}

#[tokio::test]
async fn failures_recorded_on_one_replica_count_on_the_other_and_a_success_clears_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = replicas(tmp.path()).await;
    let ip: IpAddr = [203, 0, 113, 9].into();
    let other: IpAddr = [198, 51, 100, 7].into();
    assert_eq!(b.login_failures("alice", Some(ip)).await.unwrap(), None);
    for n in 1..=3 {
        let r = if n % 2 == 0 { &a } else { &b };
        let f = r
            .record_login_failure("alice", Some(ip), T0 + n, T0 + n - DAY)
            .await
            .unwrap();
        assert_eq!((f.failures, f.last_failure), (n, T0 + n));
    }
    let seen = a.login_failures("alice", Some(ip)).await.unwrap().unwrap();
    assert_eq!((seen.failures, seen.last_failure), (3, T0 + 3));
    // Per name and address: others are not counted.
    assert_eq!(a.login_failures("alice", Some(other)).await.unwrap(), None);
    assert_eq!(a.login_failures("alice", None).await.unwrap(), None);
    assert_eq!(a.login_failures("bob", Some(ip)).await.unwrap(), None);

    b.clear_login_failures("alice", Some(ip)).await.unwrap();
    assert_eq!(a.login_failures("alice", Some(ip)).await.unwrap(), None);
}

#[tokio::test]
async fn failures_are_forgotten_a_day_after_the_last() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = replicas(tmp.path()).await;
    for t in 0..5 {
        a.record_login_failure("alice", None, T0 + t, T0 + t - DAY)
            .await
            .unwrap();
    }
    b.record_login_failure("bob", None, T0 + 10, T0 + 10 - DAY)
        .await
        .unwrap();
    let later = T0 + 4 + DAY;
    let f = b
        .record_login_failure("alice", None, later, later - DAY)
        .await
        .unwrap();
    assert_eq!(f.failures, 1, "the old failures no longer count");
    // Bob's, older than a day by then, was deleted.
    let next_day = T0 + 10 + DAY;
    a.record_login_failure("carol", None, next_day, next_day - DAY)
        .await
        .unwrap();
    assert_eq!(b.login_failures("bob", None).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_counted_at_once_on_both_replicas_are_all_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = replicas(tmp.path()).await;
    const EACH: i64 = 20;
    let tasks: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .flat_map(|r| {
            (0..EACH).map(move |n| {
                let r = r.clone();
                tokio::spawn(async move {
                    r.record_login_failure("alice", None, T0 + n, T0 + n - DAY)
                        .await
                        .unwrap()
                })
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let f = a.login_failures("alice", None).await.unwrap().unwrap();
    assert_eq!(f.failures, 2 * EACH);
    assert_eq!(
        f.last_failure,
        T0 + EACH - 1,
        "the latest failure, whatever the order"
    );
}
