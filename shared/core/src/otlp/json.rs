//! Lenient OTLP/JSON reader: walks a `serde_json::Value` into the `opentelemetry-proto`
//! request types (see the module docs of [`super`] for what is accepted). Container fields
//! (`resourceSpans`, `scopeSpans`, `spans`, `metrics`, `dataPoints`) must be arrays of
//! objects (else [`OtlpError::Decode`]); a span or data point with an unreadable id,
//! timestamp or value is rejected; anything else malformed is skipped or defaulted.

use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point, metric, number_data_point, summary_data_point,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{Map, Value};

use super::{OtlpError, Rejections, MAX_ATTRIBUTE_DEPTH};

type Obj = Map<String, Value>;

const SPAN_KINDS: [&str; 6] = [
    "UNSPECIFIED",
    "INTERNAL",
    "SERVER",
    "CLIENT",
    "PRODUCER",
    "CONSUMER",
];
const STATUS_CODES: [&str; 3] = ["UNSET", "OK", "ERROR"];
const TEMPORALITIES: [&str; 3] = ["UNSPECIFIED", "DELTA", "CUMULATIVE"];

const INVALID_TIMESTAMP: &str = "invalid timestamp";

// ---------------------------------------------------------------------------------------------
// Structure
// ---------------------------------------------------------------------------------------------

fn root(body: &[u8]) -> Result<Obj, OtlpError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(OtlpError::Decode(
            "OTLP/JSON body must be a JSON object".into(),
        )),
        Err(e) => Err(OtlpError::Decode(format!("invalid JSON: {e}"))),
    }
}

/// The first of `names` present with a non-null value.
fn get<'a>(o: &'a Obj, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| o.get(*n).filter(|v| !v.is_null()))
}

fn display_name<'a>(names: &[&'a str]) -> &'a str {
    names.first().copied().unwrap_or("field")
}

/// A container field's items: absent/null → none; not an array → Decode.
fn items<'a>(o: &'a Obj, names: &[&str]) -> Result<&'a [Value], OtlpError> {
    match get(o, names) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(OtlpError::Decode(format!(
            "`{}` must be an array",
            display_name(names)
        ))),
    }
}

/// A container field's objects: as [`items`], and every item must be an object.
fn objects<'a>(o: &'a Obj, names: &[&str]) -> Result<Vec<&'a Obj>, OtlpError> {
    items(o, names)?
        .iter()
        .map(|v| {
            v.as_object().ok_or_else(|| {
                OtlpError::Decode(format!("`{}` must contain objects", display_name(names)))
            })
        })
        .collect()
}

/// A non-container list (events, links, buckets): anything but an array reads as empty.
fn lenient_list(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

fn string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        _ => String::new(),
    }
}

fn resource(o: &Obj) -> Option<Resource> {
    let r = get(o, &["resource"])?.as_object()?;
    Some(Resource {
        attributes: key_values(get(r, &["attributes"]), 0),
        ..Default::default()
    })
}

fn scope(o: &Obj) -> Option<InstrumentationScope> {
    let s = get(
        o,
        &["scope", "instrumentationLibrary", "instrumentation_library"],
    )?
    .as_object()?;
    Some(InstrumentationScope {
        name: string(get(s, &["name"])),
        version: string(get(s, &["version"])),
        attributes: key_values(get(s, &["attributes"]), 0),
        dropped_attributes_count: 0,
    })
}

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

fn f64_to_u64(f: f64) -> Option<u64> {
    // `as` saturates; negative values clamp to 0.
    f.is_finite().then_some(if f <= 0.0 { 0 } else { f as u64 })
}

fn f64_to_i64(f: f64) -> Option<i64> {
    f.is_finite().then_some(f as i64)
}

/// JS `Long` objects (`{"low": -1, "high": 2}`, two signed 32-bit halves) as u64 bits.
fn long_bits(o: &Obj) -> Option<u64> {
    let half = |name: &str| match o.get(name)? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok())),
        _ => None,
    };
    let (low, high) = (half("low")?, half("high")?);
    Some(u64::from(low as u32) | (u64::from(high as u32) << 32))
}

/// A non-negative integer from a number, a decimal string or a long-bits object (negative
/// values clamp to 0, fractions truncate).
fn u64_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_i64().map(|_| 0))
            .or_else(|| n.as_f64().and_then(f64_to_u64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<i64>().ok().map(|_| 0))
                .or_else(|| s.parse::<f64>().ok().and_then(f64_to_u64))
        }
        Value::Object(o) => long_bits(o),
        _ => None,
    }
}

