//! The SDK against a real `sightline serve`. Tests are plain `#[test]`s: the SDK is used from
//! threads with no tokio runtime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{wait_until, Server};
use serde::Serialize;
use serde_json::{json, Value};
use sightline::{capture, Sightline};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn start(s: &Server, service: &str) -> Sightline {
    Sightline::init(s.config(service)).unwrap()
}

/// Calls `f` until the SDK has the breakpoint that `f`'s call site auto-registered.
fn arm(sl: &Sightline, mut f: impl FnMut()) {
    f();
    assert!(
        wait_until(SECS(10), || sl.breakpoint_count() > 0),
        "breakpoint never reached the SDK"
    );
}

fn macro_site(sl: &Sightline, x: i64) {
    capture!(client = sl, "macro-label", { "x" => x, "double" => x * 2 });
}
const MACRO_SITE_LINE: u32 = line!() - 2;

fn method_site<T: Serialize + ?Sized>(sl: &Sightline, vars: &T) {
    sl.capture_snapshot("method-label", vars);
}
const METHOD_SITE_LINE: u32 = line!() - 2;

fn only_bp(s: &Server, service: &str) -> Value {
    let bps = s.breakpoints(service);
    assert_eq!(bps.len(), 1, "{bps:?}");
    bps[0].clone()
}

#[test]
fn auto_register_records_function_label_file_and_line() {
    let s = Server::start();
    let sl = start(&s, "reg");
    macro_site(&sl, 1);
    macro_site(&sl, 2); // registered once per process
    assert!(wait_until(SECS(10), || s.breakpoints("reg").len() == 1));
    let bp = only_bp(&s, "reg");
    assert_eq!(
        bp["function_name"],
        format!("{}::macro_site", module_path!())
    );
    assert_eq!(bp["label"], "macro-label");
    assert_eq!(bp["file_path"], file!());
    assert_eq!(bp["line_number"], MACRO_SITE_LINE);
    assert!(
        wait_until(SECS(5), || sl.breakpoint_count() == 1),
        "re-poll after registration"
    );
    assert_eq!(sl.stats().registrations, 1);

    let sl2 = start(&s, "reg2");
    method_site(&sl2, &json!({"a": 1}));
    assert!(wait_until(SECS(10), || s.breakpoints("reg2").len() == 1));
    let bp = only_bp(&s, "reg2");
    assert_eq!(
        (bp["function_name"].clone(), bp["label"].clone()),
        (json!(""), json!("method-label"))
    );
    assert_eq!(
        (bp["file_path"].clone(), bp["line_number"].clone()),
        (json!(file!()), json!(METHOD_SITE_LINE))
    );
    assert!(sl.shutdown(SECS(5)).clean && sl2.shutdown(SECS(5)).clean);
}

#[test]
fn captures_are_scrubbed_before_they_leave_the_process() {
    let s = Server::start();
    let sl = start(&s, "pii");
    let vars = json!({
        "order": {"id": 7, "customer": {"email": "ana@example.com", "card": "4111 1111 1111 1111",
                  "auth": {"password": "hunter2secret"}}},
        "note": "ok",
    });
    arm(&sl, || method_site(&sl, &vars));
    method_site(&sl, &vars);
    assert!(
        wait_until(SECS(10), || sl.stats().uploaded == 1),
        "{:?}",
        sl.stats()
    );
    let bp = only_bp(&s, "pii");
    let snaps = s.snapshots(bp["id"].as_str().unwrap());
    assert_eq!(snaps.len(), 1);
    let text = snaps[0].to_string();
    for raw in ["ana@example.com", "4111", "hunter2secret"] {
        assert!(!text.contains(raw), "{raw} reached the server: {text}");
    }
    let v = &snaps[0]["variables"];
    assert_eq!(v["order"]["customer"]["email"], "[REDACTED:email]");
    assert_eq!(v["order"]["customer"]["card"], "[REDACTED:credit_card]");
    // max_depth 3 (auto-registered default): the `auth` map sits at depth 3.
    assert_eq!(
        v["order"]["customer"]["auth"],
        json!({"_truncated": true, "_depth": 3})
    );
    assert_eq!(v["note"], "ok");
    assert!(
        snaps[0]["stack_trace"]
            .as_str()
            .unwrap()
            .contains("method_site"),
        "{}",
        snaps[0]["stack_trace"]
    );
    assert!(sl.shutdown(SECS(5)).clean);
}

