//! Who is logged in: server-side web sessions behind an HttpOnly, SameSite=Strict cookie
//! (Secure, with the `__Host-` prefix, when served over TLS), a CSRF token per session,
//! and growing delays after failed logins, per operator name and client address.
//!
//! Sessions and failure counts are kept by the [`Backend`] (the control plane's database),
//! not in this process: several servers behind a load balancer without stickiness honour
//! the same logins, logouts and delays. Each request re-reads the operator, so a disabled
//! operator or a changed role takes effect at once. Where the backend fails, the answer is
//! the safe one: no session, no login try.

use std::net::IpAddr;

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

use crate::backend::{Backend, BackendResult, Role, SessionLifetime, WebSession};
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

/// A pair's failures are forgotten this long (seconds) after its last one.
const FORGET_FAILURES_SECS: i64 = 24 * 3600;

/// Longer names than this share a bucket with their first this many bytes: no operator
/// name is that long, and what is stored must not grow with what a client types.
const MAX_NAME_KEY: usize = 128;

/// The name under which failures are counted. Buckets are per (name, address), so
/// failures from one address (an attacker, or a colleague's typos behind the same NAT)
/// never delay a login from another address, nor one for another name.
fn bucket_name(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_KEY);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The session and login rules, over the sessions and failure counts the backend keeps.
#[derive(Debug)]
pub(crate) struct Auth {
    pub config: DashboardConfig,
}

impl Auth {
    pub fn new(config: DashboardConfig) -> Self {
        Auth { config }
    }

    fn lifetime(&self) -> SessionLifetime {
        SessionLifetime {
            idle_secs: self.config.session_idle_secs,
            max_secs: self.config.session_max_secs,
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
    pub async fn create_session<B: Backend>(
        &self,
        backend: &B,
        operator: &str,
        now: i64,
    ) -> BackendResult<String> {
        let id = random_token();
        let session = WebSession {
            operator: operator.to_owned(),
            csrf: random_token(),
            created_at: now,
            last_seen: now,
        };
        backend
            .create_web_session(&id, &session, self.lifetime())
            .await?;
        Ok(id)
    }

    /// The live session the request's cookie names, touched; `None` if there is none or
    /// it expired. A backend that fails to say is "not logged in" (logged): fail closed.
    pub async fn session<B: Backend>(
        &self,
        backend: &B,
        headers: &HeaderMap,
        now: i64,
    ) -> Option<(String, WebSession)> {
        let id = cookie_value(headers, self.cookie_name())?;
        match backend.web_session(id, now, self.lifetime()).await {
            Ok(session) => session.map(|s| (id.to_owned(), s)),
            Err(e) => {
                tracing::warn!("dashboard: cannot read the web session, treated as none: {e}");
                None
            }
        }
    }

    /// Whether session `id` is still live (without touching it); `false` when the
    /// backend fails to say (logged).
    pub async fn is_live<B: Backend>(&self, backend: &B, id: &str, now: i64) -> bool {
        backend
            .web_session_is_live(id, now, self.lifetime())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("dashboard: cannot read the web session, treated as ended: {e}");
                false
            })
    }

    /// Ends session `id` on every server.
    pub async fn end_session<B: Backend>(&self, backend: &B, id: &str) -> BackendResult<()> {
        backend.end_web_session(id).await
    }

    /// `None` when a login for `name` from `ip` may be tried now; else how many seconds
    /// to wait. A pair with no recent failures is never delayed. An error when the
    /// backend cannot say: the caller refuses the try.
    pub async fn login_delay<B: Backend>(
        &self,
        backend: &B,
        ip: Option<IpAddr>,
        name: &str,
        now: i64,
    ) -> BackendResult<Option<i64>> {
        let Some(bucket) = backend.login_failures(bucket_name(name), ip).await? else {
            return Ok(None);
        };
        if now - bucket.last >= FORGET_FAILURES_SECS {
            return Ok(None);
        }
        let until = bucket
            .last
            .saturating_add(self.delay_after(bucket.failures));
        Ok((now < until).then_some(until - now))
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

    /// Counts a login try of `name` from `ip` as failed, on every server.
    pub async fn login_failed<B: Backend>(
        &self,
        backend: &B,
        ip: Option<IpAddr>,
        name: &str,
        now: i64,
    ) -> BackendResult<()> {
        backend
            .record_login_failure(
                bucket_name(name),
                ip,
                now,
                now.saturating_sub(FORGET_FAILURES_SECS),
            )
            .await?;
        Ok(())
    }

    /// A login succeeded: the pair starts afresh.
    pub async fn login_succeeded<B: Backend>(
        &self,
        backend: &B,
        ip: Option<IpAddr>,
        name: &str,
    ) -> BackendResult<()> {
        backend.clear_login_failures(bucket_name(name), ip).await
    }
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
    use crate::tests::Fake;

    fn auth() -> (Auth, Fake) {
        (Auth::new(DashboardConfig::default()), Fake::new())
    }

    fn with_cookie(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            format!("other=1; {name}={value}").parse().expect("header"),
        );
        h
    }

