//! `GET /api/v1/sessions/events`: the live feed of SSH sessions for the dashboard, as
//! Server-Sent Events (scope `read`).
//!
//! The stream opens with a `snapshot` event, `{"sessions": [...]}`: every session not ended,
//! as `GET /sessions` lists them. Then one event per change, in the order the control plane
//! recorded it, its data the change as JSON:
//!
//! - `started`: a session the table did not have (the whole session record);
//! - `updated`: a known session changed — live again after its agent reconnected, or its
//!   processes (the whole record);
//! - `ended`: `{"host_id", "id"}`;
//! - `host_unknown`: `{"host_id"}`, the host's agent disconnected, so its sessions are of
//!   unknown state until it is back.
//!
//! The feed is subscribed to before the snapshot is read, so no change falls between the
//! two (one may be in both, which applying it again makes no difference to). A client that
//! reads too slowly for the changes to wait for it is never left with a silent gap: it gets
//! `resync`, `{"sessions": [...], "missed": N}`, a fresh snapshot that replaces everything it
//! had. `?follow=false` ends the stream after the snapshot (for scripts, and for the
//! OpenAPI replay test).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::handlers::Query;
use super::{ApiError, AppState};
use crate::service::{Result as ServiceResult, Service, SessionEvent, SessionFilter};

/// Events queued for one client beyond what its connection holds; past this the producer
/// waits, and changes then queue in the service's broadcast channel until it overflows.
const QUEUE: usize = 16;

/// One event of the stream, for the OpenAPI document (axum's `Event` writes the stream):
/// its name and its data, JSON text.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct StreamEvent {
    event: StreamEventName,
    /// JSON: {sessions} for snapshot, a session for started and updated, {host_id, id}
    /// for ended, {host_id} for host_unknown, {sessions, missed} for resync.
    data: String,
}

/// The names of the stream's events.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum StreamEventName {
    Snapshot,
    Started,
    Updated,
    Ended,
    HostUnknown,
    Resync,
}

/// `?follow=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// `false`: the snapshot only.
    #[serde(default = "follow_by_default")]
    follow: bool,
}

fn follow_by_default() -> bool {
    true
}

/// The event of a change.
fn change_event(change: &SessionEvent) -> Event {
    let name = match change {
        SessionEvent::Started(_) => "started",
        SessionEvent::Updated(_) => "updated",
        SessionEvent::Ended { .. } => "ended",
        SessionEvent::HostUnknown { .. } => "host_unknown",
    };
    let data = match change {
        SessionEvent::Started(r) | SessionEvent::Updated(r) => json!(r),
        SessionEvent::Ended { host_id, id } => json!({"host_id": host_id, "id": id}),
        SessionEvent::HostUnknown { host_id } => json!({"host_id": host_id}),
    };
    Event::default().event(name).data(data.to_string())
}

/// A `snapshot` or `resync` event: every session not ended.
async fn list_event(service: &Service, name: &str, missed: Option<u64>) -> ServiceResult<Event> {
    let sessions = service.list_sessions(&SessionFilter::default()).await?;
    let mut data = json!({ "sessions": sessions });
    if let Some(missed) = missed {
        data["missed"] = json!(missed);
    }
    Ok(Event::default().event(name).data(data.to_string()))
}

