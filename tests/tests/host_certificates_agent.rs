//! Host certificates through the real agent (issue 19): `signoff-agent enroll` and
//! `signoff-agent run`, against a real `signoff-server`, get the host key of a real sshd
//! certified by the control plane's host CA, write the certificate where sshd's
//! `HostCertificate` points, and reload sshd with the configured command. The real `ssh`,
//! with `StrictHostKeyChecking=yes` and a known_hosts holding only the `@cert-authority`
//! line that `signoff-server host-ca known-hosts` prints, then connects; with another CA's
//! line it refuses the host. A host that presents a key already bound to another host gets
//! nothing, keeps the certificate it had, and its sshd is not reloaded.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use signoff_tests::keys::{KeyPair, KeyType};
use signoff_tests::plane::{Agent, ControlPlane, JoinToken, WAIT, wait_for};
use signoff_tests::sshd::free_port;
use signoff_tests::tools::{SSH, SSHD};

/// The host the agent enrolls as; the certificate names it.
const HOST: &str = "web1.example.com";

/// A real sshd presenting `HostCertificate` from the agent's certificate directory;
/// admits `client`'s key for root through an authorized_keys file. Killed on drop (our
/// own child, by PID).
struct CertSshd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for CertSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CertSshd {
    /// `hosts`: each host key with the certificate file sshd is pointed at.
    fn start(dir: &Path, hosts: &[(PathBuf, PathBuf)], client_pub: &Path) -> Result<Self> {
        let authorized = dir.join("authorized_keys");
        fs::copy(client_pub, &authorized)?;
        let config = dir.join("sshd_config");
        let mut text = String::new();
        for (key, cert) in hosts {
            text.push_str(&format!(
                "HostKey {}\nHostCertificate {}\n",
                key.display(),
                cert.display()
            ));
        }
        text.push_str(&format!(
            "AuthorizedKeysFile {}\nStrictModes no\n\
             PermitRootLogin yes\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPidFile none\nListenAddress 127.0.0.1\n\
             LogLevel VERBOSE\n",
            authorized.display()
        ));
        fs::write(&config, text)?;
        let port = free_port()?;
        let log = dir.join("sshd.log");
        let out = fs::File::create(&log)?;
        let child = Command::new(SSHD.path()?)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting sshd")?;
        let sshd = CertSshd { child, port, log };
        sshd.wait_listening(1)?;
        Ok(sshd)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until sshd has started listening `times` times (a reload re-executes it) and
    /// accepts connections.
    fn wait_listening(&self, times: usize) -> Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        wait_for(
            format!(
                "sshd listening for the {times}. time; its log:\n{}",
                self.log()
            ),
            WAIT,
            || {
                Ok((self.log().matches("Server listening on").count() >= times
                    && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
                .then_some(()))
            },
        )
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// `ssh -o StrictHostKeyChecking=yes` to the sshd as `name`, trusting `known_hosts` only.
fn ssh(port: u16, known_hosts: &Path, key: &Path, name: &str) -> Result<Output> {
    ssh_with(port, known_hosts, key, name, &[])
}

/// [`ssh`] with more options (`-o HostKeyAlgorithms=…`).
fn ssh_with(
    port: u16,
    known_hosts: &Path,
    key: &Path,
    name: &str,
    options: &[&str],
) -> Result<Output> {
    Ok(Command::new(SSH.path()?)
        .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
        .args(options)
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", "IdentitiesOnly=yes"])
        .arg("-o")
        .arg(format!("HostKeyAlias={name}"))
        .arg("-i")
        .arg(key)
        .args(["-p", &port.to_string()])
        .args(["root@127.0.0.1", "echo", "connected"])
        .stdin(Stdio::null())
        .output()?)
}

struct Setup {
    plane: ControlPlane,
    dir: tempfile::TempDir,
    host_key: KeyPair,
    client: KeyPair,
    cert_dir: PathBuf,
}

impl Setup {
    fn new() -> Result<Setup> {
        let plane = ControlPlane::start()?;
        plane.cli(&["group", "add", "web"])?;
        let dir = tempfile::Builder::new()
            .prefix("signoff-hostcert-")
            .tempdir()?;
        let host_key = KeyPair::generate(dir.path(), "ssh_host_ed25519_key", KeyType::Ed25519)?;
        let client = KeyPair::generate(dir.path(), "id_ed25519", KeyType::Ed25519)?;
        let cert_dir = dir.path().join("certs");
        Ok(Setup {
            plane,
            dir,
            host_key,
            client,
            cert_dir,
        })
    }

    fn cert_path(&self) -> PathBuf {
        self.cert_dir.join("ssh_host_ed25519_key-cert.pub")
    }

    fn sshd(&self) -> Result<CertSshd> {
        CertSshd::start(
            self.dir.path(),
            &[(self.host_key.private.clone(), self.cert_path())],
            &self.client.public,
        )
    }

    /// An agent whose `[host_certificates]` names this host key, the certificate
    /// directory, and `reload` as the reload command.
    fn agent(&self, reload: &[String]) -> Result<Agent> {
        let agent = Agent::new("")?;
        agent.append_config(&format!(
            "[host_certificates]\nhost_keys = [{:?}]\ncertificate_dir = {:?}\nreload_command = {:?}\n",
            self.dir
                .path()
                .join("ssh_host_*_key.pub")
                .display()
                .to_string(),
            self.cert_dir.display().to_string(),
            reload,
        ))?;
        Ok(agent)
    }

    /// The `@cert-authority` line as `signoff-server host-ca known-hosts` prints it.
    fn known_hosts(&self, pattern: &str) -> Result<PathBuf> {
        let out = self
            .plane
            .cli(&["host-ca", "known-hosts", "--hosts", pattern])?;
        let line = out.stdout.trim().to_owned();
        if !line.starts_with(&format!("@cert-authority {pattern} ssh-ed25519 ")) {
            bail!("host-ca known-hosts printed {line:?}");
        }
        let path = self.dir.path().join("known_hosts");
        fs::write(&path, format!("{line}\n"))?;
        Ok(path)
    }
}

fn hup(pid: u32) -> Vec<String> {
    vec!["/bin/kill".into(), "-HUP".into(), pid.to_string()]
}

fn assert_connects(s: &Setup, sshd: &CertSshd, known_hosts: &Path) -> Result<()> {
    let out = ssh(sshd.port, known_hosts, &s.client.private, HOST)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || String::from_utf8_lossy(&out.stdout) != "connected\n" {
        bail!("ssh did not connect: {stderr}\nsshd's log:\n{}", sshd.log());
    }
    Ok(())
}

#[test]
fn enrollment_certifies_the_host_keys_and_only_the_cert_authority_line_connects() -> Result<()> {
    let s = Setup::new()?;
    // Debian's three host key types, each with its certificate.
    let ecdsa = KeyPair::generate(s.dir.path(), "ssh_host_ecdsa_key", KeyType::Ecdsa256)?;
    let rsa = KeyPair::generate(s.dir.path(), "ssh_host_rsa_key", KeyType::Rsa2048)?;
    let hosts = [
        (s.host_key.private.clone(), s.cert_path()),
        (
            ecdsa.private.clone(),
            s.cert_dir.join("ssh_host_ecdsa_key-cert.pub"),
        ),
        (
            rsa.private.clone(),
            s.cert_dir.join("ssh_host_rsa_key-cert.pub"),
        ),
    ];
    // sshd starts before any certificate exists: it logs that and serves its plain keys.
    let sshd = CertSshd::start(s.dir.path(), &hosts, &s.client.public)?;
    let known_hosts = s.known_hosts("*.example.com")?;
    let before = ssh(sshd.port, &known_hosts, &s.client.private, HOST)?;
    assert!(
        !before.status.success(),
        "connected before the host had a certificate"
    );

    let agent = s.agent(&hup(sshd.pid()))?;
    agent.enroll(&s.plane, HOST, "web")?;
    for (_, cert) in &hosts {
        assert!(cert.is_file(), "enroll wrote no {}", cert.display());
    }
    // The reload command ran: sshd re-executed itself and listens again.
    sshd.wait_listening(2)?;
    assert_connects(&s, &sshd, &known_hosts)?;
    for algorithm in [
        "ssh-ed25519-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "rsa-sha2-512-cert-v01@openssh.com",
    ] {
        let out = ssh_with(
            sshd.port,
            &known_hosts,
            &s.client.private,
            HOST,
            &["-o", &format!("HostKeyAlgorithms={algorithm}")],
        )?;
        assert!(
            out.status.success(),
            "{algorithm}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Another CA's line: the host is refused.
    let other = KeyPair::generate(s.dir.path(), "other_ca", KeyType::Ed25519)?;
    let other_hosts = s.dir.path().join("other_known_hosts");
    fs::write(
        &other_hosts,
        format!(
            "@cert-authority *.example.com {}",
            fs::read_to_string(&other.public)?
        ),
    )?;
    let out = ssh(sshd.port, &other_hosts, &s.client.private, HOST)?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    // A name the certificate does not carry: refused too.
    let out = ssh(
        sshd.port,
        &known_hosts,
        &s.client.private,
        "db1.example.com",
    )?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    Ok(())
}

#[test]
fn the_daemon_replaces_a_missing_certificate_and_reloads_sshd() -> Result<()> {
    let s = Setup::new()?;
    let sshd = s.sshd()?;
    let mut agent = s.agent(&hup(sshd.pid()))?;
    agent.enroll(&s.plane, HOST, "web")?;
    sshd.wait_listening(2)?;
    let first = fs::read_to_string(s.cert_path())?;
    fs::remove_file(s.cert_path())?;

    agent.start()?;
    let second = wait_for("the daemon to write the host certificate", WAIT, || {
        agent.check_running()?;
        Ok(fs::read_to_string(s.cert_path()).ok())
    })?;
    assert_ne!(first, second, "a new certificate was expected");
    sshd.wait_listening(3)?;
    let known_hosts = s.known_hosts("*.example.com")?;
    assert_connects(&s, &sshd, &known_hosts)?;

    // A restart with a valid certificate in place asks for nothing and reloads nothing.
    agent.stop()?;
    agent.start()?;
    wait_for("the daemon to see its certificate is valid", WAIT, || {
        agent.check_running()?;
        Ok(agent
            .log()
            .split("==== start 2 ====")
            .nth(1)
            .is_some_and(|l| l.contains("next renewal scheduled"))
            .then_some(()))
    })?;
    assert_eq!(fs::read_to_string(s.cert_path())?, second);
    assert_eq!(sshd.log().matches("Server listening on").count(), 3);
    Ok(())
}

/// `signoff-agent enroll` with `token` as `host_id`, its output whatever the outcome.
fn enroll(agent: &Agent, token: &JoinToken, host_id: &str) -> Result<Output> {
    Ok(Command::new(signoff_tests::agent::agent_binary()?)
        .arg("enroll")
        .arg("--config")
        .arg(agent.config())
        .args(["--server", &token.server])
        .args(["--token", &token.secret])
        .args(["--ca-pin", &token.ca_pin])
        .args(["--host-id", host_id])
        .output()?)
}

#[test]
fn a_key_bound_to_another_host_is_refused_and_the_old_certificate_stays() -> Result<()> {
    let s = Setup::new()?;
    let sshd = s.sshd()?;
    let first = s.agent(&hup(sshd.pid()))?;
    first.enroll(&s.plane, HOST, "web")?;
    sshd.wait_listening(2)?;

    // A second machine cloned from web1's image: the same host key, private half included.
    let clone_dir = s.dir.path().join("clone");
    fs::create_dir_all(&clone_dir)?;
    for name in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
        fs::copy(s.dir.path().join(name), clone_dir.join(name))?;
    }
    let marker = s.dir.path().join("reloaded");
    let mut clone = Agent::new("")?;
    let clone_certs = s.dir.path().join("clone-certs");
    clone.append_config(&format!(
        "[host_certificates]\nhost_keys = [{:?}]\ncertificate_dir = {:?}\nreload_command = [\"/usr/bin/touch\", {:?}]\n",
        clone_dir.join("ssh_host_*_key.pub").display().to_string(),
        clone_certs.display().to_string(),
        marker.display().to_string(),
    ))?;
    // Enrollment is refused, saying what to do; the token stays unused.
    let token = s.plane.join_token("web")?;
    let out = enroll(&clone, &token, "db1.example.com")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the clone enrolled: {stderr}");
    assert!(
        stderr.contains("is already host \"web1.example.com\"'s")
            && stderr.contains("ssh-keygen -A"),
        "{stderr}"
    );
    // With keys of its own, the same token enrolls it, and it gets its certificate.
    fs::remove_file(clone_dir.join("ssh_host_ed25519_key"))?;
    fs::remove_file(clone_dir.join("ssh_host_ed25519_key.pub"))?;
    KeyPair::generate(&clone_dir, "ssh_host_ed25519_key", KeyType::Ed25519)?;
    let out = enroll(&clone, &token, "db1.example.com")?;
    assert!(out.status.success(), "{out:?}");
    let clone_cert = clone_certs.join("ssh_host_ed25519_key-cert.pub");
    let own = fs::read_to_string(&clone_cert)?;
    assert!(
        marker.exists(),
        "the reload command ran for the new certificate"
    );
    fs::remove_file(&marker)?;

    // Later it presents web1's key again (put back from the image): the daemon is refused,
    // keeps the certificate it has, and never reloads sshd.
    fs::copy(
        s.dir.path().join("ssh_host_ed25519_key"),
        clone_dir.join("ssh_host_ed25519_key"),
    )?;
    fs::copy(
        s.dir.path().join("ssh_host_ed25519_key.pub"),
        clone_dir.join("ssh_host_ed25519_key.pub"),
    )?;
    clone.start()?;
    wait_for("the daemon to be refused", WAIT, || {
        clone.check_running()?;
        let log = clone.log();
        Ok(
            (log.contains("cannot renew the host certificates; sshd keeps the ones it has")
                && log.contains("is host \"web1.example.com\"'s host key"))
            .then_some(()),
        )
    })?;
    assert_eq!(fs::read_to_string(&clone_cert)?, own);
    assert!(!marker.exists(), "the reload command ran after a refusal");
    let audit = s
        .plane
        .cli(&["audit", "list", "--filter", "host_certificate.refuse"])?;
    assert!(
        audit.stdout.contains("host:db1.example.com"),
        "{}",
        audit.stdout
    );
    // web1 itself is still served.
    let known_hosts = s.known_hosts("*.example.com")?;
    assert_connects(&s, &sshd, &known_hosts)?;
    Ok(())
}
