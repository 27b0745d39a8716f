//! Shutdown flushes the queue within its deadline and leaves no thread behind. Alone in its
//! test binary so the thread count is not disturbed by other tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{thread_count, wait_until, Server};
use serde_json::json;
use sightline::Sightline;

fn site(sl: &Sightline, i: usize) {
    sl.capture_snapshot("flush", &json!({"i": i}));
}

#[test]
fn shutdown_flushes_within_the_deadline_and_joins_every_thread() {
    let s = Server::start();
    let (_, _) = s.get("/api/health");
    std::thread::sleep(Duration::from_millis(100));
    let threads_before = thread_count();
    let sl = Sightline::init(s.config("flush")).unwrap();
    site(&sl, 0);
    assert!(wait_until(Duration::from_secs(10), || sl
        .breakpoint_count()
        == 1));
    // The server keeps 10 captures per minute: queue exactly that many.
    for i in 1..=10 {
        site(&sl, i);
    }
    let started = Instant::now();
    let report = sl.shutdown(Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(report.clean, "{report:?}");
    let st = sl.stats();
    assert_eq!(
        (st.captured, st.uploaded, st.shutdown_abandoned),
        (10, 10, 0),
        "{st:?}"
    );
    assert!(!sl.is_active());
    site(&sl, 99); // after shutdown: ignored, no panic
    assert!(
        wait_until(Duration::from_secs(2), || thread_count() <= threads_before),
        "threads before {threads_before}, after {}",
        thread_count()
    );
    // A zero deadline on a fresh instance: returns at once, still joins.
    let sl2 = Sightline::init(s.config("flush2")).unwrap();
    assert!(sl2.shutdown(Duration::ZERO).abandoned == 0);
    assert!(wait_until(Duration::from_secs(2), || thread_count() <= threads_before));
}
