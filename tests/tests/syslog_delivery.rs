//! Events pushed to syslog, end to end (issue 21): the real `signoff-server` with
//! `[delivery.syslog]`, and a real `rsyslogd` (Debian's package, started by the test in a
//! private directory, listening with `imtcp` on a loopback port) writing what it receives
//! to a file. RFC 5424 messages, octet-counted, over plain TCP and over TLS (rsyslog's
//! gtls driver, package rsyslog-gnutls). Over TLS, a receiver whose certificate the
//! configured CA did not sign gets nothing (fail closed), and once the right CA is
//! configured every event held back is delivered, none lost. The alert delivered over TLS
//! is a real one: the audit log altered behind the server's back, found by audit verify.

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result, bail};
use signoff_tests::plane::{ControlPlane, WAIT, wait_for};
use tempfile::TempDir;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// Certificates made with openssl: a CA and a server certificate for `localhost` it signed.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn make_pki(dir: &Path, name: &str) -> Result<Pki> {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let key = format!("{name}-server.key");
    let csr = format!("{name}-server.csr");
    let cert = format!("{name}-server.pem");
    let ext = format!("{name}-ext.cnf");
    fs::write(
        dir.join(&ext),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    )?;
    Ok(Pki {
        ca: dir.join(ca),
        cert: dir.join(cert),
        key: dir.join(key),
    })
}

/// A real rsyslogd in the foreground, receiving on a loopback TCP port (with TLS when
/// given certificates) and writing `APP MSGID SD MSG` lines; killed (its PID) on drop.
struct Rsyslogd {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl Rsyslogd {
    fn start(tls: Option<&Pki>) -> Result<Rsyslogd> {
        if !Path::new(RSYSLOGD).is_file() {
            bail!("{RSYSLOGD} not found: install rsyslog and rsyslog-gnutls (scripts/test does)");
        }
        let dir = tempfile::Builder::new()
            .prefix("signoff-rsyslog-tcp-")
            .tempdir()?;
        // A free loopback port (rsyslog takes a number, not 0).
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let d = dir.path().display();
        let (global, input) = match tls {
            None => (String::new(), String::new()),
            Some(p) => (
                format!(
                    " DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" \
                     DefaultNetstreamDriverKeyFile=\"{}\"",
                    p.ca.display(),
                    p.cert.display(),
                    p.key.display()
                ),
                " StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\""
                    .to_owned(),
            ),
        };
        fs::write(
            dir.path().join("rsyslog.conf"),
            format!(
                "global(workDirectory=\"{d}\"{global})\n\
                 module(load=\"imtcp\"{input})\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n\
                 template(name=\"line\" type=\"string\" \
                   string=\"%app-name% %msgid% %structured-data% %msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{d}/received\" template=\"line\")\n"
            ),
        )?;
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("rsyslogd.stderr"))?)
            .spawn()
            .context("starting rsyslogd")?;
        let mut r = Rsyslogd { child, dir, port };
        wait_for("rsyslogd to listen", WAIT, || {
            if let Some(status) = r.child.try_wait()? {
                bail!("rsyslogd exited ({status}): {}", r.stderr());
            }
            Ok(std::net::TcpStream::connect(("127.0.0.1", r.port))
                .ok()
                .map(drop))
        })?;
        Ok(r)
    }

    fn received(&self) -> String {
        fs::read_to_string(self.dir.path().join("received")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("rsyslogd.stderr")).unwrap_or_default()
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces the server's `[delivery.syslog]` (the config's last table) and restarts it.
fn deliver_to(plane: &mut ControlPlane, base: &str, table: &str) -> Result<()> {
    plane.stop()?;
    fs::write(plane.config(), format!("{base}\n{table}"))?;
    plane.restart()
}

#[test]
fn events_reach_a_real_rsyslog_over_tcp_and_over_tls_and_a_wrong_ca_gets_nothing() -> Result<()> {
    let mut plane = ControlPlane::start()?;
    let base = fs::read_to_string(plane.config())?;
    let certs = tempfile::tempdir()?;
    let good = make_pki(certs.path(), "good")?;
    let other = make_pki(certs.path(), "other")?;

    // Plain TCP: an audit event (a group made through the CLI).
    let tcp = Rsyslogd::start(None)?;
    deliver_to(
        &mut plane,
        &base,
        &format!("[delivery.syslog]\naddress = \"127.0.0.1:{}\"\n", tcp.port),
    )?;
    plane.cli(&["group", "add", "syslog-tcp"])?;
    let line = wait_for("the audit event at rsyslog over TCP", WAIT, || {
        Ok(tcp
            .received()
            .lines()
            .find(|l| l.contains("group.create") || l.contains("syslog-tcp"))
            .map(str::to_owned))
    })
    .with_context(|| format!("rsyslogd: {}\nserver:\n{}", tcp.stderr(), plane.log()))?;
    assert!(
        line.starts_with("signoff audit [signoff@32473 cursor=\""),
        "{line}"
    );
    let json_start = line.find('{').context("a JSON body")?;
    let event: serde_json::Value = serde_json::from_str(&line[json_start..])?;
    assert_eq!(event["kind"], "audit", "{line}");

    // TLS with a receiver whose certificate another CA signed: nothing is delivered.
    let tls = Rsyslogd::start(Some(&good))?;
    let table = |ca: &Path| {
        format!(
            "[delivery.syslog]\naddress = \"127.0.0.1:{}\"\ntls = true\nca_file = {:?}\n\
             server_name = \"localhost\"\nkinds = [\"alert\", \"audit\"]\n",
            tls.port,
            ca.display().to_string()
        )
    };
    deliver_to(&mut plane, &base, &table(&other.ca))?;
    plane.cli(&["group", "add", "held-back"])?;
    wait_for("the server to try and refuse the receiver", WAIT, || {
        Ok(plane.log().contains("delivery failed").then_some(()))
    })?;
    assert!(!tls.received().contains("held-back"), "{}", tls.received());

    // The right CA: what was held back arrives, then a real alert.
    deliver_to(&mut plane, &base, &table(&good.ca))?;
    wait_for("the held-back event over TLS", WAIT, || {
        Ok(tls.received().contains("held-back").then_some(()))
    })
    .with_context(|| format!("rsyslogd: {}\nserver:\n{}", tls.stderr(), plane.log()))?;
    // Alter one audit row behind the server's back: audit verify finds the break and
    // raises the alert.
    let db = plane.data_dir().join("signoff.db");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA busy_timeout = 5000; UPDATE audit_log SET reason = 'rewritten' WHERE seq = 1;")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = plane.api("GET", "/api/v1/audit/verify", None)?;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(!res.json()?["broken"].is_null(), "{}", res.body);
    let alert = wait_for("the audit_chain_broken alert over TLS", WAIT, || {
        Ok(tls
            .received()
            .lines()
            .find(|l| l.contains("audit_chain_broken"))
            .map(str::to_owned))
    })?;
    assert!(
        alert.starts_with("signoff alert [signoff@32473 cursor=\""),
        "{alert}"
    );
    // Verifying again raises no second alert while the first is unacknowledged.
    plane.api("GET", "/api/v1/audit/verify", None)?;
    let alerts = plane.api("GET", "/api/v1/alerts", None)?.json()?;
    let n = alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["alert"]["rule"] == "audit_chain_broken")
        .count();
    assert_eq!(n, 1, "{alerts}");
    let _ = std::io::stderr().flush();
    Ok(())
}
