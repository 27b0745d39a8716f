//! A tower [`Layer`] that records the request context of every request, so snapshots taken
//! while handling it carry `request_context` (wire protocol §5.2).
//!
//! ```no_run
//! # #[cfg(feature = "axum")] {
//! use axum::{routing::get, Router};
//! use sightline::layer::SightlineLayer;
//!
//! let app: Router = Router::new()
//!     .route("/orders/{id}", get(|| async { "ok" }))
//!     // `Router::layer` wraps each route after routing, so the matched route is known.
//!     .layer(SightlineLayer::new());
//! # }
//! ```
//!
//! What is recorded (see [`RequestContext`]):
//! * method and path (axum's `OriginalUri` when present, so nested routers report the full
//!   path), and the matched route template (axum's `MatchedPath`) when present;
//! * query parameters, percent-decoded (`+` is a space), first value of each name; invalid
//!   encodings are kept as they are and invalid UTF-8 is replaced, never rejected;
//! * the allowlisted headers [`RECORDED_HEADERS`] (first value, lowercase name), plus
//!   [`REDACTED_HEADERS`] recorded as `"[REDACTED]"` when present; every other header is
//!   dropped;
//! * the client IP: first `X-Forwarded-For` hop, else `X-Real-IP`, else the peer address of
//!   axum's `ConnectInfo<SocketAddr>` (`into_make_service_with_connect_info`).
//!
//! The forwarded headers are taken at face value: behind no proxy, a client can put anything
//! there. At most [`MAX_QUERY_PARAMS`] parameters are kept and every recorded value is cut to
//! [`MAX_VALUE_LEN`] bytes. Reading a request never panics and never fails it: the layer only
//! reads, and it passes the request on unchanged.
//!
//! The matched route and the connect info need the `axum` feature; without it, `route` is
//! `None` and the client IP comes from the headers only.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderMap, HeaderName};
use http::Request;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::context::{self, RequestContext};

/// Headers recorded with their (first) value.
pub const RECORDED_HEADERS: [HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::HOST,
    header::USER_AGENT,
    header::REFERER,
    header::ACCEPT,
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("traceparent"),
];

/// Headers whose presence is recorded, with the value [`REDACTED`].
pub const REDACTED_HEADERS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::COOKIE,
    HeaderName::from_static("x-api-key"),
];

/// The value recorded for a [`REDACTED_HEADERS`] header.
pub const REDACTED: &str = "[REDACTED]";

/// At most this many query parameters are recorded.
pub const MAX_QUERY_PARAMS: usize = 64;

/// Longest recorded path, header value, query name or value and client IP, in bytes (cut at a
/// character boundary).
pub const MAX_VALUE_LEN: usize = 2048;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// tower Layer capturing request context for snapshots taken while handling the request:
/// method, path, matched route (axum's `MatchedPath` when present in extensions), query
/// params (first value each, percent-decoded), selected headers (allowlist: content-type,
/// content-length, host, user-agent, referer, accept, x-request-id, traceparent; plus
/// Authorization, Cookie, X-Api-Key recorded as `"[REDACTED]"`), client IP (X-Forwarded-For
/// first hop, then X-Real-IP, then `ConnectInfo<SocketAddr>` extension).
///
/// The context is visible through [`crate::context::current_request_context`] in the inner
/// service's `call` and while its response future is polled (not in tasks it spawns).
#[derive(Debug, Clone, Copy, Default)]
pub struct SightlineLayer;

impl SightlineLayer {
    /// The layer (same as `SightlineLayer` / `SightlineLayer::default()`).
    pub const fn new() -> Self {
        SightlineLayer
    }
}

impl<S> Layer<S> for SightlineLayer {
    type Service = SightlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SightlineService { inner }
    }
}

/// The service produced by [`SightlineLayer`]: sets the request context around the inner
/// service.
#[derive(Debug, Clone)]
pub struct SightlineService<S> {
    inner: S,
}

impl<S> SightlineService<S> {
    /// Wraps `inner` (same as `SightlineLayer.layer(inner)`).
    pub fn new(inner: S) -> Self {
        SightlineService { inner }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Response future of [`SightlineService`]: the inner future, polled with the request context
/// set.
pub type ResponseFuture<F> = TaskLocalFuture<Arc<RequestContext>, F>;

impl<S, B> Service<Request<B>> for SightlineService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Never let a bug here fail the host's request: fall back to an empty context.
        let ctx = catch_unwind(AssertUnwindSafe(|| RequestContext::from_http_request(&req)))
            .unwrap_or_default();
        let ctx = Arc::new(ctx);
        let inner = &mut self.inner;
        let fut = context::sync_scope_shared(Arc::clone(&ctx), move || inner.call(req));
        context::scope_shared(ctx, fut)
    }
}

