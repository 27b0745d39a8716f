//! "A disabled or absent breakpoint costs one atomic load and a lock-free map lookup with no
//! allocation" (DESIGN §10), checked with dhat's heap-usage testing: every allocation of the
//! process goes through `dhat::Alloc`, and a profiler runs only around each measured loop, so
//! `total_blocks` is exactly what the loop allocated.
//!
//! dhat's global statistics need the whole process to itself: this file holds a single
//! `#[test]` (its own test binary, no parallel tests). On failure dhat writes
//! `dhat-heap.json` (open it in DHAT's viewer, sort by "Total (blocks)") with the backtrace of
//! every allocation made inside the failing loop.
//!
//! Scenarios, 10 000 calls of every capture form each:
//! 1. no SDK at all (`capture!` before `sightline::init`);
//! 2. SDK disabled (`Config::enabled = false`);
//! 3. SDK enabled against a real `sightline serve`, with a breakpoint in the same function and
//!    file (so both index levels are really looked up) but none at the measured sites, after
//!    the one-time auto-registration of every site has settled;
//! 4. the same with the service's kill switch on.
//!
//! The background thread of scenario 3 allocates when an SSE event arrives. The server is
//! started with the longest heartbeat (15 s) and each loop starts right after a heartbeat was
//! handled; a loop that still saw background allocations is retried (at most 3 times). A hot
//! path that allocates would allocate at least once per call, i.e. 10 000+ blocks on every try.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{wait_until, Server, KEY};

use serde::Serialize;
use serde_json::json;
use sightline::{capture, Config, Sightline};

const CALLS: u64 = 10_000;
const SERVICE: &str = "alloc-test";

/// Times a capture's variable expressions were evaluated / serialized: must stay 0.
static EVALUATED: AtomicU64 = AtomicU64::new(0);

/// Variables whose serialization is counted.
struct Counted;

impl Serialize for Counted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EVALUATED.fetch_add(1, Ordering::Relaxed);
        s.serialize_str("serialized")
    }
}

/// An expression for the `{ "name" => expr }` form: counts, and allocates, if evaluated.
fn evaluated() -> Vec<u8> {
    EVALUATED.fetch_add(1, Ordering::Relaxed);
    vec![0; 1024]
}

/// The measured call sites, all in one function and one file with the `decoy` site, which
/// has a breakpoint: a lookup for a measured site finds the function and the file in the
/// index and misses on the label and on the line. With `decoy`, only the decoy runs (once).
/// The global forms go through `sightline::global()`; the others need `client`.
#[inline(never)]
fn sites(client: Option<&Sightline>, n: u64, decoy: bool) {
    if decoy {
        if let Some(sl) = client {
            capture!(client = sl, "decoy", { "x" => 1 });
        }
        return;
    }
    for i in 0..n {
        capture!("hot-map", { "i" => i, "big" => evaluated(), "c" => Counted });
        capture!("hot-value", Counted);
        if let Some(sl) = client {
            capture!(client = sl, "hot-client", { "i" => i, "big" => evaluated() });
            sl.capture_snapshot("hot-method", &Counted);
        }
    }
}

/// Runs `f` (which makes `CALLS` calls of each form) under a dhat profiler and asserts it
/// allocated nothing. `before` runs first, outside the profiler (waiting for a quiet moment).
fn assert_no_alloc(name: &str, tries: u32, mut before: impl FnMut(), mut f: impl FnMut()) {
    for attempt in 1..=tries {
        before();
        let profiler = dhat::Profiler::builder().testing().build();
        let start = Instant::now();
        f();
        let elapsed = start.elapsed();
        let stats = dhat::HeapStats::get();
        eprintln!(
            "{name}: try {attempt}: {} allocations ({} bytes) in {elapsed:?}",
            stats.total_blocks, stats.total_bytes
        );
        if stats.total_blocks == 0 {
            drop(profiler);
            return;
        }
        if attempt == tries {
            // Saves dhat-heap.json with the backtrace of each allocation, then panics.
            dhat::assert_eq!(
                stats.total_blocks,
                0,
                "{name}: the hot path allocated ({} bytes over {CALLS} calls per form)",
                stats.total_bytes
            );
        }
        drop(profiler);
    }
}

