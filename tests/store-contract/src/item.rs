//! `ItemStore` cases.

use std::fmt::Debug;
use std::sync::Arc;

use futures::FutureExt;
use serde_json::{json, Value};
use sightline_core::ports::{
    Attrs, CmpOp, Condition, Item, ItemStore, Page, Query, StoreError, StoreResult, Transacted,
    UpdateOp, Write,
};

use crate::{now_secs, spawn_n, Case, Ctx};

type C = Ctx<dyn ItemStore>;

pub(crate) const CASES: &[Case<dyn ItemStore>] = &[
    ("get_missing", |c| get_missing(c).boxed()),
    ("put_get_roundtrip", |c| put_get_roundtrip(c).boxed()),
    ("put_not_exists", |c| put_not_exists(c).boxed()),
    ("conditions_on_present_item", |c| {
        conditions_on_present_item(c).boxed()
    }),
    ("conditions_on_absent_item", |c| {
        conditions_on_absent_item(c).boxed()
    }),
    ("update_creates_absent_item", |c| {
        update_creates_absent_item(c).boxed()
    }),
    ("update_add", |c| update_add(c).boxed()),
    ("update_add_f64", |c| update_add_f64(c).boxed()),
    ("update_set_if_not_exists", |c| {
        update_set_if_not_exists(c).boxed()
    }),
    ("update_remove", |c| update_remove(c).boxed()),
    ("update_set_ttl", |c| update_set_ttl(c).boxed()),
    ("update_returns_item_after_update", |c| {
        update_returns_item_after_update(c).boxed()
    }),
    ("update_failing_condition_changes_nothing", |c| {
        update_failing_condition_changes_nothing(c).boxed()
    }),
    ("delete", |c| delete(c).boxed()),
    ("ttl_expired_items_are_gone", |c| {
        ttl_expired_items_are_gone(c).boxed()
    }),
    ("query_prefix_and_order", |c| {
        query_prefix_and_order(c).boxed()
    }),
    ("query_pagination", |c| query_pagination(c).boxed()),
    ("query_filter_fills_pages", |c| {
        query_filter_fills_pages(c).boxed()
    }),
    ("query_skips_expired", |c| query_skips_expired(c).boxed()),
    ("query_invalid_cursor", |c| query_invalid_cursor(c).boxed()),
    ("query_empty", |c| query_empty(c).boxed()),
    ("concurrent_capped_counter", |c| {
        concurrent_capped_counter(c).boxed()
    }),
    ("concurrent_put_not_exists", |c| {
        concurrent_put_not_exists(c).boxed()
    }),
    ("concurrent_add", |c| concurrent_add(c).boxed()),
    ("transact_applies_all", |c| transact_applies_all(c).boxed()),
    ("transact_failing_condition_writes_nothing", |c| {
        transact_failing_condition_writes_nothing(c).boxed()
    }),
    ("concurrent_transact_capped", |c| {
        concurrent_transact_capped(c).boxed()
    }),
];

fn attrs(v: Value) -> Attrs {
    match v {
        Value::Object(m) => m,
        other => panic!("test bug: attrs must be a JSON object, got {other}"),
    }
}

fn cmp(attr: &str, op: CmpOp, v: impl Into<Value>) -> Condition {
    Condition::cmp(attr, op, v)
}

fn assert_condition_failed<T: Debug>(r: StoreResult<T>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::ConditionFailed)),
        "{what}: expected Err(ConditionFailed), got {r:?}"
    );
}

fn sks(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i.sk.clone()).collect()
}

/// Like `assert_eq!` on items, but names the differing parts and truncates huge values.
fn assert_item_eq(got: Option<&Item>, want: &Item, what: &str) {
    fn short(v: impl Debug) -> String {
        let s = format!("{v:?}");
        match s.char_indices().nth(200) {
            Some((i, _)) => format!("{}… ({} chars)", &s[..i], s.chars().count()),
            None => s,
        }
    }
    let Some(got) = got else {
        panic!("{what}: item ({}, {}) missing", want.pk, want.sk);
    };
    if got == want {
        return;
    }
    let mut diffs = Vec::new();
    if (&got.pk, &got.sk) != (&want.pk, &want.sk) {
        diffs.push(format!(
            "key ({}, {}) != ({}, {})",
            got.pk, got.sk, want.pk, want.sk
        ));
    }
    if got.expires_at != want.expires_at {
        diffs.push(format!(
            "expires_at {:?} != {:?}",
            got.expires_at, want.expires_at
        ));
    }
    for (k, w) in &want.attrs {
        match got.attrs.get(k) {
            None => diffs.push(format!("attr {k:?} missing")),
            Some(g) if g != w => {
                diffs.push(format!("attr {k:?}: got {}, want {}", short(g), short(w)))
            }
            Some(_) => {}
        }
    }
    for k in got.attrs.keys().filter(|k| !want.attrs.contains_key(*k)) {
        diffs.push(format!("unexpected attr {k:?}"));
    }
    panic!("{what}: item differs: {}", diffs.join("; "));
}

async fn get_missing(c: C) {
    let pk = c.key("p");
    let got = c.store.get(&pk, "missing").await.expect("get");
    assert!(got.is_none(), "get of a never-written key returned {got:?}");
}

