//! The Ansible roles (`ansible/`), checked with the real tools: `ansible-lint` with the
//! production profile, and the systemd units the roles render checked by
//! `systemd-analyze verify`. The tools come from pip (`ansible-core`, `ansible-lint`), which
//! `scripts/test` installs; a missing tool fails the test, naming what to install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow};
use signoff_tests::agent::{Profile, agent_binary, sshd_commands_binary, workspace_root};
use signoff_tests::command::{run, run_ok};
use signoff_tests::plane::server_binary;
use signoff_tests::tools::pip_tool;

/// The `python3` the pip tools run under.
fn python_interpreter() -> Result<String> {
    let out = run(Command::new("python3").args(["-c", "import sys; print(sys.executable)"]))?;
    Ok(out.stdout.trim().to_owned())
}

fn ansible_dir() -> PathBuf {
    workspace_root().join("ansible")
}

#[test]
fn the_roles_pass_ansible_lint_with_the_production_profile() -> Result<()> {
    let lint = pip_tool("ansible-lint")?;
    let out = run(Command::new(lint)
        .args(["--profile", "production", "--nocolor"])
        .current_dir(ansible_dir()))?;
    assert!(
        out.success(),
        "ansible-lint --profile production failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

#[test]
fn the_rendered_units_pass_systemd_analyze_verify() -> Result<()> {
    let ansible = pip_tool("ansible")?;
    let dir = tempfile::Builder::new()
        .prefix("ansible-units-")
        .tempdir()?;
    // The units' ExecStart must name programs that exist.
    let bin = dir.path().join("bin");
    fs::create_dir(&bin)?;
    for (from, name) in [
        (agent_binary()?.to_owned(), "signoff-agent"),
        (sshd_commands_binary()?.to_owned(), "signoff-sshd"),
        (server_binary(Profile::Debug)?, "signoff-server"),
    ] {
        fs::copy(&from, bin.join(name)).with_context(|| format!("copying {}", from.display()))?;
    }
    for (role, template, unit, vars) in [
        (
            "signoff_agent",
            "signoff-agent.service.j2",
            "signoff-agent.service",
            format!(
                "signoff_agent_bin_dir={0} signoff_agent_config_dir=/etc/signoff \
                 signoff_agent_state_dir=/var/lib/signoff signoff_agent_krl_path=/var/lib/signoff/revoked.krl \
                 signoff_agent_keep_user_ca_keys=true signoff_agent_user_ca_path=/var/lib/signoff/user_ca.pub",
                bin.display()
            ),
        ),
        (
            "signoff_server",
            "signoff-server.service.j2",
            "signoff-server.service",
            format!(
                "signoff_server_bin_dir={0} signoff_server_user=root signoff_server_config_dir=/etc/signoff-server \
                 signoff_server_data_dir=/var/lib/signoff-server",
                bin.display()
            ),
        ),
    ] {
        let dest = dir.path().join(unit);
        let src = ansible_dir()
            .join("roles")
            .join(role)
            .join("templates")
            .join(template);
        run_ok(
            Command::new(&ansible)
                .args(["localhost", "-c", "local", "-m", "ansible.builtin.template"])
                .arg("-a")
                .arg(format!("src={} dest={}", src.display(), dest.display()))
                .arg("-e")
                .arg(&vars)
                .env("ANSIBLE_LOCALHOST_WARNING", "false")
                .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false"),
        )?;
        let out = run(Command::new("systemd-analyze").arg("verify").arg(&dest))?;
        assert!(
            out.success() && !out.stderr.contains(unit),
            "systemd-analyze verify {unit}:\n{}{}\n{}",
            out.stdout,
            out.stderr,
            fs::read_to_string(&dest)?
        );
    }
    Ok(())
}

/// Kills a child process on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sha256sum`'s hex digest of `path`.
fn sha256_hex(path: &Path) -> Result<String> {
    let out = run_ok(Command::new("sha256sum").arg(path))?;
    out.stdout
        .split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("sha256sum printed nothing for {}", path.display()))
}

/// `python3 -m http.server` on a loopback port, serving copies of some files (stopped on
/// drop).
struct WebServer {
    port: u16,
    _server: Child,
}

impl WebServer {
    fn serve(dir: &Path, files: &[(&Path, &str)]) -> Result<WebServer> {
        use signoff_tests::plane::{WAIT, wait_for};
        use signoff_tests::sshd::free_port;

        fs::create_dir_all(dir)?;
        for (from, name) in files {
            fs::copy(from, dir.join(name))
                .with_context(|| format!("copying {}", from.display()))?;
        }
        let port = free_port()?;
        let server = Child(
            Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1"])
                .arg(port.to_string())
                .arg("--directory")
                .arg(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("starting python3 -m http.server")?,
        );
        wait_for("the test's web server to listen", WAIT, || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ()))
        })?;
        Ok(WebServer {
            port,
            _server: server,
        })
    }
}

