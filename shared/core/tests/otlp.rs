//! OTLP ingest decoding (`sightline_core::otlp`): protobuf and OTLP/JSON traces and metrics,
//! export responses, bounded gunzip, self-telemetry detection and code discovery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use serde_json::{json, Map, Value};
use sightline_core::otlp::{
    code_locations, decode_metrics, decode_traces, encode_metrics_response, encode_trace_response,
    gunzip, DiscoveredLocation, Encoding, OtlpError, SpanEvent, SpanRecord,
    MAX_LOCATIONS_PER_EVENT, MAX_LOCATIONS_PER_SPAN,
};

const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ROOT: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const ROOT_HEX: &str = "00f067aa0ba902b7";
const CHILD: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const T0: u64 = 1_704_067_200_000_000_000;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/otlp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn av(v: any_value::Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(av(v)),
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

fn proto_span(
    trace: &[u8],
    id: &[u8],
    parent: &[u8],
    name: &str,
    kind: span::SpanKind,
    start: u64,
    end: u64,
) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_vec(),
        parent_span_id: parent.to_vec(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

fn trace_request(service: Option<&str>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    let attributes = service
        .map(|s| vec![kv("service.name", any_value::Value::StringValue(s.into()))])
        .unwrap_or_default();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.flask".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn decode_proto(req: &ExportTraceServiceRequest) -> sightline_core::otlp::DecodedTraces {
    decode_traces(&req.encode_to_vec(), Encoding::Protobuf).unwrap()
}

fn record(attributes: Value, events: Vec<SpanEvent>) -> SpanRecord {
    let Value::Object(attributes) = attributes else {
        panic!("attributes must be an object")
    };
    SpanRecord {
        trace_id: TRACE_HEX.into(),
        span_id: ROOT_HEX.into(),
        parent_span_id: None,
        name: "GET /".into(),
        kind: "server".into(),
        service: "svc".into(),
        start_ns: 0,
        end_ns: 1_000_000,
        duration_ms: 1.0,
        status: "unset".into(),
        status_message: String::new(),
        attributes,
        resource: Map::new(),
        scope: String::new(),
        events,
        links: Vec::new(),
    }
}

fn exception(stack: &str) -> SpanEvent {
    let mut attributes = Map::new();
    attributes.insert("exception.type".into(), json!("Error"));
    attributes.insert("exception.stacktrace".into(), json!(stack));
    SpanEvent {
        name: "exception".into(),
        time_ns: 0,
        attributes,
    }
}

fn loc(file: &str, line: i64, function: &str, source: &str) -> DiscoveredLocation {
    DiscoveredLocation {
        file: file.into(),
        line,
        function: function.into(),
        source: source.into(),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------
// content type, gzip
// ---------------------------------------------------------------------------------------------

#[test]
fn encoding_from_content_type() {
    assert_eq!(
        Encoding::from_content_type("application/x-protobuf"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(
        Encoding::from_content_type("application/protobuf"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(
        Encoding::from_content_type("Application/X-Protobuf; charset=binary"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(
        Encoding::from_content_type("application/json"),
        Some(Encoding::Json)
    );
    assert_eq!(
        Encoding::from_content_type("application/json; charset=utf-8"),
        Some(Encoding::Json)
    );
    assert_eq!(
        Encoding::from_content_type(" application/json ;charset=UTF-8"),
        Some(Encoding::Json)
    );
    assert_eq!(Encoding::from_content_type("text/plain"), None);
    assert_eq!(Encoding::from_content_type("application/jsonl"), None);
    assert_eq!(Encoding::from_content_type(""), None);
}

#[test]
fn gzip_round_trip() {
    let body = fixture("node_traces.json");
    let unzipped = gunzip(&gzip(&body), 1 << 20).unwrap();
    assert_eq!(unzipped, body);
    assert_eq!(
        decode_traces(&unzipped, Encoding::Json)
            .unwrap()
            .spans
            .len(),
        2
    );
    // Concatenated gzip members are one stream.
    let mut two = gzip(b"hello ");
    two.extend(gzip(b"world"));
    assert_eq!(gunzip(&two, 100).unwrap(), b"hello world");
    // Exactly at the limit is fine.
    assert_eq!(gunzip(&gzip(&[7u8; 1000]), 1000).unwrap().len(), 1000);
}

#[test]
fn gzip_bomb_is_refused() {
    let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
    assert!(
        bomb.len() < 64 * 1024,
        "compressed bomb is {} bytes",
        bomb.len()
    );
    match gunzip(&bomb, 1024 * 1024) {
        Err(OtlpError::TooLarge { limit }) => assert_eq!(limit, 1024 * 1024),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        gunzip(&gzip(&[1u8; 1001]), 1000),
        Err(OtlpError::TooLarge { limit: 1000 })
    ));
}

#[test]
fn invalid_gzip_is_a_decode_error() {
    assert!(matches!(
        gunzip(b"definitely not gzip", 1024),
        Err(OtlpError::Decode(_))
    ));
    let mut truncated = gzip(&[5u8; 5000]);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        gunzip(&truncated, 1 << 20),
        Err(OtlpError::Decode(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// traces: protobuf
// ---------------------------------------------------------------------------------------------

#[test]
fn protobuf_traces_decode() {
    let mut root = proto_span(
        &TRACE,
        &ROOT,
        &[],
        "GET /checkout",
        span::SpanKind::Server,
        T0,
        T0 + 250_000_000,
    );
    root.attributes = vec![
        kv("http.method", s("GET")),
        kv("http.route", s("/checkout")),
        kv("http.status_code", i(500)),
        kv("sampled", any_value::Value::BoolValue(true)),
        kv("ratio", any_value::Value::DoubleValue(0.5)),
        kv("nan", any_value::Value::DoubleValue(f64::NAN)),
        kv(
            "raw",
            any_value::Value::BytesValue(vec![0xde, 0xad, 0xbe, 0xef]),
        ),
        kv(
            "list",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![av(s("a")), av(i(2))],
            }),
        ),
        kv(
            "map",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", any_value::Value::BoolValue(false))],
            }),
        ),
        KeyValue {
            key: "empty".into(),
            value: Some(AnyValue { value: None }),
        },
    ];
    root.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: "boom".into(),
    });
    root.events = vec![span::Event {
        time_unix_nano: T0 + 1,
        name: "exception".into(),
        attributes: vec![kv("exception.type", s("ZeroDivisionError"))],
        ..Default::default()
    }];
    root.links = vec![span::Link {
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        attributes: vec![kv("k", s("v"))],
        ..Default::default()
    }];
    let child = proto_span(
        &TRACE,
        &CHILD,
        &ROOT,
        "SELECT",
        span::SpanKind::Client,
        T0 + 1_000,
        T0 + 1_500_000,
    );
    let decoded = decode_proto(&trace_request(Some("checkout-py"), vec![root, child]));
    assert_eq!(decoded.rejected_spans, 0);
    assert_eq!(decoded.error_message, "");
    assert_eq!(decoded.spans.len(), 2);

    let r = &decoded.spans[0];
    assert_eq!(r.trace_id, TRACE_HEX);
    assert_eq!(r.span_id, ROOT_HEX);
    assert_eq!(r.parent_span_id, None);
    assert_eq!(r.name, "GET /checkout");
    assert_eq!(r.kind, "server");
    assert_eq!(r.service, "checkout-py");
    assert_eq!(r.scope, "opentelemetry.instrumentation.flask");
    assert_eq!(r.start_ns, T0 as i64);
    assert_eq!(r.end_ns, (T0 + 250_000_000) as i64);
    assert!((r.duration_ms - 250.0).abs() < 1e-9);
    assert_eq!(r.status, "error");
    assert_eq!(r.status_message, "boom");
    assert_eq!(
        Value::Object(r.attributes.clone()),
        json!({
            "http.method": "GET", "http.route": "/checkout", "http.status_code": 500, "sampled": true,
            "ratio": 0.5, "nan": "NaN", "raw": "deadbeef", "list": ["a", 2], "map": {"inner": false}, "empty": null
        })
    );
    assert_eq!(
        Value::Object(r.resource.clone()),
        json!({"service.name": "checkout-py"})
    );
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].name, "exception");
    assert_eq!(r.events[0].time_ns, (T0 + 1) as i64);
    assert_eq!(
        r.events[0].attributes["exception.type"],
        json!("ZeroDivisionError")
    );
    assert_eq!(r.links[0].trace_id, "ab".repeat(16));
    assert_eq!(r.links[0].span_id, "cd".repeat(8));
    assert_eq!(r.links[0].attributes["k"], json!("v"));
    assert!(r.is_error() && r.is_entry() && !r.is_self_telemetry());

    let c = &decoded.spans[1];
    assert_eq!(c.span_id, "0102030405060708");
    assert_eq!(c.parent_span_id.as_deref(), Some(ROOT_HEX));
    assert_eq!(c.kind, "client");
    assert_eq!(c.status, "unset");
    assert!((c.duration_ms - 1.499).abs() < 1e-9);
    assert!(!c.is_error() && !c.is_entry());
}

#[test]
fn protobuf_defaults_and_kinds() {
    let kinds = [
        (span::SpanKind::Unspecified, "unspecified"),
        (span::SpanKind::Internal, "internal"),
        (span::SpanKind::Server, "server"),
        (span::SpanKind::Client, "client"),
        (span::SpanKind::Producer, "producer"),
        (span::SpanKind::Consumer, "consumer"),
    ];
    let spans = kinds
        .iter()
        .enumerate()
        .map(|(n, (kind, _))| proto_span(&TRACE, &[n as u8 + 1; 8], &ROOT, "op", *kind, T0, T0))
        .collect();
    let mut req = trace_request(None, spans);
    req.resource_spans[0].resource = None;
    req.resource_spans[0].scope_spans[0].scope = None;
    let decoded = decode_proto(&req);
    assert_eq!(decoded.spans.len(), 6);
    for (r, (_, name)) in decoded.spans.iter().zip(kinds) {
        assert_eq!(r.kind, name);
        assert_eq!(r.service, "unknown_service");
        assert_eq!(r.scope, "");
        assert!(r.resource.is_empty());
        assert_eq!(r.duration_ms, 0.0);
        assert_eq!(
            r.is_entry(),
            name == "server" || name == "consumer",
            "{name}"
        );
    }
    // An all-zero parent id means "no parent"; a huge u64 time clamps into i64.
    let s = proto_span(
        &TRACE,
        &ROOT,
        &[0; 8],
        "op",
        span::SpanKind::Internal,
        T0,
        u64::MAX,
    );
    let r = &decode_proto(&trace_request(Some("svc"), vec![s])).spans[0];
    assert_eq!(r.parent_span_id, None);
    assert!(r.is_entry());
    assert_eq!(r.end_ns, i64::MAX);
    // Empty request, empty body.
    assert!(decode_traces(b"", Encoding::Protobuf)
        .unwrap()
        .spans
        .is_empty());
    assert!(decode_traces(br#"{}"#, Encoding::Json)
        .unwrap()
        .spans
        .is_empty());
}

#[test]
fn invalid_spans_are_rejected_and_counted() {
    let ok = proto_span(&TRACE, &ROOT, &[], "ok", span::SpanKind::Server, T0, T0 + 5);
    let spans = vec![
        ok.clone(),
        proto_span(
            &TRACE[..15],
            &ROOT,
            &[],
            "short trace",
            span::SpanKind::Server,
            T0,
            T0,
        ),
        proto_span(
            &[0; 16],
            &ROOT,
            &[],
            "zero trace",
            span::SpanKind::Server,
            T0,
            T0,
        ),
        proto_span(
            &TRACE,
            &[0; 8],
            &[],
            "zero span",
            span::SpanKind::Server,
            T0,
            T0,
        ),
        proto_span(
            &TRACE,
            &[1; 9],
            &[],
            "long span",
            span::SpanKind::Server,
            T0,
            T0,
        ),
        proto_span(
            &TRACE,
            &[],
            &[],
            "missing span",
            span::SpanKind::Server,
            T0,
            T0,
        ),
        proto_span(
            &TRACE,
            &CHILD,
            &[1, 2, 3],
            "bad parent",
            span::SpanKind::Server,
            T0,
            T0,
        ),
        proto_span(
            &TRACE,
            &CHILD,
            &ROOT,
            "backwards",
            span::SpanKind::Server,
            T0 + 10,
            T0,
        ),
    ];
    let decoded = decode_proto(&trace_request(Some("svc"), spans));
    assert_eq!(decoded.spans.len(), 1);
    assert_eq!(decoded.spans[0].name, "ok");
    assert_eq!(decoded.rejected_spans, 7);
    let msg = &decoded.error_message;
    assert!(msg.starts_with("7 spans rejected"), "{msg}");
    for part in [
        "invalid trace_id (2)",
        "invalid span_id (3)",
        "invalid parent_span_id (1)",
        "end time before start time (1)",
    ] {
        assert!(msg.contains(part), "{msg} lacks {part}");
    }

    // JSON: unreadable ids and timestamps, wrong lengths, non-object spans.
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": TRACE_HEX, "spanId": ROOT_HEX, "name": "ok", "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
        {"traceId": "not-hex-at-all", "spanId": ROOT_HEX},
        {"traceId": 12345, "spanId": ROOT_HEX},
        {"traceId": TRACE_HEX, "spanId": "00f067aa0ba902"},
        {"spanId": ROOT_HEX},
        {"traceId": TRACE_HEX, "spanId": ROOT_HEX, "parentSpanId": "zz"},
        {"traceId": TRACE_HEX, "spanId": ROOT_HEX, "startTimeUnixNano": "yesterday"},
        {"traceId": TRACE_HEX, "spanId": ROOT_HEX, "startTimeUnixNano": "5", "endTimeUnixNano": 4},
        "span",
        null
    ]}]}]});
    let decoded = decode_traces(body.to_string().as_bytes(), Encoding::Json).unwrap();
    assert_eq!(decoded.spans.len(), 1);
    assert_eq!(decoded.rejected_spans, 9);
    assert!(
        decoded.error_message.contains("span is not an object (2)"),
        "{}",
        decoded.error_message
    );
    assert!(
        decoded.error_message.contains("invalid timestamp (1)"),
        "{}",
        decoded.error_message
    );
}