async fn put_get_roundtrip(c: C) {
    let pk = c.key("p");
    let big = "x€".repeat(75 * 1024); // 300 KiB of multi-byte UTF-8
    let a = attrs(json!({
        "nested": {"list": [1, 2, {"deep": null}], "obj": {"t": true, "s": "str"}},
        "unicode": "héllo wörld — 日本語 🚀 \u{0}",
        "int": -42,
        "max": i64::MAX,
        "min": i64::MIN,
        "float": 1.5,
        "bool": false,
        "null": null,
        "empty_obj": {},
        "empty_list": [],
        "empty_str": "",
        "big": big,
    }));
    let sk = "sk/ünïcødé/🚀";
    let item = Item::new(&pk, sk, a).with_ttl(Some(now_secs() + 1_000_000));
    c.store.put(item.clone(), None).await.expect("put");
    let got = c.store.get(&pk, sk).await.expect("get");
    assert_item_eq(got.as_ref(), &item, "get after put");

    let other = c.store.get(&pk, "sk/other").await.expect("get other");
    assert!(
        other.is_none(),
        "a different sort key must be absent, got {other:?}"
    );

    // put replaces the whole item: old attributes and TTL are gone.
    let replacement = Item::new(&pk, sk, attrs(json!({"only": 1})));
    c.store.put(replacement.clone(), None).await.expect("put 2");
    let got = c.store.get(&pk, sk).await.expect("get 2");
    assert_eq!(got, Some(replacement), "put must replace, not merge");
}

async fn put_not_exists(c: C) {
    let pk = c.key("p");
    let first = Item::new(&pk, "k", attrs(json!({"v": 1})));
    c.store
        .put(first.clone(), Some(Condition::NotExists))
        .await
        .expect("first put with NotExists must succeed");
    let second = Item::new(&pk, "k", attrs(json!({"v": 2})));
    assert_condition_failed(
        c.store
            .put(second.clone(), Some(Condition::NotExists))
            .await,
        "second put with NotExists",
    );
    let got = c.store.get(&pk, "k").await.expect("get");
    assert_eq!(got, Some(first), "failed put must not change the item");

    c.store
        .put(second.clone(), Some(Condition::Exists))
        .await
        .expect("put with Exists on present item");
    assert_eq!(c.store.get(&pk, "k").await.expect("get"), Some(second));

    let absent = Item::new(&pk, "absent", attrs(json!({"v": 3})));
    assert_condition_failed(
        c.store.put(absent, Some(Condition::Exists)).await,
        "put with Exists on absent item",
    );
    let got = c.store.get(&pk, "absent").await.expect("get");
    assert!(
        got.is_none(),
        "failed put must not create the item, got {got:?}"
    );
}

/// `(description, condition, expected)` checked against a present item.
fn present_cases() -> Vec<(&'static str, Condition, bool)> {
    use CmpOp::*;
    use Condition::*;
    let mut v = vec![
        ("Exists", Exists, true),
        ("NotExists", NotExists, false),
        ("AttrExists n", AttrExists("n".into()), true),
        ("AttrExists null-valued z", AttrExists("z".into()), true),
        ("AttrExists missing", AttrExists("missing".into()), false),
        (
            "AttrNotExists missing",
            AttrNotExists("missing".into()),
            true,
        ),
        ("AttrNotExists n", AttrNotExists("n".into()), false),
        ("n = 5", cmp("n", Eq, 5), true),
        ("n = 4", cmp("n", Eq, 4), false),
        ("n <> 5", cmp("n", Ne, 5), false),
        ("n <> 4", cmp("n", Ne, 4), true),
        ("n < 6", cmp("n", Lt, 6), true),
        ("n < 5", cmp("n", Lt, 5), false),
        ("n <= 5", cmp("n", Le, 5), true),
        ("n <= 4", cmp("n", Le, 4), false),
        ("n > 4", cmp("n", Gt, 4), true),
        ("n > 5", cmp("n", Gt, 5), false),
        ("n >= 5", cmp("n", Ge, 5), true),
        ("n >= 6", cmp("n", Ge, 6), false),
        ("n < 5.5", cmp("n", Lt, 5.5), true),
        ("n > -1", cmp("n", Gt, -1), true),
        ("s = abc", cmp("s", Eq, "abc"), true),
        ("s < abd", cmp("s", Lt, "abd"), true),
        ("s > abd", cmp("s", Gt, "abd"), false),
        ("s >= abc", cmp("s", Ge, "abc"), true),
        ("s > ab", cmp("s", Gt, "ab"), true),
        ("b = true", cmp("b", Eq, true), true),
        ("b = false", cmp("b", Eq, false), false),
        ("b <> false", cmp("b", Ne, false), true),
        ("n = \"5\" (type mismatch)", cmp("n", Eq, "5"), false),
        ("n <> \"5\" (type mismatch)", cmp("n", Ne, "5"), true),
        ("n < \"6\" (type mismatch)", cmp("n", Lt, "6"), false),
        ("n < m", CmpAttr("n".into(), Lt, "m".into()), true),
        ("n >= m", CmpAttr("n".into(), Ge, "m".into()), false),
        ("n = n", CmpAttr("n".into(), Eq, "n".into()), true),
        (
            "n < missing",
            CmpAttr("n".into(), Lt, "missing".into()),
            false,
        ),
        (
            "missing <> n",
            CmpAttr("missing".into(), Ne, "n".into()),
            false,
        ),
        (
            "And(true, true)",
            And(vec![cmp("n", Eq, 5), cmp("s", Eq, "abc")]),
            true,
        ),
        (
            "And(true, false)",
            And(vec![cmp("n", Eq, 5), cmp("s", Eq, "x")]),
            false,
        ),
        (
            "Or(false, true)",
            Or(vec![cmp("n", Eq, 1), cmp("s", Eq, "abc")]),
            true,
        ),
        (
            "Or(false, false)",
            Or(vec![cmp("n", Eq, 1), cmp("s", Eq, "x")]),
            false,
        ),
        ("Not(false)", Not(Box::new(cmp("n", Eq, 1))), true),
        ("Not(true)", Not(Box::new(cmp("n", Eq, 5))), false),
        (
            "Not(missing = 5)",
            Not(Box::new(cmp("missing", Eq, 5))),
            true,
        ),
        (
            "And(Or(false, true), Not(AttrExists missing))",
            And(vec![
                Or(vec![cmp("n", Gt, 100), cmp("m", Eq, 7)]),
                Not(Box::new(AttrExists("missing".into()))),
            ]),
            true,
        ),
    ];
    for op in [Eq, Ne, Lt, Le, Gt, Ge] {
        v.push(("missing <op> 5 is false", cmp("missing", op, 5), false));
    }
    v
}

