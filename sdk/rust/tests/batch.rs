//! Batched capture uploads: against a real `sightline serve` captures fired in a burst go out
//! in `POST /sdk/snapshots/capture/batch` requests and are stored exactly once; against a
//! backend without the batch route (404) the SDK falls back to one upload per snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{wait_until, Server};
use serde_json::{json, Value};
use sightline::{capture, Sightline};

const SECS: fn(u64) -> Duration = Duration::from_secs;
const BURST: usize = 300;

fn site(sl: &Sightline, i: usize) {
    capture!(client = sl, "burst", { "i" => i, "pad" => "x".repeat(64) });
}
const SITE_LINE: u32 = line!() - 2;

/// `site`'s function name as the macro reports it: with function and label set, the SDK's
/// auto-registration finds the breakpoint the test created instead of adding one.
fn site_function() -> String {
    format!("{}::site", module_path!())
}

/// Percent-encodes a query value (cursors are opaque strings).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every stored snapshot summary of a breakpoint, following `next_cursor`.
fn all_snapshots(s: &Server, bp: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/snapshots?breakpoint_id={bp}&limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let (status, page) = s.get(&path);
        assert_eq!(status, 200, "{page}");
        out.extend(page["snapshots"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return out,
        }
        assert!(out.len() <= 10 * BURST, "paging does not end");
    }
}

#[test]
fn a_burst_is_uploaded_in_batches_and_stored_exactly_once() {
    let s = Server::start();
    let (status, bp) = s.post(
        "/api/breakpoints",
        json!({
            "service_name": "batch",
            "file_path": file!(),
            "line_number": SITE_LINE,
            "function_name": site_function(),
            "label": "burst",
            "enabled": true,
            "max_captures": 0,
            "rate_limit_per_minute": 0,
            "expire_at": null,
        }),
    );
    assert!(status == 200 || status == 201, "{status} {bp}");
    let bp_id = bp["id"].as_str().expect("breakpoint id").to_owned();
    let sl = Sightline::init(s.config("batch")).unwrap();
    assert!(
        wait_until(SECS(10), || sl.breakpoint_count() == 1),
        "breakpoint never reached the SDK"
    );
    for i in 0..BURST {
        site(&sl, i);
    }
    assert!(
        wait_until(SECS(60), || sl.stats().uploaded == BURST as u64),
        "{:?}",
        sl.stats()
    );
    let st = sl.stats();
    assert_eq!(
        (st.captured, st.uploaded, st.server_dropped, st.failed),
        (BURST as u64, BURST as u64, 0, 0),
        "{st:?}"
    );
    assert_eq!(st.dropped_queue_full, 0, "{st:?}");
    // Batching happened: fewer requests than snapshots, and at least one real batch.
    assert!(st.batches >= 1, "no batch was sent: {st:?}");
    assert!(
        st.batches < BURST as u64 / 2,
        "batches barely formed: {st:?}"
    );

    // Stored exactly once: the breakpoint's count and the snapshot list agree, and every
    // `i` of the burst is there once.
    let (status, bp) = s.get(&format!("/api/breakpoints/{bp_id}"));
    assert_eq!(status, 200, "{bp}");
    assert_eq!(bp["capture_count"], json!(BURST), "{bp}");
    let summaries = all_snapshots(&s, &bp_id);
    assert_eq!(summaries.len(), BURST);
    let ids: HashSet<&str> = summaries.iter().filter_map(|v| v["id"].as_str()).collect();
    assert_eq!(ids.len(), BURST, "snapshot ids are not unique");
    let seen: BTreeSet<u64> = ids
        .iter()
        .map(|id| {
            let (status, snap) = s.get(&format!("/api/snapshots/{id}"));
            assert_eq!(status, 200, "{snap}");
            snap["variables"]["i"].as_u64().expect("variables.i")
        })
        .collect();
    assert_eq!(seen, (0..BURST as u64).collect::<BTreeSet<_>>());

    assert_eq!(s.breakpoints("batch").len(), 1);
    let report = sl.shutdown(SECS(5));
    assert!(report.clean, "{report:?}");
}

