//! OTLP ingest for `/v1/traces` and `/v1/metrics` (DESIGN §8, wire-protocol reference §8):
//! decoding of OTLP/HTTP bodies into [`SpanRecord`]s and [`MetricPoint`]s, the export
//! responses, bounded gunzip, and code-location extraction from spans ([`code_locations`]).
//!
//! # Encodings
//!
//! * **Protobuf** (`application/x-protobuf`; GO, PY, JAVA, .NET, RUBY SDKs) is decoded with
//!   `prost` into the `opentelemetry-proto` message types (prost's recursion limit applies).
//! * **OTLP/JSON** (`application/json`; NODE, PHP, browser SDKs) is read into a
//!   `serde_json::Value` and walked leniently into the same `opentelemetry-proto` types, so
//!   both encodings share one conversion. The crate's own serde support is not used: it
//!   requires `*UnixNano` as strings (Node/PHP send numbers too), accepts enums only as
//!   integers, and fails the whole request on one unrecognised `AnyValue`. The JSON reader
//!   accepts (reference §8.1):
//!   - ids as hex (any case; a dashed UUID for trace ids) or, as older protobuf-JSON
//!     serialisers sent them, base64;
//!   - `*UnixNano`, `intValue`, `asInt`, `count`… as JSON numbers, decimal strings, or
//!     `{ "low": …, "high": … }` long-bits objects; `doubleValue`/`asDouble` as numbers or
//!     strings (`"NaN"`, `"Infinity"`);
//!   - `kind`, `status.code` and `aggregationTemporality` as integers, full enum names
//!     (`"SPAN_KIND_SERVER"`) or short names (`"SERVER"`, `"server"`);
//!   - camelCase or snake_case field names, `null` for absent fields, a UTF-8 BOM, and
//!     attributes given as plain JSON values or a plain JSON object.
//!
//!   A body that is not JSON, not an object, or whose containers (`resourceSpans`,
//!   `scopeSpans`, `spans`, …) are not arrays of objects is a [`OtlpError::Decode`]. A span or
//!   data point with an unreadable id or timestamp is *rejected* (counted), not fatal.
//!
//! # Validation
//!
//! Spans need a 16-byte non-zero trace id, an 8-byte non-zero span id, an absent/empty (or
//! all-zero) or 8-byte parent span id, and `end >= start`; others are rejected and counted in
//! [`DecodedTraces::rejected_spans`] with a summary in `error_message`, which the export
//! response reports as `partial_success`. Metric data points need a metric name and a
//! finite value.
//!
//! # Bounds
//!
//! Nothing here panics on any input. [`AnyValue`] flattening stops at
//! [`MAX_ATTRIBUTE_DEPTH`] nested arrays/kvlists (deeper values become `null`); serde_json's
//! own nesting limit (128) bounds JSON parsing; [`gunzip`] stops at its output limit.

mod json;

use std::collections::BTreeMap;
use std::io::Read;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Metric, NumberDataPoint};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::stacktrace;

/// Deepest nesting of array/kvlist attribute values that is flattened; deeper values become
/// `null`.
pub const MAX_ATTRIBUTE_DEPTH: usize = 16;
/// Most code locations [`code_locations`] takes from one `exception` event.
pub const MAX_LOCATIONS_PER_EVENT: usize = 8;
/// Most code locations [`code_locations`] returns for one span.
pub const MAX_LOCATIONS_PER_SPAN: usize = 32;
/// Service name of spans and metrics whose resource has no `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Body encoding of an OTLP/HTTP request (and of its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a Content-Type header value: `application/x-protobuf` or `application/protobuf`
    /// → Protobuf; `application/json` (any parameters) → Json; anything else → `None`.
    /// Case-insensitive.
    pub fn from_content_type(ct: &str) -> Option<Encoding> {
        let media = ct.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf")
            || media.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    /// The Content-Type to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Why an OTLP body could not be used at all (→ 400, or 413 for [`OtlpError::TooLarge`]).
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// Not a decodable OTLP body (bad protobuf, bad JSON, bad gzip).
    #[error("invalid OTLP body: {0}")]
    Decode(String),
    /// Decompressed body larger than the limit.
    #[error("decompressed body exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

/// Bounded gunzip (zip-bomb safe): decompresses a gzip body (concatenated members too) and
/// fails with [`OtlpError::TooLarge`] as soon as the output would exceed `limit` bytes, or
/// [`OtlpError::Decode`] when it is not valid gzip.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, OtlpError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| OtlpError::Decode(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(OtlpError::TooLarge { limit });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// One span, flattened for storage and display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// 16 lowercase hex digits; `None` for a root span (absent, empty or all-zero parent).
    pub parent_span_id: Option<String>,
    pub name: String,
    /// `"unspecified"`, `"internal"`, `"server"`, `"client"`, `"producer"` or `"consumer"`.
    pub kind: String,
    /// Resource `service.name`, [`UNKNOWN_SERVICE`] if absent.
    pub service: String,
    /// Unix nanoseconds (values above `i64::MAX` clamped).
    pub start_ns: i64,
    pub end_ns: i64,
    pub duration_ms: f64,
    /// `"unset"`, `"ok"` or `"error"`.
    pub status: String,
    pub status_message: String,
    /// Span attributes, `AnyValue`s flattened to JSON (bytes as lowercase hex).
    pub attributes: Map<String, Value>,
    /// Resource attributes, flattened the same way.
    pub resource: Map<String, Value>,
    /// Instrumentation scope name.
    pub scope: String,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
}

