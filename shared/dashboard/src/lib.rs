//! The Sightline dashboard: a server-rendered HTML shell, plain ES modules and one style
//! sheet, all embedded in the binary (no CDN, no front-end build), talking to the JSON
//! admin API (`/api/*`) and its SSE stream (`/api/events`) with a session cookie.
//!
//! Hosts mount [`routes`] next to the admin API; it needs nothing but [`AppState`].
//!
//! Sign-in trades an admin key for a session (see `sightline_core::app::Session`): the
//! token travels only in an `HttpOnly; SameSite=Strict` cookie (`Secure` unless served over
//! plain http on loopback), and every state-changing request made with the cookie must echo
//! the session's CSRF token in `X-CSRF-Token` (checked by `sightline_http::extract::AdminAuth`).

mod assets;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use sightline_core::app::{NewSession, Session, SESSION_TTL_SECS};
use sightline_core::wire::parse_lenient_json;
use sightline_core::Error;
use sightline_http::error::{ApiError, ApiResult};
use sightline_http::extract::{
    session_token_from_headers, LimitedBody, CSRF_HEADER, SESSION_COOKIE,
};
use sightline_http::AppState;

/// Paths of the app's pages: each serves the same shell, whose script renders the page.
pub const PAGES: [&str; 10] = [
    "/",
    "/services",
    "/code",
    "/breakpoints",
    "/breakpoints/{id}",
    "/snapshots",
    "/snapshots/{id}",
    "/traces",
    "/traces/{id}",
    "/help",
];

/// Every dashboard route: pages, sign-in/out, the session API and the embedded assets.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/login", get(login_page).post(login_form))
        .route("/logout", axum::routing::post(logout_form))
        .route(
            "/api/session",
            get(get_session).post(create_session).delete(delete_session),
        )
        .route("/assets/{*path}", get(assets::serve));
    for page in PAGES {
        router = router.route(page, get(shell));
    }
    router
}

/// Content-Security-Policy of every dashboard document: only our own scripts, styles and
/// connections; no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn html(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A same-site path to return to after sign-in (never another origin).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with("/login")
                && n.len() < 512
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/services".to_owned(),
    }
}

/// The session of a request's cookie, if it is valid.
async fn current_session(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let token = session_token_from_headers(headers)?;
    state.app.session(token).await.ok()
}

