//! Shared pieces of the performance harness: a realistic TraceKit capture payload, the
//! breakpoint used by every benchmark, and in-process [`Sightline`] set-ups over the memory
//! and the SQLite + filesystem stores.
//!
//! Used by `benches/capture.rs` (criterion, in-process) and `src/bin/loadgen.rs` (HTTP).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use serde_json::{json, Value};
use sightline_core::app::{BootstrapOutcome, Config, Ports};
use sightline_core::model::{Principal, Scope};
use sightline_core::ports::{
    BlobStore, Clock, Condition, Item, ItemStore, Page, Query, StoreResult, Transacted, UpdateOp,
    Write,
};
use sightline_core::wire::CaptureRequest;
use sightline_core::Sightline;
use sightline_http::hub::Hub;
use sightline_store_local::{
    open_local_store, MemoryBlobStore, MemoryItemStore, RandomIds, SystemClock,
};

/// The allocator of the `sightline` binary, so in-process figures match what it serves with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Service every benchmark captures for.
pub const SERVICE: &str = "checkout-api";
const FILE_PATH: &str = "app/services/checkout.py";
const LINE: i64 = 142;
/// Call site of the benchmark breakpoint (one active breakpoint per function + label).
pub const FUNCTION: &str = "confirm_order";
pub const LABEL: &str = "bench-confirm";

/// API key used by the in-process set-ups (both scopes).
pub const BENCH_KEY: &str = "sl_bench_key_0123456789abcdef";

/// `POST /api/breakpoints` body: unlimited captures and rate, no expiry, and a condition
/// the SDK can evaluate (`amount > 1`, true for [`variables`]).
pub fn breakpoint_body() -> Value {
    json!({
        "service_name": SERVICE,
        "file_path": FILE_PATH,
        "line_number": LINE,
        "function_name": FUNCTION,
        "label": LABEL,
        "max_captures": 0,
        "rate_limit_per_minute": 0,
        "condition": "amount > 1",
        "expire_at": null,
        "idle_timeout_hours": null,
    })
}

/// The local variables of a checkout handler: nested objects and arrays, mostly non-PII
/// strings and numbers, a few PII values (email, card number, API key) for the scrubber.
pub fn variables() -> Value {
    json!({
        "amount": 1486.91,
        "request_id": "3e6aca49-5554-497c-b907-4716445dc187",
        "attempt": 1,
        "user": {
            "id": 48213,
            "username": "jdoe",
            "email": "jane.doe@example.com",
            "roles": ["admin", "billing", "support"],
            "locale": "en-US",
            "is_active": true,
            "preferences": {"theme": "dark", "newsletter": false, "page_size": 50}
        },
        "order": {
            "id": "ord_9f8e7d6c5b4a",
            "status": "pending_payment",
            "currency": "EUR",
            "subtotal": 1249.5,
            "tax": 237.41,
            "coupon": null,
            "shipping": {"method": "express", "carrier": "DHL", "city": "Berlin", "country": "DE", "eta_days": 2},
            "items": [
                {"sku": "SKU-1001", "name": "Mechanical keyboard, US layout", "qty": 1, "unit_price": 149.0},
                {"sku": "SKU-2040", "name": "27 inch monitor", "qty": 2, "unit_price": 329.0},
                {"sku": "SKU-3310", "name": "USB-C docking station", "qty": 1, "unit_price": 189.5},
                {"sku": "SKU-4122", "name": "Ergonomic mouse", "qty": 3, "unit_price": 84.0}
            ]
        },
        "payment": {
            "provider": "stripe",
            "card_last4": "4242",
            "card_number": "4242 4242 4242 4242",
            "amount_cents": 148691,
            "api_key": "sk_test_abcdefghijklmnop"
        },
        "feature_flags": {"new_checkout": true, "one_click": false, "variant": "B"},
        "metrics": [0.12, 0.98, 13.5, 42, 7, 1024, 65535, 0.375],
        "message": "Processing checkout for cart with 4 items; applying regional tax rules before capture"
    })
}