/// A span event (`exception` events carry `exception.type/message/stacktrace`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub name: String,
    pub time_ns: i64,
    pub attributes: Map<String, Value>,
}

/// A span link (ids as lowercase hex, as sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: String,
    pub span_id: String,
    pub attributes: Map<String, Value>,
}

/// Span attributes holding the URL or path of an HTTP call, for [`SpanRecord::is_self_telemetry`].
const URL_ATTRIBUTES: [&str; 5] = [
    "http.url",
    "url.full",
    "http.target",
    "url.path",
    "http.route",
];

impl SpanRecord {
    /// Status error, or an `exception` event.
    pub fn is_error(&self) -> bool {
        self.status == "error" || self.events.iter().any(|e| e.name == "exception")
    }

    /// SDK self-telemetry: spans of calls to Sightline/TraceKit's own endpoints (the PY SDK's
    /// auto-instrumentation traces its own `/sdk/snapshots/*` polling and uploads) — never
    /// indexed or listed.
    ///
    /// True when `http.url`, `url.full`, `http.target`, `url.path` or `http.route`, or a
    /// path/URL word of the span name (`POST /sdk/snapshots/capture`), has a path that starts
    /// with `/sdk/`, contains `/sdk/snapshots`, or ends with `/v1/traces`, `/v1/metrics` or
    /// `/v1/logs` (query and trailing `/` ignored). Other `/v1/…` paths are user APIs.
    pub fn is_self_telemetry(&self) -> bool {
        let attr_hit = URL_ATTRIBUTES
            .iter()
            .filter_map(|k| self.attributes.get(*k).and_then(Value::as_str))
            .any(is_own_endpoint);
        attr_hit
            || self
                .name
                .split_whitespace()
                .filter(|w| w.starts_with('/') || w.contains("://"))
                .any(is_own_endpoint)
    }

    /// Local root / request span: kind server or consumer, or no parent.
    pub fn is_entry(&self) -> bool {
        self.kind == "server" || self.kind == "consumer" || self.parent_span_id.is_none()
    }
}

/// Whether a URL or path names one of the Sightline/TraceKit endpoints the SDKs call.
fn is_own_endpoint(url: &str) -> bool {
    let path = match url.find("://") {
        Some(i) => {
            let rest = url.get(i + 3..).unwrap_or("");
            rest.find('/').and_then(|j| rest.get(j..)).unwrap_or("")
        }
        None => url,
    };
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let trimmed = path.trim_end_matches('/');
    path.starts_with("/sdk/")
        || path.contains("/sdk/snapshots")
        || ["/v1/traces", "/v1/metrics", "/v1/logs"]
            .iter()
            .any(|s| trimmed.ends_with(s))
}

/// Result of [`decode_traces`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedTraces {
    pub spans: Vec<SpanRecord>,
    pub rejected_spans: i64,
    /// Summary of why spans were rejected, `""` if none were.
    pub error_message: String,
}

