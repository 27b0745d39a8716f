//! SDK request bodies, parsed leniently: every variant the official SDKs send
//! (reference §5.2) is accepted, and anything else is a clear 400.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::pii::SecurityFlag;
use crate::timefmt::{epoch_number_to_ms, parse_timestamp_ms};

/// Longest accepted service name, file path, function name or label.
pub const MAX_NAME_LEN: usize = 512;
pub const MAX_PATH_LEN: usize = 2048;

/// Parses a JSON body, accepting the `NaN`/`Infinity`/`-Infinity` tokens that Python's
/// `json` module emits (they become `null`).
pub fn parse_lenient_json(body: &[u8]) -> Result<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(first) => {
            let text = std::str::from_utf8(body).map_err(|_| {
                Error::bad_request("invalid_json", "request body is not valid UTF-8")
            })?;
            match replace_non_finite_tokens(text) {
                Some(fixed) => serde_json::from_str(&fixed).map_err(|_| invalid_json(&first)),
                None => Err(invalid_json(&first)),
            }
        }
    }
}

fn invalid_json(e: &serde_json::Error) -> Error {
    Error::bad_request(
        "invalid_json",
        format!("request body is not valid JSON: {e}"),
    )
}

/// Replaces bare `NaN`, `Infinity` and `-Infinity` outside strings with `null`.
/// Returns `None` when there was nothing to replace (so the original error stands).
pub fn replace_non_finite_tokens(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut replaced = false;
    let mut i = 0;
    let mut copied_to = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| bytes[i..].starts_with(t.as_bytes()));
        if let Some(t) = token {
            out.push_str(&text[copied_to..i]);
            out.push_str("null");
            i += t.len();
            copied_to = i;
            replaced = true;
            continue;
        }
        i += 1;
    }
    if !replaced {
        return None;
    }
    out.push_str(&text[copied_to..]);
    Some(out)
}

fn as_object(v: Value, what: &str) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(Error::bad_request(
            "invalid_payload",
            format!("{what} must be a JSON object"),
        )),
    }
}

/// A string field: absent/null → `None`; numbers are accepted as their text; other types → 400.
fn opt_string(m: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>> {
    let s = match m.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(Error::bad_request(
                "invalid_field",
                format!("`{key}` must be a string, got {}", type_name(other)),
            ))
        }
    };
    if s.len() > max {
        return Err(Error::bad_request(
            "invalid_field",
            format!("`{key}` is longer than {max} bytes"),
        ));
    }
    Ok(Some(s))
}

/// An integer field: JSON integers, integral floats (`25.0`) and numeric strings.
fn opt_int(m: &Map<String, Value>, key: &str) -> Result<Option<i64>> {
    let bad = || Error::bad_request("invalid_field", format!("`{key}` must be an integer"));
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(bad()),
                }
            }
        }
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `POST /sdk/snapshots/auto-register` body (identical in every SDK).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoRegisterRequest {
    pub service_name: String,
    pub file_path: String,
    pub line_number: i64,
    pub function_name: String,
    pub label: String,
}

impl AutoRegisterRequest {
    pub fn parse(body: &[u8]) -> Result<Self> {
        let m = as_object(parse_lenient_json(body)?, "request body")?;
        let service_name = required_name(&m, "service_name", MAX_NAME_LEN)?;
        let file_path = opt_string(&m, "file_path", MAX_PATH_LEN)?.unwrap_or_default();
        let line_number = opt_int(&m, "line_number")?.unwrap_or(0);
        if line_number < 0 {
            return Err(Error::bad_request(
                "invalid_field",
                "`line_number` must not be negative",
            ));
        }
        let function_name = opt_string(&m, "function_name", MAX_NAME_LEN)?.unwrap_or_default();
        let label = opt_string(&m, "label", MAX_NAME_LEN)?.unwrap_or_default();
        if function_name.is_empty() && label.is_empty() && file_path.is_empty() {
            return Err(Error::bad_request(
                "missing_field",
                "one of `function_name`/`label` or `file_path` is required",
            ));
        }
        Ok(Self {
            service_name,
            file_path,
            line_number,
            function_name,
            label,
        })
    }
}

