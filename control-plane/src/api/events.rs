//! `GET /api/v1/events?since=CURSOR`: the durable events feed for SIEM collectors (Splunk,
//! Elastic, Vector), as JSON lines (scope `read`).
//!
//! Each line is one event, `{"cursor", "at", "kind", "data"}`, oldest first. A collector
//! keeps the last cursor it stored and asks again with `since=` it: events are rows written
//! in the transaction of the change they record, so none is lost across a restart of the
//! control plane, and none is sent twice to a collector that resumes from its cursor.
//!
//! `?follow=true` keeps the response open and sends new events as they are recorded, until
//! the client closes it, as Server-Sent Events: each event named by its kind, its `id` the
//! cursor, its data the same JSON object as a line. (A stream of JSON lines that never ends
//! looks to an HTTP client like a response that hangs; SSE is what clients and test tools
//! know to read as it comes.) Without it the response ends after at most `limit` events.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::error::ErrorBody;
use super::handlers::Query;
use super::{ApiError, AppState};
use crate::events::Event;
use crate::service::Service;

/// How often a following response looks for new events. Events are rows in the store, so
/// a look is one indexed query; a quarter of a second keeps the feed well inside the
/// one-second budget of an alert.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Events read per query while following.
const FOLLOW_BATCH: i64 = 500;

/// `?since=&follow=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Only events after this cursor (default 0: from the first).
    #[serde(default)]
    #[param(minimum = 0)]
    since: i64,
    /// `true`: keep the response open and send new events as they are recorded, as
    /// Server-Sent Events (event name the kind, id the cursor, data the JSON event).
    #[serde(default)]
    follow: bool,
    /// Without `follow`, at most this many events (1 to 1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// The most events one response without `follow` carries.
const MAX_LIMIT: i64 = 1000;

impl EventsQuery {
    /// A cursor below 0 or a limit out of range is the client's mistake, said as such
    /// (not taken as the nearest value, which would hide it).
    fn check(&self) -> Result<(), ApiError> {
        let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m);
        if self.since < 0 {
            return Err(invalid(format!(
                "since: {} is not a cursor (cursors start at 0)",
                self.since
            )));
        }
        if let Some(limit) = self.limit
            && !(1..=MAX_LIMIT).contains(&limit)
        {
            return Err(invalid(format!(
                "limit: {limit} is out of range (1 to {MAX_LIMIT})"
            )));
        }
        Ok(())
    }
}

fn line(event: &Event) -> Bytes {
    // An Event is plain JSON values: serializing it cannot fail.
    let mut text = serde_json::to_vec(event).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

fn sse_event(event: &Event) -> SseEvent {
    let data = String::from_utf8_lossy(&line(event)).trim_end().to_owned();
    SseEvent::default()
        .id(event.cursor.to_string())
        .event(event.kind.clone())
        .data(data)
}

/// One event of the followed stream, for the OpenAPI document (axum's `Event` writes it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct FollowEvent {
    /// The cursor.
    id: String,
    /// The kind: audit, session_started, session_ended.
    event: String,
    /// The event as JSON text: {cursor, at, kind, data}.
    data: String,
}

