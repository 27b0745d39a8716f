//! The background thread: a single-threaded tokio runtime running breakpoint sync (poll +
//! SSE with fallback and backoff), auto-registration, and the capture upload worker.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::breaker::Admission;
use crate::breakpoints::{Breakpoint, Index};
use crate::client::{inc, lock, now_rfc3339, Background, Counters, Job, Registration, Shared};
use crate::limits::format_backtrace;
use crate::sse::SseParser;

/// Largest response body read (poll, register, check-in, capture).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Longest SSE line / event data.
const MAX_SSE_LINE: usize = 1024 * 1024;
/// An SSE stream silent for this long is considered dead (the server sends heartbeats).
const SSE_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Concurrent capture upload requests (each a batch or a single snapshot).
const UPLOAD_CONCURRENCY: usize = 4;
/// Concurrent check-ins (snapshots of breakpoints with a server-only condition).
const CHECKIN_CONCURRENCY: usize = 4;
/// Most snapshots in one batch upload (the server's limit).
const MAX_BATCH: usize = sightline_core::wire::MAX_BATCH;
/// Largest batch body, kept well under the server's 1 MiB request limit.
const MAX_BATCH_BYTES: usize = 900 * 1024;
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

/// Uploads queued captures over at most [`UPLOAD_CONCURRENCY`] concurrent requests.
///
/// A free upload slot takes whatever is queued — up to [`MAX_BATCH`] snapshots within
/// [`MAX_BATCH_BYTES`] — and sends it as one `POST /sdk/snapshots/capture/batch`; a single
/// snapshot goes out at once on the classic `POST /sdk/snapshots/capture`, so nothing waits
/// for a batch to fill and batches only form under load. A backend without the batch route
/// (404/405) is remembered for the life of this instance and everything is uploaded one by
/// one from then on. Snapshots of breakpoints with a server-only condition are checked in,
/// one by one, before they join a batch.
///
/// Once shutdown is requested the channel is closed and drained; the loop ends when it is
/// empty and nothing is in flight. Dropping the loop (shutdown deadline) counts every
/// snapshot it still holds as abandoned.
async fn upload_loop(
    sh: &Arc<Shared>,
    http: &reqwest::Client,
    rx: &mut mpsc::Receiver<Job>,
    mut shutdown: watch::Receiver<Option<Instant>>,
) {
    // Declared before the futures that borrow it.
    let route = BatchRoute::default();
    let mut uploads = futures::stream::FuturesUnordered::new();
    let mut checkins = futures::stream::FuturesUnordered::new();
    let mut ready: VecDeque<Item> = VecDeque::new();
    let mut closed = false;
    let mut exhausted = false;
    loop {
        if uploads.len() < UPLOAD_CONCURRENCY {
            // Drain what is queued (without waiting) into `ready`, then send one request.
            let max_count = route.max_batch();
            while !exhausted && ready.len() < max_count && checkins.len() < CHECKIN_CONCURRENCY {
                match rx.try_recv() {
                    Ok(job) => {
                        if let Some(job) = admit(sh, job, &mut ready) {
                            checkins.push(checkin_then_prepare(sh, http, job));
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => exhausted = true,
                }
            }
            let batch = next_batch(sh, &mut ready, max_count);
            if !batch.is_empty() {
                uploads.push(upload(sh, http, &route, batch));
                continue;
            }
        }
        if exhausted && uploads.is_empty() && checkins.is_empty() && ready.is_empty() {
            return;
        }
        tokio::select! {
            Some(()) = uploads.next(), if !uploads.is_empty() => {}
            Some(item) = checkins.next(), if !checkins.is_empty() => ready.extend(item),
            j = rx.recv(), if !exhausted
                && uploads.len() < UPLOAD_CONCURRENCY
                && checkins.len() < CHECKIN_CONCURRENCY => match j {
                Some(job) => {
                    if let Some(job) = admit(sh, job, &mut ready) {
                        checkins.push(checkin_then_prepare(sh, http, job));
                    }
                }
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

/// Whether the server has the batch route, as far as this SDK instance knows. Starts out
/// assuming it does; a 404/405 from the batch route turns batching off for good.
#[derive(Debug, Default)]
struct BatchRoute {
    missing: AtomicBool,
}

impl BatchRoute {
    fn available(&self) -> bool {
        !self.missing.load(Ordering::Relaxed)
    }

    /// Most snapshots per request: one each once the route is known to be missing.
    fn max_batch(&self) -> usize {
        if self.available() {
            MAX_BATCH
        } else {
            1
        }
    }

    fn mark_missing(&self, status: reqwest::StatusCode) {
        if !self.missing.swap(true, Ordering::Relaxed) {
            tracing::info!(
                %status,
                "sightline: the server has no batch capture route; uploading captures one by one"
            );
        }
    }
}

/// Whether a batch answer means "no batch route here" (an older or other TraceKit-compatible
/// backend): fall back to single uploads for the life of the process.
fn batch_route_missing(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::METHOD_NOT_ALLOWED
}

/// Counts a snapshot that leaves the pipeline without an outcome (dropped mid-flight by the
/// shutdown deadline) as abandoned, unless it was settled first.
struct Pending {
    sh: Arc<Shared>,
    bp: Arc<Breakpoint>,
    armed: bool,
}

impl Pending {
    fn new(sh: &Arc<Shared>, bp: &Arc<Breakpoint>) -> Self {
        Self {
            sh: sh.clone(),
            bp: bp.clone(),
            armed: true,
        }
    }

    /// Accepted by the server (2xx), stored or deliberately dropped by it.
    fn uploaded(mut self, server_dropped: bool) {
        self.armed = false;
        inc(&self.sh.stats.uploaded);
        if server_dropped {
            inc(&self.sh.stats.server_dropped);
        }
    }

    /// Failed for good (the caller records a circuit-breaker failure where one is due).
    fn failed(mut self) {
        self.armed = false;
        inc(&self.sh.stats.failed);
    }

    /// Not sent: gives the breakpoint's capture slot back and counts the reason.
    fn skipped(mut self, counter: fn(&Counters) -> &AtomicU64) {
        self.armed = false;
        self.bp.release();
        inc(counter(&self.sh.stats));
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.armed {
            self.bp.release();
            inc(&self.sh.stats.shutdown_abandoned);
        }
    }
}

/// A snapshot ready to upload: its final JSON body (serialized once, reused by retries and
/// by the batch body) and its deadline.
struct Item {
    pending: Pending,
    body: Vec<u8>,
    deadline: Instant,
}

/// Takes a dequeued job: drops it when the kill switch is on, makes it ready (into `ready`)
/// when it needs no check-in, else returns it for check-in.
fn admit(sh: &Arc<Shared>, job: Job, ready: &mut VecDeque<Item>) -> Option<Job> {
    if sh.killed.load(Ordering::Acquire) {
        Pending::new(sh, &job.bp).skipped(|c| &c.dropped_inactive);
        return None;
    }
    if job.checkin {
        return Some(job);
    }
    let pending = Pending::new(sh, &job.bp);
    ready.extend(prepare(pending, job));
    None
}

/// `POST /sdk/snapshots/checkin` for one job, then [`prepare`] unless the server said skip.
async fn checkin_then_prepare(sh: &Arc<Shared>, http: &reqwest::Client, job: Job) -> Option<Item> {
    let pending = Pending::new(sh, &job.bp);
    let deadline = job.enqueued + sh.config.capture_timeout;
    let variables = job.body.get("variables").cloned().unwrap_or(Value::Null);
    let decision = tokio::time::timeout_at(
        deadline.into(),
        checkin_decision(sh, http, &job.bp.id, variables),
    )
    .await;
    match decision {
        // `None` (check-in unavailable) uploads anyway: the server evaluates the condition
        // again on capture and drops a non-matching snapshot.
        Ok(Some(true) | None) => prepare(pending, job),
        Ok(Some(false)) => {
            pending.skipped(|c| &c.checkin_skipped);
            None
        }
        Err(_) => {
            pending.failed();
            record_failure(sh);
            None
        }
    }
}

/// Renders the stack trace (symbolization, off the caller's thread) and serializes the body.
fn prepare(pending: Pending, job: Job) -> Option<Item> {
    let Job {
        mut body,
        backtrace,
        stack_limit,
        enqueued,
        ..
    } = job;
    let stack = backtrace
        .map(|b| format_backtrace(&b.to_string(), stack_limit))
        .unwrap_or_default();
    body.insert("stack_trace".into(), stack.into());
    let deadline = enqueued + pending.sh.config.capture_timeout;
    match serde_json::to_vec(&body) {
        Ok(body) => Some(Item {
            pending,
            body,
            deadline,
        }),
        Err(_) => {
            pending.failed();
            None
        }
    }
}

/// The next request's snapshots from the front of `ready` (see [`take_batch`]); on the way
/// drops what may not be sent any more: kill switch on, circuit breaker open, or past its
/// deadline while queued (each counted failed and a circuit-breaker failure, as a capture
/// timing out on its own always was).
fn next_batch(sh: &Arc<Shared>, ready: &mut VecDeque<Item>, max_count: usize) -> Vec<Item> {
    let now = Instant::now();
    take_batch(
        ready,
        max_count,
        MAX_BATCH_BYTES,
        |item| item.body.len(),
        |item| {
            if sh.killed.load(Ordering::Acquire) {
                item.pending.skipped(|c| &c.dropped_inactive);
                return None;
            }
            if item.deadline <= now {
                item.pending.failed();
                record_failure(sh);
                return None;
            }
            match lock(&sh.breaker).allow(now) {
                Admission::Open => {
                    item.pending.skipped(|c| &c.dropped_circuit_open);
                    None
                }
                Admission::Resumed => {
                    tracing::info!("sightline: code monitoring resumed");
                    Some(item)
                }
                Admission::Allowed => Some(item),
            }
        },
    )
}

/// `{"snapshots":[` … `]}` around the comma-separated bodies.
const BATCH_WRAPPER_BYTES: usize = r#"{"snapshots":[]}"#.len();

/// Takes items from the front of `queue` for one request: at most `max_count`, and no more
/// than keep the batch body (wrapper and commas included) within `max_bytes` — but always
/// the first one, so an oversized snapshot still travels (alone). `keep` screens each item
/// as it is taken (returning `None` consumes it); an item that does not fit stays queued.
fn take_batch<T>(
    queue: &mut VecDeque<T>,
    max_count: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
    mut keep: impl FnMut(T) -> Option<T>,
) -> Vec<T> {
    let mut batch = Vec::new();
    let mut bytes = BATCH_WRAPPER_BYTES;
    while let Some(item) = queue.pop_front() {
        let len = size(&item);
        let separator = usize::from(!batch.is_empty());
        if !batch.is_empty() && (batch.len() >= max_count || bytes + separator + len > max_bytes) {
            queue.push_front(item);
            break;
        }
        if let Some(item) = keep(item) {
            bytes += separator + len;
            batch.push(item);
        }
    }
    batch
}

fn batch_body<'a>(bodies: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let len = BATCH_WRAPPER_BYTES + bodies.clone().map(|b| b.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(br#"{"snapshots":["#);
    for (i, item) in bodies.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    body
}

/// Uploads one request's worth: a batch, or (one snapshot, or no batch route) single uploads.
async fn upload(sh: &Arc<Shared>, http: &reqwest::Client, route: &BatchRoute, items: Vec<Item>) {
    if items.len() == 1 || !route.available() {
        upload_singly(sh, http, items).await;
        return;
    }
    let Some(deadline) = items.iter().map(|i| i.deadline).min() else {
        return;
    };
    let url = format!("{}/sdk/snapshots/capture/batch", sh.base_url);
    let body = batch_body(items.iter().map(|i| i.body.as_slice()));
    match tokio::time::timeout_at(deadline.into(), post_with_retries(sh, http, &url, &body)).await {
        Ok(Posted::Accepted(reply)) => {
            inc(&sh.stats.batches);
            let results = reply
                .as_ref()
                .and_then(|v| v.get("results"))
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for (i, item) in items.into_iter().enumerate() {
                settle(item.pending, results.get(i));
            }
        }
        Ok(Posted::Refused(status)) if batch_route_missing(status) => {
            route.mark_missing(status);
            upload_singly(sh, http, items).await;
        }
        Ok(Posted::Refused(reqwest::StatusCode::PAYLOAD_TOO_LARGE)) => {
            // A smaller body limit than ours: these go one by one.
            upload_singly(sh, http, items).await;
        }
        Ok(Posted::Refused(status)) => {
            tracing::warn!(%status, count = items.len(), "sightline: capture batch rejected");
            items.into_iter().for_each(|i| i.pending.failed());
        }
        Ok(Posted::GaveUp) | Err(_) => {
            items.into_iter().for_each(|i| i.pending.failed());
            record_failure(sh); // a failed batch is one failure
        }
    }
}

/// Counts one per-snapshot result of a batch answer. A missing or unreadable result counts
/// as uploaded: the server took the batch.
fn settle(pending: Pending, result: Option<&Value>) {
    match result.and_then(|r| r.get("status")).and_then(Value::as_str) {
        Some("invalid") => {
            let error = result.map(|r| r["error"].to_string()).unwrap_or_default();
            tracing::warn!(%error, "sightline: capture rejected");
            pending.failed();
        }
        Some("dropped") => pending.uploaded(!is_duplicate(result)),
        _ => pending.uploaded(false),
    }
}

/// A `duplicate` drop answers a retry of a snapshot stored by an earlier attempt: it is not
/// a server-side drop of this capture.
fn is_duplicate(result: Option<&Value>) -> bool {
    result.and_then(|r| r.get("reason")).and_then(Value::as_str) == Some("duplicate")
}

/// `POST /sdk/snapshots/capture` for each item, [`UPLOAD_CONCURRENCY`] at a time (one item
/// in the usual case).
async fn upload_singly(sh: &Arc<Shared>, http: &reqwest::Client, items: Vec<Item>) {
    futures::stream::iter(items)
        .for_each_concurrent(UPLOAD_CONCURRENCY, |item| upload_one(sh, http, item))
        .await;
}

async fn upload_one(sh: &Arc<Shared>, http: &reqwest::Client, item: Item) {
    let Item {
        pending,
        body,
        deadline,
    } = item;
    let url = format!("{}/sdk/snapshots/capture", sh.base_url);
    match tokio::time::timeout_at(deadline.into(), post_with_retries(sh, http, &url, &body)).await {
        Ok(Posted::Accepted(reply)) => {
            let reply = reply.as_ref();
            let dropped =
                reply.and_then(|v| v.get("status")).and_then(Value::as_str) == Some("dropped");
            pending.uploaded(dropped && !is_duplicate(reply));
        }
        Ok(Posted::Refused(status)) => {
            tracing::warn!(%status, "sightline: capture rejected");
            pending.failed();
        }
        Ok(Posted::GaveUp) | Err(_) => {
            pending.failed();
            record_failure(sh);
        }
    }
}

/// How a POST with retries ended.
enum Posted {
    /// 2xx, with the JSON answer when it could be read.
    Accepted(Option<Value>),
    /// A status that retrying will not change (4xx and other non-5xx failures).
    Refused(reqwest::StatusCode),
    /// Network errors or 5xx on every attempt.
    GaveUp,
}

/// POSTs `body` (JSON) up to `upload_attempts` times with exponential backoff, retrying
/// network errors and 5xx. Every attempt sends the same bytes, hence the same idempotency
/// keys: the server stores nothing twice.
async fn post_with_retries(sh: &Shared, http: &reqwest::Client, url: &str, body: &[u8]) -> Posted {
    let attempts = sh.config.upload_attempts.max(1);
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
        }
        let resp = http
            .post(url)
            .header("X-API-Key", &sh.config.api_key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(sh.config.request_timeout)
            .body(body.to_vec())
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => return Posted::Accepted(read_json(r).await),
            Ok(r) if r.status().is_server_error() => {
                tracing::debug!(status = %r.status(), url, "sightline: capture upload failed; retrying");
            }
            Ok(r) => return Posted::Refused(r.status()),
            Err(e) => {
                tracing::debug!(error = %e, url, "sightline: capture upload error; retrying");
            }
        }
    }
    Posted::GaveUp
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn take(queue: &mut VecDeque<usize>, max_count: usize, max_bytes: usize) -> Vec<usize> {
        take_batch(queue, max_count, max_bytes, |n| *n, Some)
    }

    #[test]
    fn one_queued_snapshot_goes_alone_at_once() {
        let mut q = VecDeque::from([500]);
        assert_eq!(take(&mut q, MAX_BATCH, MAX_BATCH_BYTES), vec![500]);
        assert!(q.is_empty());
        assert!(take(&mut q, MAX_BATCH, MAX_BATCH_BYTES).is_empty());
    }

    #[test]
    fn batches_stop_at_the_count_limit() {
        let mut q: VecDeque<usize> = std::iter::repeat_n(100, 250).collect();
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let b = take(&mut q, MAX_BATCH, MAX_BATCH_BYTES);
            (!b.is_empty()).then_some(b.len())
        })
        .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        // Without the batch route: one per request.
        let mut q = VecDeque::from([1, 2, 3]);
        assert_eq!(take(&mut q, 1, MAX_BATCH_BYTES), vec![1]);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn batches_stop_at_the_byte_limit_counting_wrapper_and_commas() {
        // Wrapper + 3 bodies of 10 + 2 commas = 16 + 32 = 48 bytes.
        let mut q = VecDeque::from([10, 10, 10, 10]);
        assert_eq!(take(&mut q, MAX_BATCH, 48), vec![10, 10, 10]);
        assert_eq!(q, VecDeque::from([10]));
        let mut q = VecDeque::from([10, 10, 10, 10]);
        assert_eq!(take(&mut q, MAX_BATCH, 47), vec![10, 10]);
        // 100 snapshots of ~20 KB exceed 900 KB: the batch is cut by size, not count.
        let mut q: VecDeque<usize> = std::iter::repeat_n(20_000, 100).collect();
        let b = take(&mut q, MAX_BATCH, MAX_BATCH_BYTES);
        assert_eq!(b.len(), 46);
        let total = BATCH_WRAPPER_BYTES + b.iter().sum::<usize>() + b.len() - 1;
        assert!(total <= MAX_BATCH_BYTES && total + 20_001 > MAX_BATCH_BYTES);
    }

    #[test]
    fn an_oversized_snapshot_travels_alone() {
        let mut q = VecDeque::from([2_000_000, 10, 10]);
        assert_eq!(take(&mut q, MAX_BATCH, MAX_BATCH_BYTES), vec![2_000_000]);
        assert_eq!(take(&mut q, MAX_BATCH, MAX_BATCH_BYTES), vec![10, 10]);
        let mut q = VecDeque::from([10, 2_000_000]);
        assert_eq!(take(&mut q, MAX_BATCH, MAX_BATCH_BYTES), vec![10]);
        assert_eq!(q, VecDeque::from([2_000_000]));
    }

    #[test]
    fn screened_out_items_are_consumed_without_taking_room() {
        let mut q = VecDeque::from([1, 2, 3, 4, 5]);
        let b = take_batch(
            &mut q,
            2,
            MAX_BATCH_BYTES,
            |_| 1,
            |n| (n % 2 == 0).then_some(n),
        );
        assert_eq!(b, vec![2, 4]);
        assert_eq!(q, VecDeque::from([5]));
    }

    #[test]
    fn fallback_only_when_the_batch_route_is_missing() {
        assert!(batch_route_missing(StatusCode::NOT_FOUND));
        assert!(batch_route_missing(StatusCode::METHOD_NOT_ALLOWED));
        for s in [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert!(!batch_route_missing(s), "{s}");
        }
        let route = BatchRoute::default();
        assert!(route.available());
        assert_eq!(route.max_batch(), MAX_BATCH);
        route.mark_missing(StatusCode::NOT_FOUND);
        route.mark_missing(StatusCode::METHOD_NOT_ALLOWED);
        assert!(!route.available());
        assert_eq!(route.max_batch(), 1);
    }

    #[test]
    fn batch_body_is_the_wire_format() {
        let bodies: Vec<Vec<u8>> = [json!({"a": 1}), json!({"b": [2]})]
            .iter()
            .map(|v| serde_json::to_vec(v).unwrap_or_default())
            .collect();
        let body = batch_body(bodies.iter().map(Vec::as_slice));
        assert_eq!(
            serde_json::from_slice::<Value>(&body).ok(),
            Some(json!({"snapshots": [{"a": 1}, {"b": [2]}]}))
        );
        assert_eq!(
            body.len(),
            BATCH_WRAPPER_BYTES + bodies.iter().map(Vec::len).sum::<usize>() + 1
        );
        let parsed = sightline_core::wire::parse_capture_batch(&body);
        assert!(parsed.is_ok_and(|v| v.len() == 2));
    }
}