/// One metric data point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub service: String,
    pub name: String,
    /// `"sum"`, `"gauge"`, `"histogram"`, `"exponential_histogram"` or `"summary"`.
    pub kind: String,
    /// Sum/gauge value; histograms and summaries: their sum, or count if no sum.
    pub value: f64,
    /// Histogram/summary count, 1 otherwise.
    pub count: u64,
    /// `isMonotonic` of sums; false otherwise.
    pub monotonic: bool,
    /// `timeUnixNano`, or `startTimeUnixNano` when that is 0 (0 when both are).
    pub time_ns: i64,
    /// Data point attributes.
    pub attributes: Map<String, Value>,
}

/// Result of [`decode_metrics`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedMetrics {
    pub points: Vec<MetricPoint>,
    pub rejected_points: i64,
    /// Summary of why points were rejected, `""` if none were.
    pub error_message: String,
}

/// Rejected items by reason.
#[derive(Debug, Default)]
struct Rejections {
    total: i64,
    reasons: BTreeMap<&'static str, i64>,
}

impl Rejections {
    fn add(&mut self, reason: &'static str) {
        self.add_n(reason, 1);
    }

    fn add_n(&mut self, reason: &'static str, n: i64) {
        if n > 0 {
            self.total = self.total.saturating_add(n);
            let slot = self.reasons.entry(reason).or_insert(0);
            *slot = slot.saturating_add(n);
        }
    }

    /// `"2 spans rejected: end time before start time (1), invalid trace_id (1)"`.
    fn message(&self, what: &str) -> String {
        if self.total == 0 {
            return String::new();
        }
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{r} ({n})"))
            .collect();
        format!("{} {what} rejected: {}", self.total, reasons.join(", "))
    }
}

// ---------------------------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------------------------

/// Decodes an `ExportTraceServiceRequest`. Spans with invalid ids (wrong length, all zero),
/// unreadable timestamps or `end < start` are rejected (counted), not fatal. An undecodable
/// body is [`OtlpError::Decode`] (→ 400).
pub fn decode_traces(body: &[u8], encoding: Encoding) -> Result<DecodedTraces, OtlpError> {
    let mut rejections = Rejections::default();
    let request = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            OtlpError::Decode(format!("invalid protobuf ExportTraceServiceRequest: {e}"))
        })?,
        Encoding::Json => json::trace_request(body, &mut rejections)?,
    };
    let mut spans = Vec::new();
    for rs in request.resource_spans {
        let resource = rs
            .resource
            .map(|r| attributes_to_map(&r.attributes))
            .unwrap_or_default();
        let service = service_name(&resource);
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            for span in ss.spans {
                match span_record(span, &service, &resource, &scope) {
                    Ok(record) => spans.push(record),
                    Err(reason) => rejections.add(reason),
                }
            }
        }
    }
    Ok(DecodedTraces {
        spans,
        rejected_spans: rejections.total,
        error_message: rejections.message("spans"),
    })
}

fn service_name(resource: &Map<String, Value>) -> String {
    match resource.get("service.name").and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => s.to_owned(),
        _ => UNKNOWN_SERVICE.to_owned(),
    }
}

/// Lowercase hex of an id of exactly `len` bytes that are not all zero.
fn valid_id(bytes: &[u8], len: usize) -> Option<String> {
    (bytes.len() == len && bytes.iter().any(|b| *b != 0)).then(|| hex::encode(bytes))
}