/// Events feed as JSON lines ({cursor, at, kind, data}, oldest first) after `since`; `follow=true` streams them and new events as Server-Sent Events until the client closes
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "audit",
    params(EventsQuery),
    responses(
        (status = 200, description = "One event per line; with follow=true, one Server-Sent Event per event",
            content(
                (Event = "application/x-ndjson"),
                (FollowEvent = "text/event-stream"),
            )),
        (status = 422, description = "since below 0 or limit out of range", body = ErrorBody),
    ),
)]
pub(crate) async fn events_handler(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    q.check()?;
    let headers = [(header::CONTENT_TYPE, "application/x-ndjson")];
    if !q.follow {
        let events = s
            .service
            .events_since(q.since, q.limit.unwrap_or(MAX_LIMIT))
            .await?;
        let body: Vec<u8> = events.iter().flat_map(|e| line(e).to_vec()).collect();
        return Ok((headers, Body::from(body)).into_response());
    }
    // The first read answers errors with a status; later ones can only end the stream.
    let first = s.service.events_since(q.since, FOLLOW_BATCH).await?;
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(FOLLOW_BATCH as usize);
    tokio::spawn(follow(s.service.clone(), q.since, first, tx));
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn follow(
    service: Service,
    mut cursor: i64,
    mut batch: Vec<Event>,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
) {
    loop {
        let full = batch.len() as i64 >= FOLLOW_BATCH;
        for event in &batch {
            if tx.send(Ok(sse_event(event))).await.is_err() {
                return;
            }
            cursor = event.cursor;
        }
        if !full {
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_POLL) => {}
                () = tx.closed() => return,
            }
        }
        batch = match service.events_since(cursor, FOLLOW_BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                // The client resumes from the last cursor it received.
                tracing::error!(error = ?e, "cannot read events; ending the feed");
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicI64;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use serde_json::Value;
    use signoff_proto::v1;
    use tokio_stream::StreamExt as _;
    use tower::ServiceExt as _;

    use crate::service::testing::{ManualClock, service};
    use crate::service::{Actor, NewUser, Scope, Service};

    fn session(id: &str, port: u32) -> v1::Session {
        v1::Session {
            id: id.into(),
            account: "deploy".into(),
            key_id: "alice@corp".into(),
            serial: 7,
            source_address: "127.0.0.1".into(),
            source_port: port,
            started_at: 1_800_000_000,
            pids: vec![port],
            ..Default::default()
        }
    }

    async fn token(svc: &Service) -> String {
        svc.create_token(&Actor::cli(), "siem", &[Scope::Read], None, "")
            .await
            .unwrap()
            .secret
    }

    async fn get(svc: &Service, secret: &str, query: &str) -> axum::response::Response {
        crate::api::router(svc.clone())
            .oneshot(
                Request::get(format!("/api/v1/events{query}"))
                    .header(header::AUTHORIZATION, format!("Bearer {secret}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    async fn lines(res: axum::response::Response) -> Vec<Value> {
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/x-ndjson");
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn alice(svc: &Service) {
        let alice = NewUser {
            name: "alice".into(),
            key_ids: vec!["alice@corp".into()],
            ..Default::default()
        };
        svc.create_user(&Actor::cli(), alice, "hired")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn audit_and_session_events_in_order_and_resumable_from_a_cursor() {
        let (svc, _clock) = service().await;
        let secret = token(&svc).await;
        alice(&svc).await;
        svc.session_started("web1", &session("10:1", 50001))
            .await
            .unwrap();
        svc.session_ended("web1", "10:1", 1_800_000_100)
            .await
            .unwrap();

        let all = lines(get(&svc, &secret, "").await).await;
        let kinds: Vec<&str> = all.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["audit", "audit", "session_started", "session_ended"],
            "token creation, user creation, the session's start and end"
        );
        assert_eq!(all[1]["data"]["action"], "user.create");
        assert_eq!(all[1]["data"]["target"], "user:alice");
        assert_eq!(all[1]["data"]["reason"], "hired");
        assert_eq!(all[2]["data"]["host_id"], "web1");
        assert_eq!(all[2]["data"]["source_port"], 50001);
        assert_eq!(
            all[3]["data"],
            serde_json::json!({"host_id": "web1", "id": "10:1"})
        );
        assert_eq!(all[3]["at"], 1_800_000_100);
        let cursors: Vec<i64> = all.iter().map(|e| e["cursor"].as_i64().unwrap()).collect();
        assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");

        // Resuming after the second event gives the rest, nothing twice.
        let rest = lines(get(&svc, &secret, &format!("?since={}", cursors[1])).await).await;
        assert_eq!(rest, all[2..]);
        let page = lines(get(&svc, &secret, "?limit=1").await).await;
        assert_eq!(page, all[..1]);
        let none = lines(get(&svc, &secret, &format!("?since={}", cursors[3])).await).await;
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn a_bad_cursor_is_a_400_and_no_token_a_401() {
        let (svc, _clock) = service().await;
        let secret = token(&svc).await;
        let res = get(&svc, &secret, "?since=yesterday").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let res = get(&svc, &secret, "?cursor=1").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "unknown parameter");
        let res = get(&svc, "not-a-token", "").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_negative_cursor_or_a_limit_out_of_range_is_a_422_naming_it() {
        let (svc, _clock) = service().await;
        let secret = token(&svc).await;
        for (query, names) in [
            ("?since=-1", "since"),
            ("?limit=0", "limit"),
            ("?limit=-5", "limit"),
            ("?limit=1001", "limit"),
            ("?since=-1&follow=true", "since"),
        ] {
            let res = get(&svc, &secret, query).await;
            assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
            let body = axum::body::to_bytes(res.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], "invalid", "{query}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(names), "{query}: {message}");
        }
        // The bounds themselves are fine.
        for query in ["?since=0", "?limit=1", "?limit=1000"] {
            assert_eq!(
                get(&svc, &secret, query).await.status(),
                StatusCode::OK,
                "{query}"
            );
        }
    }

    #[tokio::test]
    async fn follow_sends_what_exists_then_each_new_event() {
        let (svc, _clock) = service().await;
        let secret = token(&svc).await;
        let res = get(&svc, &secret, "?follow=true").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
        let mut body = res.into_body().into_data_stream();
        let mut buffer = String::new();
        let mut next = async || -> Value {
            loop {
                if let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue; // a keep-alive comment
                    };
                    let event: Value = serde_json::from_str(data).unwrap();
                    let id = block.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
                    assert_eq!(id, event["cursor"].to_string(), "the SSE id is the cursor");
                    let name = block
                        .lines()
                        .find_map(|l| l.strip_prefix("event: "))
                        .unwrap();
                    assert_eq!(name, event["kind"]);
                    return event;
                }
                let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                    .await
                    .expect("an event within 10 s")
                    .expect("the stream stays open")
                    .unwrap();
                buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        };
        let first = next().await;
        assert_eq!(first["data"]["action"], "token.create");
        svc.session_started("web1", &session("10:1", 50001))
            .await
            .unwrap();
        let second = next().await;
        assert_eq!(second["kind"], "session_started");
        assert!(second["cursor"].as_i64() > first["cursor"].as_i64());
    }

    #[tokio::test]
    async fn none_lost_across_a_restart_of_the_control_plane() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::test_url(dir.path()).await;
        let clock = Arc::new(ManualClock(AtomicI64::new(1_800_000_000)));
        let svc = Service::new(crate::store::open(&url).await.unwrap(), clock.clone())
            .await
            .unwrap();
        let secret = token(&svc).await;
        let before = lines(get(&svc, &secret, "").await).await;
        let cursor = before.last().unwrap()["cursor"].as_i64().unwrap();
        alice(&svc).await;
        drop(svc);

        let svc = Service::new(crate::store::open(&url).await.unwrap(), clock)
            .await
            .unwrap();
        let after = lines(get(&svc, &secret, &format!("?since={cursor}")).await).await;
        assert_eq!(after.len(), 1, "{after:?}");
        assert_eq!(after[0]["data"]["action"], "user.create");
    }
}
