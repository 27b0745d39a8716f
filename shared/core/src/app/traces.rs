//! The trace store's queries, service statistics, metric series and the code index
//! (DESIGN §8). Ingest, which needs the OTLP decoder, is in `ingest.rs`.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};

use super::Sightline;
use crate::error::{Error, Result};
use crate::keys;
use crate::model::Principal;
use crate::ports::{CmpOp, Condition, Item, Query};
use crate::timefmt::format_ms;

/// Upper bounds (ms) of the latency histogram kept per service and minute.
pub const LATENCY_BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Filters of `GET /api/traces`.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    pub service: Option<String>,
    pub has_error: Option<bool>,
    pub min_duration_ms: Option<f64>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

const MAX_TRACE_PAGE: usize = 100;
/// How far a snapshot's `captured_at` may lie outside its trace's span times and still be
/// found: the clocks of a trace's services disagree, and a capture without a time of its
/// own is stamped on receipt.
const TRACE_SNAPSHOT_SLACK_MS: i64 = 60_000;
/// Most minutes of snapshot partitions one trace lookup reads (4 hours).
const MAX_TRACE_SNAPSHOT_MINUTES: i64 = 240;
/// Minute partitions a trace lookup queries at once.
const SNAPSHOT_MINUTES_IN_FLIGHT: usize = 8;

impl Sightline {
    /// The item that links a stored snapshot (its list form) to its trace, so the trace
    /// view lists it (see [`keys::trace_snapshots`]). Written in the capture's transaction,
    /// with the snapshot's expiry.
    pub(super) fn snapshot_trace_link(
        project: &str,
        trace_id: &str,
        captured_at_ms: i64,
        snapshot: Map<String, Value>,
    ) -> Item {
        let id = snapshot
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Item::new(
            keys::trace_snapshots(project, trace_id, captured_at_ms),
            id,
            snapshot,
        )
    }

    /// `GET /api/traces`: newest first, filtered, cursor-paginated.
    pub async fn list_traces(&self, p: &Principal, f: TraceFilter) -> Result<Value> {
        let mut conds = Vec::new();
        if let Some(s) = &f.service {
            conds.push(Condition::AttrExists(format!("svc:{s}")));
        }
        match f.has_error {
            Some(true) => conds.push(Condition::cmp("has_error", CmpOp::Eq, true)),
            Some(false) => conds.push(Condition::AttrNotExists("has_error".into())),
            None => {}
        }
        if let Some(d) = f.min_duration_ms {
            conds.push(Condition::Cmp("duration_ms".into(), CmpOp::Ge, json!(d)));
        }
        if let Some(from) = f.from_ms {
            conds.push(Condition::cmp("start_ms", CmpOp::Ge, from));
        }
        if let Some(to) = f.to_ms {
            conds.push(Condition::cmp("start_ms", CmpOp::Le, to));
        }
        let query = Query {
            descending: true,
            limit: Some(f.limit.unwrap_or(50).clamp(1, MAX_TRACE_PAGE)),
            cursor: f.cursor,
            filter: if conds.is_empty() {
                None
            } else {
                Some(Condition::And(conds))
            },
            ..Query::default()
        };
        let page = self
            .items
            .query(&keys::traces(&p.project_id), query)
            .await?;
        let traces: Vec<Value> = page.items.iter().map(trace_summary).collect();
        Ok(json!({"traces": traces, "next_cursor": page.next}))
    }

