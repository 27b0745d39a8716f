#!/usr/bin/env bash
# The AWS build, proven locally in its production topology: cfn-lint on template.yaml, then
#   SDK/test → edge Worker (`wrangler dev --local`, functions/edge) → stand-in for the HTTP API
#   (tests/aws-functions) → the functions (their debug binaries on the Lambda runtime APIs of
#   `cargo lambda watch --only-lambda-apis`) → DynamoDB Local (stream NEW_AND_OLD_IMAGES) +
#   moto's S3 and SSM; and DynamoDB Local's stream → the relay's trigger
#   (tests/aws-functions/stream_trigger.py, the event source mapping of template.yaml) →
#   relay function → the edge's signed publish endpoint → SSE to SDKs and dashboards.
# With the edge as base URL it runs
#   1. every HTTP conformance test (functions/local/tests/conformance.rs), unchanged: only the
#      base URL differs; SSE comes from the edge, and the restart test stops the functions and
#      the edge (SIGTERM, with a stream open) and starts them again over the same storage;
#   2. every official TraceKit Python SDK scenario (tests/sdk-python);
#   3. a fault test: DynamoDB Local stopped mid-run → 503 with a JSON error, recovery after;
#   4. the relay test (stream event → signed publish to a verifying receiver).
#
#   ./scripts/test-aws-functions.sh         the tests above
#   ./scripts/test-aws-functions.sh perf    sizes of the binaries `sam build` deploys (`cargo
#                                           lambda build --release`; fails if one is 10 MB or
#                                           more) and their cold-start init times
#
# Installs what it needs idempotently (.venv/aws-functions: cfn-lint, cargo-lambda; the
# emulators through scripts/aws-emulators.sh; the Worker through scripts/build-edge.sh and
# tests/edge's npm packages). Starts and always stops its own processes on free loopback
# ports (tests/aws-functions/stack.sh). Logs: target/test-output/aws-functions/ (the
# topology's under stack/).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
OUT="$REPO/target/test-output/aws-functions"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
VENV="$REPO/.venv/aws-functions"
PY_VENV="$REPO/.venv/sdk-python"
export SIGHTLINE_AWS_EMULATORS_DIR="$OUT/emulators"
mkdir -p "$OUT"
FUNCTIONS=(ingest poll checkin capture api)

log() { echo "test-aws-functions: $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
export SIGHTLINE_STACK_DIR="$OUT/stack"
STACK="$REPO/tests/aws-functions/stack.sh"
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
  [[ -f "$SIGHTLINE_STACK_DIR/stack.env" ]] && "$STACK" stop >/dev/null 2>&1 || true
  "$REPO/scripts/aws-emulators.sh" stop >/dev/null 2>&1 || true
  if [[ $status -eq 0 ]]; then log "all passed"; else log "FAILED (logs: $OUT)"; fi
  exit "$status"
}
trap cleanup EXIT INT TERM

# --- tools ----------------------------------------------------------------------------------
TOOLS=("cfn-lint==1.*" "cargo-lambda==1.*")
want="$(printf '%s\n' "${TOOLS[@]}")"
if [[ ! -x "$VENV/bin/cfn-lint" || ! -x "$VENV/bin/cargo-lambda" || "$(cat "$VENV/.sightline-tools" 2>/dev/null)" != "$want" ]]; then
  log "installing ${TOOLS[*]} into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install --quiet "${TOOLS[@]}"
  printf '%s\n' "$want" > "$VENV/.sightline-tools"
fi
export PATH="$VENV/bin:$PATH"

