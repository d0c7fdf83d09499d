//! The reason a login was refused reaches the system log, end to end: a real sshd logging
//! to a file (`sshd -E FILE`, where the principals command's stderr does not go), its
//! `AuthorizedPrincipalsCommand` the installed `signoff-sshd` run as the unprivileged
//! `signoff` user, a real `ssh` client refused, and a real `rsyslogd` (Debian's package, in a
//! private directory with its own configuration and its own `imuxsock` socket, never the
//! host's `/dev/log`) receiving the line under tag `signoff-sshd`, facility authpriv.

use signoff_tests::now;
use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use signoff_agent::krl_writer::ensure_krl;
use signoff_tests::agent::sshd_commands_binary;
use signoff_tests::keys::{self, CertRequest, KeyPair, KeyType};
use signoff_tests::plane::wait_for;
use signoff_tests::principals::{HostDir, InstalledAgent, PrincipalsSshd, ensure_system_user};
use tempfile::TempDir;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const WAIT: Duration = Duration::from_secs(10);

/// A real rsyslogd in the foreground, listening on its own socket and writing what it
/// receives as `FACILITY.SEVERITY TAG MESSAGE` lines; killed (by the PID this test
/// started) on drop.
struct Rsyslogd {
    child: Child,
    dir: TempDir,
}

impl Rsyslogd {
    fn start() -> Result<Rsyslogd> {
        if !Path::new(RSYSLOGD).is_file() {
            bail!(
                "{RSYSLOGD} not found: install the Debian package rsyslog \
                 (`apt-get install --no-install-recommends rsyslog`; scripts/test does this)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("signoff-rsyslog-")
            .tempdir()?;
        // The principals command runs as the unprivileged `signoff` user: it must reach
        // the socket.
        fs::set_permissions(dir.path(), Permissions::from_mode(0o755))?;
        let conf = dir.path().join("rsyslog.conf");
        fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{dir}\")\n\
                 module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{dir}/log\")\n\
                 template(name=\"line\" type=\"string\" \
                   string=\"%syslogfacility-text%.%syslogseverity-text% %syslogtag%%msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{dir}/received\" template=\"line\")\n",
                dir = dir.path().display()
            ),
        )?;
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("rsyslogd.stderr"))?)
            .spawn()
            .context("starting rsyslogd")?;
        let mut r = Rsyslogd { child, dir };
        let socket = r.socket();
        wait_for("rsyslogd's socket", WAIT, || {
            if let Some(status) = r.child.try_wait()? {
                bail!("rsyslogd exited ({status}): {}", r.stderr());
            }
            Ok(socket.exists().then_some(()))
        })?;
        Ok(r)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("log")
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

#[test]
fn a_refusal_under_sshd_dash_e_reaches_syslog_with_its_reason() -> Result<()> {
    ensure_system_user()?;
    let rsyslogd = Rsyslogd::start()?;
    let agent = InstalledAgent::install(sshd_commands_binary()?)?;
    // No host view yet: the principals command refuses every certificate, and says why.
    let host = HostDir::new(&format!(
        "syslog_socket = {:?}\n",
        rsyslogd.socket().display().to_string()
    ))?;
    ensure_krl(&host.krl(), now())?;
    let keys = tempfile::Builder::new().prefix("syslog-keys-").tempdir()?;
    let ca = KeyPair::generate(keys.path(), "ca", KeyType::Ed25519)?;
    let user = KeyPair::generate(keys.path(), "user", KeyType::Ed25519)?;
    let cert = keys::sign(&CertRequest {
        ca: ca.clone(),
        subject: user.clone(),
        out: keys.path().join("user-cert"),
        key_id: "alice@corp".into(),
        principals: "alice".into(),
        serial: 7,
    })?;
    let sshd = PrincipalsSshd::start_logging_to_file(
        agent.path(),
        &host.config(),
        &ca.public,
        &host.krl(),
    )?;

    let login = sshd.login("root", &user.private, &cert)?;
    assert!(
        !login.success && login.stderr.contains("Permission denied"),
        "the login must be refused: {login:?}\nsshd log:\n{}",
        sshd.log()
    );

    let line = wait_for("rsyslogd to receive the refusal", WAIT, || {
        Ok(rsyslogd
            .received()
            .lines()
            .find(|l| l.contains("key ID \"alice@corp\""))
            .map(str::to_owned))
    })
    .with_context(|| {
        format!(
            "rsyslogd received:\n{}\nits stderr:\n{}\nsshd log:\n{}",
            rsyslogd.received(),
            rsyslogd.stderr(),
            sshd.log()
        )
    })?;
    assert!(
        line.starts_with("authpriv.warning signoff-sshd["),
        "facility, severity and tag: {line}"
    );
    assert!(
        line.contains("principals for account \"root\"") && line.contains("denied: "),
        "the reason: {line}"
    );
    Ok(())
}
