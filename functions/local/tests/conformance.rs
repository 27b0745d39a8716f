//! HTTP conformance against a real `sightline serve`: one test per item of the
//! compatibility checklist (reference §11) that the local server covers, plus bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Server, KEY};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);

// §11.1 — X-API-Key on every route, case-insensitive; Bearer also accepted.
#[tokio::test]
async fn item1_api_key_auth_is_case_insensitive_and_required() {
    let s = Server::start();
    for header in ["X-API-Key", "x-api-key", "X-Api-Key"] {
        let r = s
            .http
            .get(s.url("/sdk/snapshots/active/svc"))
            .header(header, KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{header}");
    }
    let r = s
        .http
        .get(s.url("/api/services"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = s
        .http
        .get(s.url("/sdk/snapshots/active/svc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, body) = s
        .send(s.http.get(s.url("/sdk/snapshots/active/svc")), "wrong-key")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
}

#[tokio::test]
async fn scopes_separate_sdk_and_admin_keys() {
    let s = Server::start();
    let sdk_key = s
        .cli(&["keys", "create", "--scopes", "sdk"])
        .trim()
        .to_owned();
    let admin_key = s
        .cli(&["keys", "create", "--scopes", "admin"])
        .trim()
        .to_owned();
    let (status, body) = s
        .send(s.http.get(s.url("/api/breakpoints")), &sdk_key)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = s
        .send(s.http.get(s.url("/sdk/snapshots/active/svc")), &admin_key)
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .send(s.http.get(s.url("/sdk/snapshots/active/svc")), &sdk_key)
        .await;
    assert_eq!(status, 200);

    // Revocation takes effect at once.
    let list = s.cli(&["keys", "list"]);
    let id = list
        .lines()
        .find(|l| l.contains("\tsdk\t"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    assert!(!list.contains(&sdk_key), "keys list must never print a key");
    s.cli(&["keys", "revoke", &id]);
    // The CLI is another process; the server's cache honours revocation within its TTL.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let (status, _) = s
        .send(s.http.get(s.url("/sdk/snapshots/active/svc")), &sdk_key)
        .await;
    assert_eq!(status, 401);
}

// §11.2 — GET and POST poll; POST events are accepted and recorded.
#[tokio::test]
async fn item2_poll_get_and_post_with_events() {
    let s = Server::start();
    let (status, body) = s.get("/sdk/snapshots/active/py-demo").await;
    assert_eq!(status, 200);
    assert_eq!(body["breakpoints"], json!([]));
    assert_eq!(body["kill_switch"], false);
    assert_eq!(body["sse_endpoint"], "/sdk/snapshots/stream/py-demo");

    let event = json!({"type": "circuit_breaker_tripped", "service_name": "py-demo", "failure_count": 3,
        "window_seconds": 60, "cooldown_seconds": 300, "timestamp": "2026-11-22T12:00:00Z"});
    let (status, body) = s
        .post("/sdk/snapshots/active/py-demo", json!({"events": [event]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["sse_endpoint"], "/sdk/snapshots/stream/py-demo");
    // An empty POST body is a plain poll.
    let (status, _) = s.post_raw("/sdk/snapshots/active/py-demo", "").await;
    assert_eq!(status, 200);

    let (_, services) = s.get("/api/services").await;
    let svc = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "py-demo")
        .unwrap()
        .clone();
    assert_eq!(svc["circuit_breaker_trips"], 1);
}

// §11.3 — breakpoint objects: required fields non-null, integers, no expire_at, only active ones.
#[tokio::test]
async fn item3_breakpoint_objects_have_every_field_sdks_parse() {
    let s = Server::start();
    s.register("svc", "process_payment", "payment-start", 25)
        .await;
    let (status, created) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "svc", "file_path": "/app/x.py", "line_number": 7,
            "function_name": "f", "label": "l", "condition": "amount > 10"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (_, disabled) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "svc", "file_path": "/app/y.py", "line_number": 9,
            "function_name": "g", "label": "m", "enabled": false}),
        )
        .await;

    let (_, poll) = s.get("/sdk/snapshots/active/svc").await;
    let bps = poll["breakpoints"].as_array().unwrap();
    assert_eq!(bps.len(), 2, "disabled breakpoints are left out: {poll}");
    assert!(bps.iter().all(|b| b["id"] != disabled["id"]));
    for bp in bps {
        for f in [
            "id",
            "file_path",
            "function_name",
            "label",
            "service_name",
            "mode",
        ] {
            assert!(bp[f].is_string(), "{f} must be a string: {bp}");
        }
        for f in ["line_number", "max_captures", "capture_count"] {
            assert!(bp[f].is_i64(), "{f} must be an integer: {bp}");
        }
        assert_eq!(bp["enabled"], true);
        assert!(
            bp.get("expire_at").is_none(),
            "expire_at must be omitted: {bp}"
        );
        assert!(
            bp.as_object().unwrap().values().all(|v| !v.is_null()),
            "no nulls: {bp}"
        );
    }
    let with_cond = bps.iter().find(|b| b["id"] == created["id"]).unwrap();
    assert_eq!(with_cond["condition"], "amount > 10");
    assert_eq!(with_cond["condition_eval"], "sdk-evaluable");
}

// §11.4 — auto-register: 201 then 200, same id, full object, file/line kept up to date.
#[tokio::test]
async fn item4_auto_register_is_idempotent() {
    let s = Server::start();
    let body = json!({"service_name": "py-demo", "file_path": "/app/demo.py", "line_number": 25,
        "function_name": "process_payment", "label": "payment-start"});
    let (status, first) = s.post("/sdk/snapshots/auto-register", body.clone()).await;
    assert_eq!(status, 201);
    assert_eq!(first["enabled"], true);
    assert_eq!(first["max_captures"], 100);
    assert_eq!(first["capture_count"], 0);
    assert_eq!(first["function_name"], "process_payment");
    assert_eq!(first["label"], "payment-start");
    let (status, second) = s.post("/sdk/snapshots/auto-register", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(first["id"], second["id"]);

    let mut moved = body.clone();
    moved["line_number"] = json!(31);
    let (status, third) = s.post("/sdk/snapshots/auto-register", moved).await;
    assert_eq!(
        (status, third["id"].clone(), third["line_number"].clone()),
        (200, first["id"].clone(), json!(31))
    );

    let (_, api) = s
        .get(&format!(
            "/api/breakpoints/{}",
            first["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(api["rate_limit_per_minute"], 10);
    assert_eq!(api["origin"], "auto_register");
    assert!(api["expire_at"].is_string());
}

#[tokio::test]
async fn item4_concurrent_auto_registers_create_exactly_one_breakpoint() {
    let s = std::sync::Arc::new(Server::start());
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.post(
                "/sdk/snapshots/auto-register",
                json!({"service_name": "race", "file_path": "/app/r.py", "line_number": 3,
                    "function_name": "handler", "label": "hot"}),
            )
            .await
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, bp) = t.await.unwrap();
        assert!(status == 200 || status == 201, "{status} {bp}");
        created += usize::from(status == 201);
        ids.insert(bp["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    let (_, list) = s.get("/api/breakpoints?service=race").await;
    assert_eq!(list["breakpoints"].as_array().unwrap().len(), 1);
}

fn capture_body(bp: &Value, i: usize) -> Value {
    json!({"breakpoint_id": bp["id"], "service_name": bp["service_name"], "file_path": bp["file_path"],
        "function_name": bp["function_name"], "label": bp["label"], "line_number": bp["line_number"],
        "variables": {"i": i}, "stack_trace": "f at /app/x.py:1", "captured_at": format!("2026-11-22T12:00:{:02}.{i:06}Z", i % 60)})
}

// §11.5 — capture: stored, then enforced limits (max captures exact under concurrency).
#[tokio::test]
async fn item5_parallel_captures_respect_max_captures_exactly() {
    let s = std::sync::Arc::new(Server::start());
    let (_, bp) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "hot", "file_path": "/app/h.py", "line_number": 1,
            "function_name": "h", "label": "h", "max_captures": 10, "rate_limit_per_minute": 0}),
        )
        .await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (s, body) = (s.clone(), capture_body(&bp, i));
        tasks.push(tokio::spawn(async move {
            s.post("/sdk/snapshots/capture", body).await
        }));
    }
    let mut stored = 0;
    let mut reasons = std::collections::HashMap::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => stored += 1,
            200 => {
                *reasons
                    .entry(body["reason"].as_str().unwrap().to_owned())
                    .or_insert(0) += 1
            }
            other => panic!("unexpected {other} {body}"),
        }
    }
    assert_eq!(stored, 10);
    assert_eq!(reasons.values().sum::<i32>(), 54);
    assert!(reasons.keys().all(|r| r == "exhausted"), "{reasons:?}");
    let (_, snaps) = s
        .get(&format!(
            "/api/snapshots?breakpoint_id={}&limit=100",
            bp["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 10);
    let (_, after) = s
        .get(&format!("/api/breakpoints/{}", bp["id"].as_str().unwrap()))
        .await;
    assert_eq!(after["capture_count"], 10);
    assert_eq!(
        after["enabled"], false,
        "exhausted breakpoints are disabled"
    );
    assert_eq!(after["disabled_reason"], "exhausted");
    assert_eq!(after["drops"]["exhausted"], 54);
    let (_, poll) = s.get("/sdk/snapshots/active/hot").await;
    assert_eq!(poll["breakpoints"], json!([]));
}

#[tokio::test]
async fn item5_rate_limit_condition_disabled_and_duplicates_are_dropped_with_reasons() {
    let s = Server::start();
    let bp = s.register("svc", "f", "rate", 1).await;
    // Default rate: 10 per minute. The twelve captures must fall in one rate window, so
    // they do not start in the last seconds of a minute (the server shares this clock).
    let into_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 60_000;
    if into_minute > 45_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into_minute + 200) as u64)).await;
    }
    let mut statuses = Vec::new();
    for i in 0..12 {
        let (status, body) = s.post("/sdk/snapshots/capture", capture_body(&bp, i)).await;
        statuses.push((status, body["reason"].as_str().map(str::to_owned)));
    }
    assert_eq!(statuses.iter().filter(|(s, _)| *s == 201).count(), 10);
    assert_eq!(statuses[10], (200, Some("rate_limited".into())));

    // Duplicate send (Ruby sends every snapshot twice).
    let (_, bp2) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "svc", "file_path": "/a.rb", "line_number": 2,
            "function_name": "g", "label": "g", "condition": "amount > 100"}),
        )
        .await;
    let mut body = capture_body(&bp2, 1);
    body["variables"] = json!({"amount": 500});
    assert_eq!(s.post("/sdk/snapshots/capture", body.clone()).await.0, 201);
    let (status, dup) = s.post("/sdk/snapshots/capture", body.clone()).await;
    assert_eq!((status, dup["reason"].as_str()), (200, Some("duplicate")));
    // Condition evaluated on the server.
    body["variables"] = json!({"amount": 5});
    body["captured_at"] = json!("2026-11-22T12:00:59Z");
    let (status, skipped) = s.post("/sdk/snapshots/capture", body.clone()).await;
    assert_eq!(
        (status, skipped["reason"].as_str()),
        (200, Some("condition_false"))
    );
    // Disabled.
    s.patch(
        &format!("/api/breakpoints/{}", bp2["id"].as_str().unwrap()),
        json!({"enabled": false}),
    )
    .await;
    body["variables"] = json!({"amount": 600});
    let (status, off) = s.post("/sdk/snapshots/capture", body.clone()).await;
    assert_eq!((status, off["reason"].as_str()), (200, Some("disabled")));
    // Deleted.
    s.delete(&format!("/api/breakpoints/{}", bp2["id"].as_str().unwrap()))
        .await;
    body["variables"] = json!({"amount": 700});
    let (status, gone) = s.post("/sdk/snapshots/capture", body).await;
    assert_eq!((status, gone["reason"].as_str()), (200, Some("deleted")));
    // Unknown.
    let (status, unknown) = s
        .post(
            "/sdk/snapshots/capture",
            json!({"breakpoint_id": "nope", "service_name": "svc", "variables": {}}),
        )
        .await;
    assert_eq!(
        (status, unknown["reason"].as_str()),
        (200, Some("unknown_breakpoint"))
    );

    let (_, services) = s.get("/api/services").await;
    let svc = &services["services"][0];
    for r in [
        "rate_limited",
        "duplicate",
        "condition_false",
        "disabled",
        "deleted",
        "unknown_breakpoint",
    ] {
        assert!(
            svc["drops"][r].as_i64().unwrap_or(0) >= 1,
            "{r} counted: {svc}"
        );
    }
}