    #[tokio::test]
    async fn a_session_expires_when_idle_and_at_its_maximum_age() {
        let (a, b) = auth();
        let id = a.create_session(&b, "alice", 1000).await.unwrap();
        let h = with_cookie(a.cookie_name(), &id);
        assert!(a.session(&b, &h, 1000 + 29 * 60).await.is_some());
        // Touched just now: idle time starts again.
        assert!(a.session(&b, &h, 1000 + 58 * 60).await.is_some());
        assert!(a.is_live(&b, &id, 1000 + 58 * 60 + 30 * 60 - 1).await);
        assert!(!a.is_live(&b, &id, 1000 + 58 * 60 + 30 * 60).await);
        assert!(a.session(&b, &h, 1000 + 58 * 60 + 30 * 60).await.is_none());

        let id = a.create_session(&b, "alice", 0).await.unwrap();
        let h = with_cookie(a.cookie_name(), &id);
        let mut t = 0;
        while t < 12 * 3600 - 60 {
            t += 20 * 60;
            let live = a.session(&b, &h, t).await.is_some();
            assert_eq!(live, t < 12 * 3600, "at {t}");
        }
    }

    #[tokio::test]
    async fn an_unknown_or_ended_session_is_none() {
        let (a, b) = auth();
        assert!(
            a.session(&b, &with_cookie(a.cookie_name(), "forged"), 0)
                .await
                .is_none()
        );
        let id = a.create_session(&b, "alice", 0).await.unwrap();
        a.end_session(&b, &id).await.unwrap();
        assert!(
            a.session(&b, &with_cookie(a.cookie_name(), &id), 0)
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_backend_that_fails_means_no_session_and_no_login_try() {
        let (a, b) = auth();
        let id = a.create_session(&b, "alice", 0).await.unwrap();
        let h = with_cookie(a.cookie_name(), &id);
        assert!(a.session(&b, &h, 1).await.is_some());
        b.fail_store(true);
        assert!(a.session(&b, &h, 2).await.is_none(), "fail closed");
        assert!(!a.is_live(&b, &id, 2).await, "fail closed");
        assert!(a.login_delay(&b, None, "alice", 2).await.is_err());
        assert!(a.login_failed(&b, None, "alice", 2).await.is_err());
    }

    #[tokio::test]
    async fn failures_delay_only_their_own_name_and_address() {
        let (a, b) = auth();
        let attacker: IpAddr = [203, 0, 113, 9].into();
        let colleague: IpAddr = [198, 51, 100, 7].into();
        for t in 0..50 {
            a.login_failed(&b, Some(attacker), "alice", t)
                .await
                .unwrap();
        }
        let delay = |ip, name| a.login_delay(&b, Some(ip), name, 50);
        assert!(delay(attacker, "alice").await.unwrap().is_some());
        // Alice from her own address, and anyone else from the attacker's, are not held up.
        assert_eq!(delay(colleague, "alice").await.unwrap(), None);
        assert_eq!(delay(attacker, "bob").await.unwrap(), None);
    }

    #[tokio::test]
    async fn delays_grow_and_are_capped_never_a_lockout() {
        let (a, b) = auth();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let delay = |now| a.login_delay(&b, Some(ip), "alice", now);
        for _ in 0..3 {
            a.login_failed(&b, Some(ip), "alice", 0).await.unwrap();
            assert_eq!(delay(0).await.unwrap(), None, "free failures");
        }
        let mut delays = Vec::new();
        for _ in 0..12 {
            a.login_failed(&b, Some(ip), "alice", 0).await.unwrap();
            delays.push(delay(0).await.unwrap().unwrap_or(0));
        }
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300],
            "doubling up to five minutes"
        );
        // Once the wait has passed, a try is allowed again.
        assert_eq!(delay(300).await.unwrap(), None);
        a.login_succeeded(&b, Some(ip), "alice").await.unwrap();
        a.login_failed(&b, Some(ip), "alice", 301).await.unwrap();
        assert_eq!(delay(301).await.unwrap(), None, "a success resets");
        // A day after the last failure, the pair is forgotten.
        for _ in 0..10 {
            a.login_failed(&b, Some(ip), "alice", 400).await.unwrap();
        }
        assert!(delay(401).await.unwrap().is_some());
        assert_eq!(delay(400 + FORGET_FAILURES_SECS).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_long_name_is_counted_under_its_first_bytes() {
        let (a, b) = auth();
        let long = "é".repeat(200);
        for _ in 0..10 {
            a.login_failed(&b, None, &long, 0).await.unwrap();
        }
        let prefix = &long[..MAX_NAME_KEY];
        assert!(a.login_delay(&b, None, prefix, 1).await.unwrap().is_some());
        assert!(
            b.stored_failure_names()
                .iter()
                .all(|n| n.len() <= MAX_NAME_KEY)
        );
    }

    #[test]
    fn cookies_carry_the_attributes() {
        let (a, _) = auth();
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
