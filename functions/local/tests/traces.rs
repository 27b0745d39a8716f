//! OTLP/HTTP ingest, the trace API, code discovery and snapshot ↔ trace links, against a
//! real `sightline serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use common::{Server, KEY};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use serde_json::{json, Value};
use sightline_core::timefmt::format_ms;

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A Python service's request span with a recorded exception, and a child client span.
fn python_request(trace: &str) -> ExportTraceServiceRequest {
    let start = now_ns() - 50_000_000;
    let traceback = "Traceback (most recent call last):\n  File \"/usr/lib/python3.11/site-packages/flask/app.py\", line 880, in full_dispatch_request\n    rv = self.dispatch_request()\n  File \"/srv/shop/orders.py\", line 42, in place_order\n    total = price / qty\nZeroDivisionError: division by zero";
    let root = Span {
        trace_id: hex(trace),
        span_id: hex("eee19b7ec3c1b174"),
        name: "POST /orders".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 40_000_000,
        attributes: vec![kv("http.route", "/orders")],
        events: vec![span::Event {
            time_unix_nano: start + 30_000_000,
            name: "exception".into(),
            attributes: vec![
                kv("exception.type", "ZeroDivisionError"),
                kv("exception.stacktrace", traceback),
            ],
            ..Default::default()
        }],
        status: Some(Status {
            code: status::StatusCode::Error as i32,
            message: "boom".into(),
        }),
        ..Default::default()
    };
    let child = Span {
        trace_id: hex(trace),
        span_id: hex("aaa19b7ec3c1b175"),
        parent_span_id: hex("eee19b7ec3c1b174"),
        name: "SELECT orders".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start + 5_000_000,
        end_time_unix_nano: start + 15_000_000,
        attributes: vec![
            kv("code.file.path", "/srv/shop/db.py"),
            kv("code.function.name", "load_orders"),
            KeyValue {
                key: "code.line.number".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(17)),
                }),
            },
        ],
        ..Default::default()
    };
    // The SDK's own call to Sightline: must not show up anywhere.
    let self_call = Span {
        trace_id: hex("0af7651916cd43dd8448eb211c80319c"),
        span_id: hex("b7ad6b7169203331"),
        name: "POST".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        attributes: vec![kv(
            "http.url",
            "http://127.0.0.1:8081/sdk/snapshots/capture",
        )],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "shop")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![root, child, self_call],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