#[tokio::test]
async fn item5_expired_breakpoints_are_dropped() {
    let s = Server::start();
    let (_, bp) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "svc", "file_path": "/a.py", "line_number": 2,
            "function_name": "g", "label": "g", "expire_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let (status, body) = s.post("/sdk/snapshots/capture", capture_body(&bp, 0)).await;
    assert_eq!((status, body["reason"].as_str()), (200, Some("expired")));
    let (_, poll) = s.get("/sdk/snapshots/active/svc").await;
    assert_eq!(poll["breakpoints"], json!([]));
}

#[tokio::test]
async fn item5_pii_is_scrubbed_on_the_server() {
    let s = Server::start();
    let bp = s.register("svc", "pay", "pii", 1).await;
    let mut body = capture_body(&bp, 0);
    body["variables"] = json!({
        "user_email": "dev@example.com",
        "card": "4111 1111 1111 1111",
        "password": "hunter22",
        "order": {"id": 42, "customer": {"ssn": "123-45-6789", "phone": "555-123-4567", "note": "ok"}},
        "created": 1732280000,
        "amount": 42.5
    });
    body["request_context"] = json!({"method": "POST", "path": "/pay",
        "headers": {"Authorization": "Bearer abcdefghijklmnopqrstuvwxyz", "cookie": "s=1", "X-API-Key": "k", "Accept": "*/*"}});
    let (status, stored) = s.post("/sdk/snapshots/capture", body).await;
    assert_eq!(status, 201, "{stored}");
    let (_, snap) = s
        .get(&format!(
            "/api/snapshots/{}",
            stored["id"].as_str().unwrap()
        ))
        .await;
    let v = &snap["variables"];
    assert_eq!(v["user_email"], "[REDACTED:email]");
    assert_eq!(v["card"], "[REDACTED:credit_card]");
    assert_eq!(v["password"], "[REDACTED:sensitive_name]");
    assert_eq!(v["order"]["customer"]["ssn"], "[REDACTED:ssn]");
    assert_eq!(v["order"]["customer"]["phone"], "[REDACTED:phone]");
    assert_eq!(v["order"]["customer"]["note"], "ok");
    assert_eq!(v["created"], 1732280000, "timestamps are not phone numbers");
    assert_eq!(v["amount"], 42.5);
    let headers = &snap["request_context"]["headers"];
    assert_eq!(headers["Authorization"], "[REDACTED]");
    assert_eq!(headers["cookie"], "[REDACTED]");
    assert_eq!(headers["X-API-Key"], "[REDACTED]");
    assert_eq!(headers["Accept"], "*/*");
    assert!(
        snap["security_flags"].as_array().unwrap().len() >= 5,
        "{snap}"
    );
}

