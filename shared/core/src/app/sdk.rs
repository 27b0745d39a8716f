//! The SDK API: poll, auto-register, check-in, kill switch (reference §2, §3, §4, §7.5).

use serde_json::{json, Value};

use super::auth::attrs;
use super::{lock, sha256_hex, sse_path, uuid_format, Sightline};
use crate::error::{Error, Result};
use crate::events::{names, Audience};
use crate::keys;
use crate::model::{Breakpoint, CallSite, DropReason, Origin, Principal};
use crate::pii::{CustomPattern, Scrubber};
use crate::ports::{Condition, Item, Query, StoreError, Transacted, UpdateOp, Write};
use crate::wire::{validate_service_name, AutoRegisterRequest, CheckinRequest};

/// Re-record a service as seen at most this often per process.
const SERVICE_SEEN_INTERVAL_MS: i64 = 30_000;
const SDK_EVENT_TTL_SECS: i64 = 30 * 24 * 3600;

/// The built-in scrubber or a service's own.
pub(super) enum ScrubberRef {
    Builtin(&'static Scrubber),
    Custom(std::sync::Arc<Scrubber>),
}

impl std::ops::Deref for ScrubberRef {
    type Target = Scrubber;
    fn deref(&self) -> &Scrubber {
        match self {
            Self::Builtin(s) => s,
            Self::Custom(s) => s,
        }
    }
}

/// Per-service settings, kept on the service's settings item ([`keys::SERVICE_SETTINGS_SK`]).
#[derive(Debug, Clone, Default)]
pub(super) struct ServiceSettings {
    pub kill_switch: bool,
    pub pii_patterns: Vec<CustomPattern>,
}

impl ServiceSettings {
    /// The settings an item holds; defaults when it (or a field) is absent.
    fn from_item(item: Option<&Item>) -> Self {
        let Some(i) = item else {
            return Self::default();
        };
        Self {
            kill_switch: crate::stream::kill_switch_on(Some(i)),
            pii_patterns: i
                .attrs
                .get("pii_patterns")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
        }
    }
}

impl Sightline {
    /// `GET|POST /sdk/snapshots/active/{service}`: the active breakpoints, kill switch and
    /// SSE path. `events` are SDK telemetry (circuit breaker trips), recorded per service.
    pub async fn poll(&self, p: &Principal, service: &str, events: Vec<Value>) -> Result<Value> {
        validate_service_name(service)?;
        self.touch_service(&p.project_id, service).await?;
        if !events.is_empty() {
            self.record_sdk_events(&p.project_id, service, events)
                .await?;
        }
        let mut state = self.sdk_state(&p.project_id, service).await?;
        if let Value::Object(m) = &mut state {
            m.insert("sse_endpoint".into(), sse_path(service).into());
        }
        Ok(state)
    }

    /// The `{"breakpoints":[…],"kill_switch":bool}` object shared by poll and SSE `init`.
    /// With the kill switch on, the list is empty so SDKs without kill-switch support
    /// stop too.
    pub async fn sdk_state(&self, project_id: &str, service: &str) -> Result<Value> {
        let key = (project_id.to_owned(), service.to_owned());
        let now = self.now_ms();
        let epoch = {
            let cache = lock(&self.state_cache);
            if let Some((state, at)) = cache.entries.get(&key) {
                if now - *at < self.config.state_cache_ms {
                    return Ok(state.clone());
                }
            }
            cache.epoch
        };
        let state = self.load_sdk_state(project_id, service).await?;
        let mut cache = lock(&self.state_cache);
        if cache.epoch == epoch {
            if cache.entries.len() > 10_000 {
                cache.entries.clear();
            }
            cache.entries.insert(key, (state.clone(), now));
        }
        Ok(state)
    }

    /// Settings and breakpoints come from one Query of the service's partition.
    async fn load_sdk_state(&self, project_id: &str, service: &str) -> Result<Value> {
        let items = self
            .service_partition_items(project_id, service, None)
            .await?;
        let settings =
            ServiceSettings::from_item(items.iter().find(|i| i.sk == keys::SERVICE_SETTINGS_SK));
        let breakpoints: Vec<Value> = if settings.kill_switch {
            Vec::new()
        } else {
            let now = self.now_ms();
            let mut active: Vec<Breakpoint> = items
                .iter()
                .filter(|i| i.sk.starts_with(keys::BREAKPOINT_PREFIX))
                .filter_map(Breakpoint::from_item)
                .filter(|b| b.inactive(now).is_none())
                .collect();
            active.sort_by_key(|b| std::cmp::Reverse(b.updated_at));
            fit_in_event(active.iter().map(Breakpoint::to_wire))
        };
        Ok(json!({"breakpoints": breakpoints, "kill_switch": settings.kill_switch}))
    }