if [[ "${1:-}" == perf ]]; then
  # Exactly what `sam build` deploys: `cargo lambda build --release`, which applies the
  # workspace's `[workspace.metadata.lambda.build]` overrides of the release profile (size-
  # tuned, stripped). Built here for x86_64; template.yaml deploys arm64 (same profile,
  # cross-compiled). A separate target dir: cargo-lambda's flags would rebuild the shared one.
  log "cargo lambda build --release --compiler cargo (target/lambda-release)"
  CARGO_TARGET_DIR="$REPO/target/lambda-release" cargo lambda build --release --compiler cargo \
    --lambda-dir "$REPO/target/lambda" $(printf -- '--bin %s ' "${FUNCTIONS[@]}" relay)
  cargo build -q -p sightline-aws-functions-tests --bin sightline-cold-start
  # The binary as deployed, and the zip Lambda stores; the target is under 10 MB a binary.
  echo "deployed binary sizes (target: under 10 MB = 10,000,000 bytes each):" | tee "$OUT/perf.txt"
  oversize=0
  for f in "${FUNCTIONS[@]}" relay; do
    python3 - "$f" "$REPO/target/lambda/$f/bootstrap" <<'PY' | tee -a "$OUT/perf.txt" || oversize=1
import io, os, sys, zipfile
name, binary = sys.argv[1:]
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(binary, "bootstrap")
size = os.path.getsize(binary)
verdict = "ok" if size < 10_000_000 else "OVER 10 MB"
print(f"  {name:<8} {size:>11,} bytes  {size / 2**20:5.2f} MiB  {size / 1e6:5.2f} MB"
      f"  zip {len(buf.getvalue()) / 2**20:5.2f} MiB  {verdict}")
sys.exit(0 if size < 10_000_000 else 1)
PY
  done
  "$REPO/scripts/aws-emulators.sh" start > "$OUT/emulators.log" 2>&1
  # shellcheck disable=SC1091
  source "$SIGHTLINE_AWS_EMULATORS_DIR/env"
  # The relay reads its secret from SSM at init: moto serves SSM too.
  "$REPO/.venv/aws/bin/python" - "$SIGHTLINE_TEST_S3_URL" <<'PY'
import sys, boto3
boto3.client("ssm", endpoint_url=sys.argv[1], region_name="us-east-1").put_parameter(
    Name="sightline/publish-secret", Value="cold-start", Type="SecureString", Overwrite=True)
PY
  echo "cold-start init (process start to the first /runtime/invocation/next), 21 starts each:" | tee -a "$OUT/perf.txt"
  SIGHTLINE_TABLE=sightline-perf SIGHTLINE_BUCKET=sightline-perf SIGHTLINE_LOG=warn \
  SIGHTLINE_EDGE_URL=http://127.0.0.1:9 SIGHTLINE_PUBLISH_SECRET_PARAMETER=sightline/publish-secret \
  AWS_ENDPOINT_URL_SSM="$SIGHTLINE_TEST_S3_URL" \
    "$TARGET_DIR/debug/sightline-cold-start" 21 $(printf -- "$REPO/target/lambda/%s/bootstrap " "${FUNCTIONS[@]}" relay) \
    | tee -a "$OUT/perf.txt"
  [[ $oversize -eq 0 ]] || { log "a function binary is over 10 MB (see above)"; exit 1; }
  exit 0
fi

log "cfn-lint template.yaml"
cfn-lint template.yaml

# --- build ----------------------------------------------------------------------------------
log "building the functions, the local router and the conformance tests"
cargo build -q $(printf -- '-p sightline-fn-%s ' "${FUNCTIONS[@]}") -p sightline-fn-relay -p sightline-aws-functions-tests
cargo test -q -p sightline-local --test conformance --no-run 2>&1 | tail -n 2
BIN="$TARGET_DIR/debug"
log "building the edge Worker (scripts/build-edge.sh)"
"$REPO/scripts/build-edge.sh" > "$OUT/edge-build.log" 2>&1 || { tail -n 50 "$OUT/edge-build.log"; exit 1; }
if [[ ! -x "$REPO/tests/edge/node_modules/.bin/wrangler" ]]; then
  (cd "$REPO/tests/edge" && npm ci --no-audit --no-fund) > "$OUT/npm.log" 2>&1 || { tail -n 50 "$OUT/npm.log"; exit 1; }