#[test]
fn garbage_bodies_are_errors() {
    // Field 1, length-delimited, with a length far beyond the body.
    let bad_proto: &[u8] = &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01];
    assert!(matches!(
        decode_traces(bad_proto, Encoding::Protobuf),
        Err(OtlpError::Decode(_))
    ));
    assert!(matches!(
        decode_metrics(bad_proto, Encoding::Protobuf),
        Err(OtlpError::Decode(_))
    ));
    // An invalid wire type.
    assert!(decode_traces(&[0x0f, 0x00], Encoding::Protobuf).is_err());
    // JSON is not protobuf.
    assert!(decode_traces(&fixture("node_traces.json"), Encoding::Protobuf).is_err());
    for body in [
        &b"not json"[..],
        b"",
        b"[]",
        b"\"resourceSpans\"",
        br#"{"resourceSpans": 5}"#,
        br#"{"resourceSpans": [1]}"#,
    ] {
        assert!(
            matches!(
                decode_traces(body, Encoding::Json),
                Err(OtlpError::Decode(_))
            ),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(decode_traces(
        br#"{"resourceSpans": [{"scopeSpans": {"spans": []}}]}"#,
        Encoding::Json
    )
    .is_err());
    assert!(decode_metrics(
        br#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": "x"}]}]}"#,
        Encoding::Json
    )
    .is_err());
    assert!(decode_metrics(b"{", Encoding::Json).is_err());
    // Deeply nested JSON is refused by serde_json's recursion limit, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(decode_traces(deep.as_bytes(), Encoding::Json).is_err());
}

// ---------------------------------------------------------------------------------------------
// traces: OTLP/JSON
// ---------------------------------------------------------------------------------------------

#[test]
fn node_json_fixture() {
    let decoded = decode_traces(&fixture("node_traces.json"), Encoding::Json).unwrap();
    assert_eq!(decoded.rejected_spans, 0);
    assert_eq!(decoded.spans.len(), 2);
    let root = &decoded.spans[0];
    assert_eq!(root.trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(root.span_id, "eee19b7ec3c1b174");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.service, "checkout-node");
    assert_eq!(root.scope, "@opentelemetry/instrumentation-http");
    assert_eq!(root.kind, "server");
    assert_eq!(root.start_ns, 1_704_067_200_000_000_000);
    assert!((root.duration_ms - 250.0).abs() < 1e-9);
    assert_eq!(root.status, "error");
    assert_eq!(root.attributes["http.status_code"], json!(500));
    assert_eq!(root.resource["process.pid"], json!(4242));
    assert_eq!(root.events[0].time_ns, 1_704_067_200_200_000_000);
    assert!(root.is_error() && root.is_entry() && !root.is_self_telemetry());
    assert_eq!(
        code_locations(root),
        vec![
            loc("/app/src/cart.js", 42, "computeTotal", "exception"),
            loc("/app/src/checkout.js", 88, "processCheckout", "exception")
        ]
    );

    // Upper-case hex ids, intValue as a string, every AnyValue kind.
    let child = &decoded.spans[1];
    assert_eq!(child.trace_id, root.trace_id);
    assert_eq!(child.span_id, "a1b2c3d4e5f60718");
    assert_eq!(child.parent_span_id.as_deref(), Some("eee19b7ec3c1b174"));
    assert_eq!(child.kind, "client");
    assert_eq!(child.status, "unset");
    assert!((child.duration_ms - 50.5).abs() < 1e-9);
    assert_eq!(child.attributes["http.status_code"], json!(200));
    assert_eq!(child.attributes["cache.hit"], json!(false));
    assert_eq!(child.attributes["retry.ratio"], json!(0.25));
    assert_eq!(child.attributes["tags"], json!(["a", 2]));
    assert_eq!(child.attributes["peer"], json!({"service": "inventory"}));
    assert_eq!(child.links.len(), 1);
    assert_eq!(child.links[0].trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(child.links[0].span_id, "b7ad6b7169203331");
    // A user API under /v1/ is not self-telemetry.
    assert!(!child.is_self_telemetry());
    assert!(code_locations(child).is_empty());
}

#[test]
fn php_json_fixture_with_numeric_nanos() {
    let decoded = decode_traces(&fixture("php_traces.json"), Encoding::Json).unwrap();
    assert_eq!(decoded.rejected_spans, 0, "{}", decoded.error_message);
    assert_eq!(decoded.spans.len(), 2);
    let root = &decoded.spans[0];
    assert_eq!(root.service, "shop-laravel");
    assert_eq!(root.resource["deployment.environment"], json!("production"));
    assert_eq!(root.scope, "tracekit-php");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.start_ns, 1_704_067_260_000_000_000);
    assert_eq!(root.end_ns, 1_704_067_260_031_000_000);
    assert!((root.duration_ms - 31.0).abs() < 1e-9);
    assert_eq!(root.status, "error");
    assert_eq!(root.events[0].time_ns, 1_704_067_260_030_000_000);
    assert_eq!(
        code_locations(root),
        vec![
            loc(
                "/var/www/app/Http/Controllers/OrderController.php",
                31,
                "App\\Http\\Controllers\\OrderController::store",
                "code_attributes"
            ),
            loc(
                "/var/www/app/Services/PaymentService.php",
                57,
                "App\\Services\\PaymentService::charge",
                "exception"
            ),
        ]
    );
    // Enum names for kind and status.code.
    let child = &decoded.spans[1];
    assert_eq!(child.kind, "client");
    assert_eq!(child.status, "ok");
    assert_eq!(child.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(child.attributes["db.rows"], json!(3));
}

#[test]
fn json_leniency() {
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "lenient"}}]},
        "scope_spans": [{"scope": {"name": "s"}, "spans": [
            {
                // base64 ids (older protobuf-JSON serialisers), enum short names, long-bits time.
                "traceId": "S/kvNXezTaajzpKdDg5HNg==", "spanId": "APBnqgupArc=",
                "parentSpanId": null, "kind": "SPAN_KIND_CONSUMER", "status": {"code": "ERROR"},
                "startTimeUnixNano": {"low": 0, "high": 396_833_292}, "endTimeUnixNano": {"low": 1_000_000, "high": 396_833_292},
                "attributes": [
                    {"key": "a", "value": {"intValue": "-12"}},
                    {"key": "b", "value": {"doubleValue": "NaN"}},
                    {"key": "c", "value": {"bytesValue": "3q2+7w=="}},
                    {"key": "d", "value": "plain"},
                    {"key": "e", "value": {"boolValue": "true"}},
                    {"key": "f", "value": {}},
                    {"key": "g"},
                    {"key": 7, "value": {"stringValue": "skipped"}},
                    {"key": "h", "value": {"intValue": 1.5e3}}
                ]
            },
            {
                // snake_case fields, a UUID trace id, float and string nanos, kind as short name.
                "trace_id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "span_id": "00F067AA0BA902B7", "parent_span_id": "",
                "kind": "server", "start_time_unix_nano": 1.7e18, "end_time_unix_nano": "1700000000000000001",
                "attributes": {"plain.object": {"nested": [1, "x"]}},
                "status": {"code": 1}
            }
        ]}]
    }]});
    let decoded = decode_traces(body.to_string().as_bytes(), Encoding::Json).unwrap();
    assert_eq!(decoded.rejected_spans, 0, "{}", decoded.error_message);
    let a = &decoded.spans[0];
    assert_eq!(a.trace_id, TRACE_HEX);
    assert_eq!(a.span_id, ROOT_HEX);
    assert_eq!(a.parent_span_id, None);
    assert_eq!(a.kind, "consumer");
    assert_eq!(a.status, "error");
    assert_eq!(a.start_ns, 396_833_292_i64 << 32);
    assert!((a.duration_ms - 1.0).abs() < 1e-9);
    assert_eq!(
        Value::Object(a.attributes.clone()),
        json!({"a": -12, "b": "NaN", "c": "deadbeef", "d": "plain", "e": true, "f": null, "g": null, "h": 1500})
    );
    let b = &decoded.spans[1];
    assert_eq!(b.trace_id, TRACE_HEX);
    assert_eq!(b.span_id, ROOT_HEX);
    assert_eq!(b.kind, "server");
    assert_eq!(b.status, "ok");
    assert_eq!(b.start_ns, 1_700_000_000_000_000_000);
    assert_eq!(b.end_ns, 1_700_000_000_000_000_001);
    assert_eq!(b.attributes["plain.object"], json!({"nested": [1, "x"]}));

    // A UTF-8 BOM is ignored.
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend(fixture("php_traces.json"));
    assert_eq!(
        decode_traces(&with_bom, Encoding::Json)
            .unwrap()
            .spans
            .len(),
        2
    );
}

