//! The server the dashboard's tests and benchmark run against: every route of the local
//! server (SDK, ingest, admin, dashboard) over a real SQLite store in a temp dir, with an
//! admin key bootstrapped.

use std::sync::Arc;

use axum::Router;
use sightline_core::app::{Config, Ports};
use sightline_core::Sightline;
use sightline_http::hub::Hub;
use sightline_http::AppState;
use sightline_store_local::{open_local_store, RandomIds, SystemClock};

pub struct LocalServer {
    pub router: Router,
    pub app: Arc<Sightline>,
    /// Removed with the server.
    pub dir: tempfile::TempDir,
    /// Held so open streams are not told the server is closing.
    _closing: tokio::sync::watch::Sender<bool>,
}

/// Builds the server; `key` is the bootstrap key (both scopes).
pub async fn local_server(key: &str) -> LocalServer {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SystemClock);
    let (items, blobs) = open_local_store(dir.path(), clock.clone()).unwrap();
    let hub = Arc::new(Hub::default());
    let ports = Ports {
        items,
        blobs,
        events: hub.clone(),
        clock,
        ids: Arc::new(RandomIds),
    };
    let app = Arc::new(Sightline::new(ports, Config::default()));
    app.bootstrap(Some(key)).await.unwrap();
    let (state, closing) = AppState::new(app.clone(), hub);
    let routes = Router::new()
        .merge(sightline_http::sdk_routes())
        .merge(sightline_http::ingest_routes())
        .merge(sightline_http::admin_routes())
        .merge(sightline_dashboard::routes());
    LocalServer {
        router: sightline_http::serve_routes(routes, state),
        app,
        dir,
        _closing: closing,
    }
}
