//! The session history search (`GET /sessions/history`): sessions live and ended, by
//! person, host, account, source address and start time, newest first, a page at a time
//! through the control plane's cursor. A plain GET form: works without JavaScript, and
//! every page (an "Older →" link) is a URL that can be shared.

use std::net::IpAddr;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::backend::{Backend, HistoryFilter, Session};
use crate::error::PageError;
use crate::layout::{Layout, opt_time, query_value, render, seg, time_text};
use crate::pages::{LIST_ROWS, SessionRow};
use crate::{App, Authed};

/// Sessions a page shows when `?limit=` does not say.
pub(crate) const HISTORY_PAGE: u32 = 50;

/// `?user=&host=&account=&source=&from=&to=&after=&limit=`, as typed: empty means any.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct HistoryQuery {
    user: Option<String>,
    host: Option<String>,
    account: Option<String>,
    source: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// The query's values, trimmed; empty for none.
#[derive(Debug, Default)]
struct Typed {
    user: String,
    host: String,
    account: String,
    source: String,
    from: String,
    to: String,
    after: String,
    limit: String,
}

impl HistoryQuery {
    fn typed(self) -> Typed {
        let t = |v: Option<String>| v.map(|s| s.trim().to_owned()).unwrap_or_default();
        Typed {
            user: t(self.user),
            host: t(self.host),
            account: t(self.account),
            source: t(self.source),
            from: t(self.from),
            to: t(self.to),
            after: t(self.after),
            limit: t(self.limit),
        }
    }
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl Typed {
    /// The filter the backend searches with, and the page size; a value that is not
    /// acceptable is a 400 saying which field and what to write instead.
    fn filter(&self) -> Result<(HistoryFilter, u32), PageError> {
        let source = match self.source.as_str() {
            "" => None,
            s => Some(s.parse::<IpAddr>().map_err(|_| {
                PageError::Invalid(format!(
                    "source address: {s:?} is not an IP address (like 192.0.2.7 or 2001:db8::7)"
                ))
            })?),
        };
        let started_after = time_input("from", &self.from)?;
        let started_before = time_input("to", &self.to)?;
        if let (Some(from), Some(to)) = (started_after, started_before)
            && from >= to
        {
            return Err(PageError::Invalid(format!(
                "to ({}) must be later than from ({}): no session starts in that range",
                time_text(to),
                time_text(from)
            )));
        }
        let limit = match self.limit.as_str() {
            "" => HISTORY_PAGE,
            l => l
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=LIST_ROWS as u32).contains(n))
                .ok_or_else(|| {
                    PageError::Invalid(format!(
                        "limit: {l:?} is not a number of rows from 1 to {LIST_ROWS}"
                    ))
                })?,
        };
        Ok((
            HistoryFilter {
                user: some(&self.user),
                host: some(&self.host),
                account: some(&self.account),
                source,
                started_after,
                started_before,
            },
            limit,
        ))
    }

    /// The search's URL, on the page after `after` if given.
    fn url(&self, after: Option<&str>) -> String {
        let mut query: Vec<String> = [
            ("user", &self.user),
            ("host", &self.host),
            ("account", &self.account),
            ("source", &self.source),
            ("from", &self.from),
            ("to", &self.to),
            ("limit", &self.limit),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_value(v)))
        .collect();
        if let Some(after) = after {
            query.push(format!("after={}", query_value(after)));
        }
        if query.is_empty() {
            "/sessions/history".to_owned()
        } else {
            format!("/sessions/history?{}", query.join("&"))
        }
    }
}

