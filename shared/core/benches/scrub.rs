#![allow(clippy::unwrap_used, clippy::expect_used)]
//! PII scrubbing throughput on a realistic ~2 KB snapshot `variables` object.
//!
//! Target: ≥ 300 MB/s for `scrub_variables` (bytes = the snapshot's serialized JSON size).
//! Run: `cargo bench -p sightline-core --bench scrub -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};
use sightline_core::pii::{CustomPattern, Scrubber};

/// Mostly non-PII strings and numbers, nested objects and arrays, a couple of PII values and
/// sensitive names, as a TraceKit SDK would send for a request handler.
fn snapshot() -> Value {
    json!({
        "request_id": "3e6aca49-5554-497c-b907-4716445dc187",
        "trace_id": "113e29b9fb746af129af65946898829e",
        "span_id": "c07de95b97de086c",
        "started_at": "2026-11-22T12:41:37.444557Z",
        "elapsed_ms": 12.75,
        "attempt": 1,
        "created": 1732280000,
        "user": {
            "id": 48213,
            "username": "jdoe",
            "display_name": "Jane Doe",
            "email": "jane.doe@example.com",
            "roles": ["admin", "billing", "support"],
            "locale": "en-US",
            "timezone": "Europe/Berlin",
            "is_active": true,
            "last_login": "2026-11-21T08:15:02Z",
            "preferences": {"theme": "dark", "newsletter": false, "page_size": 50}
        },
        "order": {
            "id": "ord_9f8e7d6c5b4a",
            "status": "pending_payment",
            "currency": "EUR",
            "subtotal": 1249.5,
            "tax": 237.41,
            "total": 1486.91,
            "coupon": null,
            "shipping": {
                "method": "express",
                "carrier": "DHL",
                "address": {
                    "line1": "Hauptstrasse 12",
                    "city": "Berlin",
                    "postal_code": "10115",
                    "country": "DE"
                },
                "eta_days": 2
            },
            "items": [
                {"sku": "SKU-1001", "name": "Mechanical keyboard, US layout", "qty": 1, "unit_price": 149.0, "tags": ["peripherals", "sale"]},
                {"sku": "SKU-2040", "name": "27 inch monitor", "qty": 2, "unit_price": 329.0, "tags": ["display"]},
                {"sku": "SKU-3310", "name": "USB-C docking station", "qty": 1, "unit_price": 189.5, "tags": []},
                {"sku": "SKU-4122", "name": "Ergonomic mouse", "qty": 3, "unit_price": 84.0, "tags": ["peripherals"]}
            ]
        },
        "payment": {
            "provider": "stripe",
            "card_last4": "4242",
            "card_number": "4242 4242 4242 4242",
            "amount_cents": 148691,
            "api_key": "sk_test_abcdefghijklmnop",
            "idempotency_key": "b6c1f0a2-8d3e-4f5a-9b7c-1e2d3f4a5b6c"
        },
        "cart_history": [
            {"at": "2026-11-22T12:30:01Z", "event": "add", "sku": "SKU-1001"},
            {"at": "2026-11-22T12:31:44Z", "event": "add", "sku": "SKU-2040"},
            {"at": "2026-11-22T12:35:10Z", "event": "remove", "sku": "SKU-9999"},
            {"at": "2026-11-22T12:39:58Z", "event": "checkout", "sku": null}
        ],
        "feature_flags": {"new_checkout": true, "one_click": false, "variant": "B"},
        "metrics": [0.12, 0.98, 13.5, 42, 7, 1024, 65535, 2.5],
        "message": "Processing checkout for cart with 4 items; applying regional tax rules before capture",
        "path": "/api/v2/checkout/confirm",
        "http_method": "POST",
        "status_code": 202,
        "retry_after": null
    })
}

fn bench_scrub(c: &mut Criterion) {
    let snapshot = snapshot();
    let bytes = serde_json::to_vec(&snapshot).unwrap().len() as u64;
    let builtin = Scrubber::builtin();
    let custom = Scrubber::with_custom(&[
        CustomPattern {
            name: "employee_id".into(),
            pattern: r"\bEMP-\d{6}\b".into(),
        },
        CustomPattern {
            name: "iban".into(),
            pattern: r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b".into(),
        },
    ])
    .unwrap();

    // sanity: the snapshot does contain PII
    let mut probe = snapshot.clone();
    assert_eq!(builtin.scrub_variables(&mut probe).len(), 4);

    let mut group = c.benchmark_group("scrub");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(format!("scrub_variables_{bytes}B"), |b| {
        b.iter_batched(
            || snapshot.clone(),
            |mut v| {
                let flags = builtin.scrub_variables(black_box(&mut v));
                (v, flags)
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function(format!("scrub_variables_custom2_{bytes}B"), |b| {
        b.iter_batched(
            || snapshot.clone(),
            |mut v| {
                let flags = custom.scrub_variables(black_box(&mut v));
                (v, flags)
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function(format!("clone_only_{bytes}B"), |b| {
        b.iter(|| black_box(snapshot.clone()));
    });
    group.finish();

    let mut ctx = json!({
        "method": "POST",
        "path": "/api/v2/checkout/confirm",
        "remote_addr": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "query_params": {"page": "2", "ref": "newsletter"},
        "headers": {
            "Authorization": "Bearer abcdefghijklmnopqrstuvwxyz0123",
            "Cookie": "session=abc; theme=dark",
            "Content-Type": "application/json",
            "Accept": "*/*",
            "Host": "shop.example.com"
        }
    });
    let ctx_bytes = serde_json::to_vec(&ctx).unwrap().len() as u64;
    let mut group = c.benchmark_group("scrub_request_context");
    group.throughput(Throughput::Bytes(ctx_bytes));
    group.bench_function(format!("request_context_{ctx_bytes}B"), |b| {
        b.iter_batched(
            || ctx.clone(),
            |mut v| {
                let flags = builtin.scrub_request_context(black_box(&mut v));
                (v, flags)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    builtin.scrub_request_context(&mut ctx);
}

criterion_group!(benches, bench_scrub);
criterion_main!(benches);
