//! The process-wide instance and the `capture!` forms that use it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{wait_until, Server};
use serde::Serialize;

#[derive(Serialize)]
struct Order {
    id: u32,
    total: f64,
}

fn checkout(order: &Order) {
    sightline::capture!("order", order);
    sightline::capture!("order-fields", { "id" => order.id, "total" => order.total });
}

#[test]
fn global_instance_and_macro() {
    let s = Server::start();
    let order = Order { id: 7, total: 9.5 };
    checkout(&order); // before init: no-op
    assert!(sightline::global().is_none());
    let sl = sightline::init(s.config("global")).unwrap();
    assert!(matches!(
        sightline::init(s.config("other")),
        Err(sightline::InitError::AlreadyInitialized)
    ));
    checkout(&order);
    assert!(wait_until(Duration::from_secs(10), || sl
        .breakpoint_count()
        == 2));
    checkout(&order);
    assert!(
        wait_until(Duration::from_secs(10), || sl.stats().uploaded == 2),
        "{:?}",
        sl.stats()
    );
    let bps = s.breakpoints("global");
    let f = format!("{}::checkout", module_path!());
    assert!(
        bps.iter().all(|b| b["function_name"] == f.as_str()),
        "{bps:?}"
    );
    for bp in bps {
        let snaps = s.snapshots(bp["id"].as_str().unwrap());
        assert_eq!(snaps.len(), 1);
        assert_eq!(
            snaps[0]["variables"],
            serde_json::json!({"id": 7, "total": 9.5})
        );
    }
    assert!(sightline::shutdown(Duration::from_secs(5)).is_some_and(|r| r.clean));
}
