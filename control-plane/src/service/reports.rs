//! Group commit for what agents report: connections, disconnections, sessions.
//!
//! Each report is small, and every agent sends them: 10,000 agents connecting at once are
//! 10,000 connection records and 10,000 session lists. Written as one fsynced commit each,
//! they kept the store busy for seconds, and a revision committed meanwhile waited behind
//! them. Here a report is queued, and whichever caller holds the report writer writes
//! everything queued in one transaction; each caller returns once its own report is
//! durable, with its own result. A lone report on an idle store commits at once: there is
//! no tick to wait for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use signoff_proto::v1;
use tokio::sync::oneshot;

use super::sessions::{self, SessionEvent};
use super::{Result, Service, ServiceError};
use crate::store::{self, Db};

/// One report from an agent's stream.
#[derive(Debug, Clone)]
pub(crate) enum Report {
    /// The stream is up: applied revision, version, certificate expiry; the host is online.
    Connected {
        host: String,
        replica: String,
        applied_revision: i64,
        agent_version: String,
        cert_not_after: Option<i64>,
    },
    /// The stream ended: the host is offline and its live sessions are of unknown state,
    /// unless another replica holds its stream by now.
    Disconnected { host: String, replica: String },
    /// A session started (or is known again).
    SessionStarted { host: String, session: v1::Session },
    /// A session ended.
    SessionEnded {
        host: String,
        id: String,
        ended_at: i64,
    },
    /// The full list after a (re)connect: what it does not name has ended.
    SessionList {
        host: String,
        sessions: Vec<v1::Session>,
    },
    /// Login attempts sshd refused, and how many the agent could not send.
    Refused {
        host: String,
        attempts: v1::RefusedAttempts,
    },
}

type Waiter = oneshot::Sender<Result<()>>;

/// Reports waiting to be written, and the lock of whoever writes them.
#[derive(Debug, Default)]
pub(crate) struct ReportQueue {
    queued: Mutex<Vec<(Report, Waiter)>>,
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Reports written, and the transactions that wrote them (`/metrics`).
    written: AtomicU64,
    commits: AtomicU64,
}

/// What a written batch announces once it has committed.
#[derive(Debug, Default)]
pub(super) struct Effects {
    pub(super) events: Vec<SessionEvent>,
    pub(super) hosts_changed: bool,
}

/// A queued report's result, once written.
pub(crate) struct Pending(oneshot::Receiver<Result<()>>);

fn lost() -> ServiceError {
    // The writing task ended without answering (it panicked): the report may not be
    // written, and the caller must treat it as failed.
    ServiceError::Store(sqlx::Error::WorkerCrashed)
}

impl Service {
    /// Queues `report`; [`Service::written`] waits until it is durable. Split so that a
    /// caller can queue under a lock of its own (the order of a host's disconnect and its
    /// next connect must be the order they happened in).
    pub(crate) fn queue_report(&self, report: Report) -> Pending {
        let (tx, rx) = oneshot::channel();
        self.inner
            .reports
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((report, tx));
        Pending(rx)
    }

    /// Writes `report` together with whatever else is queued, and returns its result.
    pub(crate) async fn report(&self, report: Report) -> Result<()> {
        let pending = self.queue_report(report);
        self.written(pending).await
    }

