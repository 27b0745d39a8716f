"""End-to-end: the official TraceKit Python SDK (tracekit-apm 1.4.1) against a real
``sightline serve``.

Run with the SDK venv's interpreter (``scripts/setup-python.sh`` creates it):

    .venv/sdk-python/bin/python -m unittest discover -s tests/sdk-python -v

One server (fresh data dir, bootstrap key, 1 s SSE heartbeats) serves every scenario; each
scenario uses its own service name and its own SDK process (``sdk_child.py``), so each SDK
starts fresh. The SDK polls only at start-up and then every 30 s (not configurable), so no
scenario waits for a poll: breakpoints a scenario needs up front are created *before* its SDK
starts (the start-up poll then returns them together with ``sse_endpoint`` and the SDK opens
its SSE stream), and every later change reaches the SDK over SSE.
"""

import functools
import json
import sys
import time
import unittest

from harness import CHILD, Child, Server, callsite_line, wait_until

PII_RAW = ("dev@example.com", "4111111111111111", "hunter22", "a@b.co")


def explained(test):
    """On failure, prints the server's stderr tail, the API calls made, the state of the
    scenario's services and the SDK child's output, then re-raises."""

    @functools.wraps(test)
    def wrapper(self):
        try:
            return test(self)
        except BaseException as exc:
            if getattr(wrapper, "__unittest_expecting_failure__", False):
                sys.stderr.write(f"\n[{test.__name__}: known server bug, failed as expected: {str(exc)[:300]}]\n")
                raise
            report = ["", "=" * 30 + f" diagnostics for {test.__name__} " + "=" * 30]
            report.append(self.server.diagnostics(self.services))
            for child in self.children:
                report.append(child.diagnostics())
            report.append("=" * 80)
            sys.stderr.write("\n".join(report) + "\n")
            sys.stderr.flush()
            raise

    return wrapper


