//! Several control-plane replicas on one PostgreSQL database, end to end: a cluster each
//! test owns (`signoff_tests::postgres`, so one test can stop its database without
//! disturbing the others), real `signoff-server` replicas on it sharing the first one's
//! keys, and hosts each with a real agent and a real sshd (`signoff_tests::fleet`) whose
//! agent is given every replica's address, the one it should use first leading.
//!
//! - **Sign-off across replicas.** Made through replica A, it ends a real `ssh` session on
//!   a host connected to replica C, A reports every host confirmed, and replica B's live
//!   session feed (`GET /api/v1/sessions/events`, what the dashboard is built on) shows
//!   the session end as it happens.
//! - **Replica killed.** The replica holding half the agents is SIGKILLed right after it
//!   acknowledged a sign-off: its agents fail over to the other, the sign-off completes on
//!   every host, nothing it acknowledged is lost, and `audit verify` passes.
//! - **PostgreSQL restarted under load.** Revocations stream in through both replicas while
//!   the database is stopped (`pg_ctl stop -m immediate`) and started again: with no one
//!   stepping in, changes are accepted again and reach every agent, and every revocation
//!   answered 201 — before, during or after — is there.
//! - **Concurrent writes.** People, grants, revocations and sign-offs from threads on every
//!   replica at once: one unbroken audit chain, and every revision from 1 to the latest
//!   made exactly once.
//!
//! Which replica holds a host's stream is read from the database (`hosts.replica`, the
//! replica's `data_dir/replica-id`). A replica's lease is 15 s and an agent's reconnect
//! backoff at most 10 s, so waits across a failover or an outage are [`RECOVERY`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use signoff_proto::krl::{CaScope, Krl};
use signoff_tests::agent::Profile;
use signoff_tests::fleet::{Fleet, GROUP, Host, USER, assert_refused, host_states, wait_gone};
use signoff_tests::plane::{ControlPlane, WAIT, http_request, server_binary, wait_for};
use signoff_tests::postgres::{Cluster, StopMode};
use signoff_tests::sessions::TEST_ACCOUNT;

/// How long recovering from a lost replica or database may take: lease (15 s) and sweep
/// (5 s), agents' backoff (at most 10 s), with room for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(90);

/// Replicas on a cluster of their own, the first one inside the fleet.
struct Replicas {
    /// Replica 0 is `fleet.plane`: the person, CA and group are made through it.
    fleet: Fleet,
    /// Replicas 1 and on.
    others: Vec<ControlPlane>,
    db: Cluster,
}

impl Replicas {
    /// A new cluster and `n` replicas on it (the later ones with the first one's keys),
    /// and the fleet's person, CA and group.
    fn start(n: usize) -> Result<Replicas> {
        let db = Cluster::start()?;
        let bin = server_binary(Profile::Debug)?;
        let first = ControlPlane::start_replica(&bin, &db.url(), None)?;
        let others = (1..n)
            .map(|_| ControlPlane::start_replica(&bin, &db.url(), Some(&first)))
            .collect::<Result<Vec<_>>>()?;
        let fleet = Fleet::over(first, Profile::Debug)?;
        Ok(Replicas { fleet, others, db })
    }

    fn count(&self) -> usize {
        1 + self.others.len()
    }

    fn replica(&self, i: usize) -> &ControlPlane {
        match i {
            0 => &self.fleet.plane,
            _ => &self.others[i - 1],
        }
    }