/// A signed integer from a number, a decimal string or a long-bits object (saturating).
fn i64_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| n.as_f64().and_then(f64_to_i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<u64>().ok().map(|_| i64::MAX))
                .or_else(|| s.parse::<f64>().ok().and_then(f64_to_i64))
        }
        Value::Object(o) => long_bits(o).map(|bits| bits as i64),
        _ => None,
    }
}

/// A double from a number or a string (`"NaN"`, `"Infinity"`, `"-inf"` included).
fn f64_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn bool_of(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

fn u32_of(v: Option<&Value>) -> u32 {
    v.and_then(u64_of)
        .map_or(0, |u| u32::try_from(u).unwrap_or(u32::MAX))
}

fn i32_of(v: Option<&Value>) -> i32 {
    v.and_then(i64_of).map_or(0, |i| {
        i32::try_from(i).unwrap_or(if i < 0 { i32::MIN } else { i32::MAX })
    })
}

/// Nanosecond timestamp: absent → 0; unreadable → `None` (the item is rejected).
fn nanos(v: Option<&Value>) -> Option<u64> {
    match v {
        None => Some(0),
        Some(v) => u64_of(v),
    }
}

/// An enum as an integer, a full name (`SPAN_KIND_SERVER`) or a short name (`server`);
/// unknown → 0.
fn enum_value(v: Option<&Value>, prefix: &str, names: &[&str]) -> i32 {
    match v {
        Some(Value::Number(n)) => n.as_i64().and_then(|i| i32::try_from(i).ok()).unwrap_or(0),
        Some(Value::String(s)) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i32>() {
                return i;
            }
            let upper = s.to_ascii_uppercase();
            let short = upper.strip_prefix(prefix).unwrap_or(&upper);
            names
                .iter()
                .position(|n| *n == short)
                .and_then(|i| i32::try_from(i).ok())
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Minimal base64 (standard or URL-safe alphabet, padding optional).
pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // One leftover character (length ≡ 1 mod 4) cannot encode a byte.
    (bits < 6).then_some(out)
}

/// Decodes an id of `len` bytes: hex (any case; dashes of a UUID ignored), else base64.
/// Absent/empty → empty (an absent parent, or an invalid trace/span id rejected later).
/// Hex of the wrong length is returned as is, to be rejected later; undecodable → `None`.
fn id(v: Option<&Value>, len: usize) -> Option<Vec<u8>> {
    let s = match v {
        None => return Some(Vec::new()),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return None,
    };
    if s.is_empty() {
        return Some(Vec::new());
    }
    let compact: Cow<'_, str> = if s.len() == 36 && s.contains('-') {
        Cow::Owned(s.replace('-', ""))
    } else {
        Cow::Borrowed(s)
    };
    let from_hex = hex::decode(compact.as_bytes()).ok();
    if from_hex.as_ref().is_some_and(|b| b.len() == len) {
        return from_hex;
    }
    if let Some(b) = base64_decode(s).filter(|b| b.len() == len) {
        return Some(b);
    }
    from_hex
}

// ---------------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------------

/// OTLP `[{key, value}]` lists (entries without a string key skipped), or a plain JSON
/// object of attributes.
fn key_values(v: Option<&Value>, depth: usize) -> Vec<KeyValue> {
    match v {
        Some(Value::Array(entries)) => entries
            .iter()
            .filter_map(|entry| {
                let o = entry.as_object()?;
                let Some(Value::String(key)) = get(o, &["key"]) else {
                    return None;
                };
                Some(KeyValue {
                    key: key.clone(),
                    value: get(o, &["value"]).map(|v| any_value(v, depth)),
                })
            })
            .collect(),
        Some(Value::Object(o)) => plain_object(o, depth),
        _ => Vec::new(),
    }
}

fn plain_object(o: &Obj, depth: usize) -> Vec<KeyValue> {
    o.iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(any_value(v, depth)),
        })
        .collect()
}

fn any_value(v: &Value, depth: usize) -> AnyValue {
    AnyValue {
        value: any_inner(v, depth),
    }
}

/// An OTLP `AnyValue` object, or a plain JSON value taken for what it is. Arrays and
/// kvlists nested deeper than [`MAX_ATTRIBUTE_DEPTH`] are dropped (empty value).
fn any_inner(v: &Value, depth: usize) -> Option<any_value::Value> {
    use any_value::Value as V;
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(V::BoolValue(*b)),
        Value::String(s) => Some(V::StringValue(s.clone())),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => V::IntValue(i),
            None => V::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::Array(items) => {
            if depth >= MAX_ATTRIBUTE_DEPTH {
                return None;
            }
            Some(V::ArrayValue(ArrayValue {
                values: items.iter().map(|i| any_value(i, depth + 1)).collect(),
            }))
        }
        Value::Object(o) => typed_any(o, depth),
    }
}