    /// Every stored breakpoint of a service, including inactive ones and tombstones.
    pub(super) async fn service_breakpoints(
        &self,
        project_id: &str,
        service: &str,
    ) -> Result<Vec<Breakpoint>> {
        let items = self.service_breakpoint_items(project_id, service).await?;
        Ok(items.iter().filter_map(Breakpoint::from_item).collect())
    }

    pub(super) async fn service_breakpoint_items(
        &self,
        project_id: &str,
        service: &str,
    ) -> Result<Vec<Item>> {
        self.service_partition_items(project_id, service, Some(keys::BREAKPOINT_PREFIX))
            .await
    }

    /// Every item of a service's partition whose sort key starts with `sk_prefix` (all
    /// of them, settings included, for `None`).
    async fn service_partition_items(
        &self,
        project_id: &str,
        service: &str,
        sk_prefix: Option<&str>,
    ) -> Result<Vec<Item>> {
        let query = Query {
            sk_prefix: sk_prefix.map(str::to_owned),
            limit: Some(500),
            ..Query::default()
        };
        self.query_all(&keys::service(project_id, service), query)
            .await
    }

    pub(super) async fn service_settings(
        &self,
        project_id: &str,
        service: &str,
    ) -> Result<ServiceSettings> {
        let item = self
            .items
            .get(
                &keys::service(project_id, service),
                keys::SERVICE_SETTINGS_SK,
            )
            .await?;
        Ok(ServiceSettings::from_item(item.as_ref()))
    }

    /// Applies `ops` to a service's settings item and mirrors them on its services-list
    /// item in one transaction, so the two never disagree. Returns the list item.
    pub(super) async fn write_service_settings(
        &self,
        project_id: &str,
        service: &str,
        ops: Vec<UpdateOp>,
    ) -> Result<Item> {
        let now = self.now_ms();
        let mut listed = vec![
            UpdateOp::set("name", service),
            UpdateOp::SetIfNotExists("first_seen".into(), now.into()),
        ];
        listed.extend(ops.iter().cloned());
        let writes = [
            Write::Update {
                pk: keys::service(project_id, service),
                sk: keys::SERVICE_SETTINGS_SK.into(),
                ops,
                condition: None,
            },
            Write::Update {
                pk: keys::services(project_id),
                sk: service.into(),
                ops: listed,
                condition: None,
            },
        ];
        match self.items.transact(&writes).await? {
            Transacted::Written(mut items) => items.pop().flatten().ok_or_else(|| {
                Error::new(
                    crate::ErrorKind::Internal,
                    "internal",
                    "the store returned no updated service item",
                )
            }),
            Transacted::ConditionFailed(_) => Err(Error::new(
                crate::ErrorKind::Internal,
                "internal",
                "unconditional settings write reported a failed condition",
            )),
        }
    }

    /// The scrubber for a service's custom patterns (built-ins only when it has none).
    pub(super) fn scrubber_for(&self, patterns: &[CustomPattern]) -> ScrubberRef {
        if patterns.is_empty() {
            return ScrubberRef::Builtin(Scrubber::builtin());
        }
        let key = serde_json::to_string(patterns).unwrap_or_default();
        let mut cache = lock(&self.scrubbers);
        if let Some(s) = cache.get(&key) {
            return ScrubberRef::Custom(s.clone());
        }
        // Patterns were validated when saved; should one fail now, the built-ins still apply.
        match Scrubber::with_custom(patterns) {
            Ok(s) => {
                let s = std::sync::Arc::new(s);
                if cache.len() > 1000 {
                    cache.clear();
                }
                cache.insert(key, s.clone());
                ScrubberRef::Custom(s)
            }
            Err(_) => ScrubberRef::Builtin(Scrubber::builtin()),
        }
    }

