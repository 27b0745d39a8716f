//! The breakpoint cache: parsed wire configs (reference §2.2) and a two-level index whose
//! lookups take borrowed `&str`/`u32` keys, so matching a call site never allocates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde_json::Value;
use sightline_core::condition::Condition;

/// Most breakpoints kept, whatever the server sends.
pub const MAX_BREAKPOINTS: usize = 10_000;

/// How a breakpoint's condition is decided.
#[derive(Debug, Clone)]
pub enum ConditionCheck {
    /// No condition: always capture.
    None,
    /// `sdk-evaluable`: evaluated locally with the same evaluator as the server.
    Local(Condition),
    /// `server-only` (or not compilable here): asked through `POST /sdk/snapshots/checkin`.
    Server,
}

/// One active breakpoint as served by `/sdk/snapshots/active`.
#[derive(Debug)]
pub struct Breakpoint {
    pub id: String,
    pub file_path: String,
    pub line_number: u32,
    pub function_name: String,
    pub label: String,
    pub condition: ConditionCheck,
    pub logpoint: bool,
    pub capture_expressions: Vec<String>,
    /// 0 = unlimited.
    pub max_captures: i64,
    /// The server's count when this config was received.
    pub capture_count: i64,
    /// Captures this process took since (reserved when queued, released when skipped).
    pub taken: AtomicI64,
    pub stack_depth: Option<usize>,
    pub max_depth: Option<usize>,
    pub max_payload_bytes: Option<usize>,
}

impl Breakpoint {
    /// Parses one wire object leniently; `None` for anything without an id, for disabled
    /// breakpoints and for malformed ones (one bad entry never spoils the list).
    pub fn from_wire(v: &Value) -> Option<Breakpoint> {
        let m = v.as_object()?;
        let id = m.get("id")?.as_str()?.to_owned();
        if id.is_empty() || m.get("enabled").and_then(Value::as_bool) == Some(false) {
            return None;
        }
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let int = |k: &str| {
            m.get(k)
                .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
        };
        let usize_opt = |k: &str| {
            int(k)
                .filter(|n| *n > 0)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let condition = match m.get("condition").and_then(Value::as_str).map(str::trim) {
            None | Some("") => ConditionCheck::None,
            Some(src) => match m.get("condition_eval").and_then(Value::as_str) {
                Some("sdk-evaluable") => match Condition::compile(src) {
                    Ok(c) => ConditionCheck::Local(c),
                    Err(_) => ConditionCheck::Server,
                },
                _ => ConditionCheck::Server,
            },
        };
        let capture_expressions = m
            .get("capture_expressions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .take(64)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Some(Breakpoint {
            id,
            file_path: text("file_path"),
            line_number: int("line_number")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            function_name: text("function_name"),
            label: text("label"),
            condition,
            logpoint: m.get("mode").and_then(Value::as_str) == Some("logpoint"),
            capture_expressions,
            max_captures: int("max_captures").unwrap_or(0).max(0),
            capture_count: int("capture_count").unwrap_or(0).max(0),
            taken: AtomicI64::new(0),
            stack_depth: usize_opt("stack_depth"),
            max_depth: usize_opt("max_depth"),
            max_payload_bytes: usize_opt("max_payload_bytes"),
        })
    }

    /// Reserves one capture against `max_captures`; `false` when exhausted.
    pub fn reserve(&self) -> bool {
        if self.max_captures <= 0 {
            self.taken.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let left = self.max_captures - self.capture_count;
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < left).then_some(t + 1)
            })
            .is_ok()
    }

    /// Gives back a reservation for a capture that was not sent.
    pub fn release(&self) {
        let _ = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t > 0).then_some(t - 1)
            });
    }
}

/// The lock-free-readable cache: replaced wholesale through `ArcSwap`.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// `function_name` → `label` → breakpoint (the `"{function}:{label}"` key).
    by_label: HashMap<String, HashMap<String, Arc<Breakpoint>>>,
    /// `file_path` → `line_number` → breakpoint (the `"{file}:{line}"` key).
    by_line: HashMap<String, HashMap<u32, Arc<Breakpoint>>>,
    by_id: HashMap<String, Arc<Breakpoint>>,
}

