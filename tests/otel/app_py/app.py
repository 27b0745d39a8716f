"""Child process of tests/otel/test_exporters.py: the real OpenTelemetry Python SDK
(``TracerProvider``) with the real OTLP/HTTP protobuf exporter
(``opentelemetry-exporter-otlp-proto-http``) sending to ``sightline serve``.

Two providers, both with resource ``service.name`` = $OTEL_TEST_SERVICE:

* ``BatchSpanProcessor`` + exporter without compression, to $OTEL_TEST_ENDPOINT:
  trace "POST /orders" (server span) -> "place_order" (internal span) in which
  ``orders.place_order`` raises ZeroDivisionError, recorded with ``record_exception``.
* ``SimpleSpanProcessor`` + exporter with ``compression=Compression.Gzip``, to
  $OTEL_TEST_GZIP_ENDPOINT: trace "POST /refunds" in which ``orders.refund_order`` raises KeyError.

Both providers are shut down (which flushes). The last stdout line is a JSON report: the trace
and span ids and every export's result, as the wrapped exporters saw them.
"""

import json
import os
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import orders  # the script's directory is sys.path[0]


class RecordingExporter(SpanExporter):
    """Delegates to the real exporter and keeps each export's result for the report."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append({"spans": [s.name for s in spans], "result": result.name})
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def ids(span):
    ctx = span.get_span_context()
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def handle_order(tracer):
    with tracer.start_as_current_span(
        "POST /orders", kind=SpanKind.SERVER, attributes={"http.request.method": "POST", "http.route": "/orders"}
    ) as root:
        with tracer.start_as_current_span("place_order", record_exception=False, set_status_on_exception=False) as span:
            try:
                orders.place_order([{"price": 19.99, "quantity": 2}, {"price": 5.0, "quantity": 1}], installments=0)
            except ZeroDivisionError as e:
                span.record_exception(e)
                span.set_status(Status(StatusCode.ERROR, str(e)))
                root.set_status(Status(StatusCode.ERROR, "order failed"))
                root.set_attribute("http.response.status_code", 500)
            child = ids(span)
        return ids(root), child


def handle_refund(tracer):
    with tracer.start_as_current_span(
        "POST /refunds", kind=SpanKind.SERVER, record_exception=False, set_status_on_exception=False
    ) as root:
        root.set_attribute("http.route", "/refunds")
        try:
            orders.refund_order("ord-404", ledger={"ord-1": {"amount": 44.98}})
        except KeyError as e:
            root.record_exception(e)
            root.set_status(Status(StatusCode.ERROR, "unknown order"))
        return ids(root)


def main():
    endpoint = os.environ["OTEL_TEST_ENDPOINT"]
    gzip_endpoint = os.environ.get("OTEL_TEST_GZIP_ENDPOINT", endpoint)
    headers = {"x-api-key": os.environ["OTEL_TEST_API_KEY"]}
    resource = Resource.create({"service.name": os.environ.get("OTEL_TEST_SERVICE", "py-shop")})

    batch = RecordingExporter(OTLPSpanExporter(endpoint=endpoint, headers=headers, compression=Compression.NoCompression))
    batch_provider = TracerProvider(resource=resource)
    batch_provider.add_span_processor(BatchSpanProcessor(batch))
    order_root, order_child = handle_order(batch_provider.get_tracer("sightline.tests.orders"))
    batch_provider.shutdown()  # flushes the batch

    gzip = RecordingExporter(OTLPSpanExporter(endpoint=gzip_endpoint, headers=headers, compression=Compression.Gzip))
    gzip_provider = TracerProvider(resource=resource)
    gzip_provider.add_span_processor(SimpleSpanProcessor(gzip))
    refund_root = handle_refund(gzip_provider.get_tracer("sightline.tests.refunds"))
    gzip_provider.shutdown()

    report = {
        "order": {"root": order_root, "child": order_child},
        "refund": {"root": refund_root},
        "exports": {"batch": batch.results, "gzip": gzip.results},
    }
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
