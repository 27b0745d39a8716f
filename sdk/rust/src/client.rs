//! The `Sightline` handle, its shared state, the capture hot path and the caller-thread half
//! of a capture (serialization, limits, scrubbing, queueing).

use std::backtrace::Backtrace;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::{Map, Value};
use sightline_core::condition::{classify, Condition, ConditionEval};
use sightline_core::pii::{PiiError, Scrubber};
use tokio::sync::{mpsc, Notify};

use crate::breaker::CircuitBreaker;
use crate::breakpoints::{Breakpoint, ConditionCheck, Index};
use crate::config::{resolve_base_url, Config};
use crate::limits::{self, Effective};

/// Most `(file, line, label)` sites registered through [`Sightline::capture_snapshot`].
const MAX_REGISTERED_SITES: usize = 4096;
/// Most circuit-breaker events held for the next poll.
const MAX_PENDING_EVENTS: usize = 100;

/// Why [`Sightline::init`] failed.
#[derive(Debug)]
pub enum InitError {
    /// `api_key` is empty while `enabled`.
    MissingApiKey,
    /// `service_name` is empty while `enabled`.
    MissingServiceName,
    /// The endpoint could not be resolved to a base URL.
    InvalidEndpoint(String),
    /// A custom PII pattern was rejected.
    InvalidPiiPattern(PiiError),
    /// The HTTP client or the background thread could not be created.
    Startup(String),
    /// [`crate::init`] was already called in this process.
    AlreadyInitialized,
    /// Initialization panicked (caught).
    Panicked,
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingApiKey => f.write_str("sightline: api_key is required"),
            Self::MissingServiceName => f.write_str("sightline: service_name is required"),
            Self::InvalidEndpoint(e) => write!(f, "sightline: invalid endpoint {e:?}"),
            Self::InvalidPiiPattern(e) => write!(f, "sightline: {e}"),
            Self::Startup(e) => write!(f, "sightline: could not start: {e}"),
            Self::AlreadyInitialized => f.write_str("sightline: already initialized"),
            Self::Panicked => f.write_str("sightline: initialization panicked"),
        }
    }
}

impl std::error::Error for InitError {}

/// Counters since `init` (see [`Sightline::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Captures that matched a breakpoint, passed local checks and were queued.
    pub captured: u64,
    /// Captures the server accepted with 2xx (stored or deliberately dropped by it), counted
    /// per snapshot, batched or not.
    pub uploaded: u64,
    /// Of `uploaded`, those the server answered with `"status":"dropped"` (a `duplicate` drop,
    /// the answer to a retry of an already stored snapshot, is not counted).
    pub server_dropped: u64,
    /// Batch requests (`POST /sdk/snapshots/capture/batch`) the server accepted.
    pub batches: u64,
    /// Dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Dropped because the circuit breaker was open.
    pub dropped_circuit_open: u64,
    /// Dropped because the kill switch or shutdown came in while queued.
    pub dropped_inactive: u64,
    /// Not taken because the breakpoint's `max_captures` was reached locally.
    pub dropped_max_captures: u64,
    /// Not taken because an `sdk-evaluable` condition was false.
    pub condition_false: u64,
    /// Not uploaded because the server's check-in said `skip`.
    pub checkin_skipped: u64,
    /// Captures whose upload failed (4xx, an `invalid` batch result, or network/5xx/timeout
    /// after every retry).
    pub failed: u64,
    /// Variables whose `Serialize` failed or panicked (an `_error` placeholder is sent).
    pub serialize_errors: u64,
    /// Panics caught at an SDK entry point (other than user `Serialize` panics).
    pub panics_caught: u64,
    /// Circuit-breaker trips.
    pub breaker_trips: u64,
    /// Auto-registrations sent successfully.
    pub registrations: u64,
    /// Successful polls.
    pub polls: u64,
    /// Failed polls.
    pub poll_failures: u64,
    /// SSE connections opened.
    pub sse_connects: u64,
    /// SSE events handled (heartbeats included).
    pub sse_events: u64,
    /// Queued captures abandoned by `shutdown` at its deadline.
    pub shutdown_abandoned: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub captured: AtomicU64,
    pub uploaded: AtomicU64,
    pub server_dropped: AtomicU64,
    pub batches: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_circuit_open: AtomicU64,
    pub dropped_inactive: AtomicU64,
    pub dropped_max_captures: AtomicU64,
    pub condition_false: AtomicU64,
    pub checkin_skipped: AtomicU64,
    pub failed: AtomicU64,
    pub serialize_errors: AtomicU64,
    pub panics_caught: AtomicU64,
    pub breaker_trips: AtomicU64,
    pub registrations: AtomicU64,
    pub polls: AtomicU64,
    pub poll_failures: AtomicU64,
    pub sse_connects: AtomicU64,
    pub sse_events: AtomicU64,
    pub shutdown_abandoned: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            captured: g(&self.captured),
            uploaded: g(&self.uploaded),
            server_dropped: g(&self.server_dropped),
            batches: g(&self.batches),
            dropped_queue_full: g(&self.dropped_queue_full),
            dropped_circuit_open: g(&self.dropped_circuit_open),
            dropped_inactive: g(&self.dropped_inactive),
            dropped_max_captures: g(&self.dropped_max_captures),
            condition_false: g(&self.condition_false),
            checkin_skipped: g(&self.checkin_skipped),
            failed: g(&self.failed),
            serialize_errors: g(&self.serialize_errors),
            panics_caught: g(&self.panics_caught),
            breaker_trips: g(&self.breaker_trips),
            registrations: g(&self.registrations),
            polls: g(&self.polls),
            poll_failures: g(&self.poll_failures),
            sse_connects: g(&self.sse_connects),
            sse_events: g(&self.sse_events),
            shutdown_abandoned: g(&self.shutdown_abandoned),
        }
    }
}

