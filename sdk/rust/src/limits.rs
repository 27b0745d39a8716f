//! Capture limits and their truncation markers (reference §7.4), and stack-trace formatting.

use serde_json::{json, Map, Value};

/// Effective limits for one capture (config merged with the breakpoint's overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub max_depth: usize,
    pub max_string_len: usize,
    pub max_collection_items: usize,
    pub max_payload_bytes: usize,
}

/// Applies depth, string and collection limits in place. `vars` is depth 0; a map or list at
/// depth ≥ `max_depth` (when non-zero) becomes `{"_truncated":true,"_depth":N}` (lists also
/// `"_length":len`). Strings longer than `max_string_len` characters keep that many plus
/// `"..."`. Lists keep `max_collection_items` items followed by
/// `{"_truncated":true,"_length":len}`; maps keep that many keys plus `"_truncated":true` and
/// `"_length":len`.
pub fn apply(vars: &mut Value, limits: &Effective) {
    walk(vars, 0, limits);
}

fn walk(v: &mut Value, depth: usize, l: &Effective) {
    match v {
        Value::String(s) => truncate_string(s, l.max_string_len),
        Value::Array(items) => {
            if l.max_depth > 0 && depth >= l.max_depth {
                *v = json!({"_truncated": true, "_depth": depth, "_length": items.len()});
                return;
            }
            let len = items.len();
            if len > l.max_collection_items {
                items.truncate(l.max_collection_items);
                items.push(json!({"_truncated": true, "_length": len}));
            }
            for item in items.iter_mut() {
                walk(item, depth + 1, l);
            }
        }
        Value::Object(map) => {
            if l.max_depth > 0 && depth >= l.max_depth {
                *v = json!({"_truncated": true, "_depth": depth});
                return;
            }
            let len = map.len();
            if len > l.max_collection_items {
                let kept: Map<String, Value> = std::mem::take(map)
                    .into_iter()
                    .take(l.max_collection_items)
                    .collect();
                *map = kept;
            }
            for item in map.values_mut() {
                walk(item, depth + 1, l);
            }
            if len > l.max_collection_items {
                map.insert("_truncated".into(), Value::Bool(true));
                map.insert("_length".into(), len.into());
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn truncate_string(s: &mut String, max_chars: usize) {
    if s.len() <= max_chars {
        return; // byte length bounds char count
    }
    if let Some((cut, _)) = s.char_indices().nth(max_chars) {
        s.truncate(cut);
        s.push_str("...");
    }
}

/// Replaces `vars` with the payload marker when its serialized size exceeds `max` (0 = no
/// limit). Returns whether it did.
pub fn apply_payload_limit(vars: &mut Value, max: usize) -> bool {
    if max == 0 {
        return false;
    }
    let size = serde_json::to_vec(vars)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size <= max {
        return false;
    }
    *vars = json!({
        "_truncated": true,
        "_payload_size": size,
        "_max_payload": max,
        "_truncated_by": "payload_limit",
    });
    true
}

/// Largest `stack_trace` text sent.
pub const MAX_STACK_BYTES: usize = 32 * 1024;

/// Formats a `std::backtrace::Backtrace` rendering as `symbol\n    at file:line:col` lines,
/// skipping the SDK's own frames (and the std backtrace/panic machinery above the call site),
/// keeping at most `max_frames` frames and [`MAX_STACK_BYTES`] bytes.
pub fn format_backtrace(rendered: &str, max_frames: usize) -> String {
    let mut frames: Vec<(String, Option<String>)> = Vec::new();
    for line in rendered.lines() {
        let t = line.trim_start();
        if let Some(at) = t.strip_prefix("at ") {
            if let Some(last) = frames.last_mut() {
                if last.1.is_none() {
                    last.1 = Some(at.trim().to_owned());
                }
            }
            continue;
        }
        let Some((num, sym)) = t.split_once(": ") else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        frames.push((sym.trim().to_owned(), None));
    }
    // Everything up to and including the last SDK-internal frame is the SDK's own call chain.
    let first_user = frames
        .iter()
        .rposition(|(sym, _)| is_internal(sym))
        .map_or(0, |i| i + 1);
    let mut out = String::new();
    for (sym, at) in frames.iter().skip(first_user).take(max_frames) {
        let piece = match at {
            Some(at) => format!("{sym}\n    at {at}\n"),
            None => format!("{sym}\n"),
        };
        if out.len() + piece.len() > MAX_STACK_BYTES {
            break;
        }
        out.push_str(&piece);
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

fn is_internal(sym: &str) -> bool {
    sym.starts_with("sightline::")
        || sym.starts_with("<sightline::")
        || sym.starts_with("std::backtrace")
        || sym.starts_with("std::backtrace_rs")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(depth: usize) -> Effective {
        Effective {
            max_depth: depth,
            max_string_len: 5,
            max_collection_items: 3,
            max_payload_bytes: 0,
        }
    }

    #[test]
    fn depth_markers_match_reference() {
        let mut v = json!({"nested": {"a": [1, 2], "m": {"x": 1}, "s": 1}, "top": [[1], {"k": 1}]});
        apply(&mut v, &limits(2));
        assert_eq!(
            v,
            json!({
                "nested": {"a": {"_truncated": true, "_depth": 2, "_length": 2},
                           "m": {"_truncated": true, "_depth": 2}, "s": 1},
                "top": [{"_truncated": true, "_depth": 2, "_length": 1}, {"_truncated": true, "_depth": 2}]
            })
        );
    }

    #[test]
    fn strings_and_collections_are_cut_with_markers() {
        let mut v = json!({"s": "h\u{e9}llo world", "short": "abc", "l": [1, 2, 3, 4, 5]});
        apply(&mut v, &limits(0));
        assert_eq!(v["s"], "h\u{e9}llo...");
        assert_eq!(v["short"], "abc");
        assert_eq!(v["l"], json!([1, 2, 3, {"_truncated": true, "_length": 5}]));
        let mut m = json!({"a": 1, "b": 2, "c": 3, "d": 4});
        apply(&mut m, &limits(0));
        assert_eq!(
            m,
            json!({"a": 1, "b": 2, "c": 3, "_truncated": true, "_length": 4})
        );
    }

    #[test]
    fn payload_marker_matches_reference() {
        let mut v = json!({"blob": "x".repeat(100)});
        let size = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0);
        assert!(!apply_payload_limit(&mut v, 0));
        assert!(!apply_payload_limit(&mut v, size));
        assert!(apply_payload_limit(&mut v, 50));
        assert_eq!(
            v,
            json!({"_truncated": true, "_payload_size": size, "_max_payload": 50, "_truncated_by": "payload_limit"})
        );
    }

    #[test]
    fn backtrace_text_skips_sdk_frames_and_is_limited() {
        let rendered = "   0: std::backtrace_rs::backtrace::trace\n             at /rustc/x/backtrace.rs:1:5\n\
   1: std::backtrace::Backtrace::create\n\
   2: sightline::Sightline::capture_snapshot\n             at ./src/lib.rs:10:1\n\
   3: app::handler\n             at ./src/main.rs:42:9\n\
   4: app::main\n             at ./src/main.rs:7:5\n\
   5: core::ops::function::FnOnce::call_once\n";
        assert_eq!(
            format_backtrace(rendered, 50),
            "app::handler\n    at ./src/main.rs:42:9\napp::main\n    at ./src/main.rs:7:5\ncore::ops::function::FnOnce::call_once"
        );
        assert_eq!(
            format_backtrace(rendered, 1),
            "app::handler\n    at ./src/main.rs:42:9"
        );
    }
}
