//! The background thread: a single-threaded tokio runtime running breakpoint sync (poll +
//! SSE with fallback and backoff), auto-registration, and the capture upload worker.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::breaker::Admission;
use crate::breakpoints::{Breakpoint, Index};
use crate::client::{inc, lock, now_rfc3339, Background, Job, Registration, Shared};
use crate::limits::format_backtrace;
use crate::sse::SseParser;

/// Largest response body read (poll, register, check-in, capture).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Longest SSE line / event data.
const MAX_SSE_LINE: usize = 1024 * 1024;
/// An SSE stream silent for this long is considered dead (the server sends heartbeats).
const SSE_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Concurrent capture uploads.
const UPLOAD_CONCURRENCY: usize = 4;
/// Delay between a successful auto-registration and the re-poll (reference §3).
const REGISTER_REPOLL_DELAY: Duration = Duration::from_millis(500);

/// Spawns the background thread.
pub(crate) fn start(
    shared: Arc<Shared>,
    captures: mpsc::Receiver<Job>,
    registrations: mpsc::Receiver<Registration>,
) -> Result<Background, String> {
    let http = reqwest::Client::builder()
        .connect_timeout(shared.config.request_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (shutdown_tx, shutdown_rx) = watch::channel(None::<Instant>);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sightline".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runtime.block_on(run(
                    shared.clone(),
                    http,
                    captures,
                    registrations,
                    shutdown_rx,
                ));
                // Drops every remaining task (sleeping re-polls, an open SSE stream).
                runtime.shutdown_timeout(Duration::from_millis(200));
            }));
            if outcome.is_err() {
                inc(&shared.stats.panics_caught);
            }
            let _ = done_tx.send(());
        })
        .map_err(|e| e.to_string())?;
    Ok(Background {
        thread,
        done: done_rx,
        shutdown: shutdown_tx,
    })
}

async fn run(
    sh: Arc<Shared>,
    http: reqwest::Client,
    captures: mpsc::Receiver<Job>,
    registrations: mpsc::Receiver<Registration>,
    mut shutdown: watch::Receiver<Option<Instant>>,
) {
    let sync = tokio::spawn(sync_loop(sh.clone(), http.clone()));
    let register = tokio::spawn(register_loop(sh.clone(), http.clone(), registrations));
    let mut captures = captures;
    let mut uploads = Box::pin(upload_loop(&sh, &http, &mut captures, shutdown.clone()));
    let deadline = async {
        let d = loop {
            if let Some(d) = *shutdown.borrow_and_update() {
                break d;
            }
            if shutdown.changed().await.is_err() {
                break Instant::now();
            }
        };
        tokio::time::sleep_until(d.into()).await;
    };
    let flushed = tokio::select! {
        _ = &mut uploads => true,
        _ = deadline => false,
    };
    drop(uploads);
    if !flushed {
        tracing::warn!("sightline: shutdown deadline reached with captures still queued");
    }
    captures.close();
    while let Ok(job) = captures.try_recv() {
        job.bp.release();
        inc(&sh.stats.shutdown_abandoned);
    }
    sync.abort();
    register.abort();
}

// ---------------------------------------------------------------- uploads

/// Uploads queued captures, [`UPLOAD_CONCURRENCY`] at a time. Once shutdown is requested the
/// channel is closed and drained; the loop ends when it is empty and nothing is in flight.
async fn upload_loop(
    sh: &Arc<Shared>,
    http: &reqwest::Client,
    rx: &mut mpsc::Receiver<Job>,
    mut shutdown: watch::Receiver<Option<Instant>>,
) {
    let mut inflight = futures::stream::FuturesUnordered::new();
    let mut closed = false;
    let mut exhausted = false;
    loop {
        if exhausted && inflight.is_empty() {
            return;
        }
        tokio::select! {
            Some(()) = inflight.next(), if !inflight.is_empty() => {}
            j = rx.recv(), if !exhausted && inflight.len() < UPLOAD_CONCURRENCY => match j {
                Some(job) => inflight.push(process(sh, http, job)),
                None => exhausted = true,
            },
            r = shutdown.changed(), if !closed => {
                if r.is_err() || shutdown.borrow().is_some() {
                    rx.close();
                    closed = true;
                }
            }
        }
    }
}

