//! sshd's log lines: who logged in from where, with which key.
//!
//! With `LogLevel VERBOSE` (what signoff's sshd drop-in sets) sshd logs one line per
//! successful authentication:
//!
//! ```text
//! Accepted publickey for U from IP port P ssh2: ED25519-CERT SHA256:KEYFP ID KEYID (serial N) CA ED25519 SHA256:CAFP
//! Accepted publickey for U from IP port P ssh2: ED25519 SHA256:KEYFP
//! Accepted password for U from IP port P ssh2
//! ```
//!
//! The same text reaches three places: a file of its own (`sshd -E FILE`: no prefix, no
//! PID, lines end in `\r\n`), syslog files (`… sshd[PID]: Accepted …`), and the journal
//! (the message with trusted `_PID` and `_UID` fields, read as `journalctl -o json`).
//!
//! sshd escapes what it logs with `strnvis`, but not the same way everywhere: for syslog
//! and the journal newlines, tabs and carriage returns become `\n`, `\t`, `\r`; with `-E`
//! (OpenSSH 9.2) they are written raw, so a certificate key ID containing `\r\n` can start
//! a line of its own. Everything here parses a key ID from the *right* of the line (the
//! ` (serial N) CA TYPE FP` tail is sshd's, not the certificate's), never trusts a line
//! alone (the watcher matches it to the live connection's processes, by address, port and
//! where known PID), and treats two `Accepted` lines for one connection as a conflict.

use std::net::{IpAddr, SocketAddr};

/// The key an `Accepted publickey` line names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AcceptedKey {
    /// A certificate.
    Certificate {
        /// sshd's key type name, e.g. `ED25519-CERT`.
        key_type: String,
        /// Fingerprint of the certified key, `SHA256:…`.
        key_fingerprint: String,
        /// The certificate's key ID, unescaped.
        key_id: String,
        /// The certificate's serial.
        serial: u64,
        /// The CA key's type, e.g. `ED25519`.
        ca_type: String,
        /// Fingerprint of the CA key, `SHA256:…`.
        ca_fingerprint: String,
    },
    /// A plain public key.
    Plain {
        /// sshd's key type name, e.g. `ED25519`.
        key_type: String,
        /// Its fingerprint, `SHA256:…`.
        fingerprint: String,
    },
}

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Accepted {
    /// `publickey`, `password`, `keyboard-interactive/pam`, …
    pub method: String,
    /// The unix account.
    pub account: String,
    /// The client's address and port.
    pub source: SocketAddr,
    /// The key, for `publickey` (and `hostbased`) logins whose line carries one.
    pub key: Option<AcceptedKey>,
}

/// What one log line says about sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogEvent {
    /// A login succeeded.
    Accepted(Accepted),
    /// An `Accepted` line for this connection whose key part does not parse (cut short,
    /// or split by a key ID holding a line break): the connection's attribution is not to
    /// be trusted.
    Unreadable(SocketAddr),
    /// A session channel started (`Starting session: … from IP port P`): the login's ttys
    /// may have changed; nothing ends.
    Channel(SocketAddr),
    /// Any other line naming a connection (`Disconnected from user U IP port P`,
    /// `Connection closed by IP port P`, …): a hint that something changed for it, its
    /// end perhaps.
    Mention(SocketAddr),
    /// Part of a refused attempt (see [`super::refused`]): a reason, or the attempt. An
    /// attempt's line also counts as a [`LogEvent::Mention`] of its connection.
    Refusal(super::refused::Part),
}

/// A parsed line and, when the source knows it, the PID that logged it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogRecord {
    /// The logging process (syslog's `sshd[PID]`, the journal's `_PID`); `None` for
    /// `sshd -E` files.
    pub pid: Option<u32>,
    /// What the line says.
    pub event: LogEvent,
}