    /// `GET /api/traces/{trace_id}`: every span, and the snapshots captured in the trace:
    /// those in the minutes around its span times, and around `at_ms` (a time in the
    /// trace, e.g. a snapshot's `captured_at`) for a trace whose spans never arrived.
    pub async fn get_trace(
        &self,
        p: &Principal,
        trace_id: &str,
        at_ms: Option<i64>,
    ) -> Result<Value> {
        let trace_id = trace_id.to_ascii_lowercase();
        if !crate::wire::is_hex_id(&trace_id, 32) {
            return Err(Error::not_found("trace"));
        }
        let pk = keys::trace(&p.project_id, &trace_id);
        let mut spans: Vec<Value> = Vec::new();
        let mut snapshots: Vec<Value> = Vec::new();
        let mut list_sk = None;
        let query = Query {
            limit: Some(200),
            ..Query::default()
        };
        for mut item in self.query_all(&pk, query).await? {
            if item.sk.starts_with(keys::TRACE_BATCH_PREFIX) {
                // Moved out of the item, not cloned: a batch can hold thousands of spans.
                match item.attrs.remove("spans") {
                    Some(Value::Array(batch)) => spans.extend(batch),
                    _ => {
                        if let Some(blob) = item.get_str("spans_blob") {
                            if let Some(bytes) = self.blobs.get(blob).await? {
                                let batch: Vec<Value> =
                                    serde_json::from_slice(&bytes).unwrap_or_default();
                                spans.extend(batch);
                            }
                        }
                    }
                }
            } else if item.sk.starts_with(keys::TRACE_SNAPSHOT_PREFIX) {
                snapshots.push(super::capture::snapshot_summary(&item.attrs));
            } else if item.sk == keys::TRACE_SUMMARY_SK {
                list_sk = item.get_str("list_sk").map(str::to_owned);
            }
        }
        let summary = match list_sk {
            Some(sk) => self.items.get(&keys::traces(&p.project_id), &sk).await?,
            None => None,
        };
        let mut minutes = BTreeSet::new();
        if let Some(start) = summary.as_ref().and_then(|s| s.get_i64("start_ms")) {
            let duration = summary
                .as_ref()
                .and_then(|s| s.get_i64("duration_ms"))
                .unwrap_or(0);
            add_snapshot_minutes(&mut minutes, start, start.saturating_add(duration));
        }
        if let Some(at) = at_ms {
            add_snapshot_minutes(&mut minutes, at, at);
        }
        // One query per minute partition, a few at a time: on DynamoDB each is a round
        // trip, and a trace usually covers three or four minutes with the slack.
        let per_minute: Vec<Vec<Value>> = futures::stream::iter(minutes)
            .map(|minute| self.trace_snapshots_in(&p.project_id, &trace_id, minute))
            .buffer_unordered(SNAPSHOT_MINUTES_IN_FLIGHT)
            .try_collect()
            .await?;
        snapshots.extend(per_minute.into_iter().flatten());
        if spans.is_empty() && snapshots.is_empty() {
            return Err(Error::not_found("trace"));
        }
        spans.sort_by_cached_key(|s| s.get("start_ns").and_then(Value::as_i64).unwrap_or(0));
        snapshots.sort_by(|a, b| snapshot_id(a).cmp(snapshot_id(b)));
        let mut out = summary
            .map(|i| trace_summary(&i))
            .unwrap_or_else(|| json!({"trace_id": trace_id}));
        if let Value::Object(m) = &mut out {
            m.insert("spans".into(), Value::Array(spans));
            m.insert("snapshots".into(), Value::Array(snapshots));
        }
        Ok(out)
    }

    /// The snapshots of one trace captured in one minute (list form).
    async fn trace_snapshots_in(
        &self,
        project: &str,
        trace_id: &str,
        minute: i64,
    ) -> Result<Vec<Value>> {
        let pk = keys::trace_snapshots(project, trace_id, minute.saturating_mul(60_000));
        let query = Query {
            limit: Some(200),
            filter: Some(Condition::cmp("trace_id", CmpOp::Eq, trace_id)),
            ..Query::default()
        };
        let items = self.query_all(&pk, query).await?;
        Ok(items
            .iter()
            .map(|item| super::capture::snapshot_summary(&item.attrs))
            .collect())
    }

