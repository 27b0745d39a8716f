//! The admin API: services, breakpoints, snapshots (DESIGN §3.3).

use serde_json::{json, Map, Value};

use super::capture::snapshot_summary;
use super::Sightline;
use crate::condition::{classify, Condition as Expr};
use crate::error::{Error, ErrorKind, Result};
use crate::events::names;
use crate::keys;
use crate::model::{defaults, drops_of, Breakpoint, CallSite, Mode, Origin, Principal};
use crate::pii::{CustomPattern, Scrubber};
use crate::ports::{CmpOp, Condition, Item, Query, UpdateOp};
use crate::timefmt::{format_ms, parse_timestamp_ms};
use crate::wire::{
    parse_lenient_json, type_name, validate_service_name, MAX_NAME_LEN, MAX_PATH_LEN,
};

/// Filters of `GET /api/snapshots`.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    pub service: Option<String>,
    pub breakpoint_id: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    /// Received at or after this time (Unix ms).
    pub from_ms: Option<i64>,
    /// Received at or before this time (Unix ms).
    pub to_ms: Option<i64>,
}

const MAX_PAGE: usize = 200;
const MAX_EXPRESSIONS: usize = 20;

impl Sightline {
    /// `GET /api/services`: every service of the project with its settings, capture and
    /// drop counters, request statistics over the last `window_minutes`, and metrics.
    pub async fn list_services(&self, p: &Principal, window_minutes: i64) -> Result<Vec<Value>> {
        let window = window_minutes.clamp(1, 24 * 60);
        let page = self
            .items
            .query(&keys::services(&p.project_id), Query::default())
            .await?;
        let mut out = Vec::with_capacity(page.items.len());
        for item in &page.items {
            let mut view = service_view(item);
            if let Value::Object(m) = &mut view {
                m.insert(
                    "stats".into(),
                    self.service_stats(&p.project_id, &item.sk, window).await?,
                );
                m.insert(
                    "metrics".into(),
                    self.service_metrics(&p.project_id, &item.sk).await?.into(),
                );
            }
            out.push(view);
        }
        Ok(out)
    }

    /// `PUT /api/services/{service}/settings`: custom PII patterns (validated here).
    pub async fn update_service_settings(
        &self,
        p: &Principal,
        service: &str,
        body: &[u8],
    ) -> Result<Value> {
        validate_service_name(service)?;
        let v = parse_lenient_json(body)?;
        let Value::Object(fields) = &v else {
            return Err(Error::bad_request(
                "invalid_payload",
                "request body must be a JSON object",
            ));
        };
        if let Some(unknown) = fields.keys().find(|k| k.as_str() != "pii_patterns") {
            return Err(Error::bad_request(
                "unknown_field",
                format!("unknown field `{unknown}`"),
            ));
        }
        let patterns = match v.get("pii_patterns") {
            None | Some(Value::Null) => Vec::new(),
            Some(pats) => {
                serde_json::from_value::<Vec<CustomPattern>>(pats.clone()).map_err(|e| {
                    Error::bad_request(
                        "invalid_field",
                        format!("`pii_patterns` must be a list of {{name, pattern}}: {e}"),
                    )
                })?
            }
        };
        if patterns.len() > 50 {
            return Err(Error::bad_request(
                "invalid_field",
                "at most 50 custom PII patterns per service",
            ));
        }
        if let Some(bad) = patterns
            .iter()
            .find(|c| c.name.is_empty() || c.name.len() > 64)
        {
            return Err(Error::bad_request(
                "invalid_pii_pattern",
                format!("pattern name `{}` must be 1-64 bytes", bad.name),
            ));
        }
        Scrubber::with_custom(&patterns)
            .map_err(|e| Error::bad_request("invalid_pii_pattern", e.to_string()))?;
        let ops = vec![UpdateOp::Set(
            "pii_patterns".into(),
            serde_json::to_value(&patterns).unwrap_or(Value::Null),
        )];
        let item = self
            .write_service_settings(&p.project_id, service, ops)
            .await?;
        self.forget_service_state(&p.project_id, service);
        Ok(service_view(&item))
    }