/// A one-play playbook applying one role to this machine (`connection: local`) with the
/// variables in a JSON file, and the real `ansible-playbook` to run it.
struct Play {
    playbook: PathBuf,
    vars_file: PathBuf,
    play: PathBuf,
}

impl Play {
    fn new(dir: &Path, name: &str, role: &str, vars: &serde_json::Value) -> Result<Play> {
        let vars_file = dir.join("vars.json");
        fs::write(&vars_file, vars.to_string())?;
        let play = dir.join("play.yml");
        fs::write(
            &play,
            format!(
                "- name: {name}\n  hosts: localhost\n  connection: local\n  \
                 gather_facts: false\n  roles:\n    - role: {role}\n"
            ),
        )?;
        Ok(Play {
            playbook: pip_tool("ansible-playbook")?,
            vars_file,
            play,
        })
    }

    /// `ansible-playbook` with `extra` arguments (`--check`, `-e …`).
    fn run(&self, extra: &[&str]) -> Result<signoff_tests::command::Finished> {
        run(Command::new(&self.playbook)
            .arg("-i")
            .arg("localhost,")
            .arg("-e")
            .arg(format!("@{}", self.vars_file.display()))
            .args(extra)
            .arg(&self.play)
            .env("ANSIBLE_ROLES_PATH", ansible_dir().join("roles"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCALHOST_WARNING", "false"))
    }
}

/// The playbook run for real against this machine (`ansible_connection=local`), every path
/// of the role pointed into a private tree (the binaries under `/usr/local/libexec`, as
/// sshd requires), with `signoff_agent_service_manager: none` because this machine has no
/// systemd to start units: the test starts `signoff-agent run` with the installed config
/// itself, and a real sshd with a main config that includes the role's drop-in directory.
/// The binaries come by URL with their SHA-256 from a loopback web server (the copy from
/// the controller is what the server role's test runs); a wrong checksum fails the run
/// before anything points sshd at them.
#[test]
fn a_playbook_run_installs_an_agent_that_admits_a_granted_user_and_refuses_after_a_revoke()
-> Result<()> {
    use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
    use signoff_tests::plane::{ControlPlane, WAIT, wait_for};
    use signoff_tests::principals::ensure_system_user;
    use signoff_tests::sshd::{free_port, ssh_login};
    use std::os::unix::fs::PermissionsExt as _;

    ensure_system_user()?;
    let plane = ControlPlane::start()?;
    let root = tempfile::Builder::new().prefix("ansible-host-").tempdir()?;
    let r = root.path();
    fs::set_permissions(r, fs::Permissions::from_mode(0o755))?;
    let keys_dir = r.join("keys");
    fs::create_dir(&keys_dir)?;
    let ca = KeyPair::generate(&keys_dir, "ca", KeyType::Ed25519)?;
    let user = KeyPair::generate(&keys_dir, "user", KeyType::Ed25519)?;
    let host_key = KeyPair::generate(&keys_dir, "host", KeyType::Ed25519)?;
    plane.cli(&["ca", "add", "corp", &ca.public.display().to_string()])?;
    plane.cli(&["group", "add", "web"])?;
    plane.cli(&["user", "add", "alice", "--key-id", "alice@corp"])?;
    plane.cli(&["grant", "add", "alice", "root", "web"])?;
    let cert = keys::sign(&CertRequest {
        ca: ca.clone(),
        subject: user.clone(),
        out: keys_dir.join("alice-cert"),
        key_id: "alice@corp".into(),
        principals: "alice".into(),
        serial: 1,
    })?;
    let token = plane.join_token("web")?;

    // Binaries where sshd accepts a principals command: root-owned, 0755 all the way up.
    let libexec = Path::new("/usr/local/libexec/signoff-test")
        .join(format!("ansible-{}", std::process::id()));
    fs::create_dir_all(&libexec)?;
    for d in [
        Path::new("/usr/local/libexec"),
        Path::new("/usr/local/libexec/signoff-test"),
        &libexec,
    ] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
    }
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = RemoveDir(libexec.clone());

    let sshd_config = r.join("sshd_config");
    let dropins = r.join("sshd_config.d");
    fs::write(
        &sshd_config,
        format!(
            "ListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM no\nStrictModes no\n\
             PermitRootLogin yes\nAuthorizedKeysFile none\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nInclude {}/*.conf\n",
            host_key.private.display(),
            r.join("sshd.pid").display(),
            dropins.display()
        ),
    )?;
    let signer = fs::read_to_string(plane.data_dir().join("order-signing.key.pub"))?;
    // The binaries are downloaded by URL with their SHA-256, as from a release page: here
    // from a web server on loopback.
    let www = WebServer::serve(
        &r.join("www"),
        &[
            (agent_binary()?, "signoff-agent"),
            (sshd_commands_binary()?, "signoff-sshd"),
        ],
    )?;
    let dead_replica = format!("https://localhost:{}", free_port()?);
    let vars = serde_json::json!({
        "signoff_agent_install_method": "url",
        "signoff_agent_binary_url": format!("http://127.0.0.1:{}/signoff-agent", www.port),
        "signoff_agent_binary_sha256": sha256_hex(agent_binary()?)?,
        "signoff_agent_sshd_binary_url": format!("http://127.0.0.1:{}/signoff-sshd", www.port),
        "signoff_agent_sshd_binary_sha256": sha256_hex(sshd_commands_binary()?)?,
        "signoff_agent_bin_dir": libexec.join("bin"),
        "signoff_agent_libexec_dir": libexec.join("libexec"),
        "signoff_agent_config_dir": r.join("etc/signoff"),
        "signoff_agent_state_dir": r.join("var/lib/signoff"),
        "signoff_agent_identity_dir": r.join("var/lib/signoff/identity"),
        "signoff_agent_krl_path": r.join("var/lib/signoff/revoked.krl"),
        "signoff_agent_unit_dir": r.join("etc/systemd/system"),
        "signoff_agent_sshd_config": sshd_config,
        "signoff_agent_sshd_config_dir": dropins,
        "signoff_agent_user_ca_path": r.join("var/lib/signoff/user_ca.pub"),
        "signoff_agent_user_ca_keys": [fs::read_to_string(&ca.public)?.trim()],
        "signoff_agent_order_signers": [signer.trim()],
        // admin would need one approval here; root (which this test logs in to) is not
        // privileged, so it needs none.
        "signoff_agent_privileged_accounts": ["admin"],
        "signoff_agent_approvals_required": 1,
        "signoff_agent_approvers": [{"name": "alice", "key": fs::read_to_string(&ca.public)?.trim()}],
        // Two replicas, the second down: the role gives the host the list in an order of
        // its own (seeded with the host id: for "ansible-host" the dead one comes first),
        // and the agent gets past the dead one.
        "signoff_agent_server_url": format!("{}, {dead_replica}", token.server),
        "signoff_agent_ca_pin": token.ca_pin,
        "signoff_agent_join_token": token.secret,
        "signoff_agent_host_id": "ansible-host",
        "signoff_agent_service_manager": "none",
        // The Python that runs Ansible runs its modules too (discovery may find another).
        "ansible_python_interpreter": python_interpreter()?,
    });
    fs::create_dir_all(r.join("etc/ssh"))?;
    let play = Play::new(r, "Install the signoff agent here", "signoff_agent", &vars)?;
    let ansible = |extra: &[&str]| play.run(extra);
    // A download that does not match its checksum installs nothing, and the run stops
    // before sshd is pointed at anything.
    let forged = ansible(&[
        "-e",
        &format!("signoff_agent_sshd_binary_sha256={}", "0".repeat(64)),
    ])?;
    assert!(
        !forged.success() && forged.stdout.contains("checksum"),
        "a wrong checksum must fail the run:\n{}",
        forged.stdout
    );
    assert!(
        !libexec.join("bin/signoff-sshd").exists(),
        "the download that failed its checksum is not installed"
    );
    assert!(
        !r.join("sshd_config.d/50-signoff.conf").exists(),
        "no drop-in after a failed download"
    );
    ansible(&[])?.ok().context("the first run")?;
    assert_eq!(
        fs::read_to_string(r.join("var/lib/signoff/identity/server"))?.trim(),
        format!("{dead_replica},{}", token.server),
        "the host keeps both replicas, in its own order (spread: not the order written)"
    );
    assert_eq!(
        fs::read_to_string(r.join("etc/signoff/approvers"))?,
        format!(
            "alice namespaces=\"signoff-approval\" {}\n",
            fs::read_to_string(&ca.public)?.trim()
        ),
        "the approvers file, as ssh-keygen -Y verify -f reads it"
    );
    assert!(
        fs::read_to_string(r.join("etc/signoff/agent.toml"))?
            .contains("[approvals]\nprivileged_accounts = [\"admin\"]\nrequired = 1\n"),
        "the agent configuration names the privileged accounts"
    );
    let installed = fs::read(libexec.join("bin/signoff-sshd"))?;
    assert!(
        installed == fs::read(sshd_commands_binary()?)?,
        "the downloaded signoff-sshd is the one served"
    );
    let second = ansible(&[])?;
    assert!(
        second.success() && second.stdout.contains("changed=0"),
        "second run must change nothing:\n{}",
        second.stdout
    );
    let check = ansible(&["--check"])?;
    assert!(
        check.success() && check.stdout.contains("changed=0"),
        "check mode on a converged host must report no change:\n{}",
        check.stdout
    );
    let sshd_t = run(Command::new("/usr/sbin/sshd")
        .arg("-t")
        .arg("-f")
        .arg(&sshd_config))?;
    assert!(sshd_t.success(), "sshd -t: {}", sshd_t.stderr);

    // The agent, as its unit would run it, and sshd with the role's drop-in.
    let config = r.join("etc/signoff/agent.toml");
    let _agent = Child(
        Command::new(libexec.join("bin/signoff-agent"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(r.join("agent.log"))?)
            .spawn()?,
    );
    let port = free_port()?;
    let _sshd = Child(
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-p", &port.to_string(), "-f"])
            .arg(&sshd_config)
            .stderr(fs::File::create(r.join("sshd.log"))?)
            .spawn()?,
    );
    let status = |args: &[&str]| -> Result<serde_json::Value> {
        let out = run(Command::new(libexec.join("bin/signoff-agent"))
            .args(args)
            .arg("--config")
            .arg(&config))?;
        Ok(serde_json::from_str(&out.stdout).unwrap_or_default())
    };
    let revision = plane.revision()?;
    wait_for("the installed agent to connect and sync", WAIT, || {
        let s = status(&["status", "--json"])?;
        Ok(
            (s["connected"] == true && s["applied_revision"].as_u64() >= Some(revision))
                .then_some(()),
        )
    })
    .with_context(|| fs::read_to_string(r.join("agent.log")).unwrap_or_default())?;

    let login = wait_for("a granted login through the installed sshd", WAIT, || {
        let l = ssh_login(port, "root", &user.private, &cert)?;
        Ok(l.success.then_some(l))
    })
    .with_context(|| fs::read_to_string(r.join("sshd.log")).unwrap_or_default())?;
    assert!(login.success);

    plane.revoke(&serde_json::json!({"kind": "key_id", "key_id": "alice@corp", "ca": null}))?;
    wait_for("the revoked certificate to be refused", WAIT, || {
        let l = ssh_login(port, "root", &user.private, &cert)?;
        Ok((!l.success && l.stderr.contains("Permission denied")).then_some(()))
    })
    .with_context(|| fs::read_to_string(r.join("sshd.log")).unwrap_or_default())?;

    // The audit head the agent witnessed, gathered by the role (issue 20): the line
    // `signoff-server audit verify --witness` reads, which the untouched log passes.
    let heads = r.join("witnessed-heads");
    ansible(&[
        "-e",
        &format!("signoff_agent_witness_file={}", heads.display()),
    ])?
    .ok()
    .context("gathering the witnessed heads")?;
    let gathered = fs::read_to_string(&heads)?;
    let line: serde_json::Value = serde_json::from_str(
        gathered
            .lines()
            .find(|l| !l.trim().is_empty())
            .ok_or_else(|| anyhow!("no head gathered: {gathered:?}"))?,
    )?;
    assert!(line["seq"].as_u64() > Some(0), "{gathered}");
    assert!(line["host"].is_string(), "{gathered}");
    let verify = plane.cli_run(&["audit", "verify", "--witness", &heads.display().to_string()])?;
    assert!(
        verify.success() && verify.stdout.contains("intact"),
        "{}{}",
        verify.stdout,
        verify.stderr
    );

    // Uninstall: the drop-in goes, then the rest; sshd's configuration stays valid. (The
    // `signoff` user stays: other tests on this machine use it.)
    let dropin = r.join("sshd_config.d/50-signoff.conf");
    assert!(dropin.is_file());
    let removed = ansible(&[
        "-e",
        "signoff_agent_state=absent",
        "-e",
        "signoff_agent_remove_user=false",
    ])?
    .ok()
    .context("the uninstall")?;
    assert!(!dropin.exists(), "the drop-in is removed");
    assert!(
        !libexec.join("bin/signoff-sshd").exists(),
        "the binaries are removed"
    );
    assert!(!r.join("var/lib/signoff").exists(), "the state is removed");
    let sshd_t = run(Command::new("/usr/sbin/sshd")
        .arg("-t")
        .arg("-f")
        .arg(&sshd_config))?;
    assert!(
        sshd_t.success(),
        "sshd -t after uninstall: {}",
        sshd_t.stderr
    );
    let order = removed
        .stdout
        .find("Remove the sshd drop-in")
        .zip(removed.stdout.find("Remove the agent's files"));
    assert!(
        order.is_some_and(|(dropin, rest)| dropin < rest),
        "the drop-in goes first:\n{}",
        removed.stdout
    );
    Ok(())
}

/// The `signoff_server` role run for real against this machine, into a private tree, with
/// `signoff_server_service_manager: none`: the test starts the installed binary with the
/// installed config as the role's user (as the unit would), sees it serve, makes a join
/// token with the installed CLI, and enrolls and syncs a real agent against the listener
/// the role configured.
#[test]
fn a_playbook_run_installs_a_control_plane_that_serves_and_enrolls_an_agent() -> Result<()> {
    use signoff_tests::plane::{Agent, JoinToken, WAIT, http_request, wait_for};
    use signoff_tests::sshd::free_port;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    let root = tempfile::Builder::new()
        .prefix("ansible-server-")
        .tempdir()?;
    let r = root.path();
    fs::set_permissions(r, fs::Permissions::from_mode(0o755))?;
    let (http_port, agents_port) = (free_port()?, free_port()?);
    let user = "signoff-server";
    let vars = serde_json::json!({
        "signoff_server_install_method": "files",
        "signoff_server_binary_src": server_binary(Profile::Debug)?,
        "signoff_server_bin_dir": r.join("bin"),
        "signoff_server_user": user,
        "signoff_server_config_dir": r.join("etc/signoff-server"),
        "signoff_server_data_dir": r.join("var/lib/signoff-server"),
        "signoff_server_unit_dir": r.join("etc/systemd/system"),
        "signoff_server_http_listen": format!("127.0.0.1:{http_port}"),
        "signoff_server_agents_listen": format!("127.0.0.1:{agents_port}"),
        "signoff_server_agent_names": ["localhost"],
        "signoff_server_service_manager": "none",
        "ansible_python_interpreter": python_interpreter()?,
    });
    for d in ["bin", "etc/systemd/system"] {
        fs::create_dir_all(r.join(d))?;
    }
    let play = Play::new(
        r,
        "Install the signoff control plane here",
        "signoff_server",
        &vars,
    )?;
    let ansible = |extra: &[&str]| play.run(extra);
    ansible(&[])?.ok().context("the first run")?;
    for (extra, what) in [(&[][..], "a second run"), (&["--check"][..], "check mode")] {
        let again = ansible(extra)?;
        assert!(
            again.success() && again.stdout.contains("changed=0"),
            "{what} on a converged host must change nothing:\n{}",
            again.stdout
        );
    }
    let data = r.join("var/lib/signoff-server");
    let meta = fs::metadata(&data)?;
    let uid = run_ok(Command::new("id").args(["-u", user]))?
        .stdout
        .trim()
        .parse::<u32>()?;
    assert_eq!(
        (meta.mode() & 0o777, meta.uid()),
        (0o700, uid),
        "the data directory belongs to {user}, mode 0700"
    );
    assert!(
        r.join("etc/systemd/system/signoff-server.service")
            .is_file()
    );

    // As the unit runs it: the role's user, the installed binary and config.
    let bin = r.join("bin/signoff-server");
    let config = r.join("etc/signoff-server/server.toml");
    let as_user = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
        ])
        .arg(&bin)
        .arg("--config")
        .arg(&config)
        .args(args)
        .current_dir(r);
        cmd
    };
    let _server = Child(
        as_user(&["serve"])
            .stdout(fs::File::create(r.join("first-start.txt"))?)
            .stderr(fs::File::create(r.join("server.log"))?)
            .spawn()?,
    );
    let http: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
    let login = wait_for("the installed control plane to serve HTTP", WAIT, || {
        Ok(http_request(http, "GET", "/login", "", None)
            .ok()
            .filter(|res| res.status == 200))
    })
    .with_context(|| fs::read_to_string(r.join("server.log")).unwrap_or_default())?;
    assert!(login.body.contains("signoff"), "{}", login.body);