/// Parses one line of an `sshd -E` file or a syslog file (`… sshd[PID]: MESSAGE`). Lines
/// of other programs in a syslog file, and lines about nothing in particular, give `None`.
pub fn parse_file_line(line: &str) -> Option<LogRecord> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (pid, message) = match split_syslog_prefix(line) {
        SyslogPrefix::Sshd { pid, message } => (Some(pid), message),
        SyslogPrefix::OtherProgram => return None,
        SyslogPrefix::None => (None, line),
    };
    parse_message(message).map(|event| LogRecord { pid, event })
}

/// Parses one line of `journalctl -o json`. Only entries logged by root (trusted `_UID` 0)
/// count: any user can log a message that *says* it is sshd's.
pub fn parse_journal_line(line: &str) -> Option<LogRecord> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    if entry.get("_UID")?.as_str()? != "0" {
        return None;
    }
    let pid = entry.get("_PID")?.as_str()?.parse().ok()?;
    // journalctl prints a message that is not valid UTF-8 (or holds control characters)
    // as an array of byte values.
    let message = match entry.get("MESSAGE")? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(bytes) => {
            let bytes: Option<Vec<u8>> = bytes
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            String::from_utf8_lossy(&bytes?).into_owned()
        }
        _ => return None,
    };
    parse_message(&message).map(|event| LogRecord {
        pid: Some(pid),
        event,
    })
}

enum SyslogPrefix<'a> {
    Sshd { pid: u32, message: &'a str },
    OtherProgram,
    None,
}

/// A syslog line is `HEADER TAG[PID]: MESSAGE`; sshd's own lines start with a capital
/// word and their first `": "` (if any) follows `ssh2` or similar, never a `NAME[PID]`.
fn split_syslog_prefix(line: &str) -> SyslogPrefix<'_> {
    let Some(colon) = line.find(": ") else {
        return SyslogPrefix::None;
    };
    let head = &line[..colon];
    let Some(tag) = head.rsplit(' ').next() else {
        return SyslogPrefix::None;
    };
    let Some((program, pid)) = tag.strip_suffix(']').and_then(|t| t.split_once('[')) else {
        return SyslogPrefix::None;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return SyslogPrefix::None;
    };
    if matches!(program, "sshd" | "sshd-session") {
        SyslogPrefix::Sshd {
            pid,
            message: &line[colon + 2..],
        }
    } else {
        SyslogPrefix::OtherProgram
    }
}

/// Parses sshd's message text (no syslog prefix).
pub fn parse_message(message: &str) -> Option<LogEvent> {
    if let Some(rest) = message.strip_prefix("Accepted ") {
        return Some(match parse_accepted(rest) {
            Ok(accepted) => LogEvent::Accepted(accepted),
            Err(Some(source)) => LogEvent::Unreadable(source),
            Err(None) => return None,
        });
    }
    if let Some(part) = super::refused::classify(message) {
        return Some(LogEvent::Refusal(part));
    }
    let endpoint = find_endpoint(message)?;
    Some(if message.starts_with("Starting session: ") {
        LogEvent::Channel(endpoint)
    } else {
        LogEvent::Mention(endpoint)
    })
}

/// `METHOD for USER from IP port PORT ssh2[: EXTRA]`. `Err(Some(source))` when the part
/// up to the port parses but the rest does not.
pub(super) fn parse_accepted(rest: &str) -> Result<Accepted, Option<SocketAddr>> {
    // Left to right: nothing before EXTRA comes from the certificate.
    let mut words = rest.splitn(8, ' ');
    let method = words.next().ok_or(None)?;
    if words.next() != Some("for") {
        return Err(None);
    }
    let account = words.next().ok_or(None)?;
    if words.next() != Some("from") {
        return Err(None);
    }
    let ip = words.next().and_then(parse_ip).ok_or(None)?;
    if words.next() != Some("port") {
        return Err(None);
    }
    let port: u16 = words.next().and_then(|p| p.parse().ok()).ok_or(None)?;
    let source = SocketAddr::new(ip, port);
    if method.is_empty() || account.is_empty() || account.chars().any(char::is_control) {
        return Err(Some(source));
    }
    let tail = words.next().ok_or(Some(source))?;
    let key = if tail == "ssh2" {
        None
    } else {
        let extra = tail.strip_prefix("ssh2: ").ok_or(Some(source))?;
        Some(parse_key(extra).ok_or(Some(source))?)
    };
    if method == "publickey" && key.is_none() {
        return Err(Some(source));
    }
    Ok(Accepted {
        method: method.to_owned(),
        account: account.to_owned(),
        source,
        key,
    })
}