    /// Every replica's agent URL, replica `first` leading, then the others in turn.
    fn servers_from(&self, first: usize) -> String {
        (0..self.count())
            .map(|k| {
                let port = self.replica((first + k) % self.count()).agent_port();
                format!("https://localhost:{port}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Host `id` in the fleet's group, its agent given every replica with `first` leading.
    fn host(&self, id: &str, first: usize) -> Result<Host> {
        self.fleet.host_via(id, &self.servers_from(first))
    }

    /// The id replica `i` made for itself at its first start.
    fn replica_id(&self, i: usize) -> Result<String> {
        let path = self.replica(i).data_dir().join("replica-id");
        Ok(fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned())
    }

    /// The replica the database says holds `host`'s stream, if the host is online.
    fn holder(&self, host: &str) -> Result<Option<String>> {
        let replica = self.db.query(&format!(
            "SELECT replica FROM hosts WHERE id = '{host}' AND online"
        ))?;
        Ok(Some(replica).filter(|r| !r.is_empty()))
    }

    /// Waits until replica `i` holds `host`'s stream.
    fn wait_held(&self, host: &str, i: usize, timeout: Duration) -> Result<()> {
        let want = self.replica_id(i)?;
        wait_for(
            format_args!("replica {i} ({want}) to hold the stream of {host}"),
            timeout,
            || Ok((self.holder(host)?.as_deref() == Some(want.as_str())).then_some(())),
        )
        .with_context(|| format!("held by {:?}", self.holder(host)))
    }

    /// `signoff-server audit verify` with replica `i`'s config: must say the chain holds.
    fn assert_audit_intact(&self, i: usize) -> Result<()> {
        let out = self.replica(i).cli(&["audit", "verify"])?;
        ensure!(
            out.stdout.starts_with("audit log intact: "),
            "audit verify on replica {i}: {}{}",
            out.stdout,
            out.stderr
        );
        Ok(())
    }
}

/// Waits until `host`'s agent has applied `revision` (host view and KRL), for as long as
/// `timeout`: [`signoff_tests::plane::Agent::wait_applied`] with a longer wait.
fn wait_synced(host: &mut Host, revision: u64, timeout: Duration) -> Result<()> {
    let agent = &mut host.agent;
    wait_for(
        format_args!("{} to apply revision {revision}", host.id),
        timeout,
        || {
            agent.check_running()?;
            let view = agent.applied_revision()?.unwrap_or(0);
            let krl = agent.krl().map(|k| k.version()).unwrap_or(0);
            Ok((view >= revision && krl >= revision).then_some(()))
        },
    )
    .with_context(|| {
        format!(
            "host view at {:?}; agent log:\n{}",
            agent.applied_revision().ok().flatten(),
            agent.log()
        )
    })
}

/// Whether `krl` revokes certificates with key ID `id` under any CA.
fn revokes_key_id(krl: &Krl, id: &str) -> bool {
    krl.certs().any(|(scope, certs)| {
        *scope == CaScope::Any && certs.key_ids().iter().any(|k| k == id.as_bytes())
    })
}

/// `POST /api/v1/revocations` of key ID `key_id` at `addr`: the response.
fn post_revocation(addr: SocketAddr, token: &str, key_id: &str) -> Result<(u16, Value)> {
    let body = json!({"kind": "key_id", "key_id": key_id, "ca": null, "reason": "load"});
    post(addr, token, "/api/v1/revocations", &body)
}

/// A POST with `token`: (status, JSON body or the text).
fn post(addr: SocketAddr, token: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
    let res = http_request(addr, "POST", path, token, Some(&body.to_string()))?;
    let v = serde_json::from_str(&res.body).unwrap_or(Value::String(res.body.clone()));
    Ok((res.status, v))
}

/// The key IDs revoked at replica `plane` (`GET /api/v1/revocations`).
fn revoked_key_ids(plane: &ControlPlane) -> Result<BTreeSet<String>> {
    let res = plane.api("GET", "/api/v1/revocations", None)?;
    ensure!(res.status == 200, "GET /api/v1/revocations: {}", res.body);
    Ok(res
        .json()?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["key_id"].as_str().map(str::to_owned))
        .collect())
}

/// Every row of the audit log at `plane`, oldest first (`GET /api/v1/audit`, paged).
fn audit_rows(plane: &ControlPlane) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    let mut before = None;
    loop {
        let path = match before {
            Some(seq) => format!("/api/v1/audit?limit=1000&before={seq}"),
            None => "/api/v1/audit?limit=1000".to_owned(),
        };
        let res = plane.api("GET", &path, None)?;
        ensure!(res.status == 200, "GET {path}: {}", res.body);
        let page = res.json()?;
        let page = page
            .as_array()
            .ok_or_else(|| anyhow!("GET {path}: not a list"))?;
        let Some(last) = page.last() else { break };
        before = Some(
            last["seq"]
                .as_i64()
                .ok_or_else(|| anyhow!("no seq: {last}"))?,
        );
        rows.extend(page.iter().cloned());
    }
    rows.reverse();
    Ok(rows)
}

/// `GET /api/v1/sessions/events` on one replica, read by a thread that keeps every event.
struct SessionFeed {
    stream: TcpStream,
    events: Arc<Mutex<Vec<(String, Value)>>>,
}

impl SessionFeed {
    /// Opens the feed (HTTP/1.0, so the body is not chunked) with `token`.
    fn open(plane: &ControlPlane, token: &str) -> Result<SessionFeed> {
        let mut stream = TcpStream::connect(plane.http_addr())?;
        write!(
            stream,
            "GET /api/v1/sessions/events HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n"
        )?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let reader = BufReader::new(stream.try_clone()?);
        thread::spawn(move || {
            let mut lines = reader.lines().map_while(Result::ok);
            let status = lines.next().unwrap_or_default();
            if !status.contains(" 200 ") {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(("refused".to_owned(), Value::String(status)));
                return;
            }
            // The rest of the response head.
            for line in lines.by_ref() {
                if line.is_empty() {
                    break;
                }
            }
            let (mut name, mut data) = (String::new(), String::new());
            for line in lines {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                } else if line.is_empty() && !name.is_empty() {
                    let value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    data.clear();
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((std::mem::take(&mut name), value));
                }
            }
        });
        Ok(SessionFeed { stream, events })
    }

    /// Waits until an event satisfying `want` (name, data) has arrived, and returns its data.
    fn wait(&self, what: &str, want: impl Fn(&str, &Value) -> bool) -> Result<Value> {
        wait_for(
            format_args!("the session feed to show {what}"),
            WAIT,
            || {
                let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((_, refused)) = events.iter().find(|(n, _)| n == "refused") {
                    bail!("the session feed was refused: {refused}");
                }
                Ok(events
                    .iter()
                    .find(|(name, data)| want(name, data))
                    .map(|(_, data)| data.clone()))
            },
        )
        .with_context(|| format!("events so far: {:?}", self.names()))
    }

    fn names(&self) -> Vec<String> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.iter().map(|(name, _)| name.clone()).collect()
    }
}