#[test]
fn disabled_or_absent_breakpoints_never_allocate() {
    // 1. No SDK in the process: the global `capture!` forms are an `OnceLock` load.
    assert!(sightline::global().is_none());
    assert_no_alloc("no SDK", 1, || {}, || sites(None, CALLS, false));

    // 2. Disabled SDK: one atomic load per call.
    let mut off = Config::new("", "");
    off.enabled = false;
    let disabled = Sightline::init(off).unwrap();
    assert_no_alloc(
        "disabled",
        1,
        || {},
        || {
            sites(Some(&disabled), CALLS, false);
        },
    );
    assert_eq!(disabled.stats(), sightline::Stats::default());

    // 3. Enabled, no breakpoint at the measured sites.
    // 15 s heartbeats: the background thread stays asleep while a loop is measured.
    let server = Server::start_with_heartbeat(15);
    let mut config = Config::new(KEY, SERVICE).with_endpoint(server.base.clone());
    config.poll_interval = Duration::from_secs(300);
    config.request_timeout = Duration::from_secs(5);
    let sl = sightline::init(config).unwrap();
    // Warm-up: the first call of each site registers it (the server creates a breakpoint
    // there), the decoy included.
    sites(Some(&sl), 1, true);
    sites(Some(&sl), 1, false);
    let n_sites = 5; // decoy, hot-map, hot-value, hot-client, hot-method
    assert!(
        wait_until(Duration::from_secs(20), || sl.stats().registrations
            == n_sites
            && sl.breakpoint_count() == n_sites as usize),
        "registration did not settle: {:?}, {} breakpoints",
        sl.stats(),
        sl.breakpoint_count()
    );
    // Every registration schedules a re-poll 500 ms later; let them all land before deleting.
    std::thread::sleep(Duration::from_secs(1));
    let bps = server.breakpoints(SERVICE);
    assert_eq!(bps.len(), n_sites as usize, "{bps:?}");
    let mut decoy_function = String::new();
    for bp in &bps {
        if bp["label"] == "decoy" {
            decoy_function = bp["function_name"].as_str().unwrap_or("").to_owned();
        } else {
            let (status, body) =
                server.delete(&format!("/api/breakpoints/{}", bp["id"].as_str().unwrap()));
            assert_eq!(status, 204, "{body}");
        }
    }
    assert!(decoy_function.ends_with("::sites"), "{bps:?}");
    assert!(
        wait_until(Duration::from_secs(10), || sl.breakpoint_count() == 1),
        "deletions did not reach the SDK"
    );
    let captured = sl.stats().captured;
    // A call right after a heartbeat has ~15 s before the background thread wakes again.
    let after_heartbeat = || {
        let seen = sl.stats().sse_events;
        assert!(
            wait_until(Duration::from_secs(20), || sl.stats().sse_events > seen),
            "no SSE heartbeat: {:?}",
            sl.stats()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_no_alloc("enabled, no breakpoint", 3, after_heartbeat, || {
        sites(Some(&sl), CALLS, false);
    });
    assert!(sl.is_active());
    assert_eq!(sl.breakpoint_count(), 1, "the decoy is still armed");
    assert_eq!(sl.stats().captured, captured, "{:?}", sl.stats());
    // Control: the same measurement sees the allocations of a capture that does match.
    let profiler = dhat::Profiler::builder().testing().build();
    sites(Some(&sl), 1, true);
    let stats = dhat::HeapStats::get();
    eprintln!(
        "matching breakpoint (control): {} allocations ({} bytes), caller and background",
        stats.total_blocks, stats.total_bytes
    );
    dhat::assert!(stats.total_blocks > 0, "the profiler saw no allocation");
    drop(profiler);
    assert_eq!(sl.stats().captured, captured + 1, "{:?}", sl.stats());

    // 4. Kill switch on (the SDK closes its SSE stream and polls every 60 s).
    let (status, body) = server.post(
        &format!("/api/services/{SERVICE}/kill-switch"),
        json!({"enabled": true}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(wait_until(Duration::from_secs(10), || !sl.is_active()));
    std::thread::sleep(Duration::from_millis(300));
    assert_no_alloc(
        "kill switch",
        3,
        || std::thread::sleep(Duration::from_millis(100)),
        || {
            sites(Some(&sl), CALLS, false);
            sites(Some(&sl), 1, true);
        },
    );

    assert_eq!(EVALUATED.load(Ordering::Relaxed), 0, "variables evaluated");
    assert!(sightline::shutdown(Duration::from_secs(5)).is_some_and(|r| r.clean));
}
