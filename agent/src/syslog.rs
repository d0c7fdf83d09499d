//! One line to the system log: the journal, or syslog where there is none.
//!
//! sshd runs the principals command with its stderr going to sshd's own log, and under
//! `sshd -E FILE` (or with a `LogLevel` that drops it) the reason a login was refused is
//! lost there. So the commands also send it to the local syslog socket, `/dev/log` by
//! default (`syslog_socket` in the agent config): journald listens there when it runs,
//! rsyslogd or syslog-ng otherwise. One datagram per line, facility authpriv (where sshd
//! logs authentication), framed as the C library's `syslog(3)` frames it for the local
//! socket (RFC 3164: `<PRI>TAG[PID]: MESSAGE`). No timestamp: both journald and rsyslog's
//! `imuxsock` stamp a local message with the time it arrived.
//!
//! Best effort and never in the way of a login: the socket is written without blocking,
//! and a missing socket, a full queue or any other error is ignored (the line still went
//! to stderr). No new dependency: `signoff-sshd` starts at every login and stays lean.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// The local syslog socket.
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// The tag the sshd commands log under (`journalctl -t signoff-sshd`).
pub const TAG: &str = "signoff-sshd";

/// The facility: security and authorization messages that are private (`LOG_AUTHPRIV`).
const FACILITY_AUTHPRIV: u8 = 10;

/// Longest message body sent, in bytes: well under any local datagram limit, and a login's
/// reason is one line.
const MAX_MESSAGE: usize = 2048;

/// How serious a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A refused login, a break-glass login, a warning.
    Warning = 4,
    /// Normal but significant.
    Notice = 5,
}

/// The datagram for `message`: `<PRI>TAG[PID]: MESSAGE`. Control characters are escaped
/// (`\n` as `\x0a`): the key ID comes from the certificate's holder, who must not be able to
/// forge a second log line; the message is cut at `MAX_MESSAGE` bytes on a character
/// boundary.
pub fn frame(severity: Severity, tag: &str, pid: u32, message: &str) -> Vec<u8> {
    use std::fmt::Write as _;
    let pri = u32::from(FACILITY_AUTHPRIV) * 8 + severity as u32;
    let mut body = String::with_capacity(message.len().min(MAX_MESSAGE));
    let mut piece = String::new();
    for c in message.chars() {
        piece.clear();
        if c.is_control() {
            let _ = write!(piece, "\\x{:02x}", u32::from(c));
        } else {
            piece.push(c);
        }
        if body.len() + piece.len() > MAX_MESSAGE {
            break;
        }
        body.push_str(&piece);
    }
    format!("<{pri}>{tag}[{pid}]: {body}").into_bytes()
}

/// Sends `message` to the syslog socket at `socket`, without waiting.
pub fn send(socket: &Path, severity: Severity, tag: &str, message: &str) -> io::Result<()> {
    let datagram = frame(severity, tag, std::process::id(), message);
    let sock = UnixDatagram::unbound()?;
    // A syslog daemon that stopped reading must not hold up a login: drop the line.
    sock.set_nonblocking(true)?;
    sock.send_to(&datagram, socket)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Severity, TAG, frame, send};

    #[test]
    fn a_line_is_framed_for_authpriv_with_tag_and_pid() {
        let d = frame(Severity::Warning, TAG, 4242, "denied: revoked");
        // authpriv (10) * 8 + warning (4) = 84.
        assert_eq!(d, b"<84>signoff-sshd[4242]: denied: revoked");
        assert!(frame(Severity::Notice, TAG, 1, "x").starts_with(b"<85>"));
    }

    #[test]
    fn a_key_id_cannot_forge_a_second_line_and_length_is_bounded() {
        let d = frame(Severity::Warning, TAG, 1, "key ID \"a\nfake: granted\"\r\0");
        let text = String::from_utf8(d).unwrap();
        assert_eq!(
            text,
            "<84>signoff-sshd[1]: key ID \"a\\x0afake: granted\"\\x0d\\x00"
        );
        let long = "é".repeat(5000);
        let d = frame(Severity::Warning, TAG, 1, &long);
        let text = String::from_utf8(d).unwrap();
        assert!(
            text.len() <= 2048 + "<84>signoff-sshd[1]: ".len(),
            "{}",
            text.len()
        );
    }

    #[test]
    fn datagrams_arrive_at_the_socket_and_a_missing_socket_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send(&path, Severity::Warning, TAG, "hello").unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            text.starts_with("<84>signoff-sshd[") && text.ends_with("]: hello"),
            "{text}"
        );
        assert!(send(&dir.path().join("none"), Severity::Warning, TAG, "x").is_err());
    }
}
