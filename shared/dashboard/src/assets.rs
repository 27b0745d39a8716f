//! The embedded front end: two HTML templates and the static files under `assets/`.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The app shell every page serves; `{{csrf_token}}`, `{{project_id}}` and `{{version}}`
/// are filled in per request.
pub const SHELL: &str = include_str!("../assets/shell.html");

/// The sign-in page; `{{next}}`, `{{error}}` and `{{version}}` are filled in per request.
pub const LOGIN: &str = include_str!("../assets/login.html");

/// `(path under /assets/, content type, body)`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "logo.svg",
        "image/svg+xml",
        include_str!("../assets/logo.svg"),
    ),
    ("js/app.js", JS, include_str!("../assets/js/app.js")),
    ("js/ui.js", JS, include_str!("../assets/js/ui.js")),
    ("js/api.js", JS, include_str!("../assets/js/api.js")),
    ("js/live.js", JS, include_str!("../assets/js/live.js")),
    (
        "js/services.js",
        JS,
        include_str!("../assets/js/services.js"),
    ),
    ("js/code.js", JS, include_str!("../assets/js/code.js")),
    (
        "js/breakpoints.js",
        JS,
        include_str!("../assets/js/breakpoints.js"),
    ),
    (
        "js/snapshots.js",
        JS,
        include_str!("../assets/js/snapshots.js"),
    ),
    ("js/traces.js", JS, include_str!("../assets/js/traces.js")),
    (
        "js/waterfall.js",
        JS,
        include_str!("../assets/js/waterfall.js"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// `GET /assets/{path}`: an embedded file (revalidated on every load, so an upgrade shows at once).
pub async fn serve(Path(path): Path<String>) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return sightline_http::error::not_found_route().into_response();
    };
    let mut res = (StatusCode::OK, *body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}