/// A capture prepared on the caller's thread, finished in the background.
pub(crate) struct Job {
    pub bp: Arc<Breakpoint>,
    /// Ask `POST /sdk/snapshots/checkin` before uploading.
    pub checkin: bool,
    /// The upload body, `stack_trace` excepted.
    pub body: Map<String, Value>,
    /// Rendered (symbolized) in the background, off the caller's thread.
    pub backtrace: Option<Backtrace>,
    pub stack_limit: usize,
    pub enqueued: Instant,
}

/// An auto-registration request.
pub(crate) struct Registration {
    pub file_path: &'static str,
    pub line_number: u32,
    pub function_name: String,
    pub label: String,
    /// Reset when the request could not be sent, so a later call retries.
    pub site: Option<&'static CallSite>,
}

/// State shared by every handle and the background thread.
pub(crate) struct Shared {
    /// Unique per instance in this process: call sites remember which instance registered
    /// them (several instances, e.g. in tests, each register their sites).
    pub instance: u64,
    pub config: Config,
    pub base_url: String,
    /// `enabled && !kill_switch && !shutdown`: the one atomic load of the hot path.
    pub active: AtomicBool,
    pub killed: AtomicBool,
    pub shutting_down: AtomicBool,
    pub index: ArcSwap<Index>,
    /// Hashes of `(file, line, label)` registered through `capture_snapshot`.
    registered: ArcSwap<HashSet<u64>>,
    registered_lock: Mutex<()>,
    pub scrubber: Option<Scrubber>,
    pub breaker: Mutex<CircuitBreaker>,
    pub pending_events: Mutex<Vec<Value>>,
    pub stats: Counters,
    pub capture_tx: Option<mpsc::Sender<Job>>,
    pub register_tx: Option<mpsc::Sender<Registration>>,
    pub poll_now: Notify,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn refresh_active(&self) {
        let active = self.config.enabled
            && !self.killed.load(Ordering::Acquire)
            && !self.shutting_down.load(Ordering::Acquire);
        self.active.store(active, Ordering::Release);
    }

    pub fn set_killed(&self, killed: bool) {
        let was = self.killed.swap(killed, Ordering::AcqRel);
        if was != killed {
            tracing::info!(kill_switch = killed, "sightline: kill switch changed");
        }
        self.refresh_active();
    }

    pub fn queue_event(&self, event: Value) {
        let mut ev = lock(&self.pending_events);
        if ev.len() < MAX_PENDING_EVENTS {
            ev.push(event);
        }
    }
}