// §11.6 — SSE: headers, init first, changes in order, one data line each, heartbeats.
#[tokio::test]
async fn item6_sse_stream_delivers_init_changes_and_heartbeats() {
    let s = Server::start();
    let bp = s.register("svc", "f", "sse", 1).await;
    let mut stream = s.stream("/sdk/snapshots/stream/svc", KEY).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert!(stream.headers.get("content-encoding").is_none());

    let init = stream.next(T).await.unwrap();
    assert_eq!(init.event, "init");
    assert_eq!(init.data["kill_switch"], false);
    assert_eq!(init.data["breakpoints"][0]["id"], bp["id"]);

    let id = bp["id"].as_str().unwrap();
    s.patch(
        &format!("/api/breakpoints/{id}"),
        json!({"condition": "x > 1"}),
    )
    .await;
    let updated = stream.next_non_heartbeat(T).await.unwrap();
    assert_eq!(updated.event, "breakpoint_updated");
    assert_eq!(updated.data["condition"], "x > 1");
    assert_eq!(updated.raw.matches("data:").count(), 1);
    assert!(updated.raw.len() < 64 * 1024);

    let (_, created) = s
        .post("/api/breakpoints", json!({"service_name": "svc", "file_path": "/b.py", "line_number": 3, "function_name": "b", "label": "b"}))
        .await;
    let ev = stream.next_non_heartbeat(T).await.unwrap();
    assert_eq!(
        (ev.event.as_str(), &ev.data["id"]),
        ("breakpoint_created", &created["id"])
    );

    s.delete(&format!("/api/breakpoints/{id}")).await;
    let ev = stream.next_non_heartbeat(T).await.unwrap();
    assert_eq!(ev.event, "breakpoint_deleted");
    assert_eq!(ev.data, json!({"id": id}));

    // Heartbeats (1 s in tests, 15 s by default) with non-empty data.
    let hb = stream.next(Duration::from_secs(3)).await.unwrap();
    assert_eq!(hb.event, "heartbeat");
    assert!(hb.data.is_object());

    // A reconnect gets a fresh init.
    drop(stream);
    let mut again = s.stream("/sdk/snapshots/stream/svc", KEY).await;
    let init = again.next(T).await.unwrap();
    assert_eq!(init.event, "init");
    assert_eq!(init.data["breakpoints"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn item6_sse_requires_a_key() {
    let s = Server::start();
    let stream = s.stream("/sdk/snapshots/stream/svc", "bad").await;
    assert_eq!(stream.status, 401);
}

// §11.9 — kill switch in poll, SSE init and event; captures dropped.
#[tokio::test]
async fn item9_kill_switch_stops_everything() {
    let s = Server::start();
    let bp = s.register("svc", "f", "kill", 1).await;
    let mut stream = s.stream("/sdk/snapshots/stream/svc", KEY).await;
    assert_eq!(stream.next(T).await.unwrap().event, "init");

    let (status, body) = s
        .post("/api/services/svc/kill-switch", json!({"enabled": true}))
        .await;
    assert_eq!((status, body["kill_switch"].clone()), (200, json!(true)));
    let ev = stream.next_non_heartbeat(T).await.unwrap();
    assert_eq!(
        (ev.event.as_str(), &ev.data),
        ("kill_switch", &json!({"enabled": true}))
    );
    assert!(
        stream
            .next_non_heartbeat(Duration::from_secs(2))
            .await
            .is_none(),
        "stream closes on kill"
    );

    s.settle().await;
    let (_, poll) = s.get("/sdk/snapshots/active/svc").await;
    assert_eq!(poll["kill_switch"], true);
    assert_eq!(poll["breakpoints"], json!([]));
    let (status, dropped) = s.post("/sdk/snapshots/capture", capture_body(&bp, 0)).await;
    assert_eq!(
        (status, dropped["reason"].as_str()),
        (200, Some("kill_switch"))
    );
    let mut killed = s.stream("/sdk/snapshots/stream/svc", KEY).await;
    let init = killed.next(T).await.unwrap();
    assert_eq!(init.data["kill_switch"], true);

    s.post("/api/services/svc/kill-switch", json!({"enabled": false}))
        .await;
    s.settle().await;
    let (_, poll) = s.get("/sdk/snapshots/active/svc").await;
    assert_eq!(poll["kill_switch"], false);
    assert_eq!(poll["breakpoints"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.post("/sdk/snapshots/capture", capture_body(&bp, 1))
            .await
            .0,
        201
    );
}

// §11.10 — matching tolerates Go (id only), Node/Java SDK-frame attribution, PHP's frame shift.
#[tokio::test]
async fn item10_matching_tolerates_every_sdks_attribution() {
    let s = Server::start();
    let go = s
        .register("svc", "main.processPayment", "processPayment", 10)
        .await;
    // Go: no function_name/label, matched on breakpoint_id.
    let (status, _) = s
        .post("/sdk/snapshots/capture", json!({"breakpoint_id": go["id"], "service_name": "svc", "file_path": "/app/svc.py",
            "line_number": 10, "variables": {"a": 1}, "stack_trace": "goroutine 1 [running]:", "captured_at": "2026-04-15T10:00:00.123456789+02:00"}))
        .await;
    assert_eq!(status, 201);
    // Node: SDK frame as function name; the label distinguishes call sites.
    let node = s
        .register("svc", "TracekitClient.captureSnapshot", "checkout", 120)
        .await;
    let (status, stored) = s
        .post("/sdk/snapshots/capture", json!({"service_name": "svc", "function_name": "TracekitClient.captureSnapshot",
            "label": "checkout", "file_path": "/app/node_modules/@tracekit/node-apm/dist/client.js", "line_number": 120,
            "variables": {"cart": 3}, "captured_at": "2026-11-22T12:00:00.123Z"}))
        .await;
    assert_eq!((status, &stored["breakpoint_id"]), (201, &node["id"]));
    // PHP: enclosing function with the caller's file/line; found by file+line without an id.
    let php = s.register("php", "handle", "php-site", 44).await;
    let (status, stored) = s
        .post(
            "/sdk/snapshots/capture",
            json!({"breakpoint_id": null, "service_name": "php", "file_path": "/app/php.py",
            "line_number": 44, "variables": [], "captured_at": "2026-04-15T10:00:00+02:00"}),
        )
        .await;
    assert_eq!((status, &stored["breakpoint_id"]), (201, &php["id"]));
}

// Check-in: server-only conditions evaluated on request.
#[tokio::test]
async fn checkin_evaluates_server_only_conditions() {
    let s = Server::start();
    let (_, bp) = s
        .post("/api/breakpoints", json!({"service_name": "svc", "file_path": "/a.py", "line_number": 2,
            "function_name": "g", "label": "g", "condition": "len(user.tags) > 1 && user.email matches \"@example\\\\.com$\""}))
        .await;
    assert_eq!(bp["condition_eval"], "server-only");
    let (status, yes) = s
        .post("/sdk/snapshots/checkin", json!({"breakpoint_id": bp["id"], "variables": {"user": {"tags": ["a", "b"], "email": "a@example.com"}}}))
        .await;
    assert_eq!(status, 200, "{yes}");
    assert_eq!(
        (yes["decision"].as_str(), yes["reason"].as_str()),
        (Some("capture"), Some("condition_true"))
    );
    let (_, no) = s
        .post("/sdk/snapshots/checkin", json!({"breakpoint_id": bp["id"], "variables": {"user": {"tags": ["a"], "email": "a@example.com"}}}))
        .await;
    assert_eq!(
        (no["decision"].as_str(), no["reason"].as_str()),
        (Some("skip"), Some("condition_false"))
    );
    let (status, missing) = s
        .post(
            "/sdk/snapshots/checkin",
            json!({"breakpoint_id": "nope", "variables": {}}),
        )
        .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    s.post("/api/services/svc/kill-switch", json!({"enabled": true}))
        .await;
    let (_, killed) = s
        .post("/sdk/snapshots/checkin", json!({"breakpoint_id": bp["id"], "variables": {"user": {"tags": ["a", "b"], "email": "a@example.com"}}}))
        .await;
    assert_eq!(killed["reason"], "kill_switch");
}

// Bad input: each a clear 4xx with a specific code.
#[tokio::test]
async fn bad_input_gets_specific_errors() {
    let s = Server::start();
    let (status, b) = s
        .post_raw("/sdk/snapshots/capture", "{\"breakpoint_id\":")
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (status, b) = s.post_raw("/sdk/snapshots/capture", "[1,2]").await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_payload"))
    );
    let (status, b) = s
        .post(
            "/sdk/snapshots/capture",
            json!({"service_name": "svc", "variables": "x"}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_field"))
    );
    let (status, b) = s
        .post(
            "/sdk/snapshots/auto-register",
            json!({"service_name": "svc", "line_number": "ten", "function_name": "f"}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_field"))
    );
    let (status, b) = s
        .post(
            "/sdk/snapshots/auto-register",
            json!({"file_path": "/a.py"}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("missing_field"))
    );
    let big = format!(
        "{{\"variables\":{{\"x\":\"{}\"}}}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let (status, b) = s.post_raw("/sdk/snapshots/capture", &big).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, b) = s
        .post("/api/breakpoints", json!({"service_name": "svc", "file_path": "/a.py", "line_number": 1, "condition": "a >"}))
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_condition"))
    );
    let (status, b) = s
        .post("/api/breakpoints", json!({"service_name": "svc", "file_path": "/a.py", "line_number": 1, "max_captures": "many"}))
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_field"))
    );
    let (status, b) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "svc", "file_path": "/a.py", "line_number": 1, "colour": "red"}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("unknown_field"))
    );
    let (status, b) = s.get("/api/breakpoints/does-not-exist").await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, b) = s.get("/api/nothing-here").await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (404, Some("route_not_found"))
    );
    let (status, b) = s.get("/api/snapshots?limit=lots").await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, b) = s.get("/api/snapshots?cursor=garbage!").await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
    let (status, b) = s
        .post("/api/services/svc/kill-switch", json!({"enabled": "yes"}))
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_field"))
    );
}

