//! # Sightline Rust SDK
//!
//! Non-breaking breakpoints for production services: snapshots (variables, stack trace,
//! trace ids, request context) and logpoints, configured live from a Sightline server (or any
//! backend speaking the TraceKit SDK wire protocol).
//!
//! ```no_run
//! use sightline::{capture, Config};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Or Config::from_env()?
//!     let config = Config::new("sl_…", "checkout").with_endpoint("http://127.0.0.1:8081");
//!     sightline::init(config)?;
//!     let (user, amount) = ("ana", 42.5);
//!     capture!("payment-start", { "user" => user, "amount" => amount });
//!     sightline::shutdown(std::time::Duration::from_secs(2));
//!     Ok(())
//! }
//! ```
//!
//! ## Capturing
//! * [`capture!`]`(label, { "name" => expr, … })` or [`capture!`]`(label, vars)` (anything
//!   `Serialize`) uses the global instance set by [`init`]; `capture!(client = &sl, label, …)`
//!   uses an explicit handle. The label must be a string literal (or `&'static str` const).
//!   The call site's `file!()`, `line!()` and `module_path!()` are recorded at compile time.
//!   The function name is the enclosing function's path, found with the `type_name` trick: the
//!   macro declares a nested `fn __sightline_here() {}`, takes
//!   `std::any::type_name_of_val(&__sightline_here)` (`my_crate::orders::pay::__sightline_here`)
//!   and strips the last segment and any `{{closure}}` segments (async fns, closures) — so
//!   it is `my_crate::orders::pay`. It is best effort: the exact text is not guaranteed by
//!   the compiler, but it is stable for a given build, which is all registration needs.
//!   The variable expressions are evaluated **only when a breakpoint matches**.
//! * [`Sightline::capture_snapshot`]`(label, &vars)` takes file and line from
//!   `#[track_caller]`; its `function_name` is empty, so it matches on `file:line`.
//!
//! A call site that is not yet known to the server is auto-registered once per process
//! (`POST /sdk/snapshots/auto-register`, in the background); 500 ms after the server answers
//! the SDK re-polls, so a breakpoint armed at registration captures from the next call on.
//!
//! ## Cost
//! With no matching breakpoint (or disabled / kill switch / shut down) a capture is one
//! atomic load plus a lock-free `ArcSwap` load and two-level `HashMap` lookup keyed by the
//! call site's `&'static str`s — no allocation, no lock, no syscall. When a breakpoint
//! matches, the caller's thread serializes the variables (`serde_json::Value`), applies the
//! capture limits and PII scrubbing, records an unresolved backtrace and `try_send`s the job
//! to a bounded queue (dropping, never blocking, when full). Symbolizing the backtrace,
//! check-in and upload happen on the SDK's own background thread.
//!
//! ## Conditions
//! `sdk-evaluable` conditions are evaluated locally with the server's own evaluator
//! (`sightline-core`), against the variables before limits and scrubbing. `server-only`
//! conditions are decided by `POST /sdk/snapshots/checkin` **asynchronously**: the caller
//! never waits for the network, so the variables are serialized, limited and scrubbed on the
//! caller's thread for every call that reaches the breakpoint, and the background task asks
//! the server, then uploads or discards. The check-in sees the scrubbed, truncated variables
//! (the same ones the server would store), so raw PII never leaves the process even for a
//! condition; a condition on a redacted field therefore cannot match. If the check-in itself
//! fails the capture is uploaded anyway and the server, which re-evaluates every condition on
//! capture, drops it if it does not match.
//!
//! ## Uploads
//! The background thread uploads over at most 4 concurrent requests. A free request slot
//! takes whatever is queued: one snapshot goes out at once (`POST /sdk/snapshots/capture`),
//! several — up to 100 and about 900 KB of JSON — go as one
//! `POST /sdk/snapshots/capture/batch` (a Sightline extension), so batches form under load
//! and nothing ever waits for one to fill. A backend without the batch route (404/405, e.g.
//! another TraceKit-compatible server) is remembered and every snapshot is then uploaded on
//! its own. Network errors and 5xx are retried with backoff ([`Config::upload_attempts`]),
//! resending the same idempotency keys; a batch that still fails counts as one
//! circuit-breaker failure. [`Stats`] counts outcomes per snapshot, plus `batches`.
//!
//! ## Safety
//! Every public entry point runs under `catch_unwind`: a panic (including in a user's
//! `Serialize` impl, which is then replaced by `{"_error": "serialization panicked"}`) is
//! counted in [`Stats`] and never reaches the host (this needs `panic = "unwind"`; the panic
//! hook still prints the message). Locks recover from poisoning. Memory is bounded whatever
//! the server does: capture queue ([`Config::queue_capacity`]), 10 000 breakpoints, 4 MiB
//! responses, 1 MiB SSE lines. Capture uploads go through a circuit breaker (3 failures in
//! 60 s → paused 5 min, configurable); a trip is reported to the server as a
//! `circuit_breaker_tripped` event with the next poll. [`Sightline::shutdown`] flushes the
//! queue until its deadline and joins the background thread.
//!
//! ## Environment variables ([`Config::from_env`])
//! | variable | meaning | default |
//! |---|---|---|
//! | `SIGHTLINE_API_KEY` | API key (`X-API-Key`) | required when enabled |
//! | `SIGHTLINE_SERVICE_NAME` | service name | required when enabled |
//! | `SIGHTLINE_ENDPOINT` | server base URL; `…/v1/traces` etc. are stripped, no scheme → `https://` | `http://127.0.0.1:8081` |
//! | `SIGHTLINE_ENABLED` | `true`/`false` (also `1/0`, `yes/no`, `on/off`) | `true` |
//! | `SIGHTLINE_POLL_INTERVAL_SECS` | breakpoint poll interval (min 1) | `30` |
//! | `SIGHTLINE_PII_SCRUBBING` | `false` turns local PII scrubbing off | `true` |
//! | `SIGHTLINE_MAX_DEPTH` | variable nesting depth (0 = unlimited) | `3` |
//! | `SIGHTLINE_MAX_STRING_LEN` | longest string, in characters | `1000` |
//! | `SIGHTLINE_MAX_COLLECTION_ITEMS` | most items per list/map | `100` |
//! | `SIGHTLINE_MAX_PAYLOAD_BYTES` | largest serialized `variables` (0 = unlimited) | `65536` |
//! | `SIGHTLINE_STACK_FRAME_LIMIT` | most stack frames | `50` |
//! | `SIGHTLINE_QUEUE_CAPACITY` | capture queue length | `1024` |
//! | `SIGHTLINE_REQUEST_TIMEOUT_MS` | one HTTP request | `10000` |
//! | `SIGHTLINE_CAPTURE_TIMEOUT_MS` | one capture end to end (check-in + upload + retries) | `30000` |
//! | `SIGHTLINE_CB_MAX_FAILURES` | circuit breaker: failures that trip it | `3` |
//! | `SIGHTLINE_CB_WINDOW_SECS` | circuit breaker: failure window | `60` |
//! | `SIGHTLINE_CB_COOLDOWN_SECS` | circuit breaker: pause after a trip | `300` |
//!
//! ## Truncation markers (reference §7.4)
//! Depth: `{"_truncated":true,"_depth":N}` (lists: plus `"_length":len`); payload:
//! `variables` becomes `{"_truncated":true,"_payload_size":n,"_max_payload":limit,
//! "_truncated_by":"payload_limit"}`; long strings keep `max_string_len` characters plus
//! `"..."`; long lists keep `max_collection_items` items plus
//! `{"_truncated":true,"_length":len}`, long maps gain `"_truncated":true,"_length":len`.