async fn post_otlp(
    s: &Server,
    path: &str,
    ct: &str,
    body: Vec<u8>,
    gzip: bool,
) -> reqwest::Response {
    let mut req = s
        .http
        .post(s.url(path))
        .header("content-type", ct)
        .header("x-api-key", KEY);
    let body = if gzip {
        req = req.header("content-encoding", "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&body).unwrap();
        enc.finish().unwrap()
    } else {
        body
    };
    req.body(body).send().await.unwrap()
}

#[tokio::test]
async fn protobuf_spans_are_stored_indexed_and_queryable() {
    let s = Server::start();
    let resp = post_otlp(
        &s,
        "/v1/traces",
        "application/x-protobuf",
        python_request(TRACE).encode_to_vec(),
        true,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let decoded = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(decoded
        .partial_success
        .is_none_or(|p| p.rejected_spans == 0));

    let (_, list) = s.get("/api/traces?service=shop").await;
    let traces = list["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "self-telemetry is not listed: {list}");
    assert_eq!(traces[0]["trace_id"], TRACE);
    assert_eq!(traces[0]["root_name"], "POST /orders");
    assert_eq!(traces[0]["has_error"], true);
    assert_eq!(traces[0]["span_count"], 2);
    assert_eq!(traces[0]["duration_ms"], 40);
    let (_, errors) = s.get("/api/traces?has_error=false").await;
    assert_eq!(errors["traces"], json!([]));
    let (_, slow) = s.get("/api/traces?min_duration_ms=1000").await;
    assert_eq!(slow["traces"], json!([]));

    let (status, detail) = s.get(&format!("/api/traces/{TRACE}")).await;
    assert_eq!(status, 200);
    let spans = detail["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0]["name"], "POST /orders");
    assert_eq!(spans[0]["status"], "error");
    assert_eq!(spans[0]["events"][0]["name"], "exception");
    assert_eq!(spans[1]["parent_span_id"], "eee19b7ec3c1b174");
    assert_eq!(spans[0]["resource"]["service.name"], "shop");
    let (status, _) = s.get("/api/traces/0af7651916cd43dd8448eb211c80319c").await;
    assert_eq!(status, 404, "self-telemetry traces are not stored");

    // Code discovery: the user frame of the traceback and the code.* attributes, not flask.
    let (_, code) = s.get("/api/code?service=shop").await;
    let files: Vec<&str> = code["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        vec!["/srv/shop/db.py", "/srv/shop/orders.py"],
        "{code}"
    );
    let orders = &code["files"][1]["functions"][0];
    assert_eq!(orders["name"], "place_order");
    assert_eq!(orders["lines"][0]["line"], 42);
    assert_eq!(orders["lines"][0]["example_trace_id"], TRACE);
    let (_, found) = s.get("/api/code?service=shop&q=LOAD_ord").await;
    assert_eq!(found["locations"], 1);

    // Service statistics from the entry span.
    let (_, services) = s.get("/api/services").await;
    let shop = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "shop")
        .unwrap()
        .clone();
    assert_eq!(shop["stats"]["requests"], 1);
    assert_eq!(shop["stats"]["errors"], 1);
    assert!(shop["stats"]["p50_ms"].as_f64().unwrap() > 25.0);

    // A breakpoint from a discovered line carries the function and a label SDKs key on.
    let (status, bp) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "shop", "file_path": "/srv/shop/orders.py", "line_number": 42}),
        )
        .await;
    assert_eq!(status, 201, "{bp}");
    assert_eq!(bp["function_name"], "place_order");
    assert_eq!(bp["label"], "place_order");

    // A snapshot captured in the trace is linked both ways, also when the capturing
    // host's clock is behind the spans' by most of a minute.
    let skewed = format_ms(i64::try_from(now_ns() / 1_000_000).unwrap() - 55_000);
    let (status, stored) = s
        .post(
            "/sdk/snapshots/capture",
            json!({"breakpoint_id": bp["id"], "service_name": "shop", "variables": {"qty": 0},
            "trace_id": TRACE, "span_id": "eee19b7ec3c1b174", "captured_at": skewed}),
        )
        .await;
    assert_eq!(status, 201, "{stored}");
    let (_, snap) = s
        .get(&format!(
            "/api/snapshots/{}",
            stored["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (snap["trace_id"].as_str(), snap["span_id"].as_str()),
        (Some(TRACE), Some("eee19b7ec3c1b174"))
    );
    // Another trace's snapshot in the same minute and partition (same first two hex
    // digits) is not listed.
    let (status, other) = s
        .post("/sdk/snapshots/capture", json!({"breakpoint_id": bp["id"], "service_name": "shop", "variables": {"qty": 1},
            "trace_id": format!("{}0000000000000000000000000000", &TRACE[..4]), "captured_at": skewed}))
        .await;
    assert_eq!(status, 201, "{other}");
    let (_, detail) = s.get(&format!("/api/traces/{TRACE}")).await;
    let ids: Vec<&Value> = detail["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["id"])
        .collect();
    assert_eq!(ids, [&stored["id"]], "{detail}");
}

/// A trace whose spans never arrived has no times to search by: the snapshot's
/// `captured_at` (`?at=`) finds it, as the dashboard's link from a snapshot passes it.
#[tokio::test]
async fn a_trace_known_only_from_its_snapshots_is_found_by_time() {
    let s = Server::start();
    let (status, bp) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "shop", "file_path": "/srv/shop/orders.py", "line_number": 7}),
        )
        .await;
    assert_eq!(status, 201, "{bp}");
    let trace = "ab".repeat(16);
    let (status, stored) = s
        .post("/sdk/snapshots/capture", json!({"breakpoint_id": bp["id"], "service_name": "shop",
            "variables": {}, "trace_id": trace.to_uppercase(), "captured_at": "2026-03-01T10:00:59.900Z"}))
        .await;
    assert_eq!(status, 201, "{stored}");

    let (status, err) = s.get(&format!("/api/traces/{trace}")).await;
    assert_eq!(status, 404, "{err}");
    // A minute boundary lies between the time given and the capture: both minutes are read.
    for at in [
        "2026-03-01T10:00:59.900Z",
        "2026-03-01T10:01:30Z",
        "2026-03-01T09:59:59.900Z",
    ] {
        let (status, found) = s.get(&format!("/api/traces/{trace}?at={at}")).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(
            found["snapshots"][0]["id"], stored["id"],
            "at {at}: {found}"
        );
        assert_eq!(found["spans"], json!([]));
    }
    let (status, _) = s
        .get(&format!("/api/traces/{trace}?at=2026-03-01T10:03:00Z"))
        .await;
    assert_eq!(status, 404, "two minutes later is outside the slack");
    let (status, err) = s.get(&format!("/api/traces/{trace}?at=yesterday")).await;
    assert_eq!(
        (status, &err["error"]["code"]),
        (400, &json!("invalid_query"))
    );
}

