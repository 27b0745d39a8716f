//! The HTTP request a snapshot was taken in.
//!
//! A snapshot carries a `request_context` object (wire protocol §5.2) describing the request
//! the captured code was handling. The context lives in a [`tokio::task_local!`] for the
//! duration of a future: [`crate::layer::SightlineLayer`] sets it for every request of a
//! tower/axum service, and [`scope`] / [`sync_scope`] set it by hand for other frameworks,
//! message consumers and the like.
//!
//! A task-local is **not inherited by spawned tasks**: code that runs inside
//! `tokio::spawn(...)` sees no context unless the spawned future is itself wrapped, e.g.
//! `tokio::spawn(sightline::context::scope(ctx, fut))` with `ctx` taken from
//! [`current_request_context`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::task::futures::TaskLocalFuture;

/// What a snapshot records about the request being handled (`request_context` on the wire).
///
/// Serialized as
/// `{"method","path","route","query":{name:value},"headers":{name:value},"client_ip"}`;
/// `route` and `client_ip` are `null` when unknown. Header names are lowercase. The
/// [`SightlineLayer`](crate::layer::SightlineLayer) only records allowlisted headers and
/// replaces credentials with `"[REDACTED]"`; a context built by hand is sent as it is (the
/// server scrubs credentials and PII again in any case).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestContext {
    /// HTTP method, e.g. `"POST"`.
    pub method: String,
    /// Request path as sent, without the query string, e.g. `"/orders/42"`.
    pub path: String,
    /// The route template that matched, e.g. `"/orders/{id}"` (axum's `MatchedPath`).
    pub route: Option<String>,
    /// Query parameters, percent-decoded; the first value of a repeated name wins.
    pub query: BTreeMap<String, String>,
    /// Selected request headers, lowercase names.
    pub headers: BTreeMap<String, String>,
    /// The client's address (first `X-Forwarded-For` hop, `X-Real-IP`, or the peer address).
    pub client_ip: Option<String>,
}

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

/// The request being handled by the current task, set by [`crate::layer::SightlineLayer`]
/// (or [`scope`] / [`sync_scope`]); `None` outside a request.
///
/// Never panics. Cost: one clone of the context when inside a request.
pub fn current_request_context() -> Option<RequestContext> {
    CURRENT.try_with(|ctx| RequestContext::clone(ctx)).ok()
}

/// Whether the current task runs inside a request scope (no clone).
pub fn has_request_context() -> bool {
    CURRENT.try_with(|_| ()).is_ok()
}

/// Runs the future `f` with `ctx` as the current request context: every
/// [`current_request_context`] call made while `f` is polled (and so every snapshot it takes)
/// sees `ctx`. Scopes nest; the innermost wins.
///
/// ```
/// # async fn handle() {}
/// # async fn demo() {
/// let ctx = sightline::context::RequestContext {
///     method: "CONSUME".into(),
///     path: "orders.created".into(),
///     ..Default::default()
/// };
/// sightline::context::scope(ctx, handle()).await;
/// # }
/// ```
pub async fn scope<F: Future>(ctx: RequestContext, f: F) -> F::Output {
    CURRENT.scope(Arc::new(ctx), f).await
}

/// Runs the closure `f` with `ctx` as the current request context (synchronous variant of
/// [`scope`]).
pub fn sync_scope<R>(ctx: RequestContext, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(Arc::new(ctx), f)
}

/// [`scope`] without the extra `async` layer and with a nameable future type (for the tower
/// service).
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn scope_shared<F: Future>(
    ctx: Arc<RequestContext>,
    f: F,
) -> TaskLocalFuture<Arc<RequestContext>, F> {
    CURRENT.scope(ctx, f)
}

/// [`sync_scope`] for a shared context.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn sync_scope_shared<R>(ctx: Arc<RequestContext>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(ctx, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(path: &str) -> RequestContext {
        RequestContext {
            method: "GET".into(),
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn none_outside_a_scope() {
        assert_eq!(current_request_context(), None);
        assert!(!has_request_context());
    }

    #[tokio::test]
    async fn none_outside_a_scope_in_a_task() {
        assert_eq!(current_request_context(), None);
        let inner = tokio::spawn(scope(ctx("/a"), async {
            tokio::spawn(async { current_request_context() }).await
        }))
        .await;
        // Spawned tasks do not inherit the context.
        assert!(matches!(inner, Ok(Ok(None))));
    }

    #[tokio::test]
    async fn scope_sets_and_restores() {
        let seen = scope(ctx("/outer"), async {
            let outer = current_request_context().map(|c| c.path);
            tokio::task::yield_now().await;
            let inner = scope(ctx("/inner"), async {
                tokio::task::yield_now().await;
                current_request_context().map(|c| c.path)
            })
            .await;
            let after = current_request_context().map(|c| c.path);
            (outer, inner, after)
        })
        .await;
        assert_eq!(
            seen,
            (
                Some("/outer".to_string()),
                Some("/inner".to_string()),
                Some("/outer".to_string())
            )
        );
        assert_eq!(current_request_context(), None);
    }

    #[test]
    fn sync_scope_sets_and_restores() {
        let path = sync_scope(ctx("/sync"), || {
            assert!(has_request_context());
            current_request_context().map(|c| c.path)
        });
        assert_eq!(path.as_deref(), Some("/sync"));
        assert_eq!(current_request_context(), None);
    }

    #[test]
    fn serializes_to_the_wire_shape() {
        let mut c = ctx("/orders/7");
        c.route = Some("/orders/{id}".into());
        c.query.insert("q".into(), "a b".into());
        c.headers
            .insert("authorization".into(), "[REDACTED]".into());
        let v = serde_json::to_value(&c).ok();
        assert_eq!(
            v,
            Some(serde_json::json!({
                "method": "GET",
                "path": "/orders/7",
                "route": "/orders/{id}",
                "query": {"q": "a b"},
                "headers": {"authorization": "[REDACTED]"},
                "client_ip": null
            }))
        );
    }
}