/// A fake backend's answers, and what it saw.
struct Seen {
    /// Status of every `POST /sdk/snapshots/capture/batch`.
    batch_status: StatusCode,
    /// Status of every `POST /sdk/snapshots/capture` (201 answers `stored`).
    single_status: StatusCode,
    batch_requests: usize,
    single_requests: usize,
    /// Idempotency keys of every single upload, in arrival order.
    keys: Vec<String>,
    /// Idempotency keys of every snapshot in a batch request, in arrival order.
    batch_keys: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

fn backend_state(batch_status: StatusCode, single_status: StatusCode) -> Shared {
    Arc::new(Mutex::new(Seen {
        batch_status,
        single_status,
        batch_requests: 0,
        single_requests: 0,
        keys: Vec::new(),
        batch_keys: Vec::new(),
    }))
}

async fn poll(Path(_service): Path<String>) -> Json<Value> {
    Json(json!({
        "breakpoints": [{
            "id": "bp-old",
            "file_path": file!(),
            "line_number": SITE_LINE,
            "function_name": site_function(),
            "label": "burst",
            "enabled": true,
            "max_captures": 0,
        }],
        "kill_switch": false,
    }))
}

fn key(snapshot: &Value) -> String {
    snapshot["idempotency_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn batch(State(seen): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    let mut seen = seen.lock().unwrap();
    seen.batch_requests += 1;
    let keys: Vec<String> = body["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();
    seen.batch_keys.extend(keys);
    seen.batch_status
}

async fn single(State(seen): State<Shared>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let mut seen = seen.lock().unwrap();
    seen.single_requests += 1;
    seen.keys.push(key(&body));
    let id = format!("snap-{}", seen.single_requests);
    let answer = if seen.single_status.is_success() {
        json!({"status": "stored", "id": id, "breakpoint_id": body["breakpoint_id"]})
    } else {
        json!({"error": {"code": "unavailable", "message": "try again"}})
    };
    (seen.single_status, Json(answer))
}

/// A TraceKit-style backend on its own runtime thread (poll, capture, auto-register, and a
/// batch route answering `seen.batch_status`). Returns its base URL.
fn fake_backend(seen: Shared) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = Router::new()
                .route("/sdk/snapshots/active/{service}", get(poll).post(poll))
                .route("/sdk/snapshots/capture", post(single))
                .route("/sdk/snapshots/capture/batch", post(batch))
                .route(
                    "/sdk/snapshots/auto-register",
                    post(|| async { Json(json!({"status": "ok"})) }),
                )
                .with_state(seen);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

fn fake_config(base: String, service: &str) -> sightline::Config {
    let mut config = sightline::Config::new(common::KEY, service).with_endpoint(base);
    config.poll_interval = SECS(300);
    config.request_timeout = SECS(5);
    config
}

#[test]
fn without_the_batch_route_uploads_fall_back_to_one_by_one() {
    // An older backend: no batch route (axum answers 404 to the batch POST as well).
    let seen = backend_state(StatusCode::NOT_FOUND, StatusCode::CREATED);
    let base = fake_backend(seen.clone());
    let sl = Sightline::init(fake_config(base, "old")).unwrap();
    assert!(
        wait_until(SECS(10), || sl.breakpoint_count() == 1),
        "breakpoint never reached the SDK"
    );
    for i in 0..BURST {
        site(&sl, i);
    }
    assert!(
        wait_until(SECS(60), || sl.stats().uploaded == BURST as u64),
        "{:?}",
        sl.stats()
    );
    let st = sl.stats();
    assert_eq!(
        (st.uploaded, st.failed, st.batches),
        (BURST as u64, 0, 0),
        "{st:?}"
    );
    assert_eq!(
        st.breaker_trips, 0,
        "a missing batch route is no failure: {st:?}"
    );
    {
        let seen = seen.lock().unwrap();
        // A burst this size makes the SDK try a batch; the 404 is remembered (several
        // batches may have been in flight at once), and every snapshot arrived on its own,
        // once.
        assert!(
            (1..=4).contains(&seen.batch_requests),
            "batch attempts: {}",
            seen.batch_requests
        );
        assert_eq!(seen.single_requests, BURST);
        let keys: HashSet<&String> = seen.keys.iter().collect();
        assert_eq!(keys.len(), BURST, "an idempotency key was sent twice");
    }
    // Later bursts never try the batch route again.
    let batch_requests = seen.lock().unwrap().batch_requests;
    for i in 0..50 {
        site(&sl, i);
    }
    assert!(wait_until(SECS(30), || sl.stats().uploaded == BURST as u64 + 50));
    assert!(sl.shutdown(SECS(5)).clean);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.batch_requests, batch_requests);
    assert_eq!(seen.single_requests, BURST + 50);
}

#[test]
fn a_failing_batch_is_retried_with_the_same_keys_and_counts_one_breaker_failure() {
    let seen = backend_state(
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    let base = fake_backend(seen.clone());
    let mut config = fake_config(base, "flaky");
    config.upload_attempts = 2;
    // Well above the number of requests a burst makes, far below the number of snapshots.
    config.circuit_breaker.max_failures = 20;
    let sl = Sightline::init(config).unwrap();
    assert!(wait_until(SECS(10), || sl.breakpoint_count() == 1));
    const N: usize = 100;
    for i in 0..N {
        site(&sl, i);
    }
    assert!(
        wait_until(SECS(30), || sl.stats().failed == N as u64),
        "{:?}",
        sl.stats()
    );
    let st = sl.stats();
    assert_eq!(
        (st.uploaded, st.batches, st.breaker_trips),
        (0, 0, 0),
        "{st:?}"
    );
    assert!(sl.shutdown(SECS(5)).clean);
    let seen = seen.lock().unwrap();
    assert!(seen.batch_requests >= 2, "no batch was sent");
    // Every snapshot was sent exactly `upload_attempts` times, always under the same key.
    let mut sent: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for k in seen.keys.iter().chain(&seen.batch_keys) {
        *sent.entry(k.as_str()).or_default() += 1;
    }
    assert_eq!(sent.len(), N, "{} distinct keys", sent.len());
    assert!(sent.values().all(|n| *n == 2), "{sent:?}");
}
