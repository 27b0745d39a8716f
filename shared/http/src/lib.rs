//! The HTTP surface of Sightline: axum routers over [`sightline_core::Sightline`].
//!
//! One router serves the local binary, each Lambda function mounts the part it owns, and
//! tests drive it in-process with `tower::ServiceExt::oneshot` or over a real socket.

pub mod edge_publish;
pub mod error;
pub mod extract;
pub mod hub;
pub mod otlp;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sightline_core::app::SnapshotFilter;
use sightline_core::wire::{
    parse_lenient_json, parse_poll_events, AutoRegisterRequest, CaptureRequest, CheckinRequest,
};
use sightline_core::{Error, Sightline};

use crate::error::{method_not_allowed, not_found_route, ApiResult};
use crate::extract::{AdminAuth, LimitedBody, SdkAuth};
use crate::hub::Hub;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub app: Arc<Sightline>,
    pub hub: Arc<Hub>,
    /// Interval of SSE `heartbeat` events (at most 15 s in production).
    pub heartbeat: Duration,
    pub started_at: std::time::Instant,
    /// Becomes `true` when the server shuts down, so long-lived streams end and graceful
    /// shutdown can complete.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// Per-project request budget of the OTLP ingest routes.
    pub ingest_limiter: Arc<otlp::IngestLimiter>,
}

impl AppState {
    /// State with production settings; the returned sender ends every stream when `true` is sent.
    pub fn new(app: Arc<Sightline>, hub: Arc<Hub>) -> (Self, tokio::sync::watch::Sender<bool>) {
        let (tx, closing) = tokio::sync::watch::channel(false);
        let state = Self {
            app,
            hub,
            heartbeat: Duration::from_secs(15),
            started_at: std::time::Instant::now(),
            closing,
            ingest_limiter: Arc::new(otlp::IngestLimiter::default()),
        };
        (state, tx)
    }
}

/// Every route: the SDK API and the admin API.
pub fn router(state: AppState) -> Router {
    serve_routes(
        Router::new()
            .merge(sdk_routes())
            .merge(ingest_routes())
            .merge(admin_routes()),
        state,
    )
}

/// Finishes a set of routes into a servable router: JSON errors for unknown routes and
/// methods, no default body limit (handlers enforce their own), panics become a JSON 500.
/// Every host (the local server, each Lambda function) serves its routes through this.
pub fn serve_routes(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(|| async { not_found_route() })
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            error::ApiError(Error::new(
                sightline_core::ErrorKind::Internal,
                "internal",
                "internal error",
            ))
            .into_response()
        }))
        .with_state(state)
}

/// The SDK API (reference §11): poll, auto-register, capture, check-in, stream.
pub fn sdk_routes() -> Router<AppState> {
    Router::new()
        .merge(poll_routes())
        .merge(capture_routes())
        .merge(checkin_routes())
        .merge(sdk_stream_routes())
}

/// Breakpoint polling (the SDKs' fallback to SSE).
pub fn poll_routes() -> Router<AppState> {
    Router::new().route(
        "/sdk/snapshots/active/{service}",
        get(poll_get).post(poll_post),
    )
}

/// SDK writes: auto-register and snapshot capture (single and batched).
pub fn capture_routes() -> Router<AppState> {
    Router::new()
        .route("/sdk/snapshots/auto-register", post(auto_register))
        .route("/sdk/snapshots/register", post(auto_register))
        .route("/sdk/snapshots/capture", post(capture))
        .route("/sdk/snapshots/capture/batch", post(capture_batch))
        .route("/sdk/snapshots", post(capture))
}

/// Server-side evaluation of server-only conditions.
pub fn checkin_routes() -> Router<AppState> {
    Router::new().route("/sdk/snapshots/checkin", post(checkin))
}

/// The SDK's SSE stream (served by the in-process hub locally, by the edge in production).
pub fn sdk_stream_routes() -> Router<AppState> {
    Router::new().route("/sdk/snapshots/stream/{service}", get(sdk_stream))
}

/// OTLP/HTTP ingest: traces (also at `/`, for Java exporters given a bare base URL) and metrics.
pub fn ingest_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/traces", post(otlp::traces))
        .route("/", post(otlp::traces))
        .route("/v1/metrics", post(otlp::metrics))
}

/// The admin API (docs/openapi.yaml).
pub fn admin_routes() -> Router<AppState> {
    admin_api_routes().merge(admin_stream_routes())
}

