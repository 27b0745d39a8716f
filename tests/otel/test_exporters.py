"""End-to-end: real OpenTelemetry exporters against a real ``sightline serve``.

* Python: ``opentelemetry-sdk`` + ``opentelemetry-exporter-otlp-proto-http`` 1.45.1 (OTLP/HTTP
  protobuf; one exporter without and one with gzip compression), child ``app_py/app.py``.
* Node: ``@opentelemetry/sdk-trace-base`` + ``@opentelemetry/exporter-trace-otlp-http``
  (OTLP/HTTP JSON), child ``node/app.js`` (``scripts/setup-node.sh`` installs its packages).

Each child runs real code that really fails inside a span (``app_py/orders.py``,
``node/cart.js``), records the exception and flushes its provider. The tests then check what
the admin API shows: the code index (absolute file, function, exact line of the failing
statement, found by its marker comment), the trace list and the trace detail, and a
breakpoint created from a discovered line.

Run with the SDK venv's interpreter (``scripts/setup-python.sh`` creates it):

    .venv/sdk-python/bin/python -m unittest discover -s tests/otel -t tests/otel -v

Each test class starts its own server. The gzip exporter and the Node exporter post through
``RecordingProxy``, a loopback relay that forwards each request unchanged (body bytes, framing,
headers), so the tests can check what was on the wire (content type, content encoding); the
uncompressed Python exporter posts to the server directly.
"""

import functools
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sdk-python"))

from harness import API_KEY, Server, tail, wait_until  # noqa: E402

PY_APP = os.path.join(HERE, "app_py", "app.py")
PY_ORDERS = os.path.join(HERE, "app_py", "orders.py")
NODE_DIR = os.path.join(HERE, "node")
NODE_APP = os.path.join(NODE_DIR, "app.js")
NODE_CART = os.path.join(NODE_DIR, "cart.js")
CHILD_TIMEOUT = 60
# How V8 names `checkout` in a stack frame: `at checkout (…)` when called as a plain function,
# `at Object.checkout (…)` when called as a method of its module's exports (`cart.checkout()`,
# as app.js does). The server keeps V8's name (stacktrace.rs drops only `async `/`new `/
# `[as alias]`), so either is the function `checkout`; nothing else is.
NODE_CHECKOUT = ("checkout", "Object.checkout")


def marker_line(path, marker):
    """1-based line of the statement tagged with ``marker`` (a trailing comment)."""
    found = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if line.rstrip().endswith(marker):
                found.append(i)
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {marker!r} marker in {path}, found lines {found}")
    return found[0]


