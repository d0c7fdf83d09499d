//! What every page shares: the layout's fields (who is logged in, what they may do, the
//! CSRF token for forms) and the formatting of times and URLs.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};

use crate::Authed;
use crate::backend::Role;
use crate::error::PageError;

/// The navigation entries: (key, path, label).
pub(crate) const NAV: [(&str, &str, &str); 9] = [
    ("overview", "/", "Overview"),
    ("sessions", "/sessions", "Sessions"),
    ("history", "/sessions/history", "History"),
    ("hosts", "/hosts", "Hosts"),
    ("people", "/people", "People"),
    ("signoffs", "/signoffs", "Sign-offs"),
    ("approvals", "/approvals", "Approvals"),
    ("audit", "/audit", "Audit"),
    ("operators", "/operators", "Operators"),
];

/// The layout's fields.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The page's title (also its `<h1>`).
    pub title: String,
    /// Which nav entry is current.
    pub current: &'static str,
    /// The operator's name; empty when nobody is logged in.
    pub operator: String,
    /// Their role, as text.
    pub role: String,
    /// May kill sessions and sign people off.
    pub can_act: bool,
    /// May re-enable people and manage operators.
    pub is_admin: bool,
    /// The session's CSRF token, for forms.
    pub csrf: String,
}

impl Layout {
    pub fn new(authed: &Authed, current: &'static str, title: impl Into<String>) -> Self {
        Layout {
            title: title.into(),
            current,
            operator: authed.operator.name.clone(),
            role: authed.operator.role.to_string(),
            can_act: authed.operator.role >= Role::Operator,
            is_admin: authed.operator.role >= Role::Admin,
            csrf: authed.csrf.clone(),
        }
    }

    /// For pages seen before logging in (login, errors).
    pub fn anonymous(title: impl Into<String>) -> Self {
        Layout {
            title: title.into(),
            current: "",
            operator: String::new(),
            role: String::new(),
            can_act: false,
            is_admin: false,
            csrf: String::new(),
        }
    }

    /// Nav entries this operator sees: (path, label, current).
    pub fn nav(&self) -> Vec<(&'static str, &'static str, bool)> {
        NAV.iter()
            .filter(|(key, ..)| *key != "operators" || self.is_admin)
            .map(|(key, path, label)| (*path, *label, *key == self.current))
            .collect()
    }
}

/// Renders a template into a response.
pub(crate) fn render(t: &impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render()?).into_response())
}

/// `2025-06-01 12:34:56 UTC`.
pub(crate) fn time_text(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// [`time_text`], or `—` for none.
pub(crate) fn opt_time(unix: Option<i64>) -> String {
    unix.map(time_text).unwrap_or_else(|| "—".to_owned())
}

/// How long ago, roughly: `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
pub(crate) fn ago(now: i64, then: i64) -> String {
    let d = (now - then).max(0);
    match d {
        0..60 => format!("{d} s ago"),
        60..3600 => format!("{} min ago", d / 60),
        3600..86_400 => format!("{} h ago", d / 3600),
        _ => format!("{} d ago", d / 86_400),
    }
}

/// Percent-encodes `s` for one path segment (everything but unreserved characters).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes `s` for a query value.
pub(crate) fn query_value(s: &str) -> String {
    seg(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(time_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(opt_time(None), "—");
        assert_eq!(ago(100, 40), "1 min ago");
        assert_eq!(ago(7200, 0), "2 h ago");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("host-1.example"), "host-1.example");
        assert_eq!(seg("a/b c<"), "a%2Fb%20c%3C");
        assert_eq!(seg("é"), "%C3%A9");
    }
}