/// The background thread and how to stop it.
pub(crate) struct Background {
    pub thread: std::thread::JoinHandle<()>,
    pub done: std::sync::mpsc::Receiver<()>,
    pub shutdown: tokio::sync::watch::Sender<Option<Instant>>,
}

struct Handle {
    shared: Arc<Shared>,
    background: Mutex<Option<Background>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Last handle gone without `shutdown`: stop the background thread without waiting.
        self.shared.shutting_down.store(true, Ordering::Release);
        self.shared.refresh_active();
        if let Some(bg) = lock(&self.background).take() {
            let _ = bg.shutdown.send(Some(Instant::now()));
        }
    }
}

/// What [`Sightline::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every queued capture was handled and the background thread was joined.
    pub clean: bool,
    /// Captures still queued or in flight at the deadline (abandoned).
    pub abandoned: u64,
}

/// A cheap, clonable handle to one SDK instance.
#[derive(Clone)]
pub struct Sightline {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for Sightline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sightline")
            .field("service", &self.inner.shared.config.service_name)
            .field("base_url", &self.inner.shared.base_url)
            .field("active", &self.inner.shared.active.load(Ordering::Relaxed))
            .finish()
    }
}

/// A compile-time call site (built by [`crate::capture!`]): file, line, module and label are
/// `&'static str`s, and the registration flag lives beside them, so the hot path touches no
/// heap memory.
#[derive(Debug)]
pub struct CallSite {
    pub file: &'static str,
    pub line: u32,
    pub module_path: &'static str,
    pub label: &'static str,
    /// Id of the SDK instance that registered this site (0 = none yet).
    registered: AtomicU64,
}

impl CallSite {
    /// Used by [`crate::capture!`] in a `static`.
    pub const fn new(
        file: &'static str,
        line: u32,
        module_path: &'static str,
        label: &'static str,
    ) -> Self {
        Self {
            file,
            line,
            module_path,
            label,
            registered: AtomicU64::new(0),
        }
    }
}

/// Lets a later call retry a registration that was not sent.
pub(crate) fn reset_registered(site: &'static CallSite, instance: u64) {
    let _ = site
        .registered
        .compare_exchange(instance, 0, Ordering::AcqRel, Ordering::Relaxed);
}

