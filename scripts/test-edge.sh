#!/usr/bin/env bash
# The edge Worker (functions/edge), built from source and tested:
#   1. fmt + clippy of the Worker crate (its own workspace, for wasm32) and its unit tests;
#   2. scripts/build-edge.sh (offline worker-build; installs worker-build and wasm-bindgen-cli
#      only when missing), then `wrangler deploy --dry-run` on infra/wrangler.toml;
#   3. node --test with Miniflare (workerd) in front of a real `sightline serve` origin:
#      fan-out order to N SDK streams and a dashboard stream, fresh init on reconnect, key and
#      scope checks, signed publish refusals (bad, missing, stale, replayed), heartbeats, dead
#      stream pruning, kill switch, pass-through (tests/edge/test);
#   4. end to end: `wrangler dev --local` in front of `sightline serve`, the official TraceKit
#      Python SDK through the Worker (tests/edge/e2e).
#   ./scripts/test-edge.sh            everything above
#   ./scripts/test-edge.sh --perf     also the fan-out load (1,000 streams; figures only)
# Every server runs on a free loopback port and is stopped by the tests themselves.
# Logs: target/test-output/edge/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
OUT="$REPO/target/test-output/edge"
mkdir -p "$OUT"
export EDGE_TEST_OUTPUT="$OUT"
export SIGHTLINE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/sightline"
log() { echo "test-edge: $*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

log "fmt, clippy and unit tests (functions/edge)"
(
  cd functions/edge
  cargo fmt --check
  CARGO_TARGET_DIR="$REPO/functions/edge/target" \
    cargo clippy --target wasm32-unknown-unknown --all-targets -- -D warnings
  # The pure parts (routing, path decoding) also run natively.
  CARGO_TARGET_DIR="$REPO/functions/edge/target" cargo test --lib
) >"$OUT/check.log" 2>&1 || { cat "$OUT/check.log"; exit 1; }

log "building the Worker"
scripts/build-edge.sh >"$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }

log "building the origin (sightline serve)"
cargo build -p sightline-local >"$OUT/origin-build.log" 2>&1 || { tail -50 "$OUT/origin-build.log"; exit 1; }

log "Python SDK venv"
scripts/setup-python.sh >"$OUT/setup-python.log" 2>&1 || { tail -50 "$OUT/setup-python.log"; exit 1; }

cd tests/edge
if [[ ! -x node_modules/.bin/wrangler ]]; then
  npm ci --no-audit --no-fund >"$OUT/npm.log" 2>&1 || { tail -50 "$OUT/npm.log"; exit 1; }
fi

log "wrangler deploy --dry-run (validates infra/wrangler.toml and the bundle, offline)"
WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false \
  node_modules/.bin/wrangler deploy --dry-run --outdir "$OUT/dry-run" \
  --config "$REPO/infra/wrangler.toml" >"$OUT/dry-run.log" 2>&1 || { cat "$OUT/dry-run.log"; exit 1; }
grep -E "Total Upload" "$OUT/dry-run.log" >&2 || true

log "node --test: Miniflare and end to end"
node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$OUT/node-test.tap" test/ e2e/

if [[ "${1:-}" == "--perf" ]]; then
  log "fan-out load (figures only)"
  node perf/fanout.js both | tee "$OUT/perf.txt"
fi
log "ok"