/// Serves the app shell, or redirects to the sign-in page without a session.
async fn shell(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let Some(session) = current_session(&state, &headers).await else {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let target = format!(
            "/login?next={}",
            sightline_core::app::encode_path_segment(path)
        );
        return Redirect::to(&target).into_response();
    };
    if uri.path() == "/" {
        return Redirect::to("/services").into_response();
    }
    let body = assets::SHELL
        .replace("{{csrf_token}}", &escape(&session.csrf_token))
        .replace("{{project_id}}", &escape(&session.principal.project_id))
        .replace("{{version}}", env!("CARGO_PKG_VERSION"));
    html(StatusCode::OK, body)
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn login_html(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let error = error.map_or(String::new(), |e| {
        format!(
            r#"<p class="form-error" role="alert" id="login-error">{}</p>"#,
            escape(e)
        )
    });
    let body = assets::LOGIN
        .replace("{{next}}", &escape(next))
        .replace("{{error}}", &error)
        .replace("{{version}}", env!("CARGO_PKG_VERSION"));
    html(status, body)
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if current_session(&state, &headers).await.is_some() {
        return Redirect::to(&next).into_response();
    }
    login_html(StatusCode::OK, &next, None)
}

#[derive(Deserialize)]
struct LoginForm {
    api_key: String,
    next: Option<String>,
}

/// `POST /login` (the HTML form): sets the cookie and goes on, or shows the form again.
async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else {
        return login_html(StatusCode::OK, "/services", Some("Enter an admin API key."));
    };
    let next = safe_next(form.next.as_deref());
    match state.app.create_session(&form.api_key).await {
        Ok(session) => {
            let mut res = Redirect::to(&next).into_response();
            set_cookie(&mut res, &session_cookie(&headers, &session));
            res
        }
        // The form is shown again (200: error statuses of the shared router carry JSON);
        // API clients use `POST /api/session`, which answers 401/403.
        Err(e) => {
            let message = if e.kind == sightline_core::ErrorKind::Forbidden {
                "This key has no admin scope: sign in with an admin key."
            } else {
                "That key was not accepted: check it, or create one with `sightline keys create --scopes admin`."
            };
            login_html(StatusCode::OK, &next, Some(message))
        }
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf_token: Option<String>,
}

/// `POST /logout` (the HTML form, CSRF token in a hidden field): ends the session.
async fn logout_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let given = form.ok().and_then(|f| f.0.csrf_token);
    match end_session(&state, &headers, given.as_deref()).await {
        Ok(mut res) => {
            *res.status_mut() = StatusCode::SEE_OTHER;
            res.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/login"));
            res
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /api/session`: `{"api_key"}` (JSON or form) → 201 with the CSRF token and the cookie.
async fn create_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> ApiResult<Response> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let key = if is_form {
        serde_urlencoded_key(&body)
    } else {
        parse_lenient_json(&body)?
            .get("api_key")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
    .ok_or_else(|| Error::bad_request("missing_field", "`api_key` is required"))?;
    let session = state.app.create_session(&key).await?;
    let body = Session {
        principal: session.principal.clone(),
        csrf_token: session.csrf_token.clone(),
        expires_at: session.expires_at,
    }
    .to_api();
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    set_cookie(&mut res, &session_cookie(&headers, &session));
    Ok(res)
}

/// The `api_key` field of a form body.
fn serde_urlencoded_key(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct KeyForm {
        api_key: String,
    }
    serde_urlencoded::from_bytes::<KeyForm>(body)
        .ok()
        .map(|f| f.api_key)
}

/// `GET /api/session`: who is signed in, and the CSRF token for the page's requests.
async fn get_session(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let token = session_token_from_headers(&headers)
        .ok_or_else(|| Error::unauthorized("sign in to continue"))?;
    Ok(Json(state.app.session(token).await?.to_api()))
}

/// `DELETE /api/session`: signs out (CSRF token in `X-CSRF-Token`).
async fn delete_session(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    end_session(&state, &headers, given.as_deref()).await
}

/// Ends the cookie's session after checking its CSRF token; answers 204 and clears the cookie.
async fn end_session(
    state: &AppState,
    headers: &HeaderMap,
    csrf_given: Option<&str>,
) -> ApiResult<Response> {
    let token = session_token_from_headers(headers)
        .ok_or_else(|| Error::unauthorized("sign in to continue"))?;
    let session = state.app.session(token).await?;
    if csrf_given.is_none_or(|g| !constant_time_eq(g.as_bytes(), session.csrf_token.as_bytes())) {
        return Err(ApiError(Error::new(
            sightline_core::ErrorKind::Forbidden,
            "csrf_token_invalid",
            "signing out needs the session's CSRF token",
        )));
    }
    state.app.delete_session(token).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut res, &clear_cookie(headers));
    Ok(res)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Plain http is only trusted on loopback (the local server); anywhere else, or behind a
/// proxy that says https, the cookie is `Secure`.
fn needs_secure_cookie(headers: &HeaderMap) -> bool {
    if headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

fn session_cookie(headers: &HeaderMap, session: &NewSession) -> String {
    format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_TTL_SECS}{}",
        session.token,
        if needs_secure_cookie(headers) {
            "; Secure"
        } else {
            ""
        }
    )
}

fn clear_cookie(headers: &HeaderMap) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if needs_secure_cookie(headers) {
            "; Secure"
        } else {
            ""
        }
    )
}

fn set_cookie(res: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/snapshots?x=1")), "/snapshots?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/services");
        assert_eq!(safe_next(Some("https://evil.example")), "/services");
        assert_eq!(safe_next(Some("/\\evil.example")), "/services");
        assert_eq!(safe_next(None), "/services");
    }

    #[test]
    fn secure_cookie_unless_plain_loopback() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8081"));
        assert!(!needs_secure_cookie(&h));
        h.insert(header::HOST, HeaderValue::from_static("[::1]:8081"));
        assert!(!needs_secure_cookie(&h));
        h.insert(header::HOST, HeaderValue::from_static("localhost"));
        assert!(!needs_secure_cookie(&h));
        h.insert(
            header::HOST,
            HeaderValue::from_static("sightline.example.com"),
        );
        assert!(needs_secure_cookie(&h));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(needs_secure_cookie(&h));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