def child_env(**extra):
    """The environment of an exporter child: no OTEL_* settings of the caller, no proxy for
    loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k not in ("NODE_OPTIONS",)}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class ChildRun:
    """One finished child process: its exit status, output, and the JSON report (last line)."""

    def __init__(self, name, argv, cwd, env, out_dir):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(out_dir, f"child-{name}.log")
        try:
            p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
            self.code, self.stdout, self.stderr = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            self.code = "timeout"
            self.stdout = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            self.stderr = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        with open(self.log_path, "w", encoding="utf-8") as f:
            f.write(f"$ {' '.join(argv)}\nexit: {self.code}\n=== stdout ===\n{self.stdout}\n=== stderr ===\n{self.stderr}\n")
        self.report = None
        lines = [l for l in self.stdout.splitlines() if l.strip()]
        if self.code == 0 and lines:
            try:
                self.report = json.loads(lines[-1])
            except ValueError:
                pass

    def diagnostics(self):
        return (
            f"--- child {self.name}: {' '.join(self.argv)} -> exit {self.code} (log {self.log_path}) ---\n"
            f"stdout tail:\n{tail(self.stdout.splitlines(), 30)}\nstderr tail:\n{tail(self.stderr.splitlines(), 40)}"
        )


class RecordingProxy:
    """A loopback HTTP relay in front of the server: forwards each request unchanged (method,
    path, query, body bytes and framing, headers but hop-by-hop ones and Accept-Encoding) and
    returns the server's answer (status, content type, body); records what was sent and
    answered."""

    HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding", "te", "upgrade"}

    def __init__(self, target):
        self.target = urllib.parse.urlsplit(target)
        self.requests = []
        self.failures = []
        self.lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server naming
                try:
                    relay.forward(self)
                except Exception as e:  # noqa: BLE001 - a relay bug must show up as an answer, not a hang-up
                    relay.failures.append(repr(e))
                    raise

            do_PUT = do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def read_body(h):
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))

    def forward(self, h):
        chunked = "chunked" in (h.headers.get("Transfer-Encoding") or "").lower()
        body = self.read_body(h)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in self.HOP}
        # Same framing as the exporter used: a chunked body is relayed chunked (http.client
        # chunks a body of unknown length), any other with its Content-Length.
        conn = http.client.HTTPConnection(self.target.hostname, self.target.port, timeout=30)
        try:
            conn.request(h.command, h.path, body=iter([body]) if chunked else body, headers=headers)
            resp = conn.getresponse()
            status, headers, answer = resp.status, resp.headers, resp.read()
        except OSError as e:
            status, headers, answer = 502, {}, f"relay could not reach the server: {e}".encode()
        finally:
            conn.close()
        record = {
            "method": h.command,
            "path": h.path,
            "headers": {k.lower(): v for k, v in h.headers.items()},
            "chunked": chunked,
            "body": body,
            "status": status,
            "response_content_type": headers.get("Content-Type") if headers else None,
            "response": answer,
        }
        with self.lock:
            self.requests.append(record)
        h.send_response(status)
        for k in ("Content-Type", "Content-Encoding"):
            if headers and headers.get(k):
                h.send_header(k, headers.get(k))
        h.send_header("Content-Length", str(len(answer)))
        h.end_headers()
        h.wfile.write(answer)

    def recorded(self):
        with self.lock:
            return list(self.requests)

    def describe(self):
        out = []
        for r in self.recorded():
            out.append(
                f"{r['method']} {r['path']} {json.dumps({k: v for k, v in r['headers'].items() if k != 'x-api-key'})} "
                f"body {len(r['body'])} bytes {r['body'][:16]!r} -> {r['status']} {r['response_content_type']} {r['response'][:300]!r}"
            )
        out += [f"relay error: {f}" for f in self.failures]
        return "\n".join(out) or "<no request>"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the admin API view ------------------------------------------------------------------------


def code_files(code):
    return {f["file"]: f for f in code.get("files") or []}


def names(function):
    """The acceptable indexed names of a function: one name, or a tuple of them."""
    return (function,) if isinstance(function, str) else tuple(function)


def find_line(code, file_path, function, line):
    """The line entry of ``file_path`` → ``function`` (a name or a tuple of acceptable names)
    → ``line`` in a ``/api/code`` answer, with the indexed function name added, or None."""
    f = code_files(code).get(file_path)
    if not f:
        return None
    for fn in f.get("functions") or []:
        if fn.get("name") in names(function):
            for entry in fn.get("lines") or []:
                if entry.get("line") == line:
                    return dict(entry, function=fn["name"])
    return None


class ExporterTest(unittest.TestCase):
    """Base: one server for the class, diagnostics on failure."""

    server = None
    proxy = None
    services = ()
    runs = ()

    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.proxy = RecordingProxy(cls.server.base)
        cls.runs = []

    @classmethod
    def tearDownClass(cls):
        if cls.proxy:
            cls.proxy.stop()
        if cls.server:
            cls.server.stop()

    @classmethod
    def run_child(cls, name, argv, cwd, **env):
        run = ChildRun(name, argv, cwd, child_env(**env), cls.server.out)
        cls.runs.append(run)
        return run

    def code(self, service):
        return self.server.ok("GET", "/api/code?" + urllib.parse.urlencode({"service": service}))

    def traces(self, **query):
        return self.server.ok("GET", "/api/traces?" + urllib.parse.urlencode(query))["traces"]

    def trace(self, trace_id):
        return self.server.ok("GET", f"/api/traces/{trace_id}")

    def wait_for_line(self, service, file_path, function, line, timeout=5):
        """Polls ``/api/code`` until the location shows up; returns (entry, last answer).
        (Ingest is done when the exporter's POST is answered, so the first probe should hit.)"""
        last = {}

        def probe():
            last["code"] = self.code(service)
            return find_line(last["code"], file_path, function, line)

        entry = wait_until(probe, timeout, interval=0.5)
        return entry, last["code"]

    def assert_location(self, service, file_path, function, line, trace_id):
        entry, code = self.wait_for_line(service, file_path, function, line)
        dump = json.dumps(code, indent=1)
        self.assertIn(file_path, code_files(code), f"file {file_path} not indexed for {service}:\n{dump}")
        functions = [fn["name"] for fn in code_files(code)[file_path]["functions"]]
        self.assertTrue(set(names(function)) & set(functions), f"function {function} not indexed under {file_path}:\n{dump}")
        self.assertIsNotNone(entry, f"line {line} not indexed under {file_path} -> {function}:\n{dump}")
        self.assertEqual(entry["source"], "exception", dump)
        self.assertGreaterEqual(entry["hits"], 1, dump)
        self.assertEqual(entry["example_trace_id"], trace_id, dump)
        return entry

    def assert_listed(self, service, trace_id, root_name, span_count):
        listed = {t["trace_id"]: t for t in self.traces(service=service)}
        self.assertIn(trace_id, listed, f"trace {trace_id} not listed for {service}: {json.dumps(listed, indent=1)}")
        t = listed[trace_id]
        self.assertIs(t["has_error"], True, t)
        self.assertEqual(t["root_name"], root_name, t)
        self.assertEqual(t["root_service"], service, t)
        self.assertEqual(t["span_count"], span_count, t)
        self.assertIn(service, t["services"], t)
        errors = {x["trace_id"] for x in self.traces(service=service, has_error="true")}
        self.assertIn(trace_id, errors, "has_error=true filter")
        ok = {x["trace_id"] for x in self.traces(service=service, has_error="false")}
        self.assertNotIn(trace_id, ok, "has_error=false filter")
        return t

    def assert_exception_span(self, span, exc_type, file_path, service):
        self.assertEqual(span["status"], "error", span)
        self.assertEqual(span["resource"].get("service.name"), service, span)
        exc = [e for e in span["events"] if e["name"] == "exception"]
        self.assertEqual(len(exc), 1, span)
        attrs = exc[0]["attributes"]
        self.assertEqual(attrs.get("exception.type"), exc_type, attrs)
        self.assertIn(file_path, attrs.get("exception.stacktrace", ""), attrs)


def collapse(lines):
    """Joins log lines, folding runs of identical ones (polling) into one."""
    out, prev, repeats = [], None, 0
    for line in list(lines) + [None]:
        if line == prev:
            repeats += 1
            continue
        if repeats:
            out.append(f"    (the same {repeats} more time{'s' if repeats > 1 else ''})")
        if line is not None:
            out.append(line)
        prev, repeats = line, 0
    return "\n".join(out)


def explained(test):
    """On failure, prints the server's stderr tail, the API calls made, the children's output
    and the relayed requests, then re-raises."""

    @functools.wraps(test)
    def wrapper(self):
        try:
            return test(self)
        except BaseException:
            report = [
                "",
                "=" * 30 + f" diagnostics for {test.__name__} " + "=" * 30,
                f"--- server stderr (tail of {self.server.log_path}) ---",
                tail(self.server.log_path, 80),
                "--- last admin API calls made by the test (repeats collapsed) ---",
                collapse(self.server.api_log),
            ]
            for s in self.services:
                try:
                    report.append(f"--- /api/code?service={s} ---\n{json.dumps(self.code(s))}")
                    report.append(f"--- /api/traces?service={s} ---\n{json.dumps(self.traces(service=s))}")
                except Exception as e:  # noqa: BLE001 - diagnostics must not mask the failure
                    report.append(f"<could not read state of {s}: {e}>")
            for run in self.runs:
                report.append(run.diagnostics())
            report.append("--- requests relayed to the server ---\n" + self.proxy.describe())
            report.append("=" * 80)
            sys.stderr.write("\n".join(report) + "\n")
            sys.stderr.flush()
            raise

    return wrapper


class PythonProtobufExporter(ExporterTest):
    """opentelemetry-sdk + opentelemetry-exporter-otlp-proto-http (protobuf), service py-shop."""

    SERVICE = "py-shop"
    services = (SERVICE,)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.child = cls.run_child(
            "py-shop",
            [sys.executable, PY_APP],
            os.path.dirname(PY_APP),
            OTEL_TEST_ENDPOINT=cls.server.base + "/v1/traces",
            OTEL_TEST_GZIP_ENDPOINT=cls.proxy.base + "/v1/traces",
            OTEL_TEST_API_KEY=API_KEY,
            OTEL_TEST_SERVICE=cls.SERVICE,
        )

    def report(self):
        self.assertIsNotNone(self.child.report, f"the exporter child failed:\n{self.child.diagnostics()}")
        return self.child.report

    @explained
    def test_1_every_export_succeeded(self):
        exports = self.report()["exports"]
        self.assertEqual(sorted(n for e in exports["batch"] for n in e["spans"]), ["POST /orders", "place_order"], exports)
        self.assertEqual(sorted(n for e in exports["gzip"] for n in e["spans"]), ["POST /refunds"], exports)
        for e in exports["batch"] + exports["gzip"]:
            self.assertEqual(e["result"], "SUCCESS", exports)

    @explained
    def test_2_gzip_protobuf_on_the_wire(self):
        self.report()
        sent = [r for r in self.proxy.recorded() if r["path"] == "/v1/traces"]
        self.assertEqual(len(sent), 1, self.proxy.describe())
        r = sent[0]
        self.assertEqual(r["headers"].get("content-type"), "application/x-protobuf", self.proxy.describe())
        self.assertEqual(r["headers"].get("content-encoding"), "gzip", self.proxy.describe())
        self.assertEqual(r["body"][:2], b"\x1f\x8b", "body is gzip")
        self.assertEqual(r["status"], 200, self.proxy.describe())
        self.assertEqual(r["response_content_type"], "application/x-protobuf", self.proxy.describe())

    @explained
    def test_3_code_index_has_the_raising_line(self):
        order = self.report()["order"]["root"]["trace_id"]
        line = marker_line(PY_ORDERS, "# RAISES:place_order")
        self.assert_location(self.SERVICE, PY_ORDERS, "place_order", line, order)
        # The caller's frame of the traceback is user code too.
        found = self.code(self.SERVICE)
        self.assertIn(PY_APP, code_files(found), json.dumps(found, indent=1))

    @explained
    def test_4_gzip_export_is_indexed(self):
        refund = self.report()["refund"]["root"]["trace_id"]
        line = marker_line(PY_ORDERS, "# RAISES:refund_order")
        self.assert_location(self.SERVICE, PY_ORDERS, "refund_order", line, refund)
        detail = self.trace(refund)
        self.assertEqual([s["name"] for s in detail["spans"]], ["POST /refunds"], detail)
        self.assert_exception_span(detail["spans"][0], "KeyError", PY_ORDERS, self.SERVICE)
        self.assert_listed(self.SERVICE, refund, "POST /refunds", 1)

    @explained
    def test_5_trace_is_listed_with_its_spans(self):
        report = self.report()["order"]
        trace_id, root_id, child_id = report["root"]["trace_id"], report["root"]["span_id"], report["child"]["span_id"]
        self.assertEqual(report["child"]["trace_id"], trace_id)
        self.assert_listed(self.SERVICE, trace_id, "POST /orders", 2)
        detail = self.trace(trace_id)
        self.assertEqual(detail["trace_id"], trace_id, detail)
        spans = {s["span_id"]: s for s in detail["spans"]}
        self.assertEqual(set(spans), {root_id, child_id}, detail)
        root, child = spans[root_id], spans[child_id]
        self.assertEqual((root["name"], root["kind"], root["status"]), ("POST /orders", "server", "error"), root)
        self.assertIsNone(root["parent_span_id"], root)
        self.assertEqual(root["attributes"].get("http.route"), "/orders", root)
        self.assertEqual(root["attributes"].get("http.response.status_code"), 500, root)
        self.assertEqual((child["name"], child["kind"], child["parent_span_id"]), ("place_order", "internal", root_id), child)
        self.assert_exception_span(child, "ZeroDivisionError", PY_ORDERS, self.SERVICE)
        self.assertIn("division by zero", child["status_message"], child)
        self.assertEqual(root["events"], [], root)

    @explained
    def test_6_breakpoint_from_discovered_line(self):
        self.report()
        line = marker_line(PY_ORDERS, "# RAISES:place_order")
        entry, code = self.wait_for_line(self.SERVICE, PY_ORDERS, "place_order", line)
        self.assertIsNotNone(entry, json.dumps(code, indent=1))
        body = {"service_name": self.SERVICE, "file_path": PY_ORDERS, "line_number": line}
        bp = self.server.ok("POST", "/api/breakpoints", body, expect=(201,))
        self.assertEqual(bp["function_name"], "place_order", bp)
        self.assertIsInstance(bp["label"], str, bp)
        self.assertTrue(bp["label"].strip(), bp)
        self.assertEqual(bp["label"], "place_order", bp)  # as functions/local/tests/traces.rs expects
        self.assertEqual((bp["service_name"], bp["file_path"], bp["line_number"]), (self.SERVICE, PY_ORDERS, line), bp)
        listed = {b["id"]: b for b in self.server.breakpoints(self.SERVICE)}
        self.assertIn(bp["id"], listed)
        self.assertEqual(listed[bp["id"]]["function_name"], "place_order")


class NodeJsonExporter(ExporterTest):
    """@opentelemetry/sdk-trace-base + @opentelemetry/exporter-trace-otlp-http (JSON), service
    node-cart."""

    SERVICE = "node-cart"
    services = (SERVICE,)

    @classmethod
    def setUpClass(cls):
        node = shutil.which("node")
        if not node:
            raise RuntimeError("node (20+) is not on PATH")
        if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@opentelemetry", "exporter-trace-otlp-http")):
            raise RuntimeError(f"{NODE_DIR}/node_modules is missing: run scripts/setup-node.sh first")
        super().setUpClass()
        cls.child = cls.run_child(
            "node-cart",
            [node, NODE_APP],
            NODE_DIR,
            OTEL_TEST_ENDPOINT=cls.proxy.base + "/v1/traces",
            OTEL_TEST_API_KEY=API_KEY,
            OTEL_TEST_SERVICE=cls.SERVICE,
        )

    def report(self):
        self.assertIsNotNone(self.child.report, f"the exporter child failed:\n{self.child.diagnostics()}")
        return self.child.report

    @explained
    def test_1_every_export_succeeded_as_json(self):
        exports = self.report()["exports"]
        self.assertEqual(sorted(n for e in exports for n in e["spans"]), ["POST /checkout", "checkout"], exports)
        for e in exports:
            self.assertEqual(e["code"], 0, exports)  # ExportResultCode.SUCCESS
        sent = [r for r in self.proxy.recorded() if r["path"] == "/v1/traces"]
        self.assertTrue(sent, self.proxy.describe())
        for r in sent:
            self.assertEqual(r["headers"].get("content-type"), "application/json", self.proxy.describe())
            self.assertNotIn("content-encoding", r["headers"], self.proxy.describe())
            payload = json.loads(r["body"])
            self.assertIn("resourceSpans", payload)
            self.assertEqual(r["status"], 200, self.proxy.describe())
            self.assertEqual(r["response_content_type"], "application/json", self.proxy.describe())

    @explained
    def test_2_code_index_has_the_throwing_line(self):
        trace_id = self.report()["root"]["trace_id"]
        line = marker_line(NODE_CART, "// THROWS:checkout")
        self.assert_location(self.SERVICE, NODE_CART, NODE_CHECKOUT, line, trace_id)

    @explained
    def test_3_trace_is_listed_with_its_spans(self):
        report = self.report()
        trace_id, root_id, child_id = report["root"]["trace_id"], report["root"]["span_id"], report["child"]["span_id"]
        self.assertEqual(report["child"]["trace_id"], trace_id)
        self.assert_listed(self.SERVICE, trace_id, "POST /checkout", 2)
        detail = self.trace(trace_id)
        spans = {s["span_id"]: s for s in detail["spans"]}
        self.assertEqual(set(spans), {root_id, child_id}, detail)
        root, child = spans[root_id], spans[child_id]
        self.assertEqual((root["name"], root["kind"], root["status"]), ("POST /checkout", "server", "error"), root)
        self.assertIsNone(root["parent_span_id"], root)
        self.assertEqual(root["attributes"].get("http.response.status_code"), 500, root)
        self.assertEqual((child["name"], child["kind"], child["parent_span_id"]), ("checkout", "internal", root_id), child)
        self.assert_exception_span(child, "TypeError", NODE_CART, self.SERVICE)

    @explained
    def test_4_breakpoint_from_discovered_line(self):
        self.report()
        line = marker_line(NODE_CART, "// THROWS:checkout")
        entry, code = self.wait_for_line(self.SERVICE, NODE_CART, NODE_CHECKOUT, line)
        self.assertIsNotNone(entry, json.dumps(code, indent=1))
        body = {"service_name": self.SERVICE, "file_path": NODE_CART, "line_number": line}
        bp = self.server.ok("POST", "/api/breakpoints", body, expect=(201,))
        self.assertEqual(bp["function_name"], entry["function"], bp)
        self.assertIn(bp["function_name"], NODE_CHECKOUT, bp)
        self.assertEqual(bp["label"], "checkout", bp)  # the label is the bare function name


if __name__ == "__main__":
    unittest.main()
