//! DynamoDB requests per SDK operation: every store call the core makes for a poll, an
//! auto-register and a capture, counted at the port (one port call is one DynamoDB request).
//! Reported, and the one-Query poll is held: docs/PERFORMANCE.md quotes these figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use sightline_core::app::{Config, Ports};
use sightline_core::ports::{Condition, Item, ItemStore, Page, Query, StoreResult, UpdateOp};
use sightline_core::wire::{AutoRegisterRequest, CaptureRequest};
use sightline_core::Sightline;
use sightline_store_local::{MemoryBlobStore, MemoryItemStore, RandomIds, SystemClock};

#[derive(Default)]
struct Counts {
    get: AtomicUsize,
    put: AtomicUsize,
    update: AtomicUsize,
    delete: AtomicUsize,
    query: AtomicUsize,
}

impl Counts {
    fn take(&self) -> [usize; 5] {
        [
            &self.get,
            &self.put,
            &self.update,
            &self.delete,
            &self.query,
        ]
        .map(|c| c.swap(0, Ordering::SeqCst))
    }
}

struct Counting {
    inner: MemoryItemStore,
    counts: Arc<Counts>,
}

#[async_trait]
impl ItemStore for Counting {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        self.counts.get.fetch_add(1, Ordering::SeqCst);
        self.inner.get(pk, sk).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> StoreResult<()> {
        self.counts.put.fetch_add(1, Ordering::SeqCst);
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        pk: &str,
        sk: &str,
        ops: &[UpdateOp],
        condition: Option<Condition>,
    ) -> StoreResult<Item> {
        self.counts.update.fetch_add(1, Ordering::SeqCst);
        self.inner.update(pk, sk, ops, condition).await
    }
    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<Condition>,
    ) -> StoreResult<Option<Item>> {
        self.counts.delete.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(pk, sk, condition).await
    }
    async fn query(&self, pk: &str, query: Query) -> StoreResult<Page> {
        self.counts.query.fetch_add(1, Ordering::SeqCst);
        self.inner.query(pk, query).await
    }
}

fn show(what: &str, c: [usize; 5]) -> usize {
    let [get, put, update, delete, query] = c;
    let total = c.iter().sum();
    println!("{what:<44} GetItem {get}  PutItem {put}  UpdateItem {update}  DeleteItem {delete}  Query {query}  = {total}");
    total
}

#[tokio::test]
async fn dynamodb_requests_per_sdk_operation() {
    let counts = Arc::new(Counts::default());
    let clock = Arc::new(SystemClock);
    let app = Sightline::new(
        Ports {
            items: Arc::new(Counting {
                inner: MemoryItemStore::new(clock.clone()),
                counts: counts.clone(),
            }),
            blobs: Arc::new(MemoryBlobStore::new()),
            events: Arc::new(sightline_lambda::StreamedBus),
            clock,
            ids: Arc::new(RandomIds),
        },
        Config::default(),
    );
    let key = "sl_counts_0123456789abcdef0123456789abcdef0123456789abcdef0123";
    app.bootstrap(Some(key)).await.unwrap();
    counts.take();

    let p = app.authenticate(key).await.unwrap();
    show("authenticate (cold; then cached 10 s)", counts.take());
    app.poll(&p, "svc", Vec::new()).await.unwrap();
    show("poll, new service (cold caches)", counts.take());
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    app.poll(&p, "svc", Vec::new()).await.unwrap();
    let cold_poll = show("poll, known service (poll cache expired)", counts.take());
    app.poll(&p, "svc", Vec::new()).await.unwrap();
    show("poll within the 1 s poll cache", counts.take());

    let reg = json!({"service_name": "svc", "file_path": "/app/a.py", "line_number": 7,
        "function_name": "f", "label": "l"});
    let (bp, _) = app
        .auto_register(
            &p,
            AutoRegisterRequest::parse(reg.to_string().as_bytes()).unwrap(),
        )
        .await
        .unwrap();
    show("auto-register, new call site", counts.take());
    let cap = |i: i64| {
        let body = json!({"breakpoint_id": bp["id"], "service_name": "svc", "file_path": "/app/a.py",
            "line_number": 7, "function_name": "f", "label": "l", "variables": {"i": i}});
        CaptureRequest::parse(body.to_string().as_bytes()).unwrap()
    };
    app.capture(&p, cap(1)).await.unwrap();
    show("capture (first for the breakpoint)", counts.take());
    app.capture(&p, cap(2)).await.unwrap();
    show("capture (breakpoint and settings cached)", counts.take());
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    app.capture(&p, cap(3)).await.unwrap();
    show(
        "capture (caches expired: a new Lambda instance)",
        counts.take(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    app.poll(&p, "svc", Vec::new()).await.unwrap();
    let c = counts.take();
    show("poll with one breakpoint (poll cache expired)", c);
    assert_eq!(c[4], 1, "a poll reads its breakpoints with one Query");

    // One OTLP export of 10 traces x 5 spans of one service (an exporter batch).
    let spans: Vec<_> = (0..50)
        .map(|i| {
            json!({"traceId": format!("{:032x}", i / 5 + 1), "spanId": format!("{:016x}", i + 1),
                "name": "GET /pay", "kind": if i % 5 == 0 { 2 } else { 3 },
                "startTimeUnixNano": "1800000000000000000", "endTimeUnixNano": "1800000000005000000",
                "attributes": [{"key": "code.filepath", "value": {"stringValue": "/app/a.py"}},
                    {"key": "code.lineno", "value": {"intValue": "7"}},
                    {"key": "code.function", "value": {"stringValue": "f"}}]})
        })
        .collect();
    let body = json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"spans": spans}]}]});
    let decoded = sightline_core::otlp::decode_traces(
        body.to_string().as_bytes(),
        sightline_core::otlp::Encoding::Json,
    )
    .unwrap();
    app.ingest_traces(&p, decoded).await.unwrap();
    show("OTLP export: 10 traces, 50 spans", counts.take());
    assert!(cold_poll <= 3, "a poll makes at most a few requests");
}
