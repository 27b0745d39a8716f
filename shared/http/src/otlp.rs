//! OTLP/HTTP ingest (`/v1/traces`, `/v1/metrics`, and `/` for Java users who set a bare
//! base URL), with the status codes and bodies the OTLP/HTTP specification asks for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sightline_core::model::{Principal, Scope};
use sightline_core::otlp::{self, Encoding, OtlpError};
use sightline_core::{Error, ErrorKind};

use crate::error::ApiError;
use crate::extract::{api_key_from_headers, read_limited};
use crate::AppState;

/// Largest accepted request body (compressed) and its largest decompressed size.
pub const MAX_INGEST_BYTES: usize = 8 * 1024 * 1024;
pub const MAX_DECOMPRESSED_BYTES: usize = 32 * 1024 * 1024;

/// `google.rpc.Status`, the error body OTLP/HTTP specifies for protobuf requests.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Per-project token bucket: requests per second with a burst allowance.
pub struct IngestLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl IngestLimiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token; `Err(seconds)` to wait when the bucket is empty.
    pub fn acquire(&self, project: &str) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let (tokens, last) = buckets
            .entry(project.to_owned())
            .or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

impl Default for IngestLimiter {
    fn default() -> Self {
        Self::new(500.0, 1000.0)
    }
}

#[derive(Deserialize)]
pub struct KeyQuery {
    api_key: Option<String>,
}

/// An error in the request's encoding: `google.rpc.Status` for protobuf, our JSON otherwise.
fn otlp_error(encoding: Option<Encoding>, err: Error) -> Response {
    match encoding {
        Some(Encoding::Protobuf) => {
            let status = StatusCode::from_u16(err.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let grpc_code = match err.kind {
                ErrorKind::BadRequest
                | ErrorKind::PayloadTooLarge
                | ErrorKind::UnsupportedMediaType => 3,
                ErrorKind::Unauthorized => 16,
                ErrorKind::Forbidden => 7,
                ErrorKind::TooManyRequests => 8,
                ErrorKind::Unavailable => 14,
                _ => 13,
            };
            let body = prost::Message::encode_to_vec(&RpcStatus {
                code: grpc_code,
                message: err.message,
            });
            let mut resp = (
                status,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                body,
            )
                .into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            resp
        }
        _ => ApiError(err).into_response(),
    }
}

/// The shared front half of both ingest routes: encoding, auth, rate limit, body.
async fn prepare(
    state: &AppState,
    key: Option<String>,
    req: Request,
) -> Result<(Principal, Encoding, Vec<u8>), Response> {
    let headers: &HeaderMap = req.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        let err = Error::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            format!("Content-Type `{content_type}` is not supported; use application/x-protobuf or application/json"),
        );
        return Err(otlp_error(None, err));
    };
    let raw_key = api_key_from_headers(headers).map(str::to_owned).or(key);
    let principal = state
        .app
        .require(raw_key.as_deref(), Scope::Sdk)
        .await
        .map_err(|e| otlp_error(Some(encoding), e))?;
    if let Err(wait) = state.ingest_limiter.acquire(&principal.project_id) {
        let err = Error::new(
            ErrorKind::TooManyRequests,
            "rate_limited",
            "ingest rate limit reached; retry later",
        );
        let mut resp = otlp_error(Some(encoding), err);
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(resp);
    }
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let gzip = match content_encoding.as_str() {
        "" | "identity" => false,
        "gzip" => true,
        other => {
            let err = Error::new(
                ErrorKind::UnsupportedMediaType,
                "unsupported_media_type",
                format!("Content-Encoding `{other}` is not supported; use gzip or none"),
            );
            return Err(otlp_error(Some(encoding), err));
        }
    };
    let body: Body = req.into_body();
    let bytes = read_limited(body, MAX_INGEST_BYTES)
        .await
        .map_err(|e| otlp_error(Some(encoding), e.0))?;
    let bytes = if gzip {
        otlp::gunzip(&bytes, MAX_DECOMPRESSED_BYTES)
            .map_err(|e| otlp_error(Some(encoding), decode_error(e)))?
    } else {
        bytes.to_vec()
    };
    Ok((principal, encoding, bytes))
}

fn decode_error(e: OtlpError) -> Error {
    match e {
        OtlpError::TooLarge { limit } => Error::payload_too_large(limit),
        other => Error::bad_request("invalid_otlp", other.to_string()),
    }
}

fn success(encoding: Encoding, body: Vec<u8>) -> Response {
    let ct = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response()
}

/// Authenticates, reads and decodes an ingest request; any failure is already a response.
async fn decode_request<D>(
    state: &AppState,
    key: Option<String>,
    req: Request,
    decode: fn(&[u8], Encoding) -> Result<D, OtlpError>,
) -> Result<(Principal, Encoding, D), Response> {
    let (principal, encoding, bytes) = prepare(state, key, req).await?;
    let decoded =
        decode(&bytes, encoding).map_err(|e| otlp_error(Some(encoding), decode_error(e)))?;
    Ok((principal, encoding, decoded))
}

/// The answer once the decoded data is stored (or not).
fn respond<T>(encoding: Encoding, stored: Result<T, Error>, body: Vec<u8>) -> Response {
    match stored {
        Ok(_) => success(encoding, body),
        Err(e) => otlp_error(Some(encoding), e),
    }
}

/// `POST /v1/traces` and `POST /`.
pub async fn traces(
    State(state): State<AppState>,
    Query(q): Query<KeyQuery>,
    req: Request,
) -> Response {
    let (principal, encoding, decoded) =
        match decode_request(&state, q.api_key, req, otlp::decode_traces).await {
            Ok(v) => v,
            Err(resp) => return resp,
        };
    let body =
        otlp::encode_trace_response(encoding, decoded.rejected_spans, &decoded.error_message);
    respond(
        encoding,
        state.app.ingest_traces(&principal, decoded).await,
        body,
    )
}

/// `POST /v1/metrics`.
pub async fn metrics(
    State(state): State<AppState>,
    Query(q): Query<KeyQuery>,
    req: Request,
) -> Response {
    let (principal, encoding, decoded) =
        match decode_request(&state, q.api_key, req, otlp::decode_metrics).await {
            Ok(v) => v,
            Err(resp) => return resp,
        };
    let body =
        otlp::encode_metrics_response(encoding, decoded.rejected_points, &decoded.error_message);
    respond(
        encoding,
        state.app.ingest_metrics(&principal, decoded).await,
        body,
    )
}