/// `TYPE-CERT FP ID KEYID (serial N) CA CATYPE CAFP[, INFO]` or `TYPE FP[, INFO]`.
fn parse_key(extra: &str) -> Option<AcceptedKey> {
    let (key_type, rest) = extra.split_once(' ')?;
    if !is_word(key_type) {
        return None;
    }
    if !key_type.ends_with("-CERT") {
        let fingerprint = rest.split_once(", ").map_or(rest, |(fp, _info)| fp);
        return is_fingerprint(fingerprint).then(|| AcceptedKey::Plain {
            key_type: key_type.to_owned(),
            fingerprint: fingerprint.to_owned(),
        });
    }
    let (key_fingerprint, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("ID ")?;
    if !is_fingerprint(key_fingerprint) {
        return None;
    }
    // The key ID may hold anything, " (serial 1) CA …" included; sshd's tail is the last.
    let mut search_end = rest.len();
    while let Some(at) = rest[..search_end].rfind(" (serial ") {
        if let Some((serial, ca_type, ca_fingerprint)) = parse_cert_tail(&rest[at + 9..]) {
            return Some(AcceptedKey::Certificate {
                key_type: key_type.to_owned(),
                key_fingerprint: key_fingerprint.to_owned(),
                key_id: unvis(&rest[..at]),
                serial,
                ca_type: ca_type.to_owned(),
                ca_fingerprint: ca_fingerprint.to_owned(),
            });
        }
        search_end = at;
    }
    None
}

/// `N) CA CATYPE CAFP[, INFO]`.
fn parse_cert_tail(tail: &str) -> Option<(u64, &str, &str)> {
    let (serial, rest) = tail.split_once(") CA ")?;
    let serial = serial.parse().ok()?;
    let (ca_type, rest) = rest.split_once(' ')?;
    let ca_fingerprint = rest.split_once(", ").map_or(rest, |(fp, _info)| fp);
    (is_word(ca_type) && is_fingerprint(ca_fingerprint)).then_some((
        serial,
        ca_type,
        ca_fingerprint,
    ))
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'@' || b == b'.')
}

/// `SHA256:base64` or `MD5:hex:…` (sshd's `FingerprintHash`).
fn is_fingerprint(s: &str) -> bool {
    let Some((alg, digest)) = s.split_once(':') else {
        return false;
    };
    matches!(alg, "SHA256" | "MD5")
        && !digest.is_empty()
        && digest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=:".contains(&b))
}

/// An address as sshd prints one: plain IPv4 or IPv6 (IPv4-mapped IPv6 normalised to
/// IPv4, as sshd does), without brackets.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The first `IP port N` in a message.
fn find_endpoint(message: &str) -> Option<SocketAddr> {
    let words: Vec<&str> = message.split(' ').collect();
    words.windows(3).find_map(|w| {
        let ip = parse_ip(w[0])?;
        if w[1] != "port" {
            return None;
        }
        // `port 53330:11:` (Received disconnect), `port 53330` and `port 53330,`.
        let digits: &str = w[2]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or_default();
        let port = digits.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    })
}

