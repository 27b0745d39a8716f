//! Request extractors: credentials and size-limited bodies.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::BodyExt;
use sightline_core::model::{Principal, Scope};
use sightline_core::Error;

use crate::error::ApiError;
use crate::AppState;

/// The raw API key of a request: `X-API-Key` (any case), or `Authorization: Bearer`.
pub fn api_key_from_headers(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.trim().is_empty())
    {
        return Some(k);
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A caller with the `sdk` scope.
pub struct SdkAuth(pub Principal);

/// A caller with the `admin` scope.
pub struct AdminAuth(pub Principal);

impl FromRequestParts<AppState> for SdkAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = api_key_from_headers(&parts.headers);
        Ok(Self(state.app.require(key, Scope::Sdk).await?))
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = api_key_from_headers(&parts.headers);
        Ok(Self(state.app.require(key, Scope::Admin).await?))
    }
}

/// The request body, refused with a JSON 413 over the configured limit.
pub struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        read_limited(req.into_body(), state.app.config().max_body_bytes)
            .await
            .map(Self)
    }
}

/// Bytes of an oversized body still read (and discarded) so the client sees the 413
/// instead of a reset connection; beyond this the connection is simply closed.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads a body of at most `limit` bytes; a larger one is a JSON 413.
pub async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Error::bad_request(
                "invalid_body",
                format!("could not read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body, DRAIN_LIMIT).await;
                return Err(Error::payload_too_large(limit).into());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

async fn drain(mut body: Body, mut budget: usize) {
    while let Some(Ok(frame)) = body.frame().await {
        let n = frame.data_ref().map_or(0, |d| d.len());
        if n >= budget {
            return;
        }
        budget -= n;
    }
}