#[test]
fn attribute_nesting_is_bounded() {
    let mut value = av(s("leaf"));
    // 24 levels: 72 nested messages, inside prost's recursion limit of 100.
    for _ in 0..24 {
        value = av(any_value::Value::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "k".into(),
                value: Some(value),
            }],
        }));
    }
    let mut span = proto_span(&TRACE, &ROOT, &[], "deep", span::SpanKind::Server, T0, T0);
    span.attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(value),
    }];
    let decoded = decode_proto(&trace_request(Some("svc"), vec![span]));
    let mut v = &decoded.spans[0].attributes["deep"];
    let mut depth = 0;
    while let Some(inner) = v.get("k") {
        v = inner;
        depth += 1;
    }
    assert_eq!(depth, 16);
    assert_eq!(*v, Value::Null);

    // The same through JSON (plain nested arrays, well inside serde_json's limit).
    let nested = format!("{}1{}", "[".repeat(60), "]".repeat(60));
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{TRACE_HEX}","spanId":"{ROOT_HEX}","attributes":[{{"key":"deep","value":{nested}}}]}}]}}]}}]}}"#
    );
    let decoded = decode_traces(body.as_bytes(), Encoding::Json).unwrap();
    let mut v = &decoded.spans[0].attributes["deep"];
    let mut depth = 0;
    while let Some(inner) = v.get(0) {
        v = inner;
        depth += 1;
    }
    assert!(depth <= 17, "depth {depth}");
}