/// The enclosing function's path from the `type_name` of a nested marker fn: strips the
/// marker's own segment and any trailing `{{closure}}` segments (async fns and closures).
/// Allocation-free: returns a sub-slice of the `'static` type name.
pub fn enclosing_fn_name(marker_type_name: &'static str) -> &'static str {
    let mut s = marker_type_name;
    if let Some(i) = s.rfind("::") {
        s = &s[..i];
    }
    while let Some(rest) = s.strip_suffix("::{{closure}}") {
        s = rest;
    }
    s
}

/// A matched breakpoint, ready to capture (the slow path).
pub struct Hit {
    shared: Arc<Shared>,
    bp: Arc<Breakpoint>,
    file: &'static str,
    line: u32,
    function: &'static str,
    label: String,
}

impl Sightline {
    /// Starts the SDK: validates the config, builds the PII scrubber and starts the background
    /// thread (its own small tokio runtime) which polls, streams and uploads. With
    /// `enabled: false` nothing starts and every capture is a single atomic load. Never panics.
    pub fn init(config: Config) -> Result<Sightline, InitError> {
        match catch_unwind(AssertUnwindSafe(|| Self::init_inner(config))) {
            Ok(r) => r,
            Err(_) => Err(InitError::Panicked),
        }
    }

    fn init_inner(config: Config) -> Result<Sightline, InitError> {
        Self::build(config, true).map(|(sl, _)| sl)
    }

    /// Builds the handle; without `start_background` the capture queue's receiver is returned
    /// instead of being handed to a background thread (unit tests inspect queued jobs).
    fn build(
        config: Config,
        start_background: bool,
    ) -> Result<(Sightline, Option<mpsc::Receiver<Job>>), InitError> {
        let base_url = resolve_base_url(&config.endpoint);
        if config.enabled {
            if config.api_key.trim().is_empty() {
                return Err(InitError::MissingApiKey);
            }
            if config.service_name.trim().is_empty() {
                return Err(InitError::MissingServiceName);
            }
            if base_url.is_none() {
                return Err(InitError::InvalidEndpoint(config.endpoint.clone()));
            }
        }
        let scrubber = if config.pii.disabled {
            None
        } else if config.pii.custom_patterns.is_empty() {
            Some(Scrubber::builtin().clone())
        } else {
            Some(
                Scrubber::with_custom(&config.pii.custom_patterns)
                    .map_err(InitError::InvalidPiiPattern)?,
            )
        };
        let (capture_tx, capture_rx) = if config.enabled {
            let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (register_tx, register_rx) = if config.enabled {
            let (tx, rx) = mpsc::channel(256);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        static INSTANCES: AtomicU64 = AtomicU64::new(1);
        let shared = Arc::new(Shared {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            breaker: Mutex::new(CircuitBreaker::new(config.circuit_breaker.clone())),
            base_url: base_url.unwrap_or_default(),
            active: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            index: ArcSwap::from_pointee(Index::default()),
            registered: ArcSwap::from_pointee(HashSet::new()),
            registered_lock: Mutex::new(()),
            scrubber,
            pending_events: Mutex::new(Vec::new()),
            stats: Counters::default(),
            capture_tx,
            register_tx,
            poll_now: Notify::new(),
            config,
        });
        shared.refresh_active();
        let (background, detached) = match (capture_rx, register_rx) {
            (Some(c), Some(r)) if start_background => (
                Some(crate::background::start(shared.clone(), c, r).map_err(InitError::Startup)?),
                None,
            ),
            (c, _) => (None, c),
        };
        let sl = Sightline {
            inner: Arc::new(Handle {
                shared,
                background: Mutex::new(background),
            }),
        };
        Ok((sl, detached))
    }

    /// Counters since `init`.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats.snapshot()
    }

    /// Whether captures can happen now (enabled, kill switch off, not shut down).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.inner.shared.active.load(Ordering::Relaxed)
    }

    /// Whether the server's kill switch is on for this service.
    pub fn kill_switch(&self) -> bool {
        self.inner.shared.killed.load(Ordering::Relaxed)
    }

    /// Number of active breakpoints in the local cache.
    pub fn breakpoint_count(&self) -> usize {
        self.inner.shared.index.load().len()
    }

    /// Asks the background thread to poll now (normally it polls every `poll_interval` and
    /// listens on SSE in between).
    pub fn refresh(&self) {
        self.inner.shared.poll_now.notify_one();
    }

    /// Captures `vars` at the caller's location (`#[track_caller]`: file and line of the call;
    /// `function_name` is empty, so breakpoints match on `file:line`). Registers the call
    /// site once per process. Cheap and allocation-free when no breakpoint matches; never
    /// panics (a panicking `Serialize` is caught and counted).
    #[track_caller]
    pub fn capture_snapshot<T: Serialize + ?Sized>(&self, label: &str, vars: &T) {
        let loc = std::panic::Location::caller();
        let (file, line) = (loc.file(), loc.line());
        let r = catch_unwind(AssertUnwindSafe(|| {
            let sh = &self.inner.shared;
            if !sh.active.load(Ordering::Relaxed) {
                return;
            }
            self.ensure_registered(file, line, label);
            let hit = sh.index.load().lookup("", label, file, line).cloned();
            if let Some(bp) = hit {
                let hit = Hit {
                    shared: sh.clone(),
                    bp,
                    file,
                    line,
                    function: "",
                    label: label.to_owned(),
                };
                hit.capture_with(|| serde_json::to_value(vars));
            }
        }));
        if r.is_err() {
            inc(&self.inner.shared.stats.panics_caught);
        }
    }

    fn ensure_registered(&self, file: &'static str, line: u32, label: &str) {
        let sh = &self.inner.shared;
        let mut h = std::hash::DefaultHasher::new();
        (file, line, label).hash(&mut h);
        let key = h.finish();
        if sh.registered.load().contains(&key) {
            return;
        }
        let _g = lock(&sh.registered_lock);
        let current = sh.registered.load_full();
        if current.contains(&key) || current.len() >= MAX_REGISTERED_SITES {
            return;
        }
        let reg = Registration {
            file_path: file,
            line_number: line,
            function_name: String::new(),
            label: label.to_owned(),
            site: None,
        };
        if sh
            .register_tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(reg).is_ok())
        {
            let mut next = (*current).clone();
            next.insert(key);
            sh.registered.store(Arc::new(next));
        }
    }

    /// The macro's hot path: `None` (no allocation) unless a breakpoint matches this site.
    #[doc(hidden)]
    #[inline]
    pub fn __check(&self, site: &'static CallSite, function: &'static str) -> Option<Hit> {
        let sh = &self.inner.shared;
        if !sh.active.load(Ordering::Relaxed) {
            return None;
        }
        if site.registered.load(Ordering::Relaxed) != sh.instance {
            self.register_site(site, function);
        }
        let bp = sh
            .index
            .load()
            .lookup(function, site.label, site.file, site.line)
            .cloned()?;
        Some(Hit {
            shared: sh.clone(),
            bp,
            file: site.file,
            line: site.line,
            function,
            label: site.label.to_owned(),
        })
    }

    #[cold]
    fn register_site(&self, site: &'static CallSite, function: &'static str) {
        let instance = self.inner.shared.instance;
        let current = site.registered.load(Ordering::Acquire);
        if current == instance
            || site
                .registered
                .compare_exchange(current, instance, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let reg = Registration {
            file_path: site.file,
            line_number: site.line,
            function_name: function.to_owned(),
            label: site.label.to_owned(),
            site: Some(site),
        };
        let sent = self
            .inner
            .shared
            .register_tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(reg).is_ok());
        if !sent {
            reset_registered(site, instance);
        }
    }

    /// Stops the SDK: no new captures; queued ones are uploaded until `deadline` passes, then
    /// the background thread is joined. Returns whether everything was flushed. Idempotent;
    /// never panics.
    pub fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let sh = &self.inner.shared;
        let r = catch_unwind(AssertUnwindSafe(|| {
            sh.shutting_down.store(true, Ordering::Release);
            sh.refresh_active();
            let Some(bg) = lock(&self.inner.background).take() else {
                return ShutdownReport {
                    clean: true,
                    abandoned: 0,
                };
            };
            let start = Instant::now();
            let before = sh.stats.shutdown_abandoned.load(Ordering::Relaxed);
            let _ = bg.shutdown.send(Some(start + deadline));
            // The background thread stops by itself at the deadline; allow a little extra for
            // its runtime to wind down before giving up on joining it.
            let wait = deadline + Duration::from_millis(500);
            let joined = match bg.done.recv_timeout(wait) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    bg.thread.join().is_ok()
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!("sightline: background thread did not stop in time");
                    false
                }
            };
            let abandoned = sh.stats.shutdown_abandoned.load(Ordering::Relaxed) - before;
            ShutdownReport {
                clean: joined && abandoned == 0,
                abandoned,
            }
        }));
        r.unwrap_or_else(|_| {
            inc(&sh.stats.panics_caught);
            ShutdownReport {
                clean: false,
                abandoned: 0,
            }
        })
    }
}

