//! A small fleet for sign-off tests and benchmarks: the real `signoff-server`, real agents
//! enrolled over mTLS, each beside its own real sshd (`UsePAM yes`, the agent's principals
//! command and KRL, the agent watching that sshd's sessions), one person with a grant on
//! every host, and real `ssh` clients holding sessions open.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;
use signoff_agent::sessions::procfs::Procfs;

use crate::agent::{Profile, agent_binary, release_agent_binary};
use crate::keys::{self, CertRequest, KeyPair, KeyType};
use crate::plane::{Agent, ControlPlane, WAIT, http_request, server_binary, sync, wait_for};
use crate::principals::{COMMAND_USER, InstalledAgent, ensure_system_user};
use crate::sessions::{ClientOptions, PamSshd, SshClient, TEST_ACCOUNT, ensure_test_account};
use crate::sshd::{Login, ssh_login};
use tempfile::TempDir;

/// The host group every host joins.
pub const GROUP: &str = "web";
/// The person.
pub const USER: &str = "mallory";
/// Their certificate's key ID.
pub const KEY_ID: &str = "mallory@corp";

/// One host: its agent and the sshd it serves.
#[derive(Debug)]
pub struct Host {
    /// Its id at the control plane.
    pub id: String,
    /// Its agent.
    pub agent: Agent,
    /// Its sshd.
    pub sshd: PamSshd,
}

/// The control plane, its CA and person, and hosts made on demand.
#[derive(Debug)]
pub struct Fleet {
    /// The control plane.
    pub plane: ControlPlane,
    /// An API token with scopes read and signoff.
    pub signoff_token: String,
    /// Where keys and certificates are.
    pub keys: TempDir,
    /// The user CA every sshd trusts.
    pub ca: KeyPair,
    /// The person's key.
    pub user_key: KeyPair,
    /// Their certificate (key ID [`KEY_ID`], principal [`USER`]).
    pub cert: PathBuf,
    installed: InstalledAgent,
    agent_bin: PathBuf,
    /// The agents' `allowed_signers` (the control plane's order key).
    pub allowed_signers: PathBuf,
    /// Lines added to the top of every agent's `agent.toml` from now on.
    pub agent_config: String,
}

impl Fleet {
    /// The control plane with CA `corp`, group [`GROUP`], the person with a grant for
    /// [`TEST_ACCOUNT`] there, and an `allowed_signers` with the order key.
    pub fn new() -> Result<Fleet> {
        Fleet::with_profile(Profile::Debug)
    }

    /// [`Fleet::new`] with the binaries of `profile` (release for benchmarks).
    pub fn with_profile(profile: Profile) -> Result<Fleet> {
        Fleet::over(ControlPlane::start_with(&server_binary(profile)?)?, profile)
    }

    /// [`Fleet::with_profile`] around a control plane already running: the first of
    /// several replicas on one database, say (the others see what is set up here through
    /// the database, and hosts enrolled with [`Fleet::host_via`] can be spread over them).
    pub fn over(plane: ControlPlane, profile: Profile) -> Result<Fleet> {
        ensure_system_user()?;
        ensure_test_account()?;
        let keys = tempfile::Builder::new()
            .prefix("signoff-e2e-keys-")
            .tempdir()?;
        let ca = KeyPair::generate(keys.path(), "ca", KeyType::Ed25519)?;
        let user_key = KeyPair::generate(keys.path(), "user", KeyType::Ed25519)?;
        plane.cli(&["ca", "add", "corp", &ca.public.display().to_string()])?;
        plane.cli(&["group", "add", GROUP])?;
        plane.cli(&["user", "add", USER, "--key-id", KEY_ID])?;
        plane.cli(&["grant", "add", USER, TEST_ACCOUNT, GROUP])?;
        let signoff_token = plane.token("hr", "read,signoff")?;
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
        let agent_bin = match profile {
            Profile::Debug => agent_binary()?,
            Profile::Release => release_agent_binary()?,
        };
        let installed = InstalledAgent::install(agent_bin)?;
        Ok(Fleet {
            plane,
            signoff_token,
            keys,
            ca,
            user_key,
            cert,
            installed,
            agent_bin: agent_bin.to_owned(),
            allowed_signers,
            agent_config: String::new(),
        })
    }

    /// A host `id` in the group: sshd wired to a new agent, which is enrolled, started and
    /// in sync. Its `/proc` safety-net rescan runs every second (the default is 3 s), so
    /// that a test never waits long on a missed log line.
    pub fn host(&self, id: &str) -> Result<Host> {
        self.host_with(id, Some("1s"))
    }

    /// [`Fleet::host`] with the agent's `reconcile_interval`, or its default for `None`
    /// (for benchmarks of the agent as deployed).
    pub fn host_with(&self, id: &str, reconcile_interval: Option<&str>) -> Result<Host> {
        self.host_setup(
            id,
            &HostSpec {
                reconcile_interval,
                ..self.default_host()
            },
        )
    }