// ---------------------------------------------------------------------------------------------
// responses
// ---------------------------------------------------------------------------------------------

#[test]
fn trace_responses() {
    let full = encode_trace_response(Encoding::Protobuf, 0, "");
    assert_eq!(
        ExportTraceServiceResponse::decode(full.as_slice())
            .unwrap()
            .partial_success,
        None
    );
    let partial = encode_trace_response(
        Encoding::Protobuf,
        3,
        "3 spans rejected: invalid trace_id (3)",
    );
    let p = ExportTraceServiceResponse::decode(partial.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(p.rejected_spans, 3);
    assert_eq!(p.error_message, "3 spans rejected: invalid trace_id (3)");

    assert_eq!(encode_trace_response(Encoding::Json, 0, ""), b"{}");
    let body: Value =
        serde_json::from_slice(&encode_trace_response(Encoding::Json, 2, "bad \"ids\"")).unwrap();
    assert_eq!(
        body,
        json!({"partialSuccess": {"rejectedSpans": 2, "errorMessage": "bad \"ids\""}})
    );
}

#[test]
fn metrics_responses() {
    let full = encode_metrics_response(Encoding::Protobuf, 0, "");
    assert_eq!(
        ExportMetricsServiceResponse::decode(full.as_slice())
            .unwrap()
            .partial_success,
        None
    );
    let partial = encode_metrics_response(Encoding::Protobuf, 4, "why");
    let p = ExportMetricsServiceResponse::decode(partial.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(
        (p.rejected_data_points, p.error_message.as_str()),
        (4, "why")
    );
    assert_eq!(encode_metrics_response(Encoding::Json, 0, ""), b"{}");
    let body: Value =
        serde_json::from_slice(&encode_metrics_response(Encoding::Json, 1, "x")).unwrap();
    assert_eq!(
        body,
        json!({"partialSuccess": {"rejectedDataPoints": 1, "errorMessage": "x"}})
    );
}

// ---------------------------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------------------------

#[test]
fn tracekit_metrics_body() {
    let decoded = decode_metrics(&fixture("metrics_tracekit.json"), Encoding::Json).unwrap();
    assert_eq!(decoded.rejected_points, 0);
    assert_eq!(decoded.error_message, "");
    assert_eq!(decoded.points.len(), 1);
    let p = &decoded.points[0];
    assert_eq!(p.service, "demo-py");
    assert_eq!(p.name, "demo.requests");
    assert_eq!(p.kind, "sum");
    assert_eq!(p.value, 1.0);
    assert_eq!(p.count, 1);
    assert!(p.monotonic);
    assert_eq!(p.time_ns, 1_795_351_299_454_447_616);
    assert_eq!(
        Value::Object(p.attributes.clone()),
        json!({"route": "/pay"})
    );
}

#[test]
fn json_metrics_kinds_and_rejections() {
    let body = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "mem", "gauge": {"dataPoints": [
            {"asInt": "42", "timeUnixNano": 5, "startTimeUnixNano": 1},
            {"asDouble": "1.5", "startTimeUnixNano": "9"},
            {"timeUnixNano": "5"},
            {"asDouble": "lots", "timeUnixNano": "5"},
            {"asDouble": 1.0, "timeUnixNano": "never"},
            3
        ]}},
        {"name": "latency", "histogram": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA", "dataPoints": [
            {"count": "4", "sum": 10.0, "bucketCounts": ["1", 3], "explicitBounds": [5.0], "timeUnixNano": "7"},
            {"count": 3, "timeUnixNano": "8"}
        ]}},
        {"name": "sizes", "exponentialHistogram": {"dataPoints": [{"count": 2, "sum": 6.0, "scale": 1, "timeUnixNano": 1}]}},
        {"name": "rpc", "summary": {"dataPoints": [{"count": "5", "sum": 2.5, "quantileValues": [{"quantile": 0.5, "value": 0.4}]}]}},
        {"name": "", "sum": {"dataPoints": [{"asDouble": 1.0}, {"asDouble": 2.0}]}},
        {"name": "no.data"}
    ]}]}]});
    let decoded = decode_metrics(body.to_string().as_bytes(), Encoding::Json).unwrap();
    let summary: Vec<(&str, &str, f64, u64, i64)> = decoded
        .points
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.kind.as_str(),
                p.value,
                p.count,
                p.time_ns,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("mem", "gauge", 42.0, 1, 5),
            ("mem", "gauge", 1.5, 1, 9),
            ("latency", "histogram", 10.0, 4, 7),
            ("latency", "histogram", 3.0, 3, 8),
            ("sizes", "exponential_histogram", 6.0, 2, 1),
            ("rpc", "summary", 2.5, 5, 0),
        ]
    );
    assert!(decoded
        .points
        .iter()
        .all(|p| p.service == "unknown_service" && !p.monotonic));
    assert_eq!(decoded.rejected_points, 6, "{}", decoded.error_message);
    for part in [
        "missing metric name (2)",
        "missing or non-finite value (1)",
        "invalid value (1)",
        "invalid timestamp (1)",
    ] {
        assert!(
            decoded.error_message.contains(part),
            "{} lacks {part}",
            decoded.error_message
        );
    }
}

