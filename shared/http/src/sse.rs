//! SSE streams: one per SDK process (`/sdk/snapshots/stream/{service}`) and one per
//! dashboard (`/api/events`). Each event is one `data:` line, written as one chunk.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use sightline_core::events::{names, sse_frame, Audience, ChangeEvent};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::AppState;

/// Frames buffered per stream; a client that falls this far behind is disconnected (it
/// reconnects and gets a fresh `init`), so one stalled reader never holds up the rest.
const STREAM_BUFFER: usize = 256;

fn sse_response(rx: mpsc::Receiver<Result<Bytes, Infallible>>) -> Response {
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// Queues one frame; false when the client is gone or too far behind (end the stream).
fn send(tx: &mpsc::Sender<Result<Bytes, Infallible>>, event: &str, data: &Value) -> bool {
    tx.try_send(Ok(Bytes::from(sse_frame(event, data)))).is_ok()
}

/// The SDK stream: `init` (the poll state), then every committed change of this service,
/// and a `heartbeat` at the configured interval. Subscribes before reading the state, so
/// no change between the two is lost. A kill switch turned on ends the stream.
pub async fn sdk_stream(
    state: AppState,
    project: String,
    service: String,
) -> Result<Response, crate::error::ApiError> {
    let events = state.hub.subscribe();
    let init = state.app.sdk_state(&project, &service).await?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let heartbeat = state.heartbeat;
    tokio::spawn(async move {
        let _guard = state.hub.connect_sdk(&project, &service);
        let killed = init
            .get("kill_switch")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !send(&tx, names::INIT, &init) || killed {
            return;
        }
        run_sdk_stream(&state, &project, &service, events, &tx, heartbeat).await;
    });
    Ok(sse_response(rx))
}

async fn run_sdk_stream(
    state: &AppState,
    project: &str,
    service: &str,
    mut events: broadcast::Receiver<Arc<ChangeEvent>>,
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
    heartbeat: Duration,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut closing = state.closing.clone();
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = server_closing(&mut closing) => return,
            _ = ticker.tick() => {
                if !send(tx, names::HEARTBEAT, &json!({"ts": state.app.now_ms()})) { return; }
            }
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if ev.project_id != project || ev.service != service || ev.audience != Audience::All {
                        continue;
                    }
                    if !send(tx, &ev.event, &ev.data) { return; }
                    if ev.event == names::KILL_SWITCH && ev.data.get("enabled") == Some(&Value::Bool(true)) {
                        return;
                    }
                }
                // Missed events: resend the whole state, which SDKs treat as a cache reset.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let Ok(init) = state.app.sdk_state(project, service).await else { return };
                    if !send(tx, names::INIT, &init) { return; }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// The dashboard stream: every event of the project (breakpoints, captures, drops, kill
/// switches, connected SDK counts), each with its `service`.
pub async fn dashboard_stream(state: AppState, project: String) -> Response {
    let mut events = state.hub.subscribe();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let heartbeat = state.heartbeat;
    tokio::spawn(async move {
        let counts = state.hub.sdk_counts(&project);
        if !send(&tx, names::INIT, &json!({"sdk_counts": counts})) {
            return;
        }
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let mut closing = state.closing.clone();
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = server_closing(&mut closing) => return,
                _ = ticker.tick() => {
                    if !send(&tx, names::HEARTBEAT, &json!({"ts": state.app.now_ms()})) { return; }
                }
                ev = events.recv() => match ev {
                    Ok(ev) if ev.project_id == project => {
                        let mut data = ev.data.clone();
                        if let Value::Object(m) = &mut data {
                            m.entry("service").or_insert_with(|| ev.service.clone().into());
                        }
                        if !send(&tx, &ev.event, &data) { return; }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        if !send(&tx, "lagged", &json!({"missed": n})) { return; }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    sse_response(rx)
}

/// Resolves once the server starts shutting down.
async fn server_closing(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await.map(|_| ());
}
