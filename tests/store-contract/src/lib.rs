//! The contract every `ItemStore` / `BlobStore` adapter must pass (memory, SQLite, DynamoDB+S3).
//!
//! One suite, identical assertions for every backend: a behaviour only one backend has is a
//! bug. Every case namespaces its keys with a unique run id, so the suite can run against a
//! shared, non-empty store (e.g. a long-lived DynamoDB Local table). Cases run one after the
//! other; a failing case does not stop the others, and the suite panics at the end with the
//! names of every failed case.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//! async fn memory_passes_contract() {
//!     sightline_store_contract::item_store_contract(Arc::new(MemoryItemStore::default())).await;
//! }
//! ```
//!
//! TTL cases compare against the wall clock, so the adapter under test must use a real clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod blob;
mod item;

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use sightline_core::ports::{BlobStore, ItemStore};

/// Runs every item-store case; panics naming each failed case.
pub async fn item_store_contract(store: Arc<dyn ItemStore>) {
    run_suite("item store", store, item::CASES).await;
}

/// Runs every blob-store case; panics naming each failed case.
pub async fn blob_store_contract(store: Arc<dyn BlobStore>) {
    run_suite("blob store", store, blob::CASES).await;
}

/// What a case gets: the store and a namespace no other case or run uses.
pub(crate) struct Ctx<S: ?Sized> {
    pub store: Arc<S>,
    /// Unique per (run, case); every key a case touches starts with it.
    pub ns: String,
}

impl<S: ?Sized> Ctx<S> {
    /// A partition key / key prefix unique to this case and run.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.ns, name)
    }
}

pub(crate) type Case<S> = (&'static str, fn(Ctx<S>) -> BoxFuture<'static, ()>);

async fn run_suite<S: ?Sized>(suite: &str, store: Arc<S>, cases: &[Case<S>]) {
    let run = run_id();
    let mut failures = Vec::new();
    for (name, case) in cases {
        let ctx = Ctx {
            store: Arc::clone(&store),
            ns: format!("contract/{run}/{name}/"),
        };
        if let Err(payload) = AssertUnwindSafe(case(ctx)).catch_unwind().await {
            failures.push(format!("  - {name}: {}", panic_message(payload.as_ref())));
        }
    }
    assert!(
        failures.is_empty(),
        "{suite} contract: {} of {} case(s) failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_owned()
    }
}

/// Unique enough across processes and runs without pulling in an RNG.
fn run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Wall-clock Unix seconds, for TTL values.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Spawns `n` copies of `f(i)` on the runtime, released together by a barrier so their
/// store calls really overlap, and returns their results in order.
pub(crate) async fn spawn_n<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let task = f(i);
            tokio::spawn(async move {
                barrier.wait().await;
                task.await
            })
        })
        .collect();
    join_all(handles)
        .await
        .into_iter()
        .map(|r| r.expect("spawned task panicked"))
        .collect()
}