class TracekitPythonSdk(unittest.TestCase):
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        if cls.server:
            cls.server.stop()

    def setUp(self):
        self.children = []
        self.services = []

    def tearDown(self):
        for child in self.children:
            child.kill()

    # --- helpers ----------------------------------------------------------------------------

    def start_sdk(self, service):
        child = Child(self.server, service)
        self.children.append(child)
        ready = child.wait_ready()
        self.assertEqual(ready.get("tracekit_version"), "1.4.1", f"wrong SDK in the venv: {ready}")
        self.assertEqual(ready.get("file"), CHILD, "the SDK will report a different file path than the test expects")
        return child

    def use_service(self, name):
        self.services.append(name)
        return name

    def preregister(self, service, site, label, **patch):
        """Registers a call site exactly as the SDK would (same id, file, line, names), then
        applies ``patch``; per-minute rate limiting is switched off so it cannot interfere."""
        bp = self.server.register(service, site, label, callsite_line(site))
        return self.server.patch(bp["id"], {"rate_limit_per_minute": 0, **patch})

    def wait_for_sse(self, service, child):
        """Waits until the SDK's stream is connected (server side) and its init processed."""
        n = wait_until(lambda: self.server.connected_sdks(service) >= 1, timeout=10)
        self.assertTrue(n, f"the SDK of {service} never opened its SSE stream (GET /api/services connected_sdks)")
        st = wait_until(lambda: (lambda s: s if s["sse_active"] else None)(child.state()), timeout=5)
        self.assertTrue(st, f"the SDK of {service} does not consider its SSE stream active")
        return st

    def wait_for_cache(self, child, predicate, what, timeout=5.0):
        """Waits until ``predicate(sdk_cache)`` holds; returns (seconds waited, state)."""
        t0 = time.monotonic()
        st = wait_until(lambda: (lambda s: s if predicate(s["cache"]) else None)(child.state()), timeout=timeout)
        waited = time.monotonic() - t0
        if not st:
            self.fail(f"SDK cache did not show {what} within {timeout}s: {json.dumps(child.state()['cache'])}")
        return waited, st

    def call(self, child, site, label, *vars_list):
        r = child.call(site, label, *vars_list)
        self.assertEqual(r["errors"], [], f"capture_snapshot raised into the application: {r['errors']}")
        return r

    def stored(self, service, bp_id=None):
        return self.server.snapshots(service, bp_id)

    def finish(self, child):
        """Scenario f for every SDK process: it shuts down cleanly, exits 0, never had
        capture_snapshot raise, no thread died, and the SDK logged no protocol errors."""
        code, bye = child.finish()
        self.assertEqual(code, 0, f"SDK child of {child.service} exited with {code}")
        self.assertIsNotNone(bye, "SDK child did not report its final state")
        self.assertEqual(bye["errors"], [], f"capture_snapshot raised: {bye['errors']}")
        self.assertEqual(bye["thread_errors"], [], f"uncaught exceptions in threads: {bye['thread_errors']}")
        self.assertEqual(child.sdk_error_lines(), [], "the SDK reported errors talking to the server")
        return bye

    # --- scenarios --------------------------------------------------------------------------

    @explained
    def test_a_auto_register_and_store(self):
        """(a) The first capture_snapshot at a call site registers it; captures are stored."""
        svc = self.use_service("py-autoreg")
        line = callsite_line("process_payment")
        child = self.start_sdk(svc)

        r = self.call(child, "process_payment", "payment-start", {"amount": 42.5, "order_id": "o-1"}, {"amount": 43.5, "order_id": "o-2"})
        self.assertEqual(r["sent"], 2, f"the SDK should send both captures right after registering: {r}")

        bps = self.server.breakpoints(svc)
        self.assertEqual(len(bps), 1, f"expected exactly one breakpoint for {svc}: {bps}")
        bp = bps[0]
        self.assertEqual(bp["function_name"], "process_payment")
        self.assertEqual(bp["label"], "payment-start")
        self.assertEqual(bp["file_path"], CHILD)
        self.assertEqual(bp["line_number"], line)
        self.assertTrue(bp["enabled"])
        self.assertEqual(bp.get("origin"), "auto_register")
        self.assertEqual(set(r["breakpoint_ids"]), {bp["id"]}, "the SDK captured against another id than the one registered")

        snaps = self.stored(svc, bp["id"])
        self.assertEqual(len(snaps), 2, f"both captures should be stored: {snaps}")
        amounts = set()
        for s in snaps:
            self.assertEqual((s["function_name"], s["label"], s["file_path"], s["line_number"]), ("process_payment", "payment-start", CHILD, line))
            full = self.server.snapshot(s["id"])
            amounts.add(full["variables"]["amount"])
            self.assertIn(f"process_payment at {CHILD}:{line}", full["stack_trace"])
        self.assertEqual(amounts, {42.5, 43.5})
        self.assertEqual(self.server.breakpoint(bp["id"])["capture_count"], 2)

        # The same call site again: no second breakpoint.
        self.call(child, "process_payment", "payment-start", {"amount": 1})
        self.assertEqual(len(self.server.breakpoints(svc)), 1)
        self.finish(child)

    @explained
    def test_b_pii_redacted(self):
        """(b) Emails, card numbers and passwords never reach storage."""
        svc = self.use_service("py-pii")
        child = self.start_sdk(svc)
        variables = {
            "user_email": "dev@example.com",
            "card": "4111111111111111",
            "password": "hunter22",
            "nested": {"contact": {"email": "a@b.co"}},
            "amount": 10,
        }
        r = self.call(child, "process_payment", "pii", variables)
        self.assertEqual(r["sent"], 1)

        snaps = self.stored(svc)
        self.assertEqual(len(snaps), 1, f"the capture should be stored: {snaps}")
        full = self.server.snapshot(snaps[0]["id"])
        v = full["variables"]
        self.assertEqual(v["user_email"], "[REDACTED:email]")
        self.assertEqual(v["nested"]["contact"]["email"], "[REDACTED:email]")
        self.assertIn(v["card"], ("[REDACTED]", "[REDACTED:credit_card]"))
        self.assertIn(v["password"], ("[REDACTED]", "[REDACTED:sensitive_name]", "[REDACTED:password]"))
        self.assertEqual(v["amount"], 10, "non-sensitive values must survive")
        flagged = {f.get("variable") for f in full.get("security_flags") or []}
        self.assertTrue(any("user_email" in (x or "") for x in flagged), f"no security flag for user_email: {full.get('security_flags')}")
        # Nowhere in the stored record, list view included.
        for where, doc in (("GET /api/snapshots/{id}", full), ("GET /api/snapshots", snaps)):
            text = json.dumps(doc)
            for raw in PII_RAW:
                self.assertNotIn(raw, text, f"{raw!r} stored in clear ({where})")
        self.finish(child)

    @explained
    def test_c_breakpoint_update_over_sse(self):
        """(c) A PATCH reaches the running SDK over SSE within ~1-2 s, no poll needed."""
        svc = self.use_service("py-sse")
        bp = self.preregister(svc, "checkout", "checkout-total")
        child = self.start_sdk(svc)
        self.wait_for_sse(svc, child)
        key = "checkout:checkout-total"

        # No condition yet: a small amount is captured.
        r = self.call(child, "checkout", "checkout-total", {"amount": 5})
        self.assertEqual(r["sent"], 1)
        self.assertEqual(len(self.stored(svc, bp["id"])), 1)

        # Add an SDK-evaluable condition; the SDK must learn it over the stream.
        updated = self.server.patch(bp["id"], {"condition": "amount > 100"})
        self.assertEqual(updated["condition_eval"], "sdk-evaluable")
        waited, st = self.wait_for_cache(child, lambda c: (c.get(key) or {}).get("condition") == "amount > 100", "the new condition")
        self.assertLess(waited, 2.5, f"SSE delivery took {waited:.2f}s")
        self.assertEqual(st["polls_after_start"], 0, "the SDK polled; the update must have come over SSE")
        self.assertEqual(st["cache"][key]["id"], bp["id"])

        r = self.call(child, "checkout", "checkout-total", {"amount": 5}, {"amount": 500})
        self.assertEqual(r["per_call"], [0, 1], f"amount 5 must now be filtered in the SDK, 500 sent: {r}")
        snaps = self.stored(svc, bp["id"])
        self.assertEqual(len(snaps), 2, f"expected the first capture and amount 500: {snaps}")
        self.assertEqual(self.server.snapshot(snaps[0]["id"])["variables"]["amount"], 500)
        self.assertNotIn("condition_false", self.server.drops(svc), "the server had to drop: the SDK did not filter")

        # Disable it: the SDK drops it from its cache and stops sending.
        self.server.patch(bp["id"], {"enabled": False})
        waited, st = self.wait_for_cache(child, lambda c: all(e["id"] != bp["id"] for e in c.values()), "the breakpoint removed")
        self.assertLess(waited, 2.5, f"SSE delivery took {waited:.2f}s")
        r = self.call(child, "checkout", "checkout-total", {"amount": 900})
        self.assertEqual(r["sent"], 0, f"a disabled breakpoint must not be captured: {r}")
        self.assertEqual(len(self.stored(svc, bp["id"])), 2)
        self.assertEqual(self.finish(child)["polls_after_start"], 0)

    @explained
    def test_d_server_only_condition(self):
        """(d) A server-only condition: the SDK sends every capture, the server keeps the matches."""
        svc = self.use_service("py-cond")
        bp = self.preregister(svc, "update_profile", "profile-tags", condition="len(user.tags) > 1")
        self.assertEqual(bp["condition_eval"], "server-only")
        child = self.start_sdk(svc)
        self.wait_for_sse(svc, child)
        key = "update_profile:profile-tags"

        # The first call registers (the SDK then uses its own condition-less placeholder).
        r = self.call(child, "update_profile", "profile-tags", {"user": {"id": 1, "tags": ["a", "b"]}})
        self.assertEqual(r["sent"], 1)
        # Any change brings the server's version (with the condition) into the SDK's cache.
        self.server.patch(bp["id"], {"max_captures": 50})
        self.wait_for_cache(child, lambda c: (c.get(key) or {}).get("condition_eval") == "server-only", "the server-only condition")

        calls = [
            {"user": {"id": 2, "tags": ["a"]}},
            {"user": {"id": 3, "tags": []}},
            {"user": {"id": 4, "tags": ["x", "y", "z"]}},
            {"user": {"id": 5, "tags": ["solo"]}},
        ]
        r = self.call(child, "update_profile", "profile-tags", *calls)
        self.assertEqual(r["per_call"], [1, 1, 1, 1], f"a server-only condition must not filter in the SDK: {r}")

        snaps = self.stored(svc, bp["id"])
        ids = sorted(self.server.snapshot(s["id"])["variables"]["user"]["id"] for s in snaps)
        self.assertEqual(ids, [1, 4], f"only captures with more than one tag should be stored: {snaps}")
        self.assertEqual(self.server.drops(svc).get("condition_false"), 3, f"service drops: {self.server.drops(svc)}")
        self.assertEqual(self.server.breakpoint(bp["id"])["drops"].get("condition_false"), 3)
        self.finish(child)

    @explained
    def test_e_kill_switch(self):
        """(e) The kill switch reaches the SDK over SSE and stops all captures."""
        svc = self.use_service("py-kill")
        bp = self.preregister(svc, "export_report", "report")
        child = self.start_sdk(svc)
        self.wait_for_sse(svc, child)

        r = self.call(child, "export_report", "report", {"rows": 1})
        self.assertEqual(r["sent"], 1)
        self.assertEqual(len(self.stored(svc)), 1)

        self.server.ok("POST", f"/api/services/{svc}/kill-switch", {"enabled": True})
        st = wait_until(lambda: (lambda s: s if s["kill_switch"] else None)(child.state()), timeout=3)
        self.assertTrue(st, "the SDK never saw the kill switch")
        self.assertTrue(self.server.service(svc)["kill_switch"])
        self.assertTrue(wait_until(lambda: self.server.connected_sdks(svc) == 0, timeout=3), "the server kept the SDK stream open after the kill switch")

        r = self.call(child, "export_report", "report", {"rows": 2}, {"rows": 3}, {"rows": 4})
        self.assertEqual(r["sent"], 0, f"the SDK kept sending under the kill switch: {r}")
        self.assertEqual(len(self.stored(svc)), 1, "captures were stored under the kill switch")
        self.server.settle()
        status, poll = self.server.request("GET", f"/sdk/snapshots/active/{svc}")
        self.assertEqual((status, poll["kill_switch"], poll["breakpoints"]), (200, True, []), f"poll under kill switch: {poll}")
        self.assertEqual(self.server.breakpoint(bp["id"])["capture_count"], 1)
        self.finish(child)

    @explained
    def test_f_sdk_never_crashes(self):
        """(f) Every breakpoint shape the server serves (poll, SSE init and updates, deletes,
        logpoints, expiry, unlimited captures) leaves capture_snapshot raising nothing."""
        svc = self.use_service("py-robust")
        snap_bp = self.preregister(
            svc,
            "process_payment",
            "robust-snap",
            expire_at="2099-01-01T00:00:00Z",
            max_captures=0,
            stack_depth=5,
            max_depth=2,
            max_payload_bytes=4096,
            idle_timeout_hours=48,
            condition="amount >= 0",
        )
        log_bp = self.preregister(
            svc,
            "checkout",
            "robust-log",
            mode="logpoint",
            capture_expressions=["amount", "user.name"],
            expire_at="2099-01-01T00:00:00+00:00",
        )
        # Set in the admin API by file and line only (no names) and by names only.
        self.server.ok("POST", "/api/breakpoints", {"service_name": svc, "file_path": CHILD, "line_number": 1})
        self.server.ok("POST", "/api/breakpoints", {"service_name": svc, "function_name": "export_report", "label": "robust-manual"})

        # What the SDK parses must never carry the values that crash PY 1.4.1 (reference §10).
        status, poll = self.server.request("GET", f"/sdk/snapshots/active/{svc}")
        self.assertEqual(status, 200)
        self.assertEqual(len(poll["breakpoints"]), 4, poll)
        for b in poll["breakpoints"]:
            self.assertNotIn("expire_at", b, "expire_at with an offset crashes tracekit-apm 1.4.1")
            for k in ("max_captures", "capture_count", "line_number"):
                self.assertIsInstance(b.get(k), int, f"{k} must be an integer: {b}")
            for k in ("id", "file_path"):
                self.assertIsInstance(b.get(k), str, f"{k} is required by the Python SDK: {b}")

        child = self.start_sdk(svc)
        self.wait_for_sse(svc, child)
        order = {"amount": 12, "order": {"items": [{"sku": "a", "qty": 2}]}, "user": {"name": "n"}}
        self.call(child, "process_payment", "robust-snap", order, {**order, "amount": 13})
        self.call(child, "checkout", "robust-log", order, {**order, "amount": 14})
        self.call(child, "export_report", "robust-manual", {"rows": 3})

        # Updates over SSE carrying every optional field, including new expiry times.
        self.server.patch(snap_bp["id"], {"max_depth": 3, "expire_at": "2099-06-01T00:00:00Z", "max_captures": 0})
        self.wait_for_cache(child, lambda c: (c.get("process_payment:robust-snap") or {}).get("max_depth") == 3, "max_depth 3")
        self.server.patch(log_bp["id"], {"capture_expressions": ["amount"], "expire_at": "2099-06-01T00:00:00+02:00"})
        self.call(child, "process_payment", "robust-snap", {**order, "amount": 15}, {"amount": -1})
        self.call(child, "checkout", "robust-log", {**order, "amount": 16})

        # A deleted breakpoint disappears from the SDK.
        self.server.ok("DELETE", f"/api/breakpoints/{log_bp['id']}")
        self.wait_for_cache(child, lambda c: all(e["id"] != log_bp["id"] for e in c.values()), "the deleted breakpoint gone")
        r = self.call(child, "checkout", "robust-log", {**order, "amount": 17})
        self.assertEqual(r["sent"], 0, f"a deleted breakpoint must not be captured: {r}")
        # Odd values the SDK must cope with.
        self.call(child, "export_report", "robust-manual", {}, {"n": None, "f": 1.5, "deep": {"a": {"b": {"c": {"d": [1, [2, [3]]]}}}}}, {"s": "x" * 5000})

        self.assertGreaterEqual(len(self.stored(svc, snap_bp["id"])), 3)
        self.assertGreaterEqual(len(self.stored(svc)), 6)
        self.finish(child)

    @explained
    def test_g_admin_breakpoint_by_name_is_the_one_captured(self):
        """(g) A breakpoint set in the admin API by function name and label, before the SDK ever
        registered that call site, is the one the SDK's captures count against."""
        svc = self.use_service("py-admin-first")
        bp = self.server.ok(
            "POST",
            "/api/breakpoints",
            {"service_name": svc, "function_name": "export_report", "label": "admin-first", "condition": "rows > 100", "rate_limit_per_minute": 0},
        )
        child = self.start_sdk(svc)
        self.wait_for_sse(svc, child)
        r = self.call(child, "export_report", "admin-first", {"rows": 1}, {"rows": 500})

        bps = self.server.breakpoints(svc)
        self.assertEqual([b["id"] for b in bps], [bp["id"]], f"auto-register must reuse the admin breakpoint: {bps}")
        self.assertEqual(set(r["breakpoint_ids"]) - {bp["id"]}, set(), f"the SDK captured against another breakpoint: {r}")
        snaps = self.stored(svc)
        rows = [self.server.snapshot(s["id"])["variables"]["rows"] for s in snaps]
        self.assertEqual(rows, [500], f"the admin breakpoint's condition `rows > 100` must apply: {snaps}")
        self.finish(child)


if __name__ == "__main__":
    unittest.main(verbosity=2)
