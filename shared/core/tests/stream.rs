//! Item changes from the table stream map to the events the handlers publish in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use sightline_core::events::{names, Audience};
use sightline_core::keys;
use sightline_core::model::{Breakpoint, CallSite, Origin};
use sightline_core::ports::Item;
use sightline_core::stream::{breakpoint_events, item_change_events};

const NOW: i64 = 1_800_000_000_000;

fn bp() -> Breakpoint {
    Breakpoint::new(
        "bp-1".into(),
        "checkout".into(),
        CallSite {
            file_path: "/app/pay.py".into(),
            line_number: 42,
            function_name: "pay".into(),
            label: "pay".into(),
        },
        Origin::Manual,
        NOW,
    )
}

fn item(bp: &Breakpoint) -> Item {
    Item::new(
        keys::service("proj", &bp.service_name),
        keys::breakpoint_sk(&bp.id),
        bp.to_attrs(),
    )
}

fn names_of(events: &[sightline_core::events::ChangeEvent]) -> Vec<(&str, Audience)> {
    events
        .iter()
        .map(|e| (e.event.as_str(), e.audience))
        .collect()
}

#[test]
fn a_new_breakpoint_is_created_for_sdks_and_dashboards() {
    let b = bp();
    let events = item_change_events(None, Some(&item(&b)), NOW);
    assert_eq!(
        names_of(&events),
        [
            (names::BREAKPOINT_CREATED, Audience::All),
            (names::BREAKPOINT, Audience::Dashboard)
        ]
    );
    assert_eq!(events[0].project_id, "proj");
    assert_eq!(events[0].service, "checkout");
    assert_eq!(events[0].data, b.to_wire());
    // Exactly what the in-process path publishes for the same change.
    assert_eq!(
        events,
        breakpoint_events("proj", &b, names::BREAKPOINT_CREATED, NOW).to_vec()
    );
}

#[test]
fn a_capture_counter_change_reaches_dashboards_only() {
    let before = bp();
    let mut after = before.clone();
    after.capture_count = 1;
    let events = item_change_events(Some(&item(&before)), Some(&item(&after)), NOW);
    assert_eq!(
        names_of(&events),
        [(names::BREAKPOINT, Audience::Dashboard)]
    );
    assert_eq!(events[0].data["capture_count"], json!(1));
}

#[test]
fn an_edit_is_an_update_and_disabling_is_a_deletion_for_sdks() {
    let before = bp();
    let mut edited = before.clone();
    edited.condition = Some("user.id == 7".into());
    let events = item_change_events(Some(&item(&before)), Some(&item(&edited)), NOW);
    assert_eq!(events[0].event, names::BREAKPOINT_UPDATED);
    assert_eq!(events[0].data["condition"], json!("user.id == 7"));

    let mut disabled = before.clone();
    disabled.enabled = false;
    let events = item_change_events(Some(&item(&before)), Some(&item(&disabled)), NOW);
    assert_eq!(events[0].event, names::BREAKPOINT_DELETED);
    assert_eq!(events[0].data, json!({"id": "bp-1"}));
    assert_eq!(events[1].event, names::BREAKPOINT);
}

#[test]
fn a_removed_breakpoint_is_deleted() {
    let b = bp();
    let events = item_change_events(Some(&item(&b)), None, NOW);
    assert_eq!(events[0].event, names::BREAKPOINT_DELETED);
    assert_eq!(events[0].data, json!({"id": "bp-1"}));
}

#[test]
fn kill_switch_changes_and_only_those_are_announced() {
    let settings = |attrs: serde_json::Value| {
        Item::new(
            keys::service("proj", "checkout"),
            keys::SERVICE_SETTINGS_SK,
            attrs.as_object().unwrap().clone(),
        )
    };
    let off = settings(json!({"pii_patterns": []}));
    let on = settings(json!({"kill_switch": true}));
    let events = item_change_events(Some(&off), Some(&on), NOW);
    assert_eq!(names_of(&events), [(names::KILL_SWITCH, Audience::All)]);
    assert_eq!(events[0].data, json!({"enabled": true}));
    assert_eq!(events[0].service, "checkout");
    assert_eq!(events[0].project_id, "proj");
    let events = item_change_events(None, Some(&on), NOW);
    assert_eq!(names_of(&events), [(names::KILL_SWITCH, Audience::All)]);
    // Other settings are not a kill switch change.
    let patterns = settings(json!({"kill_switch": true, "pii_patterns": [{"name": "a"}]}));
    assert!(item_change_events(Some(&on), Some(&patterns), NOW).is_empty());
    // The mirror on the services-list item changes in the same transaction: no second
    // event, and neither from its counters.
    let listed = |attrs: serde_json::Value| {
        Item::new(
            keys::services("proj"),
            "checkout",
            attrs.as_object().unwrap().clone(),
        )
    };
    let listed_off = listed(json!({"name": "checkout", "drops_total": 1}));
    let listed_on = listed(json!({"name": "checkout", "kill_switch": true}));
    assert!(item_change_events(Some(&listed_off), Some(&listed_on), NOW).is_empty());
    let counted = listed(json!({"name": "checkout", "drops_total": 2}));
    assert!(item_change_events(Some(&listed_off), Some(&counted), NOW).is_empty());
}

#[test]
fn other_items_yield_nothing() {
    let other = Item::new(
        keys::snapshots("proj"),
        "SNAP#1",
        json!({"a": 1}).as_object().unwrap().clone(),
    );
    assert!(item_change_events(None, Some(&other), NOW).is_empty());
    assert!(item_change_events(None, None, NOW).is_empty());
    // A malformed breakpoint item is skipped, not a panic.
    let junk = Item::new(
        keys::service("proj", "svc"),
        "BP#x",
        json!({"id": 5}).as_object().unwrap().clone(),
    );
    assert!(item_change_events(None, Some(&junk), NOW).is_empty());
}