#[test]
fn sse_update_changes_behaviour_without_a_poll() {
    let s = Server::start();
    let sl = start(&s, "sse");
    arm(&sl, || macro_site(&sl, 1));
    assert!(
        wait_until(SECS(5), || sl.stats().sse_events > 0),
        "SSE connected"
    );
    let polls = sl.stats().polls;
    let id = only_bp(&s, "sse")["id"].as_str().unwrap().to_owned();
    let (status, body) = s.patch(
        &format!("/api/breakpoints/{id}"),
        json!({"condition": "x > 5"}),
    );
    assert_eq!(status, 200, "{body}");
    let changed = wait_until(SECS(2), || {
        macro_site(&sl, 1);
        sl.stats().condition_false > 0
    });
    assert!(
        changed,
        "condition not applied within 2 s: {:?}",
        sl.stats()
    );
    assert_eq!(
        sl.stats().polls,
        polls,
        "the change came over SSE, not a poll"
    );
    macro_site(&sl, 10);
    assert!(wait_until(SECS(10), || sl.stats().uploaded >= 1));
    assert!(s
        .snapshots(&id)
        .iter()
        .all(|snap| snap["variables"]["x"] == 10));
    assert!(sl.shutdown(SECS(5)).clean);
}

#[test]
fn server_only_condition_is_decided_by_check_in() {
    let s = Server::start();
    let sl = start(&s, "checkin");
    arm(&sl, || method_site(&sl, &json!({"tags": []})));
    let id = only_bp(&s, "checkin")["id"].as_str().unwrap().to_owned();
    let (status, body) = s.patch(
        &format!("/api/breakpoints/{id}"),
        json!({"condition": "len(tags) > 1"}),
    );
    assert_eq!(
        (status, body["condition_eval"].as_str()),
        (200, Some("server-only")),
        "{body}"
    );
    sl.refresh();
    assert!(wait_until(SECS(5), || {
        method_site(&sl, &json!({"tags": ["only-one"]}));
        sl.stats().checkin_skipped > 0
    }));
    // Uploads before the SDK learnt the condition were dropped by the server, not stored.
    let base = sl.stats();
    for _ in 0..3 {
        method_site(&sl, &json!({"tags": ["only-one"]}));
    }
    method_site(&sl, &json!({"tags": ["a", "b"]}));
    let done = || {
        let st = sl.stats();
        st.uploaded == base.uploaded + 1 && st.checkin_skipped >= base.checkin_skipped + 3
    };
    assert!(wait_until(SECS(10), done), "{:?}", sl.stats());
    std::thread::sleep(Duration::from_millis(300));
    let st = sl.stats();
    assert_eq!(
        st.uploaded,
        base.uploaded + 1,
        "non-matching captures are never uploaded: {st:?}"
    );
    assert_eq!(st.server_dropped, base.server_dropped);
    let snaps = s.snapshots(&id);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["variables"]["tags"], json!(["a", "b"]));
    assert!(sl.shutdown(SECS(5)).clean);
}

