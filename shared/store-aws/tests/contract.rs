//! The store contract suite — the same cases and assertions as for SQLite and memory —
//! against DynamoDB Local and moto's S3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use sightline_store_aws::{connect, DynamoItemStore, S3BlobStore};

async fn stores(test: &str) -> Option<(DynamoItemStore, S3BlobStore)> {
    let config = common::config(test)?;
    let (items, blobs) = connect(&config).await;
    items.create_table_if_missing().await.expect("create table");
    blobs
        .create_bucket_if_missing()
        .await
        .expect("create bucket");
    Some((items, blobs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_passes_item_store_contract() {
    let Some((items, _)) = stores("item-contract").await else {
        return;
    };
    sightline_store_contract::item_store_contract(Arc::new(items)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_passes_blob_store_contract() {
    let Some((_, blobs)) = stores("blob-contract").await else {
        return;
    };
    sightline_store_contract::blob_store_contract(Arc::new(blobs)).await;
}

/// Creating the table twice is fine (tests and local setups call it on every start).
#[tokio::test]
async fn create_table_is_idempotent() {
    let Some((items, blobs)) = stores("idempotent-setup").await else {
        return;
    };
    items.create_table_if_missing().await.expect("again");
    blobs.create_bucket_if_missing().await.expect("again");
    let table = items
        .client()
        .describe_table()
        .table_name(items.table())
        .send()
        .await
        .expect("describe")
        .table
        .expect("table");
    let keys: Vec<(String, String)> = table
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
    );
    let stream = table.stream_specification().expect("stream");
    assert!(stream.stream_enabled());
    assert_eq!(
        stream.stream_view_type().map(|v| v.as_str()),
        Some("NEW_AND_OLD_IMAGES")
    );
    let ttl = items
        .client()
        .describe_time_to_live()
        .table_name(items.table())
        .send()
        .await
        .expect("describe ttl")
        .time_to_live_description
        .expect("ttl description");
    assert_eq!(ttl.attribute_name(), Some("ttl"));
}

/// Beyond the suite: an update inside a transaction treats an expired item as absent too
/// (DynamoDB still holds it until its TTL sweeper runs), by replacing it in the transaction.
#[tokio::test]
async fn transact_update_of_expired_item_starts_empty() {
    use serde_json::json;
    use sightline_core::ports::{Condition, Item, ItemStore, Transacted, UpdateOp, Write};

    let Some((items, _)) = stores("transact-expired").await else {
        return;
    };
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 5;
    let attrs = |v: serde_json::Value| v.as_object().cloned().unwrap();
    let old = Item::new("P#t", "slot", attrs(json!({"n": 7, "old": true}))).with_ttl(Some(past));
    items.put(old, None).await.unwrap();
    let writes = [
        Write::Put {
            item: Item::new("P#t", "marker", attrs(json!({}))),
            condition: Some(Condition::NotExists),
        },
        Write::Update {
            pk: "P#t".into(),
            sk: "slot".into(),
            ops: vec![UpdateOp::add("n", 1)],
            condition: Some(Condition::NotExists),
        },
    ];
    let got = items.transact(&writes).await.unwrap();
    let want = Item::new("P#t", "slot", attrs(json!({"n": 1})));
    assert_eq!(got, Transacted::Written(vec![None, Some(want.clone())]));
    assert_eq!(items.get("P#t", "slot").await.unwrap(), Some(want));
    // Now live: the same condition fails, and the marker is not written again.
    let again = items.transact(&writes[1..]).await.unwrap();
    assert_eq!(again, Transacted::ConditionFailed(0));
}

/// Beyond the suite: values DynamoDB types restrict (float formats, empty map keys, deep
/// nesting) survive a round trip, since snapshot payloads are client data.
#[tokio::test]
async fn awkward_values_round_trip() {
    use serde_json::{json, Value};
    use sightline_core::ports::{Item, ItemStore};

    let Some((items, _)) = stores("awkward-values").await else {
        return;
    };
    let mut deep = json!("bottom");
    for _ in 0..40 {
        deep = json!({ "d": deep });
    }
    let mut deep_list = json!(1);
    for _ in 0..40 {
        deep_list = json!([deep_list]);
    }
    let cases: Vec<(&str, Value)> = vec![
        ("small float", json!(1e-7)),
        ("floats", json!([123456.789, -0.5, 1e100, 0.1, 2.5e-300])),
        ("empty key", json!({"": 1, "a": {"": "x"}})),
        ("deep map", deep),
        ("deep list", deep_list),
    ];
    let mut failures = Vec::new();
    for (i, (what, value)) in cases.into_iter().enumerate() {
        let attrs = json!({ "v": value }).as_object().cloned().unwrap();
        let item = Item::new("P#awkward", format!("{i}"), attrs);
        match items.put(item.clone(), None).await {
            Ok(()) => {
                let got = items.get("P#awkward", &item.sk).await.unwrap();
                if got.as_ref() != Some(&item) {
                    failures.push(format!("{what}: read back {got:?}"));
                }
            }
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
