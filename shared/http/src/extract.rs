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

/// An API key in a header wins; otherwise the dashboard session cookie, which on a
/// state-changing method must come with the session's CSRF token in `X-CSRF-Token`.
impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = api_key_from_headers(&parts.headers);
        if key.is_none() {
            if let Some(token) = session_token_from_headers(&parts.headers) {
                let session = state.app.session(token).await?;
                if !parts.method.is_safe() && !csrf_matches(&parts.headers, &session.csrf_token) {
                    return Err(Error::new(
                        sightline_core::ErrorKind::Forbidden,
                        "csrf_token_invalid",
                        "a state-changing request with a session needs its CSRF token in X-CSRF-Token",
                    )
                    .into());
                }
                return Ok(Self(session.principal));
            }
        }
        Ok(Self(state.app.require(key, Scope::Admin).await?))
    }
}

/// Name of the dashboard session cookie.
pub const SESSION_COOKIE: &str = "sightline_session";

/// Header in which the dashboard's JavaScript echoes the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The dashboard session token from the `Cookie` header, if any.
pub fn session_token_from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// Compares the request's CSRF header with the session's token in constant time.
fn csrf_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(given) = headers.get(CSRF_HEADER).map(|v| v.as_bytes()) else {
        return false;
    };
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
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
