//! `POST /sdk/snapshots/capture`: everything DESIGN §5 says the server enforces.

use serde_json::{json, Map, Value};

use super::auth::attrs;
use super::{sha256_hex, Sightline};
use crate::error::Result;
use crate::events::{names, Audience};
use crate::keys;
use crate::model::{Breakpoint, DropReason, Mode, Principal};
use crate::pii::SecurityFlag;
use crate::ports::{CmpOp, Condition, Item, Query, StoreError, UpdateOp};
use crate::timefmt::format_ms;
use crate::wire::CaptureRequest;

/// How long a capture's idempotency marker is kept.
const DEDUP_TTL_SECS: i64 = 24 * 3600;

/// What happened to a capture. Drops are business outcomes, never errors.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptureOutcome {
    Stored {
        id: String,
        breakpoint_id: String,
    },
    Dropped {
        reason: DropReason,
        breakpoint_id: Option<String>,
    },
}

impl CaptureOutcome {
    pub fn to_body(&self) -> Value {
        match self {
            Self::Stored { id, breakpoint_id } => {
                json!({"status": "stored", "id": id, "breakpoint_id": breakpoint_id})
            }
            Self::Dropped {
                reason,
                breakpoint_id,
            } => {
                json!({"status": "dropped", "reason": reason.as_str(), "breakpoint_id": breakpoint_id})
            }
        }
    }
}

impl Sightline {
    /// `POST /sdk/snapshots/capture/batch`: each snapshot goes through [`Self::capture`] on
    /// its own; the answer lists one outcome (or error) per snapshot, in order. A storage
    /// failure fails the whole request so the client retries it; idempotency keys make
    /// the retry store nothing twice.
    pub async fn capture_batch(
        &self,
        p: &Principal,
        batch: Vec<Result<CaptureRequest>>,
    ) -> Result<Value> {
        let mut results = Vec::with_capacity(batch.len());
        for item in batch {
            let result = match item {
                Ok(req) => self.capture(p, req).await.map(|o| o.to_body()),
                Err(e) => Err(e),
            };
            match result {
                Ok(body) => results.push(body),
                Err(e) if e.kind.status() < 500 => results.push(
                    json!({"status": "invalid", "error": {"code": e.code, "message": e.message}}),
                ),
                Err(e) => return Err(e),
            }
        }
        Ok(json!({"results": results}))
    }

    pub async fn capture(&self, p: &Principal, req: CaptureRequest) -> Result<CaptureOutcome> {
        let project = p.project_id.as_str();
        let now = self.now_ms();
        let Some(bp) = self.resolve_capture_breakpoint(project, &req).await? else {
            let service = req.service_name.as_deref().unwrap_or("unknown");
            crate::wire::validate_service_name(service)?;
            return self
                .drop(project, service, None, DropReason::UnknownBreakpoint)
                .await;
        };
        let service = bp.service_name.clone();
        let settings = self.service_settings(project, &service).await?;
        if settings.kill_switch {
            return self
                .drop(project, &service, Some(&bp.id), DropReason::KillSwitch)
                .await;
        }
        if let Some(inactive) = bp.inactive(now) {
            // A retry of a capture stored before the breakpoint ran out is a duplicate.
            let seen = self
                .items
                .get(&keys::dedup(project), &dedup_key(&bp.id, &req))
                .await?
                .is_some();
            let reason = if seen {
                DropReason::Duplicate
            } else {
                inactive.reason()
            };
            return self.drop(project, &service, Some(&bp.id), reason).await;
        }
        let Some(dedup_key) = self.claim_capture(project, &bp.id, &req).await? else {
            return self
                .drop(project, &service, Some(&bp.id), DropReason::Duplicate)
                .await;
        };
        let verdict = match bp.condition.as_deref() {
            None => None,
            Some(cond) => match self
                .conditions
                .get_or_compile(cond)
                .and_then(|c| c.evaluate_bool(&condition_context(&req)))
            {
                Ok(true) => None,
                Ok(false) => Some(DropReason::ConditionFalse),
                Err(_) => Some(DropReason::ConditionError),
            },
        };
        let slot = match verdict {
            Some(reason) => Err((reason, bp.id.clone())),
            None => self.take_capture_slot(project, bp, now).await?,
        };
        let bp = match slot {
            Ok(bp) => bp,
            Err((reason, id)) => {
                // Not stored: a retry of this capture must not be taken for a duplicate.
                self.items
                    .delete(&keys::dedup(project), &dedup_key, None)
                    .await?;
                return self.drop(project, &service, Some(&id), reason).await;
            }
        };
        let id = self
            .store_snapshot(project, &bp, req, now, &settings.pii_patterns)
            .await?;
        if bp.max_captures > 0 && bp.capture_count >= bp.max_captures {
            self.disable_exhausted(project, &bp).await?;
        }
        Ok(CaptureOutcome::Stored {
            id,
            breakpoint_id: bp.id,
        })
    }

