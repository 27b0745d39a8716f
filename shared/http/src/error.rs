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
        let status = StatusCode::from_u16(self.0.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if matches!(self.0.kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            tracing::warn!(code = self.0.code, message = %self.0.message, "request failed");
        }
        let mut resp = (status, Json(self.0.to_body())).into_response();
        if self.0.kind == ErrorKind::Unavailable {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn not_found_route() -> ApiError {
    ApiError(Error::new(ErrorKind::NotFound, "route_not_found", "no such route"))
}

pub fn method_not_allowed() -> ApiError {
    ApiError(Error::new(ErrorKind::BadRequest, "method_not_allowed", "this method is not allowed on this route"))
}
