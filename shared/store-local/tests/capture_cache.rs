//! Captures read breakpoints and service settings from a per-process cache. These tests
//! run two `Sightline`s over one SQLite store (two server processes on one database) and
//! check that a change made through a process applies to its next capture at once, that
//! a change made through the other one applies within `state_cache_ms` (at once where the
//! store's conditional write decides), and that limits stay exact from a stale cache.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sightline_core::app::{CaptureOutcome, Config, Ports};
use sightline_core::events::ChangeEvent;
use sightline_core::model::{DropReason, Principal, Scope};
use sightline_core::ports::{Clock, EventBus};
use sightline_core::wire::CaptureRequest;
use sightline_core::Sightline;
use sightline_store_local::{open_local_store, RandomIds, SystemClock};

const KEY: &str = "sl_capture_cache_test_key_0123456789";
const SERVICE: &str = "checkout";
const CACHE_MS: i64 = 300;

struct NoEvents;

impl EventBus for NoEvents {
    fn publish(&self, _: ChangeEvent) {}
}

struct Processes {
    a: Sightline,
    b: Sightline,
    p: Principal,
    bp: String,
    seq: std::sync::atomic::AtomicU64,
    _dir: tempfile::TempDir,
}

async fn two_processes(breakpoint: Value) -> Processes {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (items, blobs) = open_local_store(dir.path(), clock.clone()).unwrap();
    let ports = Ports {
        items,
        blobs,
        events: Arc::new(NoEvents),
        clock,
        ids: Arc::new(RandomIds),
    };
    let config = Config {
        state_cache_ms: CACHE_MS,
        ..Config::default()
    };
    let a = Sightline::new(ports.clone(), config.clone());
    let b = Sightline::new(ports, config);
    a.bootstrap(Some(KEY)).await.unwrap();
    let p = a.require(Some(KEY), Scope::Admin).await.unwrap();
    let mut body = json!({
        "service_name": SERVICE,
        "file_path": "app/checkout.py",
        "line_number": 42,
        "function_name": "confirm",
        "label": "confirm",
        "max_captures": 0,
        "rate_limit_per_minute": 0,
    });
    body.as_object_mut()
        .unwrap()
        .extend(breakpoint.as_object().unwrap().clone());
    let created = a
        .create_breakpoint(&p, &serde_json::to_vec(&body).unwrap())
        .await
        .unwrap();
    let bp = created["id"].as_str().unwrap().to_owned();
    Processes {
        a,
        b,
        p,
        bp,
        seq: 0.into(),
        _dir: dir,
    }
}

impl Processes {
    fn request(&self, variables: Value) -> CaptureRequest {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        CaptureRequest::from_value(json!({
            "breakpoint_id": self.bp,
            "service_name": SERVICE,
            "variables": variables,
            "stack_trace": "at confirm (app/checkout.py:42)",
            "idempotency_key": format!("k-{seq}"),
        }))
        .unwrap()
    }

    async fn capture(&self, app: &Sightline) -> CaptureOutcome {
        app.capture(&self.p, self.request(json!({"amount": 5})))
            .await
            .unwrap()
    }

    async fn patch(&self, app: &Sightline, body: Value) {
        app.update_breakpoint(&self.p, &self.bp, &serde_json::to_vec(&body).unwrap())
            .await
            .unwrap();
    }
}

fn dropped(outcome: &CaptureOutcome) -> Option<DropReason> {
    match outcome {
        CaptureOutcome::Dropped { reason, .. } => Some(*reason),
        CaptureOutcome::Stored { .. } => None,
    }
}

