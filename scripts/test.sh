#!/usr/bin/env bash
# THE test command of Sightline: formatting, lints, the wasm32 check of the core, every Rust
# test, then the end-to-end tests with the official TraceKit Python SDK and with real
# OpenTelemetry exporters (Python protobuf, Node JSON) against a real `sightline serve`, the
# AWS adapters and Lambda functions against DynamoDB Local + moto S3, the edge Worker under
# Miniflare and wrangler, and the dashboard in headless Chromium.
#
#   ./scripts/test.sh              every step, in order (stops at the first failure)
#   ./scripts/test.sh fmt clippy   only the named steps
#   KEEP_GOING=1 ./scripts/test.sh every step even after a failure (exit status still non-zero)
#
# Steps: fmt clippy wasm test build python-setup python-e2e node-setup otel-e2e aws-store
#        aws-functions edge browser
# Needs: rustup (the toolchain comes from rust-toolchain.toml), python3 (3.11+) with venv/pip,
# node (20.6+) with npm, java (17+, for DynamoDB Local), apt-get (Chromium, when missing) and
# access to the crate, PyPI, npm and Debian registries. Each step's script installs what it
# needs and skips what is already there.
# Logs: target/test-output/<step>.log.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi

OUT="$REPO/target/test-output"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
VENV="$REPO/.venv/sdk-python"
ALL_STEPS=(fmt clippy wasm test build python-setup python-e2e node-setup otel-e2e aws-store aws-functions edge browser)
if [[ $# -gt 0 ]]; then STEPS=("$@"); else STEPS=("${ALL_STEPS[@]}"); fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-always}"

rm -rf "$OUT"
mkdir -p "$OUT"

SUMMARY=()
START_ALL=$SECONDS
FAILED=0

print_summary() {
  local status=$1
  echo
  echo "================================ summary ================================"
  for line in "${SUMMARY[@]}"; do echo "  $line"; done
  printf '  %-14s %-6s %5ss\n' "total" "$([[ $status -eq 0 ]] && echo ok || echo FAILED)" "$((SECONDS - START_ALL))"
  echo "  logs: $OUT"
  echo "========================================================================="
}

# run_step NAME "WHAT IT RUNS" FUNCTION
run_step() {
  local name=$1 what=$2
  shift 2
  local log="$OUT/$name.log" start=$SECONDS status=0
  echo
  echo "======== [$name] $what ========"
  # The step's own exit status (pipefail), with its output both shown and kept.
  ("$@") 2>&1 | tee "$log" || status=$?
  local took=$((SECONDS - start))
  if [[ $status -eq 0 ]]; then
    SUMMARY+=("$(printf '%-14s %-6s %5ss' "$name" ok "$took")")
  else
    SUMMARY+=("$(printf '%-14s %-6s %5ss  (exit %s, log %s)' "$name" FAILED "$took" "$status" "$log")")
    echo "!!!!!!!! [$name] failed with exit $status (log: $log)"
    FAILED=$status
    if [[ "${KEEP_GOING:-0}" != 1 ]]; then
      print_summary 1
      exit "$status"
    fi
  fi
}

step_fmt() { cargo fmt --all --check; }
step_clippy() { cargo clippy --workspace --all-targets -- -D warnings; }
# Steps run where errexit does not apply (their status is tested), so chain with &&.
step_wasm() {
  rustup target add wasm32-unknown-unknown &&
    cargo check -p sightline-core --target wasm32-unknown-unknown
}
step_test() { cargo test --workspace; }
step_build() { cargo build -p sightline-local; }
step_python_setup() { "$REPO/scripts/setup-python.sh"; }
step_python_e2e() {
  SIGHTLINE_BIN="$TARGET_DIR/debug/sightline" \
    SIGHTLINE_TEST_OUTPUT="$OUT/sdk-python" \
    PYTHONDONTWRITEBYTECODE=1 \
    "$VENV/bin/python" -m unittest discover -s "$REPO/tests/sdk-python" -t "$REPO/tests/sdk-python" -v
}
step_node_setup() { "$REPO/scripts/setup-node.sh"; }
step_otel_e2e() {
  SIGHTLINE_BIN="$TARGET_DIR/debug/sightline" \
    SIGHTLINE_TEST_OUTPUT="$OUT/otel" \
    PYTHONDONTWRITEBYTECODE=1 \
    "$VENV/bin/python" -m unittest discover -s "$REPO/tests/otel" -t "$REPO/tests/otel" -v
}

for step in "${STEPS[@]}"; do
  case "$step" in
    fmt) run_step fmt "cargo fmt --all --check" step_fmt ;;
    clippy) run_step clippy "cargo clippy --workspace --all-targets -- -D warnings" step_clippy ;;
    wasm) run_step wasm "cargo check -p sightline-core --target wasm32-unknown-unknown" step_wasm ;;
    test) run_step test "cargo test --workspace" step_test ;;
    build) run_step build "cargo build -p sightline-local" step_build ;;
    python-setup) run_step python-setup "scripts/setup-python.sh (tracekit-apm 1.4.1 venv)" step_python_setup ;;
    python-e2e) run_step python-e2e "Python SDK end-to-end tests (tests/sdk-python)" step_python_e2e ;;
    node-setup) run_step node-setup "scripts/setup-node.sh (npm ci in tests/otel/node)" step_node_setup ;;
    otel-e2e) run_step otel-e2e "OpenTelemetry exporter end-to-end tests (tests/otel)" step_otel_e2e ;;
    aws-store) run_step aws-store "scripts/test-aws-store.sh (store contract on DynamoDB Local + moto S3)" "$REPO/scripts/test-aws-store.sh" ;;
    aws-functions) run_step aws-functions "scripts/test-aws-functions.sh (Lambda functions behind the edge, on DynamoDB Local + moto)" "$REPO/scripts/test-aws-functions.sh" ;;
    edge) run_step edge "scripts/test-edge.sh (Worker build, Miniflare, wrangler dev end to end)" "$REPO/scripts/test-edge.sh" ;;
    browser) run_step browser "scripts/test-browser.sh (dashboard in headless Chromium)" "$REPO/scripts/test-browser.sh" ;;
    *)
      echo "unknown step '$step' (steps: ${ALL_STEPS[*]})" >&2
      exit 2
      ;;
  esac
done

print_summary "$FAILED"
exit "$FAILED"
