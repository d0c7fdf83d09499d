//! Refused login attempts, from sshd's log: who tried to log in where, with which
//! certificate, and why sshd said no.
//!
//! With `LogLevel VERBOSE`, OpenSSH 9.2 logs the reason on a line of its own, naming no
//! connection, and then the attempt (lines as sshd writes them, checked against a real
//! sshd):
//!
//! ```text
//! Authentication key ED25519-CERT SHA256:KEYFP revoked by file /var/lib/signoff/revoked.krl
//! Certificate invalid: expired
//! Certificate invalid: name is not a listed principal
//! AuthorizedPrincipalsCommand /usr/local/bin/signoff-agent principals root failed, status 1
//! Certificate does not contain an authorized principal
//! Failed publickey for U from IP port P ssh2: ED25519-CERT SHA256:KEYFP ID KEYID (serial N) CA ED25519 SHA256:CAFP
//! Invalid user U from IP port P
//! ```
//!
//! [`Refusals`] pairs a reason with the `Failed` line that follows it from the same sshd
//! process (by PID where the source gives one; in an `sshd -E` file, which has no PID, the
//! reason must be the line just before). A `Failed` line for a certificate with no reason
//! paired is still a refused attempt, with reason [`Reason::Unknown`]: an attempt is never
//! dropped for want of its reason. `Failed` lines for plain keys are not reported: every
//! client offers its keys in turn, and a key the host does not know is no news.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::log::{AcceptedKey, parse_accepted};

/// Why sshd refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Reason {
    /// The key or certificate is in the KRL (`RevokedKeys`): a signed-off person.
    Revoked,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate names no principal the account accepts (the principals command
    /// printed none of the certificate's principals: the person is signed off, disabled,
    /// or holds no grant for this account).
    PrincipalRefused,
    /// The account does not exist.
    InvalidUser,
    /// Another reason sshd gave for the certificate, as it wrote it.
    OtherCertificateInvalid(String),
    /// The attempt's reason was not logged where it could be paired.
    Unknown,
}

/// One refused attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RefusedAttempt {
    /// The unix account asked for.
    pub account: String,
    /// The client's address and port.
    pub source: SocketAddr,
    /// The certificate offered, when there was one.
    pub key: Option<AcceptedKey>,
    /// Why sshd refused.
    pub reason: Reason,
}

/// Reasons waiting for their `Failed` line, at most this many (one per sshd process
/// mid-authentication); past it the oldest is forgotten and its attempt reported with
/// [`Reason::Unknown`].
const MAX_PENDING: usize = 1024;

/// Pairs reasons with attempts, line by line.
#[derive(Debug, Default)]
pub struct Refusals {
    pending: HashMap<Option<u32>, (u64, Reason)>,
    order: u64,
}

/// What one log line says about a refused attempt, read without context (see
/// [`Refusals`] for the pairing).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    /// A reason, naming no connection; the next attempt of the same process is its.
    Reason(Reason),
    /// The attempt itself; its reason is [`Reason::Unknown`] (or
    /// [`Reason::InvalidUser`]) until paired.
    Attempt(RefusedAttempt),
}

impl Part {
    /// The connection the line names, if any.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Part::Reason(_) => None,
            Part::Attempt(a) => Some(a.source),
        }
    }
}

/// Reads one log message (no syslog prefix): a reason line, a refused certificate's
/// `Failed` line, or `Invalid user`. Other lines (plain keys' `Failed` lines included)
/// give `None`.
pub fn classify(message: &str) -> Option<Part> {
    let message = message.strip_suffix('\r').unwrap_or(message);
    if let Some(reason) = reason_line(message) {
        return Some(Part::Reason(reason));
    }
    if let Some(rest) = message.strip_prefix("Invalid user ") {
        let (account, endpoint) = rest.split_once(" from ")?;
        let (ip, port) = endpoint.split_once(" port ")?;
        let ip: std::net::IpAddr = ip.parse().ok()?;
        let port: u16 = port.split(' ').next()?.parse().ok()?;
        return Some(Part::Attempt(RefusedAttempt {
            account: super::log::unvis(account),
            source: SocketAddr::new(ip.to_canonical(), port),
            key: None,
            reason: Reason::InvalidUser,
        }));
    }
    let rest = message.strip_prefix("Failed ")?;
    let attempt = parse_accepted(rest).ok()?;
    let Some(key @ AcceptedKey::Certificate { .. }) = attempt.key else {
        return None;
    };
    Some(Part::Attempt(RefusedAttempt {
        account: attempt.account,
        source: attempt.source,
        key: Some(key),
        reason: Reason::Unknown,
    }))
}

impl Refusals {
    /// Takes one log message (no syslog prefix) and the PID that logged it, if the source
    /// knows it; returns the refused attempt it completes, if any.
    pub fn push(&mut self, pid: Option<u32>, message: &str) -> Option<RefusedAttempt> {
        match classify(message) {
            Some(part) => self.push_part(pid, part),
            None => {
                self.other_line(pid);
                None
            }
        }
    }