    /// `GET /api/breakpoints[?service=]`.
    pub async fn list_breakpoints(
        &self,
        p: &Principal,
        service: Option<&str>,
    ) -> Result<Vec<Value>> {
        let services: Vec<String> = match service {
            Some(s) => vec![s.to_owned()],
            None => {
                let page = self
                    .items
                    .query(&keys::services(&p.project_id), Query::default())
                    .await?;
                page.items.into_iter().map(|i| i.sk).collect()
            }
        };
        let now = self.now_ms();
        let mut out = Vec::new();
        for s in services {
            let mut bps: Vec<(Breakpoint, Item)> = self
                .service_breakpoint_items(&p.project_id, &s)
                .await?
                .into_iter()
                .filter_map(|i| Breakpoint::from_item(&i).map(|b| (b, i)))
                .filter(|(b, _)| b.deleted_at.is_none())
                .collect();
            bps.sort_by_key(|(b, _)| std::cmp::Reverse(b.created_at));
            out.extend(
                bps.iter()
                    .map(|(b, i)| with_drops(b, now, &drops_of(&i.attrs))),
            );
        }
        Ok(out)
    }

    /// `GET /api/breakpoints/{id}` (404 for another project's id).
    pub async fn get_breakpoint(&self, p: &Principal, id: &str) -> Result<Value> {
        let (bp, item) = self.load_breakpoint(p, id).await?;
        Ok(with_drops(&bp, self.now_ms(), &drops_of(&item.attrs)))
    }

    async fn load_breakpoint(&self, p: &Principal, id: &str) -> Result<(Breakpoint, Item)> {
        let index = self
            .items
            .get(&keys::breakpoint_index(&p.project_id), id)
            .await?;
        let service = index
            .as_ref()
            .and_then(|i| i.get_str("service"))
            .ok_or_else(|| Error::not_found("breakpoint"))?;
        let item = self
            .items
            .get(
                &keys::service(&p.project_id, service),
                &keys::breakpoint_sk(id),
            )
            .await?
            .ok_or_else(|| Error::not_found("breakpoint"))?;
        let bp = Breakpoint::from_item(&item)
            .filter(|b| b.deleted_at.is_none())
            .ok_or_else(|| Error::not_found("breakpoint"))?;
        Ok((bp, item))
    }