impl Index {
    /// Builds an index from a poll/`init` list (at most [`MAX_BREAKPOINTS`]).
    pub fn from_list(list: &[Value]) -> Index {
        let mut idx = Index::default();
        for bp in list
            .iter()
            .filter_map(Breakpoint::from_wire)
            .take(MAX_BREAKPOINTS)
        {
            idx.upsert(Arc::new(bp));
        }
        idx
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The breakpoint for a call site: the label key first, then file:line. Allocation-free:
    /// `HashMap<String, _>::get` takes `&str`.
    #[inline]
    pub fn lookup(
        &self,
        function: &str,
        label: &str,
        file: &str,
        line: u32,
    ) -> Option<&Arc<Breakpoint>> {
        if self.by_id.is_empty() {
            return None;
        }
        if !function.is_empty() && !label.is_empty() {
            if let Some(bp) = self.by_label.get(function).and_then(|m| m.get(label)) {
                return Some(bp);
            }
        }
        self.by_line.get(file).and_then(|m| m.get(&line))
    }

    /// Inserts or replaces (by id) a breakpoint. Ignored beyond [`MAX_BREAKPOINTS`].
    pub fn upsert(&mut self, bp: Arc<Breakpoint>) {
        self.remove(&bp.id);
        if self.by_id.len() >= MAX_BREAKPOINTS {
            return;
        }
        if !bp.function_name.is_empty() && !bp.label.is_empty() {
            self.by_label
                .entry(bp.function_name.clone())
                .or_default()
                .insert(bp.label.clone(), bp.clone());
        }
        if !bp.file_path.is_empty() {
            self.by_line
                .entry(bp.file_path.clone())
                .or_default()
                .insert(bp.line_number, bp.clone());
        }
        self.by_id.insert(bp.id.clone(), bp);
    }

    /// Removes every entry with that id.
    pub fn remove(&mut self, id: &str) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        if let Some(m) = self.by_label.get_mut(&old.function_name) {
            if m.get(&old.label).is_some_and(|b| b.id == id) {
                m.remove(&old.label);
            }
            if m.is_empty() {
                self.by_label.remove(&old.function_name);
            }
        }
        if let Some(m) = self.by_line.get_mut(&old.file_path) {
            if m.get(&old.line_number).is_some_and(|b| b.id == id) {
                m.remove(&old.line_number);
            }
            if m.is_empty() {
                self.by_line.remove(&old.file_path);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Breakpoint>> {
        self.by_id.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_label_first_then_file_line() {
        let idx = Index::from_list(&[
            json!({"id": "a", "file_path": "src/a.rs", "line_number": 10, "function_name": "app::f", "label": "l", "enabled": true}),
            json!({"id": "b", "file_path": "src/b.rs", "line_number": 20, "function_name": "", "label": "", "enabled": true}),
            json!({"id": "off", "file_path": "src/c.rs", "line_number": 1, "enabled": false}),
            json!({"file_path": "src/no-id.rs", "line_number": 1}),
            json!("garbage"),
        ]);
        assert_eq!(idx.len(), 2);
        let id = |r: Option<&Arc<Breakpoint>>| r.map(|b| b.id.clone());
        assert_eq!(
            id(idx.lookup("app::f", "l", "elsewhere.rs", 1)).as_deref(),
            Some("a")
        );
        assert_eq!(id(idx.lookup("", "", "src/a.rs", 10)).as_deref(), Some("a"));
        assert_eq!(
            id(idx.lookup("app::g", "l", "src/b.rs", 20)).as_deref(),
            Some("b")
        );
        assert_eq!(id(idx.lookup("app::f", "other", "src/b.rs", 21)), None);
        assert_eq!(id(idx.lookup("", "", "src/c.rs", 1)), None);
    }

    #[test]
    fn upsert_and_delete_by_id() {
        let mut idx = Index::from_list(&[
            json!({"id": "a", "file_path": "f.rs", "line_number": 1, "function_name": "m::f", "label": "x"}),
        ]);
        let moved = Breakpoint::from_wire(
            &json!({"id": "a", "file_path": "f.rs", "line_number": 2, "function_name": "m::f", "label": "y"}),
        );
        if let Some(bp) = moved {
            idx.upsert(Arc::new(bp));
        }
        assert!(idx.lookup("m::f", "x", "f.rs", 1).is_none());
        assert!(idx.lookup("m::f", "y", "", 0).is_some());
        assert!(idx.lookup("", "", "f.rs", 2).is_some());
        idx.remove("a");
        assert!(idx.len() == 0 && idx.lookup("m::f", "y", "f.rs", 2).is_none());
    }

    #[test]
    fn conditions_and_reservations() {
        let bp = Breakpoint::from_wire(
            &json!({"id": "a", "condition": "x > 1", "condition_eval": "sdk-evaluable",
            "max_captures": 3, "capture_count": 1}),
        );
        let Some(bp) = bp else { panic!("parse") };
        assert!(matches!(bp.condition, ConditionCheck::Local(_)));
        assert!(bp.reserve() && bp.reserve());
        assert!(!bp.reserve(), "3 - 1 = 2 left");
        bp.release();
        assert!(bp.reserve());
        let srv = Breakpoint::from_wire(
            &json!({"id": "b", "condition": "len(t) > 1", "condition_eval": "server-only"}),
        );
        assert!(srv.is_some_and(|b| matches!(b.condition, ConditionCheck::Server)));
    }
}