async fn past_cache() {
    tokio::time::sleep(Duration::from_millis(CACHE_MS as u64 + 100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_through_this_process_apply_to_the_next_capture() {
    let t = two_processes(json!({})).await;
    assert_eq!(
        dropped(&t.capture(&t.a).await),
        None,
        "first capture stored"
    );

    t.a.set_kill_switch(&t.p, SERVICE, true).await.unwrap();
    assert_eq!(
        dropped(&t.capture(&t.a).await),
        Some(DropReason::KillSwitch)
    );
    t.a.set_kill_switch(&t.p, SERVICE, false).await.unwrap();
    assert_eq!(dropped(&t.capture(&t.a).await), None);

    t.patch(&t.a, json!({"enabled": false})).await;
    assert_eq!(dropped(&t.capture(&t.a).await), Some(DropReason::Disabled));
    t.patch(&t.a, json!({"enabled": true, "condition": "amount > 10"}))
        .await;
    assert_eq!(
        dropped(&t.capture(&t.a).await),
        Some(DropReason::ConditionFalse),
        "the new condition applies at once"
    );
    t.patch(&t.a, json!({"condition": null})).await;

    let patterns = json!({"pii_patterns": [{"name": "order_ref", "pattern": "ORD-[0-9]{6}"}]});
    t.a.update_service_settings(&t.p, SERVICE, &serde_json::to_vec(&patterns).unwrap())
        .await
        .unwrap();
    let outcome =
        t.a.capture(&t.p, t.request(json!({"note": "refund ORD-123456"})))
            .await
            .unwrap();
    let CaptureOutcome::Stored { id, .. } = outcome else {
        panic!("expected a stored capture, got {outcome:?}");
    };
    let snapshot = t.a.get_snapshot(&t.p, &id).await.unwrap().to_string();
    assert!(
        !snapshot.contains("ORD-123456"),
        "the new custom pattern scrubs at once: {snapshot}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_through_another_process_apply_within_the_cache_time() {
    let t = two_processes(json!({})).await;
    assert_eq!(
        dropped(&t.capture(&t.a).await),
        None,
        "a caches the breakpoint"
    );

    // The capture slot is a conditional write on the stored breakpoint: a disable made
    // elsewhere stops captures at once, whatever a's cache holds.
    t.patch(&t.b, json!({"enabled": false})).await;
    assert_eq!(dropped(&t.capture(&t.a).await), Some(DropReason::Disabled));
    t.patch(&t.b, json!({"enabled": true})).await;
    past_cache().await;
    assert_eq!(dropped(&t.capture(&t.a).await), None);

    // Service settings are read once per state_cache_ms.
    t.b.set_kill_switch(&t.p, SERVICE, true).await.unwrap();
    past_cache().await;
    assert_eq!(
        dropped(&t.capture(&t.a).await),
        Some(DropReason::KillSwitch)
    );
    t.b.set_kill_switch(&t.p, SERVICE, false).await.unwrap();
    past_cache().await;
    assert_eq!(dropped(&t.capture(&t.a).await), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_stay_exact_when_the_cache_is_stale() {
    let t = Arc::new(two_processes(json!({"max_captures": 12})).await);
    // Two captures through b: a's cached copy (if any) now lags by two.
    assert_eq!(dropped(&t.capture(&t.a).await), None);
    assert_eq!(dropped(&t.capture(&t.b).await), None);
    assert_eq!(dropped(&t.capture(&t.b).await), None);

    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let t = Arc::clone(&t);
            tokio::spawn(async move {
                let app = if i % 2 == 0 { &t.a } else { &t.b };
                t.capture(app).await
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        match dropped(&task.await.unwrap()) {
            None => stored += 1,
            Some(reason) => assert_eq!(reason, DropReason::Exhausted),
        }
    }
    assert_eq!(stored, 9, "12 in all: 3 before, 9 of the 64");
    let bp = t.a.get_breakpoint(&t.p, &t.bp).await.unwrap();
    assert_eq!(bp["capture_count"], 12, "{bp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicate_send_is_stored_once() {
    let t = two_processes(json!({})).await;
    let body = json!({
        "breakpoint_id": t.bp,
        "service_name": SERVICE,
        "variables": {"amount": 5},
        "stack_trace": "",
        "idempotency_key": "same",
    });
    let first =
        t.a.capture(&t.p, CaptureRequest::from_value(body.clone()).unwrap())
            .await
            .unwrap();
    assert_eq!(dropped(&first), None);
    for app in [&t.a, &t.b] {
        let again = app
            .capture(&t.p, CaptureRequest::from_value(body.clone()).unwrap())
            .await
            .unwrap();
        assert_eq!(dropped(&again), Some(DropReason::Duplicate));
    }
    let bp = t.a.get_breakpoint(&t.p, &t.bp).await.unwrap();
    assert_eq!(bp["capture_count"], 1, "{bp}");
}
