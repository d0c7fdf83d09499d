//! Live sessions and kill orders, end to end: the real `signoff-server`, a real agent
//! enrolled over mTLS beside a real sshd (`UsePAM yes`) whose sessions it watches, and real
//! `ssh` clients logging in to a non-root account with a certificate (harness:
//! `signoff_tests::fleet`).
//!
//! - Pty and non-pty sessions appear at the control plane's API with their key ID, serial,
//!   account and source port, and end there when the client exits.
//! - A kill through the API ends the client's connection and every process of the login,
//!   `setsid` ones included; the order and the agent's result are in the audit log. So does
//!   killing all of a person's sessions.
//! - An agent restarted while sessions are open makes the control plane's list whole again:
//!   its sessions are `unknown` while it is down, `live` again after, and one that ended
//!   meanwhile is `ended`.
//! - Every way an order can be wrong is refused, kills nothing, and is reported back with
//!   why. A real control plane only ever signs and sends valid orders, so these orders are
//!   delivered by `signoff_tests::order_server`: a test-side stand-in for the control
//!   plane's end of the agent stream, certified by the real control plane's agent CA, which
//!   captures the `OrderResult` the agent sends. The agent, sshd and ssh stay real; each
//!   test ends by delivering a valid order for the same session, which the agent executes,
//!   so a refusal is never an artefact of the stand-in.

use signoff_tests::now;
use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use rand::Rng as _;
use serde_json::{Value, json};
use signoff_proto::orders::{self, KillOrder};
use signoff_proto::v1;
use signoff_tests::fleet::{Fleet, Host, KEY_ID, USER, sleeping};
use signoff_tests::order_server::OrderServer;
use signoff_tests::plane::{WAIT, wait_for};
use signoff_tests::sessions::{ClientOptions, SshClient, TEST_ACCOUNT, processes_of};
use ssh_key::PrivateKey;

/// The serial of the fleet's certificate.
const SERIAL: u64 = 77;

/// A login held open by a real client, running `sleep MARKER` (and, with `setsid`, a
/// detached `sleep MARKER+1` too). On drop, what is left of it is killed.
struct Login {
    client: SshClient,
    markers: Vec<u32>,
    source_port: u16,
}

impl Login {
    fn open(fleet: &Fleet, host: &Host, pty: bool, marker: u32, setsid: bool) -> Result<Login> {
        let (command, markers) = if setsid {
            (
                format!(
                    "setsid sleep {} </dev/null >/dev/null 2>&1 & sleep {marker}",
                    marker + 1
                ),
                vec![marker, marker + 1],
            )
        } else {
            (format!("sleep {marker}"), vec![marker])
        };
        let client = SshClient::spawn(
            host.sshd.port(),
            TEST_ACCOUNT,
            &fleet.user_key.private,
            &fleet.cert,
            &ClientOptions {
                pty,
                command: &command,
                verbose: false,
            },
        )?;
        let source_port = client.local_addr(host.sshd.port(), WAIT)?.port();
        let login = Login {
            client,
            markers,
            source_port,
        };
        wait_for(
            format_args!("the commands of login {marker} to run"),
            WAIT,
            || Ok((login.commands().len() == login.markers.len()).then_some(())),
        )?;
        // Whatever happens to the test, sshd's drop kills what is left of this login.
        host.sshd.track(login.audit_session()?);
        Ok(login)
    }

    /// PIDs of the login's `sleep` commands.
    fn commands(&self) -> Vec<u32> {
        self.markers.iter().flat_map(|m| sleeping(*m)).collect()
    }

    /// The kernel audit session id that pam_loginuid gave the login.
    fn audit_session(&self) -> Result<u32> {
        let pid = *self
            .commands()
            .first()
            .ok_or_else(|| anyhow!("login {:?} runs no command", self.markers))?;
        let text = fs::read_to_string(format!("/proc/{pid}/sessionid"))?;
        let id: u32 = text.trim().parse()?;
        if id == u32::MAX {
            bail!("process {pid} has no audit session id: is pam_loginuid in sshd's PAM stack?");
        }
        Ok(id)
    }

