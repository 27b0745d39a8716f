//! `POST /sdk/snapshots/capture`: everything DESIGN §5 says the server enforces.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::sdk::ServiceSettings;
use super::{lock, Sightline};
use crate::error::Result;
use crate::events::{names, Audience};
use crate::keys;
use crate::model::{Breakpoint, DropReason, Mode, Principal};
use crate::pii::SecurityFlag;
use crate::ports::{CmpOp, Condition, Item, Query, StoreError, Transacted, UpdateOp, Write};
use crate::timefmt::format_ms;
use crate::wire::CaptureRequest;

/// Positions in a capture's transaction: the duplicate marker, then the capture slot.
const DEDUP_WRITE: usize = 0;
const SLOT_WRITE: usize = 1;

/// A scrubbed snapshot ready to store.
struct PreparedSnapshot {
    id: String,
    /// The snapshot item, with its payload inline or a reference to `blob`.
    item: Item,
    /// The trace's reference to the snapshot, when it has a trace id.
    trace_link: Option<Item>,
    /// The list form, for dashboards.
    summary: Value,
    /// The payload's blob key when it was too large to keep inline.
    blob: Option<String>,
}

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
        Ok(object([("results", Value::Array(results))]))
    }

    /// Resolves the breakpoint and service settings (cached), checks kill switch, activity
    /// and condition, then stores the snapshot with one [`ItemStore::transact`]: the
    /// duplicate marker, the capture slot (the exact `max_captures`/rate limit check), the
    /// snapshot, its trace link and the service counters commit together or not at all.
    ///
    /// [`ItemStore::transact`]: crate::ports::ItemStore::transact
    pub async fn capture(&self, p: &Principal, mut req: CaptureRequest) -> Result<CaptureOutcome> {
        let project = p.project_id.as_str();
        let now = self.now_ms();
        let Some((mut bp, cached)) = self.resolve_capture_breakpoint(project, &req, true).await?
        else {
            let service = req.service_name.as_deref().unwrap_or("unknown");
            crate::wire::validate_service_name(service)?;
            return self
                .drop(project, service, None, DropReason::UnknownBreakpoint)
                .await;
        };
        if cached && bp.inactive(now).is_some() {
            // A cached copy may lag behind the store: confirm before dropping.
            if let Some((fresh, _)) = self
                .resolve_capture_breakpoint(project, &req, false)
                .await?
            {
                bp = fresh;
            }
        }
        let service = bp.service_name.clone();
        let settings = self.capture_settings(project, &service).await?;
        if settings.kill_switch {
            return self
                .drop(project, &service, Some(&bp.id), DropReason::KillSwitch)
                .await;
        }
        let dedup_key = dedup_key(&bp.id, &req);
        let verdict = match bp.inactive(now) {
            Some(inactive) => Some(inactive.reason()),
            None => match bp.condition.as_deref() {
                None => None,
                Some(cond) => match self
                    .conditions
                    .get_or_compile(cond)
                    .and_then(|c| with_condition_context(&mut req, |ctx| c.evaluate_bool(ctx)))
                {
                    Ok(true) => None,
                    Ok(false) => Some(DropReason::ConditionFalse),
                    Err(_) => Some(DropReason::ConditionError),
                },
            },
        };
        if let Some(reason) = verdict {
            // A retry of a capture stored earlier is a duplicate, whatever holds now.
            let seen = self
                .items
                .get(&keys::dedup(project), &dedup_key)
                .await?
                .is_some();
            let reason = if seen { DropReason::Duplicate } else { reason };
            return self.drop(project, &service, Some(&bp.id), reason).await;
        }

        let PreparedSnapshot {
            id,
            item,
            trace_link,
            summary,
            blob,
        } = self
            .prepare_snapshot(project, &bp, req, now, &settings.pii_patterns)
            .await?;
        let outcome = self
            .commit_capture(project, bp, dedup_key, item, trace_link, now)
            .await;
        let bp = match outcome {
            Ok(Ok(bp)) => bp,
            Ok(Err((reason, bp_id))) => {
                self.forget_blob(blob.as_deref()).await;
                return self.drop(project, &service, Some(&bp_id), reason).await;
            }
            Err(e) => {
                self.forget_blob(blob.as_deref()).await;
                return Err(e);
            }
        };
        if bp.max_captures > 0 && bp.capture_count >= bp.max_captures {
            self.disable_exhausted(project, &bp).await?;
        }
        let breakpoint = json!({"id": bp.id, "capture_count": bp.capture_count, "max_captures": bp.max_captures});
        self.publish(
            project,
            &service,
            names::SNAPSHOT_CAPTURED,
            object([("snapshot", summary), ("breakpoint", breakpoint)]),
            Audience::Dashboard,
        );
        Ok(CaptureOutcome::Stored {
            id,
            breakpoint_id: bp.id.clone(),
        })
    }

    /// Writes the prepared snapshot in one transaction with its duplicate marker, the
    /// capture slot and the service counters. Returns the breakpoint after the slot was
    /// taken, or why the capture was not stored (nothing was written then).
    async fn commit_capture(
        &self,
        project: &str,
        mut bp: Arc<Breakpoint>,
        dedup_key: String,
        snapshot: Item,
        trace_link: Option<Item>,
        now: i64,
    ) -> Result<std::result::Result<Arc<Breakpoint>, (DropReason, String)>> {
        // The marker lives as long as its snapshot: a resend of a stored snapshot stays a
        // duplicate while it is kept, and the three items of a capture expire together
        // (an ordered store keeps their expiry entries side by side).
        let marker =
            Item::new(keys::dedup(project), dedup_key, Map::new()).with_ttl(snapshot.expires_at);
        let mut writes = vec![
            Write::Put {
                item: marker,
                condition: Some(Condition::NotExists),
            },
            capture_slot(project, &bp, now),
            Write::Put {
                item: snapshot,
                condition: None,
            },
        ];
        if let Some(link) = trace_link {
            writes.push(Write::Put {
                item: link,
                condition: None,
            });
        }
        writes.push(Write::Update {
            pk: keys::services(project),
            sk: bp.service_name.clone(),
            ops: vec![
                UpdateOp::add("captures_total", 1),
                UpdateOp::set("last_capture_at", now),
            ],
            condition: None,
        });
        let window = now.div_euclid(60_000);
        for _ in 0..8 {
            let epoch = self.cache_epoch();
            match self.items.transact(&writes).await? {
                Transacted::Written(items) => {
                    let updated = items
                        .get(SLOT_WRITE)
                        .and_then(Option::as_ref)
                        .and_then(Breakpoint::from_item)
                        .map(Arc::new)
                        .unwrap_or(bp);
                    self.cache_breakpoint(project, &updated, epoch);
                    return Ok(Ok(updated));
                }
                Transacted::ConditionFailed(DEDUP_WRITE) => {
                    return Ok(Err((DropReason::Duplicate, bp.id.clone())));
                }
                Transacted::ConditionFailed(_) => {
                    // No slot: find out why from the stored breakpoint.
                    let epoch = self.cache_epoch();
                    let Some(fresh) = self
                        .get_breakpoint_in(project, &bp.service_name, &bp.id)
                        .await?
                    else {
                        return Ok(Err((DropReason::Deleted, bp.id.clone())));
                    };
                    let fresh = Arc::new(fresh);
                    self.cache_breakpoint(project, &fresh, epoch);
                    if let Some(inactive) = fresh.inactive(now) {
                        return Ok(Err((inactive.reason(), fresh.id.clone())));
                    }
                    if fresh.rate_limit_per_minute > 0
                        && fresh.rate_window == window
                        && fresh.rate_count >= fresh.rate_limit_per_minute
                    {
                        return Ok(Err((DropReason::RateLimited, fresh.id.clone())));
                    }
                    if fresh.rate_window > window {
                        // Another process's clock is ahead; count against its window.
                        return Ok(Err((DropReason::RateLimited, fresh.id.clone())));
                    }
                    bp = fresh;
                    writes[SLOT_WRITE] = capture_slot(project, &bp, now);
                }
            }
        }
        Ok(Err((DropReason::RateLimited, bp.id.clone())))
    }

    /// Removes the blob of a snapshot that was not stored. Best effort: an orphaned blob
    /// is unreachable, and the bucket's lifecycle rule removes it.
    async fn forget_blob(&self, blob: Option<&str>) {
        if let Some(key) = blob {
            let _ = self.blobs.delete(key).await;
        }
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

    /// By id first (from the cache when `cached`; the flag returned says whether it came
    /// from there); then, for SDKs that send only some fields, by function+label and by
    /// file+line within the named service (DESIGN §5).
    async fn resolve_capture_breakpoint(
        &self,
        project: &str,
        req: &CaptureRequest,
        cached: bool,
    ) -> Result<Option<(Arc<Breakpoint>, bool)>> {
        if let Some(id) = &req.breakpoint_id {
            if cached {
                if let Some(bp) = self.cached_breakpoint(project, id) {
                    return Ok(Some((bp, true)));
                }
            }
            let epoch = self.cache_epoch();
            let mut found = None;
            if let Some(service) = &req.service_name {
                found = self.get_breakpoint_in(project, service, id).await?;
            }
            if found.is_none() {
                found = self.find_breakpoint(project, id).await?;
            }
            if let Some(bp) = found {
                let bp = Arc::new(bp);
                self.cache_breakpoint(project, &bp, epoch);
                return Ok(Some((bp, false)));
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
        Ok(pick(&by_label)
            .or_else(|| pick(&by_line))
            .map(|bp| (Arc::new(bp), false)))
    }

    fn cache_epoch(&self) -> u64 {
        lock(&self.state_cache).epoch
    }

    /// A breakpoint read within `state_cache_ms`. Its counters may lag; the capture slot's
    /// condition is checked against the store, so limits stay exact.
    fn cached_breakpoint(&self, project: &str, id: &str) -> Option<Arc<Breakpoint>> {
        let now = self.now_ms();
        let cache = lock(&self.state_cache);
        let (bp, at) = cache
            .breakpoints
            .get(&(project.to_owned(), id.to_owned()))?;
        (now - at < self.config.state_cache_ms).then(|| Arc::clone(bp))
    }

    /// Keeps a breakpoint read, unless a change was published since `epoch` (the read
    /// may predate it).
    fn cache_breakpoint(&self, project: &str, bp: &Arc<Breakpoint>, epoch: u64) {
        let now = self.now_ms();
        let mut cache = lock(&self.state_cache);
        if cache.epoch != epoch {
            return;
        }
        if cache.breakpoints.len() > 10_000 {
            cache.breakpoints.clear();
        }
        cache
            .breakpoints
            .insert((project.to_owned(), bp.id.clone()), (Arc::clone(bp), now));
    }

    /// The service's settings, read at most once per `state_cache_ms` (changes made
    /// through this process apply at once).
    async fn capture_settings(&self, project: &str, service: &str) -> Result<Arc<ServiceSettings>> {
        let key = (project.to_owned(), service.to_owned());
        let now = self.now_ms();
        let epoch = {
            let cache = lock(&self.state_cache);
            if let Some((settings, at)) = cache.settings.get(&key) {
                if now - at < self.config.state_cache_ms {
                    return Ok(Arc::clone(settings));
                }
            }
            cache.epoch
        };
        let settings = Arc::new(self.service_settings(project, service).await?);
        let mut cache = lock(&self.state_cache);
        if cache.epoch == epoch {
            if cache.settings.len() > 10_000 {
                cache.settings.clear();
            }
            cache.settings.insert(key, (Arc::clone(&settings), now));
        }
        Ok(settings)
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

    /// Scrubs and limits the snapshot and builds the items to store; a large payload goes
    /// to the blob store now (removed again if the capture is not stored).
    async fn prepare_snapshot(
        &self,
        project: &str,
        bp: &Breakpoint,
        req: CaptureRequest,
        now: i64,
        patterns: &[crate::pii::CustomPattern],
    ) -> Result<PreparedSnapshot> {
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
        // The variables' length counts towards the payload's; it is measured at most once.
        let mut variables_len = None;
        if let Some(limit) = bp.max_payload_bytes.filter(|l| *l > 0) {
            let size = json_len(&variables);
            if size as i64 > limit {
                variables = json!({"_truncated": true, "_payload_size": size, "_max_payload": limit, "_truncated_by": "payload_limit"});
            } else {
                variables_len = Some(size);
            }
        }
        let mut request_context = req.request_context;
        if let Some(ctx) = request_context.as_mut() {
            flags.extend(scrubber.scrub_request_context(ctx));
        }
        if let Some(er) = expression_results.as_mut() {
            flags.extend(scrubber.scrub_value(er, "expression_results"));
        }
        let stack_trace = truncate_utf8(req.stack_trace, self.config.max_stack_trace_bytes);

        let id = format!("{:012x}{}", now.max(0), &self.ids.random_hex128()[..20]);
        let payload = Payload {
            variables,
            stack_trace: stack_trace.into(),
            request_context: request_context.unwrap_or(Value::Null),
            expression_results: expression_results.unwrap_or(Value::Null),
        };
        let payload_bytes = payload.json_len(variables_len);
        let payload = payload.into_value();
        let lower = |s: Option<String>| {
            s.map_or(Value::Null, |mut s| {
                s.make_ascii_lowercase();
                s.into()
            })
        };
        let captured_at = req.captured_at.unwrap_or(now);
        let mut summary = Map::with_capacity(16);
        for (name, value) in [
            ("id", Value::from(id.as_str())),
            ("breakpoint_id", bp.id.as_str().into()),
            ("service_name", bp.service_name.as_str().into()),
            (
                "file_path",
                req.file_path.unwrap_or_else(|| bp.file_path.clone()).into(),
            ),
            (
                "line_number",
                req.line_number.unwrap_or(bp.line_number).into(),
            ),
            (
                "function_name",
                req.function_name
                    .unwrap_or_else(|| bp.function_name.clone())
                    .into(),
            ),
            (
                "label",
                req.label.unwrap_or_else(|| bp.label.clone()).into(),
            ),
            (
                "mode",
                if logpoint { "logpoint" } else { "snapshot" }.into(),
            ),
            ("trace_id", lower(req.trace_id)),
            ("span_id", lower(req.span_id)),
            ("captured_at", captured_at.into()),
            ("received_at", now.into()),
            (
                "security_flags",
                serde_json::to_value(&flags).unwrap_or_else(|_| Value::Array(Vec::new())),
            ),
            ("payload_bytes", payload_bytes.into()),
        ] {
            summary.insert(name.into(), value);
        }
        let expires = now / 1000 + self.config.snapshot_retention_secs;
        let trace_link = summary
            .get("trace_id")
            .and_then(Value::as_str)
            .map(|trace_id| {
                Self::snapshot_trace_link(project, trace_id, captured_at, summary.clone())
                    .with_ttl(Some(expires))
            });
        let event_summary = with_rfc3339_times(summary.clone());
        let mut item_attrs = summary;
        let mut blob = None;
        if payload_bytes > self.config.inline_payload_bytes {
            let key = keys::snapshot_blob(project, &bp.service_name, &bp.id, &id);
            let mut text = Vec::with_capacity(payload_bytes);
            // Writing a value to a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut text, &payload);
            self.blobs.put(&key, text, false).await?;
            item_attrs.insert("payload_blob".into(), key.as_str().into());
            blob = Some(key);
        } else {
            item_attrs.insert("payload".into(), payload);
        }
        Ok(PreparedSnapshot {
            item: Item::new(keys::snapshots(project), id.clone(), item_attrs)
                .with_ttl(Some(expires)),
            id,
            trace_link,
            summary: event_summary,
            blob,
        })
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

/// The idempotency marker of a capture: `{captured_at}#{digest}`, the digest of the
/// client's key, or of breakpoint + time + content. A resend carries the same
/// `captured_at`, so the prefix finds it again; it makes markers arrive in about time
/// order, so an ordered store appends them instead of writing a random page of its key
/// index for each capture. The parts are fed to the digest as they are written, so no text
/// is built.
fn dedup_key(bp_id: &str, req: &CaptureRequest) -> String {
    let digest = dedup_digest(bp_id, req);
    // Zero-padded so markers sort by time; `-` for no time, or one 13 digits cannot hold.
    match req.captured_at {
        Some(ms @ 0..=9_999_999_999_999) => format!("{ms:013}#{digest}"),
        _ => format!("-#{digest}"),
    }
}

fn dedup_digest(bp_id: &str, req: &CaptureRequest) -> String {
    let mut digest = DigestWriter(Sha256::new());
    match &req.idempotency_key {
        Some(k) => {
            for part in [bp_id, "\0key\0", k] {
                digest.0.update(part);
            }
        }
        None => {
            // The JSON array of these parts, written without copying them.
            let content = (
                &req.variables,
                &req.stack_trace,
                &req.expression_results,
                &req.trace_id,
                &req.span_id,
            );
            for part in [bp_id, "\0", &req.captured_at_raw, "\0"] {
                digest.0.update(part);
            }
            // Writing values to a digest cannot fail.
            let _ = serde_json::to_writer(&mut digest, &content);
        }
    }
    hex::encode(digest.0.finalize())
}

/// Hashes what is written to it.
struct DigestWriter(Sha256);

impl std::io::Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A JSON object built by moving `members` in: `json!` copies every value it is given.
fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// Evaluates `f` on what a condition sees: the variables, plus `request` (the request
/// context) when the variables do not already define that name. The context is lent to
/// the variables for the call and moved back, so nothing is copied.
fn with_condition_context<T>(req: &mut CaptureRequest, f: impl FnOnce(&Value) -> T) -> T {
    let Value::Object(vars) = &mut req.variables else {
        let mut ctx = Map::new();
        if let Some(rc) = &req.request_context {
            ctx.insert("request".into(), rc.clone());
        }
        return f(&Value::Object(ctx));
    };
    let lend = !vars.contains_key("request");
    if lend {
        if let Some(rc) = req.request_context.take() {
            vars.insert("request".into(), rc);
        }
    }
    let out = f(&req.variables);
    if lend {
        if let Value::Object(vars) = &mut req.variables {
            // The key was appended last, so removing it keeps the variables' order.
            req.request_context = vars.remove("request");
        }
    }
    out
}

/// Length of a value's compact JSON text, without building the text.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// A snapshot's payload, stored as a JSON object with these members in this order.
struct Payload {
    variables: Value,
    stack_trace: Value,
    request_context: Value,
    expression_results: Value,
}

impl Payload {
    /// The object's text without its values.
    const FRAME: &'static str =
        r#"{"variables":,"stack_trace":,"request_context":,"expression_results":}"#;

    /// Length of the object's compact JSON text; `variables_len` when already measured.
    fn json_len(&self, variables_len: Option<usize>) -> usize {
        Self::FRAME.len()
            + variables_len.unwrap_or_else(|| json_len(&self.variables))
            + json_len(&self.stack_trace)
            + json_len(&self.request_context)
            + json_len(&self.expression_results)
    }

    /// The object, built by moving the parts in: no deep copies of the variables.
    fn into_value(self) -> Value {
        let mut m = Map::with_capacity(4);
        m.insert("variables".into(), self.variables);
        m.insert("stack_trace".into(), self.stack_trace);
        m.insert("request_context".into(), self.request_context);
        m.insert("expression_results".into(), self.expression_results);
        Value::Object(m)
    }
}

/// The conditional update that takes a capture slot: counts the capture against
/// `max_captures` and the per-minute rate limit in one atomic write, so the limits are
/// exact under any concurrency. `bp` only chooses the rate window's branch; the
/// condition is checked against the stored breakpoint.
fn capture_slot(project: &str, bp: &Breakpoint, now: i64) -> Write {
    let window = now.div_euclid(60_000);
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
    Write::Update {
        pk: keys::service(project, &bp.service_name),
        sk: keys::breakpoint_sk(&bp.id),
        ops,
        condition: Some(Condition::And(base.into_iter().chain([rate]).collect())),
    }
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

fn truncate_utf8(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n…[truncated]", &s[..end])
}

/// The list form of a stored snapshot (no payload), times as RFC 3339.
pub(super) fn snapshot_summary(a: &Map<String, Value>) -> Value {
    // Copies all but the payload: a clone would copy the payload too, only to drop it.
    let m = a
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "payload" | "payload_blob"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    with_rfc3339_times(m)
}

/// Replaces the Unix-millisecond times of a snapshot's attributes with RFC 3339 text, in
/// place (no key is looked up or inserted again).
fn with_rfc3339_times(mut m: Map<String, Value>) -> Value {
    for (k, v) in m.iter_mut() {
        if matches!(k.as_str(), "captured_at" | "received_at") {
            if let Some(ms) = v.as_i64() {
                *v = format_ms(ms).into();
            }
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

    fn request(body: Value) -> CaptureRequest {
        CaptureRequest::from_value(body).unwrap_or_else(|e| panic!("valid request: {e}"))
    }

    #[test]
    fn dedup_key_hashes_the_same_text_as_before_streaming() {
        let keyed = request(json!({"breakpoint_id": "b1", "idempotency_key": "k-1"}));
        assert_eq!(
            dedup_key("b1", &keyed),
            format!("-#{}", super::super::sha256_hex("b1\0key\0k-1".as_bytes()))
        );
        let body = json!({
            "breakpoint_id": "b1",
            "variables": {"é": "\"quoted\"\n", "n": [1, 2.5, null, true]},
            "stack_trace": "at main",
            "trace_id": "ABC",
            "captured_at": "2026-01-01T00:00:00Z",
        });
        let content = request(body.clone());
        let text = format!(
            "b1\0{}\0{}",
            content.captured_at_raw,
            json!([
                content.variables,
                content.stack_trace,
                content.expression_results,
                content.trace_id,
                content.span_id
            ])
        );
        assert_eq!(
            dedup_key("b1", &content),
            format!(
                "1767225600000#{}",
                super::super::sha256_hex(text.as_bytes())
            )
        );
        assert_eq!(dedup_key("b1", &content), dedup_key("b1", &request(body)));
        let other = request(json!({"breakpoint_id": "b1", "variables": {"n": 2}}));
        assert_ne!(dedup_key("b1", &content), dedup_key("b1", &other));
    }

    #[test]
    fn dedup_keys_sort_by_captured_at_and_find_a_resend() {
        let at = |t: &str, k: &str| {
            dedup_key(
                "b1",
                &request(json!({"breakpoint_id": "b1", "captured_at": t, "idempotency_key": k})),
            )
        };
        assert_eq!(
            at("2026-01-01T00:00:01Z", "k"),
            at("2026-01-01T00:00:01Z", "k")
        );
        assert!(at("2026-01-01T00:00:01Z", "z") < at("2026-01-01T00:00:02Z", "a"));
        assert!(at("1970-01-01T00:00:00.001Z", "k").starts_with("0000000000001#"));
        // Times an ordered prefix cannot hold share one prefix.
        assert!(at("1969-12-31T23:59:59Z", "k").starts_with("-#"));
        assert!(at("not a time", "k").starts_with("-#"));
    }

    #[test]
    fn payload_length_is_the_length_of_its_text() {
        let payloads = [
            Payload {
                variables: json!({"s": "tab\t \u{1} \"q\" \\ é 😀", "f": [0.1, -2.5e-8, 1e300], "i": -7}),
                stack_trace: "line 1\nline 2".into(),
                request_context: json!({"headers": {"A": "b"}}),
                expression_results: Value::Null,
            },
            Payload {
                variables: json!({}),
                stack_trace: "".into(),
                request_context: Value::Null,
                expression_results: json!({"x > 1": true}),
            },
        ];
        for p in payloads {
            let vars_len = serde_json::to_vec(&p.variables).map(|v| v.len()).ok();
            let measured = p.json_len(None);
            assert_eq!(p.json_len(vars_len), measured);
            let text = serde_json::to_vec(&p.into_value()).unwrap_or_default();
            assert_eq!(measured, text.len());
        }
    }

    #[test]
    fn summary_leaves_out_the_payload_and_formats_times() {
        let attrs = json!({
            "id": "s1",
            "payload": {"variables": {"a": 1}},
            "captured_at": 0,
            "payload_blob": "k",
            "received_at": 1_000,
            "label": "l",
        });
        let Value::Object(attrs) = attrs else {
            unreachable!()
        };
        let summary = snapshot_summary(&attrs);
        assert_eq!(
            summary,
            json!({"id": "s1", "captured_at": "1970-01-01T00:00:00.000Z", "received_at": "1970-01-01T00:00:01.000Z", "label": "l"})
        );
        let keys: Vec<_> = summary
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["id", "captured_at", "received_at", "label"]);
    }
}