impl RequestContext {
    /// The context [`SightlineLayer`] records for `req` (see the [module docs](self)). Useful
    /// with [`crate::context::scope`] in frameworks built on the `http` crate that do not take
    /// tower layers.
    pub fn from_http_request<B>(req: &Request<B>) -> RequestContext {
        let ext = req.extensions();
        let headers = req.headers();

        #[cfg(feature = "axum")]
        let uri = ext
            .get::<axum::extract::OriginalUri>()
            .map_or(req.uri(), |o| &o.0);
        #[cfg(not(feature = "axum"))]
        let uri = req.uri();

        #[cfg(feature = "axum")]
        let route = ext
            .get::<axum::extract::MatchedPath>()
            .map(|m| truncated(m.as_str()));
        #[cfg(not(feature = "axum"))]
        let route = None;

        let mut recorded = BTreeMap::new();
        for name in &RECORDED_HEADERS {
            if let Some(v) = headers.get(name) {
                recorded.insert(name.as_str().to_owned(), header_str(v.as_bytes()));
            }
        }
        if !recorded.contains_key(header::HOST.as_str()) {
            // HTTP/2 carries the host in the `:authority` pseudo-header, i.e. the URI.
            if let Some(auth) = req.uri().authority() {
                recorded.insert(header::HOST.as_str().to_owned(), truncated(auth.as_str()));
            }
        }
        for name in &REDACTED_HEADERS {
            if headers.contains_key(name) {
                recorded.insert(name.as_str().to_owned(), REDACTED.to_owned());
            }
        }

        let client_ip = header_ip(headers).or_else(|| {
            #[cfg(feature = "axum")]
            {
                ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|ci| ci.0.ip().to_string())
            }
            #[cfg(not(feature = "axum"))]
            {
                let _ = ext;
                None
            }
        });

        RequestContext {
            method: req.method().as_str().to_owned(),
            path: truncated(uri.path()),
            route,
            query: uri.query().map(parse_query).unwrap_or_default(),
            headers: recorded,
            client_ip,
        }
    }
}

/// First `X-Forwarded-For` hop, else `X-Real-IP` (trimmed, non-empty).
fn header_ip(headers: &HeaderMap) -> Option<String> {
    let first_hop = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .next()
        .and_then(|v| non_empty(v.as_bytes().split(|&b| b == b',').next().unwrap_or(&[])));
    first_hop.or_else(|| headers.get(X_REAL_IP).and_then(|v| non_empty(v.as_bytes())))
}