async fn conditions_on_present_item(c: C) {
    let pk = c.key("p");
    let item = Item::new(
        &pk,
        "k",
        attrs(json!({"n": 5, "s": "abc", "b": true, "m": 7, "z": null})),
    );
    c.store.put(item.clone(), None).await.expect("put");
    for (what, cond, expected) in present_cases() {
        // Re-putting the same item is a no-op write, so only the condition matters.
        let r = c.store.put(item.clone(), Some(cond.clone())).await;
        match (expected, r) {
            (true, Ok(())) | (false, Err(StoreError::ConditionFailed)) => {}
            (_, r) => {
                panic!("condition `{what}` ({cond:?}) should be {expected}, put returned {r:?}")
            }
        }
    }
    let got = c.store.get(&pk, "k").await.expect("get");
    assert_eq!(
        got,
        Some(item),
        "conditional puts of the same item changed it"
    );
}

async fn conditions_on_absent_item(c: C) {
    use CmpOp::*;
    use Condition::*;
    let pk = c.key("p");
    let cases = vec![
        ("Exists", Exists, false),
        ("NotExists", NotExists, true),
        ("AttrExists n", AttrExists("n".into()), false),
        ("AttrNotExists n", AttrNotExists("n".into()), true),
        ("n = 5", cmp("n", Eq, 5), false),
        ("n <> 5", cmp("n", Ne, 5), false),
        ("n = n", CmpAttr("n".into(), Eq, "n".into()), false),
        (
            "Not(AttrExists n)",
            Not(Box::new(AttrExists("n".into()))),
            true,
        ),
        (
            "n < 10 OR AttrNotExists n",
            Or(vec![cmp("n", Lt, 10), AttrNotExists("n".into())]),
            true,
        ),
    ];
    for (what, cond, expected) in cases {
        // Deleting an absent item is a no-op, so only the condition matters.
        let r = c.store.delete(&pk, "absent", Some(cond.clone())).await;
        match (expected, r) {
            (true, Ok(None)) | (false, Err(StoreError::ConditionFailed)) => {}
            (_, r) => panic!(
                "condition `{what}` ({cond:?}) on an absent item should be {expected}, delete returned {r:?}"
            ),
        }
    }
}

async fn update_creates_absent_item(c: C) {
    let pk = c.key("p");
    let got = c
        .store
        .update(
            &pk,
            "new",
            &[UpdateOp::set("name", "x"), UpdateOp::add("count", 1)],
            None,
        )
        .await
        .expect("update of absent item");
    let expected = Item::new(&pk, "new", attrs(json!({"name": "x", "count": 1})));
    assert_eq!(got, expected, "update must create an absent item");
    assert_eq!(c.store.get(&pk, "new").await.expect("get"), Some(expected));

    let got = c
        .store
        .update(
            &pk,
            "new2",
            &[UpdateOp::add("count", 1)],
            Some(Condition::NotExists),
        )
        .await
        .expect("update with NotExists on absent item");
    assert_eq!(got.get_i64("count"), Some(1));
}

async fn update_add(c: C) {
    let pk = c.key("p");
    c.store
        .put(Item::new(&pk, "k", attrs(json!({"other": "x"}))), None)
        .await
        .expect("put");
    let got = c
        .store
        .update(&pk, "k", &[UpdateOp::add("n", 5)], None)
        .await
        .expect("add");
    assert_eq!(
        got.get_i64("n"),
        Some(5),
        "Add on a missing attribute counts from 0"
    );
    assert_eq!(
        got.get_str("other"),
        Some("x"),
        "Add must keep other attributes"
    );
    let got = c
        .store
        .update(&pk, "k", &[UpdateOp::add("n", -2)], None)
        .await
        .expect("add negative");
    assert_eq!(got.get_i64("n"), Some(3));
    let stored = c.store.get(&pk, "k").await.expect("get").expect("present");
    assert_eq!(stored.get_i64("n"), Some(3));
}

async fn update_add_f64(c: C) {
    let pk = c.key("p");
    let got = c
        .store
        .update(&pk, "k", &[UpdateOp::AddF64("total".into(), 1.5)], None)
        .await
        .expect("add f64");
    assert_eq!(got.attrs.get("total").and_then(Value::as_f64), Some(1.5));
    c.store
        .update(&pk, "k", &[UpdateOp::AddF64("total".into(), 2.25)], None)
        .await
        .expect("add f64 again");
    let stored = c.store.get(&pk, "k").await.expect("get").expect("present");
    assert_eq!(
        stored.attrs.get("total").and_then(Value::as_f64),
        Some(3.75),
        "AddF64 accumulates floating-point totals"
    );
}

