//! The request handlers, as plain async methods over the ports. Hosts (axum locally, Lambda,
//! the edge) only parse transport details and call these.

mod admin;
mod auth;
mod capture;
#[cfg(not(target_arch = "wasm32"))]
mod ingest;
mod sdk;
mod session;
mod traces;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use admin::SnapshotFilter;
pub use auth::BootstrapOutcome;
pub use capture::CaptureOutcome;
#[cfg(not(target_arch = "wasm32"))]
pub use ingest::IngestSummary;
pub use session::{csrf_token_for, NewSession, Session, SESSION_TTL_SECS};
pub use traces::{TraceFilter, LATENCY_BUCKETS_MS};

use crate::condition::ConditionCache;
use crate::events::{Audience, ChangeEvent};
use crate::pii::Scrubber;
use crate::ports::{BlobStore, Clock, EventBus, IdGen, Item, ItemStore, Query};

/// Limits and knobs of the handlers. Defaults are production values.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Snapshot payloads larger than this go to the blob store instead of the item.
    pub inline_payload_bytes: usize,
    /// How long snapshots are kept.
    pub snapshot_retention_secs: i64,
    /// How long spans, trace lists and per-minute service statistics are kept.
    pub trace_retention_secs: i64,
    /// How long a resolved API key is trusted without a store read (revocation delay
    /// across processes; revocation in the same process is immediate).
    pub auth_cache_ms: i64,
    /// How long a poll's answer may be reused without reading the store. Changes made
    /// through this process drop it at once; changes made by another process (another
    /// Lambda instance) show within this delay, far below the SDKs' 30 s poll interval.
    pub state_cache_ms: i64,
    /// Hard cap on variable nesting, whatever a breakpoint says.
    pub max_variable_depth: i64,
    /// Longest stored stack trace.
    pub max_stack_trace_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            inline_payload_bytes: 48 * 1024,
            snapshot_retention_secs: crate::model::defaults::SNAPSHOT_RETENTION_SECS,
            trace_retention_secs: 7 * 24 * 3600,
            auth_cache_ms: 10_000,
            state_cache_ms: 1_000,
            max_variable_depth: 10,
            max_stack_trace_bytes: 64 * 1024,
        }
    }
}

/// The ports a [`Sightline`] runs on.
#[derive(Clone)]
pub struct Ports {
    pub items: Arc<dyn ItemStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub events: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
}

/// The application: every handler of the SDK and admin APIs.
pub struct Sightline {
    items: Arc<dyn ItemStore>,
    blobs: Arc<dyn BlobStore>,
    events: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    config: Config,
    conditions: ConditionCache,
    /// sha256(key) → (principal, resolved at ms).
    auth_cache: Mutex<HashMap<String, (crate::model::Principal, i64)>>,
    /// Compiled scrubbers by their custom-pattern set (JSON text).
    scrubbers: Mutex<HashMap<String, Arc<Scrubber>>>,
    /// (project, service) → the SDK state served by polls and SSE `init`, and when it was
    /// read. Dropped whenever this process publishes a change to that service.
    state_cache: Mutex<StateCache>,
    /// (project, service) → last time this process recorded the service as seen.
    service_seen: Mutex<HashMap<(String, String), i64>>,
}

impl Sightline {
    pub fn new(ports: Ports, config: Config) -> Self {
        Self {
            items: ports.items,
            blobs: ports.blobs,
            events: ports.events,
            clock: ports.clock,
            ids: ports.ids,
            config,
            conditions: ConditionCache::default(),
            auth_cache: Mutex::new(HashMap::new()),
            scrubbers: Mutex::new(HashMap::new()),
            service_seen: Mutex::new(HashMap::new()),
            state_cache: Mutex::new(StateCache::default()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn now_secs(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    /// A random UUID-formatted id.
    fn new_uuid(&self) -> String {
        uuid_format(&self.ids.random_hex128(), '4')
    }

    /// Publishes after a committed change; never fails the request.
    fn publish(
        &self,
        project_id: &str,
        service: &str,
        event: &str,
        data: Value,
        audience: Audience,
    ) {
        self.publish_change(ChangeEvent {
            project_id: project_id.to_owned(),
            service: service.to_owned(),
            event: event.to_owned(),
            data,
            audience,
        });
    }

    /// Publishes a built event, first dropping the poll state it makes stale.
    fn publish_change(&self, event: ChangeEvent) {
        if event.audience == Audience::All {
            self.forget_service_state(&event.project_id, &event.service);
        }
        self.events.publish(event);
    }

    /// Every item of a partition that `query` selects, page after page.
    async fn query_all(&self, pk: &str, mut query: Query) -> crate::error::Result<Vec<Item>> {
        let mut out = Vec::new();
        loop {
            let page = self.items.query(pk, query.clone()).await?;
            out.extend(page.items);
            match page.next {
                Some(next) => query.cursor = Some(next),
                None => return Ok(out),
            }
        }
    }
}

impl Sightline {
    /// Drops every cached read of a service after this process changed it (breakpoints,
    /// kill switch, PII patterns), before the change is announced.
    pub(super) fn forget_service_state(&self, project_id: &str, service: &str) {
        let mut cache = lock(&self.state_cache);
        cache.epoch += 1;
        let key = (project_id.to_owned(), service.to_owned());
        cache.entries.remove(&key);
        cache.settings.remove(&key);
        cache
            .breakpoints
            .retain(|(p, _), (bp, _)| p != project_id || bp.service_name != service);
    }
}

/// Reads kept for at most `state_cache_ms`, with the time they were read: poll states and
/// service settings by (project, service), breakpoints by (project, id) for captures.
/// `epoch` counts published changes: a read made while a change was being published is
/// not kept, so the cache never holds a state older than a change this process has
/// announced.
#[derive(Default)]
struct StateCache {
    epoch: u64,
    entries: HashMap<(String, String), (Value, i64)>,
    settings: HashMap<(String, String), (Arc<sdk::ServiceSettings>, i64)>,
    breakpoints: HashMap<(String, String), (Arc<crate::model::Breakpoint>, i64)>,
}

/// Locks a mutex, recovering the data of a poisoned one (a panic elsewhere must not take
/// the server down; the caches guarded here are always valid).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Formats 32 hex digits as an RFC 9562 UUID string: version 4 for random input, version
/// 8 (custom) for derived ids, variant bits `10`.
fn uuid_format(hex32: &str, version: char) -> String {
    let mut h: Vec<char> = hex32
        .chars()
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    h[12] = version;
    let variant = h[16].to_digit(16).unwrap_or(0) & 0x3 | 0x8;
    h[16] = char::from_digit(variant, 16).unwrap_or('8');
    let h: String = h.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SSE path advertised in poll responses (`sse_endpoint`).
pub fn sse_path(service: &str) -> String {
    format!("/sdk/snapshots/stream/{}", encode_path_segment(service))
}
