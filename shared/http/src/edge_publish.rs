//! Publishing committed changes to the edge Worker (`POST {edge}/internal/publish`, signed
//! with [`sightline_core::publish`]), and the origin route the edge resolves API keys with.
//!
//! [`EdgePublisher`] is the client (used directly by the change relay); [`EdgeForwardingBus`]
//! is an [`EventBus`] that hands every event to an inner bus (the in-process hub) and forwards
//! it to the edge in the background, so a request never waits on the edge.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sightline_core::events::ChangeEvent;
use sightline_core::ports::EventBus;
use sightline_core::publish::{
    sign, PublishBatch, PUBLISH_PATH, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use tokio::sync::mpsc;

use crate::error::ApiResult;
use crate::extract::api_key_from_headers;
use crate::AppState;

/// The origin route that tells the edge which project and scopes an API key has.
pub const PRINCIPAL_PATH: &str = "/api/auth/principal";

/// Why a publish to the edge failed.
#[derive(Debug, thiserror::Error)]
pub enum EdgePublishError {
    #[error("edge publish URL is invalid: {0}")]
    InvalidUrl(String),
    #[error("could not reach the edge: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("edge refused the batch with status {status}: {body}")]
    Refused { status: u16, body: String },
}

/// Signs and posts [`PublishBatch`]es to one edge.
#[derive(Clone)]
pub struct EdgePublisher {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Arc<[u8]>,
}

impl std::fmt::Debug for EdgePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("EdgePublisher")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl EdgePublisher {
    /// `edge` is the Worker's base URL (`https://edge.example.com`) or the full publish URL.
    pub fn new(edge: &str, secret: &[u8], timeout: Duration) -> Result<Self, EdgePublishError> {
        let mut url = reqwest::Url::parse(edge.trim())
            .map_err(|e| EdgePublishError::InvalidUrl(format!("{edge:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EdgePublishError::InvalidUrl(format!(
                "{edge:?}: scheme must be http or https"
            )));
        }
        if url.path() != PUBLISH_PATH {
            url.set_path(PUBLISH_PATH);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            url,
            secret: Arc::from(secret),
        })
    }

    /// Posts one signed batch; any non-2xx answer is an error.
    pub async fn publish(&self, batch: &PublishBatch) -> Result<(), EdgePublishError> {
        let body = serde_json::to_vec(batch).unwrap_or_default();
        let ts = now_secs();
        let resp = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sign(&self.secret, ts, &body))
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let mut body = resp.text().await.unwrap_or_default();
        body.truncate(512);
        Err(EdgePublishError::Refused {
            status: status.as_u16(),
            body,
        })
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A unique batch id: process start nanos, a counter and the pid keep ids from repeating
/// across batches and processes.
fn batch_id(seq: u64) -> String {
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    format!("{start:x}-{:x}-{seq:x}", std::process::id())
}

/// Events waiting to be forwarded; beyond this new events are dropped (SDKs repair a missed
/// event with their next poll) rather than growing memory or blocking a request.
pub const FORWARD_QUEUE: usize = 10_000;
/// Events per publish request.
pub const MAX_BATCH: usize = 500;

/// An [`EventBus`] that publishes to `inner` (the in-process hub) and forwards every event
/// to the edge from a background task, in order, in batches of what queued up meanwhile.
pub struct EdgeForwardingBus {
    inner: Arc<dyn EventBus>,
    queue: mpsc::Sender<ChangeEvent>,
}

impl EdgeForwardingBus {
    /// Starts the forwarding task on the current tokio runtime.
    pub fn spawn(inner: Arc<dyn EventBus>, publisher: EdgePublisher) -> Self {
        let (queue, rx) = mpsc::channel(FORWARD_QUEUE);
        tokio::spawn(forward(rx, publisher));
        Self { inner, queue }
    }
}

impl EventBus for EdgeForwardingBus {
    fn publish(&self, event: ChangeEvent) {
        if let Err(e) = self.queue.try_send(event.clone()) {
            tracing::warn!(error = %e, "edge forwarding queue full: event dropped");
        }
        self.inner.publish(event);
    }
}

async fn forward(mut rx: mpsc::Receiver<ChangeEvent>, publisher: EdgePublisher) {
    let mut seq = 0u64;
    let mut events = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut events, MAX_BATCH).await > 0 {
        seq += 1;
        let batch = PublishBatch {
            id: batch_id(seq),
            events: std::mem::take(&mut events),
        };
        if let Err(e) = publisher.publish(&batch).await {
            tracing::warn!(error = %e, events = batch.events.len(), "edge publish failed");
        }
    }
}

