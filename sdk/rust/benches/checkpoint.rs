//! What a `capture!` costs the thread that calls it.
//!
//! * `checkpoint/absent`: the global `capture!` form with no `sightline::init` (one
//!   `OnceLock` load).
//! * `checkpoint/disabled`: `Config::enabled = false`: the macro derives the enclosing
//!   function's name (`parts/fn_name`), then one atomic load.
//! * `checkpoint/disabled/method`: the same through `Sightline::capture_snapshot` (no function
//!   name: one atomic load under `catch_unwind`).
//! * `checkpoint/no_breakpoint/{macro,method}`: enabled SDK whose index holds a breakpoint, but
//!   none for the measured site (atomic load, registered-flag check, `ArcSwap` load, index
//!   lookup). `method` is `Sightline::capture_snapshot`, which also hashes `(file, line, label)`
//!   to check its registration.
//! * `checkpoint/active_1kb`: a breakpoint matches; the variables are a ~1 KB struct (with an
//!   e-mail address and a card number to scrub). Everything the caller's thread does:
//!   serialize to `serde_json::Value`, depth/string/collection/payload limits, PII scrubbing,
//!   build the upload body (UUID, timestamp), capture an unresolved backtrace and `try_send`
//!   the job to the bounded queue.
//! * `parts/*`: pieces of those paths alone: `fn_name` (the enclosing-function name that
//!   `capture!` derives from a `type_name` on every call), `serialize_1kb`, `scrub_1kb` (the
//!   built-in PII scrubber over the serialized struct), `backtrace` (an unresolved
//!   `Backtrace::force_capture` at the benchmark's stack depth) and `uuid_v4` (the idempotency
//!   key).
//!
//! The breakpoints come from a real `sightline serve` (auto-registration, then the admin API:
//! the no-breakpoint site's breakpoint is deleted, the active one made unlimited). The server
//! process is then paused (SIGSTOP) so that the SDK's background thread does not compete for
//! the CPU: its requests hang (request and capture timeouts of an hour, a circuit breaker that
//! never trips), so once it has taken the first few hundred captures off the queue it idles. The capture queue is therefore full during `active_1kb`, and each
//! prepared capture is dropped at `try_send` on the caller's thread; the figure includes freeing
//! the job, which a successful `try_send` would leave to the background thread.
//!
//! Run: `cargo bench -p sightline --bench checkpoint -- --warm-up-time 1 --measurement-time 3`
//! (`SIGHTLINE_BIN` picks the server binary; default `target/{release,debug}/sightline`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::backtrace::Backtrace;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion};
use serde::Serialize;
use serde_json::json;
use sightline::{capture, CircuitBreakerConfig, Config, Sightline};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{wait_until, Server, KEY};

const SERVICE: &str = "sdk-bench";

#[derive(Serialize)]
struct Item {
    sku: String,
    description: String,
    qty: u32,
    unit_price: f64,
}

#[derive(Serialize)]
struct Address {
    street: String,
    city: String,
    postcode: String,
    country: String,
}

/// About 1 KB as JSON (see `main`, which prints the size).
#[derive(Serialize)]
struct Order {
    id: u64,
    customer_email: String,
    card: String,
    status: &'static str,
    coupon: Option<String>,
    shipping: Address,
    items: Vec<Item>,
    subtotal: f64,
    discount: f64,
    total: f64,
    notes: String,
}

fn order() -> Order {
    let items = (0..6)
        .map(|i| Item {
            sku: format!("SKU-{i:04}"),
            description: format!("Stoneware mug, {} colour, 350 ml", ["blue", "red"][i % 2]),
            qty: 1 + i as u32,
            unit_price: 12.5 + i as f64,
        })
        .collect();
    Order {
        id: 4_211_337,
        customer_email: "ana.pereira@example.com".into(),
        card: "4111 1111 1111 1111".into(),
        status: "priced",
        coupon: Some("SPRING".into()),
        shipping: Address {
            street: "Rua das Flores 12, 3º esq.".into(),
            city: "Lisboa".into(),
            postcode: "1200-195".into(),
            country: "PT".into(),
        },
        items,
        subtotal: 312.0,
        discount: 31.2,
        total: 280.8,
        notes: "Leave the parcel with the neighbour at number 14 if nobody answers.".into(),
    }
}

#[inline(never)]
fn site_absent(o: &Order) {
    capture!("bench-absent", { "order" => o, "total" => o.total });
}

#[inline(never)]
fn site_disabled(sl: &Sightline, o: &Order) {
    capture!(client = sl, "bench-disabled", { "order" => o, "total" => o.total });
}

#[inline(never)]
fn site_disabled_method(sl: &Sightline, o: &Order) {
    sl.capture_snapshot("bench-disabled-method", o);
}

#[inline(never)]
fn site_no_breakpoint(sl: &Sightline, o: &Order) {
    capture!(client = sl, "bench-miss", { "order" => o, "total" => o.total });
}