    /// [`Fleet::host_with`] whose sshd trusts the user CAs in `ca_keys` (its
    /// `TrustedUserCAKeys`) instead of [`Fleet::ca`]; with `agent_keeps_it`, the agent
    /// keeps that file from its host view (`trusted_user_ca_keys`). Certificates only: its
    /// sshd has no `AuthorizedKeysCommand`, so a person's registered plain key (which
    /// certificates are issued for) does not log in by itself when a certificate is refused.
    pub fn host_trusting(
        &self,
        id: &str,
        reconcile_interval: Option<&str>,
        ca_keys: &Path,
        agent_keeps_it: bool,
    ) -> Result<Host> {
        self.host_setup(
            id,
            &HostSpec {
                reconcile_interval,
                ca_keys,
                agent_keeps_ca_keys: agent_keeps_it,
                plain_keys: false,
                ..self.default_host()
            },
        )
    }

    /// [`Fleet::host_trusting`] with `sshd_extra` lines in its `sshd_config`
    /// (`MaxStartups` for concurrent logins, say).
    pub fn host_trusting_with_sshd(
        &self,
        id: &str,
        ca_keys: &Path,
        sshd_extra: &str,
    ) -> Result<Host> {
        self.host_setup(
            id,
            &HostSpec {
                reconcile_interval: None,
                sshd_extra,
                ca_keys,
                plain_keys: false,
                ..self.default_host()
            },
        )
    }

    /// [`Fleet::host_with`] with `sshd_extra` lines in its `sshd_config` (`MaxStartups`
    /// for a storm of logins, say).
    pub fn host_with_sshd(
        &self,
        id: &str,
        reconcile_interval: Option<&str>,
        sshd_extra: &str,
    ) -> Result<Host> {
        self.host_setup(
            id,
            &HostSpec {
                reconcile_interval,
                sshd_extra,
                ..self.default_host()
            },
        )
    }

    /// [`Fleet::host`] whose agent is enrolled with the server list `servers`
    /// (`https://HOST:PORT` URLs, comma-separated) instead of the control plane's own
    /// address: several replicas, the one it should use first leading.
    pub fn host_via(&self, id: &str, servers: &str) -> Result<Host> {
        self.host_setup(
            id,
            &HostSpec {
                servers: Some(servers),
                ..self.default_host()
            },
        )
    }

    /// [`Fleet::host`] whose agent reads sshd's log from `log` instead of the file sshd
    /// writes: a test copies lines there when it wants the agent to see them (a log that
    /// lags the logins).
    pub fn host_reading_log(&self, id: &str, log: &Path) -> Result<Host> {
        self.host_setup(
            id,
            &HostSpec {
                sshd_log: Some(log),
                ..self.default_host()
            },
        )
    }