/// A full capture request body (~2 KB serialized) for the benchmark breakpoint. `seq`
/// makes it distinct (idempotency key, `captured_at`, trace and span ids), so
/// deduplication keeps it and each capture belongs to its own trace, as in production.
pub fn capture_body(breakpoint_id: &str, seq: u64) -> Value {
    let ms = 1_767_225_600_000_u64 + seq;
    json!({
        "breakpoint_id": breakpoint_id,
        "service_name": SERVICE,
        "file_path": FILE_PATH,
        "line_number": LINE,
        "function_name": FUNCTION,
        "label": LABEL,
        "variables": variables(),
        "stack_trace": "Traceback (most recent call last):\n  File \"app/api/checkout.py\", line 88, in post\n    return confirm_order(cart, user)\n  File \"app/services/checkout.py\", line 142, in confirm_order\n    charge = payments.charge(order.total, card)\n  File \"app/services/payments.py\", line 57, in charge\n    resp = self.client.create(amount=amount_cents)",
        "trace_id": format!("113e29b9fb746af1{:016x}", seq + 1),
        "span_id": format!("{:016x}", seq + 1),
        "request_context": {
            "method": "POST",
            "path": "/api/v2/checkout/confirm",
            "remote_addr": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "headers": {"Content-Type": "application/json", "Accept": "*/*", "Host": "shop.example.com"}
        },
        "captured_at": ms,
        "idempotency_key": format!("bench-{seq:016x}"),
    })
}

/// Which stores a [`Harness`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    /// SQLite + filesystem blobs in a temporary data dir (the `sightline serve` stores).
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
        }
    }
}

/// A bootstrapped [`Sightline`] with the benchmark breakpoint registered.
pub struct Harness {
    pub app: Arc<Sightline>,
    /// The item store wrapped in an operation recorder (off unless enabled).
    pub recorder: Arc<RecordingStore>,
    pub principal: Principal,
    pub breakpoint_id: String,
    /// Keeps the SQLite data dir alive.
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (items, blobs, dir): (Arc<dyn ItemStore>, Arc<dyn BlobStore>, _) = match backend {
            Backend::Memory => (
                Arc::new(MemoryItemStore::new(clock.clone())),
                Arc::new(MemoryBlobStore::new()),
                None,
            ),
            Backend::Sqlite => {
                let dir = tempfile::tempdir().context("creating a temp data dir")?;
                let (items, blobs) = open_local_store(dir.path(), clock.clone())?;
                (items, blobs, Some(dir))
            }
        };
        let recorder = Arc::new(RecordingStore::new(items));
        let ports = Ports {
            items: recorder.clone(),
            blobs,
            events: Arc::new(Hub::default()),
            clock,
            ids: Arc::new(RandomIds),
        };
        let app = Arc::new(Sightline::new(ports, Config::default()));
        match app.bootstrap(Some(BENCH_KEY)).await? {
            BootstrapOutcome::Created { .. } | BootstrapOutcome::Existing { .. } => {}
        }
        let principal = app.require(Some(BENCH_KEY), Scope::Admin).await?;
        let body = serde_json::to_vec(&breakpoint_body())?;
        let bp = app.create_breakpoint(&principal, &body).await?;
        let breakpoint_id = bp
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("created breakpoint has no id: {bp}"))?
            .to_owned();
        Ok(Self {
            app,
            recorder,
            principal,
            breakpoint_id,
            _dir: dir,
        })
    }

    /// A parsed, distinct capture request.
    pub fn request(&self, seq: u64) -> CaptureRequest {
        // The body is built by this crate and always valid.
        CaptureRequest::from_value(capture_body(&self.breakpoint_id, seq))
            .unwrap_or_else(|e| panic!("benchmark capture body rejected: {e}"))
    }
}

/// Count, total and longest wall time of one kind of store operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpStats {
    pub count: u64,
    pub total: Duration,
    pub max: Duration,
}