async fn update_set_if_not_exists(c: C) {
    let pk = c.key("p");
    let op = |v: i64| UpdateOp::SetIfNotExists("first_seen".into(), Value::from(v));
    let got = c.store.update(&pk, "k", &[op(1)], None).await.expect("1");
    assert_eq!(
        got.get_i64("first_seen"),
        Some(1),
        "SetIfNotExists on missing attr sets it"
    );
    let got = c.store.update(&pk, "k", &[op(2)], None).await.expect("2");
    assert_eq!(
        got.get_i64("first_seen"),
        Some(1),
        "SetIfNotExists must keep an existing value"
    );
    let stored = c.store.get(&pk, "k").await.expect("get").expect("present");
    assert_eq!(stored.get_i64("first_seen"), Some(1));
}

async fn update_remove(c: C) {
    let pk = c.key("p");
    c.store
        .put(Item::new(&pk, "k", attrs(json!({"a": 1, "b": 2}))), None)
        .await
        .expect("put");
    let got = c
        .store
        .update(
            &pk,
            "k",
            &[
                UpdateOp::Remove("a".into()),
                UpdateOp::Remove("never".into()),
            ],
            None,
        )
        .await
        .expect("remove");
    assert_eq!(
        got.attrs,
        attrs(json!({"b": 2})),
        "Remove must drop only the named attribute"
    );
    let stored = c.store.get(&pk, "k").await.expect("get").expect("present");
    assert_eq!(stored.attrs, attrs(json!({"b": 2})));
}

async fn update_set_ttl(c: C) {
    let pk = c.key("p");
    let future = now_secs() + 1_000_000;
    c.store
        .put(Item::new(&pk, "k", attrs(json!({"a": 1}))), None)
        .await
        .expect("put");
    let got = c
        .store
        .update(&pk, "k", &[UpdateOp::SetTtl(Some(future))], None)
        .await
        .expect("set ttl");
    assert_eq!(got.expires_at, Some(future));
    let stored = c.store.get(&pk, "k").await.expect("get").expect("present");
    assert_eq!(stored.expires_at, Some(future), "SetTtl must persist");
    assert_eq!(stored.get_i64("a"), Some(1));

    let got = c
        .store
        .update(&pk, "k", &[UpdateOp::SetTtl(None)], None)
        .await
        .expect("clear ttl");
    assert_eq!(got.expires_at, None);
    let stored = c.store.get(&pk, "k").await.expect("get").expect("present");
    assert_eq!(stored.expires_at, None, "SetTtl(None) must clear the TTL");

    c.store
        .update(&pk, "k", &[UpdateOp::SetTtl(Some(now_secs() - 1))], None)
        .await
        .expect("expire");
    let stored = c.store.get(&pk, "k").await.expect("get");
    assert!(
        stored.is_none(),
        "an item given a past TTL must be gone, got {stored:?}"
    );
}

async fn update_returns_item_after_update(c: C) {
    let pk = c.key("p");
    c.store
        .put(
            Item::new(&pk, "k", attrs(json!({"keep": "y", "a": 10}))),
            None,
        )
        .await
        .expect("put");
    let got = c
        .store
        .update(
            &pk,
            "k",
            &[
                UpdateOp::set("a", 1),
                UpdateOp::add("a", 2),
                UpdateOp::set("s", "v"),
            ],
            Some(cmp("a", CmpOp::Eq, 10)),
        )
        .await
        .expect("update");
    let expected = Item::new(&pk, "k", attrs(json!({"keep": "y", "a": 3, "s": "v"})));
    assert_eq!(
        got, expected,
        "update must apply ops in order and return the new item"
    );
    assert_eq!(c.store.get(&pk, "k").await.expect("get"), Some(expected));
}

async fn update_failing_condition_changes_nothing(c: C) {
    let pk = c.key("p");
    let item = Item::new(&pk, "k", attrs(json!({"n": 1})));
    c.store.put(item.clone(), None).await.expect("put");
    assert_condition_failed(
        c.store
            .update(
                &pk,
                "k",
                &[UpdateOp::add("n", 1), UpdateOp::set("x", 1)],
                Some(cmp("n", CmpOp::Gt, 1)),
            )
            .await,
        "update with false condition",
    );
    assert_eq!(c.store.get(&pk, "k").await.expect("get"), Some(item));

    assert_condition_failed(
        c.store
            .update(
                &pk,
                "absent",
                &[UpdateOp::add("n", 1)],
                Some(Condition::Exists),
            )
            .await,
        "update with Exists on absent item",
    );
    let got = c.store.get(&pk, "absent").await.expect("get");
    assert!(
        got.is_none(),
        "failed update must not create the item, got {got:?}"
    );
}