    /// Request rate, error rate and latency percentiles of a service over the last
    /// `window_minutes`, from its per-minute statistics.
    pub(super) async fn service_stats(
        &self,
        project: &str,
        service: &str,
        window_minutes: i64,
    ) -> Result<Value> {
        let now_min = self.now_ms().div_euclid(60_000);
        let from = now_min - window_minutes + 1;
        let page = self
            .items
            .query(
                &keys::service_stats(project, service),
                Query {
                    descending: true,
                    limit: Some(usize::try_from(window_minutes).unwrap_or(60)),
                    filter: Some(Condition::cmp("requests", CmpOp::Ge, 0)),
                    ..Query::default()
                },
            )
            .await?;
        let mut requests = 0i64;
        let mut errors = 0i64;
        let mut buckets = [0i64; LATENCY_BUCKETS_MS.len() + 1];
        // One point per minute of the window, oldest first, for the dashboard's sparklines.
        let len = usize::try_from(window_minutes).unwrap_or(0);
        let mut series = vec![(0i64, 0i64, [0i64; LATENCY_BUCKETS_MS.len() + 1]); len];
        for item in page
            .items
            .iter()
            .filter(|i| i.sk.parse::<i64>().is_ok_and(|m| m >= from))
        {
            let r = item.get_i64("requests").unwrap_or(0);
            let e = item.get_i64("errors").unwrap_or(0);
            requests += r;
            errors += e;
            let point = item
                .sk
                .parse::<i64>()
                .ok()
                .and_then(|m| usize::try_from(m - from).ok())
                .and_then(|i| series.get_mut(i));
            let mut minute = [0i64; LATENCY_BUCKETS_MS.len() + 1];
            for (i, b) in buckets.iter_mut().enumerate() {
                let n = item.get_i64(&format!("lat_{i}")).unwrap_or(0);
                *b += n;
                minute[i] = n;
            }
            if let Some(point) = point {
                *point = (r, e, minute);
            }
        }
        let series: Vec<Value> = series
            .iter()
            .enumerate()
            .map(|(i, (r, e, lat))| {
                json!({
                    "minute": format_ms((from + i as i64) * 60_000),
                    "requests": r,
                    "errors": e,
                    "p95_ms": percentile(lat, 0.95),
                })
            })
            .collect();
        let rate = |n: i64| n as f64 / window_minutes.max(1) as f64;
        Ok(json!({
            "window_minutes": window_minutes,
            "requests": requests,
            "errors": errors,
            "request_rate_per_minute": rate(requests),
            "error_rate": if requests > 0 { errors as f64 / requests as f64 } else { 0.0 },
            "p50_ms": percentile(&buckets, 0.50),
            "p95_ms": percentile(&buckets, 0.95),
            "series": series,
        }))
    }

    /// Metric series of a service (for the services view).
    pub(super) async fn service_metrics(&self, project: &str, service: &str) -> Result<Vec<Value>> {
        let page = self
            .items
            .query(
                &keys::metrics(project, service),
                Query {
                    limit: Some(100),
                    ..Query::default()
                },
            )
            .await?;
        Ok(page
            .items
            .iter()
            .map(|i| {
                json!({
                    "name": i.sk,
                    "kind": i.attrs.get("kind"),
                    "points": i.get_i64("points").unwrap_or(0),
                    "last_value": i.attrs.get("last_value"),
                    "total": i.attrs.get("total"),
                    "last_seen": i.get_i64("last_seen").map(format_ms),
                })
            })
            .collect())
    }

    /// `GET /api/code?service=&q=`: discovered files → functions → lines, filtered by a
    /// case-insensitive substring of the file or function.
    pub async fn code_tree(&self, p: &Principal, service: &str, q: Option<&str>) -> Result<Value> {
        crate::wire::validate_service_name(service)?;
        let needle = q.map(str::to_lowercase).filter(|s| !s.is_empty());
        let mut files: BTreeMap<String, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
        let mut cursor = None;
        let mut total = 0usize;
        loop {
            let page = self
                .items
                .query(
                    &keys::code(&p.project_id, service),
                    Query {
                        cursor,
                        limit: Some(1000),
                        ..Query::default()
                    },
                )
                .await?;
            for item in &page.items {
                let file = item.get_str("file_path").unwrap_or_default().to_owned();
                let function = item.get_str("function_name").unwrap_or_default().to_owned();
                if let Some(n) = &needle {
                    if !file.to_lowercase().contains(n) && !function.to_lowercase().contains(n) {
                        continue;
                    }
                }
                total += 1;
                let ms = |k: &str| item.get_i64(k).map(format_ms);
                files
                    .entry(file)
                    .or_default()
                    .entry(function)
                    .or_default()
                    .push(json!({
                        "line": item.get_i64("line_number").unwrap_or(0),
                        "hits": item.get_i64("hit_count").unwrap_or(0),
                        "first_seen": ms("first_seen"),
                        "last_seen": ms("last_seen"),
                        "example_trace_id": item.attrs.get("example_trace_id"),
                        "label": item.attrs.get("label"),
                        "source": item.attrs.get("source"),
                    }));
            }
            match page.next {
                Some(n) if total < 20_000 => cursor = Some(n),
                _ => break,
            }
        }
        let files: Vec<Value> = files
            .into_iter()
            .map(|(file, functions)| {
                let functions: Vec<Value> = functions
                    .into_iter()
                    .map(|(name, lines)| json!({"name": name, "lines": lines}))
                    .collect();
                json!({"file": file, "functions": functions})
            })
            .collect();
        Ok(json!({"service": service, "locations": total, "files": files}))
    }
}

