//! OTLP ingest: spans into the trace store, per-service statistics and the code index;
//! metric points into per-service series. Native targets only (the OTLP decoder does not
//! build for wasm32, and the edge never ingests).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::traces::LATENCY_BUCKETS_MS;
use super::Sightline;
use crate::error::{Error, Result};
use crate::keys;
use crate::model::Principal;
use crate::otlp::{code_locations, DecodedMetrics, DecodedTraces, SpanRecord};
use crate::ports::{CmpOp, Condition, Item, StoreError, UpdateOp};

/// What ingest accepted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestSummary {
    pub stored_spans: usize,
    pub ignored_self_telemetry: usize,
    pub traces: usize,
    pub code_locations: usize,
}

impl Sightline {
    /// Stores decoded spans: one batch item per trace (payload in the blob store when
    /// large), the trace's list entry, per-service request statistics, and the code
    /// locations found in the spans. Self-telemetry of SDKs is dropped here.
    pub async fn ingest_traces(
        &self,
        p: &Principal,
        decoded: DecodedTraces,
    ) -> Result<IngestSummary> {
        let project = p.project_id.as_str();
        let now = self.now_ms();
        let ttl = Some(now / 1000 + self.config.trace_retention_secs);
        let mut summary = IngestSummary::default();
        let mut by_trace: BTreeMap<String, Vec<SpanRecord>> = BTreeMap::new();
        for span in decoded.spans {
            if span.is_self_telemetry() {
                summary.ignored_self_telemetry += 1;
                continue;
            }
            by_trace
                .entry(span.trace_id.clone())
                .or_default()
                .push(span);
        }
        let mut stats: HashMap<(String, i64), MinuteStats> = HashMap::new();
        let mut code: HashMap<(String, String, i64), CodeHit> = HashMap::new();
        for (trace_id, spans) in &by_trace {
            self.store_trace_batch(project, trace_id, spans, ttl)
                .await?;
            summary.stored_spans += spans.len();
            summary.traces += 1;
            for span in spans {
                if span.is_entry() {
                    let minute = (span.start_ns / 60_000_000_000).max(0);
                    stats
                        .entry((span.service.clone(), minute))
                        .or_default()
                        .add(span);
                }
                for loc in code_locations(span) {
                    let hit = code
                        .entry((span.service.clone(), loc.file.clone(), loc.line))
                        .or_insert_with(|| CodeHit {
                            function: loc.function.clone(),
                            source: loc.source.clone(),
                            trace_id: trace_id.to_string(),
                            count: 0,
                        });
                    hit.count += 1;
                    if hit.function.is_empty() {
                        hit.function = loc.function;
                    }
                }
            }
        }
        let services: std::collections::BTreeSet<&String> =
            by_trace.values().flatten().map(|s| &s.service).collect();
        for service in services {
            self.touch_service(project, service).await?;
        }
        for ((service, minute), s) in stats {
            let mut ops = vec![
                UpdateOp::add("requests", s.requests),
                UpdateOp::add("errors", s.errors),
            ];
            for (i, n) in s.buckets.iter().enumerate().filter(|(_, n)| **n > 0) {
                ops.push(UpdateOp::add(&format!("lat_{i}"), *n));
            }
            let item_ttl = UpdateOp::SetTtl(Some(now / 1000 + self.config.trace_retention_secs));
            ops.push(item_ttl);
            self.items
                .update(
                    &keys::service_stats(project, &service),
                    &format!("{minute:010}"),
                    &ops,
                    None,
                )
                .await?;
        }
        summary.code_locations = code.len();
        for ((service, file, line), hit) in code {
            let mut ops = vec![
                UpdateOp::set("file_path", file.as_str()),
                UpdateOp::set("line_number", line),
                UpdateOp::SetIfNotExists("first_seen".into(), now.into()),
                UpdateOp::set("last_seen", now),
                UpdateOp::add("hit_count", hit.count),
                UpdateOp::set("example_trace_id", hit.trace_id.as_str()),
                UpdateOp::SetIfNotExists("source".into(), hit.source.clone().into()),
            ];
            if !hit.function.is_empty() {
                ops.push(UpdateOp::SetIfNotExists(
                    "function_name".into(),
                    hit.function.clone().into(),
                ));
            }
            self.items
                .update(
                    &keys::code(project, &service),
                    &keys::code_sk(&file, line),
                    &ops,
                    None,
                )
                .await?;
        }
        Ok(summary)
    }

