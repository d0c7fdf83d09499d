//! Who is logged in: server-side web sessions behind an HttpOnly, SameSite=Strict cookie
//! (Secure, with the `__Host-` prefix, when served over TLS), a CSRF token per session,
//! and a limit on failed logins per client address and per operator name.
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
    /// Failed logins allowed per client address, and per name, within the window.
    pub login_failures_allowed: u32,
    /// The window for counting failed logins (seconds).
    pub login_window_secs: i64,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            secure_cookies: false,
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 3600,
            login_failures_allowed: 5,
            login_window_secs: 5 * 60,
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
/// Distinct addresses and names whose failures are counted at once.
const MAX_TRACKED_FAILURES: usize = 100_000;

/// Sessions and failed-login counters.
#[derive(Debug)]
pub(crate) struct Auth {
    pub config: DashboardConfig,
    sessions: Mutex<HashMap<String, WebSession>>,
    failures: Mutex<HashMap<String, (i64, u32)>>,
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

    /// Whether a login for `name` from `ip` may be tried now.
    pub fn login_allowed(&self, ip: Option<IpAddr>, name: &str, now: i64) -> bool {
        let failures = lock(&self.failures);
        limiter_keys(ip, name)
            .iter()
            .all(|k| match failures.get(k) {
                Some((start, n)) if now - start < self.config.login_window_secs => {
                    *n < self.config.login_failures_allowed
                }
                _ => true,
            })
    }

    /// Counts a failed login.
    pub fn login_failed(&self, ip: Option<IpAddr>, name: &str, now: i64) {
        let window = self.config.login_window_secs;
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_TRACKED_FAILURES {
            failures.retain(|_, (start, _)| now - *start < window);
        }
        for key in limiter_keys(ip, name) {
            let entry = failures.entry(key).or_insert((now, 0));
            if now - entry.0 >= window {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        }
    }
}

fn limiter_keys(ip: Option<IpAddr>, name: &str) -> Vec<String> {
    let mut keys = vec![format!("name:{name}")];
    if let Some(ip) = ip {
        keys.push(format!("ip:{ip}"));
    }
    keys
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
    fn failed_logins_are_limited_per_name_and_per_address() {
        let a = auth();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        for _ in 0..5 {
            assert!(a.login_allowed(Some(ip), "alice", 0));
            a.login_failed(Some(ip), "alice", 0);
        }
        assert!(!a.login_allowed(Some(ip), "alice", 10));
        // The same name from elsewhere, and another name from the same address.
        assert!(!a.login_allowed(Some(other), "alice", 10));
        assert!(!a.login_allowed(Some(ip), "bob", 10));
        assert!(a.login_allowed(Some(other), "bob", 10));
        // The window passes.
        assert!(a.login_allowed(Some(ip), "alice", 5 * 60));
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
