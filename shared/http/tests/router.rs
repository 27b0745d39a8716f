//! The router in-process (`tower::ServiceExt::oneshot`), for behaviour that needs settings
//! the server binary does not expose, such as a tiny ingest budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sightline_core::app::{Config, Ports};
use sightline_core::Sightline;
use sightline_http::hub::Hub;
use sightline_http::otlp::IngestLimiter;
use sightline_http::AppState;
use sightline_store_local::{MemoryBlobStore, MemoryItemStore, RandomIds, SystemClock};
use tower::ServiceExt;

const KEY: &str = "sl_router_test_key";

async fn state() -> AppState {
    let hub = Arc::new(Hub::default());
    let ports = Ports {
        items: Arc::new(MemoryItemStore::default()),
        blobs: Arc::new(MemoryBlobStore::default()),
        events: hub.clone(),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    };
    let app = Arc::new(Sightline::new(ports, Config::default()));
    app.bootstrap(Some(KEY)).await.unwrap();
    let (state, _closing) = AppState::new(app, hub);
    state
}

fn traces_request() -> Request<Body> {
    Request::post("/v1/traces")
        .header("content-type", "application/json")
        .header("x-api-key", KEY)
        .body(Body::from(r#"{"resourceSpans":[]}"#))
        .unwrap()
}

#[tokio::test]
async fn ingest_over_budget_is_429_with_retry_after() {
    let mut state = state().await;
    state.ingest_limiter = Arc::new(IngestLimiter::new(0.5, 2.0));
    let router = sightline_http::router(state);
    for _ in 0..2 {
        let resp = router.clone().oneshot(traces_request()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = router.clone().oneshot(traces_request()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "retry after {retry}s");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn health_answers_in_process() {
    let router = sightline_http::router(state().await);
    let resp = router
        .oneshot(Request::get("/api/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
