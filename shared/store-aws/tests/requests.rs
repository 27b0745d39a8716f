//! DynamoDB requests per SDK poll and per capture, counted on the wire (one count per HTTP
//! attempt) while the real core handlers run on DynamoDB Local + moto S3. Prints the figures
//! quoted in docs/PERFORMANCE.md and guards the round trips that matter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use serde_json::{json, Value};
use sightline_core::app::{BootstrapOutcome, CaptureOutcome, Config, Ports};
use sightline_core::events::ChangeEvent;
use sightline_core::model::Principal;
use sightline_core::ports::EventBus;
use sightline_core::wire::CaptureRequest;
use sightline_core::Sightline;
use sightline_store_aws::{load_sdk_config, DynamoItemStore, S3BlobStore};
use sightline_store_local::{RandomIds, SystemClock};

/// Requests per operation (`GetItem`, `Query`, …; `S3` for every S3 request).
#[derive(Debug, Default, Clone)]
struct Counter(Arc<Mutex<BTreeMap<String, usize>>>);

impl Counter {
    fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("S3")
            .to_owned();
        *self.0.lock().unwrap().entry(op).or_default() += 1;
        Ok(())
    }
}

struct NoEvents;

impl EventBus for NoEvents {
    fn publish(&self, _: ChangeEvent) {}
}

fn total(counts: &BTreeMap<String, usize>) -> usize {
    counts
        .iter()
        .filter(|(op, _)| *op != "S3")
        .map(|(_, n)| n)
        .sum()
}

fn show(what: &str, counts: &BTreeMap<String, usize>) {
    eprintln!(
        "{what:<40} {:>2} DynamoDB requests  {counts:?}",
        total(counts)
    );
}

fn capture_request(breakpoint: &str, order: usize, payload_bytes: usize) -> CaptureRequest {
    CaptureRequest::from_value(json!({
        "breakpoint_id": breakpoint,
        "service_name": "checkout",
        "file_path": "app/checkout.py",
        "line_number": 42,
        "variables": {"order_id": order, "blob": "x".repeat(payload_bytes)},
        "stack_trace": "at checkout (app/checkout.py:42)",
        "captured_at": "2026-01-01T00:00:00Z",
    }))
    .expect("capture request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_poll_and_capture() {
    let Some(config) = common::config("requests") else {
        return;
    };
    let sdk = load_sdk_config(config.region.as_deref()).await;
    let counter = Counter::default();
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(config.dynamodb_endpoint.clone().unwrap())
        .interceptor(counter.clone())
        .build();
    let items = DynamoItemStore::new(aws_sdk_dynamodb::Client::from_conf(dynamodb), &config.table);
    let s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .endpoint_url(config.s3_endpoint.clone().unwrap())
        .force_path_style(true)
        .interceptor(counter.clone())
        .build();
    let blobs = S3BlobStore::new(aws_sdk_s3::Client::from_conf(s3), &config.bucket);
    items.create_table_if_missing().await.expect("table");
    blobs.create_bucket_if_missing().await.expect("bucket");

    // Every poll reads the store (no reuse of an earlier answer), as on a cold Lambda.
    let app = Sightline::new(
        Ports {
            items: Arc::new(items),
            blobs: Arc::new(blobs),
            events: Arc::new(NoEvents),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
        },
        Config {
            state_cache_ms: 0,
            ..Config::default()
        },
    );
    let BootstrapOutcome::Created { api_key, .. } = app.bootstrap(None).await.expect("bootstrap")
    else {
        panic!("fresh table must bootstrap");
    };
    let p: Principal = app.authenticate(&api_key).await.expect("auth");
    counter.take();
    app.poll(&p, "checkout", Vec::new())
        .await
        .expect("first poll");
    show("poll (first of a new service)", &counter.take());
    let bp = app
        .create_breakpoint(
            &p,
            br#"{"service_name":"checkout","file_path":"app/checkout.py","line_number":42}"#,
        )
        .await
        .expect("breakpoint");
    let bp_id = bp["id"].as_str().expect("id").to_owned();
    counter.take();

    let state = app.poll(&p, "checkout", Vec::new()).await.expect("poll");
    let poll = counter.take();
    show("poll (known service, 1 breakpoint)", &poll);
    assert_eq!(
        state["breakpoints"].as_array().map(Vec::len),
        Some(1),
        "{state}"
    );
    assert_eq!(
        (total(&poll), poll.get("Query")),
        (1, Some(&1)),
        "a poll of a known service is one Query (breakpoints and settings): {poll:?}"
    );

    let mut captures = Vec::new();
    for (order, (what, payload)) in [
        ("capture (first, small payload)", 100),
        ("capture (next, small payload)", 100),
        ("capture (payload > inline limit → S3)", 64 * 1024),
    ]
    .into_iter()
    .enumerate()
    {
        let outcome = app
            .capture(&p, capture_request(&bp_id, order, payload))
            .await
            .expect("capture");
        assert!(
            matches!(outcome, CaptureOutcome::Stored { .. }),
            "{what}: {outcome:?}"
        );
        let counts = counter.take();
        show(what, &counts);
        captures.push(counts);
    }
    assert_eq!(captures[0].get("S3"), None, "small payloads stay inline");
    assert!(
        captures[2].get("S3").is_some_and(|n| *n >= 1),
        "large payload goes to S3"
    );
    let _: Value = state;

    app.set_kill_switch(&p, "checkout", true)
        .await
        .expect("kill switch");
    show("kill switch on (settings + list mirror)", &counter.take());
    let killed = app.poll(&p, "checkout", Vec::new()).await.expect("poll");
    let poll = counter.take();
    show("poll (known service, kill switch on)", &poll);
    assert_eq!(killed["kill_switch"], true, "{killed}");
    assert_eq!(killed["breakpoints"], json!([]), "{killed}");
    assert_eq!(
        (total(&poll), poll.get("Query")),
        (1, Some(&1)),
        "the kill switch is read by the poll's one Query: {poll:?}"
    );
    let services = app.list_services(&p, 60).await.expect("services");
    assert_eq!(services[0]["kill_switch"], true, "the list mirrors it");
}
