//! Trace and span ids of the current `tracing` span, so a snapshot links to its trace.
//!
//! With the `opentelemetry` feature, [`current_trace_ids`] reads the OpenTelemetry span
//! context of the current [`tracing::Span`] through `tracing-opentelemetry` (falling back to
//! the active [`opentelemetry::Context`] when the current `tracing` span carries none, e.g. for
//! code that uses the OpenTelemetry API directly). Without the feature it always returns `None`.
//!
//! Ids are reported only when the span context is valid **and sampled** (wire protocol §5.2):
//! a snapshot must not point at a trace that is never exported.

/// `(trace_id, span_id)` of the current `tracing` span via tracing-opentelemetry, as lowercase
/// hex (32 and 16 characters), only when the span context is valid and sampled; `None`
/// otherwise, and always `None` without the `opentelemetry` feature.
///
/// Never panics.
#[cfg(feature = "opentelemetry")]
pub fn current_trace_ids() -> Option<(String, String)> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let span = tracing::Span::current();
    let from_span = if span.is_none() {
        None
    } else {
        ids_of(&span.context())
    };
    from_span.or_else(|| ids_of(&opentelemetry::Context::current()))
}

/// `(trace_id, span_id)` of the current `tracing` span; always `None` because the crate was
/// built without the `opentelemetry` feature.
#[cfg(not(feature = "opentelemetry"))]
#[inline]
pub fn current_trace_ids() -> Option<(String, String)> {
    None
}

#[cfg(feature = "opentelemetry")]
fn ids_of(cx: &opentelemetry::Context) -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt as _;

    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| {
        (
            format!("{:032x}", sc.trace_id()),
            format!("{:016x}", sc.span_id()),
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn none_without_a_span() {
        assert_eq!(current_trace_ids(), None);
    }

    #[test]
    fn none_inside_a_span_without_an_otel_layer() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("plain");
            let _entered = span.enter();
            assert_eq!(current_trace_ids(), None);
        });
    }

    #[cfg(feature = "opentelemetry")]
    mod otel {
        use super::*;
        use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
        use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        fn is_lower_hex(s: &str, len: usize) -> bool {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }

        fn with_otel<R>(sampler: Sampler, f: impl FnOnce() -> R) -> R {
            let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
            let tracer = provider.tracer("sightline-test");
            let subscriber = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(tracer));
            tracing::subscriber::with_default(subscriber, f)
        }

        #[test]
        fn ids_of_the_current_span() {
            with_otel(Sampler::AlwaysOn, || {
                assert_eq!(current_trace_ids(), None, "no span yet");

                let root = tracing::info_span!("root");
                let _root = root.enter();
                let ids = current_trace_ids();
                let sc = root.context().span().span_context().clone();
                assert!(sc.is_valid() && sc.is_sampled());
                let (trace_id, span_id) = ids.clone().unwrap();
                assert!(is_lower_hex(&trace_id, 32), "{trace_id}");
                assert!(is_lower_hex(&span_id, 16), "{span_id}");
                assert_eq!(trace_id, sc.trace_id().to_string());
                assert_eq!(span_id, sc.span_id().to_string());

                // A child span: same trace, its own span id.
                let child = tracing::info_span!("child");
                let child_ids = child.in_scope(current_trace_ids);
                let csc = child.context().span().span_context().clone();
                assert_eq!(
                    child_ids,
                    Some((csc.trace_id().to_string(), csc.span_id().to_string()))
                );
                assert_eq!(csc.trace_id(), sc.trace_id());
                assert_ne!(csc.span_id(), sc.span_id());

                // Back in the root span.
                assert_eq!(current_trace_ids(), ids);
            });
        }

        #[test]
        fn none_when_not_sampled() {
            with_otel(Sampler::AlwaysOff, || {
                let span = tracing::info_span!("dropped");
                let _entered = span.enter();
                assert_eq!(current_trace_ids(), None);
            });
        }

        #[test]
        fn falls_back_to_the_active_otel_context() {
            use opentelemetry::trace::{Span as _, Tracer as _};
            let provider = SdkTracerProvider::builder().build();
            let tracer = provider.tracer("sightline-test");
            let span = tracer.start("direct");
            let sc = span.span_context().clone();
            let cx = opentelemetry::Context::current_with_span(span);
            let ids = {
                let _guard = cx.attach();
                current_trace_ids()
            };
            assert_eq!(
                ids,
                Some((sc.trace_id().to_string(), sc.span_id().to_string()))
            );
            assert_eq!(current_trace_ids(), None);
        }
    }
}