fn clamp_ns(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn span_record(
    span: Span,
    service: &str,
    resource: &Map<String, Value>,
    scope: &str,
) -> Result<SpanRecord, &'static str> {
    let trace_id = valid_id(&span.trace_id, 16).ok_or("invalid trace_id")?;
    let span_id = valid_id(&span.span_id, 8).ok_or("invalid span_id")?;
    let parent_span_id = match span.parent_span_id.as_slice() {
        [] => None,
        p if p.len() == 8 && p.iter().all(|b| *b == 0) => None,
        p => Some(valid_id(p, 8).ok_or("invalid parent_span_id")?),
    };
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err("end time before start time");
    }
    let start_ns = clamp_ns(span.start_time_unix_nano);
    let end_ns = clamp_ns(span.end_time_unix_nano);
    let duration_ms = end_ns.saturating_sub(start_ns) as f64 / 1e6;
    let (status, status_message) = match span.status {
        Some(s) => {
            let code = match s.code {
                1 => "ok",
                2 => "error",
                _ => "unset",
            };
            (code, s.message)
        }
        None => ("unset", String::new()),
    };
    Ok(SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        name: span.name,
        kind: span_kind_name(span.kind).to_owned(),
        service: service.to_owned(),
        start_ns,
        end_ns,
        duration_ms,
        status: status.to_owned(),
        status_message,
        attributes: attributes_to_map(&span.attributes),
        resource: resource.clone(),
        scope: scope.to_owned(),
        events: span
            .events
            .into_iter()
            .map(|e| SpanEvent {
                name: e.name,
                time_ns: clamp_ns(e.time_unix_nano),
                attributes: attributes_to_map(&e.attributes),
            })
            .collect(),
        links: span
            .links
            .into_iter()
            .map(|l| SpanLink {
                trace_id: hex::encode(&l.trace_id),
                span_id: hex::encode(&l.span_id),
                attributes: attributes_to_map(&l.attributes),
            })
            .collect(),
    })
}