    async fn drop(
        &self,
        project: &str,
        service: &str,
        bp: Option<&str>,
        reason: DropReason,
    ) -> Result<CaptureOutcome> {
        self.record_drop(project, service, bp, reason).await?;
        Ok(CaptureOutcome::Dropped {
            reason,
            breakpoint_id: bp.map(str::to_owned),
        })
    }

    /// By id first; then, for SDKs that send only some fields, by function+label and by
    /// file+line within the named service (DESIGN §5).
    async fn resolve_capture_breakpoint(
        &self,
        project: &str,
        req: &CaptureRequest,
    ) -> Result<Option<Breakpoint>> {
        if let Some(id) = &req.breakpoint_id {
            if let Some(service) = &req.service_name {
                if let Some(bp) = self.get_breakpoint_in(project, service, id).await? {
                    return Ok(Some(bp));
                }
            }
            if let Some(bp) = self.find_breakpoint(project, id).await? {
                return Ok(Some(bp));
            }
        }
        let Some(service) = &req.service_name else {
            return Ok(None);
        };
        let candidates = self.service_breakpoints(project, service).await?;
        let now = self.now_ms();
        let by_label = |b: &&Breakpoint| {
            req.label.as_ref().is_some_and(|l| *l == b.label)
                && req
                    .function_name
                    .as_ref()
                    .is_none_or(|f| *f == b.function_name)
        };
        let by_line = |b: &&Breakpoint| {
            req.file_path.as_ref().is_some_and(|f| *f == b.file_path)
                && req.line_number == Some(b.line_number)
        };
        // Prefer an active match; otherwise report against the inactive one.
        let pick = |pred: &dyn Fn(&&Breakpoint) -> bool| {
            candidates
                .iter()
                .filter(|b| pred(b))
                .min_by_key(|b| b.inactive(now).is_some())
                .cloned()
        };
        Ok(pick(&by_label).or_else(|| pick(&by_line)))
    }

