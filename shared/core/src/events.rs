//! Change events: what the SSE hubs fan out after a change is committed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A committed change, addressed to the streams of one (project, service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub project_id: String,
    pub service: String,
    /// The SSE event name: `breakpoint_created`, `breakpoint_updated`, `breakpoint_deleted`,
    /// `kill_switch`, or a dashboard-only event such as `snapshot_captured`.
    pub event: String,
    /// The event's data, already in wire shape.
    pub data: Value,
    /// SDK streams receive only SDK events; dashboard streams receive every event.
    pub audience: Audience,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// SDK and dashboard streams.
    All,
    /// Dashboard streams only.
    Dashboard,
}

/// Names of the SSE events of the wire protocol (reference §6).
pub mod names {
    pub const INIT: &str = "init";
    pub const BREAKPOINT_CREATED: &str = "breakpoint_created";
    pub const BREAKPOINT_UPDATED: &str = "breakpoint_updated";
    pub const BREAKPOINT_DELETED: &str = "breakpoint_deleted";
    pub const KILL_SWITCH: &str = "kill_switch";
    pub const HEARTBEAT: &str = "heartbeat";
    pub const SDK_COUNT: &str = "sdk_count";
    pub const SNAPSHOT_CAPTURED: &str = "snapshot_captured";
    pub const SNAPSHOT_DROPPED: &str = "snapshot_dropped";
    /// Dashboard-only: the full admin view of a breakpoint after any change.
    pub const BREAKPOINT: &str = "breakpoint";
}

/// Formats one SSE frame: `event:` line, exactly one `data:` line (serde_json never emits a
/// raw newline), blank line. Written as one chunk so line-per-chunk parsers see it whole.
pub fn sse_frame(event: &str, data: &Value) -> String {
    let data = data.to_string();
    let mut out = String::with_capacity(event.len() + data.len() + 16);
    out.push_str("event: ");
    out.push_str(event);
    out.push_str("\ndata: ");
    out.push_str(&data);
    out.push_str("\n\n");
    out
}
