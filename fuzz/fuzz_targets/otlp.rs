//! Fuzzes OTLP ingest decoding: any bytes, as protobuf or OTLP/JSON traces and metrics, and
//! as a gzip body, must decode or fail cleanly without panicking, and what decodes must
//! satisfy the documented invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_core::otlp::{self, Encoding, OtlpError, MAX_LOCATIONS_PER_SPAN};

fuzz_target!(|data: &[u8]| {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        if let Ok(decoded) = otlp::decode_traces(data, encoding) {
            assert!(decoded.rejected_spans >= 0);
            assert_eq!(
                decoded.rejected_spans == 0,
                decoded.error_message.is_empty()
            );
            for span in &decoded.spans {
                assert_eq!(span.trace_id.len(), 32);
                assert_eq!(span.span_id.len(), 16);
                assert!(span.end_ns >= span.start_ns);
                assert!(span.parent_span_id.as_ref().is_none_or(|p| p.len() == 16));
                let _ = (span.is_error(), span.is_entry(), span.is_self_telemetry());
                assert!(otlp::code_locations(span).len() <= MAX_LOCATIONS_PER_SPAN);
            }
            let _ = otlp::encode_trace_response(
                encoding,
                decoded.rejected_spans,
                &decoded.error_message,
            );
        }
        if let Ok(decoded) = otlp::decode_metrics(data, encoding) {
            assert!(decoded.rejected_points >= 0);
            assert!(decoded.points.iter().all(|p| p.value.is_finite()));
            let _ = otlp::encode_metrics_response(
                encoding,
                decoded.rejected_points,
                &decoded.error_message,
            );
        }
    }
    match otlp::gunzip(data, 64 * 1024) {
        Ok(out) => assert!(out.len() <= 64 * 1024),
        Err(OtlpError::TooLarge { limit }) => assert_eq!(limit, 64 * 1024),
        Err(OtlpError::Decode(_)) => {}
    }
});