    /// Records that a service exists and was seen (throttled per process).
    pub(super) async fn touch_service(&self, project_id: &str, service: &str) -> Result<()> {
        let now = self.now_ms();
        let key = (project_id.to_owned(), service.to_owned());
        {
            let mut seen = lock(&self.service_seen);
            if seen
                .get(&key)
                .is_some_and(|t| now - t < SERVICE_SEEN_INTERVAL_MS)
            {
                return Ok(());
            }
            if seen.len() > 100_000 {
                seen.clear();
            }
            seen.insert(key, now);
        }
        let ops = [
            UpdateOp::set("name", service),
            UpdateOp::SetIfNotExists("first_seen".into(), now.into()),
            UpdateOp::set("last_seen", now),
        ];
        self.items
            .update(&keys::services(project_id), service, &ops, None)
            .await?;
        Ok(())
    }

    async fn record_sdk_events(
        &self,
        project_id: &str,
        service: &str,
        events: Vec<Value>,
    ) -> Result<()> {
        let now = self.now_ms();
        let pk = keys::sdk_events(project_id, service);
        let mut counters = Vec::new();
        for event in events {
            let kind = event
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let kind: String = kind
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            counters.push(UpdateOp::add(&format!("sdk_event_{kind}"), 1));
            let id = format!("{now:013}-{}", &self.ids.random_hex128()[..12]);
            let item = Item::new(
                pk.clone(),
                id,
                attrs(json!({"received_at": now, "type": kind, "event": event})),
            )
            .with_ttl(Some(now / 1000 + SDK_EVENT_TTL_SECS));
            self.items.put(item, None).await?;
        }
        self.items
            .update(&keys::services(project_id), service, &counters, None)
            .await?;
        Ok(())
    }