    async fn store_trace_batch(
        &self,
        project: &str,
        trace_id: &str,
        spans: &[SpanRecord],
        ttl: Option<i64>,
    ) -> Result<()> {
        let pk = keys::trace(project, trace_id);
        let batch = self.ids.random_hex128()[..16].to_owned();
        let payload = serde_json::to_string(spans)
            .map_err(|e| Error::new(crate::ErrorKind::Internal, "internal", e.to_string()))?;
        let mut item_attrs = Map::new();
        item_attrs.insert("span_count".into(), spans.len().into());
        if payload.len() > self.config.inline_payload_bytes {
            let blob = keys::trace_blob(project, trace_id, &batch);
            self.blobs.put(&blob, payload.into_bytes(), false).await?;
            item_attrs.insert("spans_blob".into(), blob.into());
        } else {
            item_attrs.insert(
                "spans".into(),
                serde_json::to_value(spans).unwrap_or(Value::Null),
            );
        }
        self.items
            .put(
                Item::new(
                    pk.clone(),
                    format!("{}{batch}", keys::TRACE_BATCH_PREFIX),
                    item_attrs,
                )
                .with_ttl(ttl),
                None,
            )
            .await?;

        // The list entry: its sort key is fixed by the first batch seen for this trace.
        let start_ms = spans
            .iter()
            .map(|s| s.start_ns / 1_000_000)
            .min()
            .unwrap_or(0);
        let end_ms = spans
            .iter()
            .map(|s| s.end_ns / 1_000_000)
            .max()
            .unwrap_or(start_ms);
        let proposed = format!("{start_ms:013}#{trace_id}");
        let pointer = self
            .items
            .update(
                &pk,
                keys::TRACE_SUMMARY_SK,
                &[
                    UpdateOp::SetIfNotExists("list_sk".into(), proposed.clone().into()),
                    UpdateOp::SetTtl(ttl),
                ],
                None,
            )
            .await?;
        let list_sk = pointer.get_str("list_sk").unwrap_or(&proposed).to_owned();
        let list_pk = keys::traces(project);
        let mut ops = vec![
            UpdateOp::set("trace_id", trace_id),
            UpdateOp::add("span_count", i64::try_from(spans.len()).unwrap_or(i64::MAX)),
            UpdateOp::SetIfNotExists("start_ms".into(), start_ms.into()),
            UpdateOp::SetIfNotExists("end_ms".into(), end_ms.into()),
            UpdateOp::SetTtl(ttl),
        ];
        for s in spans {
            ops.push(UpdateOp::set(&format!("svc:{}", s.service), true));
        }
        if spans.iter().any(SpanRecord::is_error) {
            ops.push(UpdateOp::set("has_error", true));
        }
        let root = spans
            .iter()
            .find(|s| s.parent_span_id.is_none())
            .or_else(|| spans.iter().min_by_key(|s| s.start_ns));
        if let Some(r) = root {
            let op = if r.parent_span_id.is_none() {
                UpdateOp::Set
            } else {
                UpdateOp::SetIfNotExists
            };
            ops.push(op("root_name".into(), r.name.clone().into()));
            ops.push(op("root_service".into(), r.service.clone().into()));
        }
        self.items.update(&list_pk, &list_sk, &ops, None).await?;
        // Widen the time range; each a conditional update, so concurrent batches converge.
        self.widen(&list_pk, &list_sk, "start_ms", start_ms, CmpOp::Gt)
            .await?;
        self.widen(&list_pk, &list_sk, "end_ms", end_ms, CmpOp::Lt)
            .await?;
        let item = self.items.get(&list_pk, &list_sk).await?;
        if let Some(i) = item {
            let d =
                i.get_i64("end_ms").unwrap_or(end_ms) - i.get_i64("start_ms").unwrap_or(start_ms);
            let longer = Condition::Or(vec![
                Condition::AttrNotExists("duration_ms".into()),
                Condition::cmp("duration_ms", CmpOp::Lt, d),
            ]);
            match self
                .items
                .update(
                    &list_pk,
                    &list_sk,
                    &[UpdateOp::set("duration_ms", d)],
                    Some(longer),
                )
                .await
            {
                Ok(_) | Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sets `attr = value` if the current value is `op` value (e.g. start later than ours).
    async fn widen(&self, pk: &str, sk: &str, attr: &str, value: i64, op: CmpOp) -> Result<()> {
        match self
            .items
            .update(
                pk,
                sk,
                &[UpdateOp::set(attr, value)],
                Some(Condition::cmp(attr, op, value)),
            )
            .await
        {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /v1/metrics`: keeps per-service, per-metric series (points, last value, total).
    pub async fn ingest_metrics(&self, p: &Principal, decoded: DecodedMetrics) -> Result<usize> {
        let project = p.project_id.as_str();
        let now = self.now_ms();
        let mut grouped: BTreeMap<(String, String), Vec<&crate::otlp::MetricPoint>> =
            BTreeMap::new();
        for point in &decoded.points {
            grouped
                .entry((point.service.clone(), point.name.clone()))
                .or_default()
                .push(point);
        }
        for ((service, name), points) in &grouped {
            let Some(last) = points.iter().max_by_key(|p| p.time_ns) else {
                continue;
            };
            let total: f64 = points
                .iter()
                .filter(|p| p.kind == "sum" || p.kind == "histogram")
                .map(|p| p.value)
                .sum();
            let mut ops = vec![
                UpdateOp::set("name", name.as_str()),
                UpdateOp::set("kind", last.kind.as_str()),
                UpdateOp::add("points", i64::try_from(points.len()).unwrap_or(i64::MAX)),
                UpdateOp::Set(
                    "last_value".into(),
                    serde_json::Number::from_f64(last.value).map_or(Value::Null, Value::Number),
                ),
                UpdateOp::set("last_seen", now),
                UpdateOp::Set("attributes".into(), Value::Object(last.attributes.clone())),
            ];
            if total != 0.0 && total.is_finite() {
                ops.push(UpdateOp::AddF64("total".into(), total));
            }
            self.touch_service(project, service).await?;
            self.items
                .update(&keys::metrics(project, service), name, &ops, None)
                .await?;
        }
        Ok(decoded.points.len())
    }
}

#[derive(Default)]
struct MinuteStats {
    requests: i64,
    errors: i64,
    buckets: [i64; LATENCY_BUCKETS_MS.len() + 1],
}

impl MinuteStats {
    fn add(&mut self, span: &SpanRecord) {
        self.requests += 1;
        if span.is_error() {
            self.errors += 1;
        }
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| span.duration_ms <= *b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[i] += 1;
    }
}

struct CodeHit {
    function: String,
    source: String,
    trace_id: String,
    count: i64,
}