mod background;
mod breaker;
mod breakpoints;
mod client;
mod config;
mod limits;
mod sse;

pub mod context;
#[cfg(feature = "tower")]
pub mod layer;
pub mod trace;

pub use client::{CallSite, Hit, InitError, ShutdownReport, Sightline, Stats};
pub use config::{
    resolve_base_url, CaptureLimits, CircuitBreakerConfig, Config, ConfigError, PiiConfig,
    DEFAULT_ENDPOINT,
};
pub use sightline_core::pii::{CustomPattern, SecurityFlag};

use std::sync::OnceLock;
use std::time::Duration;

static GLOBAL: OnceLock<Sightline> = OnceLock::new();

/// Starts the SDK and makes it the process-wide instance used by [`capture!`]. A second call
/// fails with [`InitError::AlreadyInitialized`] (the first instance stays).
pub fn init(config: Config) -> Result<Sightline, InitError> {
    if GLOBAL.get().is_some() {
        return Err(InitError::AlreadyInitialized);
    }
    let sl = Sightline::init(config)?;
    match GLOBAL.set(sl.clone()) {
        Ok(()) => Ok(sl),
        Err(extra) => {
            extra.shutdown(Duration::ZERO);
            Err(InitError::AlreadyInitialized)
        }
    }
}