#[test]
fn protobuf_metrics() {
    let point = |value: number_data_point::Value, time: u64| NumberDataPoint {
        attributes: vec![kv("host", s("a"))],
        time_unix_nano: time,
        value: Some(value),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: "requests".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(number_data_point::Value::AsInt(3), T0)],
                aggregation_temporality: 1,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "temp".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![
                    point(number_data_point::Value::AsDouble(21.5), T0 + 1),
                    point(number_data_point::Value::AsDouble(f64::INFINITY), T0 + 2),
                    NumberDataPoint {
                        time_unix_nano: T0,
                        ..Default::default()
                    },
                ],
            })),
            ..Default::default()
        },
        Metric {
            name: "latency".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 9,
                    sum: Some(90.0),
                    time_unix_nano: T0,
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "exp".into(),
            data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    count: 4,
                    sum: None,
                    time_unix_nano: T0,
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "sum".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    count: 2,
                    sum: 0.75,
                    time_unix_nano: T0,
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
    ];
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("metrics-go"))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let decoded = decode_metrics(&req.encode_to_vec(), Encoding::Protobuf).unwrap();
    assert_eq!(decoded.rejected_points, 2, "{}", decoded.error_message);
    let got: Vec<(&str, &str, f64, u64, bool)> = decoded
        .points
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.kind.as_str(),
                p.value,
                p.count,
                p.monotonic,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("requests", "sum", 3.0, 1, true),
            ("temp", "gauge", 21.5, 1, false),
            ("latency", "histogram", 90.0, 9, false),
            ("exp", "exponential_histogram", 4.0, 4, false),
            ("sum", "summary", 0.75, 2, false),
        ]
    );
    assert!(decoded.points.iter().all(|p| p.service == "metrics-go"));
    assert_eq!(decoded.points[0].attributes["host"], json!("a"));
    assert_eq!(decoded.points[0].time_ns, T0 as i64);
}