fn typed_any(o: &Obj, depth: usize) -> Option<any_value::Value> {
    use any_value::Value as V;
    if let Some(v) = get(o, &["stringValue", "string_value"]) {
        return Some(V::StringValue(string(Some(v))));
    }
    if let Some(v) = get(o, &["boolValue", "bool_value"]) {
        return match v {
            Value::Bool(b) => Some(V::BoolValue(*b)),
            Value::String(s) => s.trim().parse::<bool>().ok().map(V::BoolValue),
            _ => None,
        };
    }
    if let Some(v) = get(o, &["intValue", "int_value"]) {
        return i64_of(v).map(V::IntValue);
    }
    if let Some(v) = get(o, &["doubleValue", "double_value"]) {
        return f64_of(v).map(V::DoubleValue);
    }
    if let Some(v) = get(o, &["bytesValue", "bytes_value"]) {
        return match v {
            Value::String(s) => base64_decode(s)
                .or_else(|| hex::decode(s.trim()).ok())
                .map(V::BytesValue),
            _ => None,
        };
    }
    if depth >= MAX_ATTRIBUTE_DEPTH {
        return None;
    }
    if let Some(v) = get(o, &["arrayValue", "array_value"]) {
        let values = match v {
            Value::Object(a) => lenient_list(get(a, &["values"])),
            Value::Array(a) => a.as_slice(),
            _ => &[],
        };
        return Some(V::ArrayValue(ArrayValue {
            values: values.iter().map(|i| any_value(i, depth + 1)).collect(),
        }));
    }
    if let Some(v) = get(o, &["kvlistValue", "kvlist_value"]) {
        let values = match v {
            Value::Object(kv) => match get(kv, &["values"]) {
                Some(list @ Value::Array(_)) => key_values(Some(list), depth + 1),
                _ => plain_object(kv, depth + 1),
            },
            _ => Vec::new(),
        };
        return Some(V::KvlistValue(KeyValueList { values }));
    }
    if o.is_empty() {
        return None;
    }
    Some(V::KvlistValue(KeyValueList {
        values: plain_object(o, depth + 1),
    }))
}

// ---------------------------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------------------------

pub(super) fn trace_request(
    body: &[u8],
    rejections: &mut Rejections,
) -> Result<ExportTraceServiceRequest, OtlpError> {
    let root = root(body)?;
    let mut request = ExportTraceServiceRequest::default();
    for rs in objects(&root, &["resourceSpans", "resource_spans"])? {
        let mut resource_spans = ResourceSpans {
            resource: resource(rs),
            ..Default::default()
        };
        let scopes = objects(
            rs,
            &[
                "scopeSpans",
                "scope_spans",
                "instrumentationLibrarySpans",
                "instrumentation_library_spans",
            ],
        )?;
        for ss in scopes {
            let mut scope_spans = ScopeSpans {
                scope: scope(ss),
                ..Default::default()
            };
            for v in items(ss, &["spans"])? {
                match json_span(v) {
                    Ok(s) => scope_spans.spans.push(s),
                    Err(reason) => rejections.add(reason),
                }
            }
            resource_spans.scope_spans.push(scope_spans);
        }
        request.resource_spans.push(resource_spans);
    }
    Ok(request)
}