/// The process-wide instance, if [`init`] was called.
pub fn global() -> Option<&'static Sightline> {
    GLOBAL.get()
}

/// Shuts the process-wide instance down (see [`Sightline::shutdown`]).
pub fn shutdown(deadline: Duration) -> Option<ShutdownReport> {
    GLOBAL.get().map(|s| s.shutdown(deadline))
}

/// Captures a snapshot at this call site when a breakpoint matches it (see the crate docs).
///
/// ```no_run
/// # use sightline::capture;
/// # let (order, total, sl) = (1, 2.0, sightline::Sightline::init(sightline::Config::default()).unwrap());
/// capture!("order-total", { "order" => order, "total" => total });
/// capture!("order", order);                       // anything Serialize
/// capture!(client = &sl, "order", { "order" => order });
/// ```
#[macro_export]
macro_rules! capture {
    (client = $client:expr, $label:expr, { $($name:expr => $value:expr),* $(,)? }) => {{
        static __SIGHTLINE_SITE: $crate::CallSite =
            $crate::CallSite::new(::core::file!(), ::core::line!(), ::core::module_path!(), $label);
        fn __sightline_here() {}
        let __sl_client: &$crate::Sightline = $client;
        // The one atomic load first: a disabled or killed SDK does nothing more.
        if __sl_client.is_active() {
            let __sl_fn = $crate::__private::enclosing_fn_name(::core::any::type_name_of_val(&__sightline_here));
            if let ::core::option::Option::Some(__sl_hit) = $crate::Sightline::__check(__sl_client, &__SIGHTLINE_SITE, __sl_fn) {
                __sl_hit.capture_with(|| {
                    let mut __sl_map = $crate::__private::Map::new();
                    $( __sl_map.insert(::std::string::ToString::to_string(&$name), $crate::__private::to_value(&$value)?); )*
                    ::core::result::Result::Ok($crate::__private::Value::Object(__sl_map))
                });
            }
        }
    }};
    (client = $client:expr, $label:expr, $vars:expr) => {{
        static __SIGHTLINE_SITE: $crate::CallSite =
            $crate::CallSite::new(::core::file!(), ::core::line!(), ::core::module_path!(), $label);
        fn __sightline_here() {}
        let __sl_client: &$crate::Sightline = $client;
        if __sl_client.is_active() {
            let __sl_fn = $crate::__private::enclosing_fn_name(::core::any::type_name_of_val(&__sightline_here));
            if let ::core::option::Option::Some(__sl_hit) = $crate::Sightline::__check(__sl_client, &__SIGHTLINE_SITE, __sl_fn) {
                __sl_hit.capture_with(|| $crate::__private::to_value(&$vars));
            }
        }
    }};
    ($label:expr, { $($name:expr => $value:expr),* $(,)? }) => {
        if let ::core::option::Option::Some(__sl_client) = $crate::global() {
            $crate::capture!(client = __sl_client, $label, { $($name => $value),* });
        }
    };
    ($label:expr, $vars:expr) => {
        if let ::core::option::Option::Some(__sl_client) = $crate::global() {
            $crate::capture!(client = __sl_client, $label, $vars);
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::client::enclosing_fn_name;
    pub use serde_json::{to_value, Map, Value};
}
