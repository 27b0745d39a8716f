//! DynamoDB going away mid-run: the adapter reports `StoreError::Unavailable` within its
//! bounded retries and timeouts (the HTTP layer answers 503), never hangs, and works again
//! once DynamoDB is back. Runs its own DynamoDB Local (from `SIGHTLINE_DYNAMODB_LOCAL_DIR`)
//! so stopping it cannot disturb the other tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sightline_core::ports::{Condition, Item, ItemStore, StoreError};
use sightline_store_aws::{connect, OPERATION_TIMEOUT};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// DynamoDB Local with its data in `db` (so it survives a restart).
fn start_dynamodb(dir: &Path, db: &Path, port: u16) -> Child {
    Command::new("java")
        .arg(format!(
            "-Djava.library.path={}",
            dir.join("DynamoDBLocal_lib").display()
        ))
        .arg("-jar")
        .arg(dir.join("DynamoDBLocal.jar"))
        .args(["-sharedDb", "-dbPath"])
        .arg(db)
        .args(["-port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start DynamoDB Local (java)")
}

/// Kills the emulator even when the test fails.
struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_outage_is_unavailable_then_recovers() {
    let Some(mut config) = common::config("fault") else {
        return;
    };
    let Ok(dir) = std::env::var("SIGHTLINE_DYNAMODB_LOCAL_DIR") else {
        panic!("set SIGHTLINE_DYNAMODB_LOCAL_DIR (scripts/aws-emulators.sh start writes it)");
    };
    let dir = Path::new(&dir);
    let db = std::env::temp_dir().join(common::unique_name("fault-db"));
    std::fs::create_dir_all(&db).expect("db dir");
    let port = free_port();
    config.dynamodb_endpoint = Some(format!("http://127.0.0.1:{port}"));
    let mut emulator = Emulator(start_dynamodb(dir, &db, port));
    let (items, _) = connect(&config).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = items.create_table_if_missing().await {
        assert!(
            Instant::now() < deadline,
            "DynamoDB Local did not start: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let item = Item::new(
        "P#fault",
        "k",
        json!({"n": 1}).as_object().cloned().unwrap(),
    );
    items.put(item.clone(), None).await.expect("put while up");
    // A failing condition is a business outcome, not an outage.
    let again = items.put(item.clone(), Some(Condition::NotExists)).await;
    assert!(
        matches!(again, Err(StoreError::ConditionFailed)),
        "{again:?}"
    );

    // Outage: every kind of call fails as Unavailable, promptly.
    emulator.0.kill().expect("stop DynamoDB Local");
    emulator.0.wait().expect("wait");
    let bound = OPERATION_TIMEOUT + Duration::from_secs(5);
    let started = Instant::now();
    let got = items.get("P#fault", "k").await;
    let took = started.elapsed();
    assert!(
        matches!(got, Err(StoreError::Unavailable(_))),
        "get during outage: {got:?}"
    );
    assert!(
        took < bound,
        "get during outage took {took:?} (bound {bound:?})"
    );
    let put = items.put(item.clone(), None).await;
    assert!(
        matches!(put, Err(StoreError::Unavailable(_))),
        "put during outage: {put:?}"
    );
    let query = items.query("P#fault", Default::default()).await;
    assert!(
        matches!(query, Err(StoreError::Unavailable(_))),
        "query during outage: {query:?}"
    );
    eprintln!("outage noticed after {took:?} (retries with backoff, then Unavailable)");

    // Back on the same port: the same client works again and the data is still there.
    emulator = Emulator(start_dynamodb(dir, &db, port));
    let deadline = Instant::now() + Duration::from_secs(60);
    let back = loop {
        match items.get("P#fault", "k").await {
            Ok(got) => break got,
            Err(StoreError::Unavailable(e)) => {
                assert!(
                    Instant::now() < deadline,
                    "DynamoDB Local did not come back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("after restart: {e}"),
        }
    };
    assert_eq!(back, Some(item), "the item written before the outage");
    items
        .update(
            "P#fault",
            "k",
            &[sightline_core::ports::UpdateOp::add("n", 1)],
            None,
        )
        .await
        .expect("write after recovery");
    drop(emulator);
    let _ = std::fs::remove_dir_all(&db);
}
