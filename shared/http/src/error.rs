//! Every error leaves as JSON `{"error":{"code","message"}}` with its status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sightline_core::{Error, ErrorKind};

/// Wrapper so core errors can be returned from axum handlers.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if matches!(self.0.kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            tracing::warn!(code = self.0.code, message = %self.0.message, "request failed");
        }
        let mut resp = (status, Json(self.0.to_body())).into_response();
        if self.0.kind == ErrorKind::Unavailable {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Rewrites plain-text error responses (axum's extractor rejections, e.g. a path that is
/// not valid UTF-8) into the one JSON error format. Typed bodies (JSON, OTLP protobuf
/// status) are left alone.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let (kind, code) = match status.as_u16() {
        404 => (ErrorKind::NotFound, "not_found"),
        405 => (ErrorKind::MethodNotAllowed, "method_not_allowed"),
        413 => (ErrorKind::PayloadTooLarge, "payload_too_large"),
        415 => (ErrorKind::UnsupportedMediaType, "unsupported_media_type"),
        s if s >= 500 => (ErrorKind::Internal, "internal"),
        _ => (ErrorKind::BadRequest, "bad_request"),
    };
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        message
    };
    let mut out = ApiError(Error::new(kind, code, message)).into_response();
    *out.status_mut() = parts.status;
    out
}

pub fn not_found_route() -> ApiError {
    ApiError(Error::new(
        ErrorKind::NotFound,
        "route_not_found",
        "no such route",
    ))
}

pub fn method_not_allowed() -> ApiError {
    ApiError(Error::new(
        ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        "this method is not allowed on this route",
    ))
}
