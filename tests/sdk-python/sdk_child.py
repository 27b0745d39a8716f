"""A small service that uses the official TraceKit Python SDK (tracekit-apm 1.4.1) against
a Sightline server, driven by the end-to-end test over stdin/stdout.

Run as ``python sdk_child.py`` with SIGHTLINE_URL, SIGHTLINE_API_KEY, SDK_SERVICE and
SDK_PROTO_FD set (the harness does this).
``tracekit.init(...)`` runs at start-up (its first poll happens inside it), then the child
writes ``@@SL {"event": "ready", ...}`` and executes one JSON command per stdin line,
answering each with one ``@@SL {...}`` line. Answers go to the pipe whose fd is in
SDK_PROTO_FD; stdout is the SDK's own output (plus an echo of each answer), which the test
keeps for diagnostics.

Commands:
  {"cmd": "call", "site": "<function>", "label": "...", "vars_list": [{...}, ...]}
      calls the call-site function once per vars object; answers with how many snapshots
      the SDK sent (``sent``, one per capture POST it attempted) and any exceptions.
  {"cmd": "state"}  the SDK's cache, kill switch and SSE flags, counters.
  {"cmd": "exit"}   shuts the SDK down (``client.shutdown()``) and exits 0.

The SDK is used unmodified. Two instance methods are wrapped to *observe* it: the
snapshot client's ``capture_snapshot`` (the HTTP send) to count sends, and
``fetch_active_breakpoints`` to count polls after start-up. Each call site calls
``client.capture_snapshot`` directly, because the SDK attributes a capture to the caller of
``capture_snapshot`` (reference §3); the line of each call is marked ``# CALLSITE:<name>``
so the test can find it.
"""

import asyncio
import faulthandler
import json
import os
import signal
import sys
import threading
import time
import traceback

import tracekit

PROTO = "@@SL "

client = None
errors = []  # exceptions raised out of client.capture_snapshot (must stay empty)
thread_errors = []  # uncaught exceptions in any thread, the SDK's included
sent = []  # (breakpoint_id, variables) of every capture POST the SDK attempted
polls_after_start = 0


# Answers go to their own pipe (fd SDK_PROTO_FD): the SDK prints from its threads to stdout,
# and a print from another thread could otherwise end up in the middle of an answer.
_proto = os.fdopen(int(os.environ["SDK_PROTO_FD"]), "w", encoding="utf-8", buffering=1)
_proto_lock = threading.Lock()


def reply(obj):
    with _proto_lock:
        _proto.write(PROTO + json.dumps(obj, default=str) + "\n")
        _proto.flush()
    sys.stdout.write(f"[answered: {json.dumps(obj, default=str)[:300]}]\n")


def record_error(site, exc):
    errors.append({"site": site, "type": type(exc).__name__, "error": str(exc), "traceback": traceback.format_exc()})


# --- call sites: each calls the SDK directly, exactly as an application would ----------------


def process_payment(label, variables):
    try:
        client.capture_snapshot(label, variables)  # CALLSITE:process_payment
    except Exception as exc:  # noqa: BLE001 - counting is the point
        record_error("process_payment", exc)


def checkout(label, variables):
    try:
        client.capture_snapshot(label, variables)  # CALLSITE:checkout
    except Exception as exc:  # noqa: BLE001
        record_error("checkout", exc)


def update_profile(label, variables):
    try:
        client.capture_snapshot(label, variables)  # CALLSITE:update_profile
    except Exception as exc:  # noqa: BLE001
        record_error("update_profile", exc)


def export_report(label, variables):
    try:
        client.capture_snapshot(label, variables)  # CALLSITE:export_report
    except Exception as exc:  # noqa: BLE001
        record_error("export_report", exc)


SITES = {f.__name__: f for f in (process_payment, checkout, update_profile, export_report)}


# --- observation ------------------------------------------------------------------------------


def instrument(sc):
    original_send = sc.capture_snapshot
    original_fetch = sc.fetch_active_breakpoints

    def counting_send(snapshot, *args, **kwargs):
        sent.append({"breakpoint_id": snapshot.breakpoint_id, "variables": snapshot.variables})
        return original_send(snapshot, *args, **kwargs)

    def counting_fetch(*args, **kwargs):
        global polls_after_start
        polls_after_start += 1
        return original_fetch(*args, **kwargs)

    sc.capture_snapshot = counting_send
    sc.fetch_active_breakpoints = counting_fetch


def sdk_state():
    sc = client.get_snapshot_client()
    cache = {}
    for key, bp in list(sc.breakpoints_cache.items()):
        cache[key] = {
            "id": bp.id,
            "enabled": bp.enabled,
            "condition": bp.condition,
            "condition_eval": bp.condition_eval,
            "max_captures": bp.max_captures,
            "mode": bp.mode,
            "max_depth": bp.max_depth,
        }
    return {
        "kill_switch": sc._kill_switch_active,
        "sse_active": sc._sse_active,
        "cache": cache,
        "sent": len(sent),
        "polls_after_start": polls_after_start,
        "errors": errors,
        "thread_errors": thread_errors,
    }


def main():
    global client

    def thread_hook(args):
        thread_errors.append(
            {"thread": getattr(args.thread, "name", "?"), "type": args.exc_type.__name__, "error": str(args.exc_value)}
        )

    threading.excepthook = thread_hook
    # The test sends SIGUSR1 when the child stops answering: every thread's stack goes to stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    t0 = time.monotonic()
    client = tracekit.init(
        api_key=os.environ["SIGHTLINE_API_KEY"],
        service_name=os.environ["SDK_SERVICE"],
        endpoint=os.environ["SIGHTLINE_URL"],
        enable_code_monitoring=True,
    )
    instrument(client.get_snapshot_client())
    reply(
        {
            "event": "ready",
            "init_ms": round((time.monotonic() - t0) * 1000),
            "file": process_payment.__code__.co_filename,
            "tracekit_version": __import__("importlib.metadata").metadata.version("tracekit-apm"),
        }
    )

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        kind = cmd.get("cmd")
        if kind == "call":
            site = SITES[cmd["site"]]
            before_sent, before_err = len(sent), len(errors)
            per_call = []
            for variables in cmd["vars_list"]:
                n = len(sent)
                site(cmd["label"], variables)
                per_call.append(len(sent) - n)
            reply(
                {
                    "ok": True,
                    "sent": len(sent) - before_sent,
                    "per_call": per_call,
                    "errors": errors[before_err:],
                    "breakpoint_ids": [s["breakpoint_id"] for s in sent[before_sent:]],
                }
            )
        elif kind == "state":
            reply({"ok": True, **sdk_state()})
        elif kind == "exit":
            break
        else:
            reply({"ok": False, "error": f"unknown command {kind!r}"})

    t1 = time.monotonic()
    asyncio.run(client.shutdown())
    reply({"event": "bye", "shutdown_ms": round((time.monotonic() - t1) * 1000), **sdk_state()})


if __name__ == "__main__":
    main()