fn json_span(v: &Value) -> Result<Span, &'static str> {
    let o = v.as_object().ok_or("span is not an object")?;
    let status = get(o, &["status"])
        .and_then(Value::as_object)
        .map(|s| Status {
            code: enum_value(get(s, &["code"]), "STATUS_CODE_", &STATUS_CODES),
            message: string(get(s, &["message"])),
        });
    let events = lenient_list(get(o, &["events"]))
        .iter()
        .filter_map(Value::as_object)
        .map(|e| span::Event {
            time_unix_nano: nanos(get(e, &["timeUnixNano", "time_unix_nano"])).unwrap_or(0),
            name: string(get(e, &["name"])),
            attributes: key_values(get(e, &["attributes"]), 0),
            dropped_attributes_count: 0,
        })
        .collect();
    let links = lenient_list(get(o, &["links"]))
        .iter()
        .filter_map(Value::as_object)
        .map(|l| span::Link {
            trace_id: id(get(l, &["traceId", "trace_id"]), 16).unwrap_or_default(),
            span_id: id(get(l, &["spanId", "span_id"]), 8).unwrap_or_default(),
            trace_state: string(get(l, &["traceState", "trace_state"])),
            attributes: key_values(get(l, &["attributes"]), 0),
            ..Default::default()
        })
        .collect();
    Ok(Span {
        trace_id: id(get(o, &["traceId", "trace_id"]), 16).ok_or("invalid trace_id")?,
        span_id: id(get(o, &["spanId", "span_id"]), 8).ok_or("invalid span_id")?,
        trace_state: string(get(o, &["traceState", "trace_state"])),
        parent_span_id: id(get(o, &["parentSpanId", "parent_span_id"]), 8)
            .ok_or("invalid parent_span_id")?,
        flags: u32_of(get(o, &["flags"])),
        name: string(get(o, &["name"])),
        kind: enum_value(get(o, &["kind"]), "SPAN_KIND_", &SPAN_KINDS),
        start_time_unix_nano: nanos(get(o, &["startTimeUnixNano", "start_time_unix_nano"]))
            .ok_or(INVALID_TIMESTAMP)?,
        end_time_unix_nano: nanos(get(o, &["endTimeUnixNano", "end_time_unix_nano"]))
            .ok_or(INVALID_TIMESTAMP)?,
        attributes: key_values(get(o, &["attributes"]), 0),
        events,
        links,
        status,
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

pub(super) fn metrics_request(
    body: &[u8],
    rejections: &mut Rejections,
) -> Result<ExportMetricsServiceRequest, OtlpError> {
    let root = root(body)?;
    let mut request = ExportMetricsServiceRequest::default();
    for rm in objects(&root, &["resourceMetrics", "resource_metrics"])? {
        let mut resource_metrics = ResourceMetrics {
            resource: resource(rm),
            ..Default::default()
        };
        let scopes = objects(
            rm,
            &[
                "scopeMetrics",
                "scope_metrics",
                "instrumentationLibraryMetrics",
                "instrumentation_library_metrics",
            ],
        )?;
        for sm in scopes {
            let mut scope_metrics = ScopeMetrics {
                scope: scope(sm),
                ..Default::default()
            };
            for m in objects(sm, &["metrics"])? {
                scope_metrics.metrics.push(json_metric(m, rejections)?);
            }
            resource_metrics.scope_metrics.push(scope_metrics);
        }
        request.resource_metrics.push(resource_metrics);
    }
    Ok(request)
}

fn temporality(o: &Obj) -> i32 {
    enum_value(
        get(o, &["aggregationTemporality", "aggregation_temporality"]),
        "AGGREGATION_TEMPORALITY_",
        &TEMPORALITIES,
    )
}

/// The data points of a metric's data object; points that are not objects, or whose
/// `parse` fails, are rejected.
fn data_points<T>(
    data: &Obj,
    rejections: &mut Rejections,
    parse: impl Fn(&Obj) -> Result<T, &'static str>,
) -> Result<Vec<T>, OtlpError> {
    let mut points = Vec::new();
    for v in items(data, &["dataPoints", "data_points"])? {
        match v
            .as_object()
            .ok_or("data point is not an object")
            .and_then(&parse)
        {
            Ok(p) => points.push(p),
            Err(reason) => rejections.add(reason),
        }
    }
    Ok(points)
}

/// (attributes, start, time) shared by all data point kinds.
fn point_common(p: &Obj) -> Result<(Vec<KeyValue>, u64, u64), &'static str> {
    Ok((
        key_values(get(p, &["attributes"]), 0),
        nanos(get(p, &["startTimeUnixNano", "start_time_unix_nano"])).ok_or(INVALID_TIMESTAMP)?,
        nanos(get(p, &["timeUnixNano", "time_unix_nano"])).ok_or(INVALID_TIMESTAMP)?,
    ))
}

fn optional_f64(p: &Obj, names: &[&str]) -> Option<f64> {
    get(p, names).and_then(f64_of)
}

fn number_point(p: &Obj) -> Result<NumberDataPoint, &'static str> {
    let (attributes, start_time_unix_nano, time_unix_nano) = point_common(p)?;
    let value = if let Some(v) = get(p, &["asDouble", "as_double"]) {
        Some(number_data_point::Value::AsDouble(
            f64_of(v).ok_or("invalid value")?,
        ))
    } else if let Some(v) = get(p, &["asInt", "as_int"]) {
        Some(number_data_point::Value::AsInt(
            i64_of(v).ok_or("invalid value")?,
        ))
    } else {
        None
    };
    Ok(NumberDataPoint {
        attributes,
        start_time_unix_nano,
        time_unix_nano,
        flags: u32_of(get(p, &["flags"])),
        value,
        ..Default::default()
    })
}

fn count_of(p: &Obj) -> u64 {
    get(p, &["count"]).and_then(u64_of).unwrap_or(0)
}