/// An [`ItemStore`] decorator that, while enabled, records each operation by kind and
/// partition (`put dedup`, `update service-bp`, …) with its wall time (including the
/// adapter's `spawn_blocking` hop and any wait for the SQLite writer).
pub struct RecordingStore {
    inner: Arc<dyn ItemStore>,
    enabled: std::sync::atomic::AtomicBool,
    ops: Mutex<BTreeMap<String, OpStats>>,
}

impl RecordingStore {
    pub fn new(inner: Arc<dyn ItemStore>) -> Self {
        Self {
            inner,
            enabled: std::sync::atomic::AtomicBool::new(false),
            ops: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The recorded operations, and clears them.
    pub fn take(&self) -> BTreeMap<String, OpStats> {
        std::mem::take(&mut *self.ops.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn record(&self, op: &str, pk: &str, conditional: bool, since: Instant) {
        if self.enabled() {
            self.record_kind(op, &partition_kind(pk), conditional, since);
        }
    }

    /// Called only while enabled: the names are built for recorded operations alone, so a
    /// disabled recorder (the criterion benches) costs a capture nothing measurable.
    fn record_kind(&self, op: &str, kind: &str, conditional: bool, since: Instant) {
        let elapsed = since.elapsed();
        let key = format!(
            "{op:<6} {kind:<16}{}",
            if conditional { " (conditional)" } else { "" }
        );
        let mut ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let e = ops.entry(key).or_default();
        e.count += 1;
        e.total += elapsed;
        e.max = e.max.max(elapsed);
    }
}

/// The shape of a partition key: upper-case keyword segments kept, ids and names as `*`
/// (`P#default#S#checkout-api` → `P#*#S#*`).
fn partition_kind(pk: &str) -> String {
    pk.split('#')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_uppercase()) {
                seg
            } else {
                "*"
            }
        })
        .collect::<Vec<_>>()
        .join("#")
}

#[async_trait::async_trait]
impl ItemStore for RecordingStore {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let t = Instant::now();
        let r = self.inner.get(pk, sk).await;
        self.record("get", pk, false, t);
        r
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> StoreResult<()> {
        let t = Instant::now();
        let pk = item.pk.clone();
        let conditional = condition.is_some();
        let r = self.inner.put(item, condition).await;
        self.record("put", &pk, conditional, t);
        r
    }

    async fn update(
        &self,
        pk: &str,
        sk: &str,
        ops: &[UpdateOp],
        condition: Option<Condition>,
    ) -> StoreResult<Item> {
        let t = Instant::now();
        let conditional = condition.is_some();
        let r = self.inner.update(pk, sk, ops, condition).await;
        self.record("update", pk, conditional, t);
        r
    }

    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<Condition>,
    ) -> StoreResult<Option<Item>> {
        let t = Instant::now();
        let conditional = condition.is_some();
        let r = self.inner.delete(pk, sk, condition).await;
        self.record("delete", pk, conditional, t);
        r
    }

    async fn query(&self, pk: &str, query: Query) -> StoreResult<Page> {
        let t = Instant::now();
        let r = self.inner.query(pk, query).await;
        self.record("query", pk, false, t);
        r
    }

    /// Recorded as one operation, by the partitions it writes (`P#*#DEDUP + …`).
    async fn transact(&self, writes: &[Write]) -> StoreResult<Transacted> {
        let t = Instant::now();
        let r = self.inner.transact(writes).await;
        if !self.enabled() {
            return r;
        }
        let kinds: Vec<String> = writes
            .iter()
            .map(|w| match w {
                Write::Put { item, .. } => partition_kind(&item.pk),
                Write::Update { pk, .. } => partition_kind(pk),
            })
            .collect();
        let conditional = writes.iter().any(|w| match w {
            Write::Put { condition, .. } | Write::Update { condition, .. } => condition.is_some(),
        });
        self.record_kind(
            &format!("tx[{}]", writes.len()),
            &kinds.join(" + "),
            conditional,
            t,
        );
        r
    }
}
