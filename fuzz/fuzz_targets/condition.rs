//! Fuzzes breakpoint conditions: classification, compilation and evaluation must return a
//! value or an error for any input, never panic, overflow the stack or run away.
//!
//! Input: the expression, then optionally a NUL byte and a JSON object of variables (the
//! TraceKit fixture's default variables when absent or invalid).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use sightline_core::condition::{classify, Condition};

fn default_vars() -> Value {
    json!({
        "method": "GET",
        "path": "/api/users/123",
        "status": 200,
        "headers": { "content_type": "application/json", "authorization": "Bearer token123" },
        "query": { "page": "2", "limit": "50" },
        "user": {
            "id": "user_42",
            "email": "dev@example.com",
            "profile": { "name": "Test User", "age": 30, "verified": true, "tags": ["beta", "internal"] },
            "settings": null
        },
        "items": [1, 2.5, "x", null, [1, 2], { "a": 1 }]
    })
}

fuzz_target!(|data: &[u8]| {
    let (expression, vars) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(expression) = std::str::from_utf8(expression) else {
        return;
    };
    let vars = vars
        .and_then(|v| serde_json::from_slice::<Value>(v).ok())
        .unwrap_or_else(default_vars);

    let class = classify(expression);
    if let Ok(condition) = Condition::compile(expression) {
        assert_eq!(condition.classify(), class);
        assert_eq!(condition.source(), expression);
        let _ = condition.evaluate(&vars);
        let _ = condition.evaluate_bool(&vars);
    }
});
