'use strict';
// Driven by tests/otel/test_exporters.py: the real OpenTelemetry JS SDK (BasicTracerProvider +
// BatchSpanProcessor) with the real OTLP/HTTP exporter of @opentelemetry/exporter-trace-otlp-http,
// which sends OTLP/JSON (Content-Type: application/json), to $OTEL_TEST_ENDPOINT.
//
// Trace "POST /checkout" (server span) -> "checkout" (internal span) in which cart.checkout()
// throws a TypeError, recorded with span.recordException(). The provider is flushed and shut
// down; the last stdout line is a JSON report (ids and every export's result).

const { context, trace, diag, DiagConsoleLogger, DiagLogLevel, SpanKind, SpanStatusCode } = require('@opentelemetry/api');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { ATTR_SERVICE_NAME } = require('@opentelemetry/semantic-conventions');

const cart = require('./cart');

// Export failures are only reported through the diag logger: make them visible on stderr.
diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);

function env(name, fallback) {
  const v = process.env[name];
  if (v) return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`${name} is not set`);
}

// Delegates to the real exporter and keeps each export's result for the report.
function recording(exporter, results) {
  return {
    export(spans, done) {
      exporter.export(spans, (result) => {
        results.push({ spans: spans.map((s) => s.name), code: result.code, error: result.error ? String(result.error) : null });
        done(result);
      });
    },
    forceFlush: () => exporter.forceFlush(),
    shutdown: () => exporter.shutdown(),
  };
}

function ids(span) {
  const c = span.spanContext();
  return { trace_id: c.traceId, span_id: c.spanId };
}

async function main() {
  const exporter = new OTLPTraceExporter({
    url: env('OTEL_TEST_ENDPOINT'),
    headers: { 'x-api-key': env('OTEL_TEST_API_KEY') },
  });
  const results = [];
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: env('OTEL_TEST_SERVICE', 'node-cart') }),
    spanProcessors: [new BatchSpanProcessor(recording(exporter, results))],
  });
  const tracer = provider.getTracer('sightline.tests.cart');

  const root = tracer.startSpan('POST /checkout', {
    kind: SpanKind.SERVER,
    attributes: { 'http.request.method': 'POST', 'http.route': '/checkout' },
  });
  // No context manager is registered: parent the child span explicitly.
  const span = tracer.startSpan('checkout', {}, trace.setSpan(context.active(), root));
  try {
    cart.checkout({ id: 'cart-7' });
  } catch (err) {
    span.recordException(err);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
    root.setStatus({ code: SpanStatusCode.ERROR, message: 'checkout failed' });
    root.setAttribute('http.response.status_code', 500);
  } finally {
    span.end();
  }
  root.end();

  await provider.forceFlush();
  await provider.shutdown();
  process.stdout.write(JSON.stringify({ root: ids(root), child: ids(span), exports: results }) + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
