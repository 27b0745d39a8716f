//! Runs the shared store contract against every local adapter, plus local-only behaviour
//! (durability across reopen, sweeping with an injected clock).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde_json::json;
use sightline_core::ports::{
    BlobStore, Clock, Condition, Item, ItemStore, Page, Query, StoreResult, UpdateOp,
};
use sightline_store_contract::{blob_store_contract, item_store_contract};
use sightline_store_local::{
    open_local_store, FsBlobStore, MemoryBlobStore, MemoryItemStore, SqliteItemStore, SystemClock,
};

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_item_store_passes_contract() {
    item_store_contract(Arc::new(MemoryItemStore::new(clock()))).await;
}

/// An adapter with only the required methods, so the port's default `transact` is what
/// the contract checks: adapters that do not override it get a working one.
struct RequiredMethodsOnly(MemoryItemStore);

#[async_trait::async_trait]
impl ItemStore for RequiredMethodsOnly {
    async fn get(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        self.0.get(pk, sk).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> StoreResult<()> {
        self.0.put(item, condition).await
    }
    async fn update(
        &self,
        pk: &str,
        sk: &str,
        ops: &[UpdateOp],
        condition: Option<Condition>,
    ) -> StoreResult<Item> {
        self.0.update(pk, sk, ops, condition).await
    }
    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        condition: Option<Condition>,
    ) -> StoreResult<Option<Item>> {
        self.0.delete(pk, sk, condition).await
    }
    async fn query(&self, pk: &str, query: Query) -> StoreResult<Page> {
        self.0.query(pk, query).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_transact_passes_contract() {
    item_store_contract(Arc::new(RequiredMethodsOnly(MemoryItemStore::new(clock())))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_blob_store_passes_contract() {
    blob_store_contract(Arc::new(MemoryBlobStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_item_store_passes_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteItemStore::open(&dir.path().join("t.db"), clock()).unwrap());
    item_store_contract(store.clone()).await;
    // Again on the now non-empty store: cases must not see each other's data.
    item_store_contract(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fs_blob_store_passes_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsBlobStore::open(&dir.path().join("blobs")).unwrap());
    blob_store_contract(store.clone()).await;
    blob_store_contract(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_stores_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let item = Item::new(
        "P#1",
        "BP#1",
        json!({"n": 1, "s": "é"}).as_object().unwrap().clone(),
    );
    {
        let (items, blobs) = open_local_store(dir.path(), clock()).unwrap();
        items.put(item.clone(), None).await.unwrap();
        items
            .update("P#1", "CTR", &[UpdateOp::add("n", 41)], None)
            .await
            .unwrap();
        items
            .update("P#1", "CTR", &[UpdateOp::add("n", 1)], None)
            .await
            .unwrap();
        blobs
            .put("snapshots/p/s/b/1.json", b"{\"x\":1}".to_vec(), true)
            .await
            .unwrap();
    }
    assert!(dir.path().join("sightline.db").is_file());
    assert!(dir.path().join("blobs").is_dir());

    let (items, blobs) = open_local_store(dir.path(), clock()).unwrap();
    assert_eq!(items.get("P#1", "BP#1").await.unwrap(), Some(item));
    let ctr = items.get("P#1", "CTR").await.unwrap().unwrap();
    assert_eq!(ctr.get_i64("n"), Some(42));
    let page = items.query("P#1", Query::default()).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(
        blobs
            .get("snapshots/p/s/b/1.json")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"{\"x\":1}"[..])
    );
    assert_eq!(
        blobs.list("snapshots/", None, 10).await.unwrap(),
        vec!["snapshots/p/s/b/1.json"]
    );
}

/// A clock tests can move.
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_ttl_follows_injected_clock_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(50_000)));
    let store = SqliteItemStore::open(&dir.path().join("t.db"), clock.clone()).unwrap();
    let mut attrs = serde_json::Map::new();
    attrs.insert("v".into(), json!(1));
    for i in 0..2500 {
        let ttl = if i % 2 == 0 { Some(100) } else { None };
        store
            .put(
                Item::new("P", format!("{i:05}"), attrs.clone()).with_ttl(ttl),
                None,
            )
            .await
            .unwrap();
    }
    assert!(
        store.get("P", "00000").await.unwrap().is_some(),
        "visible before its TTL"
    );
    assert_eq!(store.sweep_expired().await.unwrap(), 0);

    clock.0.store(100_000, Ordering::SeqCst); // exactly expires_at: gone
    assert!(
        store.get("P", "00000").await.unwrap().is_none(),
        "expires_at <= now is gone"
    );
    let page = store.query("P", Query::default()).await.unwrap();
    assert_eq!(page.items.len(), 1250);
    assert_eq!(
        store.sweep_expired().await.unwrap(),
        1250,
        "sweeps in chunks until done"
    );
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
    let page = store.query("P", Query::default()).await.unwrap();
    assert_eq!(page.items.len(), 1250, "sweep keeps live items");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_sweep_removes_only_expired() {
    let clock = Arc::new(ManualClock(AtomicI64::new(200_000)));
    let store = MemoryItemStore::new(clock);
    let attrs = serde_json::Map::new();
    store
        .put(
            Item::new("P", "old", attrs.clone()).with_ttl(Some(100)),
            None,
        )
        .await
        .unwrap();
    store
        .put(Item::new("P", "new", attrs).with_ttl(Some(300)), None)
        .await
        .unwrap();
    assert_eq!(store.sweep_expired(), 1);
    assert!(store.get("P", "new").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_limit_zero_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteItemStore::open(&dir.path().join("t.db"), clock()).unwrap();
    let memory = MemoryItemStore::new(clock());
    let q = Query {
        limit: Some(0),
        ..Query::default()
    };
    assert!(sqlite.query("P", q.clone()).await.is_err());
    assert!(memory.query("P", q).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fs_blob_store_rejects_unsafe_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(&dir.path().join("blobs")).unwrap();
    for key in ["../escape", "/etc/passwd", "a//b", "a/../../b", ""] {
        assert!(
            store.put(key, b"x".to_vec(), false).await.is_err(),
            "{key:?}"
        );
        assert!(store.get(key).await.is_err(), "{key:?}");
    }
    assert!(!dir.path().join("escape").exists());
    assert!(store.list("../", None, 10).await.unwrap().is_empty());
}
