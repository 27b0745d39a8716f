//! API keys at the edge: resolved through the origin's principal route once, then trusted for
//! `AUTH_CACHE_SECS` in this isolate, so a stream never reaches a Durable Object without a
//! valid key of the right scope, and a revoked key stops working within that time.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::Deserialize;
use sightline_core::app::sha256_hex;
use sightline_core::model::Scope;
use worker::{Date, Request, Response, Result};

use crate::config::Config;
use crate::errors::json_error;
use crate::origin;

/// Path of the origin route that answers a key's project and scopes.
pub const PRINCIPAL_PATH: &str = "/api/auth/principal";
/// Bound on cached keys per isolate; the cache is simply emptied beyond it.
const MAX_CACHED_KEYS: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
pub struct Principal {
    pub project_id: String,
    pub scopes: Vec<Scope>,
}

thread_local! {
    /// SHA-256 of the raw key → (principal, expiry in ms). Raw keys are never kept.
    static CACHE: RefCell<HashMap<String, (Principal, f64)>> = RefCell::new(HashMap::new());
}

/// The raw API key: `X-API-Key`, or `Authorization: Bearer`.
pub fn api_key(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Some(k) = headers
        .get("x-api-key")
        .ok()
        .flatten()
        .filter(|k| !k.trim().is_empty())
    {
        return Some(k.trim().to_owned());
    }
    let auth = headers.get("authorization").ok().flatten()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The caller's principal when its key is valid and has `scope`; otherwise the refusal to
/// answer with (401 without a valid key, 403 without the scope).
pub async fn require(
    req: &Request,
    config: &Config,
    scope: Scope,
) -> Result<std::result::Result<Principal, Response>> {
    let Some(key) = api_key(req) else {
        return json_error(
            401,
            "unauthorized",
            "an API key is required (X-API-Key header or Authorization: Bearer)",
        )
        .map(Err);
    };
    let principal = match resolve(&key, config).await? {
        Ok(p) => p,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if !principal.scopes.contains(&scope) {
        let name = match scope {
            Scope::Sdk => "sdk",
            Scope::Admin => "admin",
        };
        return json_error(
            403,
            "forbidden",
            &format!("this API key lacks the `{name}` scope"),
        )
        .map(Err);
    }
    Ok(Ok(principal))
}

async fn resolve(key: &str, config: &Config) -> Result<std::result::Result<Principal, Response>> {
    let hash = sha256_hex(key.as_bytes());
    let now = Date::now().as_millis() as f64;
    let cached = CACHE.with(|c| {
        c.borrow()
            .get(&hash)
            .filter(|(_, expires)| *expires > now)
            .map(|(p, _)| p.clone())
    });
    if let Some(p) = cached {
        return Ok(Ok(p));
    }
    let resp = origin::get(config, PRINCIPAL_PATH, key).await;
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => {
            worker::console_error!("origin unreachable for key lookup: {e}");
            return json_error(502, "origin_unavailable", "could not verify the API key").map(Err);
        }
    };
    let status = resp.status_code();
    if status == 401 || status == 403 {
        // The origin's own JSON error, as it is.
        let body = resp.text().await.unwrap_or_default();
        let refusal = Response::ok(body)?.with_status(status);
        let headers = worker::Headers::new();
        headers.set("content-type", "application/json")?;
        return Ok(Err(refusal.with_headers(headers)));
    }
    if status != 200 {
        return json_error(
            502,
            "origin_unavailable",
            &format!("the origin answered {status} to the key lookup"),
        )
        .map(Err);
    }
    let principal: Principal = match resp.json().await {
        Ok(p) => p,
        Err(_) => {
            return json_error(
                502,
                "origin_unavailable",
                "the origin's key lookup was unreadable",
            )
            .map(Err)
        }
    };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_CACHED_KEYS {
            c.clear();
        }
        c.insert(hash, (principal.clone(), now + config.auth_cache_ms));
    });
    Ok(Ok(principal))
}
