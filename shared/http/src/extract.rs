//! Request extractors: credentials and size-limited bodies.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
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
        let limit = state.app.config().max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(Error::payload_too_large(limit).into());
        }
        read_limited(req.into_body(), limit).await.map(Self)
    }
}

pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Error::payload_too_large(limit).into())
        }
        Err(e) => Err(Error::bad_request(
            "invalid_body",
            format!("could not read the request body: {e}"),
        )
        .into()),
    }
}