// ---------------------------------------------------------------------------------------------
// self-telemetry, entry, error
// ---------------------------------------------------------------------------------------------

#[test]
fn self_telemetry_detection() {
    let client = |attrs: Value| {
        let mut r = record(attrs, Vec::new());
        r.kind = "client".into();
        r.name = "POST".into();
        r.parent_span_id = Some(ROOT_HEX.into());
        r
    };
    assert!(client(
        json!({"http.method": "POST", "http.url": "http://127.0.0.1:8081/sdk/snapshots/capture"})
    )
    .is_self_telemetry());
    assert!(client(json!({"url.full": "https://app.tracekit.dev/v1/traces"})).is_self_telemetry());
    assert!(
        client(json!({"http.url": "https://app.tracekit.dev/v1/metrics?x=1"})).is_self_telemetry()
    );
    assert!(client(json!({"http.target": "/sdk/snapshots/active/checkout"})).is_self_telemetry());
    assert!(client(json!({"url.path": "/api/sdk/snapshots/auto-register"})).is_self_telemetry());
    assert!(
        client(json!({"http.url": "HTTP://LOCALHOST:8081/SDK/SNAPSHOTS/CHECKIN"}))
            .is_self_telemetry()
    );
    let mut named = client(json!({}));
    named.name = "POST /sdk/snapshots/capture".into();
    assert!(named.is_self_telemetry());
    named.name = "GET http://localhost:8081/v1/traces".into();
    assert!(named.is_self_telemetry());

    // Ordinary spans, including user APIs under /v1/.
    let server = record(
        json!({"http.method": "GET", "http.route": "/checkout", "http.target": "/checkout?id=3"}),
        Vec::new(),
    );
    assert!(!server.is_self_telemetry());
    assert!(!client(json!({"http.url": "https://api.stripe.com/v1/charges"})).is_self_telemetry());
    assert!(!client(json!({"http.route": "/v1/traces-viewer/list"})).is_self_telemetry());
    assert!(
        !client(json!({"http.url": "https://example.com/docs?next=/sdk/x"})).is_self_telemetry()
    );
    assert!(!client(json!({"http.url": 42})).is_self_telemetry());
}