/// A date-time input's value (`2026-12-05T14:30`, seconds optional, a space for the `T`
/// too), read as UTC like every time the dashboard shows; `None` when empty.
pub(crate) fn time_input(field: &str, value: &str) -> Result<Option<i64>, PageError> {
    use time::macros::format_description;
    if value.is_empty() {
        return Ok(None);
    }
    let normalized = value.replacen(' ', "T", 1);
    let parsed = time::PrimitiveDateTime::parse(
        &normalized,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .or_else(|_| {
        time::PrimitiveDateTime::parse(
            &normalized,
            format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        )
    })
    .map_err(|_| {
        PageError::Invalid(format!(
            "{field}: {value:?} is not a date and time; write it as YYYY-MM-DDTHH:MM in UTC, \
             like 2026-12-05T14:30"
        ))
    })?;
    let unix = parsed.assume_utc().unix_timestamp();
    if unix < 0 {
        return Err(PageError::Invalid(format!(
            "{field}: {value:?} is before 1970; no session is that old"
        )));
    }
    Ok(Some(unix))
}

/// A session as a row of the history table: the row every session table shows, with when
/// it ended and its state's badge.
#[derive(Debug, Clone)]
pub(crate) struct HistoryRow {
    pub session: SessionRow,
    /// When it ended, or `—` while it is open.
    pub ended: String,
    /// The badge's class for the state.
    pub state_class: &'static str,
    /// The row's DOM id (`history-…`: the live tables' `session-…` ids stay unique).
    pub dom_id: String,
}

impl HistoryRow {
    fn new(s: &Session, now: i64) -> Self {
        HistoryRow {
            session: SessionRow::new(s, now),
            ended: opt_time(s.ended_at),
            state_class: match s.state.as_str() {
                "live" => "online",
                "ended" => "ended",
                _ => "warn",
            },
            dom_id: format!("history-{}-{}", seg(&s.host_id), seg(&s.id)).replace('%', "_"),
        }
    }
}

#[derive(Template)]
#[template(path = "history.html")]
pub(crate) struct HistoryPageView {
    pub layout: Layout,
    pub user: String,
    pub host: String,
    pub account: String,
    pub source: String,
    pub from: String,
    pub to: String,
    pub limit: String,
    pub sessions: Vec<HistoryRow>,
    /// The next, older, page; empty on the last.
    pub older_url: String,
    /// The first page of the same search; empty on the first.
    pub newest_url: String,
}

/// `GET /sessions/history`: any operator may read it.
pub(crate) async fn history_handler<B: Backend>(
    State(app): State<App<B>>,
    authed: Authed,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, PageError> {
    let typed = q.typed();
    let (filter, limit) = typed.filter()?;
    let after = some(&typed.after);
    let page = app
        .backend
        .session_history(&filter, after.as_deref(), limit)
        .await?;
    let now = app.backend.now();
    render(&HistoryPageView {
        layout: Layout::new(&authed, "history", "Session history"),
        sessions: page
            .sessions
            .iter()
            .map(|s| HistoryRow::new(s, now))
            .collect(),
        older_url: page
            .next
            .as_deref()
            .map(|next| typed.url(Some(next)))
            .unwrap_or_default(),
        newest_url: if after.is_some() {
            typed.url(None)
        } else {
            String::new()
        },
        user: typed.user,
        host: typed.host,
        account: typed.account,
        source: typed.source,
        from: typed.from,
        to: typed.to,
        limit: typed.limit,
    })
}

#[cfg(test)]
mod tests {
    use super::time_input;

    #[test]
    fn time_inputs_read_as_utc() {
        let at = |v: &str| time_input("from", v).unwrap();
        assert_eq!(at("2027-01-15T08:00"), Some(1_800_000_000));
        assert_eq!(at("2027-01-15T08:00:30"), Some(1_800_000_030));
        assert_eq!(at("2027-01-15 08:00"), Some(1_800_000_000));
        assert_eq!(at(""), None);
        for bad in ["yesterday", "2027-01-15", "2027-13-01T00:00", "1800000000"] {
            let err = time_input("from", bad).unwrap_err().to_string();
            assert!(
                err.starts_with("from: ") && err.contains("YYYY-MM-DDTHH:MM"),
                "{bad}: {err}"
            );
        }
        let err = time_input("to", "1969-12-31T23:59")
            .unwrap_err()
            .to_string();
        assert!(err.contains("before 1970"), "{err}");
    }
}