impl Hit {
    /// Serializes the variables produced by `vars` (run under `catch_unwind`), applies the
    /// limits and PII scrubbing, and queues the capture. Never panics.
    pub fn capture_with<F>(self, vars: F)
    where
        F: FnOnce() -> Result<Value, serde_json::Error>,
    {
        let shared = self.shared.clone();
        let r = catch_unwind(AssertUnwindSafe(|| self.prepare(vars)));
        if r.is_err() {
            inc(&shared.stats.panics_caught);
        }
    }

    fn prepare<F>(self, vars: F)
    where
        F: FnOnce() -> Result<Value, serde_json::Error>,
    {
        let sh = &*self.shared;
        let bp = &self.bp;
        let Some(tx) = sh.capture_tx.as_ref() else {
            return;
        };
        if lock(&sh.breaker).is_open(Instant::now()) {
            inc(&sh.stats.dropped_circuit_open);
            return;
        }
        if !bp.reserve() {
            inc(&sh.stats.dropped_max_captures);
            return;
        }
        let mut variables = match catch_unwind(AssertUnwindSafe(vars)) {
            Ok(Ok(Value::Object(m))) => Value::Object(m),
            Ok(Ok(Value::Null)) => Value::Object(Map::new()),
            Ok(Ok(other)) => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                Value::Object(m)
            }
            Ok(Err(e)) => {
                inc(&sh.stats.serialize_errors);
                error_vars(format!("serialization failed: {e}"))
            }
            Err(_) => {
                inc(&sh.stats.serialize_errors);
                error_vars("serialization panicked".to_owned())
            }
        };
        let checkin = match &bp.condition {
            ConditionCheck::None => false,
            ConditionCheck::Server => true,
            ConditionCheck::Local(c) => match c.evaluate_bool(&variables) {
                Ok(true) => false,
                Ok(false) => {
                    bp.release();
                    inc(&sh.stats.condition_false);
                    return;
                }
                // Reference §4: an evaluation error captures anyway (the server re-checks).
                Err(_) => false,
            },
        };
        let mut body = Map::new();
        let mut expression_results = None;
        if bp.logpoint {
            expression_results = Some(evaluate_expressions(&bp.capture_expressions, &variables));
            variables = Value::Object(Map::new());
        }
        let cfg = &sh.config.limits;
        let eff = Effective {
            max_depth: bp.max_depth.unwrap_or(cfg.max_depth),
            max_string_len: cfg.max_string_len,
            max_collection_items: cfg.max_collection_items,
            max_payload_bytes: bp.max_payload_bytes.unwrap_or(cfg.max_payload_bytes),
        };
        limits::apply(&mut variables, &eff);
        let mut flags = Vec::new();
        if let Some(s) = &sh.scrubber {
            flags = s.scrub_variables(&mut variables);
            if let Some(er) = expression_results.as_mut() {
                flags.extend(s.scrub_value(er, "expression_results"));
            }
        }
        if limits::apply_payload_limit(&mut variables, eff.max_payload_bytes) {
            flags.clear();
        }
        let request_context = crate::context::current_request_context()
            .and_then(|rc| serde_json::to_value(rc).ok())
            .map(|mut rc| {
                limits::apply(
                    &mut rc,
                    &Effective {
                        max_depth: 0,
                        ..eff
                    },
                );
                if let Some(s) = &sh.scrubber {
                    flags.extend(s.scrub_request_context(&mut rc));
                }
                rc
            });
        let stack_limit = bp.stack_depth.unwrap_or(cfg.stack_frame_limit);
        let backtrace = (!bp.logpoint && stack_limit > 0).then(Backtrace::force_capture);
        body.insert("breakpoint_id".into(), bp.id.clone().into());
        body.insert("service_name".into(), sh.config.service_name.clone().into());
        body.insert("file_path".into(), self.file.into());
        body.insert("function_name".into(), self.function.into());
        body.insert("label".into(), self.label.into());
        body.insert("line_number".into(), self.line.into());
        body.insert("variables".into(), variables);
        body.insert(
            "security_flags".into(),
            serde_json::to_value(&flags).unwrap_or(Value::Array(Vec::new())),
        );
        if let Some((trace_id, span_id)) = crate::trace::current_trace_ids() {
            body.insert("trace_id".into(), trace_id.into());
            body.insert("span_id".into(), span_id.into());
        }
        if let Some(rc) = request_context {
            body.insert("request_context".into(), rc);
        }
        if let Some(er) = expression_results {
            body.insert("expression_results".into(), er);
            body.insert("mode".into(), "logpoint".into());
        }
        body.insert("captured_at".into(), now_rfc3339().into());
        body.insert(
            "idempotency_key".into(),
            uuid::Uuid::new_v4().to_string().into(),
        );
        let job = Job {
            bp: self.bp.clone(),
            checkin,
            body,
            backtrace,
            stack_limit,
            enqueued: Instant::now(),
        };
        match tx.try_send(job) {
            Ok(()) => inc(&sh.stats.captured),
            Err(_) => {
                self.bp.release();
                inc(&sh.stats.dropped_queue_full);
            }
        }
    }
}