/// Live feed of sessions as Server-Sent Events: `snapshot` {sessions} first, then `started` and `updated` (a session), `ended` {host_id, id}, `host_unknown` {host_id}; a client that falls behind gets `resync` {sessions, missed}
#[utoipa::path(
    get,
    path = "/api/v1/sessions/events",
    tag = "sessions",
    params(EventsQuery),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = StreamEvent),
    ),
)]
pub(crate) async fn session_events_handler(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let mut changes = s.service.watch_sessions();
    let first = list_event(&s.service, "snapshot", None).await?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(QUEUE);
    // The channel is empty: this cannot wait.
    let _ = tx.send(Ok(first)).await;
    if q.follow {
        let service = s.service.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    change = changes.recv() => match change {
                        Ok(change) => Some(change_event(&change)),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            // Ending the stream (the client reconnects) is better than
                            // going on with a client that does not know what it missed.
                            list_event(&service, "resync", Some(missed))
                                .await
                                .inspect_err(|e| tracing::error!(error = ?e, "cannot list sessions for a resync"))
                                .ok()
                        }
                        Err(broadcast::error::RecvError::Closed) => None,
                    },
                    () = tx.closed() => None,
                };
                let Some(event) = event else { return };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
    }
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use serde_json::Value;
    use signoff_proto::v1;
    use tokio_stream::StreamExt as _;
    use tower::ServiceExt as _;

    use crate::service::testing::service;
    use crate::service::{Actor, Scope};

    fn session(id: &str, port: u32) -> v1::Session {
        v1::Session {
            id: id.into(),
            account: "deploy".into(),
            key_id: "alice@corp".into(),
            serial: 7,
            source_address: "127.0.0.1".into(),
            source_port: port,
            started_at: 1_800_000_000,
            tty: "pts/3".into(),
            pids: vec![port],
            ..Default::default()
        }
    }

    /// Reads SSE events (name, JSON data) from a response body.
    struct Events {
        body: axum::body::BodyDataStream,
        buffer: String,
    }

    impl Events {
        async fn next(&mut self) -> Option<(String, Value)> {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut name = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            name = v.to_owned();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data.push_str(v);
                        }
                    }
                    if name.is_empty() {
                        continue; // a keep-alive comment
                    }
                    return Some((name, serde_json::from_str(&data).unwrap()));
                }
                let bytes = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                    .await
                    .expect("an event within 10 s")?
                    .unwrap();
                self.buffer.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
    }

    async fn open(app: &axum::Router, token: &str, query: &str) -> (StatusCode, Events) {
        let res = app
            .clone()
            .oneshot(
                Request::get(format!("/api/v1/sessions/events{query}"))
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        if status == StatusCode::OK {
            assert_eq!(
                res.headers()[header::CONTENT_TYPE],
                "text/event-stream",
                "Server-Sent Events"
            );
        }
        (
            status,
            Events {
                body: res.into_body().into_data_stream(),
                buffer: String::new(),
            },
        )
    }

    async fn token(svc: &crate::service::Service, scopes: &[Scope]) -> String {
        svc.create_token(&Actor::cli(), "t", scopes, None, "")
            .await
            .unwrap()
            .secret
    }

    #[tokio::test]
    async fn a_snapshot_then_each_change_as_it_is_recorded() {
        let (svc, _clock) = service().await;
        svc.session_started("web1", &session("10:1", 50001))
            .await
            .unwrap();
        let app = crate::api::router(svc.clone());
        let (status, mut events) = open(&app, &token(&svc, &[Scope::Read]).await, "").await;
        assert_eq!(status, StatusCode::OK);

        let (name, data) = events.next().await.unwrap();
        assert_eq!(name, "snapshot");
        let sessions = data["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0]["id"], "10:1");
        assert_eq!(
            sessions[0]["user"],
            Value::Null,
            "no person has that key ID yet"
        );

        svc.session_started("web1", &session("11:1", 50002))
            .await
            .unwrap();
        let (name, data) = events.next().await.unwrap();
        assert_eq!(name, "started");
        assert_eq!(data["host_id"], "web1");
        assert_eq!(data["id"], "11:1");
        assert_eq!(data["source_port"], 50002);
        assert_eq!(data["state"], "live");

        svc.session_ended("web1", "10:1", 1_800_000_100)
            .await
            .unwrap();
        assert_eq!(
            events.next().await.unwrap(),
            (
                "ended".into(),
                serde_json::json!({"host_id": "web1", "id": "10:1"})
            )
        );
        // The same end reported again (the agent's own report after a full list) is no
        // news.
        svc.session_ended("web1", "10:1", 1_800_000_100)
            .await
            .unwrap();

        let connection = svc.host_connected("web1");
        svc.host_disconnected(connection).await.unwrap();
        assert_eq!(
            events.next().await.unwrap(),
            (
                "host_unknown".into(),
                serde_json::json!({"host_id": "web1"})
            )
        );

        // The agent is back and lists what it has: the known session is live again, and
        // nothing else is news.
        svc.session_list("web1", &[session("11:1", 50002)])
            .await
            .unwrap();
        let (name, data) = events.next().await.unwrap();
        assert_eq!(name, "updated");
        assert_eq!(data["id"], "11:1");
        assert_eq!(data["state"], "live");
        svc.session_list("web1", &[session("11:1", 50002)])
            .await
            .unwrap();
        svc.session_started("web1", &session("12:1", 50003))
            .await
            .unwrap();
        let (name, data) = events.next().await.unwrap();
        assert_eq!(
            (name.as_str(), &data["id"]),
            ("started", &Value::from("12:1")),
            "a repeated full list made no event"
        );
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_a_resync_not_a_gap() {
        let (svc, _clock) = service().await;
        let app = crate::api::router(svc.clone());
        let (status, mut events) = open(&app, &token(&svc, &[Scope::Read]).await, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(events.next().await.unwrap().0, "snapshot");
        // The client reads nothing while more sessions start than the feed holds.
        let many: Vec<v1::Session> = (0..1100)
            .map(|i| session(&format!("{i}:1"), 40_000 + i))
            .collect();
        svc.session_list("web1", &many).await.unwrap();

        let mut seen = 0;
        loop {
            let (name, data) = events.next().await.unwrap();
            match name.as_str() {
                "started" => seen += 1,
                "resync" => {
                    assert!(data["missed"].as_u64().unwrap() > 0, "{data}");
                    assert_eq!(
                        data["sessions"].as_array().unwrap().len(),
                        1100,
                        "the resync carries every session"
                    );
                    break;
                }
                other => panic!("unexpected event {other}: {data}"),
            }
        }
        assert!(seen < 1100, "some events were missed: {seen}");
        // And the feed goes on after it.
        svc.session_ended("web1", "0:1", 1_800_000_100)
            .await
            .unwrap();
        loop {
            let (name, data) = events.next().await.unwrap();
            if name == "ended" {
                assert_eq!(data["id"], "0:1");
                break;
            }
            assert_eq!(name, "started", "only queued starts before the end");
        }
    }

    #[tokio::test]
    async fn follow_false_ends_after_the_snapshot() {
        let (svc, _clock) = service().await;
        svc.session_started("web1", &session("10:1", 50001))
            .await
            .unwrap();
        let app = crate::api::router(svc.clone());
        let (status, mut events) =
            open(&app, &token(&svc, &[Scope::Read]).await, "?follow=false").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(events.next().await.unwrap().0, "snapshot");
        assert!(events.next().await.is_none(), "the stream ends");
    }

    #[tokio::test]
    async fn the_feed_needs_the_read_scope_and_a_known_query() {
        let (svc, _clock) = service().await;
        let app = crate::api::router(svc.clone());
        let (status, _) = open(&app, "not-a-token", "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = open(&app, &token(&svc, &[Scope::Signoff]).await, "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = open(&app, &token(&svc, &[Scope::Read]).await, "?user=x").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
