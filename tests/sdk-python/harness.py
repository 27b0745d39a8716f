"""Test harness: a real ``sightline serve`` process, its admin API, and SDK child processes.

Standard library only (the venv holds just the TraceKit SDK and its pins).

Environment:
  SIGHTLINE_BIN          server binary (default: <repo>/target/debug/sightline)
  SIGHTLINE_TEST_BASE_URL  run against this already running deployment instead of spawning
                         the server (e.g. the Lambda functions behind a local router); it must
                         be bootstrapped with API_KEY, and SIGHTLINE_TEST_API_KEY must say so
  SIGHTLINE_TEST_OUTPUT  directory for server and child logs (default: a temp dir)
  SIGHTLINE_LOG          server log filter (default: info)
"""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CHILD = os.path.join(HERE, "sdk_child.py")
API_KEY = "sl_pytest_" + "0123456789abcdef" * 4
PROTO = "@@SL "

# The SDK prints these when the server's answers do not fit it (caught errors inside the
# SDK): they mean an incompatibility even though nothing crashed.
SDK_ERROR_MARKERS = (
    "Failed to fetch breakpoints",
    "error handling SSE event",
    "Failed to capture snapshot",
    "Failed to auto-register",
    "SSE endpoint returned",
    "unknown SSE event type",
    "Could not detect caller location",
)


def output_dir():
    d = os.environ.get("SIGHTLINE_TEST_OUTPUT")
    if not d:
        d = tempfile.mkdtemp(prefix="sightline-sdk-python-")
        os.environ["SIGHTLINE_TEST_OUTPUT"] = d
    os.makedirs(d, exist_ok=True)
    return d


