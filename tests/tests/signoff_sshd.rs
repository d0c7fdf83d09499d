//! Single sign-off, end to end: the real `signoff-server`, three real agents enrolled over
//! mTLS, each beside its own real sshd (`UsePAM yes`, the agent's principals command and
//! KRL, the agent watching that sshd's sessions), and real `ssh` clients holding pty and
//! non-pty sessions open. One sign-off request ends the person's access everywhere: new
//! logins are refused and every session of theirs ends, on the hosts online at once, and on
//! a host whose agent was down as soon as it is back, including a session opened while it
//! was down. A sign-off acknowledged just before the control plane is SIGKILLed survives
//! the crash and completes.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use signoff_agent::sessions::procfs::Procfs;
use signoff_tests::agent::agent_binary;
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::krl::{Verdict, ssh_keygen_check};
use signoff_tests::plane::{Agent, ControlPlane, WAIT, http_request, sync, wait_for};
use signoff_tests::principals::{COMMAND_USER, InstalledAgent, ensure_system_user};
use signoff_tests::sessions::{
    ClientOptions, PamSshd, SshClient, TEST_ACCOUNT, ensure_test_account,
};
use signoff_tests::sshd::{Login, ssh_login};
use tempfile::TempDir;

const GROUP: &str = "web";
const USER: &str = "mallory";
const KEY_ID: &str = "mallory@corp";

/// One host: its agent and the sshd it serves.
struct Host {
    id: String,
    agent: Agent,
    sshd: PamSshd,
}

/// The control plane, its CA and person, and hosts made on demand.
struct Fleet {
    plane: ControlPlane,
    signoff_token: String,
    keys: TempDir,
    ca: KeyPair,
    user_key: KeyPair,
    cert: PathBuf,
    installed: InstalledAgent,
    allowed_signers: PathBuf,
}

impl Fleet {
    fn new() -> Result<Fleet> {
        ensure_system_user()?;
        ensure_test_account()?;
        let plane = ControlPlane::start()?;
        let keys = tempfile::Builder::new()
            .prefix("signoff-e2e-keys-")
            .tempdir()?;
        let ca = KeyPair::generate(keys.path(), "ca", KeyType::Ed25519)?;
        let user_key = KeyPair::generate(keys.path(), "user", KeyType::Ed25519)?;
        plane.cli(&["ca", "add", "corp", &ca.public.display().to_string()])?;
        plane.cli(&["group", "add", GROUP])?;
        plane.cli(&["user", "add", USER, "--key-id", KEY_ID])?;
        plane.cli(&["grant", "add", USER, TEST_ACCOUNT, GROUP])?;
        let token = plane.cli_json(&["api-token", "create", "hr", "--scope", "read,signoff"])?;
        let signoff_token = token["secret"]
            .as_str()
            .ok_or_else(|| anyhow!("no secret in {token}"))?
            .to_owned();
        let cert = keys::sign(&CertRequest {
            ca: ca.clone(),
            subject: user_key.clone(),
            out: keys.path().join("mallory-cert"),
            key_id: KEY_ID.to_owned(),
            principals: USER.to_owned(),
            serial: 77,
        })?;
        // Agents trust the control plane's order-signing key, installed beside them (as
        // Ansible does), never learned from the wire.
        let signer = fs::read_to_string(plane.data_dir().join("order-signing.key.pub"))
            .context("reading the order-signing public key")?;
        let allowed_signers = keys.path().join("allowed_signers");
        fs::write(
            &allowed_signers,
            format!("signoff namespaces=\"signoff-order\" {}", signer.trim()),
        )?;
        let installed = InstalledAgent::install(agent_binary()?)?;
        Ok(Fleet {
            plane,
            signoff_token,
            keys,
            ca,
            user_key,
            cert,
            installed,
            allowed_signers,
        })
    }

    /// A host `id` in the group: sshd wired to a new agent, which is enrolled, started and
    /// in sync.
    fn host(&self, id: &str) -> Result<Host> {
        let mut agent = Agent::new(&format!(
            "allowed_signers = {:?}\n",
            self.allowed_signers.display().to_string()
        ))?;
        let sshd = PamSshd::start_with(
            &self.ca.public,
            &format!(
                "AuthorizedPrincipalsCommand {} principals --config {} %u %i %s %F %f\n\
                 AuthorizedPrincipalsCommandUser {COMMAND_USER}\n\
                 RevokedKeys {}\n",
                self.installed.path().display(),
                agent.config().display(),
                agent.krl_path().display(),
            ),
        )?;
        agent.append_config(&format!(
            "[sessions]\nsshd_log = {:?}\nsshd_port = {}\nreconcile_interval = \"1s\"\n",
            sshd.log_path().display().to_string(),
            sshd.port()
        ))?;
        agent.enroll(&self.plane, id, GROUP)?;
        agent.start()?;
        sync(&self.plane, &mut agent)?;
        Ok(Host {
            id: id.to_owned(),
            agent,
            sshd,
        })
    }