#[inline(never)]
fn site_no_breakpoint_method(sl: &Sightline, o: &Order) {
    sl.capture_snapshot("bench-miss-method", o);
}

#[inline(never)]
fn site_active(sl: &Sightline, o: &Order) {
    capture!(client = sl, "bench-active", o);
}

fn main() {
    let o = order();
    let size = serde_json::to_vec(&o).map(|v| v.len()).unwrap_or(0);
    eprintln!("variables: {size} bytes of JSON");

    let mut off = Config::new("", "");
    off.enabled = false;
    let disabled = Sightline::init(off).unwrap();

    let server = Server::start_with_heartbeat(15);
    let mut config = Config::new(KEY, SERVICE).with_endpoint(server.base.clone());
    config.poll_interval = Duration::from_secs(300);
    // Once the server is paused (below), uploads hang instead of failing and being replaced
    // by new ones, so the background thread, after symbolizing the first few hundred queued
    // captures, has nothing to do while the caller's thread is measured.
    config.request_timeout = Duration::from_secs(3600);
    config.capture_timeout = Duration::from_secs(3600);
    config.circuit_breaker = CircuitBreakerConfig {
        max_failures: u32::MAX,
        ..CircuitBreakerConfig::default()
    };
    let sl = Sightline::init(config).unwrap();
    // Registers the three sites; the server arms a breakpoint at each.
    site_no_breakpoint(&sl, &o);
    site_no_breakpoint_method(&sl, &o);
    site_active(&sl, &o);
    wait_until(Duration::from_secs(20), || {
        sl.stats().registrations == 3 && sl.breakpoint_count() == 3
    });
    std::thread::sleep(Duration::from_secs(1)); // the re-polls after registration
    for bp in server.breakpoints(SERVICE) {
        let id = bp["id"].as_str().unwrap();
        if bp["label"] == "bench-active" {
            let (status, body) = server.patch(
                &format!("/api/breakpoints/{id}"),
                json!({"max_captures": 0, "rate_limit_per_minute": 0}),
            );
            assert_eq!(status, 200, "{body}");
        } else {
            let (status, body) = server.delete(&format!("/api/breakpoints/{id}"));
            assert_eq!(status, 204, "{body}");
        }
    }
    sl.refresh();
    assert!(
        wait_until(Duration::from_secs(10), || sl.breakpoint_count() == 1),
        "the SDK did not get the breakpoint changes"
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = sl.stats();
    site_active(&sl, &o);
    assert_eq!(sl.stats().captured, before.captured + 1, "not armed");
    // From here on the background thread's requests hang until they time out (and are
    // retried with back-off): it stays idle. A stopped server also keeps its port.
    server.pause();

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("checkpoint");
        g.bench_function("absent", |b| b.iter(|| site_absent(black_box(&o))));
        g.bench_function("disabled", |b| {
            b.iter(|| site_disabled(black_box(&disabled), black_box(&o)))
        });
        g.bench_function("disabled/method", |b| {
            b.iter(|| site_disabled_method(black_box(&disabled), black_box(&o)))
        });
        g.bench_function("no_breakpoint/macro", |b| {
            b.iter(|| site_no_breakpoint(black_box(&sl), black_box(&o)))
        });
        g.bench_function("no_breakpoint/method", |b| {
            b.iter(|| site_no_breakpoint_method(black_box(&sl), black_box(&o)))
        });
        g.bench_function("active_1kb", |b| {
            b.iter(|| site_active(black_box(&sl), black_box(&o)))
        });
        g.finish();
    }
    parts(&mut c, &o);
    c.final_summary();
    eprintln!("SDK stats: {:?}", sl.stats());
    sl.shutdown(Duration::ZERO);
    drop(server);
}

/// Pieces of the paths above, measured alone with the public building blocks (the SDK's own
/// limits walk is private and not measured separately).
fn parts(c: &mut Criterion, o: &Order) {
    let mut g = c.benchmark_group("parts");
    // What `capture!` does before its first check: the enclosing function's name from the
    // `type_name` of a nested marker fn.
    g.bench_function("fn_name", |b| {
        b.iter(|| {
            fn marker() {}
            sightline::__private::enclosing_fn_name(std::any::type_name_of_val(&marker))
        })
    });
    g.bench_function("serialize_1kb", |b| {
        b.iter(|| serde_json::to_value(black_box(o)))
    });
    let value = serde_json::to_value(o).unwrap();
    g.bench_function("scrub_1kb", |b| {
        b.iter_batched(
            || value.clone(),
            |mut v| sightline_core::pii::Scrubber::builtin().scrub_variables(&mut v),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("backtrace", |b| b.iter(Backtrace::force_capture));
    g.bench_function("uuid_v4", |b| b.iter(|| uuid::Uuid::new_v4().to_string()));
    g.finish();
}
