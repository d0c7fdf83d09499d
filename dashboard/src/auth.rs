//! Who is logged in: server-side web sessions behind an HttpOnly, SameSite=Strict cookie
//! (Secure, with the `__Host-` prefix, when served over TLS), a CSRF token per session,
//! and growing delays after failed logins, per operator name and client address.
//!
//! Sessions live in memory: a restart of the control plane logs everyone out, which is
//! the safe direction. Each request re-reads the operator, so a disabled operator or a
//! changed role takes effect at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

use crate::backend::Role;
use crate::client_addr::TrustedProxies;

/// How the dashboard treats sessions and logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Mark cookies `Secure` (and use the `__Host-` prefix): true when served over TLS,
    /// or behind a proxy that terminates it.
    pub secure_cookies: bool,
    /// A session unused for this long (seconds) ends.
    pub session_idle_secs: i64,
    /// A session ends this long (seconds) after login, however active.
    pub session_max_secs: i64,
    /// Failed logins for one name from one address that cost nothing; each one after
    /// that doubles the wait before the next try (1 s, 2 s, 4 s, …).
    pub login_free_failures: u32,
    /// The longest wait between tries (seconds). A delay, never a lockout: the right
    /// password always gets in once it has passed.
    pub login_max_delay_secs: i64,
    /// Proxies whose `X-Forwarded-For` names the client; from any other peer it is
    /// ignored.
    pub trusted_proxies: TrustedProxies,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            secure_cookies: false,
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 3600,
            login_free_failures: 3,
            login_max_delay_secs: 5 * 60,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// A logged-in browser.
#[derive(Debug, Clone)]
pub(crate) struct WebSession {
    pub operator: String,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
}

/// More sessions than this and the least recently used are dropped (memory is bounded
/// whatever clients do).
const MAX_SESSIONS: usize = 10_000;
/// Distinct (name, address) pairs whose failures are counted at once.
const MAX_TRACKED_FAILURES: usize = 100_000;
/// A pair's failures are forgotten this long (seconds) after its last one.
const FORGET_FAILURES_SECS: i64 = 24 * 3600;

/// The failures of one name from one address. Buckets are per pair, so failures from one
/// address (an attacker, or a colleague's typos behind the same NAT) never delay a login
/// from another address, nor one for another name.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    failures: u32,
    last: i64,
}

type BucketKey = (String, Option<IpAddr>);

/// Longer names than this share a bucket with their first this many bytes: no operator
/// name is that long, and memory must not grow with what a client types.
const MAX_NAME_KEY: usize = 128;

fn bucket_key(name: &str, ip: Option<IpAddr>) -> BucketKey {
    let mut end = name.len().min(MAX_NAME_KEY);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    (name[..end].to_owned(), ip)
}

/// Sessions and failed-login counters.
#[derive(Debug)]
pub(crate) struct Auth {
    pub config: DashboardConfig,
    sessions: Mutex<HashMap<String, WebSession>>,
    failures: Mutex<HashMap<BucketKey, Bucket>>,
}

impl Auth {
    pub fn new(config: DashboardConfig) -> Self {
        Auth {
            config,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.config.secure_cookies {
            "__Host-signoff_session"
        } else {
            "signoff_session"
        }
    }

    /// The login form's double-submit cookie's name.
    pub fn login_cookie_name(&self) -> &'static str {
        if self.config.secure_cookies {
            "__Host-signoff_login"
        } else {
            "signoff_login"
        }
    }

    /// `Set-Cookie` value for `name=value` with the dashboard's attributes.
    pub fn cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        let secure = if self.config.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
    }

    /// Starts a session for `operator`; returns its id (the cookie value).
    pub fn create_session(&self, operator: &str, now: i64) -> String {
        let id = random_token();
        let session = WebSession {
            operator: operator.to_owned(),
            csrf: random_token(),
            created_at: now,
            last_seen: now,
        };
        let mut sessions = lock(&self.sessions);
        self.expire(&mut sessions, now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session);
        id
    }

    /// The live session the request's cookie names, touched; `None` if there is none or
    /// it expired.
    pub fn session(&self, headers: &HeaderMap, now: i64) -> Option<(String, WebSession)> {
        let id = cookie_value(headers, self.cookie_name())?;
        let mut sessions = lock(&self.sessions);
        let session = sessions.get_mut(id)?;
        if self.expired(session, now) {
            sessions.remove(id);
            return None;
        }
        session.last_seen = now;
        Some((id.to_owned(), session.clone()))
    }

    /// Whether session `id` is still live (without touching it).
    pub fn is_live(&self, id: &str, now: i64) -> bool {
        lock(&self.sessions)
            .get(id)
            .is_some_and(|s| !self.expired(s, now))
    }

    /// Ends session `id`.
    pub fn end_session(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    fn expired(&self, s: &WebSession, now: i64) -> bool {
        now - s.last_seen >= self.config.session_idle_secs
            || now - s.created_at >= self.config.session_max_secs
    }

    fn expire(&self, sessions: &mut HashMap<String, WebSession>, now: i64) {
        sessions.retain(|_, s| !self.expired(s, now));
    }

    /// `None` when a login for `name` from `ip` may be tried now; else how many seconds
    /// to wait. A pair with no recent failures is never delayed.
    pub fn login_delay(&self, ip: Option<IpAddr>, name: &str, now: i64) -> Option<i64> {
        let failures = lock(&self.failures);
        let bucket = failures.get(&bucket_key(name, ip))?;
        if now - bucket.last >= FORGET_FAILURES_SECS {
            return None;
        }
        let until = bucket.last + self.delay_after(bucket.failures);
        (now < until).then_some(until - now)
    }

    /// The wait after `failures` failures.
    fn delay_after(&self, failures: u32) -> i64 {
        let over = failures.saturating_sub(self.config.login_free_failures);
        if over == 0 {
            return 0;
        }
        1i64.checked_shl((over - 1).min(40))
            .unwrap_or(i64::MAX)
            .min(self.config.login_max_delay_secs)
    }

    /// Counts a failed login.
    pub fn login_failed(&self, ip: Option<IpAddr>, name: &str, now: i64) {
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_TRACKED_FAILURES {
            failures.retain(|_, b| now - b.last < FORGET_FAILURES_SECS);
        }
        if failures.len() >= MAX_TRACKED_FAILURES {
            // Still full: forget the pair that failed longest ago rather than grow.
            if let Some(oldest) = failures
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| k.clone())
            {
                failures.remove(&oldest);
            }
        }
        let bucket = failures.entry(bucket_key(name, ip)).or_insert(Bucket {
            failures: 0,
            last: now,
        });
        if now - bucket.last >= FORGET_FAILURES_SECS {
            bucket.failures = 0;
        }
        bucket.failures = bucket.failures.saturating_add(1);
        bucket.last = now;
    }

    /// A login succeeded: the pair starts afresh.
    pub fn login_succeeded(&self, ip: Option<IpAddr>, name: &str) {
        lock(&self.failures).remove(&bucket_key(name, ip));
    }
}