    /// A session held open by a real client; `marker` makes its command findable in /proc.
    fn open(&self, host: &Host, pty: bool, marker: u32) -> Result<SshClient> {
        let command = format!("sleep {marker}");
        SshClient::spawn(
            host.sshd.port(),
            TEST_ACCOUNT,
            &self.user_key.private,
            &self.cert,
            &ClientOptions {
                pty,
                command: &command,
                verbose: false,
            },
        )
    }

    fn login(&self, host: &Host) -> Result<Login> {
        ssh_login(
            host.sshd.port(),
            TEST_ACCOUNT,
            &self.user_key.private,
            &self.cert,
        )
    }

    fn hr(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let body = body.map(Value::to_string);
        let res = http_request(
            self.plane.http_addr(),
            method,
            path,
            &self.signoff_token,
            body.as_deref(),
        )?;
        let v = serde_json::from_str(&res.body).unwrap_or(Value::String(res.body.clone()));
        Ok((res.status, v))
    }

    /// Live sessions of the person at the control plane, as (host, source port).
    fn live_sessions(&self) -> Result<Vec<(String, u64)>> {
        let (status, v) = self.hr("GET", &format!("/api/v1/sessions?user={USER}"), None)?;
        if status != 200 {
            bail!("GET /api/v1/sessions answered {status}: {v}");
        }
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["state"] == "live")
            .map(|s| {
                (
                    s["host_id"].as_str().unwrap_or_default().to_owned(),
                    s["source_port"].as_u64().unwrap_or(0),
                )
            })
            .collect())
    }

    fn wait_live_sessions(&self, expected: usize, why: &str) -> Result<()> {
        wait_for(
            format_args!("{expected} live sessions of {USER} at the control plane ({why})"),
            WAIT,
            || Ok((self.live_sessions()?.len() == expected).then_some(())),
        )
        .map_err(|e| anyhow!("{e:#}\nsessions: {:?}", self.live_sessions()))
    }

    /// Waits until the person's latest sign-off satisfies `done`.
    fn wait_signoff(&self, what: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
        let mut last = Value::Null;
        wait_for(format_args!("the sign-off to be {what}"), WAIT, || {
            let (status, v) = self.hr("GET", &format!("/api/v1/users/{USER}/signoff"), None)?;
            if status != 200 {
                bail!("GET signoff answered {status}: {v}");
            }
            last = v.clone();
            Ok(done(&v).then_some(v))
        })
        .map_err(|e| {
            anyhow!(
                "{e:#}\nlast record: {last:#}\nserver log:\n{}",
                self.plane.log()
            )
        })
    }
}