fi

# --- emulators, table, bucket, publish secret ----------------------------------------------
# Everything of this run lives in the stack dir (the perf run keeps its own emulators).
rm -rf "$SIGHTLINE_STACK_DIR"
mkdir -p "$SIGHTLINE_STACK_DIR"
export SIGHTLINE_AWS_EMULATORS_DIR="$SIGHTLINE_STACK_DIR/emulators"
"$REPO/scripts/aws-emulators.sh" start > "$OUT/emulators.log" 2>&1
# shellcheck disable=SC1091
source "$SIGHTLINE_AWS_EMULATORS_DIR/env"
export SIGHTLINE_TABLE=sightline-fn-test SIGHTLINE_BUCKET=sightline-fn-test
export SIGHTLINE_DYNAMODB_ENDPOINT="$SIGHTLINE_TEST_DYNAMODB_URL" SIGHTLINE_S3_ENDPOINT="$SIGHTLINE_TEST_S3_URL"
export SIGHTLINE_LOG=warn
"$BIN/sightline-admin" init-storage
# The relay reads the publish secret from SSM at init, as deployed: moto serves SSM too.
PUBLISH_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
export SIGHTLINE_EDGE_URL SIGHTLINE_PUBLISH_SECRET_PARAMETER=sightline/publish-secret
export AWS_ENDPOINT_URL_SSM="$SIGHTLINE_TEST_S3_URL"
"$REPO/.venv/aws/bin/python" - "$SIGHTLINE_TEST_S3_URL" "$PUBLISH_SECRET" <<'PY'
import sys, boto3
boto3.client("ssm", endpoint_url=sys.argv[1], region_name="us-east-1").put_parameter(
    Name="sightline/publish-secret", Value=sys.argv[2], Type="SecureString", Overwrite=True)
PY

# --- the topology ---------------------------------------------------------------------------
INVOKE_PORT="$(free_port)"
ROUTER_PORT="$(free_port)"
EDGE_PORT="$(free_port)"
EDGE="http://127.0.0.1:$EDGE_PORT"
SIGHTLINE_EDGE_URL="$EDGE"
ENV_FILE="$SIGHTLINE_STACK_DIR/functions.env"
{
  for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION SIGHTLINE_TABLE SIGHTLINE_BUCKET \
           SIGHTLINE_DYNAMODB_ENDPOINT SIGHTLINE_S3_ENDPOINT SIGHTLINE_LOG SIGHTLINE_EDGE_URL \
           SIGHTLINE_PUBLISH_SECRET_PARAMETER AWS_ENDPOINT_URL_SSM; do
    echo "$v=${!v}"
  done
} > "$ENV_FILE"
{
  for v in REPO BIN ENV_FILE INVOKE_PORT ROUTER_PORT EDGE_PORT PUBLISH_SECRET; do
    printf '%s=%q\n' "$v" "${!v}"
  done
  printf 'WRANGLER=%q\n' "$REPO/tests/edge/node_modules/.bin/wrangler"
  printf 'TRIGGER_PYTHON=%q\n' "$REPO/.venv/aws/bin/python"
  printf 'DYNAMODB_URL=%q\nTABLE=%q\n' "$SIGHTLINE_TEST_DYNAMODB_URL" "$SIGHTLINE_TABLE"
  # The conformance tests expect a heartbeat within 3 s (the local server's 1 s in tests).
  echo "HEARTBEAT_SECS=1"
  for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION; do printf 'export %s=%q\n' "$v" "${!v}"; done
  echo 'export AWS_DEFAULT_REGION=$AWS_REGION'
} > "$SIGHTLINE_STACK_DIR/stack.env"
log "starting the topology (logs: $SIGHTLINE_STACK_DIR)"
"$STACK" start
log "edge $EDGE → router 127.0.0.1:$ROUTER_PORT → cargo lambda watch 127.0.0.1:$INVOKE_PORT; stream → relay → edge"