/// The latency below which `q` of requests fall, interpolated within its bucket.
fn percentile(buckets: &[i64], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let target = q * total as f64;
    let mut seen = 0.0;
    for (i, n) in buckets.iter().enumerate() {
        let next = seen + *n as f64;
        if next >= target && *n > 0 {
            let lower = if i == 0 {
                0.0
            } else {
                LATENCY_BUCKETS_MS[i - 1]
            };
            let upper = LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(lower * 2.0);
            let frac = (target - seen) / *n as f64;
            return Some(lower + (upper - lower) * frac);
        }
        seen = next;
    }
    LATENCY_BUCKETS_MS.last().copied()
}

/// Adds the minutes whose snapshot partitions may hold snapshots of a trace that ran from
/// `from_ms` to `to_ms`, with [`TRACE_SNAPSHOT_SLACK_MS`] either side, at most
/// [`MAX_TRACE_SNAPSHOT_MINUTES`] of them from the start.
fn add_snapshot_minutes(minutes: &mut BTreeSet<i64>, from_ms: i64, to_ms: i64) {
    let first = from_ms
        .saturating_sub(TRACE_SNAPSHOT_SLACK_MS)
        .div_euclid(60_000);
    let last = to_ms
        .saturating_add(TRACE_SNAPSHOT_SLACK_MS)
        .div_euclid(60_000);
    let last = last.min(first.saturating_add(MAX_TRACE_SNAPSHOT_MINUTES - 1));
    minutes.extend(first..=last);
}

fn snapshot_id(snapshot: &Value) -> &str {
    snapshot
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn trace_summary(item: &Item) -> Value {
    let a = &item.attrs;
    let services: Vec<&str> = a.keys().filter_map(|k| k.strip_prefix("svc:")).collect();
    json!({
        "trace_id": a.get("trace_id"),
        "root_name": a.get("root_name"),
        "root_service": a.get("root_service"),
        "services": services,
        "start_time": item.get_i64("start_ms").map(format_ms),
        "duration_ms": item.get_i64("duration_ms").unwrap_or(0),
        "span_count": item.get_i64("span_count").unwrap_or(0),
        "has_error": a.get("has_error").and_then(Value::as_bool).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_reads_the_minutes_around_the_trace_and_no_more_than_the_cap() {
        let mut minutes = BTreeSet::new();
        // 10:00:30 to 10:00:40 → 09:59:30 to 10:01:40 with the slack: three minutes.
        add_snapshot_minutes(&mut minutes, 36_030_000, 36_040_000);
        assert_eq!(minutes.into_iter().collect::<Vec<_>>(), [599, 600, 601]);
        let mut minutes = BTreeSet::new();
        add_snapshot_minutes(&mut minutes, 0, i64::MAX);
        assert_eq!(minutes.len(), MAX_TRACE_SNAPSHOT_MINUTES as usize);
        assert_eq!(minutes.first(), Some(&-1));
        let mut minutes = BTreeSet::new();
        add_snapshot_minutes(&mut minutes, i64::MIN, i64::MIN);
        assert_eq!(minutes.len(), 2);
    }

    #[test]
    fn percentiles_interpolate_within_buckets() {
        let mut b = [0i64; LATENCY_BUCKETS_MS.len() + 1];
        b[3] = 100; // all in (5, 10] ms
        assert_eq!(percentile(&b, 0.5), Some(7.5));
        assert_eq!(percentile(&[0; 14], 0.5), None);
    }
}