/// A poisoned lock only means another request panicked mid-update of a map that stays
/// consistent; keep serving.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// 256 random bits, URL-safe base64.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name` in the request, if present.
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares secrets in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `role` may do what needs `needed`.
pub(crate) fn allows(role: Role, needed: Role) -> bool {
    role >= needed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(DashboardConfig::default())
    }

    fn with_cookie(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            format!("other=1; {name}={value}").parse().expect("header"),
        );
        h
    }

    #[test]
    fn a_session_expires_when_idle_and_at_its_maximum_age() {
        let a = auth();
        let id = a.create_session("alice", 1000);
        let h = with_cookie(a.cookie_name(), &id);
        assert!(a.session(&h, 1000 + 29 * 60).is_some());
        // Touched just now: idle time starts again.
        assert!(a.session(&h, 1000 + 58 * 60).is_some());
        assert!(a.session(&h, 1000 + 58 * 60 + 30 * 60).is_none());

        let id = a.create_session("alice", 0);
        let h = with_cookie(a.cookie_name(), &id);
        let mut t = 0;
        while t < 12 * 3600 - 60 {
            t += 20 * 60;
            let live = a.session(&h, t).is_some();
            assert_eq!(live, t < 12 * 3600, "at {t}");
        }
    }

    #[test]
    fn an_unknown_or_ended_session_is_none() {
        let a = auth();
        assert!(
            a.session(&with_cookie(a.cookie_name(), "forged"), 0)
                .is_none()
        );
        let id = a.create_session("alice", 0);
        a.end_session(&id);
        assert!(a.session(&with_cookie(a.cookie_name(), &id), 0).is_none());
    }

    #[test]
    fn failures_delay_only_their_own_name_and_address() {
        let a = auth();
        let attacker: IpAddr = [203, 0, 113, 9].into();
        let colleague: IpAddr = [198, 51, 100, 7].into();
        for t in 0..50 {
            a.login_failed(Some(attacker), "alice", t);
        }
        assert!(a.login_delay(Some(attacker), "alice", 50).is_some());
        // Alice from her own address, and anyone else from the attacker's, are not held up.
        assert_eq!(a.login_delay(Some(colleague), "alice", 50), None);
        assert_eq!(a.login_delay(Some(attacker), "bob", 50), None);
    }

    #[test]
    fn delays_grow_and_are_capped_never_a_lockout() {
        let a = auth();
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..3 {
            a.login_failed(Some(ip), "alice", 0);
            assert_eq!(a.login_delay(Some(ip), "alice", 0), None, "free failures");
        }
        let mut delays = Vec::new();
        for _ in 0..12 {
            a.login_failed(Some(ip), "alice", 0);
            delays.push(a.login_delay(Some(ip), "alice", 0).unwrap_or(0));
        }
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300],
            "doubling up to five minutes"
        );
        // Once the wait has passed, a try is allowed again.
        assert_eq!(a.login_delay(Some(ip), "alice", 300), None);
        a.login_succeeded(Some(ip), "alice");
        a.login_failed(Some(ip), "alice", 301);
        assert_eq!(
            a.login_delay(Some(ip), "alice", 301),
            None,
            "a success resets"
        );
    }

    #[test]
    fn cookies_carry_the_attributes() {
        let a = auth();
        let c = a.cookie(a.cookie_name(), "v", 60);
        assert_eq!(
            c,
            "signoff_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        let tls = Auth::new(DashboardConfig {
            secure_cookies: true,
            ..Default::default()
        });
        let c = tls.cookie(tls.cookie_name(), "v", 60);
        assert!(c.starts_with("__Host-signoff_session=v;"), "{c}");
        assert!(c.ends_with("; Secure"), "{c}");
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