async fn delete(c: C) {
    let pk = c.key("p");
    let item = Item::new(&pk, "k", attrs(json!({"n": 1})));
    c.store.put(item.clone(), None).await.expect("put");

    assert_condition_failed(
        c.store.delete(&pk, "k", Some(cmp("n", CmpOp::Eq, 2))).await,
        "delete with false condition",
    );
    assert_eq!(
        c.store.get(&pk, "k").await.expect("get"),
        Some(item.clone())
    );

    let old = c
        .store
        .delete(&pk, "k", Some(cmp("n", CmpOp::Eq, 1)))
        .await
        .expect("delete with true condition");
    assert_eq!(old, Some(item.clone()), "delete must return the old item");
    let got = c.store.get(&pk, "k").await.expect("get");
    assert!(got.is_none(), "deleted item still readable: {got:?}");

    let old = c
        .store
        .delete(&pk, "k", None)
        .await
        .expect("delete missing");
    assert!(old.is_none(), "delete of a missing item returned {old:?}");

    c.store.put(item.clone(), None).await.expect("put again");
    let old = c
        .store
        .delete(&pk, "k", None)
        .await
        .expect("unconditional delete");
    assert_eq!(old, Some(item));
}

async fn ttl_expired_items_are_gone(c: C) {
    let pk = c.key("p");
    let past = now_secs() - 1;
    let future = now_secs() + 1_000_000;
    let expired =
        Item::new(&pk, "expired", attrs(json!({"old": true, "n": 7}))).with_ttl(Some(past));
    let live = Item::new(&pk, "live", attrs(json!({"n": 1}))).with_ttl(Some(future));
    c.store
        .put(expired.clone(), None)
        .await
        .expect("put expired");
    c.store.put(live.clone(), None).await.expect("put live");

    let got = c.store.get(&pk, "expired").await.expect("get expired");
    assert!(got.is_none(), "expired item returned by get: {got:?}");
    assert_eq!(
        c.store.get(&pk, "live").await.expect("get live"),
        Some(live.clone())
    );
    let page = c.store.query(&pk, Query::default()).await.expect("query");
    assert_eq!(
        sks(&page.items),
        vec!["live"],
        "query must not return expired items"
    );

    // An expired item counts as absent for conditions and writes.
    let again = Item::new(&pk, "expired", attrs(json!({"v": 2})));
    c.store
        .put(again.clone(), Some(Condition::NotExists))
        .await
        .expect("put NotExists over an expired item");
    assert_eq!(c.store.get(&pk, "expired").await.expect("get"), Some(again));

    c.store.put(expired.clone(), None).await.expect("re-expire");
    assert_condition_failed(
        c.store
            .update(
                &pk,
                "expired",
                &[UpdateOp::add("n", 1)],
                Some(Condition::Exists),
            )
            .await,
        "update with Exists on an expired item",
    );
    let got = c
        .store
        .update(&pk, "expired", &[UpdateOp::add("n", 1)], None)
        .await
        .expect("update of an expired item");
    assert_eq!(
        got,
        Item::new(&pk, "expired", attrs(json!({"n": 1}))),
        "update of an expired item must start from an empty item"
    );

    c.store.put(expired, None).await.expect("re-expire");
    let old = c
        .store
        .delete(&pk, "expired", None)
        .await
        .expect("delete expired");
    assert!(old.is_none(), "delete of an expired item returned {old:?}");
}

/// Follows cursors to the end. Asserts every page but the last is full (the last may be
/// short or empty) and returns all items.
async fn collect_pages(store: &dyn ItemStore, pk: &str, query: Query, what: &str) -> Vec<Item> {
    let limit = query.limit;
    let mut all = Vec::new();
    let mut cursor = None;
    for round in 0..1000 {
        let q = Query {
            cursor: cursor.clone(),
            ..query.clone()
        };
        let Page { items, next } = store
            .query(pk, q)
            .await
            .unwrap_or_else(|e| panic!("{what}: query page {round} failed: {e}"));
        if let Some(limit) = limit {
            assert!(
                items.len() <= limit,
                "{what}: page {round} has {} items, over the limit {limit}",
                items.len()
            );
            if next.is_some() {
                assert_eq!(
                    items.len(),
                    limit,
                    "{what}: page {round} is not full but has a next cursor"
                );
            }
        } else {
            assert!(
                next.is_none(),
                "{what}: a query without limit returned a cursor"
            );
        }
        all.extend(items);
        match next {
            Some(n) => cursor = Some(n),
            None => return all,
        }
    }
    panic!("{what}: pagination did not terminate");
}