#[tokio::test]
async fn json_spans_with_hex_ids_and_string_nanos() {
    let s = Server::start();
    let start = now_ns();
    let body = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeSpans": [{"scope": {"name": "x"}, "spans": [{
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7", "name": "GET /cart", "kind": 2,
            "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + 2_000_000).to_string(),
            "attributes": [{"key": "http.status_code", "value": {"intValue": "200"}}],
            "events": [{"name": "exception", "timeUnixNano": start + 1000, "attributes": [
                {"key": "exception.stacktrace", "value": {"stringValue": "TypeError: x is undefined\n    at checkout (/app/cart.js:88:11)\n    at Layer.handle (/app/node_modules/express/lib/router/layer.js:95:5)"}}]}],
            "status": {"code": 2}}]}]}]});
    // Also at `/`, where Java exporters given a bare base URL post.
    let resp = post_otlp(
        &s,
        "/",
        "application/json",
        body.to_string().into_bytes(),
        false,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let (_, detail) = s.get("/api/traces/4bf92f3577b34da6a3ce929d0e0e4736").await;
    assert_eq!(detail["spans"][0]["attributes"]["http.status_code"], 200);
    let (_, code) = s.get("/api/code?service=web").await;
    assert_eq!(code["files"][0]["file"], "/app/cart.js");
    assert_eq!(code["files"][0]["functions"][0]["lines"][0]["line"], 88);
}

#[tokio::test]
async fn otlp_errors_follow_the_specification() {
    let s = Server::start();
    let resp = post_otlp(&s, "/v1/traces", "text/plain", b"hi".to_vec(), false).await;
    assert_eq!(resp.status(), 415);
    let resp = post_otlp(
        &s,
        "/v1/traces",
        "application/x-protobuf",
        b"\xff\xff\xff garbage".to_vec(),
        false,
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let resp = post_otlp(
        &s,
        "/v1/traces",
        "application/json",
        b"{not json".to_vec(),
        false,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_otlp");
    let resp = s
        .http
        .post(s.url("/v1/traces"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = s
        .http
        .post(s.url(&format!("/v1/traces?api_key={KEY}")))
        .header("content-type", "application/json")
        .body("{\"resourceSpans\":[]}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "browser beacons put the key in the query"
    );
    let big = vec![b' '; 9 * 1024 * 1024];
    let resp = post_otlp(&s, "/v1/traces", "application/json", big, false).await;
    assert_eq!(resp.status(), 413);
    // A zip bomb is refused, not inflated.
    let bomb = vec![b' '; 40 * 1024 * 1024];
    let resp = post_otlp(&s, "/v1/traces", "application/json", bomb, true).await;
    assert_eq!(resp.status(), 413);
    // Invalid spans are rejected with partial success, valid ones kept.
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "00000000000000000000000000000000", "spanId": "00f067aa0ba902b7", "name": "bad", "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
        {"traceId": "4bf92f3577b34da6a3ce929d0e0e4737", "spanId": "00f067aa0ba902b8", "name": "good", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]});
    let resp = post_otlp(
        &s,
        "/v1/traces",
        "application/json",
        body.to_string().into_bytes(),
        false,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["partialSuccess"]["rejectedSpans"]
            .as_i64()
            .or_else(|| body["partialSuccess"]["rejectedSpans"]
                .as_str()
                .and_then(|s| s.parse().ok())),
        Some(1)
    );
}

#[tokio::test]
async fn metrics_are_kept_per_service() {
    let s = Server::start();
    let body = json!({"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"py-demo"}}]},
        "scopeMetrics":[{"scope":{"name":"tracekit"},"metrics":[
        {"name":"demo.requests","sum":{"dataPoints":[{"attributes":[{"key":"route","value":{"stringValue":"/pay"}}],
        "timeUnixNano":"1795351299454447616","asDouble":1.0}],"aggregationTemporality":2,"isMonotonic":true}}]}]}]});
    for _ in 0..3 {
        let resp = post_otlp(
            &s,
            "/v1/metrics",
            "application/json",
            body.to_string().into_bytes(),
            false,
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    let (_, services) = s.get("/api/services").await;
    let svc = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "py-demo")
        .unwrap()
        .clone();
    assert_eq!(svc["metrics"][0]["name"], "demo.requests");
    assert_eq!(svc["metrics"][0]["points"], 3);
    assert_eq!(svc["metrics"][0]["total"], 3.0);
}