    run_ok(&mut as_user(&["group", "add", "web"]))?;
    let out = run_ok(&mut as_user(&[
        "--json", "token", "create", "--groups", "web",
    ]))?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)?;
    let token = JoinToken {
        secret: v["secret"].as_str().context("secret")?.to_owned(),
        server: v["server"].as_str().context("server")?.to_owned(),
        ca_pin: v["ca_pin"].as_str().context("ca_pin")?.to_owned(),
    };
    assert_eq!(
        token.server,
        format!("https://localhost:{agents_port}"),
        "the join token names the listener and name the role configured"
    );
    let mut agent = Agent::new("")?;
    agent.enroll_with_token(&token, "web1")?;
    agent.start()?;
    wait_for(
        "the agent to sync with the installed control plane",
        WAIT,
        || Ok(agent.applied_revision()?.filter(|&rev| rev > 0)),
    )
    .with_context(|| agent.log())?;
    Ok(())
}

/// The role's effective-config check (`check-sshd-effective`) against the real `sshd -T`:
/// with the shipped drop-in alone it passes; for each directive signoff depends on, an
/// earlier drop-in (sorting first, as a cloud image's does) that sets it fails the check
/// with a message naming that file and the directive.
#[test]
fn the_effective_config_check_names_an_earlier_drop_in_that_wins() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let conf_d = dir.path().join("sshd_config.d");
    fs::create_dir(&conf_d)?;
    let host_key = dir.path().join("host_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key),
    )?;
    let main = dir.path().join("sshd_config");
    fs::write(
        &main,
        format!(
            "Include {}/*.conf\nHostKey {}\n",
            conf_d.display(),
            host_key.display()
        ),
    )?;
    let dropin = conf_d.join("50-signoff.conf");
    fs::copy(
        workspace_root().join("packaging/deb/signoff-agent/50-signoff.conf"),
        &dropin,
    )?;
    let script = ansible_dir().join("roles/signoff_agent/files/check-sshd-effective");
    let check = || {
        run(Command::new("sh")
            .arg(&script)
            .arg("/usr/sbin/sshd")
            .arg(&main)
            .arg(&dropin))
    };
    let alone = check()?;
    assert!(
        alone.success(),
        "the shipped drop-in alone passes: {}",
        alone.stderr
    );
    let earlier = conf_d.join("10-image.conf");
    let effective = |key: &str| -> Result<String> {
        let out = run_ok(
            Command::new("/usr/sbin/sshd")
                .arg("-T")
                .arg("-f")
                .arg(&main),
        )?;
        Ok(out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")).map(str::to_owned))
            .unwrap_or_default())
    };
    for (key, line, theirs) in [
        (
            "authorizedprincipalscommand",
            "AuthorizedPrincipalsCommand /bin/echo root\nAuthorizedPrincipalsCommandUser signoff",
            "/bin/echo root",
        ),
        (
            "authorizedprincipalscommanduser",
            "AuthorizedPrincipalsCommandUser nobody",
            "nobody",
        ),
        (
            "revokedkeys",
            "RevokedKeys /etc/ssh/other.krl",
            "/etc/ssh/other.krl",
        ),
        (
            "trustedusercakeys",
            "TrustedUserCAKeys /etc/ssh/other_ca.pub",
            "/etc/ssh/other_ca.pub",
        ),
        ("loglevel", "LogLevel INFO", "INFO"),
    ] {
        fs::write(&earlier, format!("{line}\n"))?;
        let out = check()?;
        // sshd keeps the first value for most directives; where it keeps the last (OpenSSH
        // 9.2's AuthorizedPrincipalsCommand) the drop-in wins and the check passes.
        if effective(key)? == theirs {
            assert!(!out.success(), "{key}: the earlier drop-in fails the check");
            assert!(
                out.stderr.contains(&format!("effective {key} "))
                    && out
                        .stderr
                        .contains(&format!("{} sets it first", earlier.display())),
                "{key}: the message names the directive and the file:\n{}",
                out.stderr
            );
        } else {
            assert!(
                out.success(),
                "{key}: the drop-in's value is in effect, the check passes: {}",
                out.stderr
            );
        }
    }
    assert_eq!(
        effective("loglevel")?,
        "INFO",
        "the last case was a real conflict"
    );
    Ok(())
}
