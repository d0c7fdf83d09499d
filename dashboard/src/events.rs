//! `GET /events`: server-sent events that tell open pages what changed (`sessions`,
//! `signoffs`, `fleet`), so `live.js` re-renders them. Events carry no data beyond their
//! name: the page fetches itself again, through the same access checks as any request.
//! The stream ends when the web session does (logout, expiry, a disabled operator).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::backend::Backend;
use crate::error::PageError;
use crate::{App, authenticate};

/// How often an idle stream checks that its web session is still live.
const SESSION_CHECK: Duration = Duration::from_secs(15);

/// `GET /events`: 401 without a live session (an `EventSource` cannot follow a redirect
/// to a login form anyway).
pub(crate) async fn events_handler<B: Backend>(
    State(app): State<App<B>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let Some(authed) = authenticate(&app, &headers).await? else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first\n").into_response());
    };
    let mut changes = app.backend.changes();
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(16);
    tokio::spawn(async move {
        // First event at once: the page refreshes and so catches anything that changed
        // between its rendering and this subscription.
        let hello = Event::default().event("ready").data("ready");
        if tx.send(Ok(hello)).await.is_err() {
            return;
        }
        let mut check = tokio::time::interval(SESSION_CHECK);
        loop {
            tokio::select! {
                change = changes.recv() => {
                    let Some(change) = change else { return };
                    let name = change.event_name();
                    if tx.send(Ok(Event::default().event(name).data(name))).await.is_err() {
                        return;
                    }
                }
                _ = check.tick() => {
                    let live = app.auth.is_live(&app.backend, &authed.session_id, app.backend.now()).await
                        && matches!(app.backend.operator(&authed.operator.name).await, Ok(Some(_)));
                    if !live {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}
