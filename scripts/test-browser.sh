#!/usr/bin/env bash
# The dashboard in a real headless Chromium: Debian's `chromium` driven by playwright-core
# (tests/browser), against a real `sightline serve` on a free loopback port, with the
# official TraceKit Python SDK capturing (tests/browser/shop.py) and real OTLP traces.
#
# Self-contained and idempotent: installs chromium with apt-get when /usr/bin/chromium is
# missing (retried once), runs scripts/setup-python.sh (the pinned SDK venv), `npm ci` in
# tests/browser when its lock file changed, builds `sightline`, starts it, runs
# `node --test`, and always stops the server.
# Output: target/test-output/browser/ (server log, test log, screenshots of every page at
# desktop and phone width).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
OUT="$REPO/target/test-output/browser"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
mkdir -p "$OUT"
rm -f "$OUT"/*.png

if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi

# --- Chromium (Debian's; playwright's own download does not work offline) ---------------
if [[ ! -x /usr/bin/chromium ]]; then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  install_chromium() { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
  install_chromium || { echo "test-browser: apt-get failed, retrying once"; sleep 3; install_chromium; }
fi

# --- the official Python SDK and the npm packages -----------------------------------------
./scripts/setup-python.sh
DIR=tests/browser
STAMP="$DIR/node_modules/.sightline-lock-stamp"
want="$(cd "$DIR" && sha256sum package.json package-lock.json; echo "node $(node --version)")"
if [[ ! -f "$STAMP" ]] || [[ "$(cat "$STAMP")" != "$want" ]]; then
  (cd "$DIR" && npm ci --no-audit --no-fund)
  echo "$want" > "$STAMP"
fi

# --- the server ---------------------------------------------------------------------------
cargo build -p sightline-local
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
DATA="$(mktemp -d)"
KEY="sl_browser_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
PID_FILE="$OUT/server.pid"
SIGHTLINE_BOOTSTRAP_API_KEY="$KEY" SIGHTLINE_LOG=warn \
  "$TARGET_DIR/debug/sightline" --data-dir "$DATA" serve --listen "127.0.0.1:$PORT" --heartbeat-secs 2 \
  > "$OUT/server.log" 2>&1 &
SERVER=$!
echo "$SERVER" > "$PID_FILE"
# The test restarts the server once (same port and data dir) and records the new process
# in $PID_FILE: stop whichever process is the server now.
cleanup() {
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || echo "$SERVER")"
  kill "$pid" "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -rf "$DATA" "$PID_FILE"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/api/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$OUT/server.log"; echo "test-browser: the server exited" >&2; exit 1; }
  sleep 0.1
done
grep -q "Dashboard:" "$OUT/server.log" || { echo "test-browser: the server did not print the dashboard URL" >&2; exit 1; }

# --- the tests ----------------------------------------------------------------------------
cd "$DIR"
SIGHTLINE_URL="http://127.0.0.1:$PORT" SIGHTLINE_API_KEY="$KEY" SDK_PYTHON="$REPO/.venv/sdk-python/bin/python" OUT_DIR="$OUT" \
  SIGHTLINE_SERVER_CMD="$TARGET_DIR/debug/sightline --data-dir $DATA serve --listen 127.0.0.1:$PORT --heartbeat-secs 2" \
  SIGHTLINE_SERVER_PID_FILE="$PID_FILE" \
  node --test --test-concurrency=1 --test-reporter=spec dashboard.test.mjs 2>&1 | tee "$OUT/test.log"
echo "test-browser: screenshots in $OUT"
