//! The Worker's settings: vars and secrets named in infra/wrangler.toml.

use worker::Env;

/// Settings read from the Worker's environment on each request (cheap: bindings are local).
#[derive(Clone)]
pub struct Config {
    /// The origin API every non-stream request is forwarded to, without a trailing `/`.
    pub origin: String,
    /// Shared HMAC secret of the publish endpoint; publishing is refused without it.
    pub publish_secret: Option<String>,
    /// How long a resolved API key is trusted before asking the origin again (revocations
    /// take effect within this time).
    pub auth_cache_ms: f64,
}

/// Default of `AUTH_CACHE_SECS`.
const DEFAULT_AUTH_CACHE_SECS: f64 = 30.0;

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let origin = env
            .var("ORIGIN_URL")
            .map(|v| v.to_string())
            .map_err(|_| "the ORIGIN_URL var is not set".to_owned())?;
        let origin = origin.trim().trim_end_matches('/').to_owned();
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err("ORIGIN_URL must be an http(s) URL".into());
        }
        let publish_secret = env
            .secret("PUBLISH_SECRET")
            .map(|s| s.to_string())
            .or_else(|_| env.var("PUBLISH_SECRET").map(|s| s.to_string()))
            .ok()
            .filter(|s| !s.is_empty());
        Ok(Self {
            origin,
            publish_secret,
            auth_cache_ms: number_var(env, "AUTH_CACHE_SECS", DEFAULT_AUTH_CACHE_SECS) * 1000.0,
        })
    }
}

/// A numeric var, or `default` when unset or not a number.
pub fn number_var(env: &Env, name: &str, default: f64) -> f64 {
    env.var(name)
        .ok()
        .and_then(|v| v.to_string().trim().parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0)
        .unwrap_or(default)
}
