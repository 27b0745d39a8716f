//! The storage key layout: every key of a project's data starts with `P#{project}`, so no
//! handler can address another project's items (see docs/ARCHITECTURE.md).

/// API key lookup by SHA-256 of the raw key: `KEY#{sha256}` / `KEY`.
pub fn api_key(hash: &str) -> (String, &'static str) {
    (format!("KEY#{hash}"), "KEY")
}

/// Installation-wide metadata (bootstrap marker, default project).
pub const META_PK: &str = "META";

pub fn project(project: &str) -> (String, &'static str) {
    (format!("PROJECT#{project}"), "META")
}

/// A project's API key records (without the raw key), sk = key id.
pub fn project_keys(project: &str) -> String {
    format!("P#{project}#KEYS")
}

/// A project's services, sk = service name: first/last seen and counters, for listing.
/// It also mirrors the settings (written in the same transaction as
/// [`SERVICE_SETTINGS_SK`]), so the list needs no read per service.
pub fn services(project: &str) -> String {
    format!("P#{project}#SERVICES")
}

/// The partition of one service: its breakpoints (`BP#{id}`) and its settings
/// ([`SERVICE_SETTINGS_SK`]), so one Query answers a poll.
pub fn service(project: &str, service: &str) -> String {
    format!("P#{project}#S#{service}")
}

/// Sort key of a service's settings (kill switch, custom PII patterns) in its
/// [`service`] partition; it cannot start with [`BREAKPOINT_PREFIX`].
pub const SERVICE_SETTINGS_SK: &str = "SETTINGS";

pub fn breakpoint_sk(id: &str) -> String {
    format!("BP#{id}")
}

pub const BREAKPOINT_PREFIX: &str = "BP#";

/// Breakpoint id → service, so `/api/breakpoints/{id}` needs no service.
pub fn breakpoint_index(project: &str) -> String {
    format!("P#{project}#BPID")
}

/// Snapshots of a project; sk = snapshot id, which sorts by receive time.
pub fn snapshots(project: &str) -> String {
    format!("P#{project}#SNAP")
}

/// Idempotency markers for captures (retries and duplicate sends), sk = content hash.
pub fn dedup(project: &str) -> String {
    format!("P#{project}#DEDUP")
}

/// Code locations of a service; sk = [`code_sk`].
pub fn code(project: &str, service: &str) -> String {
    format!("P#{project}#S#{service}#CODE")
}

/// `{file}#{line:010}` so a file's lines sort numerically.
pub fn code_sk(file: &str, line: i64) -> String {
    format!("{file}#{line:010}")
}

/// SDK telemetry events reported in polls (circuit breaker trips), sk = time-ordered id.
pub fn sdk_events(project: &str, service: &str) -> String {
    format!("P#{project}#S#{service}#EVT")
}

/// Blob key of a snapshot payload too large to keep inline.
pub fn snapshot_blob(project: &str, service: &str, breakpoint: &str, id: &str) -> String {
    format!("snapshots/{project}/{service}/{breakpoint}/{id}.json")
}

/// A project's trace list, newest first: sk = `{start_ms:013}#{trace_id}`.
pub fn traces(project: &str) -> String {
    format!("P#{project}#TRACES")
}

/// One trace: `SUMMARY` (→ its list sort key), `BATCH#{id}` (spans of one ingest
/// request); `SNAP#{snapshot_id}` links from before [`trace_snapshots`] are still read.
pub fn trace(project: &str, trace_id: &str) -> String {
    format!("P#{project}#T#{trace_id}")
}

/// Snapshots captured in traces, by the minute of capture and the trace id's first two
/// characters (256 partitions a minute for hex ids); sk = snapshot id, which sorts by
/// receive time. A capture thus appends its link near the end of a few partitions
/// instead of inserting it at a random place in the key order (the trace's own
/// partition), which an ordered store pays for with a page write and a scattered page
/// per capture. A trace lookup reads the minutes around the trace, filtered by trace id.
pub fn trace_snapshots(project: &str, trace_id: &str, captured_at_ms: i64) -> String {
    let shard = trace_id.get(..2).unwrap_or_default();
    let minute = captured_at_ms.div_euclid(60_000);
    format!("P#{project}#TS#{minute}#{shard}")
}

pub const TRACE_SUMMARY_SK: &str = "SUMMARY";
pub const TRACE_BATCH_PREFIX: &str = "BATCH#";
pub const TRACE_SNAPSHOT_PREFIX: &str = "SNAP#";

/// Per-minute request statistics of a service, sk = Unix minute (zero-padded).
pub fn service_stats(project: &str, service: &str) -> String {
    format!("P#{project}#S#{service}#STATS")
}

/// Metric series of a service, sk = metric name.
pub fn metrics(project: &str, service: &str) -> String {
    format!("P#{project}#S#{service}#METRICS")
}

/// Blob key of a trace batch too large to keep inline.
pub fn trace_blob(project: &str, trace_id: &str, batch: &str) -> String {
    format!("traces/{project}/{trace_id}/{batch}.json")
}