fn histogram_point(p: &Obj) -> Result<HistogramDataPoint, &'static str> {
    let (attributes, start_time_unix_nano, time_unix_nano) = point_common(p)?;
    Ok(HistogramDataPoint {
        attributes,
        start_time_unix_nano,
        time_unix_nano,
        count: count_of(p),
        sum: optional_f64(p, &["sum"]),
        bucket_counts: lenient_list(get(p, &["bucketCounts", "bucket_counts"]))
            .iter()
            .filter_map(u64_of)
            .collect(),
        explicit_bounds: lenient_list(get(p, &["explicitBounds", "explicit_bounds"]))
            .iter()
            .filter_map(f64_of)
            .collect(),
        flags: u32_of(get(p, &["flags"])),
        min: optional_f64(p, &["min"]),
        max: optional_f64(p, &["max"]),
        ..Default::default()
    })
}

fn buckets(v: Option<&Value>) -> Option<exponential_histogram_data_point::Buckets> {
    let b = v?.as_object()?;
    Some(exponential_histogram_data_point::Buckets {
        offset: i32_of(get(b, &["offset"])),
        bucket_counts: lenient_list(get(b, &["bucketCounts", "bucket_counts"]))
            .iter()
            .filter_map(u64_of)
            .collect(),
    })
}

fn exponential_point(p: &Obj) -> Result<ExponentialHistogramDataPoint, &'static str> {
    let (attributes, start_time_unix_nano, time_unix_nano) = point_common(p)?;
    Ok(ExponentialHistogramDataPoint {
        attributes,
        start_time_unix_nano,
        time_unix_nano,
        count: count_of(p),
        sum: optional_f64(p, &["sum"]),
        scale: i32_of(get(p, &["scale"])),
        zero_count: get(p, &["zeroCount", "zero_count"])
            .and_then(u64_of)
            .unwrap_or(0),
        positive: buckets(get(p, &["positive"])),
        negative: buckets(get(p, &["negative"])),
        flags: u32_of(get(p, &["flags"])),
        min: optional_f64(p, &["min"]),
        max: optional_f64(p, &["max"]),
        zero_threshold: optional_f64(p, &["zeroThreshold", "zero_threshold"]).unwrap_or(0.0),
        ..Default::default()
    })
}

fn summary_point(p: &Obj) -> Result<SummaryDataPoint, &'static str> {
    let (attributes, start_time_unix_nano, time_unix_nano) = point_common(p)?;
    Ok(SummaryDataPoint {
        attributes,
        start_time_unix_nano,
        time_unix_nano,
        count: count_of(p),
        sum: optional_f64(p, &["sum"]).unwrap_or(0.0),
        quantile_values: lenient_list(get(p, &["quantileValues", "quantile_values"]))
            .iter()
            .filter_map(Value::as_object)
            .map(|q| summary_data_point::ValueAtQuantile {
                quantile: optional_f64(q, &["quantile"]).unwrap_or(0.0),
                value: optional_f64(q, &["value"]).unwrap_or(0.0),
            })
            .collect(),
        flags: u32_of(get(p, &["flags"])),
    })
}

fn json_metric(o: &Obj, rejections: &mut Rejections) -> Result<Metric, OtlpError> {
    let data_of = |names: &[&str]| get(o, names).and_then(Value::as_object);
    let data = if let Some(g) = data_of(&["gauge"]) {
        Some(metric::Data::Gauge(Gauge {
            data_points: data_points(g, rejections, number_point)?,
        }))
    } else if let Some(s) = data_of(&["sum"]) {
        Some(metric::Data::Sum(Sum {
            data_points: data_points(s, rejections, number_point)?,
            aggregation_temporality: temporality(s),
            is_monotonic: bool_of(get(s, &["isMonotonic", "is_monotonic"])),
        }))
    } else if let Some(h) = data_of(&["histogram"]) {
        Some(metric::Data::Histogram(Histogram {
            data_points: data_points(h, rejections, histogram_point)?,
            aggregation_temporality: temporality(h),
        }))
    } else if let Some(h) = data_of(&["exponentialHistogram", "exponential_histogram"]) {
        Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: data_points(h, rejections, exponential_point)?,
            aggregation_temporality: temporality(h),
        }))
    } else if let Some(s) = data_of(&["summary"]) {
        Some(metric::Data::Summary(Summary {
            data_points: data_points(s, rejections, summary_point)?,
        }))
    } else {
        None
    };
    Ok(Metric {
        name: string(get(o, &["name"])),
        description: string(get(o, &["description"])),
        unit: string(get(o, &["unit"])),
        data,
        ..Default::default()
    })
}