# --- 1. conformance -------------------------------------------------------------------------
RUST_KEY="$(sed -n 's/^pub const KEY: &str = "\(.*\)";$/\1/p' functions/local/tests/common/mod.rs)"
log "conformance tests against the edge ($EDGE)"
t0=$SECONDS
SIGHTLINE_TEST_BASE_URL="$EDGE" SIGHTLINE_TEST_API_KEY="$RUST_KEY" \
SIGHTLINE_TEST_RESET="$BIN/sightline-test-reset" SIGHTLINE_TEST_CLI="$BIN/sightline-admin" \
SIGHTLINE_TEST_STOP="$STACK stop functions edge" SIGHTLINE_TEST_START="$STACK start edge functions" \
  cargo test -q -p sightline-local --test conformance -- --test-threads=1 2>&1 \
  | tee "$OUT/conformance.log" | grep -E '^(test |test result|failures|---- )' || true
grep -q '^test result: ok' "$OUT/conformance.log" || { log "conformance tests failed"; exit 1; }
log "conformance: $(grep '^test result' "$OUT/conformance.log") ($((SECONDS - t0)) s)"

# --- 2. official Python SDK -----------------------------------------------------------------
"$REPO/scripts/setup-python.sh" > "$OUT/python-setup.log" 2>&1
PY_KEY="$("$PY_VENV/bin/python" -c 'import sys; sys.path.insert(0, "tests/sdk-python"); import harness; print(harness.API_KEY)')"
SIGHTLINE_TEST_API_KEY="$PY_KEY" "$BIN/sightline-test-reset"
log "Python SDK scenarios against the edge ($EDGE)"
t0=$SECONDS
SIGHTLINE_TEST_BASE_URL="$EDGE" SIGHTLINE_TEST_API_KEY="$PY_KEY" SIGHTLINE_TEST_OUTPUT="$OUT/sdk-python" \
  "$PY_VENV/bin/python" -m unittest discover -v \
  -s "$REPO/tests/sdk-python" -t "$REPO/tests/sdk-python" 2>&1 | tee "$OUT/sdk-python.log"
log "Python SDK: $(grep -E '^(OK|FAILED|Ran )' "$OUT/sdk-python.log" | tr '\n' ' ')($((SECONDS - t0)) s)"

# --- 3. faults ------------------------------------------------------------------------------
log "fault test: DynamoDB Local stopped mid-run"
SIGHTLINE_TEST_API_KEY="$RUST_KEY" "$BIN/sightline-test-reset"
SIGHTLINE_TEST_BASE_URL="$EDGE" SIGHTLINE_TEST_API_KEY="$RUST_KEY" \
SIGHTLINE_TEST_DYNAMODB_STOP="$REPO/scripts/aws-emulators.sh stop-dynamodb" \
SIGHTLINE_TEST_DYNAMODB_START="$REPO/scripts/aws-emulators.sh start-dynamodb" \
  cargo test -q -p sightline-aws-functions-tests --test faults -- --nocapture 2>&1 | tee "$OUT/faults.log"

# Every change the stream carried reached the edge: the trigger gave nothing up (a failed
# relay invocation, e.g. while the edge restarted, was retried until it went through).
TRIGGER_LOG="$SIGHTLINE_STACK_DIR/trigger.log"
log "relay invocations: $(grep -c 'ok=True' "$TRIGGER_LOG") succeeded, $(grep -c 'ok=False' "$TRIGGER_LOG") failed and retried"
if grep -q 'given up' "$TRIGGER_LOG"; then
  grep 'given up' "$TRIGGER_LOG" >&2
  log "stream records were given up before reaching the edge"; exit 1
fi

# --- 4. relay and router units --------------------------------------------------------------
cargo test -q -p sightline-fn-relay 2>&1 | tee "$OUT/relay.log"
cargo test -q -p sightline-aws-functions-tests --test routes 2>&1 | tee "$OUT/routes.log"
