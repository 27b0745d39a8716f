//! SDK configuration, defaults, environment variables and endpoint resolution.

use std::time::Duration;

use sightline_core::pii::CustomPattern;

/// The local `sightline serve` default address.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8081";

/// Capture limits applied on the caller's thread before anything is queued
/// (reference §7.4). Per-breakpoint `max_depth`, `max_payload_bytes` and `stack_depth`
/// override the matching field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Nesting depth: the variables map itself is depth 0; a map or list at depth ≥ this
    /// becomes `{"_truncated":true,"_depth":N}` (lists also carry `"_length"`). 0 = unlimited.
    pub max_depth: usize,
    /// Longest string, in characters; longer ones keep this many characters plus `"..."`.
    pub max_string_len: usize,
    /// Most items kept per list or map; the rest are cut and a marker records the length.
    pub max_collection_items: usize,
    /// Largest serialized `variables`; above it `variables` becomes the payload marker.
    pub max_payload_bytes: usize,
    /// Most stack frames in `stack_trace` (SDK-internal frames are skipped first).
    pub stack_frame_limit: usize,
}

impl Default for CaptureLimits {
    fn default() -> Self {
        Self {
            max_depth: 3,
            max_string_len: 1000,
            max_collection_items: 100,
            max_payload_bytes: 64 * 1024,
            stack_frame_limit: 50,
        }
    }
}

/// Circuit breaker on capture uploads (reference §7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    /// Failures within `window` that open the breaker.
    pub max_failures: u32,
    /// Sliding window over which failures are counted.
    pub window: Duration,
    /// How long captures stay paused once the breaker is open.
    pub cooldown: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            max_failures: 3,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(300),
        }
    }
}

/// PII scrubbing of captured variables and request context (on by default).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PiiConfig {
    /// Turns scrubbing off entirely when `true` (the server still re-scrubs).
    pub disabled: bool,
    /// Custom patterns tried after the 13 built-ins.
    pub custom_patterns: Vec<CustomPattern>,
}

/// Everything [`crate::Sightline::init`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sent as `X-API-Key` on every request. Required when `enabled`.
    pub api_key: String,
    /// The service whose breakpoints this process serves. Required when `enabled`.
    pub service_name: String,
    /// Base URL of the server, resolved as in reference §1.2 (see [`resolve_base_url`]).
    pub endpoint: String,
    /// When `false` nothing starts and every capture is a single atomic load.
    pub enabled: bool,
    /// Breakpoint poll interval (SSE delivers changes in between).
    pub poll_interval: Duration,
    /// Poll interval while the kill switch is on.
    pub kill_switch_poll_interval: Duration,
    /// Capture limits.
    pub limits: CaptureLimits,
    /// PII scrubbing.
    pub pii: PiiConfig,
    /// Capture-upload circuit breaker.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Timeout of one HTTP request (poll, register, upload).
    pub request_timeout: Duration,
    /// Longest time a queued capture may take end to end (check-in plus upload with retries);
    /// past it the capture is abandoned and counted as failed.
    pub capture_timeout: Duration,
    /// Bounded capture queue; when full, captures are dropped (and counted), never blocking.
    pub queue_capacity: usize,
    /// Upload attempts per capture or batch of captures (network errors and 5xx are retried;
    /// same idempotency keys).
    pub upload_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_key: String::new(),
            service_name: String::new(),
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            enabled: true,
            poll_interval: Duration::from_secs(30),
            kill_switch_poll_interval: Duration::from_secs(60),
            limits: CaptureLimits::default(),
            pii: PiiConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            request_timeout: Duration::from_secs(10),
            capture_timeout: Duration::from_secs(30),
            queue_capacity: 1024,
            upload_attempts: 3,
        }
    }
}

