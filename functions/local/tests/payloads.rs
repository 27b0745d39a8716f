//! One fixture per SDK payload shape of reference §5.2: each is accepted and stored with
//! its fields normalised (times in UTC, flags in one shape, PII re-scrubbed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use serde_json::{json, Value};

fn fixture(name: &str, id: &str, service: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/capture/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .unwrap()
        .replace("{{ID}}", id)
        .replace("{{SERVICE}}", service)
}

/// Registers the call site the fixture was captured at, sends the fixture, and returns
/// the stored snapshot.
async fn store(s: &Server, name: &str) -> Value {
    let raw = fixture(name, "", name);
    // The fixture may contain NaN, so read its location fields textually.
    let loc: Value =
        serde_json::from_str(&raw.replace("NaN", "null").replace("Infinity", "null")).unwrap();
    let (status, bp) = s
        .post(
            "/sdk/snapshots/auto-register",
            json!({"service_name": name, "file_path": loc["file_path"], "line_number": loc["line_number"],
                "function_name": loc.get("function_name").cloned().unwrap_or(json!("")),
                "label": loc.get("label").cloned().unwrap_or(json!(name))}),
        )
        .await;
    assert_eq!(status, 201, "{bp}");
    s.patch(
        &format!("/api/breakpoints/{}", bp["id"].as_str().unwrap()),
        json!({"max_depth": 5}),
    )
    .await;
    let (status, out) = s
        .post_raw(
            "/sdk/snapshots/capture",
            &fixture(name, bp["id"].as_str().unwrap(), name),
        )
        .await;
    assert_eq!(status, 201, "{name}: {out}");
    assert_eq!(out["breakpoint_id"], bp["id"]);
    let (status, snap) = s
        .get(&format!("/api/snapshots/{}", out["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    snap
}

#[tokio::test]
async fn go_payload_with_offset_time_and_request_context() {
    let s = Server::start();
    let snap = store(&s, "go").await;
    assert_eq!(snap["captured_at"], "2026-04-15T08:00:00.123Z");
    assert_eq!(snap["trace_id"], "113e29b9fb746af129af65946898829e");
    assert_eq!(snap["span_id"], "c07de95b97de086c");
    assert_eq!(snap["variables"]["user"]["email"], "[REDACTED:email]");
    assert_eq!(snap["variables"]["amount"], 42.5);
    assert_eq!(
        snap["request_context"]["headers"]["Authorization"],
        "[REDACTED]"
    );
    assert!(snap["stack_trace"]
        .as_str()
        .unwrap()
        .contains("/app/main.go:42"));
    assert_eq!(snap["function_name"], "", "Go sends no function name");
}

#[tokio::test]
async fn python_payload_with_nan_tokens_and_null_fields() {
    let s = Server::start();
    let snap = store(&s, "python").await;
    assert_eq!(snap["variables"]["ratio"], Value::Null);
    assert_eq!(snap["variables"]["limit"], Value::Null);
    assert_eq!(
        snap["variables"]["user_email"], "[REDACTED:email]",
        "PY 1.4.1 does not redact emails; we do"
    );
    assert_eq!(snap["variables"]["card"], "[REDACTED]");
    assert_eq!(snap["variables"]["nested"], json!({"a": [1, 2, {"b": 3}]}));
    assert_eq!(snap["captured_at"], "2026-11-22T12:41:37.444Z");
    assert_eq!(snap["request_context"], Value::Null);
    let flags = snap["security_flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f["variable"] == "card"));
    assert!(flags
        .iter()
        .any(|f| f["variable"] == "user_email" && f["category"] == "email"));
}

#[tokio::test]
async fn node_payload_with_express_context() {
    let s = Server::start();
    let snap = store(&s, "node").await;
    assert_eq!(snap["variables"]["cart"]["total"], 99.9);
    assert_eq!(snap["request_context"]["headers"]["host"], "localhost");
    assert_eq!(snap["trace_id"], Value::Null);
    assert_eq!(snap["captured_at"], "2026-11-22T12:00:00.123Z");
}

#[tokio::test]
async fn java_payload_without_optional_fields() {
    let s = Server::start();
    let snap = store(&s, "java").await;
    assert_eq!(snap["variables"], json!({"orderId": "A-17", "qty": 2}));
    assert_eq!(snap["function_name"], "com.example.OrderService.place");
}

#[tokio::test]
async fn php_payload_with_empty_array_variables_and_unfiltered_headers() {
    let s = Server::start();
    let snap = store(&s, "php").await;
    assert_eq!(snap["variables"], json!({}));
    let headers = &snap["request_context"]["headers"];
    assert_eq!(headers["Authorization"], "[REDACTED]");
    assert_eq!(headers["Cookie"], "[REDACTED]");
    assert_eq!(headers["Host"], "shop");
    assert_eq!(snap["captured_at"], "2026-04-15T08:00:00.000Z");
}

#[tokio::test]
async fn ruby_payload_sent_twice_is_stored_once() {
    let s = Server::start();
    let snap = store(&s, "ruby").await;
    assert_eq!(snap["variables"]["note"], "[NULL]");
    assert_eq!(snap["security_flags"][0]["type"], "sensitive_name");
    let bp = snap["breakpoint_id"].as_str().unwrap();
    let (status, again) = s
        .post_raw("/sdk/snapshots/capture", &fixture("ruby", bp, "ruby"))
        .await;
    assert_eq!((status, again["reason"].as_str()), (200, Some("duplicate")));
    let (_, list) = s.get(&format!("/api/snapshots?breakpoint_id={bp}")).await;
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn dotnet_payload_with_pascal_case_flags_and_seven_digit_fraction() {
    let s = Server::start();
    let snap = store(&s, "dotnet").await;
    let flag = &snap["security_flags"][0];
    assert_eq!(flag["type"], "pii");
    assert_eq!(flag["category"], "email");
    assert_eq!(flag["variable"], "customerEmail");
    assert_eq!(snap["captured_at"], "2026-04-15T08:00:00.123Z");
}

#[tokio::test]
async fn logpoint_payload_keeps_expression_results() {
    let s = Server::start();
    let (_, bp) = s
        .post("/api/breakpoints", json!({"service_name": "lp", "file_path": "/app/main.go", "line_number": 100,
            "function_name": "main.handler", "label": "lp", "mode": "logpoint", "capture_expressions": ["status", "method"]}))
        .await;
    let (status, out) = s
        .post_raw(
            "/sdk/snapshots/capture",
            &fixture("logpoint", bp["id"].as_str().unwrap(), "lp"),
        )
        .await;
    assert_eq!(status, 201, "{out}");
    let (_, snap) = s
        .get(&format!("/api/snapshots/{}", out["id"].as_str().unwrap()))
        .await;
    assert_eq!(snap["mode"], "logpoint");
    assert_eq!(
        snap["expression_results"],
        json!({"status": 200, "method": "GET"})
    );
    assert_eq!(snap["variables"], json!({}));
}

#[tokio::test]
async fn logpoint_expressions_are_evaluated_on_the_server_for_sdks_that_ignore_mode() {
    let s = Server::start();
    let (_, bp) = s
        .post("/api/breakpoints", json!({"service_name": "lp", "file_path": "/app/server.js", "line_number": 88,
            "function_name": "checkout", "label": "cart", "mode": "logpoint",
            "capture_expressions": ["cart.items * 2", "len(cart.skus)", "user.email", "missing.field"]}))
        .await;
    // Node sends a normal snapshot for a logpoint breakpoint.
    let (status, out) = s.post_raw("/sdk/snapshots/capture", &fixture("node", bp["id"].as_str().unwrap(), "lp")
        .replace(r#""cart":{"items":3,"total":99.9}"#, r#""cart":{"items":3,"total":99.9,"skus":["a","b"]},"user":{"email":"dev@example.com"}"#)).await;
    assert_eq!(status, 201, "{out}");
    let (_, snap) = s
        .get(&format!("/api/snapshots/{}", out["id"].as_str().unwrap()))
        .await;
    assert_eq!(snap["mode"], "logpoint");
    assert_eq!(
        snap["variables"],
        json!({}),
        "a logpoint keeps no variables"
    );
    assert_eq!(
        snap["expression_results"],
        json!({"cart.items * 2": 6, "len(cart.skus)": 2, "user.email": "[REDACTED:email]", "missing.field": null})
    );
}