    /// [`Refusals::push`] for a line already classified.
    pub fn push_part(&mut self, pid: Option<u32>, part: Part) -> Option<RefusedAttempt> {
        match part {
            Part::Reason(reason) => {
                if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&pid) {
                    let oldest = self
                        .pending
                        .iter()
                        .min_by_key(|(_, (n, _))| *n)
                        .map(|(k, _)| *k);
                    if let Some(oldest) = oldest {
                        self.pending.remove(&oldest);
                    }
                }
                self.order += 1;
                self.pending.insert(pid, (self.order, reason));
                None
            }
            Part::Attempt(mut attempt) => {
                let paired = self.pending.remove(&pid).map(|(_, r)| r);
                if attempt.reason == Reason::Unknown {
                    attempt.reason = paired.unwrap_or(Reason::Unknown);
                }
                Some(attempt)
            }
        }
    }

    /// A line of `pid` that is no part of a refusal: a reason pairs only with the attempt
    /// that follows it directly.
    pub fn other_line(&mut self, pid: Option<u32>) {
        self.pending.remove(&pid);
    }
}

impl Reason {
    /// The reason's name on the wire and in events (`revoked`, `expired`, …).
    pub fn as_wire(&self) -> String {
        match self {
            Reason::Revoked => "revoked".into(),
            Reason::Expired => "expired".into(),
            Reason::NotYetValid => "not_yet_valid".into(),
            Reason::PrincipalRefused => "principal_refused".into(),
            Reason::InvalidUser => "invalid_user".into(),
            Reason::OtherCertificateInvalid(why) => format!("certificate_invalid: {why}"),
            Reason::Unknown => "unknown".into(),
        }
    }
}