fn error_vars(msg: String) -> Value {
    let mut m = Map::new();
    m.insert("_error".into(), msg.into());
    Value::Object(m)
}

/// Logpoint `capture_expressions` → `{expr: value-or-null}`; server-only expressions and
/// evaluation errors give `null` (reference §4).
fn evaluate_expressions(exprs: &[String], vars: &Value) -> Value {
    let mut out = Map::new();
    for e in exprs {
        let v = if classify(e) == ConditionEval::ServerOnly {
            Value::Null
        } else {
            Condition::compile(e)
                .and_then(|c| c.evaluate(vars))
                .unwrap_or(Value::Null)
        };
        out.insert(e.clone(), v);
    }
    Value::Object(out)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn now_rfc3339() -> String {
    sightline_core::timefmt::format_ms(now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enclosing_fn_names() {
        assert_eq!(
            enclosing_fn_name("app::handlers::pay::__sightline_here"),
            "app::handlers::pay"
        );
        assert_eq!(
            enclosing_fn_name("app::pay::{{closure}}::__sightline_here"),
            "app::pay"
        );
        assert_eq!(
            enclosing_fn_name("app::pay::{{closure}}::{{closure}}::h"),
            "app::pay"
        );
        assert_eq!(enclosing_fn_name("h"), "h");
    }

    #[test]
    fn disabled_sdk_starts_nothing_and_captures_nothing() {
        let mut c = Config::new("", "");
        c.enabled = false;
        let sl = match Sightline::init(c) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(!sl.is_active());
        sl.capture_snapshot("x", &serde_json::json!({"a": 1}));
        assert_eq!(sl.stats(), Stats::default());
        assert!(sl.shutdown(Duration::from_millis(10)).clean);
    }

    #[test]
    fn init_validates() {
        assert!(matches!(
            Sightline::init(Config::new("", "svc")),
            Err(InitError::MissingApiKey)
        ));
        assert!(matches!(
            Sightline::init(Config::new("k", " ")),
            Err(InitError::MissingServiceName)
        ));
        assert!(matches!(
            Sightline::init(Config::new("k", "s").with_endpoint("http://")),
            Err(InitError::InvalidEndpoint(_))
        ));
    }

    fn detached(config: Config, breakpoints: Value) -> (Sightline, mpsc::Receiver<Job>) {
        let Ok((sl, Some(rx))) = Sightline::build(config, false) else {
            panic!("build")
        };
        let list = breakpoints.as_array().cloned().unwrap_or_default();
        sl.inner
            .shared
            .index
            .store(Arc::new(Index::from_list(&list)));
        (sl, rx)
    }

    #[test]
    fn caller_thread_pipeline_limits_and_scrubs_before_queueing() {
        let mut config = Config::new("k", "svc");
        config.limits.max_string_len = 20;
        let line = line!() + 6;
        let bp = serde_json::json!([{"id": "bp1", "file_path": file!(), "line_number": line, "enabled": true, "max_depth": 3}]);
        let (sl, mut rx) = detached(config, bp);
        let vars = serde_json::json!({
            "user": {"email": "ana@example.com", "card": "4111 1111 1111 1111", "profile": {"password": "hunter2secret", "deep": {"x": 1}}},
            "long": "abcdefghijklmnopqrstuvwxyz", "n": 7});
        sl.capture_snapshot("lbl", &vars);
        let job = rx.try_recv().unwrap_or_else(|_| panic!("no job queued"));
        let body = Value::Object(job.body);
        let text = body.to_string();
        for raw in ["ana@example.com", "4111", "hunter2secret"] {
            assert!(!text.contains(raw), "{raw} leaked: {text}");
        }
        let v = &body["variables"];
        assert_eq!(v["user"]["email"], "[REDACTED:email]");
        assert_eq!(v["user"]["card"], "[REDACTED:credit_card]");
        assert_eq!(
            v["user"]["profile"]["password"],
            "[REDACTED:sensitive_name]"
        );
        assert_eq!(
            v["user"]["profile"]["deep"],
            serde_json::json!({"_truncated": true, "_depth": 3})
        );
        assert_eq!(v["long"], "abcdefghijklmnopqrst...");
        assert_eq!(v["n"], 7);
        assert!(
            body["security_flags"]
                .as_array()
                .is_some_and(|f| f.len() == 3),
            "{body}"
        );
        assert_eq!(body["breakpoint_id"], "bp1");
        assert_eq!(body["file_path"], file!());
        assert_eq!(body["line_number"], line);
        assert!(body["idempotency_key"]
            .as_str()
            .is_some_and(|k| k.len() == 36));
        assert!(job.backtrace.is_some() && !job.checkin);
        assert_eq!(sl.stats().captured, 1);
        // Another line: no breakpoint, nothing queued, Serialize never called.
        struct Boom;
        impl Serialize for Boom {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                panic!("must not be serialized")
            }
        }
        sl.capture_snapshot("lbl", &Boom);
        assert!(rx.try_recv().is_err());
        assert_eq!(sl.stats().panics_caught, 0);
    }

    #[test]
    fn local_conditions_logpoints_payload_and_max_captures() {
        let line = line!() + 11;
        let bps = serde_json::json!([
            {"id": "c", "file_path": file!(), "line_number": line, "condition": "x > 5", "condition_eval": "sdk-evaluable", "max_captures": 2},
            {"id": "l", "file_path": file!(), "line_number": line + 1, "mode": "logpoint", "capture_expressions": ["x * 2", "len(y)"]},
            {"id": "p", "file_path": file!(), "line_number": line + 2, "max_payload_bytes": 30},
            {"id": "s", "file_path": file!(), "line_number": line + 3, "condition": "len(y) > 1", "condition_eval": "server-only"},
        ]);
        let mut config = Config::new("k", "svc");
        config.queue_capacity = 64;
        let (sl, mut rx) = detached(config, bps);
        let go = |sl: &Sightline, x: i64| {
            sl.capture_snapshot("c", &serde_json::json!({"x": x}));
            sl.capture_snapshot("l", &serde_json::json!({"x": x, "y": [1]}));
            sl.capture_snapshot(
                "p",
                &serde_json::json!({"blob": "0123456789012345678901234567890123456789"}),
            );
            sl.capture_snapshot("s", &serde_json::json!({"y": [1]}));
        };
        go(&sl, 1);
        go(&sl, 10);
        go(&sl, 10);
        go(&sl, 10);
        let jobs: Vec<Job> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let ids: Vec<&str> = jobs
            .iter()
            .filter_map(|j| j.body["breakpoint_id"].as_str())
            .collect();
        assert_eq!(
            ids.iter().filter(|i| **i == "c").count(),
            2,
            "x=1 skipped, then max_captures 2"
        );
        let st = sl.stats();
        assert_eq!((st.condition_false, st.dropped_max_captures), (1, 1));
        let log = jobs
            .iter()
            .find(|j| j.body["breakpoint_id"] == "l")
            .map(|j| Value::Object(j.body.clone()));
        let log = log.unwrap_or_default();
        assert_eq!(log["variables"], serde_json::json!({}));
        assert_eq!(
            log["expression_results"],
            serde_json::json!({"x * 2": 2, "len(y)": null})
        );
        assert_eq!(log["mode"], "logpoint");
        let p = jobs
            .iter()
            .find(|j| j.body["breakpoint_id"] == "p")
            .map(|j| j.body["variables"].clone());
        assert_eq!(
            p.unwrap_or_default(),
            serde_json::json!({"_truncated": true, "_payload_size": 51, "_max_payload": 30, "_truncated_by": "payload_limit"})
        );
        assert!(jobs
            .iter()
            .filter(|j| j.body["breakpoint_id"] == "s")
            .all(|j| j.checkin));
    }

    #[test]
    fn logpoint_expressions() {
        let vars = serde_json::json!({"status": 200, "user": {"tags": [1, 2]}});
        let r = evaluate_expressions(
            &["status".into(), "len(user.tags)".into(), "user.nope".into()],
            &vars,
        );
        assert_eq!(
            r,
            serde_json::json!({"status": 200, "len(user.tags)": null, "user.nope": null})
        );
    }
}