async fn process(sh: &Arc<Shared>, http: &reqwest::Client, job: Job) {
    // Disarmed on completion; a drop before that (shutdown deadline) counts as abandoned.
    let mut guard = AbandonGuard {
        sh: sh.clone(),
        bp: job.bp.clone(),
        armed: true,
    };
    let deadline = job.enqueued + sh.config.capture_timeout;
    match tokio::time::timeout_at(deadline.into(), deliver(sh, http, job)).await {
        Ok(()) => {}
        Err(_) => {
            inc(&sh.stats.failed);
            record_failure(sh);
        }
    }
    guard.armed = false;
}

/// Counts a job dropped mid-flight by the shutdown deadline.
struct AbandonGuard {
    sh: Arc<Shared>,
    bp: Arc<Breakpoint>,
    armed: bool,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if self.armed {
            self.bp.release();
            inc(&self.sh.stats.shutdown_abandoned);
        }
    }
}

async fn deliver(sh: &Arc<Shared>, http: &reqwest::Client, job: Job) {
    let Job {
        bp,
        checkin,
        mut body,
        backtrace,
        stack_limit,
        ..
    } = job;
    if sh.killed.load(Ordering::Acquire) {
        bp.release();
        inc(&sh.stats.dropped_inactive);
        return;
    }
    if checkin {
        let variables = body.get("variables").cloned().unwrap_or(Value::Null);
        // `None` (check-in unavailable) uploads anyway: the server evaluates the condition
        // again on capture and drops a non-matching snapshot.
        if checkin_decision(sh, http, &bp.id, variables).await == Some(false) {
            bp.release();
            inc(&sh.stats.checkin_skipped);
            return;
        }
    }
    let admission = lock(&sh.breaker).allow(Instant::now());
    match admission {
        Admission::Open => {
            bp.release();
            inc(&sh.stats.dropped_circuit_open);
            return;
        }
        Admission::Resumed => tracing::info!("sightline: code monitoring resumed"),
        Admission::Allowed => {}
    }
    let stack = backtrace
        .map(|b| format_backtrace(&b.to_string(), stack_limit))
        .unwrap_or_default();
    body.insert("stack_trace".into(), stack.into());
    let body = Value::Object(body);
    let url = format!("{}/sdk/snapshots/capture", sh.base_url);
    let attempts = sh.config.upload_attempts.max(1);
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
        }
        let resp = http
            .post(&url)
            .header("X-API-Key", &sh.config.api_key)
            .timeout(sh.config.request_timeout)
            .json(&body)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => {
                inc(&sh.stats.uploaded);
                if let Some(v) = read_json(r).await {
                    if v.get("status").and_then(Value::as_str) == Some("dropped") {
                        inc(&sh.stats.server_dropped);
                    }
                }
                return;
            }
            Ok(r) if r.status().is_server_error() => {
                tracing::debug!(status = %r.status(), "sightline: capture upload failed; retrying");
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), "sightline: capture rejected");
                inc(&sh.stats.failed);
                return;
            }
            Err(e) => tracing::debug!(error = %e, "sightline: capture upload error; retrying"),
        }
    }
    inc(&sh.stats.failed);
    record_failure(sh);
}

/// A counted circuit-breaker failure; queues the `circuit_breaker_tripped` event on a trip.
fn record_failure(sh: &Shared) {
    let tripped = lock(&sh.breaker).record_failure(Instant::now());
    if tripped {
        let cb = &sh.config.circuit_breaker;
        inc(&sh.stats.breaker_trips);
        tracing::warn!(
            "sightline: code monitoring paused ({} capture failures in {}s); auto-resumes in {} min",
            cb.max_failures,
            cb.window.as_secs(),
            cb.cooldown.as_secs() / 60
        );
        sh.queue_event(json!({
            "type": "circuit_breaker_tripped",
            "service_name": sh.config.service_name,
            "failure_count": cb.max_failures,
            "window_seconds": cb.window.as_secs(),
            "cooldown_seconds": cb.cooldown.as_secs(),
            "timestamp": now_rfc3339(),
        }));
    }
}

