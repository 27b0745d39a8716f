//! Requests to the origin API: the pass-through of every non-stream route, and the two reads
//! the edge makes itself (key lookup, a service's SDK state).

use worker::{Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response, Result};

use crate::config::Config;
use crate::errors::json_error;

/// Forwards `req` to the origin: same method, path, query, headers and (streamed) body; the
/// origin's response (status, headers, streamed body) goes back as it is. Redirects are
/// returned to the client, not followed.
pub async fn pass_through(req: Request, config: &Config) -> Result<Response> {
    let url = req.url()?;
    let mut target = format!("{}{}", config.origin, url.path());
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut init = RequestInit::new();
    init.with_method(req.method())
        .with_headers(req.headers().clone())
        .with_redirect(RequestRedirect::Manual);
    if !matches!(req.method(), Method::Get | Method::Head) {
        if let Some(body) = req.inner().body() {
            init.with_body(Some(body.into()));
        }
    }
    let upstream = Request::new_with_init(&target, &init)?;
    match Fetch::Request(upstream).send().await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            worker::console_error!("origin request failed: {e}");
            json_error(
                502,
                "origin_unavailable",
                "the origin API could not be reached",
            )
        }
    }
}

/// `GET {origin}{path}` with the caller's API key.
pub async fn get(config: &Config, path: &str, api_key: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("x-api-key", api_key)?;
    headers.set("accept", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init(&format!("{}{path}", config.origin), &init)?;
    Fetch::Request(req).send().await
}