/// `ExportTraceServiceResponse` in `encoding`, with `partial_success` when
/// `rejected_spans > 0`. JSON: `{}` or
/// `{"partialSuccess":{"rejectedSpans":N,"errorMessage":"…"}}`.
pub fn encode_trace_response(
    encoding: Encoding,
    rejected_spans: i64,
    error_message: &str,
) -> Vec<u8> {
    let partial = rejected_spans > 0;
    match encoding {
        Encoding::Protobuf => ExportTraceServiceResponse {
            partial_success: partial.then(|| ExportTracePartialSuccess {
                rejected_spans,
                error_message: error_message.to_owned(),
            }),
        }
        .encode_to_vec(),
        Encoding::Json => {
            let body = if partial {
                serde_json::json!({"partialSuccess": {"rejectedSpans": rejected_spans, "errorMessage": error_message}})
            } else {
                Value::Object(Map::new())
            };
            body.to_string().into_bytes()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// Decodes an `ExportMetricsServiceRequest` (including the SDKs' custom OTLP/JSON body,
/// reference §8.2). Points without a metric name or a finite value, or (JSON) with unreadable
/// timestamps, are rejected (counted). An undecodable body is [`OtlpError::Decode`].
pub fn decode_metrics(body: &[u8], encoding: Encoding) -> Result<DecodedMetrics, OtlpError> {
    let mut rejections = Rejections::default();
    let request = match encoding {
        Encoding::Protobuf => ExportMetricsServiceRequest::decode(body).map_err(|e| {
            OtlpError::Decode(format!("invalid protobuf ExportMetricsServiceRequest: {e}"))
        })?,
        Encoding::Json => json::metrics_request(body, &mut rejections)?,
    };
    let mut points = Vec::new();
    for rm in request.resource_metrics {
        let resource = rm
            .resource
            .map(|r| attributes_to_map(&r.attributes))
            .unwrap_or_default();
        let service = service_name(&resource);
        for sm in rm.scope_metrics {
            for metric in sm.metrics {
                metric_points(metric, &service, &mut points, &mut rejections);
            }
        }
    }
    Ok(DecodedMetrics {
        points,
        rejected_points: rejections.total,
        error_message: rejections.message("data points"),
    })
}

fn data_point_count(data: &metric::Data) -> usize {
    match data {
        metric::Data::Gauge(g) => g.data_points.len(),
        metric::Data::Sum(s) => s.data_points.len(),
        metric::Data::Histogram(h) => h.data_points.len(),
        metric::Data::ExponentialHistogram(h) => h.data_points.len(),
        metric::Data::Summary(s) => s.data_points.len(),
    }
}

fn time_of(time: u64, start: u64) -> i64 {
    clamp_ns(if time == 0 { start } else { time })
}

fn metric_points(
    metric: Metric,
    service: &str,
    out: &mut Vec<MetricPoint>,
    rejections: &mut Rejections,
) {
    let Some(data) = metric.data else { return };
    if metric.name.trim().is_empty() {
        rejections.add_n(
            "missing metric name",
            i64::try_from(data_point_count(&data)).unwrap_or(i64::MAX),
        );
        return;
    }
    let name = metric.name;
    let mut push = |kind: &str,
                    value: f64,
                    count: u64,
                    monotonic: bool,
                    time_ns: i64,
                    attributes: &[KeyValue]| {
        if value.is_finite() {
            out.push(MetricPoint {
                service: service.to_owned(),
                name: name.clone(),
                kind: kind.to_owned(),
                value,
                count,
                monotonic,
                time_ns,
                attributes: attributes_to_map(attributes),
            });
        } else {
            rejections.add("missing or non-finite value");
        }
    };
    let number = |p: &NumberDataPoint| match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    };
    match data {
        metric::Data::Gauge(g) => {
            for p in &g.data_points {
                push(
                    "gauge",
                    number(p),
                    1,
                    false,
                    time_of(p.time_unix_nano, p.start_time_unix_nano),
                    &p.attributes,
                );
            }
        }
        metric::Data::Sum(s) => {
            for p in &s.data_points {
                let time = time_of(p.time_unix_nano, p.start_time_unix_nano);
                push("sum", number(p), 1, s.is_monotonic, time, &p.attributes);
            }
        }
        metric::Data::Histogram(h) => {
            for p in &h.data_points {
                let value = p.sum.unwrap_or(p.count as f64);
                let time = time_of(p.time_unix_nano, p.start_time_unix_nano);
                push("histogram", value, p.count, false, time, &p.attributes);
            }
        }
        metric::Data::ExponentialHistogram(h) => {
            for p in &h.data_points {
                let value = p.sum.unwrap_or(p.count as f64);
                let time = time_of(p.time_unix_nano, p.start_time_unix_nano);
                push(
                    "exponential_histogram",
                    value,
                    p.count,
                    false,
                    time,
                    &p.attributes,
                );
            }
        }
        metric::Data::Summary(s) => {
            for p in &s.data_points {
                let time = time_of(p.time_unix_nano, p.start_time_unix_nano);
                push("summary", p.sum, p.count, false, time, &p.attributes);
            }
        }
    }
}

/// `ExportMetricsServiceResponse` in `encoding`, with `partial_success` when
/// `rejected_points > 0`. JSON: `{}` or
/// `{"partialSuccess":{"rejectedDataPoints":N,"errorMessage":"…"}}`.
pub fn encode_metrics_response(
    encoding: Encoding,
    rejected_points: i64,
    error_message: &str,
) -> Vec<u8> {
    let partial = rejected_points > 0;
    match encoding {
        Encoding::Protobuf => ExportMetricsServiceResponse {
            partial_success: partial.then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rejected_points,
                error_message: error_message.to_owned(),
            }),
        }
        .encode_to_vec(),
        Encoding::Json => {
            let body = if partial {
                serde_json::json!({"partialSuccess": {"rejectedDataPoints": rejected_points, "errorMessage": error_message}})
            } else {
                Value::Object(Map::new())
            };
            body.to_string().into_bytes()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------------

/// Flattens OTLP attributes to a JSON object (later duplicates of a key win).
fn attributes_to_map(attributes: &[KeyValue]) -> Map<String, Value> {
    let mut map = Map::new();
    for kv in attributes {
        map.insert(
            kv.key.clone(),
            kv.value.as_ref().map_or(Value::Null, |v| any_to_json(v, 0)),
        );
    }
    map
}

/// `AnyValue` → JSON: strings, bools, ints, doubles (non-finite as the strings `"NaN"`,
/// `"inf"`, `"-inf"`), arrays, kvlists as objects, bytes as lowercase hex; empty → `null`;
/// nesting deeper than [`MAX_ATTRIBUTE_DEPTH`] → `null`.
fn any_to_json(v: &AnyValue, depth: usize) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex::encode(b)),
        Some(any_value::Value::ArrayValue(a)) => {
            if depth >= MAX_ATTRIBUTE_DEPTH {
                return Value::Null;
            }
            Value::Array(a.values.iter().map(|v| any_to_json(v, depth + 1)).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            if depth >= MAX_ATTRIBUTE_DEPTH {
                return Value::Null;
            }
            let mut map = Map::new();
            for item in &kv.values {
                map.insert(
                    item.key.clone(),
                    item.value
                        .as_ref()
                        .map_or(Value::Null, |v| any_to_json(v, depth + 1)),
                );
            }
            Value::Object(map)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Code discovery
// ---------------------------------------------------------------------------------------------

/// A code location found in a span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredLocation {
    pub file: String,
    pub line: i64,
    /// `""` when unknown.
    pub function: String,
    /// `"exception"` or `"code_attributes"`.
    pub source: String,
}

/// Code locations in a span (DESIGN §8, reference §8.3), deduplicated by file and line, at
/// most [`MAX_LOCATIONS_PER_SPAN`]:
///
/// 1. the span's `code.*` attributes, in both conventions: current `code.file.path`,
///    `code.line.number`, `code.function.name`, and old `code.filepath`, `code.lineno`,
///    `code.function` (prefixed with `code.namespace` and `.`, or `::` for a PHP namespace
///    containing `\`, unless it already starts with it). Line numbers may be ints, doubles
///    or strings. Needs a file and a line > 0.
/// 2. frames of `exception.stacktrace` in every `exception` event, parsed with
///    [`stacktrace::parse`]: user frames only (not [`stacktrace::is_library_frame`]; an
///    event with only library frames gives none), innermost first (Python tracebacks are
///    reversed), at most [`MAX_LOCATIONS_PER_EVENT`] per event.
///
/// A later duplicate of a location whose function is `""` fills the function in.
pub fn code_locations(span: &SpanRecord) -> Vec<DiscoveredLocation> {
    let mut out: Vec<DiscoveredLocation> = Vec::new();
    if let Some(loc) = code_attribute_location(&span.attributes) {
        add_location(&mut out, loc);
    }
    for event in span.events.iter().filter(|e| e.name == "exception") {
        if out.len() >= MAX_LOCATIONS_PER_SPAN {
            break;
        }
        let Some(text) = event
            .attributes
            .get("exception.stacktrace")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let mut frames = stacktrace::parse(text);
        // Python tracebacks print the outermost call first; keep the innermost frames.
        if text.contains("File \"") {
            frames.reverse();
        }
        let mut seen: Vec<(String, i64)> = Vec::new();
        for frame in frames
            .into_iter()
            .filter(|f| !stacktrace::is_library_frame(f))
        {
            if !seen
                .iter()
                .any(|(file, line)| *file == frame.file && *line == frame.line)
            {
                if seen.len() >= MAX_LOCATIONS_PER_EVENT {
                    // Later repeats of kept frames may still name their function.
                    continue;
                }
                seen.push((frame.file.clone(), frame.line));
            }
            add_location(
                &mut out,
                DiscoveredLocation {
                    file: frame.file,
                    line: frame.line,
                    function: frame.function,
                    source: "exception".into(),
                },
            );
        }
    }
    out
}

fn add_location(out: &mut Vec<DiscoveredLocation>, loc: DiscoveredLocation) {
    if let Some(existing) = out
        .iter_mut()
        .find(|l| l.file == loc.file && l.line == loc.line)
    {
        if existing.function.is_empty() {
            existing.function = loc.function;
        }
    } else if out.len() < MAX_LOCATIONS_PER_SPAN {
        out.push(loc);
    }
}

fn attr_string(attributes: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match attributes.get(*k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    })
}

fn attr_int(attributes: &Map<String, Value>, keys: &[&str]) -> Option<i64> {
    keys.iter().find_map(|k| match attributes.get(*k)? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64)
            })
        }
        _ => None,
    })
}

fn code_attribute_location(attributes: &Map<String, Value>) -> Option<DiscoveredLocation> {
    let file = attr_string(attributes, &["code.file.path", "code.filepath"])?;
    let line = attr_int(attributes, &["code.line.number", "code.lineno"]).filter(|l| *l > 0)?;
    let mut function =
        attr_string(attributes, &["code.function.name", "code.function"]).unwrap_or_default();
    if let Some(ns) = attr_string(attributes, &["code.namespace"]) {
        if !function.is_empty() && !function.starts_with(&ns) {
            // PHP namespaces (`App\Http\Foo`) join methods with `::`, as PHP traces print them.
            let sep = if ns.contains('\\') { "::" } else { "." };
            function = format!("{ns}{sep}{function}");
        }
    }
    Some(DiscoveredLocation {
        file,
        line,
        function,
        source: "code_attributes".into(),
    })
}