/// `POST /sdk/snapshots/checkin`: `Some(capture?)`, or `None` when the server could not say.
async fn checkin_decision(
    sh: &Shared,
    http: &reqwest::Client,
    id: &str,
    variables: Value,
) -> Option<bool> {
    let resp = http
        .post(format!("{}/sdk/snapshots/checkin", sh.base_url))
        .header("X-API-Key", &sh.config.api_key)
        .timeout(sh.config.request_timeout)
        .json(&json!({"breakpoint_id": id, "variables": variables}))
        .send()
        .await
        .ok()?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Some(false); // the breakpoint is gone
    }
    if !resp.status().is_success() {
        return None;
    }
    let v = read_json(resp).await?;
    match v.get("capture").and_then(Value::as_bool) {
        Some(b) => Some(b),
        None => v
            .get("decision")
            .and_then(Value::as_str)
            .map(|d| d == "capture"),
    }
}

/// Reads a JSON body of at most [`MAX_RESPONSE_BYTES`].
async fn read_json(resp: reqwest::Response) -> Option<Value> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return None;
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).ok()
}

// ---------------------------------------------------------------- registration

async fn register_loop(
    sh: Arc<Shared>,
    http: reqwest::Client,
    mut rx: mpsc::Receiver<Registration>,
) {
    while let Some(reg) = rx.recv().await {
        if !sh.active.load(Ordering::Acquire) {
            // Kill switch or shutdown: no registration; let a later call try again.
            if let Some(site) = reg.site {
                crate::client::reset_registered(site, sh.instance);
            }
            continue;
        }
        let body = json!({
            "service_name": sh.config.service_name,
            "file_path": reg.file_path,
            "line_number": reg.line_number,
            "function_name": reg.function_name,
            "label": reg.label,
        });
        let mut ok = false;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            let resp = http
                .post(format!("{}/sdk/snapshots/auto-register", sh.base_url))
                .header("X-API-Key", &sh.config.api_key)
                .timeout(sh.config.request_timeout)
                .json(&body)
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    ok = true;
                    break;
                }
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(status = %r.status(), "sightline: auto-register rejected");
                    break;
                }
                Ok(_) | Err(_) => {}
            }
        }
        if ok {
            inc(&sh.stats.registrations);
            let sh = sh.clone();
            tokio::spawn(async move {
                tokio::time::sleep(REGISTER_REPOLL_DELAY).await;
                sh.poll_now.notify_one();
            });
        }
    }
}

// ---------------------------------------------------------------- breakpoint sync