fn non_empty(bytes: &[u8]) -> Option<String> {
    let s = header_str(bytes);
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// A header value as text: invalid UTF-8 replaced, cut to [`MAX_VALUE_LEN`].
fn header_str(bytes: &[u8]) -> String {
    let bytes = bytes.get(..MAX_VALUE_LEN).unwrap_or(bytes);
    truncated(&String::from_utf8_lossy(bytes))
}

/// `s` cut to at most [`MAX_VALUE_LEN`] bytes at a character boundary.
fn truncated(s: &str) -> String {
    if s.len() <= MAX_VALUE_LEN {
        return s.to_owned();
    }
    let mut end = MAX_VALUE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// `application/x-www-form-urlencoded` query parsing: first value of each name, at most
/// [`MAX_QUERY_PARAMS`] names; empty names are skipped.
fn parse_query(query: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in query.split('&') {
        if out.len() >= MAX_QUERY_PARAMS {
            break;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        if name.is_empty() {
            continue;
        }
        out.entry(name).or_insert_with(|| percent_decode(value));
    }
    out
}

/// Decodes `%XX` escapes and `+` (a space); a `%` not followed by two hex digits is kept as
/// it is; invalid UTF-8 is replaced. The result is cut to [`MAX_VALUE_LEN`].
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len().min(MAX_VALUE_LEN));
    let mut i = 0;
    while i < bytes.len() && out.len() < MAX_VALUE_LEN {
        let b = bytes.get(i).copied().unwrap_or_default();
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match bytes.get(i + 1..i + 3).and_then(hex_byte) {
                Some(decoded) => {
                    out.push(decoded);
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    truncated(&String::from_utf8_lossy(&out))
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let [hi, lo] = pair else { return None };
    let hi = (*hi as char).to_digit(16)?;
    let lo = (*lo as char).to_digit(16)?;
    u8::try_from(hi * 16 + lo).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::convert::Infallible;

    use http::{HeaderValue, Response};
    use tower::{service_fn, ServiceExt as _};

    use super::*;
    use crate::context::current_request_context;

    /// Sends `req` through the layer to a service that returns the context it sees.
    async fn seen(req: Request<()>) -> Option<RequestContext> {
        let svc = SightlineLayer.layer(service_fn(|_req: Request<()>| async {
            tokio::task::yield_now().await;
            Ok::<_, Infallible>(Response::new(current_request_context()))
        }));
        match svc.oneshot(req).await {
            Ok(resp) => resp.into_body(),
            Err(never) => match never {},
        }
    }

    fn get(uri: &str) -> http::request::Builder {
        Request::builder().method("GET").uri(uri)
    }

    #[tokio::test]
    async fn sets_the_context_inside_the_inner_service() {
        let req = Request::builder()
            .method("POST")
            .uri("/orders?x=1")
            .header("content-type", "application/json")
            .header("user-agent", "curl/8")
            .body(())
            .unwrap();
        let ctx = seen(req).await;
        let ctx = ctx.unwrap();
        assert_eq!(ctx.method, "POST");
        assert_eq!(ctx.path, "/orders");
        assert_eq!(ctx.route, None);
        assert_eq!(
            ctx.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(
            ctx.headers.get("user-agent").map(String::as_str),
            Some("curl/8")
        );
        assert_eq!(ctx.client_ip, None);
        // And nothing leaks out of the request.
        assert_eq!(current_request_context(), None);
    }

    #[tokio::test]
    async fn context_is_set_during_the_inner_call() {
        let svc = SightlineLayer.layer(tower::service_fn(|_req: Request<()>| {
            let now = current_request_context();
            async move { Ok::<_, Infallible>(now) }
        }));
        let seen_in_call = match svc.oneshot(get("/sync").body(()).unwrap()).await {
            Ok(v) => v,
            Err(never) => match never {},
        };
        assert_eq!(seen_in_call.map(|c| c.path).as_deref(), Some("/sync"));
    }

    #[tokio::test]
    async fn redacts_credentials_and_drops_other_headers() {
        let req = get("/")
            .header("Authorization", "Bearer secret-token")
            .header("Cookie", "session=abc")
            .header("cookie", "other=def")
            .header("X-API-Key", "sk_live_123")
            .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
            .header("X-Custom", "dropped")
            .header("Set-Cookie", "x=y")
            .header("Accept", "application/json")
            .header("Accept", "text/html")
            .header("X-Request-Id", "req-1")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(())
            .unwrap();
        let ctx = seen(req).await.unwrap();
        let expected: BTreeMap<String, String> = [
            ("authorization", REDACTED),
            ("cookie", REDACTED),
            ("x-api-key", REDACTED),
            ("accept", "application/json"),
            ("x-request-id", "req-1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(ctx.headers, expected);
        let json = serde_json::to_string(&ctx).unwrap();
        for secret in [
            "secret-token",
            "session=abc",
            "sk_live_123",
            "Zm9v",
            "dropped",
        ] {
            assert!(!json.contains(secret), "{secret} leaked: {json}");
        }
    }

    #[tokio::test]
    async fn parses_the_query() {
        let req = get("/search?q=caf%C3%A9+au+lait&tag=a&tag=b&empty=&flag&bad=%zz%4&=nameless&%E2%82%AC=euro&raw=%FF")
            .body(())
            .unwrap();
        let ctx = seen(req).await.unwrap();
        assert_eq!(ctx.path, "/search");
        let q = |k: &str| ctx.query.get(k).map(String::as_str);
        assert_eq!(q("q"), Some("café au lait"));
        assert_eq!(q("tag"), Some("a"));
        assert_eq!(q("empty"), Some(""));
        assert_eq!(q("flag"), Some(""));
        assert_eq!(q("bad"), Some("%zz%4"));
        assert_eq!(q("€"), Some("euro"));
        assert_eq!(q("raw"), Some("\u{FFFD}"));
        assert_eq!(q(""), None);
        assert_eq!(ctx.query.len(), 7);
    }

    #[test]
    fn query_limits() {
        let many: Vec<String> = (0..200).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_query(&many.join("&")).len(), MAX_QUERY_PARAMS);
        let long = "x".repeat(MAX_VALUE_LEN * 3);
        let q = parse_query(&format!("a={long}"));
        assert_eq!(q.get("a").map(String::len), Some(MAX_VALUE_LEN));
        // Cut at a character boundary.
        let s = "é".repeat(MAX_VALUE_LEN);
        let t = truncated(&s);
        assert!(t.len() <= MAX_VALUE_LEN && t.chars().all(|c| c == 'é'));
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%2b+"), "A+ ");
    }

    #[tokio::test]
    async fn client_ip_from_x_forwarded_for_first_hop() {
        let req = get("/")
            .header("X-Forwarded-For", " 203.0.113.7 , 10.0.0.1, 10.0.0.2")
            .header("X-Forwarded-For", "198.51.100.1")
            .header("X-Real-IP", "192.0.2.9")
            .body(())
            .unwrap();
        let ctx = seen(req).await.unwrap();
        assert_eq!(ctx.client_ip.as_deref(), Some("203.0.113.7"));
        // Forwarding headers themselves are not recorded.
        assert!(ctx.headers.is_empty(), "{:?}", ctx.headers);
    }

    #[tokio::test]
    async fn client_ip_fallbacks() {
        let req = get("/")
            .header("X-Forwarded-For", " ")
            .header("X-Real-IP", "192.0.2.9")
            .body(())
            .unwrap();
        let ctx = seen(req).await.unwrap();
        assert_eq!(ctx.client_ip.as_deref(), Some("192.0.2.9"));

        let ctx = seen(get("/").body(()).unwrap()).await;
        assert_eq!(ctx.unwrap().client_ip, None);
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn client_ip_from_connect_info() {
        let mut req = get("/").body(()).unwrap();
        let addr = std::net::SocketAddr::from(([192, 0, 2, 33], 51000));
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        let ctx = seen(req).await.unwrap();
        assert_eq!(ctx.client_ip.as_deref(), Some("192.0.2.33"));
    }

    #[tokio::test]
    async fn never_panics_on_odd_bytes() {
        let mut req = get("/p%ZZ?%=%&&==&a=%F0%9F%98&b=%C3").body(()).unwrap();
        let h = req.headers_mut();
        if let Ok(v) = HeaderValue::from_bytes(b"caf\xe9 \xff\x80") {
            h.insert(header::USER_AGENT, v.clone());
            h.insert(X_FORWARDED_FOR, v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&[b'x'; MAX_VALUE_LEN * 2]) {
            h.insert(header::REFERER, v);
        }
        let ctx = seen(req).await.unwrap();
        assert_eq!(ctx.path, "/p%ZZ");
        assert_eq!(
            ctx.headers.get("user-agent").map(String::as_str),
            Some("caf\u{FFFD} \u{FFFD}\u{FFFD}")
        );
        assert_eq!(
            ctx.client_ip.as_deref(),
            Some("caf\u{FFFD} \u{FFFD}\u{FFFD}")
        );
        assert_eq!(
            ctx.headers.get("referer").map(String::len),
            Some(MAX_VALUE_LEN)
        );
        assert_eq!(ctx.query.get("a").map(String::as_str), Some("\u{FFFD}"));
        assert_eq!(ctx.query.get("b").map(String::as_str), Some("\u{FFFD}"));
    }

    #[tokio::test]
    async fn host_from_the_authority() {
        let ctx = seen(get("http://example.com:8080/x").body(()).unwrap()).await;
        let ctx = ctx.unwrap();
        assert_eq!(
            ctx.headers.get("host").map(String::as_str),
            Some("example.com:8080")
        );
        assert_eq!(ctx.path, "/x");
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn axum_matched_route_and_nested_path() {
        use axum::body::Body;
        use axum::routing::get as get_route;
        use axum::Router;

        async fn show() -> axum::Json<Option<RequestContext>> {
            axum::Json(current_request_context())
        }

        let api = Router::new().route("/orders/{id}", get_route(show));
        let app = Router::new().nest("/api", api).layer(SightlineLayer);

        let req = Request::builder()
            .uri("/api/orders/42?verbose=1")
            .body(Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await;
        let body = match resp {
            Ok(r) => axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap(),
            Err(never) => match never {},
        };
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/api/orders/42");
        assert_eq!(v["route"], "/api/orders/{id}");
        assert_eq!(v["query"]["verbose"], "1");
    }
}
