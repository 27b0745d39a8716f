"""A tiny checkout service instrumented with the official TraceKit Python SDK (tracekit-apm),
driven by dashboard.test.mjs over stdin: one JSON command per line, one answer per command
on file descriptor 3 (the SDK prints to stdout from its own threads).

Commands:
  {"cmd": "order", "customer_email": "...", "card": "...", "items": [{"sku", "qty", "price"}]}
      handles one order inside a server span (so the snapshot carries the trace id) and
      answers {"total": ...}.
  {"cmd": "flush"}  exports the finished spans now; answers {"flushed": true}.
  {"cmd": "state"}  the SDK's kill switch and SSE flags.
  {"cmd": "exit"}   shuts the SDK down and exits.
"""

import json
import os
import sys

import tracekit
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

client = tracekit.init(
    api_key=os.environ["SIGHTLINE_API_KEY"],
    service_name=os.environ["SDK_SERVICE"],
    endpoint=os.environ["SIGHTLINE_URL"],
    enable_code_monitoring=True,
)
tracer = trace.get_tracer("shop")
proto = os.fdopen(3, "w", encoding="utf-8", buffering=1)


def reply(obj):
    proto.write(json.dumps(obj, default=str) + "\n")
    proto.flush()


def price_order(customer_email, card, items):
    subtotal = round(sum(i["qty"] * i["price"] for i in items), 2)
    discount = round(subtotal * 0.10, 2) if subtotal >= 100 else 0.0
    total = round(subtotal - discount, 2)
    client.capture_snapshot("price_order", {"customer_email": customer_email, "card": card, "items": items, "subtotal": subtotal, "discount": discount, "total": total})  # CALLSITE
    return total


def handle_order(order):
    with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.request.method", "POST")
        root.set_attribute("http.route", "/orders")
        with tracer.start_as_current_span("load_cart"):
            pass
        with tracer.start_as_current_span("price_order"):
            total = price_order(order["customer_email"], order["card"], order["items"])
        with tracer.start_as_current_span("charge_card") as charge:
            if total > 1000:
                charge.set_status(Status(StatusCode.ERROR, "card declined"))
        root.set_attribute("http.response.status_code", 201)
    return total


def sdk_state():
    snap = client.get_snapshot_client()
    return {
        "kill_switch": bool(getattr(snap, "_kill_switch_active", False)),
        "sse_active": bool(getattr(snap, "_sse_active", False)),
    }


reply({"event": "ready", **sdk_state()})
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    cmd = json.loads(line)
    try:
        if cmd["cmd"] == "order":
            reply({"total": handle_order(cmd)})
        elif cmd["cmd"] == "flush":
            trace.get_tracer_provider().force_flush()
            reply({"flushed": True})
        elif cmd["cmd"] == "state":
            reply(sdk_state())
        elif cmd["cmd"] == "exit":
            reply({"bye": True})
            break
    except Exception as exc:  # noqa: BLE001 - the test reads the error
        reply({"error": f"{type(exc).__name__}: {exc}"})
os._exit(0)
