//! A small axum order service instrumented with Sightline.
//!
//! * `POST /orders` with `{"customer_email", "card", "items": [{"sku", "qty", "price"}]}`
//!   prices the order and takes the `order-total` snapshot (local variables including the
//!   customer's e-mail and card number, which the SDK scrubs before anything leaves the
//!   process).
//! * `GET /orders/{id}` returns an order and takes the `order-lookup` snapshot.
//!
//! [`SightlineLayer`] attaches the request context (method, path, route, query, selected
//! headers with credentials redacted, client IP) to every snapshot taken while handling a
//! request. See `examples/README.md` for a walk-through against `sightline serve`.
//!
//! ```sh
//! SIGHTLINE_API_KEY=sl_… SIGHTLINE_SERVICE_NAME=order-service \
//!   SIGHTLINE_ENDPOINT=http://127.0.0.1:8081 \
//!   cargo run -p sightline --example order_service
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sightline::layer::SightlineLayer;
use sightline::{capture, Config};

/// Where the service listens (`SIGHTLINE_EXAMPLE_LISTEN`).
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// Service name used when `SIGHTLINE_SERVICE_NAME` is not set.
const DEFAULT_SERVICE: &str = "order-service";

#[derive(Debug, Clone, Deserialize, Serialize)]
struct Item {
    sku: String,
    qty: u32,
    price: f64,
}

#[derive(Debug, Deserialize)]
struct NewOrder {
    customer_email: String,
    card: String,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize)]
struct Order {
    id: u64,
    customer_email: String,
    card_last4: String,
    items: Vec<Item>,
    subtotal: f64,
    discount: f64,
    total: f64,
    status: &'static str,
}

#[derive(Debug, Default)]
struct Orders {
    next_id: u64,
    by_id: HashMap<u64, Order>,
}

type AppState = Arc<Mutex<Orders>>;
type ApiError = (StatusCode, Json<Value>);

fn error(status: StatusCode, message: &str) -> ApiError {
    (status, Json(json!({ "error": message })))
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

async fn create_order(
    State(orders): State<AppState>,
    Json(new_order): Json<NewOrder>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let NewOrder {
        customer_email,
        card,
        items,
    } = new_order;
    if items.is_empty() {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "an order needs items",
        ));
    }
    if items
        .iter()
        .any(|i| i.qty == 0 || !i.price.is_finite() || i.price < 0.0)
    {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "every item needs qty > 0 and a price >= 0",
        ));
    }

    let item_count: u32 = items.iter().map(|i| i.qty).sum();
    let subtotal = cents(items.iter().map(|i| i.price * f64::from(i.qty)).sum());
    let discount = if subtotal >= 100.0 {
        cents(subtotal * 0.10)
    } else {
        0.0
    };
    let total = cents(subtotal - discount);
    let card_digits: String = card.chars().filter(char::is_ascii_digit).collect();
    let card_last4 = card_digits
        .get(card_digits.len().saturating_sub(4)..)
        .unwrap_or_default()
        .to_owned();

    // A non-breaking breakpoint: a no-op until a breakpoint is active on this line, then a
    // snapshot of these variables (e-mail and card are scrubbed by the SDK) plus the stack
    // trace and the request context set by `SightlineLayer`.
    capture!("order-total", {
        "customer_email" => customer_email,
        "card" => card,
        "items" => items,
        "item_count" => item_count,
        "subtotal" => subtotal,
        "discount" => discount,
        "total" => total,
    });

    let mut orders = orders.lock().unwrap_or_else(PoisonError::into_inner);
    orders.next_id += 1;
    let order = Order {
        id: orders.next_id,
        customer_email,
        card_last4,
        items,
        subtotal,
        discount,
        total,
        status: "placed",
    };
    orders.by_id.insert(order.id, order.clone());
    Ok((StatusCode::CREATED, Json(order)))
}

async fn get_order(
    State(orders): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Order>, ApiError> {
    let order = orders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .by_id
        .get(&id)
        .cloned();
    let found = order.is_some();
    capture!("order-lookup", { "order_id" => id, "found" => found });
    order
        .map(Json)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such order"))
}

fn app() -> Router {
    Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(get_order))
        .route("/healthz", get(|| async { "ok" }))
        // `Router::layer` wraps every route after routing, so snapshots know the route
        // template (`/orders/{id}`), not only the path.
        .layer(SightlineLayer::new())
        .with_state(AppState::default())
}

/// Starts Sightline from the `SIGHTLINE_*` environment. A service must keep running without
/// it, so a bad configuration only disables snapshots.
fn start_sightline() {
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!("sightline disabled: {e}");
            return;
        }
    };
    if config.service_name.is_empty() {
        config.service_name = DEFAULT_SERVICE.to_owned();
    }
    let (service, endpoint) = (config.service_name.clone(), config.endpoint.clone());
    match sightline::init(config) {
        Ok(_) => tracing::info!(%service, %endpoint, "sightline started"),
        Err(e) => tracing::warn!("sightline disabled: {e}"),
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sightline=debug".into()),
        )
        .init();

    start_sightline();

    let listen = std::env::var("SIGHTLINE_EXAMPLE_LISTEN")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listener = tokio::net::TcpListener::bind(listen.trim()).await?;
    tracing::info!(
        "order service listening on http://{}",
        listener.local_addr()?
    );

    // `ConnectInfo<SocketAddr>` gives the layer the peer address when no proxy header is set.
    axum::serve(
        listener,
        app().into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;

    // Flush queued snapshots (bounded wait); `shutdown` blocks, so keep it off the runtime.
    let report =
        tokio::task::spawn_blocking(|| sightline::shutdown(Duration::from_secs(5))).await?;
    if let Some(report) = report {
        tracing::info!(
            clean = report.clean,
            abandoned = report.abandoned,
            "sightline stopped"
        );
    }
    Ok(())
}