impl Drop for SessionFeed {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

#[test]
fn a_signoff_on_replica_a_ends_a_session_held_through_replica_c_and_replica_b_shows_it_live()
-> Result<()> {
    let r = Replicas::start(3)?;
    let hosts = ["host-a", "host-b", "host-c"]
        .iter()
        .enumerate()
        .map(|(i, id)| r.host(id, i))
        .collect::<Result<Vec<_>>>()?;
    for (i, host) in hosts.iter().enumerate() {
        r.wait_held(&host.id, i, WAIT)?;
    }
    let on_c = &hosts[2];
    let mut held = r.fleet.open(on_c, false, 7301)?;
    r.fleet.wait_live_sessions(1, "the session on host-c")?;
    let (status, sessions) = r.fleet.hr_at(
        r.replica(1),
        "GET",
        &format!("/api/v1/sessions?user={USER}&state=live"),
        None,
    )?;
    assert_eq!(status, 200, "{sessions}");
    let session = sessions[0].clone();
    assert_eq!(session["host_id"], "host-c", "{sessions}");

    let feed = SessionFeed::open(r.replica(1), &r.fleet.signoff_token)?;
    feed.wait("the snapshot with the session", |name, data| {
        name == "snapshot"
            && data["sessions"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x["id"] == session["id"]))
    })?;

    let (status, record) = r.fleet.hr_at(
        r.replica(0),
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 201, "{record}");

    // What the person sees: the session ends, and a new login is refused.
    wait_gone(&mut held, on_c)?;
    assert_refused(&r.fleet.login(on_c)?, on_c);
    // What the dashboard on replica B sees, while it happens: the end of that session,
    // reported by host-c's agent to replica C.
    feed.wait("the session's end", |name, data| {
        name == "ended" && data["host_id"] == "host-c" && data["id"] == session["id"]
    })?;
    // What replica A reports: every host confirmed, host-c having ended the session.
    let done = r
        .fleet
        .wait_signoff("complete", |rec| !rec["completed_at"].is_null())?;
    assert_eq!(done["id"], record["id"]);
    assert!(
        host_states(&done).iter().all(|(_, s)| s == "confirmed"),
        "{done:#}"
    );
    let killed = done["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["host"] == "host-c")
        .map(|h| h["killed_sessions"].clone());
    assert_eq!(killed, Some(json!([session["id"]])), "{done:#}");
    // B's API reports the same record.
    let (status, on_b) = r.fleet.hr_at(
        r.replica(1),
        "GET",
        &format!("/api/v1/signoffs/{}", record["id"]),
        None,
    )?;
    assert_eq!(status, 200, "{on_b}");
    assert_eq!(on_b["completed_at"], done["completed_at"], "{on_b:#}");
    Ok(())
}

#[test]
fn agents_of_a_replica_killed_mid_signoff_fail_over_and_nothing_acknowledged_is_lost() -> Result<()>
{
    let mut r = Replicas::start(2)?;
    // host-1 and host-2 lead with replica 0, which stays; host-3 and host-4 with replica 1.
    let mut hosts = (0..4)
        .map(|i| r.host(&format!("host-{}", i + 1), i / 2))
        .collect::<Result<Vec<_>>>()?;
    for (i, host) in hosts.iter().enumerate() {
        r.wait_held(&host.id, i / 2, WAIT)?;
    }
    let mut held = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| r.fleet.open(host, false, 7401 + i as u32))
        .collect::<Result<Vec<_>>>()?;
    r.fleet.wait_live_sessions(4, "one per host")?;

