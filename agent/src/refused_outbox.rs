//! Refused login attempts on their way to the control plane, rate-bounded per host.
//!
//! A host under a brute-force run sees thousands of refused attempts a minute; each one is
//! worth an event, but not at the cost of the sync stream (revisions, kill orders) or of
//! the control plane's store. So attempts pass a token bucket (`refused_rate` a second,
//! bursts up to `refused_burst`) and wait in a queue of at most `refused_burst` while the
//! stream is down; what does not fit is counted, and the count goes with the next report,
//! so the control plane records how many were dropped: nothing is lost silently.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use signoff_proto::v1;

use crate::sessions::AcceptedKey;
use crate::sessions::refused::RefusedAttempt;

/// Attempts sent in one message at most.
pub const BATCH: usize = 500;

/// The queue and its bucket.
#[derive(Debug)]
pub struct RefusedOutbox {
    pending: VecDeque<v1::RefusedAttempt>,
    dropped: u64,
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl RefusedOutbox {
    /// An outbox admitting `rate` attempts a second, `burst` at once (both at least 1).
    pub fn new(rate: u32, burst: u32, now: Instant) -> RefusedOutbox {
        let burst = f64::from(burst.max(1));
        RefusedOutbox {
            pending: VecDeque::new(),
            dropped: 0,
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            refilled: now,
        }
    }

    /// Queues an attempt read at `at`, or counts it as dropped when over the rate or the
    /// queue is full.
    pub fn push(&mut self, attempt: &RefusedAttempt, at: SystemTime, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens < 1.0 || self.pending.len() as f64 >= self.burst {
            self.dropped += 1;
            return;
        }
        self.tokens -= 1.0;
        self.pending.push_back(to_proto(attempt, at));
    }

    /// Whether there is anything to send (attempts, or a count of dropped ones).
    pub fn has_news(&self) -> bool {
        !self.pending.is_empty() || self.dropped > 0
    }

    /// The next message: up to [`BATCH`] attempts and the count dropped since the last.
    pub fn take(&mut self) -> v1::RefusedAttempts {
        let n = self.pending.len().min(BATCH);
        v1::RefusedAttempts {
            attempts: self.pending.drain(..n).collect(),
            dropped: std::mem::take(&mut self.dropped),
        }
    }

    /// Puts back a message that could not be sent, in front (its attempts are the oldest).
    pub fn put_back(&mut self, message: v1::RefusedAttempts) {
        self.dropped += message.dropped;
        for a in message.attempts.into_iter().rev() {
            self.pending.push_front(a);
        }
    }
}

fn to_proto(a: &RefusedAttempt, at: SystemTime) -> v1::RefusedAttempt {
    let (key_id, serial, ca_fingerprint, key_fingerprint) = match &a.key {
        Some(AcceptedKey::Certificate {
            key_id,
            serial,
            ca_fingerprint,
            key_fingerprint,
            ..
        }) => (
            key_id.clone(),
            *serial,
            ca_fingerprint.clone(),
            key_fingerprint.clone(),
        ),
        Some(AcceptedKey::Plain { fingerprint, .. }) => {
            (String::new(), 0, String::new(), fingerprint.clone())
        }
        None => (String::new(), 0, String::new(), String::new()),
    };
    v1::RefusedAttempt {
        account: a.account.clone(),
        source_address: a.source.ip().to_string(),
        source_port: u32::from(a.source.port()),
        key_id,
        serial,
        ca_fingerprint,
        key_fingerprint,
        reason: a.reason.as_wire(),
        at: at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sessions::refused::Reason;

    fn attempt(port: u16) -> RefusedAttempt {
        RefusedAttempt {
            account: "root".into(),
            source: format!("10.0.0.1:{port}").parse().unwrap(),
            key: None,
            reason: Reason::InvalidUser,
        }
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut o = RefusedOutbox::new(10, 100, t0);
        for p in 0..1000 {
            o.push(&attempt(p), SystemTime::now(), t0);
        }
        let m = o.take();
        assert_eq!(m.attempts.len(), 100);
        assert_eq!(m.dropped, 900);
        assert!(!o.has_news());
        // One second later, ten more fit.
        let t1 = t0 + Duration::from_secs(1);
        for p in 0..50 {
            o.push(&attempt(p), SystemTime::now(), t1);
        }
        let m = o.take();
        assert_eq!((m.attempts.len(), m.dropped), (10, 40));
    }

    #[test]
    fn within_the_rate_nothing_is_dropped_and_order_is_kept() {
        let t0 = Instant::now();
        let mut o = RefusedOutbox::new(100, 1000, t0);
        for p in 0..1000u16 {
            o.push(
                &attempt(p),
                SystemTime::now(),
                t0 + Duration::from_millis(10 * u64::from(p)),
            );
        }
        let first = o.take();
        assert_eq!((first.attempts.len(), first.dropped), (BATCH, 0));
        o.put_back(first);
        let mut ports = Vec::new();
        while o.has_news() {
            let m = o.take();
            assert_eq!(m.dropped, 0);
            ports.extend(m.attempts.iter().map(|a| a.source_port));
        }
        assert_eq!(ports, (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn the_wire_form_names_the_reason_and_key() {
        let a = RefusedAttempt {
            account: "root".into(),
            source: "127.0.0.1:4000".parse().unwrap(),
            key: Some(AcceptedKey::Certificate {
                key_type: "ED25519-CERT".into(),
                key_fingerprint: "SHA256:k".into(),
                key_id: "bob@corp".into(),
                serial: 12,
                ca_type: "ED25519".into(),
                ca_fingerprint: "SHA256:ca".into(),
            }),
            reason: Reason::Revoked,
        };
        let p = to_proto(&a, UNIX_EPOCH + Duration::from_secs(7));
        assert_eq!(
            (p.key_id.as_str(), p.serial, p.reason.as_str(), p.at),
            ("bob@corp", 12, "revoked", 7)
        );
    }
}