/// Host states of a sign-off record: (host, state).
fn host_states(record: &Value) -> Vec<(String, String)> {
    record["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            (
                h["host"].as_str().unwrap_or_default().to_owned(),
                h["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// PIDs of processes whose command line is `sleep MARKER` (the sessions' commands).
fn sleeping(marker: u32) -> Vec<u32> {
    let p = Procfs::default();
    let want = format!("sleep\0{marker}\0");
    p.pids()
        .unwrap_or_default()
        .into_iter()
        .filter(|pid| {
            p.cmdline(*pid)
                .map(|c| c == want.as_bytes())
                .unwrap_or(false)
                && p.stat(*pid).is_ok_and(|s| !s.is_dead())
        })
        .collect()
}

fn wait_gone(client: &mut SshClient, marker: u32, host: &Host) -> Result<()> {
    let exited = client.wait_exit(WAIT)?;
    if exited.is_none() {
        bail!(
            "the ssh client of session {marker} on {} is still connected; agent log:\n{}",
            host.id,
            host.agent.log()
        );
    }
    wait_for(
        format_args!("no process of session {marker} left on {}", host.id),
        WAIT,
        || Ok(sleeping(marker).is_empty().then_some(())),
    )
}

fn assert_refused(login: &Login, host: &Host) {
    assert!(
        !login.success && login.stderr.contains("Permission denied"),
        "a new login of the signed-off person on {} must be refused; ssh exited {:?}: {}\nsshd log:\n{}",
        host.id,
        login.code,
        login.stderr,
        host.sshd.log()
    );
}

#[test]
fn signoff_ends_access_on_online_hosts_at_once_and_on_an_offline_host_when_it_returns() -> Result<()>
{
    let fleet = Fleet::new()?;
    let mut hosts = vec![
        fleet.host("host-1")?,
        fleet.host("host-2")?,
        fleet.host("host-3")?,
    ];
    // A pty and a non-pty session on each host.
    let mut clients = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let base = 6100 + 10 * i as u32;
        clients.push((i, base + 1, fleet.open(host, true, base + 1)?));
        clients.push((i, base + 2, fleet.open(host, false, base + 2)?));
    }
    fleet.wait_live_sessions(6, "two per host")?;

    hosts[2].agent.stop()?;
    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["user"], USER);

    let record = fleet.wait_signoff("confirmed by the two online hosts", |r| {
        let states = host_states(r);
        states.iter().filter(|(_, s)| s == "confirmed").count() == 2
    })?;
    assert_eq!(
        host_states(&record),
        vec![
            ("host-1".to_owned(), "confirmed".to_owned()),
            ("host-2".to_owned(), "confirmed".to_owned()),
            ("host-3".to_owned(), "offline".to_owned()),
        ]
    );
    assert!(record["completed_at"].is_null(), "{record}");
    for (i, marker, client) in clients.iter_mut().filter(|(i, ..)| *i < 2) {
        wait_gone(client, *marker, &hosts[*i])?;
    }
    for host in &hosts[..2] {
        assert_refused(&fleet.login(host)?, host);
    }
    let killed: usize = record["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["killed_sessions"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(killed, 4, "both sessions on each online host: {record}");

    // The third host's agent is down: its sessions live on, and a login still succeeds
    // there from the state it had (best effort) — that session must end on reconnect too.
    for (_, marker, _) in clients.iter().filter(|(i, ..)| *i == 2) {
        assert_eq!(sleeping(*marker).len(), 1, "session {marker} on host-3");
    }
    let mut late = fleet.open(&hosts[2], false, 6199)?;
    wait_for("the late session's command to run", WAIT, || {
        Ok((!sleeping(6199).is_empty()).then_some(()))
    })?;

    hosts[2].agent.start()?;
    let record = fleet.wait_signoff("complete", |r| !r["completed_at"].is_null())?;
    assert!(host_states(&record).iter().all(|(_, s)| s == "confirmed"));
    for (i, marker, client) in clients.iter_mut().filter(|(i, ..)| *i == 2) {
        wait_gone(client, *marker, &hosts[*i])?;
    }
    wait_gone(&mut late, 6199, &hosts[2])?;
    assert_refused(&fleet.login(&hosts[2])?, &hosts[2]);
    fleet.wait_live_sessions(0, "every session ended")?;

    // Idempotent: asking again returns the same record.
    let (status, again) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left the company"})),
    )?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], record["id"]);

    // The KRL every host wrote revokes the certificate, as ssh-keygen -Q sees it.
    for host in &hosts {
        let verdicts = ssh_keygen_check(&host.agent.krl_path(), std::slice::from_ref(&fleet.cert))?
            .verdicts()?;
        assert_eq!(verdicts, vec![Verdict::Revoked], "KRL of {}", host.id);
    }
    Ok(())
}

#[test]
fn a_signoff_acknowledged_before_the_control_plane_is_killed_survives_and_completes() -> Result<()>
{
    let mut fleet = Fleet::new()?;
    let mut host = fleet.host("host-1")?;
    let mut client = fleet.open(&host, false, 6201)?;
    fleet.wait_live_sessions(1, "the open session")?;
    // Keep the agent from hearing of it before the crash: the record must come from disk.
    host.agent.stop()?;

    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "key stolen"})),
    )?;
    assert_eq!(status, 201, "{record}");
    fleet.plane.kill()?;
    fleet.plane.restart()?;

    let (status, after) = fleet.hr("GET", &format!("/api/v1/users/{USER}/signoff"), None)?;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["id"], record["id"]);
    assert_eq!(
        host_states(&after),
        vec![("host-1".into(), "offline".into())]
    );

    host.agent.start()?;
    fleet.wait_signoff("complete", |r| !r["completed_at"].is_null())?;
    wait_gone(&mut client, 6201, &host)?;
    assert_refused(&fleet.login(&host)?, &host);
    Ok(())
}

#[test]
fn a_statement_from_an_untrusted_signer_kills_nothing_and_says_why() -> Result<()> {
    let fleet = Fleet::new()?;
    // This host trusts another key only: the control plane's statement must not verify.
    let other = KeyPair::generate(fleet.keys.path(), "other-signer", KeyType::Ed25519)?;
    fs::write(
        &fleet.allowed_signers,
        format!("signoff {}", other.public_line()?),
    )?;
    let host = fleet.host("host-1")?;
    let mut client = fleet.open(&host, false, 6301)?;
    fleet.wait_live_sessions(1, "the open session")?;

    let (status, record) = fleet.hr(
        "POST",
        &format!("/api/v1/users/{USER}/signoff"),
        Some(&json!({"reason": "left"})),
    )?;
    assert_eq!(status, 201, "{record}");
    let record = fleet.wait_signoff("refused by the host", |r| {
        r["hosts"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("allowed_signers"))
    })?;
    assert_eq!(
        host_states(&record),
        vec![("host-1".into(), "pending".into())]
    );
    // The session is alive; new logins are refused all the same (grants and KRL).
    assert!(client.wait_exit(Duration::from_millis(500))?.is_none());
    assert_eq!(sleeping(6301).len(), 1);
    assert_refused(&fleet.login(&host)?, &host);
    Ok(())
}