/// `GET /api/auth/principal`: the project, key id and scopes of the caller's API key (any
/// scope). The edge calls it once per key to route streams, then caches the answer briefly.
pub fn principal_routes() -> Router<AppState> {
    Router::new().route(PRINCIPAL_PATH, get(principal))
}

async fn principal(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Json<Value>> {
    let raw = api_key_from_headers(&headers).unwrap_or_default();
    let p = s.app.authenticate(raw).await?;
    Ok(Json(json!({
        "project_id": p.project_id,
        "key_id": p.key_id,
        "scopes": p.scopes,
    })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn url_is_normalised_to_the_publish_path() {
        let p = EdgePublisher::new("http://127.0.0.1:8787", b"s", Duration::from_secs(1)).unwrap();
        assert_eq!(p.url.as_str(), "http://127.0.0.1:8787/internal/publish");
        let p = EdgePublisher::new(
            "https://edge.example.com/internal/publish",
            b"s",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(p.url.as_str(), "https://edge.example.com/internal/publish");
        assert!(EdgePublisher::new("ftp://x", b"s", Duration::from_secs(1)).is_err());
        assert!(EdgePublisher::new("not a url", b"s", Duration::from_secs(1)).is_err());
        let p = EdgePublisher::new("http://e", b"hunter2", Duration::from_secs(1)).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    /// A real edge stand-in on loopback: verifies each request with core's `verify` and
    /// records the batches, answering 401 to anything that does not verify.
    async fn fake_edge(
        secret: &'static [u8],
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<PublishBatch>) {
        use axum::http::{HeaderMap, StatusCode};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let app = Router::new().route(
            PUBLISH_PATH,
            axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
                let tx = tx.clone();
                async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                    let ok = sightline_core::publish::verify(
                        secret,
                        h(TIMESTAMP_HEADER),
                        h(SIGNATURE_HEADER),
                        &body,
                        now_secs(),
                    );
                    if ok.is_err() {
                        return StatusCode::UNAUTHORIZED;
                    }
                    let _ = tx.send(serde_json::from_slice::<PublishBatch>(&body).unwrap());
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), rx)
    }

    fn event(n: usize) -> ChangeEvent {
        ChangeEvent {
            project_id: "p".into(),
            service: "svc".into(),
            event: "breakpoint_updated".into(),
            data: json!({"n": n}),
            audience: sightline_core::events::Audience::All,
        }
    }

    #[tokio::test]
    async fn publisher_signs_and_reports_refusals() {
        let (base, mut rx) = fake_edge(b"right").await;
        let batch = PublishBatch {
            id: "b1".into(),
            events: vec![event(1)],
        };
        let good = EdgePublisher::new(&base, b"right", Duration::from_secs(5)).unwrap();
        good.publish(&batch).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), batch);
        let bad = EdgePublisher::new(&base, b"wrong", Duration::from_secs(5)).unwrap();
        match bad.publish(&batch).await {
            Err(EdgePublishError::Refused { status: 401, .. }) => {}
            other => panic!("expected a 401 refusal, got {other:?}"),
        }
        let nobody =
            EdgePublisher::new("http://127.0.0.1:9", b"x", Duration::from_secs(2)).unwrap();
        assert!(matches!(
            nobody.publish(&batch).await,
            Err(EdgePublishError::Transport(_))
        ));
    }

    #[tokio::test]
    async fn forwarding_bus_delivers_everything_in_order_and_feeds_the_inner_bus() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl EventBus for Count {
            fn publish(&self, _: ChangeEvent) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let (base, mut rx) = fake_edge(b"k").await;
        let inner = Arc::new(Count(0.into()));
        let bus = EdgeForwardingBus::spawn(
            inner.clone(),
            EdgePublisher::new(&base, b"k", Duration::from_secs(5)).unwrap(),
        );
        for n in 0..1200 {
            bus.publish(event(n));
        }
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 1200);
        let mut seen = Vec::new();
        let mut ids = std::collections::HashSet::new();
        while seen.len() < 1200 {
            let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert!(batch.events.len() <= MAX_BATCH);
            assert!(ids.insert(batch.id.clone()), "batch id repeated");
            seen.extend(
                batch
                    .events
                    .into_iter()
                    .map(|e| e.data["n"].as_u64().unwrap()),
            );
        }
        assert_eq!(seen, (0..1200).collect::<Vec<u64>>());
    }

    #[test]
    fn batch_ids_differ() {
        assert_ne!(batch_id(1), batch_id(2));
    }
}