#[test]
fn entry_and_error() {
    let mut r = record(json!({}), Vec::new());
    assert!(r.is_entry() && !r.is_error());
    r.kind = "internal".into();
    r.parent_span_id = Some(ROOT_HEX.into());
    assert!(!r.is_entry());
    r.kind = "consumer".into();
    assert!(r.is_entry());
    r.status = "error".into();
    assert!(r.is_error());
    let with_exception = record(json!({}), vec![exception("Error: x")]);
    assert!(with_exception.is_error());
}

// ---------------------------------------------------------------------------------------------
// code discovery
// ---------------------------------------------------------------------------------------------

#[test]
fn code_attributes_current_convention() {
    let r = record(
        json!({"code.file.path": "/app/src/orders.rs", "code.line.number": 88, "code.function.name": "orders::place", "code.column.number": 5}),
        Vec::new(),
    );
    assert_eq!(
        code_locations(&r),
        vec![loc(
            "/app/src/orders.rs",
            88,
            "orders::place",
            "code_attributes"
        )]
    );
}

#[test]
fn code_attributes_old_convention() {
    let r = record(
        json!({"code.filepath": "com/example/OrderService.java", "code.lineno": "57", "code.function": "place", "code.namespace": "com.example.OrderService"}),
        Vec::new(),
    );
    assert_eq!(
        code_locations(&r),
        vec![loc(
            "com/example/OrderService.java",
            57,
            "com.example.OrderService.place",
            "code_attributes"
        )]
    );
    // Already qualified; line as a double; no function.
    let r = record(
        json!({"code.filepath": "a.py", "code.lineno": 3.0, "code.function": "m.f", "code.namespace": "m"}),
        Vec::new(),
    );
    assert_eq!(
        code_locations(&r),
        vec![loc("a.py", 3, "m.f", "code_attributes")]
    );
    let r = record(
        json!({"code.filepath": "a.py", "code.lineno": 3}),
        Vec::new(),
    );
    assert_eq!(
        code_locations(&r),
        vec![loc("a.py", 3, "", "code_attributes")]
    );
    // A file without a usable line, or a line without a file, is no location.
    for attrs in [
        json!({"code.filepath": "a.py"}),
        json!({"code.filepath": "a.py", "code.lineno": 0}),
        json!({"code.filepath": "a.py", "code.lineno": "x"}),
        json!({"code.lineno": 3, "code.function": "f"}),
        json!({"code.filepath": "", "code.lineno": 3}),
    ] {
        assert!(
            code_locations(&record(attrs.clone(), Vec::new())).is_empty(),
            "{attrs}"
        );
    }
}

#[test]
fn python_traceback_user_frames_only() {
    let stack = String::from_utf8(fixture("python_traceback.txt")).unwrap();
    let mut span = proto_span(
        &TRACE,
        &ROOT,
        &[],
        "POST /checkout",
        span::SpanKind::Server,
        T0,
        T0 + 9,
    );
    span.events = vec![span::Event {
        time_unix_nano: T0 + 5,
        name: "exception".into(),
        attributes: vec![
            kv("exception.type", s("ZeroDivisionError")),
            kv("exception.message", s("division by zero")),
            kv("exception.stacktrace", s(&stack)),
            kv("exception.escaped", any_value::Value::BoolValue(false)),
        ],
        ..Default::default()
    }];
    let decoded = decode_proto(&trace_request(Some("shop-py"), vec![span]));
    let locations = code_locations(&decoded.spans[0]);
    // Innermost user frame first; no site-packages or stdlib frames.
    assert_eq!(
        locations,
        vec![
            loc("/app/shop/pricing.py", 12, "compute_total", "exception"),
            loc("/app/shop/views.py", 25, "checkout", "exception")
        ]
    );
}

