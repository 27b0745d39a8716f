//! The local stand-in for the HTTP API of template.yaml: maps each request path to the
//! function that owns it and forwards it to `cargo lambda watch`'s function-URL emulator
//! (`/lambda-url/<function>/<path>`), the way API Gateway routes it in AWS.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// The function that owns `path`: the routes of template.yaml's HttpApi events, with the
/// `api` function as the `$default` route.
pub fn function_for(path: &str) -> &'static str {
    match path {
        "/" | "/v1/traces" | "/v1/metrics" => "ingest",
        "/sdk/snapshots/checkin" => "checkin",
        "/sdk/snapshots/auto-register"
        | "/sdk/snapshots/register"
        | "/sdk/snapshots/capture"
        | "/sdk/snapshots/capture/batch"
        | "/sdk/snapshots" => "capture",
        p if p
            .strip_prefix("/sdk/snapshots/active/")
            .is_some_and(|s| !s.is_empty() && !s.contains('/')) =>
        {
            "poll"
        }
        _ => "api",
    }
}

#[derive(Clone)]
struct Upstream {
    base: String,
    http: reqwest::Client,
}

/// Headers that describe one hop, not the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "upgrade"
    )
}

async fn forward(State(up): State<Upstream>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let mut url = format!("{}/lambda-url/{}{}", up.base, function_for(path), path);
    if let Some(q) = parts.uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return (StatusCode::BAD_REQUEST, "unreadable request body").into_response();
    };
    let mut out = up.http.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    match out.send().await {
        Ok(resp) => {
            let mut builder = Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                if !hop_by_hop(name) {
                    builder = builder.header(name, value);
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            builder
                .body(Body::from(bytes))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("function unreachable: {e}"),
        )
            .into_response(),
    }
}

/// The router forwarding to the emulator at `upstream` (`http://127.0.0.1:9000`).
pub fn router(upstream: &str) -> anyhow::Result<Router> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    Ok(Router::new().fallback(forward).with_state(Upstream {
        base: upstream.trim_end_matches('/').to_owned(),
        http,
    }))
}

/// Serves the router on `listen` until the process ends.
pub async fn serve(listen: SocketAddr, upstream: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("router listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router(upstream)?).await?;
    Ok(())
}