#[test]
fn kill_switch_stops_captures_and_registration() {
    let s = Server::start();
    let sl = start(&s, "kill");
    arm(&sl, || macro_site(&sl, 1));
    assert!(wait_until(SECS(5), || sl.stats().sse_events > 0));
    let (status, _) = s.post("/api/services/kill/kill-switch", json!({"enabled": true}));
    assert_eq!(status, 200);
    assert!(
        wait_until(SECS(3), || sl.kill_switch() && !sl.is_active()),
        "kill switch not seen"
    );
    let before = sl.stats();
    for x in 0..5 {
        macro_site(&sl, x);
        method_site(&sl, &json!({"new": "site"}));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let after = sl.stats();
    assert_eq!(
        (after.captured, after.uploaded, after.registrations),
        (before.captured, before.uploaded, before.registrations)
    );
    assert_eq!(
        s.breakpoints("kill").len(),
        1,
        "no registration while killed"
    );
    let id = only_bp(&s, "kill")["id"].as_str().unwrap().to_owned();
    assert!(s.snapshots(&id).is_empty());
    assert!(sl.shutdown(SECS(5)).clean);
}

#[test]
fn max_captures_is_respected() {
    let s = Server::start();
    let sl = start(&s, "max");
    arm(&sl, || method_site(&sl, &json!({"i": -1})));
    let id = only_bp(&s, "max")["id"].as_str().unwrap().to_owned();
    let (status, body) = s.patch(
        &format!("/api/breakpoints/{id}"),
        json!({"max_captures": 3}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(wait_until(SECS(3), || {
        sl.refresh();
        std::thread::sleep(Duration::from_millis(50));
        sl.stats().polls >= 3
    }));
    for i in 0..8 {
        method_site(&sl, &json!({"i": i}));
    }
    assert!(
        wait_until(SECS(10), || sl.stats().uploaded == 3),
        "{:?}",
        sl.stats()
    );
    let st = sl.stats();
    assert_eq!((st.captured, st.dropped_max_captures), (3, 5), "{st:?}");
    assert_eq!(s.snapshots(&id).len(), 3);
    assert!(sl.shutdown(SECS(5)).clean);
}

struct Exploding;

impl Serialize for Exploding {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("user Serialize impl panicked")
    }
}

#[test]
fn a_panicking_serialize_never_escapes_and_plain_threads_work() {
    let s = Server::start();
    let sl = start(&s, "panic");
    let worker = {
        let sl = sl.clone();
        std::thread::spawn(move || {
            assert!(
                tokio::runtime::Handle::try_current().is_err(),
                "no runtime on this thread"
            );
            arm(&sl, || method_site(&sl, &json!({"warm": 1})));
            method_site(&sl, &Exploding);
        })
    };
    worker.join().expect("the panic escaped capture_snapshot");
    assert!(
        wait_until(SECS(10), || sl.stats().uploaded == 1),
        "{:?}",
        sl.stats()
    );
    let st = sl.stats();
    assert_eq!((st.serialize_errors, st.panics_caught), (1, 0));
    let id = only_bp(&s, "panic")["id"].as_str().unwrap().to_owned();
    let snaps = s.snapshots(&id);
    assert_eq!(
        snaps[0]["variables"],
        json!({"_error": "serialization panicked"})
    );
    assert!(sl.shutdown(SECS(5)).clean);
}

#[test]
fn unreachable_server_trips_the_breaker_and_reports_it() {
    let s = Server::start();
    let mut config = s.config("cb");
    config.upload_attempts = 1;
    config.circuit_breaker.max_failures = 2;
    let sl = Sightline::init(config).unwrap();
    arm(&sl, || method_site(&sl, &json!({"a": 1})));
    // Point uploads at a dead port by dropping the server: polls fail too, captures fail.
    drop(s);
    for _ in 0..4 {
        method_site(&sl, &json!({"a": 1}));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        wait_until(SECS(15), || sl.stats().breaker_trips == 1),
        "{:?}",
        sl.stats()
    );
    method_site(&sl, &json!({"a": 2}));
    assert!(sl.stats().dropped_circuit_open >= 1, "{:?}", sl.stats());
    assert!(sl.shutdown(SECS(3)).clean);
}

#[test]
fn breaker_trip_is_reported_with_the_next_poll() {
    let s = Server::start();
    let mut config = s.config("cb2");
    // Every capture times out in the background: counted failures while polls still work.
    config.capture_timeout = Duration::from_millis(1);
    let sl = Sightline::init(config).unwrap();
    arm(&sl, || method_site(&sl, &json!({"a": 1})));
    // Spaced out so each goes alone: a batch that fails counts as one failure.
    for _ in 0..3 {
        method_site(&sl, &json!({"a": 1}));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        wait_until(SECS(10), || sl.stats().breaker_trips == 1),
        "{:?}",
        sl.stats()
    );
    sl.refresh();
    let reported = wait_until(SECS(10), || {
        let (_, services) = s.get("/api/services");
        services["services"].as_array().is_some_and(|a| {
            a.iter()
                .any(|svc| svc["name"] == "cb2" && svc["circuit_breaker_trips"] == 1)
        })
    });
    assert!(reported, "{}", s.get("/api/services").1);
    method_site(&sl, &json!({"a": 2}));
    assert!(sl.stats().dropped_circuit_open >= 1);
    assert!(sl.shutdown(SECS(3)).clean);
}

/// Captures from async handlers on a multi-thread and a current-thread tokio runtime: the
/// SDK never blocks on or needs the caller's runtime.
#[test]
fn captures_from_inside_tokio_runtimes() {
    let s = Server::start();
    let sl = start(&s, "in-tokio");
    arm(&sl, || macro_site(&sl, -1));
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    multi.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let sl = sl.clone();
                tokio::spawn(async move { macro_site(&sl, i) })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    single.block_on(async { macro_site(&sl, 10) });
    assert!(
        wait_until(SECS(10), || sl.stats().uploaded >= 5),
        "{:?}",
        sl.stats()
    );
    let id = only_bp(&s, "in-tokio")["id"].as_str().unwrap().to_owned();
    let xs: std::collections::BTreeSet<i64> = s
        .snapshots(&id)
        .iter()
        .filter_map(|snap| snap["variables"]["x"].as_i64())
        .collect();
    assert!([0, 1, 2, 3, 10].iter().all(|x| xs.contains(x)), "{xs:?}");
    drop(multi);
    drop(single);
    assert!(sl.shutdown(SECS(5)).clean);
}