    /// `POST /api/breakpoints`. A breakpoint set by file and line inherits the function
    /// name and label an SDK registered there, so it fires in SDKs that match only on
    /// those (reference §2.3).
    pub async fn create_breakpoint(&self, p: &Principal, body: &[u8]) -> Result<Value> {
        let v = parse_lenient_json(body)?;
        let Value::Object(m) = v else {
            return Err(Error::bad_request(
                "invalid_payload",
                "request body must be a JSON object",
            ));
        };
        let service = field_string(&m, "service_name", MAX_NAME_LEN)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| Error::bad_request("missing_field", "`service_name` is required"))?;
        validate_service_name(&service)?;
        let now = self.now_ms();
        let mut bp = Breakpoint::new(
            self.new_uuid(),
            service.clone(),
            CallSite {
                file_path: field_string(&m, "file_path", MAX_PATH_LEN)?.unwrap_or_default(),
                line_number: bounded(
                    "line_number",
                    field_int(&m, "line_number")?,
                    0,
                    i64::from(i32::MAX),
                )?
                .unwrap_or(0),
                function_name: field_string(&m, "function_name", MAX_NAME_LEN)?.unwrap_or_default(),
                label: field_string(&m, "label", MAX_NAME_LEN)?.unwrap_or_default(),
            },
            Origin::Manual,
            now,
        );
        let mut patch = m.clone();
        for k in [
            "service_name",
            "file_path",
            "line_number",
            "function_name",
            "label",
        ] {
            patch.remove(k);
        }
        apply_patch(&mut bp, &patch, now)?;
        if bp.file_path.is_empty() && (bp.function_name.is_empty() || bp.label.is_empty()) {
            return Err(Error::bad_request(
                "missing_field",
                "a breakpoint needs `file_path` and `line_number`, or `function_name` and `label`",
            ));
        }
        if (bp.function_name.is_empty() || bp.label.is_empty()) && !bp.file_path.is_empty() {
            let loc = self
                .items
                .get(
                    &keys::code(&p.project_id, &service),
                    &keys::code_sk(&bp.file_path, bp.line_number),
                )
                .await?;
            if let Some(loc) = loc {
                if bp.function_name.is_empty() {
                    bp.function_name = loc.get_str("function_name").unwrap_or_default().to_owned();
                }
                if bp.label.is_empty() {
                    bp.label = loc
                        .get_str("label")
                        .filter(|l| !l.is_empty())
                        .map_or_else(|| default_label(&bp.function_name), str::to_owned);
                }
            }
        }
        self.ensure_free_call_site(&p.project_id, &bp, now).await?;
        self.touch_service(&p.project_id, &service).await?;
        self.index_breakpoint(&p.project_id, &service, &bp.id)
            .await?;
        let item = Item::new(
            keys::service(&p.project_id, &service),
            keys::breakpoint_sk(&bp.id),
            bp.to_attrs(),
        );
        self.items.put(item, Some(Condition::NotExists)).await?;
        self.announce_breakpoint(&p.project_id, &bp, names::BREAKPOINT_CREATED);
        Ok(with_drops(&bp, now, &json!({})))
    }

    /// `PATCH /api/breakpoints/{id}`: only the named fields change (counters are never
    /// overwritten). Re-enabling an exhausted or expired breakpoint re-arms it.
    pub async fn update_breakpoint(&self, p: &Principal, id: &str, body: &[u8]) -> Result<Value> {
        let Value::Object(patch) = parse_lenient_json(body)? else {
            return Err(Error::bad_request(
                "invalid_payload",
                "request body must be a JSON object",
            ));
        };
        let (current, _) = self.load_breakpoint(p, id).await?;
        let now = self.now_ms();
        let mut next = current.clone();
        apply_patch(&mut next, &patch, now)?;
        let mut ops = Vec::new();
        let before = current.to_attrs();
        for (k, v) in next.to_attrs() {
            if COUNTERS.contains(&k.as_str()) {
                continue;
            }
            if before.get(&k) != Some(&v) {
                ops.push(UpdateOp::Set(k, v));
            }
        }
        // `enabled: true` on a breakpoint that is not capturing re-arms it: a fresh capture
        // budget when exhausted, a fresh expiry when expired (unless one was given).
        let rearm =
            patch.get("enabled") == Some(&Value::Bool(true)) && current.inactive(now).is_some();
        if rearm {
            ops.push(UpdateOp::Set("disabled_reason".into(), Value::Null));
            if next.max_captures > 0 && current.capture_count >= next.max_captures {
                ops.push(UpdateOp::set("capture_count", 0));
            }
            let expiry_given =
                patch.contains_key("expire_at") || patch.contains_key("expires_in_seconds");
            if !expiry_given && next.expire_at.is_some_and(|t| t <= now) {
                ops.push(UpdateOp::set("expire_at", now + defaults::EXPIRY_MS));
            }
        }
        if patch.get("reset_capture_count") == Some(&Value::Bool(true)) {
            ops.push(UpdateOp::set("capture_count", 0));
        }
        if next.deleted_at.is_none() && (next.enabled || rearm) {
            self.ensure_free_call_site(&p.project_id, &next, now)
                .await?;
        }
        ops.push(UpdateOp::set("updated_at", now));
        let pk = keys::service(&p.project_id, &current.service_name);
        let cond = Condition::And(vec![
            Condition::Exists,
            Condition::cmp("deleted_at", CmpOp::Eq, Value::Null),
        ]);
        let item = self
            .items
            .update(&pk, &keys::breakpoint_sk(id), &ops, Some(cond))
            .await
            .map_err(|e| match e {
                crate::ports::StoreError::ConditionFailed => Error::not_found("breakpoint"),
                e => e.into(),
            })?;
        let updated = Breakpoint::from_item(&item).ok_or_else(|| Error::not_found("breakpoint"))?;
        self.announce_breakpoint(&p.project_id, &updated, names::BREAKPOINT_UPDATED);
        Ok(with_drops(&updated, now, &drops_of(&item.attrs)))
    }

    /// SDKs cache one breakpoint per (function, label): a second active one there would
    /// never fire predictably, so it is refused (409) with the id of the one to edit.
    async fn ensure_free_call_site(&self, project: &str, bp: &Breakpoint, now: i64) -> Result<()> {
        if bp.function_name.is_empty() || bp.label.is_empty() {
            return Ok(());
        }
        let existing = self.service_breakpoints(project, &bp.service_name).await?;
        let clash = existing.iter().find(|b| {
            b.id != bp.id
                && b.function_name == bp.function_name
                && b.label == bp.label
                && b.inactive(now).is_none()
        });
        match clash {
            Some(other) => Err(Error::new(
                ErrorKind::Conflict,
                "duplicate_breakpoint",
                format!(
                    "breakpoint {} is already active at {}:{}; update it instead",
                    other.id, bp.function_name, bp.label
                ),
            )),
            None => Ok(()),
        }
    }

    /// `DELETE /api/breakpoints/{id}`: leaves a tombstone for a while so late captures
    /// are counted as `deleted`.
    pub async fn delete_breakpoint(&self, p: &Principal, id: &str) -> Result<()> {
        let (current, _) = self.load_breakpoint(p, id).await?;
        let now = self.now_ms();
        let ops = [
            UpdateOp::set("enabled", false),
            UpdateOp::set("deleted_at", now),
            UpdateOp::set("updated_at", now),
            UpdateOp::SetTtl(Some(now / 1000 + defaults::TOMBSTONE_SECS)),
        ];
        let pk = keys::service(&p.project_id, &current.service_name);
        let item = self
            .items
            .update(&pk, &keys::breakpoint_sk(id), &ops, Some(Condition::Exists))
            .await?;
        if let Some(b) = Breakpoint::from_item(&item) {
            self.announce_breakpoint(&p.project_id, &b, names::BREAKPOINT_DELETED);
        }
        Ok(())
    }

    /// `GET /api/snapshots`: newest first, filtered, cursor-paginated.
    pub async fn list_snapshots(&self, p: &Principal, f: SnapshotFilter) -> Result<Value> {
        let mut conds = Vec::new();
        if let Some(s) = &f.service {
            conds.push(Condition::cmp("service_name", CmpOp::Eq, s.as_str()));
        }
        if let Some(b) = &f.breakpoint_id {
            conds.push(Condition::cmp("breakpoint_id", CmpOp::Eq, b.as_str()));
        }
        if let Some(from) = f.from_ms {
            conds.push(Condition::cmp("received_at", CmpOp::Ge, from));
        }
        if let Some(to) = f.to_ms {
            conds.push(Condition::cmp("received_at", CmpOp::Le, to));
        }
        let limit = f.limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let query = Query {
            descending: true,
            limit: Some(limit),
            cursor: f.cursor,
            filter: if conds.is_empty() {
                None
            } else {
                Some(Condition::And(conds))
            },
            ..Query::default()
        };
        let page = self.query_snapshots(&p.project_id, query).await?;
        let snapshots: Vec<Value> = page
            .items
            .iter()
            .map(|i| snapshot_summary(&i.attrs))
            .collect();
        Ok(json!({"snapshots": snapshots, "next_cursor": page.next}))
    }

    /// `GET /api/snapshots/{id}`: the snapshot with its payload.
    pub async fn get_snapshot(&self, p: &Principal, id: &str) -> Result<Value> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::not_found("snapshot"));
        }
        let item = self
            .items
            .get(&keys::snapshots(&p.project_id), id)
            .await?
            .ok_or_else(|| Error::not_found("snapshot"))?;
        let mut out = snapshot_summary(&item.attrs);
        let payload = match (item.attrs.get("payload"), item.get_str("payload_blob")) {
            (Some(pl), _) => pl.clone(),
            (None, Some(blob)) => match self.blobs.get(blob).await? {
                Some(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                None => Value::Null,
            },
            _ => Value::Null,
        };
        if let (Value::Object(o), Value::Object(pl)) = (&mut out, payload) {
            o.extend(pl);
            // The stack as frames too, parsed by the same parser as code discovery, so the
            // dashboard need not know every language's trace format.
            let frames = o
                .get("stack_trace")
                .and_then(Value::as_str)
                .map(crate::stacktrace::parse)
                .unwrap_or_default();
            o.insert(
                "stack_frames".into(),
                serde_json::to_value(frames).unwrap_or_else(|_| json!([])),
            );
        }
        Ok(out)
    }

    /// `POST /api/conditions/validate`: parse and classify without saving.
    pub fn validate_condition(&self, expression: &str) -> Value {
        match Expr::compile(expression) {
            Ok(c) => json!({"valid": true, "condition_eval": c.classify().as_str()}),
            Err(e) => {
                json!({"valid": false, "error": e.to_string(), "condition_eval": classify(expression).as_str()})
            }
        }
    }
}

