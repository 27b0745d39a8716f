//! The relay against a real HTTP receiver on loopback that verifies every request with
//! core's `publish::verify`, fed a DynamoDB Streams event in the wire format Lambda sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use sightline_core::events::{names, Audience};
use sightline_core::keys;
use sightline_core::model::{Breakpoint, CallSite, Origin};
use sightline_core::ports::Clock;
use sightline_core::publish::{verify, PublishBatch, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use sightline_fn_relay::{change_events, relay};
use sightline_http::edge_publish::EdgePublisher;
use sightline_store_local::SystemClock;

const SECRET: &[u8] = b"relay-test-secret";

/// A JSON value as a DynamoDB attribute value (the stream's wire format).
fn ddb(v: &Value) -> Value {
    match v {
        Value::Null => json!({"NULL": true}),
        Value::Bool(b) => json!({"BOOL": b}),
        Value::Number(n) => json!({"N": n.to_string()}),
        Value::String(s) => json!({"S": s}),
        Value::Array(a) => json!({"L": a.iter().map(ddb).collect::<Vec<_>>()}),
        Value::Object(m) => {
            json!({"M": m.iter().map(|(k, v)| (k.clone(), ddb(v))).collect::<serde_json::Map<_, _>>()})
        }
    }
}

/// A stored image: table keys plus attributes, as the DynamoDB adapter writes them.
fn image(pk: &str, sk: &str, attrs: &Value) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("pk".into(), json!({"S": pk}));
    m.insert("sk".into(), json!({"S": sk}));
    for (k, v) in attrs.as_object().unwrap() {
        m.insert(k.clone(), ddb(v));
    }
    Value::Object(m)
}

fn record(n: u32, name: &str, old: Option<Value>, new: Option<Value>) -> Value {
    let any = new.as_ref().or(old.as_ref()).unwrap();
    let mut d = json!({
        "ApproximateCreationDateTime": 1_800_000_000,
        "Keys": {"pk": any["pk"], "sk": any["sk"]},
        "SequenceNumber": format!("{n:021}"),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    });
    if let Some(o) = old {
        d["OldImage"] = o;
    }
    if let Some(n) = new {
        d["NewImage"] = n;
    }
    json!({
        "eventID": format!("event-{n}"),
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": d,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/sightline/stream/2026-01-01T00:00:00.000"
    })
}

fn breakpoint() -> Breakpoint {
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
        now_ms(),
    )
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// A batch: a breakpoint created, a capture counter bump, a kill switch turned on, and a
/// snapshot item no stream cares about.
fn stream_event() -> aws_lambda_events::dynamodb::Event {
    let bp = breakpoint();
    let pk = keys::service("proj", "checkout");
    let sk = keys::breakpoint_sk(&bp.id);
    let attrs = Value::Object(bp.to_attrs());
    let mut counted = bp.clone();
    counted.capture_count = 1;
    let counted = Value::Object(counted.to_attrs());
    let records = vec![
        record(1, "INSERT", None, Some(image(&pk, &sk, &attrs))),
        record(
            2,
            "MODIFY",
            Some(image(&pk, &sk, &attrs)),
            Some(image(&pk, &sk, &counted)),
        ),
        record(
            3,
            "MODIFY",
            Some(image(&pk, keys::SERVICE_SETTINGS_SK, &json!({}))),
            Some(image(
                &pk,
                keys::SERVICE_SETTINGS_SK,
                &json!({"kill_switch": true}),
            )),
        ),
        record(
            4,
            "INSERT",
            None,
            Some(image(&keys::snapshots("proj"), "SNAP#1", &json!({"x": 1}))),
        ),
    ];
    serde_json::from_value(json!({"Records": records})).unwrap()
}

#[derive(Clone, Default)]
struct Receiver {
    batches: Arc<Mutex<Vec<PublishBatch>>>,
    refused: Arc<Mutex<usize>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let now = now_ms() / 1000;
    match verify(
        SECRET,
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &body,
        now,
    ) {
        Ok(()) => {
            r.batches
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            StatusCode::NO_CONTENT
        }
        Err(_) => {
            *r.refused.lock().unwrap() += 1;
            StatusCode::UNAUTHORIZED
        }
    }
}

async fn start_receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = Router::new()
        .route("/internal/publish", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), r)
}

#[test]
fn stream_records_map_to_the_handlers_events() {
    let events = change_events(&stream_event(), now_ms());
    let got: Vec<(&str, Audience)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.audience))
        .collect();
    assert_eq!(
        got,
        [
            (names::BREAKPOINT_CREATED, Audience::All),
            (names::BREAKPOINT, Audience::Dashboard),
            // The counter bump reaches dashboards only.
            (names::BREAKPOINT, Audience::Dashboard),
            (names::KILL_SWITCH, Audience::All),
        ]
    );
    assert_eq!(events[0].data, breakpoint().to_wire());
    assert_eq!(events[2].data["capture_count"], json!(1));
    assert_eq!(events[3].data, json!({"enabled": true}));
    assert!(events
        .iter()
        .all(|e| e.project_id == "proj" && e.service == "checkout"));
}

#[tokio::test]
async fn one_signed_publish_per_batch() {
    let (url, r) = start_receiver().await;
    let publisher = EdgePublisher::new(&url, SECRET, Duration::from_secs(5)).unwrap();
    let (event, now) = (stream_event(), now_ms());
    let n = relay(&publisher, &event, now, "batch-1".into())
        .await
        .unwrap();
    assert_eq!(n, 4);
    let batches = r.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 1, "one request for the whole batch");
    assert_eq!(batches[0].id, "batch-1");
    assert_eq!(batches[0].events, change_events(&event, now));
    assert_eq!(*r.refused.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_batch_without_events_sends_nothing() {
    let (url, r) = start_receiver().await;
    let publisher = EdgePublisher::new(&url, SECRET, Duration::from_secs(5)).unwrap();
    let event: aws_lambda_events::dynamodb::Event = serde_json::from_value(json!({"Records": [
        record(1, "INSERT", None, Some(image(&keys::snapshots("proj"), "SNAP#1", &json!({"x": 1}))))
    ]}))
    .unwrap();
    assert_eq!(
        relay(&publisher, &event, now_ms(), "b".into())
            .await
            .unwrap(),
        0
    );
    assert!(r.batches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_or_failed_publish_fails_the_invocation() {
    let (url, r) = start_receiver().await;
    let wrong = EdgePublisher::new(&url, b"another-secret", Duration::from_secs(5)).unwrap();
    let err = relay(&wrong, &stream_event(), now_ms(), "b".into()).await;
    assert!(
        err.is_err(),
        "a refused batch must fail so Lambda retries it"
    );
    assert_eq!(*r.refused.lock().unwrap(), 1);
    assert!(r.batches.lock().unwrap().is_empty());

    // Nobody listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let publisher = EdgePublisher::new(&dead, SECRET, Duration::from_secs(2)).unwrap();
    assert!(relay(&publisher, &stream_event(), now_ms(), "b".into())
        .await
        .is_err());
}