    /// `POST /sdk/snapshots/auto-register`: idempotent on (service, function, label), also
    /// under concurrent calls: the id is derived from that triple, and only one
    /// conditional put can create it. Returns the breakpoint and whether it was created.
    pub async fn auto_register(
        &self,
        p: &Principal,
        req: AutoRegisterRequest,
    ) -> Result<(Value, bool)> {
        validate_service_name(&req.service_name)?;
        let project = &p.project_id;
        let service = &req.service_name;
        let id = registration_id(project, &req);
        let now = self.now_ms();
        self.touch_service(project, service).await?;
        self.record_code_location(project, service, &req, now)
            .await?;
        if let Some(existing) = self.active_at_call_site(project, &req, &id, now).await? {
            return Ok((existing.to_sdk_wire(now), false));
        }
        self.index_breakpoint(project, service, &id).await?;

        let bp = Breakpoint::new(
            id.clone(),
            service.clone(),
            CallSite {
                file_path: req.file_path.clone(),
                line_number: req.line_number,
                function_name: req.function_name.clone(),
                label: req.label.clone(),
            },
            Origin::AutoRegister,
            now,
        );
        let pk = keys::service(project, service);
        let item = Item::new(pk.clone(), keys::breakpoint_sk(&id), bp.to_attrs());
        match self.items.put(item, Some(Condition::NotExists)).await {
            Ok(()) => {
                self.announce_breakpoint(project, &bp, names::BREAKPOINT_CREATED);
                Ok((bp.to_wire(), true))
            }
            Err(StoreError::ConditionFailed) => {
                let existing = self
                    .get_breakpoint_in(project, service, &id)
                    .await?
                    .ok_or_else(|| {
                        Error::new(
                            crate::ErrorKind::Unavailable,
                            "retry",
                            "breakpoint is being created; retry",
                        )
                    })?;
                if existing.deleted_at.is_none()
                    && (existing.file_path != req.file_path
                        || existing.line_number != req.line_number)
                {
                    let ops = [
                        UpdateOp::set("file_path", req.file_path.as_str()),
                        UpdateOp::set("line_number", req.line_number),
                        UpdateOp::set("updated_at", now),
                    ];
                    let item = self
                        .items
                        .update(
                            &pk,
                            &keys::breakpoint_sk(&id),
                            &ops,
                            Some(Condition::Exists),
                        )
                        .await?;
                    if let Some(updated) = Breakpoint::from_item(&item) {
                        self.announce_breakpoint(project, &updated, names::BREAKPOINT_UPDATED);
                        return Ok((updated.to_sdk_wire(now), false));
                    }
                }
                Ok((existing.to_sdk_wire(now), false))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A breakpoint set through the admin API on this call site (same function and
    /// label) wins over registering a new one; its file/line follow the SDK's.
    async fn active_at_call_site(
        &self,
        project: &str,
        req: &AutoRegisterRequest,
        derived_id: &str,
        now: i64,
    ) -> Result<Option<Breakpoint>> {
        if req.function_name.is_empty() || req.label.is_empty() {
            return Ok(None);
        }
        let existing = self.service_breakpoints(project, &req.service_name).await?;
        let Some(bp) = existing.into_iter().find(|b| {
            b.id != derived_id
                && b.function_name == req.function_name
                && b.label == req.label
                && b.inactive(now).is_none()
        }) else {
            return Ok(None);
        };
        if req.file_path.is_empty()
            || (bp.file_path == req.file_path && bp.line_number == req.line_number)
        {
            return Ok(Some(bp));
        }
        let ops = [
            UpdateOp::set("file_path", req.file_path.as_str()),
            UpdateOp::set("line_number", req.line_number),
            UpdateOp::set("updated_at", now),
        ];
        let pk = keys::service(project, &req.service_name);
        let item = self
            .items
            .update(
                &pk,
                &keys::breakpoint_sk(&bp.id),
                &ops,
                Some(Condition::Exists),
            )
            .await?;
        let updated = Breakpoint::from_item(&item).unwrap_or(bp);
        self.announce_breakpoint(project, &updated, names::BREAKPOINT_UPDATED);
        Ok(Some(updated))
    }

    /// Writes the id → service index entry (idempotent: the service of an id never changes).
    pub(super) async fn index_breakpoint(
        &self,
        project: &str,
        service: &str,
        id: &str,
    ) -> Result<()> {
        let item = Item::new(
            keys::breakpoint_index(project),
            id,
            attrs(json!({"service": service})),
        );
        self.items.put(item, None).await?;
        Ok(())
    }

    async fn record_code_location(
        &self,
        project: &str,
        service: &str,
        req: &AutoRegisterRequest,
        now: i64,
    ) -> Result<()> {
        if req.file_path.is_empty() {
            return Ok(());
        }
        let ops = [
            UpdateOp::set("file_path", req.file_path.as_str()),
            UpdateOp::set("line_number", req.line_number),
            UpdateOp::set("function_name", req.function_name.as_str()),
            UpdateOp::set("label", req.label.as_str()),
            UpdateOp::SetIfNotExists("first_seen".into(), now.into()),
            UpdateOp::set("last_seen", now),
            UpdateOp::add("hit_count", 1),
            UpdateOp::set("source", "auto_register"),
        ];
        self.items
            .update(
                &keys::code(project, service),
                &keys::code_sk(&req.file_path, req.line_number),
                &ops,
                None,
            )
            .await?;
        Ok(())
    }

    /// Announces a breakpoint change (see [`crate::stream::breakpoint_events`]).
    pub(super) fn announce_breakpoint(&self, project: &str, bp: &Breakpoint, event: &str) {
        for e in crate::stream::breakpoint_events(project, bp, event, self.now_ms()) {
            self.publish_change(e);
        }
    }

    pub(super) async fn get_breakpoint_in(
        &self,
        project: &str,
        service: &str,
        id: &str,
    ) -> Result<Option<Breakpoint>> {
        let item = self
            .items
            .get(&keys::service(project, service), &keys::breakpoint_sk(id))
            .await?;
        Ok(item.as_ref().and_then(Breakpoint::from_item))
    }

    /// Finds a breakpoint by id anywhere in the project.
    pub(super) async fn find_breakpoint(
        &self,
        project: &str,
        id: &str,
    ) -> Result<Option<Breakpoint>> {
        let Some(index) = self.items.get(&keys::breakpoint_index(project), id).await? else {
            return Ok(None);
        };
        let Some(service) = index.get_str("service") else {
            return Ok(None);
        };
        self.get_breakpoint_in(project, service, id).await
    }

    /// `POST /sdk/snapshots/checkin`: decides capture/skip for a breakpoint given the
    /// variables its condition needs (used for server-only conditions). Consumes nothing.
    pub async fn checkin(&self, p: &Principal, req: CheckinRequest) -> Result<Value> {
        let project = &p.project_id;
        let Some(bp) = self.find_breakpoint(project, &req.breakpoint_id).await? else {
            return Err(Error::not_found("breakpoint"));
        };
        let now = self.now_ms();
        let settings = self.service_settings(project, &bp.service_name).await?;
        let decision = if settings.kill_switch {
            Err(DropReason::KillSwitch)
        } else if let Some(inactive) = bp.inactive(now) {
            Err(inactive.reason())
        } else if bp.rate_limit_per_minute > 0
            && bp.rate_window == now.div_euclid(60_000)
            && bp.rate_count >= bp.rate_limit_per_minute
        {
            Err(DropReason::RateLimited)
        } else {
            Ok(())
        };
        let (capture, reason, detail) = match decision {
            Err(r) => (false, r.as_str().to_owned(), None),
            Ok(()) => match &bp.condition {
                None => (true, "no_condition".to_owned(), None),
                Some(c) => match self
                    .conditions
                    .get_or_compile(c)
                    .and_then(|c| c.evaluate_bool(&req.variables))
                {
                    Ok(true) => (true, "condition_true".to_owned(), None),
                    Ok(false) => (false, DropReason::ConditionFalse.as_str().to_owned(), None),
                    Err(e) => (
                        false,
                        DropReason::ConditionError.as_str().to_owned(),
                        Some(e.to_string()),
                    ),
                },
            },
        };
        if !capture {
            if let Some(r) = DropReason::ALL.into_iter().find(|r| r.as_str() == reason) {
                self.record_drop(project, &bp.service_name, Some(&bp.id), r)
                    .await?;
            }
        }
        Ok(json!({
            "breakpoint_id": bp.id,
            "decision": if capture { "capture" } else { "skip" },
            "capture": capture,
            "reason": reason,
            "detail": detail,
        }))
    }

    /// `POST /api/services/{service}/kill-switch`.
    pub async fn set_kill_switch(
        &self,
        p: &Principal,
        service: &str,
        enabled: bool,
    ) -> Result<Value> {
        validate_service_name(service)?;
        let now = self.now_ms();
        let ops = vec![
            UpdateOp::set("kill_switch", enabled),
            UpdateOp::set("kill_switch_updated_at", now),
        ];
        self.write_service_settings(&p.project_id, service, ops)
            .await?;
        self.publish_change(crate::stream::kill_switch_event(
            &p.project_id,
            service,
            enabled,
        ));
        Ok(json!({"service": service, "kill_switch": enabled}))
    }

    /// Counts a dropped capture per service and breakpoint, and tells dashboards.
    pub(super) async fn record_drop(
        &self,
        project: &str,
        service: &str,
        bp: Option<&str>,
        reason: DropReason,
    ) -> Result<()> {
        let counter = reason.counter_attr();
        let ops = [UpdateOp::add(&counter, 1), UpdateOp::add("drops_total", 1)];
        // Counted on services that exist; an SDK key cannot conjure service records.
        match self
            .items
            .update(
                &keys::services(project),
                service,
                &ops,
                Some(Condition::Exists),
            )
            .await
        {
            Ok(_) | Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(id) = bp {
            let ops = [UpdateOp::add(&counter, 1), UpdateOp::add("drop_count", 1)];
            match self
                .items
                .update(
                    &keys::service(project, service),
                    &keys::breakpoint_sk(id),
                    &ops,
                    Some(Condition::Exists),
                )
                .await
            {
                Ok(_) | Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.publish(
            project,
            service,
            names::SNAPSHOT_DROPPED,
            json!({"service": service, "breakpoint_id": bp, "reason": reason.as_str()}),
            Audience::Dashboard,
        );
        Ok(())
    }
}

/// Largest serialized breakpoint list in a poll or `init`: one SSE data line must stay
/// under the 64 KB line limit of the Go SDK's scanner.
const MAX_STATE_BYTES: usize = 60 * 1024;

/// Keeps the most recently changed breakpoints that fit in [`MAX_STATE_BYTES`].
fn fit_in_event(breakpoints: impl Iterator<Item = Value>) -> Vec<Value> {
    let mut used = 64;
    let mut out = Vec::new();
    for bp in breakpoints {
        used += bp.to_string().len() + 1;
        if used > MAX_STATE_BYTES {
            break;
        }
        out.push(bp);
    }
    out
}

/// The id of an auto-registered breakpoint: a UUID-shaped digest of (project, service,
/// function, label), or of the file and line when an SDK sends neither name.
fn registration_id(project: &str, req: &AutoRegisterRequest) -> String {
    let key = if req.function_name.is_empty() && req.label.is_empty() {
        format!(
            "{project}\0{}\0file\0{}\0{}",
            req.service_name, req.file_path, req.line_number
        )
    } else {
        format!(
            "{project}\0{}\0fn\0{}\0{}",
            req.service_name, req.function_name, req.label
        )
    };
    uuid_format(&sha256_hex(key.as_bytes()), '8')
}