#[test]
fn exception_frames_dedup_and_caps() {
    // Only library frames: none kept.
    let lib_only = "Error: x\n    at f (/app/node_modules/lib/index.js:1:1)\n    at node:internal/process/task_queues:95:5";
    assert!(code_locations(&record(json!({}), vec![exception(lib_only)])).is_empty());

    // Two identical exception events (SDK + OTel recordException) and a matching code attribute.
    let go = "main.handler\n\t/app/main.go:42\nmain.main\n\t/app/main.go:10\nruntime.main\n\t/usr/local/go/src/runtime/proc.go:250\n";
    let r = record(
        json!({"code.filepath": "/app/main.go", "code.lineno": 42}),
        vec![exception(go), exception(go)],
    );
    assert_eq!(
        code_locations(&r),
        vec![
            loc("/app/main.go", 42, "main.handler", "code_attributes"),
            loc("/app/main.go", 10, "main.main", "exception")
        ]
    );

    // At most 8 per event, 32 per span.
    let event = |base: usize| {
        let stack: String = (0..20)
            .map(|n| format!("    at f{n} (/app/src/m{base}.js:{}:1)\n", n + 1))
            .collect();
        exception(&format!("Error: x\n{stack}"))
    };
    let one = code_locations(&record(json!({}), vec![event(0)]));
    assert_eq!(one.len(), MAX_LOCATIONS_PER_EVENT);
    assert_eq!(one[0], loc("/app/src/m0.js", 1, "f0", "exception"));
    let many = code_locations(&record(json!({}), (0..10).map(event).collect()));
    assert_eq!(many.len(), MAX_LOCATIONS_PER_SPAN);
    let mut keys: Vec<(String, i64)> = many.iter().map(|l| (l.file.clone(), l.line)).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), MAX_LOCATIONS_PER_SPAN);

    // Non-exception events and non-string stack traces are ignored.
    let mut other = exception("Error: x\n    at f (/app/a.js:1:1)");
    other.name = "log".into();
    let mut not_string = exception("");
    not_string.attributes.insert(
        "exception.stacktrace".into(),
        json!(["at f (/app/a.js:1:1)"]),
    );
    assert!(code_locations(&record(json!({}), vec![other, not_string])).is_empty());
}

#[test]
fn records_round_trip_through_serde() {
    let decoded = decode_traces(&fixture("node_traces.json"), Encoding::Json).unwrap();
    let text = serde_json::to_string(&decoded.spans).unwrap();
    let back: Vec<SpanRecord> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, decoded.spans);
    let metrics = decode_metrics(&fixture("metrics_tracekit.json"), Encoding::Json).unwrap();
    let text = serde_json::to_string(&metrics.points).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<sightline_core::otlp::MetricPoint>>(&text).unwrap(),
        metrics.points
    );
}

// ---------------------------------------------------------------------------------------------
// robustness (a deterministic mini-fuzz; the cargo-fuzz target is fuzz/fuzz_targets/otlp.rs)
// ---------------------------------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn exercise(body: &[u8]) {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        if let Ok(d) = decode_traces(body, encoding) {
            assert_eq!(d.rejected_spans == 0, d.error_message.is_empty());
            for span in &d.spans {
                assert_eq!((span.trace_id.len(), span.span_id.len()), (32, 16));
                assert!(span.end_ns >= span.start_ns && span.duration_ms >= 0.0);
                let _ = (span.is_error(), span.is_entry(), span.is_self_telemetry());
                assert!(code_locations(span).len() <= MAX_LOCATIONS_PER_SPAN);
            }
        }
        if let Ok(d) = decode_metrics(body, encoding) {
            assert!(d.points.iter().all(|p| p.value.is_finite()));
        }
    }
    let _ = gunzip(body, 4096);
}

/// Replaces one random node of a JSON document with a value of another type.
fn mutate_json(v: &mut Value, rng: &mut XorShift) {
    const REPLACEMENTS: [&str; 10] = [
        "null", "1", "-1", "\"x\"", "[]", "{}", "1.5e300", "\"NaN\"", "true", "[{}]",
    ];
    let children = match v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    if children == 0 || rng.below(4) == 0 {
        *v = serde_json::from_str(REPLACEMENTS[rng.below(REPLACEMENTS.len())]).unwrap();
        return;
    }
    let pick = rng.below(children);
    match v {
        Value::Array(a) => mutate_json(&mut a[pick], rng),
        Value::Object(o) => {
            if let Some((_, child)) = o.iter_mut().nth(pick) {
                mutate_json(child, rng);
            }
        }
        _ => {}
    }
}

#[test]
fn mutated_inputs_never_panic() {
    let mut span = proto_span(
        &TRACE,
        &ROOT,
        &CHILD,
        "GET /x",
        span::SpanKind::Server,
        T0,
        T0 + 10,
    );
    span.attributes = vec![
        kv("http.url", s("http://h/sdk/snapshots/capture")),
        kv("n", i(3)),
    ];
    span.events = vec![span::Event {
        name: "exception".into(),
        attributes: vec![kv(
            "exception.stacktrace",
            s("Error\n    at f (/app/a.js:1:2)"),
        )],
        ..Default::default()
    }];
    let proto = trace_request(Some("svc"), vec![span]).encode_to_vec();
    let seeds = [
        fixture("node_traces.json"),
        fixture("php_traces.json"),
        fixture("metrics_tracekit.json"),
        proto.clone(),
        gzip(&proto),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..1500 {
        let mut body = seeds[round % seeds.len()].clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(body.len());
            match rng.below(3) {
                0 if !body.is_empty() => body[at] ^= 1 << rng.below(8),
                1 => body.insert(at, rng.next() as u8),
                _ => body.truncate(at.max(1)),
            }
        }
        exercise(&body);
    }
    for round in 0..600 {
        let seed = &seeds[round % 3];
        let mut doc: Value = serde_json::from_slice(seed).unwrap();
        for _ in 0..=rng.below(3) {
            mutate_json(&mut doc, &mut rng);
        }
        exercise(doc.to_string().as_bytes());
    }
}