// A key of another project never sees this project's data.
#[tokio::test]
async fn another_projects_key_sees_nothing() {
    let s = Server::start();
    let bp = s.register("svc", "f", "mine", 1).await;
    let (_, stored) = s.post("/sdk/snapshots/capture", capture_body(&bp, 0)).await;
    let other = s
        .cli(&[
            "keys",
            "create",
            "--scopes",
            "sdk,admin",
            "--project",
            "other",
        ])
        .trim()
        .to_owned();
    let id = bp["id"].as_str().unwrap();
    let sid = stored["id"].as_str().unwrap();
    for path in [
        format!("/api/breakpoints/{id}"),
        format!("/api/snapshots/{sid}"),
    ] {
        let (status, body) = s.send(s.http.get(s.url(&path)), &other).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (_, list) = s.send(s.http.get(s.url("/api/snapshots")), &other).await;
    assert_eq!(list["snapshots"], json!([]));
    let (_, list) = s.send(s.http.get(s.url("/api/breakpoints")), &other).await;
    assert_eq!(list["breakpoints"], json!([]));
    let (_, poll) = s
        .send(s.http.get(s.url("/sdk/snapshots/active/svc")), &other)
        .await;
    assert_eq!(poll["breakpoints"], json!([]));
    let (status, body) = s
        .send(
            s.http
                .patch(s.url(&format!("/api/breakpoints/{id}")))
                .json(&json!({"enabled": false})),
            &other,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s
        .send(
            s.http
                .post(s.url("/sdk/snapshots/capture"))
                .json(&capture_body(&bp, 1)),
            &other,
        )
        .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (200, Some("unknown_breakpoint"))
    );
    let (_, mine) = s.get(&format!("/api/breakpoints/{id}")).await;
    assert_eq!(mine["enabled"], true);
    assert_eq!(mine["capture_count"], 1);
}

// Data survives a restart, and SIGTERM shuts down cleanly.
#[tokio::test]
async fn data_survives_restart_and_sigterm_is_graceful() {
    let mut s = Server::start();
    let bp = s.register("svc", "f", "durable", 1).await;
    let (status, stored) = s.post("/sdk/snapshots/capture", capture_body(&bp, 0)).await;
    assert_eq!(status, 201);
    let _stream = s.stream("/sdk/snapshots/stream/svc", KEY).await;
    assert!(
        s.terminate(),
        "clean exit on SIGTERM even with an open stream"
    );
    let s = s.restart();
    let (status, snap) = s
        .get(&format!(
            "/api/snapshots/{}",
            stored["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(snap["variables"]["i"], 0);
    let (_, poll) = s.get("/sdk/snapshots/active/svc").await;
    assert_eq!(poll["breakpoints"][0]["id"], bp["id"]);
}

#[tokio::test]
async fn health_needs_no_key() {
    let s = Server::start();
    let r = s.http.get(s.url("/api/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn every_error_is_json_with_the_right_status() {
    let s = Server::start();
    let (status, b) = s.send(s.http.put(s.url("/api/breakpoints")), KEY).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, b) = s.get("/sdk/snapshots/active/%FF%FE").await;
    assert_eq!(status, 400);
    assert_eq!(b["error"]["code"], "bad_request", "{b}");
    let (status, b) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "s", "file_path": "/a", "line_number": 1,
        "expire_at": null, "expires_in_seconds": 60}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("conflicting_fields"))
    );
    let (status, b) = s
        .send(
            s.http
                .put(s.url("/api/services/s/settings"))
                .json(&json!({"pii": []})),
            KEY,
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("unknown_field"))
    );
    let (status, b) = s
        .send(
            s.http
                .put(s.url("/api/services/s/settings"))
                .json(&json!({"pii_patterns": [{"name": "x", "pattern": "("}]})),
            KEY,
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (400, Some("invalid_pii_pattern"))
    );
}

#[tokio::test]
async fn one_active_breakpoint_per_call_site_and_re_arming() {
    let s = Server::start();
    let auto = s.register("svc", "pay", "site", 5).await;
    // Set by file and line: inherits the registered function and label, so it would clash.
    let (status, b) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "svc", "file_path": "/app/svc.py", "line_number": 5}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("duplicate_breakpoint")),
        "{b}"
    );
    let id = auto["id"].as_str().unwrap();
    s.patch(&format!("/api/breakpoints/{id}"), json!({"enabled": false}))
        .await;
    let (status, manual) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "svc", "file_path": "/app/svc.py", "line_number": 5}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        (manual["function_name"].as_str(), manual["label"].as_str()),
        (Some("pay"), Some("site"))
    );

    // Exhausted, then re-enabled: a fresh budget.
    let mid = manual["id"].as_str().unwrap();
    s.patch(
        &format!("/api/breakpoints/{mid}"),
        json!({"max_captures": 1}),
    )
    .await;
    assert_eq!(
        s.post("/sdk/snapshots/capture", capture_body(&manual, 1))
            .await
            .0,
        201
    );
    let (_, after) = s.get(&format!("/api/breakpoints/{mid}")).await;
    assert_eq!(after["status"], "exhausted");
    let (_, rearmed) = s
        .patch(&format!("/api/breakpoints/{mid}"), json!({"enabled": true}))
        .await;
    assert_eq!(
        (
            rearmed["status"].as_str(),
            rearmed["capture_count"].as_i64()
        ),
        (Some("active"), Some(0))
    );

    // Expired, then re-enabled: a fresh expiry.
    let (_, expired) = s
        .patch(
            &format!("/api/breakpoints/{mid}"),
            json!({"expire_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(expired["status"], "expired");
    let (_, rearmed) = s
        .patch(&format!("/api/breakpoints/{mid}"), json!({"enabled": true}))
        .await;
    assert_eq!(rearmed["status"], "active", "{rearmed}");
}

#[tokio::test]
async fn a_dropped_capture_can_be_retried_with_the_same_idempotency_key() {
    let s = Server::start();
    let (_, bp) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "svc", "file_path": "/a.py", "line_number": 2,
            "function_name": "g", "label": "g", "max_captures": 1}),
        )
        .await;
    let mut body = capture_body(&bp, 1);
    body["idempotency_key"] = json!("k-1");
    assert_eq!(s.post("/sdk/snapshots/capture", body.clone()).await.0, 201);
    let (status, dup) = s.post("/sdk/snapshots/capture", body.clone()).await;
    assert_eq!((status, dup["reason"].as_str()), (200, Some("duplicate")));
    // Dropped as exhausted: the key is released, so after re-arming the retry is stored.
    let mut other = capture_body(&bp, 2);
    other["idempotency_key"] = json!("k-2");
    assert_eq!(
        s.post("/sdk/snapshots/capture", other.clone()).await.1["reason"],
        "exhausted"
    );
    s.patch(
        &format!("/api/breakpoints/{}", bp["id"].as_str().unwrap()),
        json!({"enabled": true}),
    )
    .await;
    assert_eq!(s.post("/sdk/snapshots/capture", other).await.0, 201);
}

