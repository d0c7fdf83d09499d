//! Receivers a SIEM would run, for the tests and benchmarks of event delivery (issue 21):
//! a local HTTP webhook receiver, and a real rsyslogd (Debian's package) receiving over
//! TCP or TLS on a loopback port, with certificates made by openssl.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tempfile::TempDir;

use crate::plane::wait_for;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const WAIT: Duration = Duration::from_secs(10);

/// One POST the receiver got: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

impl Delivery {
    /// A header's value (empty when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A local HTTP receiver: answers 500 to the first `fail_first` requests, 200 after,
/// and keeps what it accepted.
#[derive(Debug)]
pub struct WebhookReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Delivery>>>,
    refused: Arc<Mutex<u32>>,
}

impl WebhookReceiver {
    /// Starts it on a loopback port.
    pub fn start(fail_first: u32) -> Result<WebhookReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let (acc, refs) = (Arc::clone(&accepted), Arc::clone(&refused));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(delivery) = read_request(&stream) else {
                    continue;
                };
                let mut stream = stream;
                let fail = {
                    let mut r = refs
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if *r < fail_first {
                        *r += 1;
                        true
                    } else {
                        false
                    }
                };
                let status = if fail {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                if !fail {
                    acc.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(delivery);
                }
            }
        });
        Ok(WebhookReceiver {
            addr,
            accepted,
            refused,
        })
    }

    /// What it accepted, in order.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many requests it answered with 500.
    pub fn refused(&self) -> u32 {
        *self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn read_request(stream: &std::net::TcpStream) -> Result<Delivery> {
    let mut reader = BufReader::new(stream);
    let mut headers = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line)?; // request line
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Delivery {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    })
}

/// Certificates made with openssl: a CA and a server certificate for `localhost` it signed.
#[derive(Debug)]
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
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

/// Makes a CA named `name` and a `localhost` server certificate in `dir`.
pub fn make_pki(dir: &Path, name: &str) -> Result<Pki> {
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
#[derive(Debug)]
pub struct Rsyslogd {
    child: Child,
    dir: TempDir,
    /// Its loopback port.
    pub port: u16,
}

impl Rsyslogd {
    /// Starts it, with TLS when given certificates.
    pub fn start(tls: Option<&Pki>) -> Result<Rsyslogd> {
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

    /// What it wrote so far.
    pub fn received(&self) -> String {
        fs::read_to_string(self.dir.path().join("received")).unwrap_or_default()
    }

    /// Its stderr.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("rsyslogd.stderr")).unwrap_or_default()
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
