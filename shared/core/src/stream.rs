//! Committed item changes → change events.
//!
//! In AWS no handler publishes directly to the SSE hubs: the table's change stream carries
//! every committed write to the relay, which turns each (old, new) pair of item images into
//! the same [`ChangeEvent`]s the local server's handlers publish in-process. The event
//! builders below are the single definition of those events; the handlers use them too.

use serde_json::{json, Value};

use crate::events::{names, Audience, ChangeEvent};
use crate::keys;
use crate::model::Breakpoint;
use crate::ports::Item;

/// The events announcing a breakpoint change: the full object to dashboards, and to SDKs
/// either the object (active) or a deletion (no longer active), so SDK caches hold only
/// active breakpoints.
pub fn breakpoint_events(
    project: &str,
    bp: &Breakpoint,
    event: &str,
    now_ms: i64,
) -> [ChangeEvent; 2] {
    let sdk = if bp.inactive(now_ms).is_none() && event != names::BREAKPOINT_DELETED {
        change(
            project,
            &bp.service_name,
            event,
            bp.to_wire(),
            Audience::All,
        )
    } else {
        change(
            project,
            &bp.service_name,
            names::BREAKPOINT_DELETED,
            json!({"id": bp.id}),
            Audience::All,
        )
    };
    let dashboard = change(
        project,
        &bp.service_name,
        names::BREAKPOINT,
        bp.to_api(now_ms),
        Audience::Dashboard,
    );
    [sdk, dashboard]
}

/// The event announcing a service's kill switch state.
pub fn kill_switch_event(project: &str, service: &str, enabled: bool) -> ChangeEvent {
    change(
        project,
        service,
        names::KILL_SWITCH,
        json!({"enabled": enabled}),
        Audience::All,
    )
}

/// The events a committed change of one item stands for, `old` and `new` being the item
/// before and after (`None`: absent). Items that no stream cares about yield nothing, and
/// so does a write that changed nothing a stream shows (a breakpoint's capture counter
/// moves on every capture: SDKs hear of it only when the breakpoint stops capturing).
pub fn item_change_events(old: Option<&Item>, new: Option<&Item>, now_ms: i64) -> Vec<ChangeEvent> {
    let Some(any) = new.or(old) else {
        return Vec::new();
    };
    if any.sk.starts_with(keys::BREAKPOINT_PREFIX) {
        if let Some(project) = breakpoint_partition_project(&any.pk) {
            return breakpoint_change(project, old, new, now_ms);
        }
    }
    // The kill switch is announced from the settings item only: its mirror on the
    // services-list item changes in the same transaction and must not say it twice.
    if any.sk == keys::SERVICE_SETTINGS_SK {
        if let Some((project, service)) = service_partition(&any.pk) {
            let on = kill_switch_on(new);
            if kill_switch_on(old) != on {
                return vec![kill_switch_event(project, service, on)];
            }
        }
    }
    Vec::new()
}

fn breakpoint_change(
    project: &str,
    old: Option<&Item>,
    new: Option<&Item>,
    now_ms: i64,
) -> Vec<ChangeEvent> {
    let old_bp = old.and_then(Breakpoint::from_item);
    let Some(new_bp) = new.and_then(Breakpoint::from_item) else {
        // Removed (deleted or expired by TTL): SDKs drop it.
        return old_bp
            .map(|bp| breakpoint_events(project, &bp, names::BREAKPOINT_DELETED, now_ms).into())
            .unwrap_or_default();
    };
    let Some(old_bp) = old_bp else {
        return breakpoint_events(project, &new_bp, names::BREAKPOINT_CREATED, now_ms).into();
    };
    let [sdk, dashboard] = breakpoint_events(project, &new_bp, names::BREAKPOINT_UPDATED, now_ms);
    let [old_sdk, old_dashboard] =
        breakpoint_events(project, &old_bp, names::BREAKPOINT_UPDATED, now_ms);
    let mut out = Vec::with_capacity(2);
    if sdk_view(&sdk) != sdk_view(&old_sdk) {
        out.push(sdk);
    }
    if dashboard.data != old_dashboard.data {
        out.push(dashboard);
    }
    out
}

/// What an SDK stream shows of a breakpoint event, without the capture counter.
fn sdk_view(e: &ChangeEvent) -> (&str, Value) {
    let mut data = e.data.clone();
    if let Value::Object(m) = &mut data {
        m.remove("capture_count");
    }
    (e.event.as_str(), data)
}

/// Whether a service's settings item has the kill switch on (absent: off).
pub(crate) fn kill_switch_on(settings: Option<&Item>) -> bool {
    settings
        .and_then(|i| i.attrs.get("kill_switch"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `P#{project}#S#{service}` → project.
fn breakpoint_partition_project(pk: &str) -> Option<&str> {
    service_partition(pk).map(|(project, _)| project)
}

/// `P#{project}#S#{service}` → (project, service).
fn service_partition(pk: &str) -> Option<(&str, &str)> {
    pk.strip_prefix("P#")?.split_once("#S#")
}

fn change(
    project: &str,
    service: &str,
    event: &str,
    data: Value,
    audience: Audience,
) -> ChangeEvent {
    ChangeEvent {
        project_id: project.to_owned(),
        service: service.to_owned(),
        event: event.to_owned(),
        data,
        audience,
    }
}