    /// What [`Fleet::host`] sets up: a 1 s rescan, sshd's own log, the fleet's CA, plain
    /// keys admitted by `AuthorizedKeysCommand`.
    fn default_host(&self) -> HostSpec<'_> {
        HostSpec {
            reconcile_interval: Some("1s"),
            sshd_extra: "",
            sshd_log: None,
            ca_keys: &self.ca.public,
            agent_keeps_ca_keys: false,
            plain_keys: true,
            servers: None,
        }
    }

    fn host_setup(&self, id: &str, spec: &HostSpec<'_>) -> Result<Host> {
        let HostSpec {
            reconcile_interval,
            sshd_extra,
            sshd_log,
            ca_keys,
            agent_keeps_ca_keys,
            plain_keys,
            servers,
        } = *spec;
        let keeps = if agent_keeps_ca_keys {
            format!(
                "trusted_user_ca_keys = {:?}\n",
                ca_keys.display().to_string()
            )
        } else {
            String::new()
        };
        let mut agent = Agent::with_binary(
            &self.agent_bin,
            &format!(
                "allowed_signers = {:?}\n{keeps}{}",
                self.allowed_signers.display().to_string(),
                self.agent_config
            ),
        )?;
        let authorized_keys = if plain_keys {
            format!(
                "AuthorizedKeysCommand {} authorized-keys --config {} %u\n\
                 AuthorizedKeysCommandUser {COMMAND_USER}\n",
                self.installed.path().display(),
                agent.config().display(),
            )
        } else {
            String::new()
        };
        let sshd = PamSshd::start_with(
            ca_keys,
            &format!(
                "AuthorizedPrincipalsCommand {} principals --config {} %u %i %s %F %f\n\
                 AuthorizedPrincipalsCommandUser {COMMAND_USER}\n\
                 {authorized_keys}\
                 RevokedKeys {}\n{sshd_extra}",
                self.installed.path().display(),
                agent.config().display(),
                agent.krl_path().display(),
            ),
        )?;
        let reconcile = reconcile_interval
            .map(|i| format!("reconcile_interval = {i:?}\n"))
            .unwrap_or_default();
        agent.append_config(&format!(
            "[sessions]\nsshd_log = {:?}\nsshd_port = {}\n{reconcile}",
            sshd_log.unwrap_or(sshd.log_path()).display().to_string(),
            sshd.port()
        ))?;
        let mut token = self.plane.join_token(GROUP)?;
        if let Some(servers) = servers {
            token.server = servers.to_owned();
        }
        agent.enroll_with_token(&token, id)?;
        agent.start()?;
        sync(&self.plane, &mut agent)?;
        Ok(Host {
            id: id.to_owned(),
            agent,
            sshd,
        })
    }

    /// A session held open by a real client running `sleep MARKER`; `marker` makes its
    /// command findable in /proc.
    pub fn open(&self, host: &Host, pty: bool, marker: u32) -> Result<Held> {
        let command = format!("sleep {marker}");
        let client = SshClient::spawn(
            host.sshd.port(),
            TEST_ACCOUNT,
            &self.user_key.private,
            &self.cert,
            &ClientOptions {
                pty,
                command: &command,
                verbose: false,
            },
        )?;
        Ok(Held { client, marker })
    }

    /// A session held open like [`Fleet::open`], logged in with the plain key `key` (no
    /// certificate: sshd's `AuthorizedKeysCommand` admits it).
    pub fn open_plain_key(&self, host: &Host, key: &KeyPair, marker: u32) -> Result<Held> {
        let command = format!("sleep {marker}");
        let client = SshClient::spawn_plain_key(
            host.sshd.port(),
            TEST_ACCOUNT,
            &key.private,
            &ClientOptions {
                pty: false,
                command: &command,
                verbose: false,
            },
        )?;
        Ok(Held { client, marker })
    }

    /// One login (`ssh … true`) of the person to `host`.
    pub fn login(&self, host: &Host) -> Result<Login> {
        ssh_login(
            host.sshd.port(),
            TEST_ACCOUNT,
            &self.user_key.private,
            &self.cert,
        )
    }

    /// The installed agent binary every host's sshd runs its commands from.
    pub fn command_binary(&self) -> &Path {
        self.installed.path()
    }

    /// A request to the HTTP API with the read+signoff token: (status, JSON body).
    pub fn hr(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        self.hr_at(&self.plane, method, path, body)
    }

    /// [`Fleet::hr`] to `plane`, another replica on the fleet's database.
    pub fn hr_at(
        &self,
        plane: &ControlPlane,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let body = body.map(Value::to_string);
        let res = http_request(
            plane.http_addr(),
            method,
            path,
            &self.signoff_token,
            body.as_deref(),
        )?;
        let v = serde_json::from_str(&res.body).unwrap_or(Value::String(res.body.clone()));
        Ok((res.status, v))
    }

    /// Live sessions of the person at the control plane, as (host, source port).
    pub fn live_sessions(&self) -> Result<Vec<(String, u64)>> {
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

    pub fn wait_live_sessions(&self, expected: usize, why: &str) -> Result<()> {
        wait_for(
            format_args!("{expected} live sessions of {USER} at the control plane ({why})"),
            WAIT,
            || Ok((self.live_sessions()?.len() == expected).then_some(())),
        )
        .map_err(|e| anyhow!("{e:#}\nsessions: {:?}", self.live_sessions()))
    }

    /// Waits until the person's latest sign-off satisfies `done`.
    pub fn wait_signoff(&self, what: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
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
pub fn host_states(record: &Value) -> Vec<(String, String)> {
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
pub fn sleeping(marker: u32) -> Vec<u32> {
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

/// Waits until the client's connection ended and no process of session `marker` is left.
pub fn wait_gone(held: &mut Held, host: &Host) -> Result<()> {
    let marker = held.marker;
    let exited = held.client.wait_exit(WAIT)?;
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

/// A session held open by [`Fleet::open`]. On drop, its command is killed too: a
/// non-pty session's command outlives its client and sshd.
#[derive(Debug)]
pub struct Held {
    /// The client.
    pub client: SshClient,
    /// The number in its `sleep` command.
    pub marker: u32,
}

impl Drop for Held {
    fn drop(&mut self) {
        for pid in sleeping(self.marker) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Asserts that `login` was refused with `Permission denied`.
pub fn assert_refused(login: &Login, host: &Host) {
    assert!(
        !login.success && login.stderr.contains("Permission denied"),
        "a new login of the signed-off person on {} must be refused; ssh exited {:?}: {}\nsshd log:\n{}",
        host.id,
        login.code,
        login.stderr,
        host.sshd.log()
    );
}

/// How [`Fleet`] sets up one host (see [`Fleet::default_host`]).
#[derive(Clone, Copy)]
struct HostSpec<'a> {
    /// The agent's `reconcile_interval`; `None` for its default.
    reconcile_interval: Option<&'a str>,
    /// Extra `sshd_config` lines.
    sshd_extra: &'a str,
    /// The log the agent reads, when not the one sshd writes.
    sshd_log: Option<&'a Path>,
    /// sshd's `TrustedUserCAKeys`.
    ca_keys: &'a Path,
    /// Whether the agent keeps `ca_keys` from its host view (`trusted_user_ca_keys`).
    agent_keeps_ca_keys: bool,
    /// Whether sshd admits registered plain keys (`AuthorizedKeysCommand`).
    plain_keys: bool,
    /// The agent's server list, when not the control plane's own address.
    servers: Option<&'a str>,
}
