#![allow(clippy::unwrap_used, clippy::expect_used)]
//! In-process throughput of the SDK hot paths, over the memory stores and over SQLite + fs
//! (the stores of `sightline serve`), on a multi-thread tokio runtime.
//!
//! * `capture/<backend>`: `Sightline::capture` of a parsed ~2 KB snapshot (dedup, condition
//!   `amount > 1`, capture slot, scrub, store, service counter, event), one at a time.
//! * `capture_parse/<backend>`: the same plus `CaptureRequest::parse` of the body bytes
//!   (what the HTTP handler does, minus the HTTP stack).
//! * `capture_x32/<backend>`: 32 captures in flight at once (tasks on the runtime), so both
//!   cores and the store's writer queue are busy; throughput counts snapshots.
//! * `poll/<backend>`, `poll_x32/<backend>`: `Sightline::poll` for the benchmark service.
//!
//! Target: capture ≥ 20,000 snapshots/s in-process.
//! Run: `cargo bench -p sightline-benches --bench capture`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sightline_benches::{capture_body, Backend, Harness, SERVICE};
use sightline_core::app::CaptureOutcome;
use sightline_core::wire::CaptureRequest;

const FAN_OUT: u64 = 32;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn bench_backend(c: &mut Criterion, rt: &tokio::runtime::Runtime, backend: Backend) {
    let h = Arc::new(rt.block_on(Harness::new(backend)).expect("harness"));
    let seq = Arc::new(AtomicU64::new(0));
    let next = {
        let seq = seq.clone();
        move || seq.fetch_add(1, Ordering::Relaxed)
    };

    // Sanity (not timed): the payload is stored, not dropped by dedup or the condition.
    let outcome = rt
        .block_on(h.app.capture(&h.principal, h.request(next())))
        .expect("capture");
    assert!(
        matches!(outcome, CaptureOutcome::Stored { .. }),
        "benchmark capture was not stored: {outcome:?}"
    );
    let body_len = serde_json::to_vec(&capture_body(&h.breakpoint_id, 0))
        .expect("body")
        .len();
    eprintln!("{}: capture body is {body_len} bytes", backend.name());

    let name = backend.name();
    let mut g = c.benchmark_group("capture");
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            || h.request(next()),
            |req| {
                let h = h.clone();
                async move { h.app.capture(&h.principal, req).await.expect("capture") }
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();

    let mut g = c.benchmark_group("capture_parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            || serde_json::to_vec(&capture_body(&h.breakpoint_id, next())).expect("body"),
            |body| {
                let h = h.clone();
                async move {
                    let req = CaptureRequest::parse(&body).expect("parse");
                    h.app.capture(&h.principal, req).await.expect("capture")
                }
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();

    let mut g = c.benchmark_group("capture_x32");
    g.throughput(Throughput::Elements(FAN_OUT));
    g.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            || (0..FAN_OUT).map(|_| h.request(next())).collect::<Vec<_>>(),
            |reqs| {
                let h = h.clone();
                async move {
                    let tasks: Vec<_> = reqs
                        .into_iter()
                        .map(|req| {
                            let h = h.clone();
                            tokio::spawn(async move { h.app.capture(&h.principal, req).await })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("join").expect("capture");
                    }
                }
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();

    let mut g = c.benchmark_group("poll");
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            let h = h.clone();
            async move {
                h.app
                    .poll(&h.principal, SERVICE, Vec::new())
                    .await
                    .expect("poll")
            }
        });
    });
    g.finish();

    let mut g = c.benchmark_group("poll_x32");
    g.throughput(Throughput::Elements(FAN_OUT));
    g.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            let h = h.clone();
            async move {
                let tasks: Vec<_> = (0..FAN_OUT)
                    .map(|_| {
                        let h = h.clone();
                        tokio::spawn(
                            async move { h.app.poll(&h.principal, SERVICE, Vec::new()).await },
                        )
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("join").expect("poll");
                }
            }
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    bench_backend(c, &rt, Backend::Memory);
    bench_backend(c, &rt, Backend::Sqlite);
}

criterion_group!(capture, benches);
criterion_main!(capture);