async fn query_prefix_and_order(c: C) {
    let pk = c.key("p");
    let keys = [
        "a#01", "a#02", "a#10", "a#é", "a#éa", "a#ê", "a#z", "a", "b#01", "ab#1", "A#1",
    ];
    for (i, sk) in keys.iter().enumerate() {
        c.store
            .put(Item::new(&pk, *sk, attrs(json!({"i": i}))), None)
            .await
            .expect("put");
    }
    // Neighbouring partitions whose keys extend this one must not leak in.
    for other in [
        format!("{pk}x"),
        format!("{pk}#"),
        format!("{pk}\u{10FFFF}"),
    ] {
        c.store
            .put(Item::new(other, "a#05", Attrs::new()), None)
            .await
            .expect("put neighbour");
    }

    let sorted = |mut v: Vec<&str>| {
        v.sort_unstable(); // byte order of UTF-8 == code point order
        v.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let all = sorted(keys.to_vec());
    let a_hash = sorted(
        keys.iter()
            .copied()
            .filter(|k| k.starts_with("a#"))
            .collect(),
    );
    assert_eq!(
        a_hash,
        ["a#01", "a#02", "a#10", "a#z", "a#é", "a#éa", "a#ê"]
    );

    let q = |prefix: Option<&str>, descending: bool| Query {
        sk_prefix: prefix.map(str::to_owned),
        descending,
        ..Query::default()
    };
    let page = c.store.query(&pk, q(None, false)).await.expect("query all");
    assert_eq!(
        sks(&page.items),
        all,
        "query without prefix: every item in sort-key byte order"
    );
    assert!(
        page.next.is_none(),
        "query without limit must not return a cursor"
    );

    let page = c
        .store
        .query(&pk, q(Some("a#"), false))
        .await
        .expect("query a#");
    assert_eq!(sks(&page.items), a_hash, "sk_prefix ascending");

    let page = c
        .store
        .query(&pk, q(Some("a#"), true))
        .await
        .expect("query a# desc");
    let mut rev = a_hash.clone();
    rev.reverse();
    assert_eq!(sks(&page.items), rev, "sk_prefix descending");

    let page = c
        .store
        .query(&pk, q(Some("a#é"), false))
        .await
        .expect("query a#é");
    assert_eq!(sks(&page.items), ["a#é", "a#éa"], "multi-byte prefix");

    let page = c
        .store
        .query(&pk, q(Some("a#é"), true))
        .await
        .expect("query a#é desc");
    assert_eq!(
        sks(&page.items),
        ["a#éa", "a#é"],
        "multi-byte prefix descending"
    );

    let page = c
        .store
        .query(&pk, q(Some("a"), true))
        .await
        .expect("query a desc");
    let mut with_a: Vec<String> = all.iter().filter(|k| k.starts_with('a')).cloned().collect();
    with_a.reverse();
    assert_eq!(
        sks(&page.items),
        with_a,
        "prefix that is itself a key, descending"
    );

    let page = c
        .store
        .query(&pk, q(None, true))
        .await
        .expect("query all desc");
    let mut rev_all = all.clone();
    rev_all.reverse();
    assert_eq!(sks(&page.items), rev_all, "descending without prefix");

    assert!(
        page.items.iter().all(|i| i.pk == pk),
        "query returned items of another partition"
    );
    let first = &c
        .store
        .query(&pk, q(Some("ab#"), false))
        .await
        .expect("q")
        .items;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0],
        Item::new(&pk, "ab#1", attrs(json!({"i": 9}))),
        "query returns whole items"
    );
}

async fn query_pagination(c: C) {
    let pk = c.key("p");
    let mut expected = Vec::new();
    for i in 0..25 {
        let sk = format!("item#{i:03}");
        c.store
            .put(Item::new(&pk, &sk, attrs(json!({"i": i}))), None)
            .await
            .expect("put");
        expected.push(sk);
    }
    for sk in ["item", "itea", "other#1", "j"] {
        c.store
            .put(Item::new(&pk, sk, Attrs::new()), None)
            .await
            .expect("put distractor");
    }

    for page_size in [7, 5, 1, 25, 100] {
        let q = Query {
            sk_prefix: Some("item#".into()),
            limit: Some(page_size),
            ..Query::default()
        };
        let got = collect_pages(
            &*c.store,
            &pk,
            q.clone(),
            &format!("ascending, page {page_size}"),
        )
        .await;
        assert_eq!(
            sks(&got),
            expected,
            "ascending pages of {page_size}: each item exactly once, in order"
        );

        let got = collect_pages(
            &*c.store,
            &pk,
            Query {
                descending: true,
                ..q
            },
            &format!("descending, page {page_size}"),
        )
        .await;
        let mut rev = expected.clone();
        rev.reverse();
        assert_eq!(
            sks(&got),
            rev,
            "descending pages of {page_size}: each item exactly once, in order"
        );
    }

    // First page of 7 is exactly the first 7, with a cursor.
    let page = c
        .store
        .query(
            &pk,
            Query {
                sk_prefix: Some("item#".into()),
                limit: Some(7),
                ..Query::default()
            },
        )
        .await
        .expect("first page");
    assert_eq!(sks(&page.items), expected[..7].to_vec());
    assert!(
        page.next.is_some(),
        "a full page with more items must have a cursor"
    );

    // Without a prefix the whole partition pages through too.
    let got = collect_pages(
        &*c.store,
        &pk,
        Query {
            limit: Some(7),
            ..Query::default()
        },
        "whole partition",
    )
    .await;
    assert_eq!(got.len(), 29, "whole partition: 25 items + 4 distractors");
}

async fn query_filter_fills_pages(c: C) {
    let pk = c.key("p");
    for i in 0..30 {
        let kind = if i % 3 == 0 { "keep" } else { "skip" };
        c.store
            .put(
                Item::new(
                    &pk,
                    format!("f#{i:02}"),
                    attrs(json!({"kind": kind, "n": i})),
                ),
                None,
            )
            .await
            .expect("put");
    }
    let keep: Vec<String> = (0..30)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("f#{i:02}"))
        .collect();
    let q = Query {
        sk_prefix: Some("f#".into()),
        limit: Some(4),
        filter: Some(cmp("kind", CmpOp::Eq, "keep")),
        ..Query::default()
    };
    let first = c
        .store
        .query(&pk, q.clone())
        .await
        .expect("first filtered page");
    assert_eq!(
        sks(&first.items),
        keep[..4].to_vec(),
        "a filtered page must fill up to the limit"
    );

    let got = collect_pages(&*c.store, &pk, q.clone(), "filtered ascending").await;
    assert_eq!(
        sks(&got),
        keep,
        "filtered pages: each matching item exactly once, in order"
    );

    let got = collect_pages(
        &*c.store,
        &pk,
        Query {
            descending: true,
            ..q.clone()
        },
        "filtered descending",
    )
    .await;
    let mut rev = keep.clone();
    rev.reverse();
    assert_eq!(sks(&got), rev);

    let q2 = Query {
        filter: Some(Condition::And(vec![
            cmp("kind", CmpOp::Eq, "keep"),
            cmp("n", CmpOp::Ge, 20),
        ])),
        limit: Some(2),
        ..q.clone()
    };
    let got = collect_pages(&*c.store, &pk, q2, "filtered tail").await;
    assert_eq!(sks(&got), ["f#21", "f#24", "f#27"]);

    let none = Query {
        filter: Some(cmp("kind", CmpOp::Eq, "nothing")),
        ..q
    };
    let got = collect_pages(&*c.store, &pk, none, "filter matching nothing").await;
    assert!(got.is_empty(), "filter matching nothing returned {got:?}");
}