    // Acknowledged by the doomed replica: revocations, then the sign-off.
    let doomed = r.replica(1);
    let mut acked = Vec::new();
    for i in 0..5 {
        let key_id = format!("before-the-kill-{i}@corp");
        doomed.revoke(&json!({"kind": "key_id", "key_id": key_id, "ca": null}))?;
        acked.push(key_id);
    }
    let (status, record) = r.fleet.hr_at(
        doomed,
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "key stolen"})),
    )?;
    assert_eq!(status, 201, "{record}");
    r.others[0].kill()?;
    let killed_at = Instant::now();

    // Its agents fail over to the replica left.
    for host in &hosts[2..] {
        r.wait_held(&host.id, 0, RECOVERY)?;
    }
    eprintln!(
        "the killed replica's agents were held by the other {:?} after the kill",
        killed_at.elapsed()
    );
    // The sign-off completes on every host.
    let done = r
        .fleet
        .wait_signoff("complete", |rec| !rec["completed_at"].is_null())?;
    assert_eq!(done["id"], record["id"]);
    assert_eq!(
        host_states(&done),
        (1..=4)
            .map(|i| (format!("host-{i}"), "confirmed".to_owned()))
            .collect::<Vec<_>>()
    );
    for (client, host) in held.iter_mut().zip(&hosts) {
        wait_gone(client, host)?;
        assert_refused(&r.fleet.login(host)?, host);
    }
    r.fleet.wait_live_sessions(0, "every session ended")?;

    // Nothing acknowledged is lost; a change after the kill reaches every agent.
    r.fleet
        .plane
        .revoke(&json!({"kind": "key_id", "key_id": "after-the-kill@corp", "ca": null}))?;
    acked.push("after-the-kill@corp".to_owned());
    let revoked = revoked_key_ids(&r.fleet.plane)?;
    let revision = r.fleet.plane.revision()?;
    for host in &mut hosts {
        wait_synced(host, revision, WAIT)?;
        let krl = host.agent.krl()?;
        for key_id in &acked {
            assert!(revoked.contains(key_id), "{key_id} is not revoked any more");
            assert!(revokes_key_id(&krl, key_id), "{}'s KRL: {key_id}", host.id);
        }
    }
    r.assert_audit_intact(0)?;
    Ok(())
}

/// One request of the restart test's load: which replica, which key ID, when it was
/// sent, and what came of it (the status, or why there was none).
struct Request {
    replica: usize,
    key_id: String,
    sent: Instant,
    outcome: Result<u16, String>,
}

impl Request {
    fn acked(&self) -> bool {
        self.outcome == Ok(201)
    }
}

