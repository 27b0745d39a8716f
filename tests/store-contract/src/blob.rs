//! `BlobStore` cases.

use std::fmt::Debug;
use std::sync::Arc;

use futures::FutureExt;
use sightline_core::ports::{BlobStore, StoreError, StoreResult};

use crate::{spawn_n, Case, Ctx};

type C = Ctx<dyn BlobStore>;

pub(crate) const CASES: &[Case<dyn BlobStore>] = &[
    ("get_missing", |c| get_missing(c).boxed()),
    ("put_get_roundtrip", |c| put_get_roundtrip(c).boxed()),
    ("if_none_match", |c| if_none_match(c).boxed()),
    ("overwrite", |c| overwrite(c).boxed()),
    ("list_order_prefix_start_after_limit", |c| {
        list_order_prefix_start_after_limit(c).boxed()
    }),
    ("list_pagination", |c| list_pagination(c).boxed()),
    ("delete", |c| delete(c).boxed()),
    ("nested_keys", |c| nested_keys(c).boxed()),
    ("concurrent_if_none_match", |c| {
        concurrent_if_none_match(c).boxed()
    }),
];

fn assert_condition_failed<T: Debug>(r: StoreResult<T>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::ConditionFailed)),
        "{what}: expected Err(ConditionFailed), got {r:?}"
    );
}

/// Compares blobs without dumping a megabyte into the failure message.
fn assert_blob(got: Option<Vec<u8>>, want: &[u8], what: &str) {
    match got {
        None => panic!("{what}: blob missing"),
        Some(g) if g == want => {}
        Some(g) => panic!(
            "{what}: blob differs (got {} bytes, want {}; first difference at byte {:?})",
            g.len(),
            want.len(),
            g.iter().zip(want).position(|(a, b)| a != b)
        ),
    }
}

async fn get_missing(c: C) {
    let got = c.store.get(&c.key("missing.bin")).await.expect("get");
    assert!(
        got.is_none(),
        "get of a missing key returned {} bytes",
        got.map_or(0, |g| g.len())
    );
}

async fn put_get_roundtrip(c: C) {
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    assert!(big.contains(&0));
    let cases: [(&str, Vec<u8>); 4] = [
        ("big.bin", big),
        ("small.json", br#"{"a":1}"#.to_vec()),
        ("zeros.bin", vec![0, 0, 0xff, 0, 0x80]),
        ("empty.bin", Vec::new()),
    ];
    for (name, bytes) in &cases {
        let key = c.key(name);
        c.store.put(&key, bytes.clone(), false).await.expect("put");
        assert_blob(c.store.get(&key).await.expect("get"), bytes, name);
    }
}

async fn if_none_match(c: C) {
    let key = c.key("once.bin");
    c.store
        .put(&key, b"first".to_vec(), true)
        .await
        .expect("first if_none_match put must succeed");
    assert_condition_failed(
        c.store.put(&key, b"second".to_vec(), true).await,
        "second if_none_match put",
    );
    assert_blob(
        c.store.get(&key).await.expect("get"),
        b"first",
        "after failed put",
    );
}

async fn overwrite(c: C) {
    let key = c.key("over.bin");
    c.store
        .put(&key, b"one".to_vec(), false)
        .await
        .expect("put 1");
    c.store
        .put(&key, b"two-longer".to_vec(), false)
        .await
        .expect("put 2");
    assert_blob(
        c.store.get(&key).await.expect("get"),
        b"two-longer",
        "after overwrite",
    );
    c.store
        .put(&key, b"3".to_vec(), false)
        .await
        .expect("put 3");
    assert_blob(
        c.store.get(&key).await.expect("get"),
        b"3",
        "after shorter overwrite",
    );
}

async fn list_order_prefix_start_after_limit(c: C) {
    let base = c.key("l/");
    // '-' (0x2d) < '.' (0x2e) < '/' (0x2f) < '0' (0x30): a naive directory walk gets this wrong.
    let names = ["a0", "a/1", "a.x", "a-1", "a/0/z", "b", "é", "aa"];
    for n in names {
        c.store
            .put(&format!("{base}{n}"), n.as_bytes().to_vec(), false)
            .await
            .expect("put");
    }
    c.store
        .put(&c.key("l-outside"), b"x".to_vec(), false)
        .await
        .expect("put outside");
    let full = |v: &[&str]| v.iter().map(|n| format!("{base}{n}")).collect::<Vec<_>>();

    let all = c.store.list(&base, None, 100).await.expect("list all");
    assert_eq!(
        all,
        full(&["a-1", "a.x", "a/0/z", "a/1", "a0", "aa", "b", "é"]),
        "lexicographic order"
    );

    let a = c
        .store
        .list(&format!("{base}a"), None, 100)
        .await
        .expect("list a");
    assert_eq!(
        a,
        full(&["a-1", "a.x", "a/0/z", "a/1", "a0", "aa"]),
        "prefix not ending at a slash"
    );

    let a_dir = c
        .store
        .list(&format!("{base}a/"), None, 100)
        .await
        .expect("list a/");
    assert_eq!(a_dir, full(&["a/0/z", "a/1"]), "prefix ending at a slash");

    let after = c
        .store
        .list(&base, Some(&format!("{base}a.x")), 3)
        .await
        .expect("list after");
    assert_eq!(after, full(&["a/0/z", "a/1", "a0"]), "start_after + limit");

    let after_missing = c
        .store
        .list(&base, Some(&format!("{base}a/05")), 2)
        .await
        .expect("list after a missing key");
    assert_eq!(
        after_missing,
        full(&["a/1", "a0"]),
        "start_after need not be an existing key"
    );

    let before_prefix = c
        .store
        .list(&base, Some(&c.key("a")), 1)
        .await
        .expect("list");
    assert_eq!(
        before_prefix,
        full(&["a-1"]),
        "start_after before the prefix"
    );

    let none = c
        .store
        .list(&format!("{base}zzz"), None, 10)
        .await
        .expect("list none");
    assert!(none.is_empty(), "unmatched prefix listed {none:?}");
    let none = c
        .store
        .list(&c.key("nothing/"), None, 10)
        .await
        .expect("list none");
    assert!(none.is_empty(), "unwritten prefix listed {none:?}");
}

async fn list_pagination(c: C) {
    let base = c.key("p/");
    let mut expected = Vec::new();
    for i in 0..25 {
        let key = format!("{base}{}/{i:03}.json", i % 3);
        c.store.put(&key, vec![i as u8], false).await.expect("put");
        expected.push(key);
    }
    expected.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let page = c
            .store
            .list(&base, after.as_deref(), 7)
            .await
            .expect("list page");
        assert!(page.len() <= 7, "page over limit: {}", page.len());
        match page.last() {
            None => break,
            Some(last) => after = Some(last.clone()),
        }
        seen.extend(page);
    }
    assert_eq!(
        seen, expected,
        "start_after pagination must visit every key once, in order"
    );
}