    /// Waits until a queued report is written: either a writer before us took it, or we
    /// become the writer and write everything queued.
    pub(crate) async fn written(&self, pending: Pending) -> Result<()> {
        let Pending(mut rx) = pending;
        let guard = Arc::clone(&self.inner.reports.writer).lock_owned().await;
        match rx.try_recv() {
            Ok(result) => return result,
            Err(oneshot::error::TryRecvError::Closed) => return Err(lost()),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch = std::mem::take(
            &mut *self
                .inner
                .reports
                .queued
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        // Written by a task of its own, holding the writer: a caller that goes away
        // mid-write (its stream ended) neither cuts the batch short for the others nor
        // lets a second writer start beside it.
        let this = self.clone();
        let _ = tokio::spawn(async move {
            let _guard = guard;
            this.write_reports(batch).await;
        })
        .await;
        rx.await.unwrap_or_else(|_| Err(lost()))
    }

    async fn write_reports(&self, batch: Vec<(Report, Waiter)>) {
        if batch.is_empty() {
            return;
        }
        let reports: Vec<&Report> = batch.iter().map(|(r, _)| r).collect();
        match self.write_batch(&reports).await {
            Ok(fx) => {
                self.announce(fx);
                for (_, waiter) in batch {
                    let _ = waiter.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some((_, waiter)) = batch.into_iter().next() {
                    let _ = waiter.send(Err(e));
                }
            }
            Err(e) => {
                // One bad report must not fail the others: each on its own.
                tracing::warn!(error = ?e, reports = batch.len(), "a batch of agent reports failed; writing them one by one");
                for (report, waiter) in batch {
                    let result = self
                        .write_batch(&[&report])
                        .await
                        .map(|fx| self.announce(fx));
                    let _ = waiter.send(result);
                }
            }
        }
    }

    async fn write_batch(&self, reports: &[&Report]) -> Result<Effects> {
        let now = self.now();
        let mut fx = Effects::default();
        let rules = self.alert_rules();
        let mut tx = self.store().begin_write().await?;
        for report in reports {
            apply(tx.db(), report, now, &rules, &mut fx).await?;
        }
        tx.commit().await?;
        let queue = &self.inner.reports;
        queue.commits.fetch_add(1, Ordering::Relaxed);
        queue
            .written
            .fetch_add(reports.len() as u64, Ordering::Relaxed);
        Ok(fx)
    }

    /// Agents' reports written so far, and the transactions that wrote them.
    pub fn report_counters(&self) -> (u64, u64) {
        let queue = &self.inner.reports;
        (
            queue.written.load(Ordering::Relaxed),
            queue.commits.load(Ordering::Relaxed),
        )
    }

    fn announce(&self, fx: Effects) {
        self.relay_sessions(&fx.events);
        for event in fx.events {
            let _ = self.inner.session_events.send(event);
        }
        if fx.hosts_changed {
            self.signoff_progressed();
        }
    }
}

async fn apply(
    mut db: Db<'_>,
    report: &Report,
    now: i64,
    rules: &crate::alerts::Rules,
    fx: &mut Effects,
) -> Result<()> {
    match report {
        Report::Connected {
            host,
            replica,
            applied_revision,
            agent_version,
            cert_not_after,
        } => {
            store::hosts::connected(
                db,
                host,
                (replica, now),
                *applied_revision,
                agent_version,
                *cert_not_after,
            )
            .await?;
            fx.hosts_changed = true;
        }
        Report::Disconnected { host, replica } => {
            if !store::hosts::disconnected(db.re(), host, replica, now).await?
                && store::hosts::holder(db.re(), host)
                    .await?
                    .is_some_and(|r| r != *replica)
            {
                // The agent is connected to another replica by now.
                return Ok(());
            }
            store::sessions::host_unknown(db, host).await?;
            fx.hosts_changed = true;
            fx.events.push(SessionEvent::HostUnknown {
                host_id: host.clone(),
            });
        }
        Report::SessionStarted { host, session } => {
            sessions::upsert(db, host, session, (rules, now), fx).await?;
        }
        Report::SessionEnded { host, id, ended_at } => {
            sessions::end(db, host, id, *ended_at, fx).await?;
        }
        Report::SessionList {
            host,
            sessions: list,
        } => {
            let known = store::sessions::not_ended(db.re(), host).await?;
            for id in known {
                if !list.iter().any(|s| s.id == id) {
                    sessions::end(db.re(), host, &id, now, fx).await?;
                }
            }
            for s in list {
                sessions::upsert(db.re(), host, s, (rules, now), fx).await?;
            }
        }
        Report::Refused { host, attempts } => {
            super::refused::record(db, host, attempts, now, rules).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use signoff_proto::v1;

    use super::super::testing::service;
    use super::super::{SessionEvent, SessionFilter};

    fn session(id: &str) -> v1::Session {
        v1::Session {
            id: id.into(),
            account: "deploy".into(),
            key_id: "alice@corp".into(),
            source_address: "127.0.0.1".into(),
            source_port: 50000,
            started_at: 1_800_000_000,
            ..Default::default()
        }
    }

    fn commits(svc: &super::Service) -> u64 {
        svc.report_counters().1
    }

    #[tokio::test]
    async fn concurrent_reports_share_commits_and_each_is_recorded_and_announced() {
        let (svc, _) = service().await;
        let mut events = svc.watch_sessions();
        let before = commits(&svc);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    svc.session_started(&format!("host{i}"), &session(&format!("{i}:1")))
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let written = commits(&svc) - before;
        assert!(
            written < 20,
            "200 reports queued together took {written} commits"
        );
        let listed = svc.list_sessions(&SessionFilter::default()).await.unwrap();
        assert_eq!(listed.len(), 200);
        let mut started = HashSet::new();
        while let Ok(e) = events.try_recv() {
            if let SessionEvent::Started(r) = e {
                started.insert(r.host_id.clone());
            }
        }
        assert_eq!(started.len(), 200, "one Started event per new session");
    }

    #[tokio::test]
    async fn a_lone_report_is_written_at_once() {
        let (svc, _) = service().await;
        svc.session_started("web1", &session("1:1")).await.unwrap();
        // Durable when the call returns: another connection reads it.
        assert_eq!(svc.get_session("web1", "1:1").await.unwrap().state, "live");
        svc.session_ended("web1", "1:1", 1_800_000_100)
            .await
            .unwrap();
        let s = svc.get_session("web1", "1:1").await.unwrap();
        assert_eq!(
            (s.state.as_str(), s.ended_at),
            ("ended", Some(1_800_000_100))
        );
    }

    /// A login whose connection ended while processes of it run on is lingering, with
    /// what it left, announced as an update; then it ends.
    #[tokio::test]
    async fn a_lingering_login_is_recorded_with_what_it_left_and_announced() {
        let (svc, _) = service().await;
        svc.session_started("web1", &session("1:1")).await.unwrap();
        let mut events = svc.watch_sessions();
        let mut lingering = session("1:1");
        lingering.lingering = true;
        lingering.pids = vec![4242];
        lingering.lingering_processes = vec![v1::LingeringProcess {
            pid: 4242,
            uid: 1000,
            account: "deploy".into(),
            command: "sleep 600".into(),
        }];
        svc.session_started("web1", &lingering).await.unwrap();
        let s = svc.get_session("web1", "1:1").await.unwrap();
        assert_eq!(s.state, "lingering");
        assert_eq!(s.lingering.len(), 1);
        assert_eq!(s.lingering[0].command, "sleep 600");
        assert_eq!(s.lingering[0].account, "deploy");
        match events.try_recv() {
            Ok(SessionEvent::Updated(r)) => assert_eq!(r.state, "lingering"),
            other => panic!("expected an update, got {other:?}"),
        }
        // Listed by default (it is not over) and by its state.
        let all = svc.list_sessions(&SessionFilter::default()).await.unwrap();
        assert_eq!(all.len(), 1);
        let only = svc
            .list_sessions(&SessionFilter {
                state: Some("lingering".into()),
                ..SessionFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        // The same report again is no news.
        svc.session_started("web1", &lingering).await.unwrap();
        assert!(events.try_recv().is_err());
        svc.session_ended("web1", "1:1", 1_800_000_100)
            .await
            .unwrap();
        let s = svc.get_session("web1", "1:1").await.unwrap();
        assert_eq!(s.state, "ended");
        assert!(s.lingering.is_empty());
    }

    /// An agent announces a login whose log line was late without attribution, then
    /// again with it (or withdraws it): the record follows, with an update event.
    #[tokio::test]
    async fn a_session_reported_again_with_its_attribution_is_updated() {
        let (svc, _) = service().await;
        let mut unattributed = session("1:1");
        unattributed.key_id.clear();
        svc.session_started("web1", &unattributed).await.unwrap();
        assert_eq!(svc.get_session("web1", "1:1").await.unwrap().key_id, "");
        let mut events = svc.watch_sessions();
        svc.session_started("web1", &session("1:1")).await.unwrap();
        assert_eq!(
            svc.get_session("web1", "1:1").await.unwrap().key_id,
            "alice@corp"
        );
        assert!(
            matches!(events.try_recv(), Ok(SessionEvent::Updated(r)) if r.key_id == "alice@corp")
        );
        // Withdrawn (a second, different Accepted line): the key ID goes.
        svc.session_started("web1", &unattributed).await.unwrap();
        assert_eq!(svc.get_session("web1", "1:1").await.unwrap().key_id, "");
    }

    #[tokio::test]
    async fn a_report_the_store_refuses_fails_alone() {
        let (svc, _) = service().await;
        match svc.store().backend() {
            crate::store::Backend::Sqlite => {
                svc.store()
                    .exec_for_test(
                        "CREATE TRIGGER poison BEFORE INSERT ON sessions WHEN NEW.id = 'poison'
                         BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
                    )
                    .await;
            }
            crate::store::Backend::Postgres => {
                svc.store()
                    .exec_for_test(
                        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN
                           IF NEW.id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF;
                           RETURN NEW;
                         END $$",
                    )
                    .await;
                svc.store()
                    .exec_for_test(
                        "CREATE TRIGGER poison BEFORE INSERT ON sessions
                         FOR EACH ROW EXECUTE FUNCTION poison()",
                    )
                    .await;
            }
        }
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let svc = svc.clone();
                let id = if i == 25 {
                    "poison".to_owned()
                } else {
                    format!("{i}:1")
                };
                tokio::spawn(async move { (i, svc.session_started("web1", &session(&id)).await) })
            })
            .collect();
        for t in tasks {
            let (i, result) = t.await.unwrap();
            assert_eq!(result.is_err(), i == 25, "report {i}: {result:?}");
        }
        let listed = svc.list_sessions(&SessionFilter::default()).await.unwrap();
        assert_eq!(listed.len(), 49, "every other report is recorded");
    }

    #[tokio::test]
    async fn a_disconnect_then_a_reconnect_leaves_the_host_online() {
        let (svc, _) = service().await;
        svc.create_group(&super::super::Actor::cli(), "web", "")
            .await
            .unwrap();
        let t = svc
            .create_join_token(&super::super::Actor::cli(), &["web".into()], 3600, "")
            .await
            .unwrap();
        svc.enroll_host(&t.secret, "web1", "", &[]).await.unwrap();
        let old = svc.host_connected("web1");
        svc.agent_connected("web1", 0, "1", None).await.unwrap();
        svc.session_started("web1", &session("1:1")).await.unwrap();
        // The old stream ends after the new one registered: it changes nothing.
        let new = svc.host_connected("web1");
        svc.host_disconnected(old).await.unwrap();
        svc.agent_connected("web1", 0, "1", None).await.unwrap();
        assert_eq!(svc.get_session("web1", "1:1").await.unwrap().state, "live");
        assert!(online(&svc).await);
        // The current stream ends: offline, and its sessions of unknown state.
        svc.host_disconnected(new).await.unwrap();
        assert_eq!(
            svc.get_session("web1", "1:1").await.unwrap().state,
            "unknown"
        );
        assert!(!online(&svc).await);
    }

    async fn online(svc: &super::Service) -> bool {
        let mut c = svc.store().conn().await.unwrap();
        crate::store::hosts::online(c.db(), "web1")
            .await
            .unwrap()
            .expect("host web1")
    }
}