/// Revocations through every replica, each from a thread of its own sending one every
/// 25 ms until stopped; every request is logged.
struct Load {
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(replicas: &Replicas, token: &str) -> Load {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..replicas.count())
            .map(|replica| {
                let addr = replicas.replica(replica).http_addr();
                let (log, stop, token) = (Arc::clone(&log), Arc::clone(&stop), token.to_owned());
                thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let key_id = format!("load-{replica}-{n}@corp");
                        let sent = Instant::now();
                        let outcome = post_revocation(addr, &token, &key_id)
                            .map(|(status, _)| status)
                            .map_err(|e| format!("{e:#}"));
                        log.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Request {
                                replica,
                                key_id,
                                sent,
                                outcome,
                            });
                        n += 1;
                        thread::sleep(Duration::from_millis(25));
                    }
                })
            })
            .collect();
        Load { log, stop, threads }
    }

    /// Whether every one of `replicas` answered at least `n` requests sent since `since`
    /// that `count` (acknowledged ones, say).
    fn each_answered(
        &self,
        replicas: usize,
        since: Instant,
        n: usize,
        count: impl Fn(&Request) -> bool,
    ) -> bool {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        (0..replicas).all(|replica| {
            log.iter()
                .filter(|r| r.replica == replica && r.sent >= since && count(r))
                .count()
                >= n
        })
    }

    /// Stops the threads and returns every request.
    fn finish(self) -> Result<Vec<Request>> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread
                .join()
                .map_err(|_| anyhow!("a load thread panicked"))?;
        }
        Ok(std::mem::take(
            &mut *self.log.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

#[test]
fn replicas_and_agents_recover_from_a_postgresql_restart_under_load_by_themselves() -> Result<()> {
    let mut r = Replicas::start(2)?;
    let mut hosts = (0..2)
        .map(|i| r.host(&format!("host-{}", i + 1), i))
        .collect::<Result<Vec<_>>>()?;
    for (i, host) in hosts.iter().enumerate() {
        r.wait_held(&host.id, i, WAIT)?;
    }
    let token = r.fleet.plane.token("load", "read,write")?;
    let start = Instant::now();
    let load = Load::start(&r, &token);
    let n = r.count();

    wait_for("10 revocations acknowledged by each replica", WAIT, || {
        Ok(load
            .each_answered(n, start, 10, Request::acked)
            .then_some(()))
    })?;
    r.db.stop(StopMode::Immediate)?;
    let outage = Instant::now();
    // Each replica answers (or fails) a request sent while the database is down.
    wait_for(
        "a request to each replica during the outage",
        RECOVERY,
        || Ok(load.each_answered(n, outage, 1, |_| true).then_some(())),
    )?;
    r.db.start_again()?;
    let back = Instant::now();
    // Accepted again through every replica, with no one stepping in.
    let recovered = wait_for(
        "revocations acknowledged again by every replica",
        RECOVERY,
        || Ok(load.each_answered(n, back, 5, Request::acked).then_some(())),
    );
    let requests = load.finish()?;
    let during: Vec<_> = requests
        .iter()
        .filter(|q| q.sent >= outage && q.sent < back)
        .map(|q| (q.replica, &q.outcome))
        .collect();
    recovered.with_context(|| {
        let failures: Vec<_> = requests
            .iter()
            .filter(|q| q.sent >= back && !q.acked())
            .take(10)
            .map(|q| (q.replica, &q.outcome))
            .collect();
        format!(
            "after the restart: {failures:?}\nreplica 0's log:\n{}\nreplica 1's log:\n{}",
            r.replica(0).log(),
            r.replica(1).log()
        )
    })?;
    eprintln!(
        "PostgreSQL down for {:?}; during the outage: {during:?}; {} requests, {} acknowledged",
        back - outage,
        requests.len(),
        requests.iter().filter(|q| q.acked()).count()
    );
    // What failed failed as the server's fault: never a 4xx telling the client its token
    // or request was bad (it was the database).
    let refused: Vec<_> = requests
        .iter()
        .filter(|q| matches!(q.outcome, Ok(status) if (400..500).contains(&status)))
        .map(|q| (q.replica, &q.key_id, &q.outcome))
        .collect();
    assert!(
        refused.is_empty(),
        "requests refused as the client's fault: {refused:?}"
    );

    // Every acknowledged revocation is in the store, as each replica reads it, and in
    // every agent's KRL.
    let acked: Vec<&str> = requests
        .iter()
        .filter(|q| q.acked())
        .map(|q| q.key_id.as_str())
        .collect();
    for i in 0..n {
        let revoked = revoked_key_ids(r.replica(i))?;
        let lost: Vec<_> = acked.iter().filter(|k| !revoked.contains(**k)).collect();
        assert!(
            lost.is_empty(),
            "replica {i} lost acknowledged revocations: {lost:?}"
        );
    }
    let revision = r.fleet.plane.revision()?;
    for host in &mut hosts {
        wait_synced(host, revision, RECOVERY)?;
        let krl = host.agent.krl()?;
        let missing: Vec<_> = acked.iter().filter(|k| !revokes_key_id(&krl, k)).collect();
        assert!(missing.is_empty(), "{}'s KRL lacks {missing:?}", host.id);
    }
    // Both hosts are online again, at some replica.
    for host in &hosts {
        wait_for(format_args!("{} to be online", host.id), RECOVERY, || {
            r.holder(&host.id)
        })?;
    }
    r.assert_audit_intact(1)?;
    Ok(())
}

/// What one writer thread of the concurrency test did: the revision each revocation and
/// sign-off answered with, and the people it made.
#[derive(Default)]
struct Written {
    people: Vec<String>,
    /// (action, revision) of the writes whose answer names their revision.
    revisions: Vec<(&'static str, u64)>,
}

/// People, grants, revocations and sign-offs at `addr`, `rounds` of each, named after
/// `prefix`; every write must be answered 201.
fn write_everything(addr: SocketAddr, token: &str, prefix: &str, rounds: usize) -> Result<Written> {
    let mut out = Written::default();
    for k in 0..rounds {
        let name = format!("{prefix}-{k}");
        let created = |path: &str, body: Value| -> Result<Value> {
            let (status, v) = post(addr, token, path, &body)?;
            ensure!(
                status == 201,
                "POST {path} {body} at {addr} answered {status}: {v}"
            );
            Ok(v)
        };
        let revision = |v: &Value| {
            v["revision"]
                .as_u64()
                .ok_or_else(|| anyhow!("no revision in {v}"))
        };
        created(
            "/api/v1/users",
            json!({"name": name, "key_ids": [format!("{name}@corp")]}),
        )?;
        created(
            "/api/v1/grants",
            json!({"user": name, "account": TEST_ACCOUNT, "group": GROUP}),
        )?;
        let revocation = created(
            "/api/v1/revocations",
            json!({"kind": "key_id", "key_id": format!("lost-{name}@corp"), "ca": null}),
        )?;
        out.revisions
            .push(("revocation.add", revision(&revocation)?));
        let signoff = created(
            &format!("/api/v1/users/{name}/signoff"),
            json!({"reason": "left"}),
        )?;
        out.revisions.push(("user.signoff", revision(&signoff)?));
        out.people.push(name);
    }
    Ok(out)
}

#[test]
fn concurrent_writes_on_every_replica_make_one_audit_chain_and_every_revision_once() -> Result<()> {
    const THREADS_PER_REPLICA: usize = 2;
    const ROUNDS: usize = 10;
    let r = Replicas::start(3)?;
    let mut hosts = (0..3)
        .map(|i| r.host(&format!("host-{}", i + 1), i))
        .collect::<Result<Vec<_>>>()?;
    let token = r.fleet.plane.token("writers", "read,write,signoff")?;

    let written: Vec<Written> = thread::scope(|scope| {
        let writers: Vec<_> = (0..r.count())
            .flat_map(|i| (0..THREADS_PER_REPLICA).map(move |t| (i, t)))
            .map(|(i, t)| {
                let (addr, token) = (r.replica(i).http_addr(), token.as_str());
                scope.spawn(move || write_everything(addr, token, &format!("p{i}{t}"), ROUNDS))
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow!("a writer panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;

    // One chain, intact, whichever replica checks it.
    for i in 0..r.count() {
        r.assert_audit_intact(i)?;
    }
    let rows = audit_rows(r.replica(2))?;
    let seqs: Vec<i64> = rows.iter().filter_map(|row| row["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=rows.len() as i64).collect::<Vec<_>>());
    // Every revision from 1 to the latest made once, by one audit row.
    let latest = r.replica(1).revision()?;
    let mut by_revision: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for row in &rows {
        if let Some(revision) = row["revision"].as_u64() {
            by_revision
                .entry(revision)
                .or_default()
                .push(row["action"].as_str().unwrap_or_default());
        }
    }
    let twice: Vec<_> = by_revision.iter().filter(|(_, a)| a.len() > 1).collect();
    assert!(twice.is_empty(), "revisions made twice: {twice:?}");
    assert_eq!(
        by_revision.keys().copied().collect::<Vec<_>>(),
        (1..=latest).collect::<Vec<_>>(),
        "revisions with gaps"
    );
    // Each answer's revision is its own change's.
    for w in &written {
        for (action, revision) in &w.revisions {
            assert_eq!(
                by_revision.get(revision),
                Some(&vec![*action]),
                "revision {revision}"
            );
        }
    }
    // Every write was made once.
    let count = |action: &str, target: &str| {
        rows.iter()
            .filter(|row| row["action"] == action && row["target"] == target)
            .count()
    };
    for name in written.iter().flat_map(|w| &w.people) {
        assert_eq!(count("user.create", &format!("user:{name}")), 1, "{name}");
        assert_eq!(count("user.signoff", &format!("user:{name}")), 1, "{name}");
    }
    let people = r.count() * THREADS_PER_REPLICA * ROUNDS;
    let grants = rows
        .iter()
        .filter(|row| row["action"] == "grant.create")
        .count();
    // The fleet's own grant for its person, made through the CLI, and one per person.
    assert_eq!(grants, 1 + people);

    // Every replica's agents got every revision.
    for host in &mut hosts {
        wait_synced(host, latest, WAIT)?;
    }
    Ok(())
}