async fn sync_loop(sh: Arc<Shared>, http: reqwest::Client) {
    let mut sse: Option<tokio::task::JoinHandle<bool>> = None;
    let mut sse_failures: u32 = 0;
    let mut sse_next_try = Instant::now();
    loop {
        let sse_endpoint = poll_once(&sh, &http).await;
        if let Some(task) = sse.as_mut().filter(|t| t.is_finished()) {
            let got_init = task.await.unwrap_or(false);
            sse = None;
            sse_failures = if got_init {
                1
            } else {
                sse_failures.saturating_add(1)
            };
            let backoff =
                Duration::from_secs(1u64 << sse_failures.min(6)).min(Duration::from_secs(60));
            sse_next_try = Instant::now() + backoff;
        }
        let killed = sh.killed.load(Ordering::Acquire);
        if killed {
            if let Some(t) = sse.take() {
                t.abort();
            }
        }
        let want_sse = !killed && sse.is_none() && sse_endpoint.is_some();
        if want_sse && Instant::now() >= sse_next_try {
            if let Some(path) = &sse_endpoint {
                sse = Some(tokio::spawn(sse_session(
                    sh.clone(),
                    http.clone(),
                    path.clone(),
                )));
            }
        }
        let interval = if killed {
            sh.config.kill_switch_poll_interval
        } else {
            sh.config.poll_interval
        };
        let retry_sse_at = (want_sse && sse.is_none()).then_some(sse_next_try);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = sh.poll_now.notified() => {}
            _ = async {
                match retry_sse_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// One poll; replaces the cache. Returns the SSE path when the server offers one.
async fn poll_once(sh: &Arc<Shared>, http: &reqwest::Client) -> Option<String> {
    let url = format!(
        "{}/sdk/snapshots/active/{}",
        sh.base_url, sh.config.service_name
    );
    let events: Vec<Value> = lock(&sh.pending_events).clone();
    let req = if events.is_empty() {
        http.get(&url)
    } else {
        http.post(&url).json(&json!({"events": events}))
    };
    let resp = req
        .header("X-API-Key", &sh.config.api_key)
        .timeout(sh.config.request_timeout)
        .send()
        .await;
    let body = match resp {
        Ok(r) if r.status().is_success() => read_json(r).await,
        Ok(r) => {
            tracing::debug!(status = %r.status(), "sightline: poll failed");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "sightline: poll failed");
            None
        }
    };
    let Some(body) = body else {
        inc(&sh.stats.poll_failures);
        return None;
    };
    inc(&sh.stats.polls);
    if !events.is_empty() {
        let mut pending = lock(&sh.pending_events);
        let n = events.len().min(pending.len());
        pending.drain(..n);
    }
    apply_state(sh, &body);
    body.get("sse_endpoint")
        .and_then(Value::as_str)
        .filter(|p| p.starts_with('/') && p.len() < 2048)
        .map(str::to_owned)
}

/// Applies a poll response or SSE `init`: the whole cache and the kill switch.
fn apply_state(sh: &Shared, body: &Value) {
    let killed = body
        .get("kill_switch")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let list = body
        .get("breakpoints")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    sh.index.store(Arc::new(Index::from_list(list)));
    sh.set_killed(killed);
}

/// One SSE connection; returns whether it got as far as an `init` event.
async fn sse_session(sh: Arc<Shared>, http: reqwest::Client, path: String) -> bool {
    let resp = http
        .get(format!("{}{}", sh.base_url, path))
        .header("X-API-Key", &sh.config.api_key)
        .header("Accept", "text/event-stream")
        .header("Cache-Control", "no-cache")
        .timeout(Duration::from_secs(365 * 24 * 3600))
        .send()
        .await;
    let resp = match resp {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            tracing::debug!(status = %r.status(), "sightline: SSE refused; polling");
            sh.poll_now.notify_one();
            return false;
        }
        Err(e) => {
            tracing::debug!(error = %e, "sightline: SSE connect failed; polling");
            sh.poll_now.notify_one();
            return false;
        }
    };
    inc(&sh.stats.sse_connects);
    let mut parser = SseParser::new(MAX_SSE_LINE);
    let mut stream = resp.bytes_stream();
    let mut got_init = false;
    'outer: loop {
        let chunk = match tokio::time::timeout(SSE_IDLE_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(c))) => c,
            _ => break,
        };
        for ev in parser.feed(&chunk) {
            inc(&sh.stats.sse_events);
            if ev.event == "init" {
                got_init = true;
            }
            if !handle_event(&sh, &ev.event, &ev.data) {
                break 'outer;
            }
        }
    }
    tracing::debug!("sightline: SSE stream closed; falling back to polling");
    sh.poll_now.notify_one();
    got_init
}

/// Applies one SSE event; `false` means close the stream (kill switch on).
pub(crate) fn handle_event(sh: &Shared, event: &str, data: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return true;
    };
    match event {
        "init" => {
            apply_state(sh, &v);
            !sh.killed.load(Ordering::Acquire)
        }
        "breakpoint_created" | "breakpoint_updated" => {
            let mut next = (**sh.index.load()).clone();
            match Breakpoint::from_wire(&v) {
                Some(bp) => next.upsert(Arc::new(bp)),
                // A disabled breakpoint in an update: no longer active.
                None => {
                    if let Some(id) = v.get("id").and_then(Value::as_str) {
                        next.remove(id);
                    }
                }
            }
            sh.index.store(Arc::new(next));
            true
        }
        "breakpoint_deleted" => {
            if let Some(id) = v.get("id").and_then(Value::as_str) {
                if sh.index.load().get(id).is_some() {
                    let mut next = (**sh.index.load()).clone();
                    next.remove(id);
                    sh.index.store(Arc::new(next));
                }
            }
            true
        }
        "kill_switch" => {
            let on = v.get("enabled").and_then(Value::as_bool).unwrap_or(false);
            sh.set_killed(on);
            // The poll loop re-arms its interval (60 s while killed).
            sh.poll_now.notify_one();
            !on
        }
        _ => true, // heartbeat, sdk_count, unknown
    }
}