async fn delete(c: C) {
    let key = c.key("d/x.bin");
    c.store.put(&key, b"x".to_vec(), false).await.expect("put");
    c.store.delete(&key).await.expect("delete");
    assert!(
        c.store.get(&key).await.expect("get").is_none(),
        "deleted blob still readable"
    );
    let listed = c.store.list(&c.key("d/"), None, 10).await.expect("list");
    assert!(listed.is_empty(), "deleted blob still listed: {listed:?}");
    c.store
        .delete(&key)
        .await
        .expect("delete of a missing key must be Ok");
    c.store
        .delete(&c.key("never/was"))
        .await
        .expect("delete of a never-written key must be Ok");
    c.store
        .put(&key, b"again".to_vec(), true)
        .await
        .expect("if_none_match put after delete must succeed");
    assert_blob(
        c.store.get(&key).await.expect("get"),
        b"again",
        "after re-put",
    );
}

async fn nested_keys(c: C) {
    let deep = c.key("snapshots/proj/svc/bp/01HX.json");
    let sibling = c.key("snapshots/proj/svc/bp2/01HY.json");
    c.store
        .put(&deep, b"deep".to_vec(), false)
        .await
        .expect("put deep");
    c.store
        .put(&sibling, b"sib".to_vec(), false)
        .await
        .expect("put sibling");
    assert_blob(c.store.get(&deep).await.expect("get"), b"deep", "deep key");
    let listed = c
        .store
        .list(&c.key("snapshots/proj/svc/bp/"), None, 10)
        .await
        .expect("list");
    assert_eq!(listed, vec![deep.clone()]);
    let listed = c
        .store
        .list(&c.key("snapshots/"), None, 10)
        .await
        .expect("list");
    assert_eq!(listed, vec![deep.clone(), sibling.clone()]);
    // A strict prefix of a key (a "directory") is not itself an object.
    let dir = c.key("snapshots/proj");
    assert!(
        c.store.get(&dir).await.expect("get dir").is_none(),
        "a key prefix read as an object"
    );
    c.store
        .delete(&dir)
        .await
        .expect("delete of a key prefix must be Ok (no such object)");
    assert_blob(
        c.store.get(&deep).await.expect("get"),
        b"deep",
        "deleting a prefix must not touch keys under it",
    );
    c.store.delete(&deep).await.expect("delete deep");
    assert_blob(
        c.store.get(&sibling).await.expect("get"),
        b"sib",
        "sibling survives delete",
    );
}

async fn concurrent_if_none_match(c: C) {
    // Races are probabilistic, so run several rounds on fresh keys.
    for round in 0..4 {
        if_none_match_round(&c, c.key(&format!("race{round}.bin"))).await;
    }
}

async fn if_none_match_round(c: &C, key: String) {
    let results = spawn_n(16, |i| {
        let store = Arc::clone(&c.store);
        let key = key.clone();
        async move { store.put(&key, vec![i as u8; 4096], true).await }
    })
    .await;
    let other: Vec<_> = results
        .iter()
        .filter(|r| !matches!(r, Ok(()) | Err(StoreError::ConditionFailed)))
        .collect();
    assert!(other.is_empty(), "unexpected errors: {other:?}");
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 16 if_none_match puts must succeed: {winners:?}"
    );
    assert_blob(
        c.store.get(&key).await.expect("get"),
        &[winners[0] as u8; 4096],
        "stored blob is the winner's",
    );
}
