//! Host certificates with the real OpenSSH tools (issue 19): the control plane's host CA
//! signs a host key (`Service::sign_host_key`, what `AgentSync.SignHostKeys` serves), a real
//! sshd presents the certificate (`HostCertificate`), and the real `ssh` client, with
//! `StrictHostKeyChecking=yes` and a known_hosts holding only the `@cert-authority` line,
//! connects; with another CA's line it refuses the host.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signoff_control_plane::service::{Actor, HostCa, NewHost, Service, SystemClock};
use signoff_control_plane::store;

const WAIT: Duration = Duration::from_secs(20);

struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Our own child, by PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    out
}

fn keygen(path: &Path) -> String {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path));
    std::fs::read_to_string(format!("{}.pub", path.display())).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_sshd(dir: &Path, host_key: &Path, host_cert: &Path, client_pub: &str) -> Sshd {
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, client_pub).unwrap();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "HostKey {}\nHostCertificate {}\nAuthorizedKeysFile {}\nStrictModes no\n\
             PermitRootLogin yes\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PidFile none\nListenAddress 127.0.0.1\n",
            host_key.display(),
            host_cert.display(),
            authorized.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .arg("-p")
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sshd = Sshd { child, port };
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen on {port}");
        std::thread::yield_now();
    }
    sshd
}

fn ssh(port: u16, known_hosts: &Path, key: &Path, name: &str) -> Output {
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!("HostKeyAlias={name}"))
        .arg("-i")
        .arg(key)
        .arg("-p")
        .arg(port.to_string())
        .args(["root@127.0.0.1", "echo", "connected"])
        .output()
        .unwrap()
}

async fn service(dir: &Path) -> Service {
    let url = format!("sqlite://{}", dir.join("signoff.db").display());
    let svc = Service::new(store::open(&url).await.unwrap(), Arc::new(SystemClock))
        .await
        .unwrap();
    keygen(&dir.join("host-ca.key"));
    let ca = ssh_key::PrivateKey::from_openssh(
        std::fs::read_to_string(dir.join("host-ca.key")).unwrap(),
    )
    .unwrap();
    svc.set_host_ca(HostCa::new(ca, 3600).unwrap());
    svc.create_host(
        &Actor::cli(),
        NewHost {
            id: "web1".into(),
            hostname: "web1.example.com".into(),
            groups: vec![],
        },
        "",
    )
    .await
    .unwrap();
    svc
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    svc: Service,
    sshd: Sshd,
    client_key: PathBuf,
}

async fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let svc = service(&dir).await;
    let host_key = dir.join("ssh_host_ed25519_key");
    let host_pub = keygen(&host_key);
    let cert = svc
        .sign_host_key(&Actor("host:web1".into()), "web1", &host_pub, None, &[])
        .await
        .unwrap();
    let cert_path = dir.join("ssh_host_ed25519_key-cert.pub");
    std::fs::write(&cert_path, format!("{}\n", cert.certificate)).unwrap();
    let client_key = dir.join("id_ed25519");
    let client_pub = keygen(&client_key);
    let sshd = start_sshd(&dir, &host_key, &cert_path, &client_pub);
    Setup {
        _dir: tmp,
        dir,
        svc,
        sshd,
        client_key,
    }
}

#[tokio::test]
async fn only_the_cert_authority_line_lets_ssh_connect_with_strict_host_key_checking() {
    let s = setup().await;
    let line = s.svc.host_ca().unwrap().known_hosts_line("*.example.com");
    let known_hosts = s.dir.join("known_hosts");
    std::fs::write(&known_hosts, format!("{line}\n")).unwrap();
    let out = ssh(s.sshd.port, &known_hosts, &s.client_key, "web1.example.com");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "connected\n");
}

#[tokio::test]
async fn another_cas_line_is_refused() {
    let s = setup().await;
    let other = keygen(&s.dir.join("other_ca"));
    let known_hosts = s.dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("@cert-authority *.example.com {other}"),
    )
    .unwrap();
    let out = ssh(s.sshd.port, &known_hosts, &s.client_key, "web1.example.com");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
}

#[tokio::test]
async fn a_name_not_in_the_certificate_is_refused() {
    let s = setup().await;
    let line = s.svc.host_ca().unwrap().known_hosts_line("*.example.com");
    let known_hosts = s.dir.join("known_hosts");
    std::fs::write(&known_hosts, format!("{line}\n")).unwrap();
    // The certificate names web1.example.com and web1; db1 is another host.
    let out = ssh(s.sshd.port, &known_hosts, &s.client_key, "db1.example.com");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
}