// Sightline extension: batched capture upload with per-snapshot outcomes.
#[tokio::test]
async fn batch_capture_reports_each_snapshot() {
    let s = Server::start();
    let (_, bp) = s
        .post(
            "/api/breakpoints",
            json!({"service_name": "svc", "file_path": "/a.py", "line_number": 2,
            "function_name": "g", "label": "g", "condition": "n > 1", "rate_limit_per_minute": 0}),
        )
        .await;
    let mut a = capture_body(&bp, 1);
    a["variables"] = json!({"n": 5});
    a["idempotency_key"] = json!("batch-a");
    let mut b = capture_body(&bp, 2);
    b["variables"] = json!({"n": 0});
    let body = json!({"snapshots": [a.clone(), b, {"variables": "not an object"}, a]});
    let (status, out) = s.post("/sdk/snapshots/capture/batch", body).await;
    assert_eq!(status, 200, "{out}");
    let r = out["results"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0]["status"], "stored");
    assert_eq!(
        (r[1]["status"].as_str(), r[1]["reason"].as_str()),
        (Some("dropped"), Some("condition_false"))
    );
    assert_eq!(
        (r[2]["status"].as_str(), r[2]["error"]["code"].as_str()),
        (Some("invalid"), Some("invalid_field"))
    );
    assert_eq!(
        (r[3]["status"].as_str(), r[3]["reason"].as_str()),
        (Some("dropped"), Some("duplicate"))
    );
    let too_many = json!({"snapshots": vec![json!({}); 101]});
    let (status, err) = s.post("/sdk/snapshots/capture/batch", too_many).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("batch_too_large"))
    );
}