fn required_name(m: &Map<String, Value>, key: &str, max: usize) -> Result<String> {
    match opt_string(m, key, max)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(Error::bad_request(
            "missing_field",
            format!("`{key}` is required"),
        )),
    }
}

/// Checks a service name taken from a URL path.
pub fn validate_service_name(s: &str) -> Result<()> {
    if s.trim().is_empty() || s.len() > MAX_NAME_LEN || s.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "invalid_service",
            format!("service name must be 1-{MAX_NAME_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

/// `POST /sdk/snapshots/capture` body after normalisation of every SDK variant.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureRequest {
    pub breakpoint_id: Option<String>,
    pub service_name: Option<String>,
    pub file_path: Option<String>,
    pub function_name: Option<String>,
    pub label: Option<String>,
    pub line_number: Option<i64>,
    /// Always an object (PHP's `[]` and a missing value become `{}`).
    pub variables: Value,
    pub security_flags: Vec<SecurityFlag>,
    pub stack_trace: String,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub request_context: Option<Value>,
    pub expression_results: Option<Value>,
    pub mode: Option<String>,
    /// Unix ms, `None` when absent or unparseable (the receive time is used then).
    pub captured_at: Option<i64>,
    /// The raw `captured_at` text, part of the duplicate-detection key.
    pub captured_at_raw: String,
    /// Client-chosen idempotency key (our SDKs): retries with the same key never duplicate.
    pub idempotency_key: Option<String>,
}

impl CaptureRequest {
    pub fn parse(body: &[u8]) -> Result<Self> {
        Self::from_value(parse_lenient_json(body)?)
    }

    pub fn from_value(v: Value) -> Result<Self> {
        let mut m = as_object(v, "request body")?;
        let variables = normalize_variables(m.remove("variables"))?;
        let security_flags = match m.remove("security_flags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().filter_map(parse_flag).collect(),
            Some(other) => {
                return Err(Error::bad_request(
                    "invalid_field",
                    format!(
                        "`security_flags` must be an array, got {}",
                        type_name(&other)
                    ),
                ))
            }
        };
        let stack_trace = match m.remove("stack_trace") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(Value::Array(lines)) => lines
                .iter()
                .map(|l| {
                    l.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| l.to_string())
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Some(other) => other.to_string(),
        };
        let request_context = match m.remove("request_context") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v),
            Some(Value::Array(a)) if a.is_empty() => None,
            Some(other) => {
                return Err(Error::bad_request(
                    "invalid_field",
                    format!(
                        "`request_context` must be an object, got {}",
                        type_name(&other)
                    ),
                ))
            }
        };
        let expression_results = match m.remove("expression_results") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) if a.is_empty() => None,
            Some(v) => Some(v),
        };
        let (captured_at, captured_at_raw) = match m.get("captured_at") {
            Some(Value::String(s)) => (parse_timestamp_ms(s), s.clone()),
            Some(Value::Number(n)) => (n.as_f64().and_then(epoch_number_to_ms), n.to_string()),
            _ => (None, String::new()),
        };
        Ok(Self {
            breakpoint_id: opt_string(&m, "breakpoint_id", MAX_NAME_LEN)?.filter(|s| !s.is_empty()),
            service_name: opt_string(&m, "service_name", MAX_NAME_LEN)?.filter(|s| !s.is_empty()),
            file_path: opt_string(&m, "file_path", MAX_PATH_LEN)?.filter(|s| !s.is_empty()),
            function_name: opt_string(&m, "function_name", MAX_NAME_LEN)?.filter(|s| !s.is_empty()),
            label: opt_string(&m, "label", MAX_NAME_LEN)?.filter(|s| !s.is_empty()),
            line_number: opt_int(&m, "line_number")?,
            variables,
            security_flags,
            stack_trace,
            trace_id: opt_string(&m, "trace_id", 64)?.filter(|s| is_hex_id(s, 32)),
            span_id: opt_string(&m, "span_id", 64)?.filter(|s| is_hex_id(s, 16)),
            request_context,
            expression_results,
            mode: opt_string(&m, "mode", 32)?,
            captured_at,
            captured_at_raw,
            idempotency_key: opt_string(&m, "idempotency_key", 128)?.filter(|s| !s.is_empty()),
        })
    }
}

