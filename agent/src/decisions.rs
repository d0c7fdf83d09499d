//! The sshd commands' decisions, counted by the daemon for the control plane's
//! `signoff_principals_decision_seconds` histogram (issue 17).
//!
//! `principals` and `authorized-keys` are short-lived processes sshd runs as the
//! `AuthorizedPrincipalsCommandUser`; they cannot keep metrics themselves. After deciding,
//! each sends one datagram (its outcome and how long it took) to the daemon's Unix datagram
//! socket ([`report`]): non-blocking, every error ignored, so that a stopped daemon or a
//! full socket never delays or changes a login.
//!
//! The daemon binds that socket ([`DecisionsSocket`]) with `SO_PASSCRED`, so the kernel
//! tells it who sent each datagram: only uid 0 and the command user's uid are counted; any
//! other sender, or a datagram that does not parse, is dropped and counted as refused. What
//! is counted waits in a bounded [`DecisionsOutbox`] and goes on the sync stream at most once
//! a second; what does not fit is counted as dropped, and both counts go with the next
//! message, as [`crate::refused_outbox`] does for refused attempts.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use signoff_proto::v1;
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use crate::sshd_commands::Decision;

/// The socket's name in the state directory (`decisions_socket`'s default).
pub const SOCKET_FILE: &str = "decisions.sock";
/// Decisions waiting to be sent, at most; more are counted as dropped.
pub const QUEUE: usize = 10_000;
/// Decisions in one message, at most.
pub const BATCH: usize = 1_000;
/// What every datagram starts with: a stray datagram from anything else does not parse.
const MAGIC: &str = "signoff-decision/1";
/// Longer datagrams are malformed (a real one is about 40 bytes).
const MAX_DATAGRAM: usize = 128;

/// What a command decided, as the control plane's histogram labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Printed what live grants hold.
    Granted,
    /// Printed only break-glass principals.
    BreakGlass,
    /// Printed nothing (including a configuration that did not load).
    Denied,
}

impl Outcome {
    /// The outcome of `decision`.
    pub fn of(decision: &Decision) -> Outcome {
        match decision {
            Decision::Granted { .. } => Outcome::Granted,
            Decision::BreakGlass { .. } => Outcome::BreakGlass,
            Decision::Denied(_) => Outcome::Denied,
        }
    }

    /// Its word in the datagram.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Granted => "granted",
            Outcome::BreakGlass => "break_glass",
            Outcome::Denied => "denied",
        }
    }

    fn parse(word: &str) -> Option<Outcome> {
        [Outcome::Granted, Outcome::BreakGlass, Outcome::Denied]
            .into_iter()
            .find(|o| o.as_str() == word)
    }

    fn to_proto(self) -> v1::DecisionOutcome {
        match self {
            Outcome::Granted => v1::DecisionOutcome::Granted,
            Outcome::BreakGlass => v1::DecisionOutcome::BreakGlass,
            Outcome::Denied => v1::DecisionOutcome::Denied,
        }
    }
}

/// One decision as a datagram: `signoff-decision/1 OUTCOME MICROSECONDS`.
pub fn encode(outcome: Outcome, took: Duration) -> Vec<u8> {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    format!("{MAGIC} {} {micros}", outcome.as_str()).into_bytes()
}

/// The decision a datagram carries, or `None` when it is not one.
pub fn decode(datagram: &[u8]) -> Option<(Outcome, u64)> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut words = text.split(' ');
    if words.next()? != MAGIC {
        return None;
    }
    let outcome = Outcome::parse(words.next()?)?;
    let micros = words.next()?.parse().ok()?;
    words.next().is_none().then_some((outcome, micros))
}

/// Sends one decision to the daemon at `socket`, best effort: the send does not block, and
/// every failure (no daemon, a full socket, no permission) is ignored.
pub fn report(socket: &Path, outcome: Outcome, took: Duration) {
    let Ok(sender) = StdDatagram::unbound() else {
        return;
    };
    if sender.set_nonblocking(true).is_err() {
        return;
    }
    let _ = sender.send_to(&encode(outcome, took), socket);
}

/// What one datagram was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A decision from an allowed sender.
    Decision(Outcome, u64),
    /// From a sender not allowed, without credentials, or not a decision.
    Refused,
}

/// The daemon's end: a datagram socket that knows who sends to it.
#[derive(Debug)]
pub struct DecisionsSocket {
    socket: UnixDatagram,
    path: PathBuf,
    allowed: Vec<u32>,
}

impl DecisionsSocket {
    /// Binds `path` (replacing a socket a previous daemon left), writable by everyone so
    /// that the command user can send; only datagrams from the uids in `allowed` count.
    pub fn bind(path: &Path, allowed: Vec<u32>) -> io::Result<DecisionsSocket> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let socket = UnixDatagram::bind(path)?;
        setsockopt(&socket, sockopt::PassCred, &true)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        Ok(DecisionsSocket {
            socket,
            path: path.to_owned(),
            allowed,
        })
    }

    /// Where it is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram.
    pub async fn recv(&self) -> io::Result<Received> {
        let (uid, datagram) = self
            .socket
            .async_io(Interest::READABLE, || recv_with_sender(&self.socket))
            .await?;
        Ok(match (uid, datagram) {
            (Some(uid), Some(datagram)) if self.allowed.contains(&uid) => match decode(&datagram) {
                Some((outcome, micros)) => Received::Decision(outcome, micros),
                None => Received::Refused,
            },
            _ => Received::Refused,
        })
    }
}