def tail(path_or_lines, n=60):
    if isinstance(path_or_lines, str):
        try:
            with open(path_or_lines, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            return f"<cannot read {path_or_lines}: {e}>"
    else:
        lines = list(path_or_lines)
    return "\n".join(lines[-n:])


def callsite_line(function):
    """Line of ``# CALLSITE:<function>`` in the child (where it calls capture_snapshot)."""
    with open(CHILD, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if line.rstrip().endswith(f"# CALLSITE:{function}"):
                return i
    raise AssertionError(f"no CALLSITE:{function} marker in {CHILD}")


def wait_until(predicate, timeout, interval=0.05):
    """Polls ``predicate`` until it returns a truthy value; returns it, or the last falsy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class ApiError(AssertionError):
    pass


class Server:
    """``sightline serve --listen 127.0.0.1:0`` with a fresh data dir and the bootstrap key."""

    def __init__(self):
        self.out = output_dir()
        self.api_log = deque(maxlen=40)
        self.stdout_lines = []
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        external = os.environ.get("SIGHTLINE_TEST_BASE_URL", "").strip()
        if external:
            if os.environ.get("SIGHTLINE_TEST_API_KEY") != API_KEY:
                raise RuntimeError(f"SIGHTLINE_TEST_API_KEY must be the key the deployment was bootstrapped with: {API_KEY}")
            self.base = external.rstrip("/")
            self.proc = None
            self.log_path = os.path.join(self.out, "server.log")
            self.log_file = open(self.log_path, "w", encoding="utf-8")
            self.log_file.write(f"external deployment at {self.base}: its logs are kept by its own runner\n")
            self.log_file.flush()
            return
        self.bin = os.environ.get("SIGHTLINE_BIN") or os.path.join(REPO, "target", "debug", "sightline")
        if not os.path.isabs(self.bin):
            self.bin = os.path.join(REPO, self.bin)
        if not os.access(self.bin, os.X_OK):
            raise RuntimeError(f"server binary {self.bin} not found: run `cargo build -p sightline-local` first")
        self.out = output_dir()
        self.data_dir = tempfile.mkdtemp(prefix="sightline-data-")
        self.log_path = os.path.join(self.out, "server.log")
        self.api_log = deque(maxlen=40)
        self.stdout_lines = []
        # No proxy for loopback, whatever the environment says.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        env = dict(os.environ)
        env.update(
            SIGHTLINE_DATA_DIR=self.data_dir,
            SIGHTLINE_BOOTSTRAP_API_KEY=API_KEY,
            SIGHTLINE_HEARTBEAT_SECS="1",
            SIGHTLINE_LOG=os.environ.get("SIGHTLINE_LOG", "info"),
        )
        env.pop("SIGHTLINE_LISTEN", None)
        self.log_file = open(self.log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--listen", "127.0.0.1:0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            text=True,
        )
        ready = queue.Queue()

        def read_stdout():
            for line in self.proc.stdout:
                self.stdout_lines.append(line.rstrip("\n"))
                m = re.match(r"Sightline listening on (http://\S+)", line)
                if m:
                    ready.put(m.group(1))
            self.proc.stdout.close()
            ready.put(None)

        threading.Thread(target=read_stdout, daemon=True).start()
        try:
            self.base = ready.get(timeout=30)
        except queue.Empty:
            self.base = None
        if not self.base:
            self.stop()
            raise RuntimeError(
                f"server did not start (exit {self.proc.poll()}).\nstdout:\n{tail(self.stdout_lines)}\n"
                f"stderr:\n{tail(self.log_path)}"
            )

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()

    def settle(self):
        """Waits until a change made through one process of an external deployment shows in
        the others: each Lambda function keeps its reads of a service's state for 1 s. One
        local server drops them at once: nothing to wait for."""
        if self.proc is None:
            time.sleep(1.1)

    # --- HTTP ----------------------------------------------------------------------------------

    def request(self, method, path, body=None, key=API_KEY):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("X-API-Key", key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(req, timeout=20) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode(errors="replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        self.api_log.append(f"{method} {path} {json.dumps(body) if body is not None else ''} -> {status} {text[:1500]}")
        return status, parsed

    def ok(self, method, path, body=None, expect=(200, 201, 204)):
        status, parsed = self.request(method, path, body)
        if status not in expect:
            raise ApiError(f"{method} {path} {json.dumps(body)} -> {status} {parsed!r} (expected {expect})")
        return parsed

    # --- admin helpers -------------------------------------------------------------------------

    def register(self, service, function, label, line, file_path=CHILD):
        """The auto-register call the SDK itself makes (same body), to set a call site up front."""
        body = {"service_name": service, "file_path": file_path, "line_number": line, "function_name": function, "label": label}
        return self.ok("POST", "/sdk/snapshots/auto-register", body)

    def patch(self, bp_id, body):
        return self.ok("PATCH", f"/api/breakpoints/{bp_id}", body)

    def breakpoints(self, service):
        return self.ok("GET", "/api/breakpoints?" + urllib.parse.urlencode({"service": service}))["breakpoints"]

    def breakpoint(self, bp_id):
        return self.ok("GET", f"/api/breakpoints/{bp_id}")

    def snapshots(self, service, breakpoint_id=None):
        q = {"service": service, "limit": 200}
        if breakpoint_id:
            q["breakpoint_id"] = breakpoint_id
        return self.ok("GET", "/api/snapshots?" + urllib.parse.urlencode(q))["snapshots"]

    def snapshot(self, snap_id):
        return self.ok("GET", f"/api/snapshots/{snap_id}")

    def service(self, name):
        for s in self.ok("GET", "/api/services")["services"]:
            if s.get("name") == name:
                return s
        return None

    def connected_sdks(self, name):
        """SDK streams open for the service, read the way the dashboard learns them: the
        ``sdk_counts`` of its event stream's ``init`` (behind the edge, only the edge knows
        its streams; the origin's ``GET /api/services`` cannot)."""
        req = urllib.request.Request(self.base + "/api/events", headers={"X-API-Key": API_KEY, "Accept": "text/event-stream"})
        event, data = None, []
        with self.opener.open(req, timeout=10) as resp:
            for raw in resp:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and event == "init":
                    return (json.loads("\n".join(data)).get("sdk_counts") or {}).get(name, 0)
                elif not line:
                    event, data = None, []
        return 0

    def drops(self, name):
        return (self.service(name) or {}).get("drops") or {}

    def diagnostics(self, services=()):
        parts = [f"--- server stderr (tail of {self.log_path}) ---", tail(self.log_path, 80)]
        parts += ["--- last admin/SDK API calls made by the test ---", "\n".join(self.api_log)]
        for s in services:
            try:
                parts += [
                    f"--- state of service {s} ---",
                    "service: " + json.dumps(self.service(s)),
                    "breakpoints: " + json.dumps(self.breakpoints(s)),
                    "snapshots: " + json.dumps(self.snapshots(s)),
                ]
            except Exception as e:  # noqa: BLE001 - diagnostics must not mask the failure
                parts.append(f"<could not read state of {s}: {e}>")
        return "\n".join(parts)


class Child:
    """One SDK process (``sdk_child.py``) for one service."""

    def __init__(self, server, service, python=sys.executable):
        self.service = service
        self.lines = []
        self.stderr_lines = []
        self.messages = queue.Queue()
        self.log_path = os.path.join(server.out, f"child-{service}.log")
        env = {k: v for k, v in os.environ.items() if k not in ("ENV", "NODE_ENV")}
        env.update(
            SIGHTLINE_URL=server.base,
            SIGHTLINE_API_KEY=API_KEY,
            SDK_SERVICE=service,
            PYTHONUNBUFFERED="1",
            PYTHONIOENCODING="utf-8",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        proto_r, proto_w = os.pipe()
        env["SDK_PROTO_FD"] = str(proto_w)
        self.proc = subprocess.Popen(
            [python, CHILD],
            env=env,
            pass_fds=(proto_w,),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        os.close(proto_w)
        self.proto = os.fdopen(proto_r, "r", encoding="utf-8", errors="replace")
        self.exit_code = None
        self.bye = None
        self.ready = None
        threading.Thread(target=self._read_proto, daemon=True).start()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def wait_ready(self, timeout=30):
        """Waits for the child's ``ready`` line (``tracekit.init`` returned)."""
        self.ready = self._next(timeout, what="the SDK to initialise")
        return self.ready

    def _read_proto(self):
        for line in self.proto:
            if line.startswith(PROTO):
                self.messages.put(json.loads(line[len(PROTO):]))
        self.proto.close()
        self.messages.put(None)

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
        self.proc.stdout.close()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))
        self.proc.stderr.close()

    def _next(self, timeout, what):
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            self.dump_stacks()
            raise AssertionError(f"SDK child ({self.service}) gave no answer within {timeout}s while waiting for {what}")
        if msg is None:
            self.proc.wait(timeout=10)
            raise AssertionError(
                f"SDK child ({self.service}) exited with {self.proc.returncode} while waiting for {what}"
            )
        return msg

    def send(self, cmd, timeout=30):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._next(timeout, what=json.dumps(cmd)[:200])

    def call(self, site, label, *vars_list):
        return self.send({"cmd": "call", "site": site, "label": label, "vars_list": list(vars_list)})

    def state(self):
        return self.send({"cmd": "state"})

    def finish(self, timeout=30):
        """Asks the child to shut the SDK down and exit; returns (exit code, final state)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
                self.bye = self._next(timeout, what="shutdown")
            except (BrokenPipeError, AssertionError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        self.save_log()
        return self.exit_code, self.bye

    def dump_stacks(self):
        """Makes the child print every thread's stack to stderr (faulthandler on SIGUSR1)."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(0.5)
            except OSError:
                pass

    def kill(self):
        if self.proc.poll() is None:
            self.dump_stacks()
            self.proc.kill()
            self.proc.wait()
        if not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self.save_log()

    def save_log(self):
        with open(self.log_path, "w", encoding="utf-8") as f:
            f.write("=== stdout ===\n" + "\n".join(self.lines) + "\n=== stderr ===\n" + "\n".join(self.stderr_lines) + "\n")

    def sdk_error_lines(self):
        return [l for l in self.lines if any(m in l for m in SDK_ERROR_MARKERS)]

    def diagnostics(self):
        return "\n".join(
            [
                f"--- SDK child {self.service}: exit {self.proc.poll()} (log {self.log_path}) ---",
                "stdout tail:",
                tail(self.lines, 60),
                "stderr tail:",
                tail(self.stderr_lines, 40),
            ]
        )