/// A malformed environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.var, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// A config with the given key and service name and defaults for everything else.
    pub fn new(api_key: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            service_name: service_name.into(),
            ..Self::default()
        }
    }

    /// Sets the endpoint (builder style).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// Reads the `SIGHTLINE_*` environment variables listed in the crate docs on top of the
    /// defaults. Unset variables keep their default; malformed ones are an error.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`Config::from_env`] with an arbitrary variable source (for tests and embedding).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = Self::default();
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = get("SIGHTLINE_API_KEY") {
            c.api_key = v;
        }
        if let Some(v) = get("SIGHTLINE_SERVICE_NAME") {
            c.service_name = v;
        }
        if let Some(v) = get("SIGHTLINE_ENDPOINT") {
            c.endpoint = v;
        }
        if let Some(v) = get("SIGHTLINE_ENABLED") {
            c.enabled = parse_bool("SIGHTLINE_ENABLED", &v)?;
        }
        if let Some(v) = get("SIGHTLINE_PII_SCRUBBING") {
            c.pii.disabled = !parse_bool("SIGHTLINE_PII_SCRUBBING", &v)?;
        }
        let secs =
            |var: &'static str, v: Option<String>| -> Result<Option<Duration>, ConfigError> {
                v.map(|v| parse_num(var, &v).map(Duration::from_secs))
                    .transpose()
            };
        let millis =
            |var: &'static str, v: Option<String>| -> Result<Option<Duration>, ConfigError> {
                v.map(|v| parse_num(var, &v).map(Duration::from_millis))
                    .transpose()
            };
        if let Some(d) = secs(
            "SIGHTLINE_POLL_INTERVAL_SECS",
            get("SIGHTLINE_POLL_INTERVAL_SECS"),
        )? {
            c.poll_interval = d.max(Duration::from_secs(1));
        }
        if let Some(d) = millis(
            "SIGHTLINE_REQUEST_TIMEOUT_MS",
            get("SIGHTLINE_REQUEST_TIMEOUT_MS"),
        )? {
            c.request_timeout = d;
        }
        if let Some(d) = millis(
            "SIGHTLINE_CAPTURE_TIMEOUT_MS",
            get("SIGHTLINE_CAPTURE_TIMEOUT_MS"),
        )? {
            c.capture_timeout = d;
        }
        if let Some(d) = secs("SIGHTLINE_CB_WINDOW_SECS", get("SIGHTLINE_CB_WINDOW_SECS"))? {
            c.circuit_breaker.window = d;
        }
        if let Some(d) = secs(
            "SIGHTLINE_CB_COOLDOWN_SECS",
            get("SIGHTLINE_CB_COOLDOWN_SECS"),
        )? {
            c.circuit_breaker.cooldown = d;
        }
        let usize_var = |var: &'static str, slot: &mut usize| -> Result<(), ConfigError> {
            if let Some(v) = get(var) {
                *slot = usize::try_from(parse_num(var, &v)?).unwrap_or(usize::MAX);
            }
            Ok(())
        };
        usize_var("SIGHTLINE_MAX_DEPTH", &mut c.limits.max_depth)?;
        usize_var("SIGHTLINE_MAX_STRING_LEN", &mut c.limits.max_string_len)?;
        usize_var(
            "SIGHTLINE_MAX_COLLECTION_ITEMS",
            &mut c.limits.max_collection_items,
        )?;
        usize_var(
            "SIGHTLINE_MAX_PAYLOAD_BYTES",
            &mut c.limits.max_payload_bytes,
        )?;
        usize_var(
            "SIGHTLINE_STACK_FRAME_LIMIT",
            &mut c.limits.stack_frame_limit,
        )?;
        usize_var("SIGHTLINE_QUEUE_CAPACITY", &mut c.queue_capacity)?;
        if let Some(v) = get("SIGHTLINE_CB_MAX_FAILURES") {
            c.circuit_breaker.max_failures =
                u32::try_from(parse_num("SIGHTLINE_CB_MAX_FAILURES", &v)?).unwrap_or(u32::MAX);
        }
        Ok(c)
    }
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError {
            var,
            message: format!("expected true/false, got {v:?}"),
        }),
    }
}

fn parse_num(var: &'static str, v: &str) -> Result<u64, ConfigError> {
    v.parse::<u64>().map_err(|_| ConfigError {
        var,
        message: format!("expected a non-negative integer, got {v:?}"),
    })
}

/// Markers that end a full OTLP URL; what follows the host up to them is kept as a prefix.
const OTLP_SUFFIXES: [&str; 4] = [
    "/api/v1/traces",
    "/api/v1/metrics",
    "/v1/traces",
    "/v1/metrics",
];