fn reason_line(message: &str) -> Option<Reason> {
    if message.starts_with("Authentication key ") && message.contains(" revoked by file ") {
        return Some(Reason::Revoked);
    }
    if message == "Certificate does not contain an authorized principal" {
        return Some(Reason::PrincipalRefused);
    }
    let why = message.strip_prefix("Certificate invalid: ")?;
    Some(match why {
        "expired" => Reason::Expired,
        "not yet valid" => Reason::NotYetValid,
        "name is not a listed principal" => Reason::PrincipalRefused,
        other => Reason::OtherCertificateInvalid(other.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a real sshd (OpenSSH 9.2, `-E FILE`, LogLevel VERBOSE) wrote for four refused
    /// certificates and an unknown account, captured verbatim (`\r\n` line ends).
    const LOG: &str = "Server listening on 127.0.0.1 port 22421.\r
Connection from 127.0.0.1 port 55912 on 127.0.0.1 port 22421 rdomain \"\"\r
Failed publickey for root from 127.0.0.1 port 55912 ssh2: ED25519 SHA256:nzpyJaEOYCIQ7RYu/Z2ft3d6iGSrDzzMBmAbPinZaLs\r
Certificate invalid: expired\r
Failed publickey for root from 127.0.0.1 port 55912 ssh2: ED25519-CERT SHA256:nzpyJaEOYCIQ7RYu/Z2ft3d6iGSrDzzMBmAbPinZaLs ID bob@corp (serial 12) CA ED25519 SHA256:90JI4hRDjEEywFy2+kR2s2m6y3+8yM7BmSkRWf5jXto\r
Connection closed by authenticating user root 127.0.0.1 port 55912 [preauth]\r
Connection from 127.0.0.1 port 55934 on 127.0.0.1 port 22421 rdomain \"\"\r
Failed publickey for root from 127.0.0.1 port 55934 ssh2: ED25519 SHA256:UzKI4fehfvaxsJxVXD+kMXdWE8g9RYQmbK9TJbQSwBo\r
Certificate invalid: name is not a listed principal\r
Failed publickey for root from 127.0.0.1 port 55934 ssh2: ED25519-CERT SHA256:UzKI4fehfvaxsJxVXD+kMXdWE8g9RYQmbK9TJbQSwBo ID carol@corp (serial 13) CA ED25519 SHA256:90JI4hRDjEEywFy2+kR2s2m6y3+8yM7BmSkRWf5jXto\r
Connection from 127.0.0.1 port 55098 on 127.0.0.1 port 22421 rdomain \"\"\r
Failed publickey for root from 127.0.0.1 port 55098 ssh2: ED25519 SHA256:rewXE2msaQUXJ6+C6JrfyP1WXsXXgaUE+TI9R8oNJxI\r
Authentication key ED25519-CERT SHA256:rewXE2msaQUXJ6+C6JrfyP1WXsXXgaUE+TI9R8oNJxI revoked by file /tmp/wt21-sshd/krl\r
Failed publickey for root from 127.0.0.1 port 55098 ssh2: ED25519-CERT SHA256:rewXE2msaQUXJ6+C6JrfyP1WXsXXgaUE+TI9R8oNJxI ID dave@corp (serial 14) CA ED25519 SHA256:90JI4hRDjEEywFy2+kR2s2m6y3+8yM7BmSkRWf5jXto\r
Connection from 127.0.0.1 port 58612 on 127.0.0.1 port 22422 rdomain \"\"\r
AuthorizedPrincipalsCommand /bin/false root failed, status 1\r
Certificate does not contain an authorized principal\r
Failed publickey for root from 127.0.0.1 port 58612 ssh2: ED25519-CERT SHA256:f5BGdjcQyr/j29+sXj8qkTDE9bYUrcoqueRQNbcTBx8 ID alice@corp (serial 11) CA ED25519 SHA256:90JI4hRDjEEywFy2+kR2s2m6y3+8yM7BmSkRWf5jXto\r
Connection from 127.0.0.1 port 55112 on 127.0.0.1 port 22421 rdomain \"\"\r
Invalid user nosuchuser from 127.0.0.1 port 55112\r
Connection closed by invalid user nosuchuser 127.0.0.1 port 55112 [preauth]\r
";

    fn key_id(a: &RefusedAttempt) -> &str {
        match &a.key {
            Some(AcceptedKey::Certificate { key_id, .. }) => key_id,
            _ => "",
        }
    }

    #[test]
    fn each_refusal_of_a_real_sshd_with_its_reason_user_source_and_key() {
        let mut r = Refusals::default();
        let got: Vec<RefusedAttempt> = LOG.split('\n').filter_map(|l| r.push(None, l)).collect();
        let summary: Vec<(&str, &str, u16, Reason)> = got
            .iter()
            .map(|a| {
                (
                    a.account.as_str(),
                    key_id(a),
                    a.source.port(),
                    a.reason.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("root", "bob@corp", 55912, Reason::Expired),
                ("root", "carol@corp", 55934, Reason::PrincipalRefused),
                ("root", "dave@corp", 55098, Reason::Revoked),
                ("root", "alice@corp", 58612, Reason::PrincipalRefused),
                ("nosuchuser", "", 55112, Reason::InvalidUser),
            ],
            "plain keys offered first are not reported"
        );
        let Some(AcceptedKey::Certificate {
            key_fingerprint,
            serial,
            ..
        }) = &got[2].key
        else {
            panic!("a certificate");
        };
        assert_eq!(
            key_fingerprint,
            "SHA256:rewXE2msaQUXJ6+C6JrfyP1WXsXXgaUE+TI9R8oNJxI"
        );
        assert_eq!(*serial, 14);
        assert_eq!(got[2].source.ip().to_string(), "127.0.0.1");
    }

    #[test]
    fn a_reason_pairs_only_with_an_attempt_of_its_own_process() {
        let failed = "Failed publickey for root from 10.0.0.1 port 4000 ssh2: ED25519-CERT SHA256:nzpyJaEOYCIQ7RYu/Z2ft3d6iGSrDzzMBmAbPinZaLs ID bob@corp (serial 12) CA ED25519 SHA256:90JI4hRDjEEywFy2+kR2s2m6y3+8yM7BmSkRWf5jXto";
        let mut r = Refusals::default();
        assert_eq!(r.push(Some(10), "Certificate invalid: expired"), None);
        let other = r.push(Some(11), failed).unwrap();
        assert_eq!(other.reason, Reason::Unknown, "another process's reason");
        assert_eq!(r.push(Some(10), failed).unwrap().reason, Reason::Expired);
        assert_eq!(
            r.push(Some(10), failed).unwrap().reason,
            Reason::Unknown,
            "a reason pairs once"
        );
    }

    #[test]
    fn a_certificate_attempt_without_its_reason_is_still_reported() {
        let mut r = Refusals::default();
        for pid in 0..(MAX_PENDING as u32 + 5) {
            r.push(Some(pid), "Certificate invalid: expired");
        }
        assert!(r.pending.len() <= MAX_PENDING);
        let failed = "Failed publickey for root from 10.0.0.1 port 4000 ssh2: ED25519-CERT SHA256:nzpyJaEOYCIQ7RYu/Z2ft3d6iGSrDzzMBmAbPinZaLs ID bob@corp (serial 12) CA ED25519 SHA256:90JI4hRDjEEywFy2+kR2s2m6y3+8yM7BmSkRWf5jXto";
        assert_eq!(r.push(Some(0), failed).unwrap().reason, Reason::Unknown);
        assert_eq!(
            r.push(Some(MAX_PENDING as u32 + 4), failed).unwrap().reason,
            Reason::Expired
        );
    }

    #[test]
    fn other_lines_are_no_attempt() {
        let mut r = Refusals::default();
        for line in [
            "Accepted publickey for root from 127.0.0.1 port 55904 ssh2: ED25519 SHA256:f5BGdjcQyr/j29+sXj8qkTDE9bYUrcoqueRQNbcTBx8",
            "Failed publickey for root from 127.0.0.1 port 55904 ssh2: ED25519 SHA256:f5BGdjcQyr/j29+sXj8qkTDE9bYUrcoqueRQNbcTBx8",
            "Failed publickey for root from nowhere port 1 ssh2",
            "Invalid user x from not-an-ip port 1",
            "",
        ] {
            assert_eq!(r.push(None, line), None, "{line}");
        }
    }
}