/// The label a call site without one is known by: the last segment of its function name,
/// as the Go SDK does (`main.(*T).Handle` → `Handle`).
fn default_label(function: &str) -> String {
    function
        .rsplit(['.', ':', '#', '/', '\\'])
        .next()
        .unwrap_or(function)
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '_')
        .to_owned()
}

/// Counter attributes that only atomic updates may change.
const COUNTERS: [&str; 5] = [
    "capture_count",
    "drop_count",
    "rate_window",
    "rate_count",
    "last_captured_at",
];

fn with_drops(bp: &Breakpoint, now: i64, drops: &Value) -> Value {
    let mut v = bp.to_api(now);
    if let Value::Object(m) = &mut v {
        m.insert(
            "drops".into(),
            if drops.is_null() {
                json!({})
            } else {
                drops.clone()
            },
        );
    }
    v
}

fn service_view(i: &Item) -> Value {
    let a = &i.attrs;
    let ms = |k: &str| a.get(k).and_then(Value::as_i64).map(format_ms);
    json!({
        "name": i.sk,
        "kill_switch": a.get("kill_switch").and_then(Value::as_bool).unwrap_or(false),
        "first_seen": ms("first_seen"),
        "last_seen": ms("last_seen"),
        "last_capture_at": ms("last_capture_at"),
        "captures": a.get("captures_total").and_then(Value::as_i64).unwrap_or(0),
        "drops_total": a.get("drops_total").and_then(Value::as_i64).unwrap_or(0),
        "drops": drops_of(a),
        "circuit_breaker_trips": a.get("sdk_event_circuit_breaker_tripped").and_then(Value::as_i64).unwrap_or(0),
        "pii_patterns": a.get("pii_patterns").cloned().unwrap_or_else(|| json!([])),
    })
}