    fn connected(&mut self) -> Result<bool> {
        Ok(self.client.wait_exit(Duration::ZERO)?.is_none())
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        for pid in self.commands() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Sessions on `host` at the control plane in `state` (`live`, `lingering`, `unknown`,
/// `ended`).
fn sessions(fleet: &Fleet, host: &Host, state: &str) -> Result<Vec<Value>> {
    let (status, v) = fleet.hr(
        "GET",
        &format!("/api/v1/sessions?host={}&state={state}", host.id),
        None,
    )?;
    if status != 200 {
        bail!("GET /api/v1/sessions answered {status}: {v}");
    }
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// Waits until the control plane lists `login`'s session on `host` in `state`; returns it.
fn wait_session(fleet: &Fleet, host: &Host, login: &Login, state: &str) -> Result<Value> {
    wait_for(
        format_args!(
            "the session from port {} to be {state} at the control plane",
            login.source_port
        ),
        WAIT,
        || {
            Ok(sessions(fleet, host, state)?
                .into_iter()
                .find(|s| s["source_port"] == u64::from(login.source_port)))
        },
    )
    .with_context(|| {
        format!(
            "sessions: {:?}\nagent log:\n{}",
            sessions(fleet, host, "live"),
            host.agent.log()
        )
    })
}

fn id_of(session: &Value) -> Result<String> {
    session["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("session without id: {session}"))
}

/// Waits until the client saw its connection end and no process of the login is left,
/// found by its audit session id (detached ones included) and by its commands.
fn wait_login_gone(login: &mut Login, audit_session: u32) -> Result<()> {
    if login.client.wait_exit(WAIT)?.is_none() {
        bail!(
            "the ssh client of login {:?} is still connected",
            login.markers
        );
    }
    let ids = BTreeSet::from([audit_session]);
    wait_for(
        format_args!("no process of audit session {audit_session} left"),
        WAIT,
        || Ok((processes_of(&ids).is_empty() && login.commands().is_empty()).then_some(())),
    )
}

/// The audit rows whose action is `action`, newest first, with their details parsed.
fn audit(fleet: &Fleet, action: &str) -> Result<Vec<(Value, Value)>> {
    let rows = fleet
        .plane
        .cli_json(&["audit", "list", "--filter", action, "--limit", "1000"])?;
    Ok(rows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == action)
        .map(|r| {
            let details = r["details"]
                .as_str()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            (r.clone(), details)
        })
        .collect())
}

/// Asserts that the order `nonce` for `session` on `host` is in the audit log, and waits
/// for the agent's result of it there; returns the result's details.
fn audited_result(fleet: &Fleet, host: &Host, session: &str, nonce: &str) -> Result<Value> {
    let orders = audit(fleet, "session.kill")?;
    let (row, details) = orders
        .iter()
        .find(|(_, d)| d["order"] == nonce)
        .ok_or_else(|| anyhow!("order {nonce} is not in the audit log: {orders:?}"))?;
    assert_eq!(row["target"], format!("session:{}/{session}", host.id));
    assert_eq!(row["reason"], "compromised laptop");
    assert_eq!(details["user"], USER);
    assert_eq!(details["account"], TEST_ACCOUNT);
    wait_for(
        format_args!("the result of order {nonce} in the audit log"),
        WAIT,
        || {
            Ok(audit(fleet, "session.kill.result")?
                .into_iter()
                .find(|(_, d)| d["order"] == nonce)
                .map(|(row, d)| {
                    assert_eq!(row["actor"], format!("agent:{}", host.id));
                    d
                }))
        },
    )
}

#[test]
fn pty_and_non_pty_sessions_appear_with_their_attribution_and_end_when_the_client_exits()
-> Result<()> {
    let fleet = Fleet::new()?;
    let host = fleet.host("host-1")?;
    let ca_fingerprint = fleet.ca.sha256_fingerprint()?;
    let key_fingerprint = fleet.user_key.sha256_fingerprint()?;
    for (pty, marker) in [(true, 7101), (false, 7111)] {
        let mut login = Login::open(&fleet, &host, pty, marker, false)?;
        // Listed from its Accepted line; its tty may follow as an update.
        let session = wait_for(
            format_args!("the session from port {} with its tty", login.source_port),
            WAIT,
            || {
                let s = wait_session(&fleet, &host, &login, "live")?;
                Ok((!pty || s["tty"].as_str().is_some_and(|t| !t.is_empty())).then_some(s))
            },
        )?;
        assert_eq!(session["key_id"], KEY_ID, "{session}");
        assert_eq!(session["serial"], SERIAL, "{session}");
        assert_eq!(session["account"], TEST_ACCOUNT, "{session}");
        assert_eq!(session["user"], USER, "{session}");
        assert_eq!(session["source_address"], "127.0.0.1", "{session}");
        assert_eq!(session["ca_fingerprint"], ca_fingerprint.as_str());
        assert_eq!(session["key_fingerprint"], key_fingerprint.as_str());
        let tty = session["tty"].as_str().unwrap_or_default();
        if pty {
            assert!(
                tty.starts_with("pts/"),
                "a pty session has a tty: {session}"
            );
        } else {
            assert_eq!(tty, "", "a non-pty session has none: {session}");
        }
        let pids: Vec<u64> = session["pids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        // The processes as of the announcement (the command may not have started yet):
        // every one of them is of this login.
        assert!(!pids.is_empty(), "{session}");
        let audit_session = login.audit_session()?.to_string();
        for pid in pids {
            if let Ok(id) = fs::read_to_string(format!("/proc/{pid}/sessionid")) {
                assert_eq!(id.trim(), audit_session, "process {pid} of {session}");
            }
        }
        // One GET names it too.
        let id = id_of(&session)?;
        let (status, one) = fleet.hr("GET", &format!("/api/v1/sessions/host-1/{id}"), None)?;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one["source_port"], u64::from(login.source_port));

        login.client.exit()?;
        if !pty {
            // A non-pty login's command runs on after the client left (OpenSSH does not
            // end it): the login is lingering, with who runs what, until it is killed.
            let lingering = wait_session(&fleet, &host, &login, "lingering")?;
            assert_eq!(lingering["id"], id.as_str());
            let left = lingering["lingering"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for pid in login.commands() {
                let p = left
                    .iter()
                    .find(|p| p["pid"] == u64::from(pid))
                    .with_context(|| format!("{pid} not listed as lingering: {lingering}"))?;
                assert_eq!(p["account"], TEST_ACCOUNT, "{lingering}");
                assert_eq!(p["command"], format!("sleep {marker}"), "{lingering}");
            }
            let (status, order) = fleet.hr(
                "POST",
                &format!("/api/v1/sessions/host-1/{id}/kill"),
                Some(&json!({"reason": "left a command behind"})),
            )?;
            assert_eq!(status, 202, "a lingering login can be killed: {order}");
        }
        let ended = wait_session(&fleet, &host, &login, "ended")?;
        assert_eq!(ended["id"], id.as_str());
        assert!(ended["ended_at"].as_i64().is_some(), "{ended}");
        assert!(login.commands().is_empty(), "nothing of the login is left");
        assert!(
            sessions(&fleet, &host, "live")?.is_empty(),
            "no live session is left after the client exited"
        );
    }
    Ok(())
}

#[test]
fn a_kill_through_the_api_ends_the_connection_and_every_process_of_the_login() -> Result<()> {
    let fleet = Fleet::new()?;
    let host = fleet.host("host-1")?;
    for (pty, marker) in [(true, 7201), (false, 7211)] {
        let mut login = Login::open(&fleet, &host, pty, marker, true)?;
        let audit_session = login.audit_session()?;
        let commands = login.commands();
        let session = wait_session(&fleet, &host, &login, "live")?;
        let id = id_of(&session)?;

        let (status, order) = fleet.hr(
            "POST",
            &format!("/api/v1/sessions/host-1/{id}/kill"),
            Some(&json!({"reason": "compromised laptop"})),
        )?;
        assert_eq!(status, 202, "{order}");
        assert_eq!(order["state"], "sent", "{order}");
        assert_eq!(order["session_id"], id.as_str());
        let nonce = order["nonce"].as_str().unwrap_or_default().to_owned();

        wait_login_gone(&mut login, audit_session)
            .with_context(|| format!("agent log:\n{}", host.agent.log()))?;
        wait_session(&fleet, &host, &login, "ended")?;
        let result = audited_result(&fleet, &host, &id, &nonce)?;
        assert_eq!(result["executed"], true, "{result}");
        assert_eq!(result["refusal"], "", "{result}");
        assert_eq!(result["remaining_pids"], json!([]), "{result}");
        let ended: Vec<u64> = result["ended_pids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        for pid in commands {
            assert!(
                ended.contains(&u64::from(pid)),
                "the agent confirms that command {pid} (setsid ones included) ended: {result}"
            );
        }

        // The session has ended: a second kill is a conflict, not a new order.
        let (status, again) = fleet.hr(
            "POST",
            &format!("/api/v1/sessions/host-1/{id}/kill"),
            Some(&json!({"reason": "compromised laptop"})),
        )?;
        assert_eq!(status, 409, "{again}");
    }
    Ok(())
}

#[test]
fn killing_all_of_a_persons_sessions_ends_each_of_them() -> Result<()> {
    let fleet = Fleet::new()?;
    let host = fleet.host("host-1")?;
    let mut logins = vec![
        Login::open(&fleet, &host, true, 7301, true)?,
        Login::open(&fleet, &host, false, 7311, true)?,
    ];
    let mut audit_sessions = Vec::new();
    for login in &logins {
        wait_session(&fleet, &host, login, "live")?;
        audit_sessions.push(login.audit_session()?);
    }

    let (status, orders) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/kill-sessions"),
        Some(&json!({"reason": "compromised laptop"})),
    )?;
    assert_eq!(status, 202, "{orders}");
    let orders = orders.as_array().cloned().unwrap_or_default();
    assert_eq!(orders.len(), 2, "one order per session: {orders:?}");
    assert!(orders.iter().all(|o| o["state"] == "sent"), "{orders:?}");

    for (login, audit_session) in logins.iter_mut().zip(audit_sessions) {
        wait_login_gone(login, audit_session)
            .with_context(|| format!("agent log:\n{}", host.agent.log()))?;
    }
    for order in &orders {
        let nonce = order["nonce"].as_str().unwrap_or_default();
        let session = order["session_id"].as_str().unwrap_or_default();
        let result = audited_result(&fleet, &host, session, nonce)?;
        assert_eq!(result["executed"], true, "{result}");
    }
    wait_for("no live session of the person", WAIT, || {
        Ok(sessions(&fleet, &host, "live")?.is_empty().then_some(()))
    })?;

    // Nobody to kill is not an error: an empty list.
    let (status, none) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/kill-sessions"),
        Some(&json!({"reason": "compromised laptop"})),
    )?;
    assert_eq!(status, 202, "{none}");
    assert_eq!(none, json!([]));
    let (status, unknown) = fleet.hr(
        "POST",
        "/api/v1/users/nobody/kill-sessions",
        Some(&json!({"reason": "compromised laptop"})),
    )?;
    assert_eq!(status, 404, "{unknown}");
    Ok(())
}

#[test]
fn after_an_agent_restart_the_control_planes_list_is_whole_again() -> Result<()> {
    let fleet = Fleet::new()?;
    let mut host = fleet.host("host-1")?;
    let mut leaves = Login::open(&fleet, &host, true, 7401, false)?;
    let stays = Login::open(&fleet, &host, false, 7411, false)?;
    let leaves_id = id_of(&wait_session(&fleet, &host, &leaves, "live")?)?;
    let stays_id = id_of(&wait_session(&fleet, &host, &stays, "live")?)?;

    host.agent.stop()?;
    // Not dropped, not assumed ended: unknown while nobody can tell.
    wait_session(&fleet, &host, &leaves, "unknown")?;
    wait_session(&fleet, &host, &stays, "unknown")?;
    assert!(sessions(&fleet, &host, "live")?.is_empty());

    // Meanwhile one login ends and another starts.
    leaves.client.exit()?;
    let arrives = Login::open(&fleet, &host, false, 7421, false)?;

    host.agent.start()?;
    let stays_again = wait_session(&fleet, &host, &stays, "live")?;
    assert_eq!(stays_again["id"], stays_id.as_str(), "the same session");
    wait_session(&fleet, &host, &arrives, "live")?;
    let ended = wait_session(&fleet, &host, &leaves, "ended")?;
    assert_eq!(ended["id"], leaves_id.as_str());
    let live: BTreeSet<u64> = sessions(&fleet, &host, "live")?
        .iter()
        .filter_map(|s| s["source_port"].as_u64())
        .collect();
    assert_eq!(
        live,
        BTreeSet::from([u64::from(stays.source_port), u64::from(arrives.source_port)])
    );
    assert!(sessions(&fleet, &host, "unknown")?.is_empty());
    Ok(())
}

// ---- refused orders, delivered by the stand-in --------------------------------------------

/// A host whose agent talks to the stand-in, with sessions open, and the control plane's
/// order-signing key (the one the agent's `allowed_signers` trusts).
struct Refusals {
    _fleet: Fleet,
    host: Host,
    logins: Vec<Login>,
    ids: Vec<String>,
    server: OrderServer,
    key: PrivateKey,
}

impl Refusals {
    /// `count` non-pty logins (markers from `marker`, with a `setsid` child each), found
    /// at the real control plane, then the agent moved over to the stand-in.
    fn new(marker: u32, count: u32) -> Result<Refusals> {
        let fleet = Fleet::new()?;
        let mut host = fleet.host("host-1")?;
        let mut logins = Vec::new();
        let mut ids = Vec::new();
        for i in 0..count {
            let login = Login::open(&fleet, &host, false, marker + 10 * i, true)?;
            ids.push(id_of(&wait_session(&fleet, &host, &login, "live")?)?);
            logins.push(login);
        }
        let key_path = fleet.plane.data_dir().join("order-signing.key");
        let key = PrivateKey::from_openssh(fs::read_to_string(&key_path)?)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let server = OrderServer::start(&fleet.plane.data_dir())?;
        host.agent.stop()?;
        server.redirect(&host.agent.state_dir().join("identity"))?;
        let mut refusals = Refusals {
            _fleet: fleet,
            host,
            logins,
            ids,
            server,
            key,
        };
        refusals.reconnect()?;
        Ok(refusals)
    }

    /// Starts the agent (stopped) and waits until it listed its sessions to the stand-in.
    fn reconnect(&mut self) -> Result<()> {
        let before = self.server.connections();
        self.host.agent.start()?;
        self.server.wait_connections(before + 1)?;
        let want: BTreeSet<String> = self
            .logins
            .iter()
            .zip(&self.ids)
            .filter(|(l, _)| !l.commands().is_empty())
            .map(|(_, id)| id.clone())
            .collect();
        wait_for(
            "the agent to list its sessions to the stand-in",
            WAIT,
            || {
                let listed: BTreeSet<String> = self.server.listed_sessions().into_iter().collect();
                Ok(listed.is_superset(&want).then_some(()))
            },
        )
        .with_context(|| format!("agent log:\n{}", self.host.agent.log()))
    }

    /// A valid order for session `i`, as the control plane would make it.
    fn order(&self, i: usize) -> KillOrder {
        let now = now();
        KillOrder {
            host_id: self.host.id.clone(),
            session_id: self.ids[i].clone(),
            reason: "compromised laptop".into(),
            operator: "token:e2e".into(),
            not_before: now,
            not_after: now + 300,
            nonce: rand::rng().random(),
        }
    }

    fn signed_by(key: &PrivateKey, bytes: Vec<u8>) -> Result<v1::SignedOrder> {
        let signature = orders::sign(key, &bytes)?;
        Ok(v1::SignedOrder {
            order: bytes,
            signature,
        })
    }

    /// `order` signed with the trusted key.
    fn signed(&self, order: &KillOrder) -> Result<v1::SignedOrder> {
        Refusals::signed_by(&self.key, order.encode()?)
    }

    /// Delivers `order`; asserts the agent refused it saying `why`, and that session `i`
    /// lives on: its client connected, its processes running, no end reported.
    fn assert_refused(&mut self, order: v1::SignedOrder, i: usize, why: &str) -> Result<()> {
        let result = self.server.deliver(order)?;
        assert!(!result.executed, "refused: {result:?}");
        assert!(
            result.refusal.contains(why),
            "the refusal says {why:?}: {:?}",
            result.refusal
        );
        assert!(result.ended_pids.is_empty(), "{result:?}");
        let login = &mut self.logins[i];
        assert!(login.connected()?, "the client of session {i} is connected");
        assert_eq!(
            login.commands().len(),
            2,
            "both commands of session {i} (one detached) run"
        );
        assert!(
            !self.server.ended_sessions().contains(&self.ids[i]),
            "the agent reported no end of session {i}"
        );
        Ok(())
    }

    /// The positive control: a valid order for session `i` is executed and ends it.
    fn assert_valid_order_kills(&mut self, i: usize) -> Result<()> {
        let audit_session = self.logins[i].audit_session()?;
        let commands = self.logins[i].commands();
        let result = self.server.deliver(self.signed(&self.order(i))?)?;
        assert!(result.executed, "a valid order is executed: {result:?}");
        for pid in commands {
            assert!(result.ended_pids.contains(&pid), "{pid} ended: {result:?}");
        }
        wait_login_gone(&mut self.logins[i], audit_session)
    }
}

#[test]
fn an_order_whose_bytes_were_altered_after_signing_is_refused() -> Result<()> {
    let mut r = Refusals::new(7501, 1)?;
    let signed = r.signed(&r.order(0))?;
    let mut altered = KillOrder::decode(&signed.order)?;
    altered.reason = "forged".into();
    let forged = v1::SignedOrder {
        order: altered.encode()?,
        signature: signed.signature,
    };
    r.assert_refused(forged, 0, "signature does not match the order")?;
    r.assert_valid_order_kills(0)
}

#[test]
fn an_order_signed_by_a_key_not_in_allowed_signers_is_refused() -> Result<()> {
    let mut r = Refusals::new(7601, 1)?;
    let stranger = PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(
        &rand::rng().random(),
    ));
    let order = Refusals::signed_by(&stranger, r.order(0).encode()?)?;
    r.assert_refused(order, 0, "not in allowed_signers")?;
    r.assert_valid_order_kills(0)
}

#[test]
fn an_order_for_another_host_is_refused() -> Result<()> {
    let mut r = Refusals::new(7701, 1)?;
    let mut order = r.order(0);
    order.host_id = "host-2".into();
    r.assert_refused(r.signed(&order)?, 0, "order is for host \"host-2\"")?;
    r.assert_valid_order_kills(0)
}

#[test]
fn an_expired_order_is_refused() -> Result<()> {
    let mut r = Refusals::new(7801, 1)?;
    let mut order = r.order(0);
    // Past its window by more than the 30 s of clock skew allowed.
    order.not_before = now() - 900;
    order.not_after = now() - 600;
    r.assert_refused(r.signed(&order)?, 0, "order expired")?;
    r.assert_valid_order_kills(0)
}

#[test]
fn an_order_not_yet_valid_is_refused() -> Result<()> {
    let mut r = Refusals::new(7901, 1)?;
    let mut order = r.order(0);
    order.not_before = now() + 600;
    order.not_after = now() + 900;
    r.assert_refused(r.signed(&order)?, 0, "order not valid before")?;
    r.assert_valid_order_kills(0)
}

#[test]
fn a_replayed_order_is_refused_also_after_an_agent_restart() -> Result<()> {
    let mut r = Refusals::new(8001, 2)?;
    // The first delivery is executed.
    let first = r.signed(&r.order(0))?;
    let audit_session = r.logins[0].audit_session()?;
    let result = r.server.deliver(first.clone())?;
    assert!(result.executed, "{result:?}");
    wait_login_gone(&mut r.logins[0], audit_session)?;
    // The same bytes again, and a validly signed order for the other session that reuses
    // the nonce: both refused, the other session untouched.
    let mut reuse = r.order(1);
    reuse.nonce = KillOrder::decode(&first.order)?.nonce;
    let reuse = r.signed(&reuse)?;
    let result = r.server.deliver(first.clone())?;
    assert!(
        !result.executed && result.refusal.contains("replayed"),
        "{result:?}"
    );
    r.assert_refused(reuse.clone(), 1, "replayed")?;

    // The nonces are on disk: a restarted agent refuses both too.
    r.host.agent.stop()?;
    r.reconnect()?;
    let result = r.server.deliver(first)?;
    assert!(
        !result.executed && result.refusal.contains("replayed"),
        "{result:?}"
    );
    r.assert_refused(reuse, 1, "replayed")?;
    r.assert_valid_order_kills(1)
}

#[test]
fn truncated_order_bytes_are_refused() -> Result<()> {
    let mut r = Refusals::new(8101, 1)?;
    let signed = r.signed(&r.order(0))?;
    let cut = signed.order.len() - 7;
    // Cut in transit: the signature no longer matches.
    let in_transit = v1::SignedOrder {
        order: signed.order[..cut].to_vec(),
        signature: signed.signature.clone(),
    };
    r.assert_refused(in_transit, 0, "signature does not match the order")?;
    // Cut before signing (a broken signer): the signature holds, the bytes do not parse.
    let cut_then_signed = Refusals::signed_by(&r.key, signed.order[..cut].to_vec())?;
    r.assert_refused(cut_then_signed, 0, "order does not parse")?;
    // The armored signature cut short.
    let half = signed.signature.len() / 2;
    let short_signature = v1::SignedOrder {
        order: signed.order.clone(),
        signature: signed.signature[..half].to_owned(),
    };
    r.assert_refused(short_signature, 0, "signature does not parse")?;
    r.assert_valid_order_kills(0)
}
