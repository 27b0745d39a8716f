//! Fuzzes the PII scrubber: any input must be scrubbed without panicking, and scrubbing must
//! be idempotent (a second pass changes nothing and reports no flag), for variables, request
//! contexts, lone strings and custom patterns.
//!
//! Input: the first byte selects the mode, the rest is the data.
//! * even: the data as a JSON document (variables and request context), else as one string;
//! * odd: the data up to the first NUL is a custom regex, the rest a string/JSON to scrub.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sightline_core::pii::{is_marker, CustomPattern, Scrubber};

fn check_idempotent(scrubber: &Scrubber, doc: &Value, request: bool) {
    let scrub = |v: &mut Value| {
        if request {
            scrubber.scrub_request_context(v)
        } else {
            scrubber.scrub_variables(v)
        }
    };
    let mut once = doc.clone();
    let flags = scrub(&mut once);
    for f in &flags {
        assert!(f.redacted);
        assert!(matches!(
            f.severity.as_str(),
            "critical" | "high" | "medium"
        ));
    }
    let mut twice = once.clone();
    let again = scrub(&mut twice);
    assert!(again.is_empty(), "second pass flagged {again:?} in {once}");
    assert_eq!(once, twice);
}

fn document(data: &[u8]) -> Value {
    serde_json::from_slice(data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(data).into_owned()))
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let doc = document(data);
        let builtin = Scrubber::builtin();
        check_idempotent(builtin, &doc, false);
        check_idempotent(builtin, &doc, true);
        let mut v = doc.clone();
        let _ = builtin.scrub_value(&mut v, "root");
        if let Value::String(s) = &v {
            // a scrubbed lone string is either untouched or a marker
            assert!(Value::String(s.clone()) == doc || is_marker(s));
        }
        return;
    }
    let (pattern, rest) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let custom = [CustomPattern {
        name: "fuzz".into(),
        pattern: String::from_utf8_lossy(pattern).into_owned(),
    }];
    if let Ok(scrubber) = Scrubber::with_custom(&custom) {
        check_idempotent(&scrubber, &document(rest), false);
    }
});