/// Undoes sshd's `strnvis` escaping: `\\`, octal `\ooo`, and the C-style escapes used for
/// syslog. Bytes that do not decode as UTF-8 are replaced.
pub fn unvis(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'\\' || i + 1 >= bytes.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = bytes[i + 1];
        let octal_len = bytes[i + 1..]
            .iter()
            .take(3)
            .take_while(|d| (b'0'..=b'7').contains(d))
            .count();
        if octal_len > 0 {
            let value = bytes[i + 1..i + 1 + octal_len]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 1 + octal_len;
            continue;
        }
        let decoded = match next {
            b'\\' => Some(b'\\'),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'v' => Some(0x0b),
            b's' => Some(b' '),
            b'E' => Some(0x1b),
            _ => None,
        };
        match decoded {
            Some(d) => {
                out.push(d);
                i += 2;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Cuts a log file's bytes into records. `sshd -E` ends every record with `\r\n` and
/// writes a key ID's line breaks raw; once a file is seen to use `\r\n`, a bare `\n` is
/// taken as part of a record rather than its end, which keeps such a key ID whole.
#[derive(Debug, Default)]
pub struct RecordSplitter {
    pending: Vec<u8>,
    crlf: Option<bool>,
}

/// The longest record kept; the rest of a longer one is dropped (sshd's own limit is
/// about 1 KiB per message).
pub const MAX_RECORD: usize = 16 * 1024;

impl RecordSplitter {
    /// Appends bytes read from the file; returns every record they complete, without its
    /// line ending.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut records = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.pending.len() < MAX_RECORD {
                    self.pending.push(b);
                }
                continue;
            }
            let ends_cr = self.pending.last() == Some(&b'\r');
            let crlf = *self.crlf.get_or_insert(ends_cr);
            if crlf && !ends_cr {
                if self.pending.len() < MAX_RECORD {
                    self.pending.push(b'\n');
                }
                continue;
            }
            if ends_cr {
                self.pending.pop();
            }
            records.push(String::from_utf8_lossy(&self.pending).into_owned());
            self.pending.clear();
        }
        records
    }

    /// Forgets a partial record (the file was truncated or replaced).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.crlf = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_FP: &str = "SHA256:7u94DTihOVdzZhgo/v8P7ZKknmBcafbNmw1zRX385y8";
    const CA_FP: &str = "SHA256:zaEtSqp1atovbwFWt22bZVKD82QIZdDGDLmd37fYsAU";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn cert(key_id: &str, serial: u64) -> AcceptedKey {
        AcceptedKey::Certificate {
            key_type: "ED25519-CERT".into(),
            key_fingerprint: KEY_FP.into(),
            key_id: key_id.into(),
            serial,
            ca_type: "ED25519".into(),
            ca_fingerprint: CA_FP.into(),
        }
    }

    fn accepted(line: &str) -> Accepted {
        match parse_file_line(line).map(|r| r.event) {
            Some(LogEvent::Accepted(a)) => a,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    /// Lines as OpenSSH 9.2 with `-E` writes them (copied from a real sshd here).
    #[test]
    fn certificate_login_9_2() {
        let line = format!(
            "Accepted publickey for signoff-test from 127.0.0.1 port 53362 ssh2: ED25519-CERT \
             {KEY_FP} ID alice \"the\" key@corp (serial 4242) CA ED25519 {CA_FP}\r"
        );
        let r = parse_file_line(&line).unwrap();
        assert_eq!(r.pid, None);
        assert_eq!(
            r.event,
            LogEvent::Accepted(Accepted {
                method: "publickey".into(),
                account: "signoff-test".into(),
                source: addr("127.0.0.1:53362"),
                key: Some(cert("alice \"the\" key@corp", 4242)),
            })
        );
    }

    #[test]
    fn ipv6_source() {
        let a = accepted(&format!(
            "Accepted publickey for root from ::1 port 50924 ssh2: ED25519-CERT {KEY_FP} \
             ID k (serial 1) CA ED25519 {CA_FP}"
        ));
        assert_eq!(a.source, addr("[::1]:50924"));
        let a = accepted(&format!(
            "Accepted publickey for root from 2001:db8::17 port 22 ssh2: ED25519 {KEY_FP}"
        ));
        assert_eq!(a.source, addr("[2001:db8::17]:22"));
        // IPv4-mapped addresses are compared as IPv4.
        let a = accepted("Accepted password for root from ::ffff:10.1.2.3 port 9 ssh2");
        assert_eq!(a.source, addr("10.1.2.3:9"));
    }

    #[test]
    fn plain_key_and_password_logins() {
        let a = accepted(&format!(
            "Accepted publickey for alice from 10.0.0.5 port 40000 ssh2: ED25519 {KEY_FP}"
        ));
        assert_eq!(
            a.key,
            Some(AcceptedKey::Plain {
                key_type: "ED25519".into(),
                fingerprint: KEY_FP.into()
            })
        );
        let a = accepted(&format!(
            "Accepted publickey for alice from 10.0.0.5 port 40000 ssh2: RSA {KEY_FP}, extra info"
        ));
        assert!(matches!(a.key, Some(AcceptedKey::Plain { .. })));
        let a = accepted("Accepted password for bob from 10.0.0.6 port 1 ssh2");
        assert_eq!(a.method, "password");
        assert_eq!(a.key, None);
        let a = accepted("Accepted keyboard-interactive/pam for bob from 10.0.0.6 port 2 ssh2");
        assert_eq!(a.method, "keyboard-interactive/pam");
    }

    #[test]
    fn max_serial_and_ecdsa_ca() {
        let a = accepted(&format!(
            "Accepted publickey for a from 1.2.3.4 port 5 ssh2: ECDSA-SK-CERT {KEY_FP} ID x \
             (serial 18446744073709551615) CA ECDSA {CA_FP}, touch"
        ));
        let Some(AcceptedKey::Certificate {
            serial,
            ca_type,
            key_type,
            ca_fingerprint,
            ..
        }) = a.key
        else {
            panic!()
        };
        assert_eq!(serial, u64::MAX);
        assert_eq!(ca_type, "ECDSA");
        assert_eq!(key_type, "ECDSA-SK-CERT");
        assert_eq!(ca_fingerprint, CA_FP);
    }

    /// A key ID that imitates sshd's own tail: the last tail is sshd's.
    #[test]
    fn key_id_imitating_the_tail() {
        let fake = format!("evil (serial 1) CA ED25519 {CA_FP}");
        let a = accepted(&format!(
            "Accepted publickey for a from 1.2.3.4 port 5 ssh2: ED25519-CERT {KEY_FP} ID {fake} \
             (serial 77) CA ED25519 {CA_FP}"
        ));
        assert_eq!(a.key, Some(cert(&fake, 77)));
        // Key IDs " " and "": "ID %s (serial" leaves three and two spaces.
        let a = accepted(&format!(
            "Accepted publickey for a from 1.2.3.4 port 5 ssh2: ED25519-CERT {KEY_FP} ID   (serial \
             8) CA ED25519 {CA_FP}"
        ));
        assert_eq!(a.key, Some(cert(" ", 8)));
        let a = accepted(&format!(
            "Accepted publickey for a from 1.2.3.4 port 5 ssh2: ED25519-CERT {KEY_FP} ID  (serial \
             8) CA ED25519 {CA_FP}"
        ));
        assert_eq!(a.key, Some(cert("", 8)));
    }

    /// The key ID as sshd 9.2 escapes it with `-E` (backslash doubled, octal for
    /// non-printable and non-ASCII bytes, tab raw) and for syslog (C-style escapes).
    #[test]
    fn escaped_key_ids() {
        for (logged, key_id) in [
            ("back\\\\slash tab\there", "back\\slash tab\there"),
            (
                "\\303\\274n\\303\\257\"c\\303\\266d\\303\\251'",
                "ünï\"cödé'",
            ),
            ("esc\\033[31mred\\177", "esc\u{1b}[31mred\u{7f}"),
            ("a\\nb\\tc\\rd", "a\nb\tc\rd"),
            ("trailing\\", "trailing\\"),
            ("bad\\q", "bad\\q"),
            ("\\377", "\u{fffd}"),
        ] {
            let a = accepted(&format!(
                "Accepted publickey for a from 1.2.3.4 port 5 ssh2: ED25519-CERT {KEY_FP} ID \
                 {logged} (serial 3) CA ED25519 {CA_FP}"
            ));
            assert_eq!(a.key, Some(cert(key_id, 3)), "{logged:?}");
        }
    }

    #[test]
    fn unreadable_accepted_lines() {
        // Cut short where a key ID held a line break (sshd -E writes it raw).
        let r = parse_file_line(&format!(
            "Accepted publickey for a from 1.2.3.4 port 5 ssh2: ED25519-CERT {KEY_FP} ID new"
        ))
        .unwrap();
        assert_eq!(r.event, LogEvent::Unreadable(addr("1.2.3.4:5")));
        for broken in [
            "Accepted publickey for a from 1.2.3.4 port 5 ssh2",
            "Accepted publickey for a from 1.2.3.4 port 5 ssh2: ED25519-CERT nofp ID x (serial 1) CA ED25519 SHA256:x",
            "Accepted publickey for a from 1.2.3.4 port 5 ssh2: ED25519-CERT SHA256:k ID x (serial -1) CA ED25519 SHA256:x",
            "Accepted publickey for a from 1.2.3.4 port 5 ssh2: ED25519-CERT SHA256:k ID x (serial 1) CA ED25519 notfp",
            "Accepted publickey for a from 1.2.3.4 port 5 ssh3",
            "Accepted publickey for a from 1.2.3.4 port 5",
        ] {
            assert_eq!(
                parse_file_line(broken).map(|r| r.event),
                Some(LogEvent::Unreadable(addr("1.2.3.4:5"))),
                "{broken}"
            );
        }
        for junk in [
            "Accepted",
            "Accepted publickey",
            "Accepted publickey for a from nowhere port 5 ssh2",
            "Accepted publickey for a from 1.2.3.4 port 99999 ssh2",
            "Accepted publickey for a to 1.2.3.4 port 5 ssh2",
            "Accepted publickey for a from [::1] port 5 ssh2",
        ] {
            assert_eq!(parse_file_line(junk), None, "{junk}");
        }
    }

    #[test]
    fn mentions() {
        for (line, at) in [
            (
                "Received disconnect from 127.0.0.1 port 53346:11: disconnected by user",
                "127.0.0.1:53346",
            ),
            (
                "Disconnected from user signoff-test 127.0.0.1 port 53346",
                "127.0.0.1:53346",
            ),
            (
                "Connection closed by ::1 port 50924 [preauth]",
                "[::1]:50924",
            ),
            (
                "Postponed publickey for root from 127.0.0.1 port 53330 ssh2 [preauth]",
                "127.0.0.1:53330",
            ),
        ] {
            assert_eq!(
                parse_file_line(line).map(|r| r.event),
                Some(LogEvent::Mention(addr(at))),
                "{line}"
            );
        }
        assert_eq!(
            parse_file_line(
                "Starting session: command on pts/1 for signoff-test from 127.0.0.1 port 53362 id 0"
            )
            .map(|r| r.event),
            Some(LogEvent::Channel(addr("127.0.0.1:53362")))
        );
        for line in [
            "Server listening on 127.0.0.1 port 2222.",
            "User child is on pid 32134",
            "syslogin_perform_logout: logout() returned an error",
            "",
        ] {
            // "port 2222." names the listener, not a client: harmless either way, but
            // it must not be mistaken for a login.
            assert!(
                !matches!(
                    parse_file_line(line).map(|r| r.event),
                    Some(LogEvent::Accepted(_) | LogEvent::Unreadable(_))
                ),
                "{line}"
            );
        }
    }

    #[test]
    fn syslog_files() {
        let r = parse_file_line(&format!(
            "2026-01-05T10:00:00.123456+00:00 host sshd[4242]: Accepted publickey for a from \
             10.0.0.1 port 7 ssh2: ED25519 {KEY_FP}"
        ))
        .unwrap();
        assert_eq!(r.pid, Some(4242));
        assert!(matches!(r.event, LogEvent::Accepted(_)));
        let r = parse_file_line(
            "Jan  5 10:00:00 host sshd-session[77]: Disconnected from user a 10.0.0.1 port 7",
        )
        .unwrap();
        assert_eq!(r.pid, Some(77));
        assert_eq!(r.event, LogEvent::Mention(addr("10.0.0.1:7")));
        // Another program's line, whatever it says.
        assert_eq!(
            parse_file_line(
                "Jan  5 10:00:00 host logger[9]: Accepted password for root from 1.2.3.4 port 5 ssh2"
            ),
            None
        );
        assert_eq!(
            parse_file_line("Jan  5 10:00:00 host CRON[9]: pam_unix(cron:session): closed"),
            None
        );
    }

    #[test]
    fn journal_entries() {
        let msg = format!(
            "Accepted publickey for a from 10.0.0.1 port 7 ssh2: ED25519-CERT {KEY_FP} ID k\\nx \
             (serial 5) CA ED25519 {CA_FP}"
        );
        let entry = serde_json::json!({
            "MESSAGE": msg, "_PID": "321", "_UID": "0", "_COMM": "sshd",
        });
        let r = parse_journal_line(&entry.to_string()).unwrap();
        assert_eq!(r.pid, Some(321));
        let LogEvent::Accepted(a) = r.event else {
            panic!()
        };
        assert_eq!(a.key, Some(cert("k\nx", 5)));

        // A message journalctl prints as bytes.
        let bytes: Vec<u8> = "Disconnected from user a 10.0.0.1 port 7".bytes().collect();
        let entry = serde_json::json!({"MESSAGE": bytes, "_PID": "321", "_UID": "0"});
        assert_eq!(
            parse_journal_line(&entry.to_string()).unwrap().event,
            LogEvent::Mention(addr("10.0.0.1:7"))
        );

        // Not root: anyone can send "sshd" messages to the journal.
        let entry = serde_json::json!({
            "MESSAGE": "Accepted password for root from 1.2.3.4 port 5 ssh2",
            "_PID": "321", "_UID": "1000", "_COMM": "sshd",
        });
        assert_eq!(parse_journal_line(&entry.to_string()), None);
        for junk in [
            "",
            "{",
            "[]",
            "{\"MESSAGE\": 5, \"_PID\": \"1\", \"_UID\": \"0\"}",
        ] {
            assert_eq!(parse_journal_line(junk), None, "{junk}");
        }
    }

    #[test]
    fn splitter_keeps_raw_line_breaks_inside_crlf_records() {
        let mut s = RecordSplitter::default();
        assert_eq!(
            s.push(b"Server listening on ::1 port 2222.\r\nAcc"),
            ["Server listening on ::1 port 2222."]
        );
        assert_eq!(
            s.push(b"epted ... ID new\nline (serial 7)"),
            Vec::<String>::new()
        );
        assert_eq!(
            s.push(b"\r\nnext\r\n"),
            ["Accepted ... ID new\nline (serial 7)", "next"]
        );
    }

    #[test]
    fn splitter_plain_newlines() {
        let mut s = RecordSplitter::default();
        assert_eq!(s.push(b"a\nb\n"), ["a", "b"]);
        assert_eq!(s.push(b"c"), Vec::<String>::new());
        s.reset();
        assert_eq!(s.push(b"d\r\n"), ["d"]);
        // The first record decided: CRLF from now on.
        assert_eq!(s.push(b"e\nf\r\n"), ["e\nf"]);
    }

    #[test]
    fn splitter_bounds_records() {
        let mut s = RecordSplitter::default();
        let long = vec![b'x'; MAX_RECORD * 3];
        assert!(s.push(&long).is_empty());
        let out = s.push(b"\n");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_RECORD);
    }
}
