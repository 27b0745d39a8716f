//! Server response times of the dashboard with a realistically full store: 10,000
//! snapshots and 100,000 spans in a real SQLite store, every request through the same router
//! the local server runs (in-process, so the figures are the server's own time, not the
//! network's). Prints median and p95 per request; a report, never a timed assertion.
//!
//! ```sh
//! cargo bench -p sightline-dashboard --bench pages
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The bench drives the server through its router only.
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const KEY: &str = "sl_dashboard_bench_key";
const SNAPSHOTS: usize = 10_000;
const TRACES: usize = 50;
const SPANS_PER_TRACE: usize = 2_000;
const ROUNDS: usize = 200;

/// Sends a request; returns the status, the body's size and the body as JSON (null if not).
async fn send(router: &Router, req: Request<Body>) -> (StatusCode, usize, Value) {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, bytes.len(), v)
}

fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("x-api-key", KEY)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn hex(n: u64, width: usize) -> String {
    format!("{n:0width$x}")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let server = common::local_server(KEY).await;
    let router = server.router;

    // --- seed: 100,000 spans (50 traces of 2,000), with code locations -------------------
    let seed = Instant::now();
    let now_ns = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap();
    for t in 0..TRACES {
        let trace_id = hex(0xabc0_0000 + t as u64, 32);
        for chunk in 0..(SPANS_PER_TRACE / 500) {
            let spans: Vec<Value> = (0..500)
                .map(|i| {
                    let n = chunk * 500 + i;
                    let start = now_ns - 3_600_000_000_000 + (t as u64) * 60_000_000_000 + n as u64 * 1_000_000;
                    json!({"traceId": trace_id, "spanId": hex(((t as u64) << 32) + n as u64 + 1, 16),
                        "parentSpanId": if n == 0 { String::new() } else { hex((t as u64) << 32 | 1, 16) },
                        "name": format!("op {}", n % 40), "kind": 2,
                        "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + 4_000_000).to_string(),
                        "attributes": [
                            {"key": "code.filepath", "value": {"stringValue": format!("/app/mod{}.py", n % 20)}},
                            {"key": "code.function", "value": {"stringValue": format!("fn{}", n % 40)}},
                            {"key": "code.lineno", "value": {"intValue": (10 + n % 50).to_string()}}],
                        "status": {"code": if n % 97 == 0 { 2 } else { 0 }}})
                })
                .collect();
            let body = json!({"resourceSpans": [{"resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": format!("svc-{}", t % 5)}}]},
                "scopeSpans": [{"spans": spans}]}]});
            let (status, _, v) = send(&router, post("/v1/traces", &body)).await;
            assert_eq!(status, StatusCode::OK, "{v}");
        }
    }
    // A typical request's trace: 40 spans under one root.
    let typical = hex(0xfeed, 32);
    let spans: Vec<Value> = (0..40u64)
        .map(|n| {
            let start = now_ns - 60_000_000_000 + n * 500_000;
            json!({"traceId": typical, "spanId": hex(0xf000 + n + 1, 16),
                "parentSpanId": if n == 0 { String::new() } else { hex(0xf001, 16) },
                "name": format!("step {n}"), "kind": 2,
                "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + 2_000_000).to_string(),
                "attributes": [{"key": "http.route", "value": {"stringValue": "/orders"}}]})
        })
        .collect();
    let body = json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "svc-0"}}]}, "scopeSpans": [{"spans": spans}]}]});
    assert_eq!(
        send(&router, post("/v1/traces", &body)).await.0,
        StatusCode::OK
    );
    let spans_secs = seed.elapsed().as_secs_f64();

    // --- seed: 10,000 snapshots over 5 services and 10 breakpoints, in batches of 100 ------
    let seed = Instant::now();
    let mut bps = Vec::new();
    for b in 0..10 {
        let body = json!({"service_name": format!("svc-{}", b % 5), "file_path": format!("/app/mod{b}.py"),
            "line_number": 10 + b, "function_name": format!("handler{b}"), "label": format!("l{b}"),
            "max_captures": 0, "rate_limit_per_minute": 0, "expires_in_seconds": 86_400});
        let (status, _, v) = send(&router, post("/api/breakpoints", &body)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        bps.push(v);
    }
    for batch in 0..(SNAPSHOTS / 100) {
        let snapshots: Vec<Value> = (0..100)
            .map(|i| {
                let n = batch * 100 + i;
                let bp = &bps[n % bps.len()];
                json!({"breakpoint_id": bp["id"], "service_name": bp["service_name"], "file_path": bp["file_path"],
                    "line_number": bp["line_number"], "function_name": bp["function_name"], "label": bp["label"],
                    "trace_id": hex(0xabc0_0000 + (n % TRACES) as u64, 32),
                    "variables": {"order": {"id": n, "total": n as f64 * 1.5, "items": [{"sku": "A", "qty": 2}]}, "user": "ana@example.com"},
                    "stack_trace": format!("handler at /app/mod{}.py:{}\nmain at /app/main.py:3", n % 10, 10 + n % 10),
                    "captured_at": format!("2026-11-22T12:{:02}:{:02}.{:06}Z", (n / 60) % 60, n % 60, n)})
            })
            .collect();
        let (status, _, v) = send(
            &router,
            post(
                "/sdk/snapshots/capture/batch",
                &json!({"snapshots": snapshots}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let snaps_secs = seed.elapsed().as_secs_f64();
    println!(
        "seeded {} spans in {spans_secs:.1} s and {SNAPSHOTS} snapshots in {snaps_secs:.1} s (SQLite in {})",
        TRACES * SPANS_PER_TRACE,
        server.dir.path().display()
    );

    // --- a dashboard session --------------------------------------------------------------
    let res = router
        .clone()
        .oneshot(post("/api/session", &json!({"api_key": KEY})))
        .await
        .unwrap();
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let (_, _, first) = send(&router, get("/api/snapshots?limit=50", &cookie)).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let snapshot_id = first["snapshots"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(first["snapshots"].as_array().unwrap().len(), 50);
    let from = sightline_core::timefmt::format_ms(
        i64::try_from(now_ns / 1_000_000).unwrap() - 60 * 60 * 1000,
    );
    let trace = hex(0xabc0_0000, 32);
    let requests = [
        ("page shell  GET /snapshots", "/snapshots".to_owned()),
        (
            "GET /api/services",
            "/api/services?window_minutes=60".into(),
        ),
        ("GET /api/breakpoints", "/api/breakpoints".into()),
        (
            "GET /api/snapshots (first page of 50)",
            "/api/snapshots?limit=50".into(),
        ),
        (
            "GET /api/snapshots (page 2, cursor)",
            format!("/api/snapshots?limit=50&cursor={cursor}"),
        ),
        (
            "GET /api/snapshots?service=&from= (filtered)",
            format!("/api/snapshots?limit=50&service=svc-3&from={from}"),
        ),
        (
            "GET /api/snapshots/{id}",
            format!("/api/snapshots/{snapshot_id}"),
        ),
        (
            "GET /api/traces (first page of 50)",
            "/api/traces?limit=50".into(),
        ),
        (
            "GET /api/traces/{id} (40 spans)",
            format!("/api/traces/{typical}"),
        ),
        (
            "GET /api/traces/{id} (2,000 spans)",
            format!("/api/traces/{trace}"),
        ),
        ("GET /api/code?service=", "/api/code?service=svc-0".into()),
    ];
    println!();
    println!("| request | median | p95 | response bytes |");
    println!("|---|---:|---:|---:|");
    for (name, path) in requests {
        let mut times = Vec::with_capacity(ROUNDS);
        let mut size = 0;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let res = router.clone().oneshot(get(&path, &cookie)).await.unwrap();
            let status = res.status();
            let len = res.into_body().collect().await.unwrap().to_bytes().len();
            times.push(started.elapsed());
            assert_eq!(status, StatusCode::OK, "{path}");
            size = len;
        }
        times.sort();
        println!(
            "| {name} | {} | {} | {size} |",
            ms(times[ROUNDS / 2]),
            ms(times[ROUNDS * 95 / 100])
        );
    }
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