/// The admin API's request/response routes (everything but the live event stream).
pub fn admin_api_routes() -> Router<AppState> {
    Router::new()
        .merge(edge_publish::principal_routes())
        .route("/api/health", get(health))
        .route("/api/services", get(list_services))
        .route("/api/services/{service}/kill-switch", post(kill_switch))
        .route(
            "/api/services/{service}/settings",
            axum::routing::put(service_settings),
        )
        .route(
            "/api/breakpoints",
            get(list_breakpoints).post(create_breakpoint),
        )
        .route(
            "/api/breakpoints/{id}",
            get(get_breakpoint)
                .patch(update_breakpoint)
                .delete(delete_breakpoint),
        )
        .route("/api/snapshots", get(list_snapshots))
        .route("/api/traces", get(list_traces))
        .route("/api/traces/{trace_id}", get(get_trace))
        .route("/api/code", get(code_tree))
        .route("/api/snapshots/{id}", get(get_snapshot))
        .route("/api/conditions/validate", post(validate_condition))
}

/// The dashboard's live event stream (SSE).
pub fn admin_stream_routes() -> Router<AppState> {
    Router::new().route("/api/events", get(events))
}

async fn health(State(s): State<AppState>) -> Json<Value> {
    Json(
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "uptime_seconds": s.started_at.elapsed().as_secs()}),
    )
}

async fn poll_get(
    State(s): State<AppState>,
    SdkAuth(p): SdkAuth,
    Path(service): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.app.poll(&p, &service, Vec::new()).await?))
}

async fn poll_post(
    State(s): State<AppState>,
    SdkAuth(p): SdkAuth,
    Path(service): Path<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Json<Value>> {
    let events = parse_poll_events(&body)?;
    Ok(Json(s.app.poll(&p, &service, events).await?))
}

async fn auto_register(
    State(s): State<AppState>,
    SdkAuth(p): SdkAuth,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let req = AutoRegisterRequest::parse(&body)?;
    let (bp, created) = s.app.auto_register(&p, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(bp)).into_response())
}

/// 201 when stored, 200 when dropped for a business reason (never 5xx: SDK circuit
/// breakers count those as failures).
/// Up to 100 snapshots in one request (Sightline extension; our SDKs use it).
async fn capture_batch(
    State(s): State<AppState>,
    SdkAuth(p): SdkAuth,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Json<Value>> {
    let batch = sightline_core::wire::parse_capture_batch(&body)?;
    Ok(Json(s.app.capture_batch(&p, batch).await?))
}

async fn capture(
    State(s): State<AppState>,
    SdkAuth(p): SdkAuth,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let req = CaptureRequest::parse(&body)?;
    let outcome = s.app.capture(&p, req).await?;
    let status = match outcome {
        sightline_core::app::CaptureOutcome::Stored { .. } => StatusCode::CREATED,
        sightline_core::app::CaptureOutcome::Dropped { .. } => StatusCode::OK,
    };
    Ok((status, Json(outcome.to_body())).into_response())
}

async fn checkin(
    State(s): State<AppState>,
    SdkAuth(p): SdkAuth,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Json<Value>> {
    let req = CheckinRequest::parse(&body)?;
    Ok(Json(s.app.checkin(&p, req).await?))
}

async fn sdk_stream(
    State(s): State<AppState>,
    SdkAuth(p): SdkAuth,
    Path(service): Path<String>,
) -> ApiResult<Response> {
    sightline_core::wire::validate_service_name(&service)?;
    sse::sdk_stream(s, p.project_id, service).await
}

async fn kill_switch(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(service): Path<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Json<Value>> {
    let v = parse_lenient_json(&body)?;
    let enabled = v.get("enabled").and_then(Value::as_bool).ok_or_else(|| {
        Error::bad_request("invalid_field", "body must be {\"enabled\": true|false}")
    })?;
    Ok(Json(s.app.set_kill_switch(&p, &service, enabled).await?))
}

async fn service_settings(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(service): Path<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        s.app.update_service_settings(&p, &service, &body).await?,
    ))
}

#[derive(Deserialize)]
struct WindowQuery {
    /// Minutes of request statistics (default 15).
    window_minutes: Option<i64>,
}

async fn list_services(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    q: Result<Query<WindowQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad_request("invalid_query", e.body_text()))?;
    let mut services = s
        .app
        .list_services(&p, q.window_minutes.unwrap_or(15))
        .await?;
    let counts = s.hub.sdk_counts(&p.project_id);
    for svc in &mut services {
        if let Value::Object(m) = svc {
            let n = m
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| counts.get(n))
                .copied()
                .unwrap_or(0);
            m.insert("connected_sdks".into(), n.into());
        }
    }
    Ok(Json(json!({"services": services})))
}

