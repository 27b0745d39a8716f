//! The dashboard's server side, in-process over the real router and a real SQLite store:
//! sessions, CSRF on every state-changing route, project isolation of a session, and the
//! list queries the pages rely on (snapshot pages and time filter, per-minute series).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sightline_core::model::Scope;
use sightline_core::Sightline;
use tower::ServiceExt;

const KEY_A: &str = "sl_dashboard_test_project_a";

struct Env {
    router: Router,
    app: Arc<Sightline>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let server = common::local_server(KEY_A).await;
    Env {
        router: server.router,
        app: server.app,
        _dir: server.dir,
    }
}

/// A signed-in browser: its cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Env {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn sign_in(&self, key: &str) -> Browser {
        let res = self
            .send(
                Request::post("/api/session")
                    .header(header::HOST, "127.0.0.1:8081")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(json!({"api_key": key}).to_string()))
                    .unwrap(),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        let set = res.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        Browser {
            cookie: set.split(';').next().unwrap().to_owned(),
            csrf: res.body["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A request as the dashboard's JavaScript makes it (cookie, optional CSRF header).
    async fn call(
        &self,
        b: Option<&Browser>,
        csrf: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(b) = b {
            req = req.header(header::COOKIE, &b.cookie);
        }
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// The same request with the browser's correct CSRF token.
    async fn ok(&self, b: &Browser, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.call(Some(b), Some(&b.csrf), method, path, body).await
    }

    async fn with_key(&self, key: &str, method: &str, path: &str, body: Value) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(path)
                .header("x-api-key", key)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }
}

fn breakpoint_body(service: &str, line: i64) -> Value {
    json!({"service_name": service, "file_path": "/app/pay.py", "line_number": line,
        "function_name": "pay", "label": format!("pay{line}")})
}

#[tokio::test]
async fn every_state_changing_route_needs_a_session_and_its_csrf_token() {
    let env = env().await;
    let browser = env.sign_in(KEY_A).await;
    let other = env.sign_in(KEY_A).await;
    let bp = env
        .ok(
            &browser,
            "POST",
            "/api/breakpoints",
            Some(breakpoint_body("svc", 1)),
        )
        .await;
    assert_eq!(bp.status, StatusCode::CREATED, "{}", bp.body);
    let id = bp.body["id"].as_str().unwrap().to_owned();

    let routes: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            "/api/breakpoints".into(),
            Some(breakpoint_body("svc", 2)),
        ),
        (
            "PATCH",
            format!("/api/breakpoints/{id}"),
            Some(json!({"condition": "x > 1"})),
        ),
        ("DELETE", format!("/api/breakpoints/{id}"), None),
        (
            "POST",
            "/api/services/svc/kill-switch".into(),
            Some(json!({"enabled": true})),
        ),
        (
            "PUT",
            "/api/services/svc/settings".into(),
            Some(json!({"pii_patterns": []})),
        ),
        (
            "POST",
            "/api/conditions/validate".into(),
            Some(json!({"condition": "a > 1"})),
        ),
        ("DELETE", "/api/session".into(), None),
    ];
    for (method, path, body) in &routes {
        // No session at all: 401.
        let r = env.call(None, None, method, path, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(
            r.body["error"]["code"].is_string(),
            "{method} {path}: JSON error"
        );
        // A session without the token, with a wrong one, and with another session's: 403.
        for csrf in [None, Some("0000"), Some(other.csrf.as_str())] {
            let r = env
                .call(Some(&browser), csrf, method, path, body.clone())
                .await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {path} csrf={csrf:?}"
            );
            assert_eq!(r.body["error"]["code"], "csrf_token_invalid");
        }
        // A forged session cookie: 401.
        let forged = Browser {
            cookie: "sightline_session=sls_forged".into(),
            csrf: browser.csrf.clone(),
        };
        let r = env.ok(&forged, method, path, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path} forged");
    }
    // Nothing changed.
    let list = env.ok(&browser, "GET", "/api/breakpoints", None).await;
    assert_eq!(list.body["breakpoints"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["breakpoints"][0]["condition"], Value::Null);
    let services = env.ok(&browser, "GET", "/api/services", None).await;
    assert_eq!(services.body["services"][0]["kill_switch"], false);

    // With the token, each of them works (the refusals above were about the token).
    for (method, path, body) in &routes {
        let r = env.ok(&browser, method, path, body.clone()).await;
        assert!(
            r.status.is_success(),
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
    }
    // The last one signed out: the cookie is cleared and no longer accepted.
    let r = env.ok(&browser, "GET", "/api/services", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The HTML sign-out form needs the token too.
    let fresh = env.sign_in(KEY_A).await;
    let form = |csrf: &str| {
        Request::post("/logout")
            .header(header::COOKIE, &fresh.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf_token={csrf}")))
            .unwrap()
    };
    assert_eq!(env.send(form("nope")).await.status, StatusCode::FORBIDDEN);
    let out = env.send(form(&fresh.csrf)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        env.ok(&fresh, "GET", "/api/services", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_session_of_project_a_never_sees_project_b() {
    let env = env().await;
    let (_, key_b) = env
        .app
        .create_api_key("project-b", "b", &[Scope::Sdk, Scope::Admin], None)
        .await
        .unwrap();
    // Project B: a breakpoint, a snapshot, a trace with code locations, a kill switch.
    let bp = env
        .with_key(
            &key_b,
            "POST",
            "/api/breakpoints",
            breakpoint_body("b-svc", 7),
        )
        .await;
    assert_eq!(bp.status, StatusCode::CREATED);
    let bp_id = bp.body["id"].as_str().unwrap().to_owned();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let capture = env
        .with_key(
            &key_b,
            "POST",
            "/sdk/snapshots/capture",
            json!({"breakpoint_id": bp_id, "service_name": "b-svc", "file_path": "/app/pay.py",
                "function_name": "pay", "label": "pay7", "line_number": 7, "trace_id": trace_id,
                "variables": {"secret_of_b": 1}, "captured_at": "2026-11-22T12:00:00Z"}),
        )
        .await;
    assert_eq!(capture.status, StatusCode::CREATED, "{}", capture.body);
    let snapshot_id = capture.body["snapshot_id"]
        .as_str()
        .or_else(|| capture.body["id"].as_str())
        .unwrap()
        .to_owned();
    let otlp = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "b-svc"}}]},
        "scopeSpans": [{"spans": [{"traceId": trace_id, "spanId": "00f067aa0ba902b7", "name": "GET /b",
            "startTimeUnixNano": "1763812800000000000", "endTimeUnixNano": "1763812800100000000",
            "attributes": [{"key": "code.filepath", "value": {"stringValue": "/app/b.py"}},
                           {"key": "code.lineno", "value": {"intValue": "3"}}]}]}]}]});
    let ingest = env.with_key(&key_b, "POST", "/v1/traces", otlp).await;
    assert_eq!(ingest.status, StatusCode::OK, "{}", ingest.body);

    // Project A's browser sees none of it.
    let a = env.sign_in(KEY_A).await;
    for path in [
        "/api/services",
        "/api/breakpoints",
        "/api/snapshots",
        "/api/traces",
    ] {
        let r = env.ok(&a, "GET", path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let list = r
            .body
            .as_object()
            .unwrap()
            .values()
            .find_map(Value::as_array)
            .unwrap();
        assert!(
            list.is_empty(),
            "{path} shows another project's data: {}",
            r.body
        );
    }
    let code = env.ok(&a, "GET", "/api/code?service=b-svc", None).await;
    assert_eq!(code.body["files"], json!([]), "{}", code.body);
    for path in [
        format!("/api/breakpoints/{bp_id}"),
        format!("/api/snapshots/{snapshot_id}"),
        format!("/api/traces/{trace_id}"),
    ] {
        let r = env.ok(&a, "GET", &path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
    }
    // ...and cannot change it, even with a valid session and token.
    let patch = env
        .ok(
            &a,
            "PATCH",
            &format!("/api/breakpoints/{bp_id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    let delete = env
        .ok(&a, "DELETE", &format!("/api/breakpoints/{bp_id}"), None)
        .await;
    assert_eq!(delete.status, StatusCode::NOT_FOUND);
    // A's kill switch on a service of the same name is A's own.
    let kill = env
        .ok(
            &a,
            "POST",
            "/api/services/b-svc/kill-switch",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(kill.status, StatusCode::OK);
    let b_bp = env
        .with_key(
            &key_b,
            "GET",
            &format!("/api/breakpoints/{bp_id}"),
            json!({}),
        )
        .await;
    assert_eq!(b_bp.body["enabled"], true);
    let b_services = env
        .with_key(&key_b, "GET", "/api/services", json!({}))
        .await;
    assert_eq!(b_services.body["services"][0]["kill_switch"], false);
    // B's own session sees B's data.
    let b = env.sign_in(&key_b).await;
    let r = env.ok(&b, "GET", "/api/snapshots", None).await;
    assert_eq!(r.body["snapshots"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn sessions_need_an_admin_key_and_end_with_it() {
    let env = env().await;
    let (sdk_only, sdk_key) = env
        .app
        .create_api_key("default", "sdk", &[Scope::Sdk], None)
        .await
        .unwrap();
    let _ = sdk_only;
    let r = env
        .send(
            Request::post("/api/session")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!({"api_key": sdk_key}).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = env
        .send(
            Request::post("/api/session")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!({"api_key": "sl_unknown"}).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A session opened with a key that is later revoked ends with it.
    let (record, admin_key) = env
        .app
        .create_api_key("default", "admin", &[Scope::Admin], None)
        .await
        .unwrap();
    let b = env.sign_in(&admin_key).await;
    assert_eq!(
        env.ok(&b, "GET", "/api/session", None).await.status,
        StatusCode::OK
    );
    env.app.revoke_api_key("default", &record.id).await.unwrap();
    assert_eq!(
        env.ok(&b, "GET", "/api/breakpoints", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn pages_redirect_to_sign_in_and_the_cookie_is_locked_down() {
    let env = env().await;
    for path in [
        "/",
        "/services",
        "/code",
        "/breakpoints",
        "/snapshots",
        "/snapshots/abc",
        "/traces",
        "/traces/abc",
    ] {
        let r = env
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(r.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login?next="));
    }
    let login = env
        .send(Request::get("/login").body(Body::empty()).unwrap())
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));

    let form = |host: &str, key: &str, next: &str| {
        Request::post("/login")
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("api_key={key}&next={next}")))
            .unwrap()
    };
    let local = env
        .send(form("127.0.0.1:8081", KEY_A, "%2Fsnapshots"))
        .await;
    assert_eq!(local.status, StatusCode::SEE_OTHER);
    assert_eq!(local.headers[header::LOCATION], "/snapshots");
    let cookie = local.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains("Secure"), "plain http on loopback");
    let remote = env
        .send(form(
            "sightline.example.com",
            KEY_A,
            "https%3A%2F%2Fevil.example",
        ))
        .await;
    assert!(remote.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("; Secure"));
    assert_eq!(
        remote.headers[header::LOCATION],
        "/services",
        "never redirected off-site"
    );
    let bad = env.send(form("127.0.0.1", "sl_wrong", "%2F")).await;
    assert!(bad.headers.get(header::SET_COOKIE).is_none());
    assert!(bad.body.as_str().unwrap().contains("login-error"));

    // With the cookie, a page is the shell with its CSRF token.
    let session = cookie.split(';').next().unwrap();
    let page = env
        .send(
            Request::get("/snapshots")
                .header(header::COOKIE, session)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .body
        .as_str()
        .unwrap()
        .contains(r#"<meta name="csrf-token" content=""#));
}

#[tokio::test]
async fn snapshot_list_paginates_and_filters_by_time() {
    let env = env().await;
    let b = env.sign_in(KEY_A).await;
    let bp = env
        .ok(
            &b,
            "POST",
            "/api/breakpoints",
            Some(json!({"service_name": "svc",
            "file_path": "/app/pay.py", "line_number": 3, "function_name": "pay", "label": "pay",
            "rate_limit_per_minute": 0})),
        )
        .await;
    let started = sightline_core::timefmt::format_ms(env.app.now_ms() - 1);
    for i in 0..5 {
        let r = env
            .with_key(
                KEY_A,
                "POST",
                "/sdk/snapshots/capture",
                json!({"breakpoint_id": bp.body["id"],
                "service_name": "svc", "variables": {"i": i},
                "captured_at": format!("2026-11-22T12:00:0{i}Z")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    // Cursor pages of 2 cover the 5 snapshots once each, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/snapshots?limit=2&cursor={c}"),
            None => "/api/snapshots?limit=2".to_owned(),
        };
        let page = env.ok(&b, "GET", &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let ids: Vec<String> = page.body["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no duplicates");
    // Time filter on the receive time.
    let since = env
        .ok(&b, "GET", &format!("/api/snapshots?from={started}"), None)
        .await;
    assert_eq!(since.body["snapshots"].as_array().unwrap().len(), 5);
    let future = sightline_core::timefmt::format_ms(env.app.now_ms() + 60_000);
    let none = env
        .ok(&b, "GET", &format!("/api/snapshots?from={future}"), None)
        .await;
    assert_eq!(none.body["snapshots"], json!([]));
    let until = env
        .ok(&b, "GET", &format!("/api/snapshots?to={started}"), None)
        .await;
    assert_eq!(until.body["snapshots"], json!([]));
    let bad = env
        .ok(&b, "GET", "/api/snapshots?from=yesterday", None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["code"], "invalid_query");
    // The services view carries one point per minute of the window for the sparklines.
    let services = env
        .ok(&b, "GET", "/api/services?window_minutes=30", None)
        .await;
    let series = services.body["services"][0]["stats"]["series"]
        .as_array()
        .unwrap();
    assert_eq!(series.len(), 30);
    assert!(series[0]["minute"].is_string() && series[29]["requests"].is_i64());
}