/// One datagram and its sender's uid (`None` without credentials); the datagram is `None`
/// when it was longer than any decision.
fn recv_with_sender(socket: &UnixDatagram) -> io::Result<(Option<u32>, Option<Vec<u8>>)> {
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    let mut cmsg = nix::cmsg_space!(UnixCredentials);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let mut uid = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmCredentials(cred) = c {
                uid = Some(cred.uid());
            }
        }
    }
    let bytes = msg.bytes;
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC) || bytes > MAX_DATAGRAM;
    Ok((uid, (!truncated).then(|| buf[..bytes].to_vec())))
}

/// Decisions on their way to the control plane, bounded.
#[derive(Debug, Default)]
pub struct DecisionsOutbox {
    pending: VecDeque<v1::PrincipalsDecision>,
    dropped: u64,
    refused: u64,
}

impl DecisionsOutbox {
    /// Counts one datagram: queues a decision, or counts it as dropped when the queue is
    /// full; counts a refused one.
    pub fn push(&mut self, received: Received) {
        match received {
            Received::Decision(outcome, micros) if self.pending.len() < QUEUE => {
                self.pending.push_back(v1::PrincipalsDecision {
                    outcome: outcome.to_proto().into(),
                    duration_us: micros,
                });
            }
            Received::Decision(..) => self.dropped += 1,
            Received::Refused => self.refused += 1,
        }
    }

    /// Whether there is anything to send (decisions, or counts of lost ones).
    pub fn has_news(&self) -> bool {
        !self.pending.is_empty() || self.dropped > 0 || self.refused > 0
    }

    /// The next message: up to [`BATCH`] decisions and the counts since the last.
    pub fn take(&mut self) -> v1::PrincipalsDecisions {
        let n = self.pending.len().min(BATCH);
        v1::PrincipalsDecisions {
            decisions: self.pending.drain(..n).collect(),
            dropped: std::mem::take(&mut self.dropped),
            refused: std::mem::take(&mut self.refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_survives_the_wire() {
        for outcome in [Outcome::Granted, Outcome::BreakGlass, Outcome::Denied] {
            let d = encode(outcome, Duration::from_micros(1_234));
            assert_eq!(decode(&d), Some((outcome, 1_234)));
        }
        assert_eq!(
            encode(Outcome::BreakGlass, Duration::from_millis(2)),
            b"signoff-decision/1 break_glass 2000"
        );
    }

    #[test]
    fn anything_else_is_not_a_decision() {
        for bad in [
            &b""[..],
            b"signoff-decision/1",
            b"signoff-decision/1 granted",
            b"signoff-decision/1 granted 12 extra",
            b"signoff-decision/1 allowed 12",
            b"signoff-decision/1 granted -1",
            b"signoff-decision/2 granted 12",
            b"<13>signoff: granted 12",
            b"signoff-decision/1 granted \xff",
        ] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_outbox_is_bounded_and_counts_what_it_loses() {
        let mut o = DecisionsOutbox::default();
        assert!(!o.has_news());
        for i in 0..QUEUE as u64 + 5 {
            o.push(Received::Decision(Outcome::Granted, i));
        }
        o.push(Received::Refused);
        o.push(Received::Decision(Outcome::Denied, 1));
        let first = o.take();
        assert_eq!(first.decisions.len(), BATCH);
        assert_eq!((first.dropped, first.refused), (6, 1));
        assert_eq!(first.decisions[0].duration_us, 0);
        assert_eq!(first.decisions[0].outcome(), v1::DecisionOutcome::Granted);
        let mut sent = first.decisions.len();
        while o.has_news() {
            let m = o.take();
            assert_eq!((m.dropped, m.refused), (0, 0));
            sent += m.decisions.len();
        }
        assert_eq!(sent, QUEUE);
        // Room again.
        o.push(Received::Decision(Outcome::BreakGlass, 9));
        let m = o.take();
        assert_eq!(m.decisions[0].outcome(), v1::DecisionOutcome::BreakGlass);
    }

    fn socket(allowed: Vec<u32>) -> (tempfile::TempDir, DecisionsSocket) {
        let dir = tempfile::tempdir().unwrap();
        let s = DecisionsSocket::bind(&dir.path().join(SOCKET_FILE), allowed).unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn a_decision_from_an_allowed_uid_is_received() {
        let me = nix::unistd::getuid().as_raw();
        let (_dir, s) = socket(vec![me]);
        report(s.path(), Outcome::Denied, Duration::from_micros(70));
        assert_eq!(
            s.recv().await.unwrap(),
            Received::Decision(Outcome::Denied, 70)
        );
    }

    #[tokio::test]
    async fn a_datagram_from_an_unexpected_uid_is_refused() {
        let me = nix::unistd::getuid().as_raw();
        let (_dir, s) = socket(vec![me.wrapping_add(4242)]);
        report(s.path(), Outcome::Granted, Duration::from_micros(70));
        assert_eq!(s.recv().await.unwrap(), Received::Refused);
    }

    #[tokio::test]
    async fn a_malformed_or_oversized_datagram_is_refused() {
        let me = nix::unistd::getuid().as_raw();
        let (_dir, s) = socket(vec![me]);
        let sender = StdDatagram::unbound().unwrap();
        sender.send_to(b"granted 70", s.path()).unwrap();
        let mut long = encode(Outcome::Granted, Duration::ZERO);
        long.resize(MAX_DATAGRAM + 50, b'0');
        sender.send_to(&long, s.path()).unwrap();
        assert_eq!(s.recv().await.unwrap(), Received::Refused);
        assert_eq!(s.recv().await.unwrap(), Received::Refused);
    }

    #[test]
    fn reporting_to_no_daemon_returns_at_once() {
        let dir = tempfile::tempdir().unwrap();
        report(
            &dir.path().join(SOCKET_FILE),
            Outcome::Granted,
            Duration::ZERO,
        );
    }
}