/// The base URL the `/sdk/snapshots/…` paths are appended to (reference §1.2, GO/PY rules):
/// a trailing `/` is dropped; a URL carrying `/v1/traces`, `/v1/metrics`, `/api/v1/traces` or
/// `/api/v1/metrics` is cut where that marker starts (so `http://h:8081/v1/traces` →
/// `http://h:8081`, while custom prefixes like `http://h/custom` survive); an endpoint without
/// a scheme gets `https://`. Returns `None` for an empty endpoint or one without a host.
pub fn resolve_base_url(endpoint: &str) -> Option<String> {
    let e = endpoint.trim();
    let (scheme, rest) = match e.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        Some(_) => return None,
        None => ("https", e),
    };
    let mut rest = rest.to_owned();
    for suffix in OTLP_SUFFIXES {
        if let Some(i) = rest.find(suffix) {
            rest.truncate(i);
            break;
        }
    }
    while rest.ends_with('/') {
        rest.pop();
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || rest.contains(char::is_whitespace) {
        return None;
    }
    Some(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn endpoint_resolution_follows_reference() {
        let r = |e: &str| resolve_base_url(e);
        assert_eq!(
            r("http://127.0.0.1:8081").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(
            r("http://127.0.0.1:8081/").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(
            r("http://127.0.0.1:8081/v1/traces").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(
            r("https://h.example/api/v1/metrics").as_deref(),
            Some("https://h.example")
        );
        assert_eq!(r("http://h/custom").as_deref(), Some("http://h/custom"));
        assert_eq!(
            r("http://h/custom/v1/traces").as_deref(),
            Some("http://h/custom")
        );
        assert_eq!(
            r("app.tracekit.dev").as_deref(),
            Some("https://app.tracekit.dev")
        );
        assert_eq!(
            r("localhost:9000/").as_deref(),
            Some("https://localhost:9000")
        );
        assert_eq!(r(""), None);
        assert_eq!(r("http://"), None);
        assert_eq!(r("ftp://h"), None);
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn env_config_reads_every_variable() {
        let c = Config::from_lookup(env(&[
            ("SIGHTLINE_API_KEY", "k"),
            ("SIGHTLINE_SERVICE_NAME", "svc"),
            ("SIGHTLINE_ENDPOINT", "http://x:1/v1/traces"),
            ("SIGHTLINE_ENABLED", "false"),
            ("SIGHTLINE_POLL_INTERVAL_SECS", "5"),
            ("SIGHTLINE_PII_SCRUBBING", "off"),
            ("SIGHTLINE_MAX_DEPTH", "4"),
            ("SIGHTLINE_MAX_STRING_LEN", "10"),
            ("SIGHTLINE_MAX_COLLECTION_ITEMS", "7"),
            ("SIGHTLINE_MAX_PAYLOAD_BYTES", "999"),
            ("SIGHTLINE_STACK_FRAME_LIMIT", "3"),
            ("SIGHTLINE_QUEUE_CAPACITY", "8"),
            ("SIGHTLINE_REQUEST_TIMEOUT_MS", "1500"),
            ("SIGHTLINE_CAPTURE_TIMEOUT_MS", "2500"),
            ("SIGHTLINE_CB_MAX_FAILURES", "9"),
            ("SIGHTLINE_CB_WINDOW_SECS", "11"),
            ("SIGHTLINE_CB_COOLDOWN_SECS", "12"),
        ]));
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.api_key, "k");
        assert_eq!(c.service_name, "svc");
        assert_eq!(c.endpoint, "http://x:1/v1/traces");
        assert!(!c.enabled);
        assert!(c.pii.disabled);
        assert_eq!(c.poll_interval, Duration::from_secs(5));
        assert_eq!(
            c.limits,
            CaptureLimits {
                max_depth: 4,
                max_string_len: 10,
                max_collection_items: 7,
                max_payload_bytes: 999,
                stack_frame_limit: 3
            }
        );
        assert_eq!(c.queue_capacity, 8);
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.capture_timeout, Duration::from_millis(2500));
        assert_eq!(
            c.circuit_breaker,
            CircuitBreakerConfig {
                max_failures: 9,
                window: Duration::from_secs(11),
                cooldown: Duration::from_secs(12)
            }
        );
    }

    #[test]
    fn env_config_defaults_and_errors() {
        let c = Config::from_lookup(env(&[("SIGHTLINE_ENABLED", " ")])).ok();
        assert!(c.as_ref().is_some_and(|c| c.enabled && !c.pii.disabled));
        assert_eq!(c.map(|c| c.poll_interval), Some(Duration::from_secs(30)));
        let e = Config::from_lookup(env(&[("SIGHTLINE_ENABLED", "maybe")])).err();
        assert_eq!(e.map(|e| e.var), Some("SIGHTLINE_ENABLED"));
        let e = Config::from_lookup(env(&[("SIGHTLINE_MAX_DEPTH", "-1")])).err();
        assert_eq!(e.map(|e| e.var), Some("SIGHTLINE_MAX_DEPTH"));
    }
}
