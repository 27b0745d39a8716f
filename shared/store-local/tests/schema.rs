//! Data written by an earlier schema version is still there, unchanged, after an upgrade.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::json;
use sightline_core::ports::{Clock, ItemStore, Query, UpdateOp};
use sightline_store_local::{SqliteItemStore, SystemClock};

/// The version 1 layout, as earlier releases created it.
const V1_SCHEMA: &str = "
CREATE TABLE items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    attrs TEXT NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX items_expires_at ON items (expires_at) WHERE expires_at IS NOT NULL;
PRAGMA user_version = 1;
";

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_store_is_moved_to_the_current_schema_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.db");
    let far = 4_000_000_000_i64;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(V1_SCHEMA).unwrap();
        for (sk, n, expires) in [("A", 1, None), ("B", 2, Some(far)), ("C", 3, Some(1))] {
            conn.execute(
                "INSERT INTO items (pk, sk, attrs, expires_at) VALUES ('P#1', ?1, ?2, ?3)",
                rusqlite::params![sk, json!({"n": n}).to_string(), expires],
            )
            .unwrap();
        }
    }

    let store = SqliteItemStore::open(&path, clock()).unwrap();
    let a = store.get("P#1", "A").await.unwrap().unwrap();
    assert_eq!(a.attrs["n"], 1);
    let b = store.get("P#1", "B").await.unwrap().unwrap();
    assert_eq!((b.attrs["n"].clone(), b.expires_at), (json!(2), Some(far)));
    assert!(
        store.get("P#1", "C").await.unwrap().is_none(),
        "expired rows stay hidden"
    );
    let page = store.query("P#1", Query::default()).await.unwrap();
    let sks: Vec<_> = page.items.iter().map(|i| i.sk.as_str()).collect();
    assert_eq!(sks, ["A", "B"]);

    // Writes after the upgrade hit the existing rows (the unique key holds), and the
    // sweeper still finds expired ones through the TTL index.
    store
        .update("P#1", "A", &[UpdateOp::add("n", 41)], None)
        .await
        .unwrap();
    assert_eq!(store.get("P#1", "A").await.unwrap().unwrap().attrs["n"], 42);
    assert_eq!(store.sweep_expired().await.unwrap(), 1);
    drop(store);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM items"), 2);
    let named = |name: &str| format!("SELECT count(*) FROM sqlite_master WHERE name = '{name}'");
    assert_eq!(count(&named("items_v1")), 0, "the old table is gone");
    assert_eq!(
        count(&named("items_expires_at")),
        1,
        "the TTL index is back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let err = SqliteItemStore::open(&path, clock()).err().unwrap();
    assert!(err.to_string().contains("newer"), "{err}");
}