#[derive(Deserialize)]
struct ServiceQuery {
    service: Option<String>,
}

async fn list_breakpoints(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    Query(q): Query<ServiceQuery>,
) -> ApiResult<Json<Value>> {
    let bps = s.app.list_breakpoints(&p, q.service.as_deref()).await?;
    Ok(Json(json!({"breakpoints": bps})))
}

async fn create_breakpoint(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let bp = s.app.create_breakpoint(&p, &body).await?;
    Ok((StatusCode::CREATED, Json(bp)).into_response())
}

async fn get_breakpoint(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.app.get_breakpoint(&p, &id).await?))
}

async fn update_breakpoint(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(id): Path<String>,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.app.update_breakpoint(&p, &id, &body).await?))
}

async fn delete_breakpoint(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.app.delete_breakpoint(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct SnapshotQuery {
    service: Option<String>,
    breakpoint_id: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// RFC 3339 bounds of the receive time.
    from: Option<String>,
    to: Option<String>,
}

/// An optional RFC 3339 query parameter as Unix ms (400 when malformed).
fn time_param(name: &str, v: Option<String>) -> Result<Option<i64>, Error> {
    v.map(|t| {
        sightline_core::timefmt::parse_timestamp_ms(&t).ok_or_else(|| {
            Error::bad_request(
                "invalid_query",
                format!("`{name}` must be an RFC 3339 timestamp"),
            )
        })
    })
    .transpose()
}

async fn list_snapshots(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    q: Result<Query<SnapshotQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad_request("invalid_query", e.body_text()))?;
    let filter = SnapshotFilter {
        service: q.service,
        breakpoint_id: q.breakpoint_id,
        limit: q.limit,
        cursor: q.cursor,
        from_ms: time_param("from", q.from)?,
        to_ms: time_param("to", q.to)?,
    };
    Ok(Json(s.app.list_snapshots(&p, filter).await?))
}

#[derive(Deserialize)]
struct TraceQuery {
    service: Option<String>,
    has_error: Option<bool>,
    min_duration_ms: Option<f64>,
    /// RFC 3339 bounds of the trace start time.
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_traces(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    q: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad_request("invalid_query", e.body_text()))?;
    let filter = sightline_core::app::TraceFilter {
        service: q.service,
        has_error: q.has_error,
        min_duration_ms: q.min_duration_ms,
        from_ms: time_param("from", q.from)?,
        to_ms: time_param("to", q.to)?,
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(s.app.list_traces(&p, filter).await?))
}

/// `?at=`: a time in the trace, to find its snapshots when its spans never arrived.
#[derive(Deserialize)]
struct TraceLookupQuery {
    at: Option<String>,
}

async fn get_trace(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(id): Path<String>,
    q: Result<Query<TraceLookupQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad_request("invalid_query", e.body_text()))?;
    let at = time_param("at", q.at)?;
    Ok(Json(s.app.get_trace(&p, &id, at).await?))
}

#[derive(Deserialize)]
struct CodeQuery {
    service: Option<String>,
    q: Option<String>,
}

async fn code_tree(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    q: Result<Query<CodeQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| Error::bad_request("invalid_query", e.body_text()))?;
    let service = q
        .service
        .ok_or_else(|| Error::bad_request("missing_field", "`service` is required"))?;
    Ok(Json(s.app.code_tree(&p, &service, q.q.as_deref()).await?))
}

async fn get_snapshot(
    State(s): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.app.get_snapshot(&p, &id).await?))
}

async fn validate_condition(
    State(s): State<AppState>,
    AdminAuth(_): AdminAuth,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Json<Value>> {
    let v = parse_lenient_json(&body)?;
    let expr = v
        .get("condition")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_request("missing_field", "`condition` is required"))?;
    Ok(Json(s.app.validate_condition(expr)))
}

async fn events(State(s): State<AppState>, AdminAuth(p): AdminAuth) -> Response {
    sse::dashboard_stream(s, p.project_id).await
}