async fn query_skips_expired(c: C) {
    let pk = c.key("p");
    let past = now_secs() - 1;
    for i in 0..10 {
        let ttl = (i % 2 == 1).then_some(past);
        c.store
            .put(
                Item::new(&pk, format!("t#{i}"), attrs(json!({"i": i}))).with_ttl(ttl),
                None,
            )
            .await
            .expect("put");
    }
    let q = Query {
        limit: Some(3),
        ..Query::default()
    };
    let got = collect_pages(&*c.store, &pk, q, "with expired items").await;
    assert_eq!(sks(&got), ["t#0", "t#2", "t#4", "t#6", "t#8"]);
}

async fn query_invalid_cursor(c: C) {
    let pk = c.key("p");
    c.store
        .put(Item::new(&pk, "a", Attrs::new()), None)
        .await
        .expect("put");
    for garbage in ["garbage!!not-a-cursor", "zz", "\u{0}🚀"] {
        let r = c
            .store
            .query(
                &pk,
                Query {
                    cursor: Some(garbage.to_owned()),
                    limit: Some(5),
                    ..Query::default()
                },
            )
            .await;
        assert!(
            matches!(r, Err(StoreError::InvalidCursor)),
            "cursor {garbage:?}: expected Err(InvalidCursor), got {r:?}"
        );
    }
}

async fn query_empty(c: C) {
    let pk = c.key("never-written");
    for limit in [None, Some(5)] {
        let page = c
            .store
            .query(
                &pk,
                Query {
                    limit,
                    ..Query::default()
                },
            )
            .await
            .expect("query empty partition");
        assert!(
            page.items.is_empty() && page.next.is_none(),
            "empty partition returned {page:?}"
        );
    }
    let pk = c.key("p");
    c.store
        .put(Item::new(&pk, "a#1", Attrs::new()), None)
        .await
        .expect("put");
    let page = c
        .store
        .query(
            &pk,
            Query {
                sk_prefix: Some("b#".into()),
                limit: Some(5),
                ..Query::default()
            },
        )
        .await
        .expect("query prefix without matches");
    assert!(
        page.items.is_empty() && page.next.is_none(),
        "prefix without matches returned {page:?}"
    );
}

/// Races are probabilistic, so each concurrency case runs several rounds on fresh keys.
const ROUNDS: usize = 4;

async fn concurrent_capped_counter(c: C) {
    for round in 0..ROUNDS {
        capped_counter_round(&c, c.key(&format!("p{round}"))).await;
    }
}

async fn concurrent_put_not_exists(c: C) {
    for round in 0..ROUNDS {
        put_not_exists_round(&c, c.key(&format!("p{round}"))).await;
    }
}

async fn concurrent_add(c: C) {
    for round in 0..ROUNDS {
        add_round(&c, c.key(&format!("p{round}"))).await;
    }
}

async fn capped_counter_round(c: &C, pk: String) {
    let results = spawn_n(64, |_| {
        let store = Arc::clone(&c.store);
        let pk = pk.clone();
        async move {
            store
                .update(
                    &pk,
                    "bp",
                    &[UpdateOp::add("capture_count", 1)],
                    Some(Condition::Or(vec![
                        cmp("capture_count", CmpOp::Lt, 10),
                        Condition::AttrNotExists("capture_count".into()),
                    ])),
                )
                .await
        }
    })
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let other: Vec<_> = results
        .iter()
        .filter(|r| !matches!(r, Ok(_) | Err(StoreError::ConditionFailed)))
        .collect();
    assert!(other.is_empty(), "unexpected errors: {other:?}");
    assert_eq!(ok, 10, "exactly 10 of 64 capped increments must succeed");
    let mut counts: Vec<i64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(|i| i.get_i64("capture_count")))
        .collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=10).collect::<Vec<_>>(),
        "each success must see a distinct count"
    );
    let item = c.store.get(&pk, "bp").await.expect("get").expect("present");
    assert_eq!(item.get_i64("capture_count"), Some(10), "final count");
}

async fn put_not_exists_round(c: &C, pk: String) {
    let results = spawn_n(32, |i| {
        let store = Arc::clone(&c.store);
        let item = Item::new(&pk, "once", attrs(json!({"writer": i})));
        async move { store.put(item, Some(Condition::NotExists)).await }
    })
    .await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    let other: Vec<_> = results
        .iter()
        .filter(|r| !matches!(r, Ok(()) | Err(StoreError::ConditionFailed)))
        .collect();
    assert!(other.is_empty(), "unexpected errors: {other:?}");
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 32 NotExists puts must succeed, got {winners:?}"
    );
    let item = c
        .store
        .get(&pk, "once")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        item.get_i64("writer"),
        Some(winners[0] as i64),
        "the stored item is the winner's"
    );
}