fn field_string(m: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Error::bad_request(
            "invalid_field",
            format!("`{key}` is longer than {max} bytes"),
        )),
        Some(other) => Err(Error::bad_request(
            "invalid_field",
            format!("`{key}` must be a string, got {}", type_name(other)),
        )),
    }
}

fn field_int(m: &Map<String, Value>, key: &str) -> Result<Option<i64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            Error::bad_request("invalid_field", format!("`{key}` must be an integer"))
        }),
        Some(other) => Err(Error::bad_request(
            "invalid_field",
            format!("`{key}` must be an integer, got {}", type_name(other)),
        )),
    }
}

fn bounded(key: &str, v: Option<i64>, min: i64, max: i64) -> Result<Option<i64>> {
    match v {
        Some(n) if n < min || n > max => Err(Error::bad_request(
            "invalid_field",
            format!("`{key}` must be between {min} and {max}"),
        )),
        other => Ok(other),
    }
}

/// Applies the editable fields of a create/patch body, validating each. Unknown fields
/// are refused so typos do not pass silently.
fn apply_patch(bp: &mut Breakpoint, m: &Map<String, Value>, now: i64) -> Result<()> {
    if m.contains_key("expire_at") && m.contains_key("expires_in_seconds") {
        return Err(Error::bad_request(
            "conflicting_fields",
            "give `expire_at` or `expires_in_seconds`, not both",
        ));
    }
    for (k, v) in m {
        match k.as_str() {
            "condition" => {
                bp.condition = match field_string(m, k, crate::condition::MAX_CONDITION_LEN)? {
                    Some(c) if !c.trim().is_empty() => {
                        Expr::compile(&c).map_err(|e| {
                            Error::bad_request(
                                "invalid_condition",
                                format!("invalid condition: {e}"),
                            )
                        })?;
                        Some(c)
                    }
                    _ => None,
                }
            }
            "mode" => {
                let s = field_string(m, k, 32)?.unwrap_or_else(|| "snapshot".into());
                bp.mode = Mode::parse(&s).ok_or_else(|| {
                    Error::bad_request(
                        "invalid_field",
                        "`mode` must be \"snapshot\" or \"logpoint\"",
                    )
                })?;
            }
            "capture_expressions" => {
                let exprs: Vec<String> = match v {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a
                        .iter()
                        .map(|e| e.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            Error::bad_request(
                                "invalid_field",
                                "`capture_expressions` must be strings",
                            )
                        })?,
                    _ => {
                        return Err(Error::bad_request(
                            "invalid_field",
                            "`capture_expressions` must be an array of strings",
                        ))
                    }
                };
                if exprs.len() > MAX_EXPRESSIONS {
                    return Err(Error::bad_request(
                        "invalid_field",
                        format!("at most {MAX_EXPRESSIONS} capture expressions"),
                    ));
                }
                for e in &exprs {
                    Expr::compile(e).map_err(|err| {
                        Error::bad_request(
                            "invalid_expression",
                            format!("invalid capture expression `{e}`: {err}"),
                        )
                    })?;
                }
                bp.capture_expressions = exprs;
            }
            "enabled" => {
                bp.enabled = v.as_bool().ok_or_else(|| {
                    Error::bad_request("invalid_field", "`enabled` must be a boolean")
                })?;
            }
            "max_captures" => {
                bp.max_captures = bounded(k, field_int(m, k)?, 0, 1_000_000)?.unwrap_or(0)
            }
            "rate_limit_per_minute" => {
                bp.rate_limit_per_minute = bounded(k, field_int(m, k)?, 0, 100_000)?.unwrap_or(0)
            }
            "expire_at" => {
                bp.expire_at = match v {
                    Value::Null => None,
                    Value::String(s) => Some(parse_timestamp_ms(s).ok_or_else(|| {
                        Error::bad_request(
                            "invalid_field",
                            "`expire_at` must be an RFC 3339 timestamp or null",
                        )
                    })?),
                    _ => {
                        return Err(Error::bad_request(
                            "invalid_field",
                            "`expire_at` must be an RFC 3339 timestamp or null",
                        ))
                    }
                }
            }
            "expires_in_seconds" => {
                bp.expire_at =
                    bounded(k, field_int(m, k)?, 1, 365 * 24 * 3600)?.map(|s| now + s * 1000)
            }
            "idle_timeout_hours" => {
                bp.idle_timeout_hours = bounded(k, field_int(m, k)?, 1, 24 * 365)?
            }
            "stack_depth" => bp.stack_depth = bounded(k, field_int(m, k)?, 1, 50)?,
            "max_depth" => bp.max_depth = bounded(k, field_int(m, k)?, 1, 10)?,
            "max_payload_bytes" => {
                bp.max_payload_bytes = bounded(k, field_int(m, k)?, 256, 1024 * 1024)?
            }
            "file_path" => bp.file_path = field_string(m, k, MAX_PATH_LEN)?.unwrap_or_default(),
            "line_number" => {
                bp.line_number = bounded(k, field_int(m, k)?, 0, i64::from(i32::MAX))?.unwrap_or(0)
            }
            "function_name" => {
                bp.function_name = field_string(m, k, MAX_NAME_LEN)?.unwrap_or_default()
            }
            "label" => bp.label = field_string(m, k, MAX_NAME_LEN)?.unwrap_or_default(),
            "reset_capture_count" => {}
            "service_name" => {
                if v.as_str() != Some(bp.service_name.as_str()) {
                    return Err(Error::new(
                        ErrorKind::BadRequest,
                        "immutable_field",
                        "`service_name` cannot be changed",
                    ));
                }
            }
            other => {
                return Err(Error::bad_request(
                    "unknown_field",
                    format!("unknown field `{other}`"),
                ));
            }
        }
    }
    Ok(())
}