    /// Marks this capture as seen and returns its marker key, or `None` when it was seen
    /// before (a retry or a duplicate send). The key is the client's idempotency key, or
    /// breakpoint + time + content.
    async fn claim_capture(
        &self,
        project: &str,
        bp_id: &str,
        req: &CaptureRequest,
    ) -> Result<Option<String>> {
        let key = dedup_key(bp_id, req);
        let ttl = self.now_secs() + DEDUP_TTL_SECS;
        let item = Item::new(keys::dedup(project), key.clone(), Map::new()).with_ttl(Some(ttl));
        match self.items.put(item, Some(Condition::NotExists)).await {
            Ok(()) => Ok(Some(key)),
            Err(StoreError::ConditionFailed) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Atomically counts the capture against `max_captures` and the per-minute rate limit
    /// (one conditional update, so the limits are exact under any concurrency).
    /// Returns the breakpoint after the update, or why there was no slot.
    async fn take_capture_slot(
        &self,
        project: &str,
        mut bp: Breakpoint,
        now: i64,
    ) -> Result<std::result::Result<Breakpoint, (DropReason, String)>> {
        let pk = keys::service(project, &bp.service_name);
        let sk = keys::breakpoint_sk(&bp.id);
        let window = now.div_euclid(60_000);
        for _ in 0..8 {
            let base = vec![
                Condition::cmp("enabled", CmpOp::Eq, true),
                Condition::Or(vec![
                    Condition::cmp("max_captures", CmpOp::Le, 0),
                    Condition::CmpAttr("capture_count".into(), CmpOp::Lt, "max_captures".into()),
                ]),
            ];
            let mut ops = vec![
                UpdateOp::add("capture_count", 1),
                UpdateOp::set("last_captured_at", now),
            ];
            let rate = if bp.rate_window == window {
                ops.push(UpdateOp::add("rate_count", 1));
                Condition::Or(vec![
                    Condition::cmp("rate_limit_per_minute", CmpOp::Le, 0),
                    Condition::And(vec![
                        Condition::cmp("rate_window", CmpOp::Eq, window),
                        Condition::CmpAttr(
                            "rate_count".into(),
                            CmpOp::Lt,
                            "rate_limit_per_minute".into(),
                        ),
                    ]),
                ])
            } else {
                ops.push(UpdateOp::set("rate_window", window));
                ops.push(UpdateOp::set("rate_count", 1));
                Condition::cmp("rate_window", CmpOp::Lt, window)
            };
            let condition = Condition::And(base.into_iter().chain([rate]).collect());
            match self.items.update(&pk, &sk, &ops, Some(condition)).await {
                Ok(item) => {
                    if let Some(updated) = Breakpoint::from_item(&item) {
                        return Ok(Ok(updated));
                    }
                    return Ok(Ok(bp));
                }
                Err(StoreError::ConditionFailed) => {
                    let Some(fresh) = self
                        .get_breakpoint_in(project, &bp.service_name, &bp.id)
                        .await?
                    else {
                        return Ok(Err((DropReason::Deleted, bp.id)));
                    };
                    if let Some(inactive) = fresh.inactive(now) {
                        return Ok(Err((inactive.reason(), fresh.id)));
                    }
                    if fresh.rate_limit_per_minute > 0
                        && fresh.rate_window == window
                        && fresh.rate_count >= fresh.rate_limit_per_minute
                    {
                        return Ok(Err((DropReason::RateLimited, fresh.id)));
                    }
                    if fresh.rate_window > window {
                        // Another process's clock is ahead; count against its window.
                        return Ok(Err((DropReason::RateLimited, fresh.id)));
                    }
                    bp = fresh;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Err((DropReason::RateLimited, bp.id)))
    }

    async fn disable_exhausted(&self, project: &str, bp: &Breakpoint) -> Result<()> {
        let ops = [
            UpdateOp::set("enabled", false),
            UpdateOp::set("disabled_reason", "exhausted"),
            UpdateOp::set("updated_at", self.now_ms()),
        ];
        let pk = keys::service(project, &bp.service_name);
        let sk = keys::breakpoint_sk(&bp.id);
        match self
            .items
            .update(
                &pk,
                &sk,
                &ops,
                Some(Condition::cmp("enabled", CmpOp::Eq, true)),
            )
            .await
        {
            Ok(item) => {
                if let Some(b) = Breakpoint::from_item(&item) {
                    self.announce_breakpoint(project, &b, names::BREAKPOINT_UPDATED);
                }
                Ok(())
            }
            Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Scrubs, limits and stores the snapshot; large payloads go to the blob store.
    async fn store_snapshot(
        &self,
        project: &str,
        bp: &Breakpoint,
        req: CaptureRequest,
        now: i64,
        patterns: &[crate::pii::CustomPattern],
    ) -> Result<String> {
        let scrubber = self.scrubber_for(patterns);
        let logpoint = bp.mode == Mode::Logpoint || req.mode.as_deref() == Some("logpoint");
        let mut expression_results = req.expression_results;
        let mut variables = req.variables;
        if bp.mode == Mode::Logpoint {
            // SDKs that ignore `mode` (Node, Java) send full variables: evaluate the
            // expressions here, then keep only their results, as a logpoint promises.
            if expression_results.is_none() && !bp.capture_expressions.is_empty() {
                expression_results =
                    Some(self.evaluate_expressions(&bp.capture_expressions, &variables));
            }
            variables = Value::Object(Map::new());
        }
        let mut flags: Vec<SecurityFlag> = req.security_flags;
        flags.extend(scrubber.scrub_variables(&mut variables));
        let max_depth = bp
            .max_depth
            .unwrap_or(self.config.max_variable_depth)
            .clamp(1, self.config.max_variable_depth);
        truncate_depth(&mut variables, max_depth, 0);
        if let Some(limit) = bp.max_payload_bytes.filter(|l| *l > 0) {
            let size = variables.to_string().len() as i64;
            if size > limit {
                variables = json!({"_truncated": true, "_payload_size": size, "_max_payload": limit, "_truncated_by": "payload_limit"});
            }
        }
        let mut request_context = req.request_context;
        if let Some(ctx) = request_context.as_mut() {
            flags.extend(scrubber.scrub_request_context(ctx));
        }
        if let Some(er) = expression_results.as_mut() {
            flags.extend(scrubber.scrub_value(er, "expression_results"));
        }
        let stack_trace = truncate_utf8(&req.stack_trace, self.config.max_stack_trace_bytes);

        let id = format!("{:012x}{}", now.max(0), &self.ids.random_hex128()[..20]);
        let payload = json!({
            "variables": variables,
            "stack_trace": stack_trace,
            "request_context": request_context,
            "expression_results": expression_results,
        });
        let payload_text = payload.to_string();
        let mut item_attrs = attrs(json!({
            "id": id,
            "breakpoint_id": bp.id,
            "service_name": bp.service_name,
            "file_path": req.file_path.unwrap_or_else(|| bp.file_path.clone()),
            "line_number": req.line_number.unwrap_or(bp.line_number),
            "function_name": req.function_name.unwrap_or_else(|| bp.function_name.clone()),
            "label": req.label.unwrap_or_else(|| bp.label.clone()),
            "mode": if logpoint { "logpoint" } else { "snapshot" },
            "trace_id": req.trace_id.map(|t| t.to_ascii_lowercase()),
            "span_id": req.span_id.map(|s| s.to_ascii_lowercase()),
            "captured_at": req.captured_at.unwrap_or(now),
            "received_at": now,
            "security_flags": flags,
            "payload_bytes": payload_text.len(),
        }));
        if payload_text.len() > self.config.inline_payload_bytes {
            let blob = keys::snapshot_blob(project, &bp.service_name, &bp.id, &id);
            self.blobs
                .put(&blob, payload_text.into_bytes(), false)
                .await?;
            item_attrs.insert("payload_blob".into(), blob.into());
        } else {
            item_attrs.insert("payload".into(), payload);
        }
        let expires = now / 1000 + self.config.snapshot_retention_secs;
        self.items
            .put(
                Item::new(keys::snapshots(project), id.clone(), item_attrs.clone())
                    .with_ttl(Some(expires)),
                None,
            )
            .await?;
        let ops = [
            UpdateOp::add("captures_total", 1),
            UpdateOp::set("last_capture_at", now),
        ];
        self.items
            .update(&keys::services(project), &bp.service_name, &ops, None)
            .await?;

        item_attrs.remove("payload");
        item_attrs.remove("payload_blob");
        if let Some(trace_id) = item_attrs
            .get("trace_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            self.link_snapshot_to_trace(project, &trace_id, item_attrs.clone())
                .await?;
        }
        let summary = snapshot_summary(&item_attrs);
        self.publish(
            project,
            &bp.service_name,
            names::SNAPSHOT_CAPTURED,
            json!({"snapshot": summary, "breakpoint": {"id": bp.id, "capture_count": bp.capture_count, "max_captures": bp.max_captures}}),
            Audience::Dashboard,
        );
        Ok(id)
    }

    /// `{expression: value}` for a logpoint; an expression that fails yields `null`, as in
    /// the SDKs.
    fn evaluate_expressions(&self, expressions: &[String], variables: &Value) -> Value {
        let results = expressions.iter().map(|e| {
            let v = self
                .conditions
                .get_or_compile(e)
                .and_then(|c| c.evaluate(variables))
                .unwrap_or(Value::Null);
            (e.clone(), v)
        });
        Value::Object(results.collect())
    }

    /// Snapshots of the project, newest first (used by the admin API).
    pub(super) async fn query_snapshots(
        &self,
        project: &str,
        query: Query,
    ) -> Result<crate::ports::Page> {
        Ok(self.items.query(&keys::snapshots(project), query).await?)
    }
}

/// The idempotency marker of a capture: the client's key, or breakpoint + time + content.
fn dedup_key(bp_id: &str, req: &CaptureRequest) -> String {
    match &req.idempotency_key {
        Some(k) => sha256_hex(format!("{bp_id}\0key\0{k}").as_bytes()),
        None => {
            let content = json!([
                req.variables,
                req.stack_trace,
                req.expression_results,
                req.trace_id,
                req.span_id
            ]);
            sha256_hex(format!("{bp_id}\0{}\0{content}", req.captured_at_raw).as_bytes())
        }
    }
}

/// What a condition sees: the variables, plus `request` (the request context) when the
/// variables do not already define that name.
fn condition_context(req: &CaptureRequest) -> Value {
    let mut ctx = match &req.variables {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Some(rc) = &req.request_context {
        ctx.entry("request").or_insert_with(|| rc.clone());
    }
    Value::Object(ctx)
}

/// Replaces containers nested deeper than `max` with the SDKs' truncation marker
/// (reference §7.4). Depth 0 is the variables object itself.
fn truncate_depth(v: &mut Value, max: i64, depth: i64) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                truncate_child(child, max, depth + 1);
            }
        }
        Value::Array(a) => {
            for child in a.iter_mut() {
                truncate_child(child, max, depth + 1);
            }
        }
        _ => {}
    }
}

fn truncate_child(child: &mut Value, max: i64, depth: i64) {
    let is_container = matches!(child, Value::Object(_) | Value::Array(_));
    if is_container && depth >= max {
        let marker = match child {
            Value::Array(a) => json!({"_truncated": true, "_depth": depth, "_length": a.len()}),
            _ => json!({"_truncated": true, "_depth": depth}),
        };
        *child = marker;
    } else {
        truncate_depth(child, max, depth);
    }
}

fn truncate_utf8(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n…[truncated]", &s[..end])
}

/// The list form of a stored snapshot (no payload), times as RFC 3339.
pub(super) fn snapshot_summary(a: &Map<String, Value>) -> Value {
    let mut m = a.clone();
    m.remove("payload");
    m.remove("payload_blob");
    for k in ["captured_at", "received_at"] {
        if let Some(ms) = m.get(k).and_then(Value::as_i64) {
            m.insert(k.into(), format_ms(ms).into());
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_truncation_matches_the_sdk_marker() {
        let mut v = json!({"nested": {"a": [1, 2, {"b": 3}]}, "top": 1});
        truncate_depth(&mut v, 2, 0);
        assert_eq!(
            v,
            json!({"nested": {"a": {"_truncated": true, "_depth": 2, "_length": 3}}, "top": 1})
        );
    }
}