async fn add_round(c: &C, pk: String) {
    let results = spawn_n(50, |_| {
        let store = Arc::clone(&c.store);
        let pk = pk.clone();
        async move {
            store
                .update(&pk, "ctr", &[UpdateOp::add("n", 1)], None)
                .await
        }
    })
    .await;
    let errors: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(errors.is_empty(), "unconditional adds failed: {errors:?}");
    let item = c
        .store
        .get(&pk, "ctr")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        item.get_i64("n"),
        Some(50),
        "50 concurrent Add(1) must total 50"
    );
}

/// The shape the capture path uses: a put-if-absent marker, one conditional update, then
/// unconditional puts and updates.
fn capture_like_writes(pk: &str, marker: &str, cap: i64) -> Vec<Write> {
    vec![
        Write::Put {
            item: Item::new(pk, format!("M#{marker}"), Attrs::new()).with_ttl(Some(i64::MAX / 2)),
            condition: Some(Condition::NotExists),
        },
        Write::Update {
            pk: pk.to_owned(),
            sk: "slot".into(),
            ops: vec![UpdateOp::add("n", 1), UpdateOp::set("last", marker)],
            condition: Some(Condition::Or(vec![
                Condition::AttrNotExists("n".into()),
                cmp("n", CmpOp::Lt, cap),
            ])),
        },
        Write::Put {
            item: Item::new(
                pk,
                format!("S#{marker}"),
                attrs(json!({"payload": {"v": [1, "é"]}})),
            ),
            condition: None,
        },
        Write::Update {
            pk: pk.to_owned(),
            sk: "total".into(),
            ops: vec![UpdateOp::add("total", 1)],
            condition: None,
        },
    ]
}

async fn transact_applies_all(c: C) {
    let pk = c.key("p");
    let got = c
        .store
        .transact(&capture_like_writes(&pk, "a", 10))
        .await
        .expect("transact");
    let Transacted::Written(items) = got else {
        panic!("expected Written, got {got:?}");
    };
    assert_eq!(items.len(), 4, "one result per write");
    assert!(items[0].is_none() && items[2].is_none(), "puts return None");
    let slot = items[1].as_ref().expect("update returns the item");
    assert_eq!(
        (slot.get_i64("n"), slot.get_str("last")),
        (Some(1), Some("a"))
    );
    assert_eq!(items[3].as_ref().and_then(|i| i.get_i64("total")), Some(1));

    let page = c.store.query(&pk, Query::default()).await.expect("query");
    assert_eq!(sks(&page.items), ["M#a", "S#a", "slot", "total"]);
    let snapshot = c.store.get(&pk, "S#a").await.expect("get").expect("stored");
    assert_eq!(snapshot.attrs["payload"], json!({"v": [1, "é"]}));
}

async fn transact_failing_condition_writes_nothing(c: C) {
    let pk = c.key("p");
    let first = c
        .store
        .transact(&capture_like_writes(&pk, "a", 1))
        .await
        .expect("transact");
    assert!(matches!(first, Transacted::Written(_)), "got {first:?}");

    // The same marker again: the first write's condition fails.
    let again = c
        .store
        .transact(&capture_like_writes(&pk, "a", 5))
        .await
        .expect("transact");
    assert_eq!(again, Transacted::ConditionFailed(0));

    // A new marker but no slot left: the second write's condition fails, and the marker
    // written before it is undone.
    let full = c
        .store
        .transact(&capture_like_writes(&pk, "b", 1))
        .await
        .expect("transact");
    assert_eq!(full, Transacted::ConditionFailed(1));
    let page = c.store.query(&pk, Query::default()).await.expect("query");
    assert_eq!(
        sks(&page.items),
        ["M#a", "S#a", "slot", "total"],
        "nothing of the failed transactions is stored"
    );
    let slot = c.store.get(&pk, "slot").await.expect("get").expect("slot");
    assert_eq!(
        (slot.get_i64("n"), slot.get_str("last")),
        (Some(1), Some("a"))
    );
    let total = c
        .store
        .get(&pk, "total")
        .await
        .expect("get")
        .expect("total");
    assert_eq!(total.get_i64("total"), Some(1));
}

/// 64 concurrent transactions against a cap of 10: exactly 10 commit, with all their writes.
async fn concurrent_transact_capped(c: C) {
    let pk = c.key("p");
    let store = c.store.clone();
    let results = spawn_n(64, move |i| {
        let store = store.clone();
        let pk = pk.clone();
        async move {
            store
                .transact(&capture_like_writes(&pk, &format!("{i:02}"), 10))
                .await
                .expect("transact")
        }
    })
    .await;
    let written = results
        .iter()
        .filter(|r| matches!(r, Transacted::Written(_)))
        .count();
    let refused = results
        .iter()
        .filter(|r| **r == Transacted::ConditionFailed(1))
        .count();
    assert_eq!((written, refused), (10, 54), "results: {results:?}");
    let pk = c.key("p");
    let page = c.store.query(&pk, Query::default()).await.expect("query");
    let markers = page.items.iter().filter(|i| i.sk.starts_with("M#")).count();
    let snapshots = page.items.iter().filter(|i| i.sk.starts_with("S#")).count();
    assert_eq!((markers, snapshots), (10, 10));
    let total = c
        .store
        .get(&pk, "total")
        .await
        .expect("get")
        .expect("total");
    assert_eq!(total.get_i64("total"), Some(10));
}