/// Most snapshots in one batch upload.
pub const MAX_BATCH: usize = 100;

/// `POST /sdk/snapshots/capture/batch` body: `{"snapshots":[…]}` (Sightline extension).
/// Each element is parsed on its own, so one malformed snapshot does not sink the rest.
pub fn parse_capture_batch(body: &[u8]) -> Result<Vec<Result<CaptureRequest>>> {
    let mut m = as_object(parse_lenient_json(body)?, "request body")?;
    let items = match m.remove("snapshots") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(Error::bad_request(
                "invalid_field",
                format!("`snapshots` must be an array, got {}", type_name(&other)),
            ))
        }
        None => {
            return Err(Error::bad_request(
                "missing_field",
                "`snapshots` is required",
            ))
        }
    };
    if items.len() > MAX_BATCH {
        return Err(Error::bad_request(
            "batch_too_large",
            format!("at most {MAX_BATCH} snapshots per batch"),
        ));
    }
    Ok(items.into_iter().map(CaptureRequest::from_value).collect())
}

/// `variables` as an object: PHP sends `[]` for an empty array and a list for a
/// non-empty one (indexed keys then).
fn normalize_variables(v: Option<Value>) -> Result<Value> {
    match v {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(Value::Array(items)) => Ok(Value::Object(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
        )),
        Some(other) => Err(Error::bad_request(
            "invalid_field",
            format!("`variables` must be an object, got {}", type_name(&other)),
        )),
    }
}

/// A non-zero lowercase/uppercase hex id of the given length (W3C trace context).
pub fn is_hex_id(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
}

/// One SDK-reported flag, with snake_case or PascalCase keys (.NET).
fn parse_flag(v: &Value) -> Option<SecurityFlag> {
    let m = v.as_object()?;
    let get = |name: &str| -> Option<&Value> {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let text = |name: &str| get(name).and_then(Value::as_str).map(str::to_owned);
    Some(SecurityFlag {
        r#type: text("type").unwrap_or_else(|| "sensitive_data".into()),
        category: text("category").unwrap_or_default(),
        severity: text("severity").unwrap_or_else(|| "medium".into()),
        variable: text("variable").unwrap_or_default(),
        redacted: get("redacted").and_then(Value::as_bool).unwrap_or(true),
    })
}

/// `POST /sdk/snapshots/checkin` body (Sightline extension, DESIGN §3.2).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckinRequest {
    pub breakpoint_id: String,
    pub variables: Value,
}

impl CheckinRequest {
    pub fn parse(body: &[u8]) -> Result<Self> {
        let mut m = as_object(parse_lenient_json(body)?, "request body")?;
        let breakpoint_id = required_name(&m, "breakpoint_id", MAX_NAME_LEN)?;
        let variables = normalize_variables(m.remove("variables"))?;
        Ok(Self {
            breakpoint_id,
            variables,
        })
    }
}

/// The optional `POST /sdk/snapshots/active/{service}` body: `{"events":[…]}`.
pub fn parse_poll_events(body: &[u8]) -> Result<Vec<Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let m = as_object(parse_lenient_json(body)?, "request body")?;
    match m.get("events") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a
            .iter()
            .filter(|e| e.is_object())
            .take(100)
            .cloned()
            .collect()),
        Some(other) => Err(Error::bad_request(
            "invalid_field",
            format!("`events` must be an array, got {}", type_name(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_tokens_outside_strings_become_null() {
        let v =
            parse_lenient_json(br#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN Infinity"}"#);
        assert_eq!(
            v.ok(),
            Some(serde_json::json!({"a": null, "b": [null, null], "c": "NaN Infinity"}))
        );
    }

    #[test]
    fn broken_json_is_a_400() {
        let e = parse_lenient_json(b"{\"a\":").err();
        assert_eq!(e.map(|e| e.code), Some("invalid_json"));
    }
}
