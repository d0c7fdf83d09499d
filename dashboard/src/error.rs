//! Why a page or action failed, rendered as a page that says what to do next.

use askama::Template;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::backend::{Backend, BackendError};
use crate::layout::{Layout, query_value};
use crate::{App, authenticate};

/// A failed request, as the person sees it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PageError {
    /// No live session: log in first (then come back to `next`).
    #[error("log in first")]
    LoginRequired {
        /// Where to go after logging in.
        next: String,
    },
    /// The operator's role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// A form without this session's CSRF token: stale, or made by another site.
    #[error(
        "this form is out of date or did not come from this dashboard; reload the page and try again"
    )]
    BadCsrf,
    /// Failed logins for this name from this address: the next try must wait.
    #[error("too many failed logins for this name from your address; try again in {retry_after} s")]
    TooManyLogins {
        /// Seconds until a try is allowed.
        retry_after: i64,
    },
    /// Nothing here.
    #[error("{0}")]
    NotFound(String),
    /// The input is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The change conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// Something failed on the server.
    #[error("the control plane failed: {0}; see its log")]
    Internal(String),
}

impl From<BackendError> for PageError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotFound(m) => PageError::NotFound(m),
            BackendError::Invalid(m) => PageError::Invalid(m),
            BackendError::Conflict(m) => PageError::Conflict(m),
            BackendError::Forbidden(m) => PageError::Forbidden(m),
            BackendError::Internal(m) => PageError::Internal(m),
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError::Internal(format!("rendering the page: {e}"))
    }
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::LoginRequired { .. } => StatusCode::SEE_OTHER,
            PageError::Forbidden(_) | PageError::BadCsrf => StatusCode::FORBIDDEN,
            PageError::TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Invalid(_) => StatusCode::BAD_REQUEST,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            PageError::LoginRequired { .. } => "Log in",
            PageError::Forbidden(_) => "Not allowed",
            PageError::BadCsrf => "Form refused",
            PageError::TooManyLogins { .. } => "Too many attempts",
            PageError::NotFound(_) => "Not found",
            PageError::Invalid(_) => "Not accepted",
            PageError::Conflict(_) => "Conflict",
            PageError::Internal(_) => "Server error",
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    message: String,
}

/// An error page's title and message, kept on its response so that [`keep_layout`] can
/// render it again inside the logged-in operator's layout.
#[derive(Debug, Clone)]
struct ShownError {
    title: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let PageError::LoginRequired { next } = &self {
            // Only same-site paths survive as `next` (see `safe_next`).
            return Redirect::to(&format!("/login?next={}", query_value(next))).into_response();
        }
        if let PageError::Internal(m) = &self {
            tracing::warn!("dashboard: {m}");
        }
        let status = self.status();
        let shown = ShownError {
            title: self.title(),
            message: self.to_string(),
        };
        let page = ErrorPage {
            layout: Layout::anonymous(shown.title),
            message: shown.message.clone(),
        };
        let mut res = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                self.to_string(),
            )
                .into_response(),
        };
        if let PageError::TooManyLogins { retry_after } = self
            && let Ok(v) = header::HeaderValue::from_str(&retry_after.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res.extensions_mut().insert(shown);
        res
    }
}

/// Middleware: an error page shown to a logged-in operator keeps the navigation and the
/// logout form. [`PageError`] renders without the request (so without the operator); here,
/// with the request's session at hand, its page is rendered again in the operator's layout.
/// Without a live session the anonymous page stays.
pub(crate) async fn keep_layout<B: Backend>(
    State(app): State<App<B>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers().clone();
    let mut res = next.run(req).await;
    let Some(shown) = res.extensions_mut().remove::<ShownError>() else {
        return res;
    };
    // A failure to read the operator leaves the anonymous page: it already says what failed.
    let Ok(Some(authed)) = authenticate(&app, &headers).await else {
        return res;
    };
    let page = ErrorPage {
        layout: Layout::new(&authed, "", shown.title),
        message: shown.message,
    };
    if let Ok(html) = page.render() {
        res.headers_mut().remove(header::CONTENT_LENGTH);
        *res.body_mut() = Body::from(html);
    }
    res
}

/// `next` if it is a path on this site, else `/` (no open redirect to another origin).
pub(crate) fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control());
    if local { next } else { "/" }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/sessions?user=a"), "/sessions?user=a");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next(""), "/");
    }
}
