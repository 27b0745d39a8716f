#!/usr/bin/env bash
# The AWS production topology on loopback, one part at a time (test utility of
# scripts/test-aws-functions.sh):
#
#   edge       the edge Worker under `wrangler dev --local`, ORIGIN_URL = the router
#   functions  the six functions on `cargo lambda watch`'s runtime APIs (DynamoDB Local + moto)
#   router     the stand-in for the HTTP API in front of them (sightline-local-router)
#   trigger    the relay's event source mapping: DynamoDB Local's stream → relay invocations
#              (stream_trigger.py, settings from template.yaml)
#
#   stack.sh start [PART...]   start the parts (default: all, in the order above) and wait
#                              until each answers; a function is warm once started
#   stack.sh stop [PART...]    SIGTERM each part's process group; exits 1 when one had to be
#                              killed after 15 s (not a graceful stop)
#
# Everything it needs comes from $SIGHTLINE_STACK_DIR/stack.env, written by the test script
# (ports, binaries, env file, secret); pid files and logs live in that directory too. A part
# restarts on the same port, so clients and the relay reach it again at the same URL.
set -euo pipefail

DIR="${SIGHTLINE_STACK_DIR:?SIGHTLINE_STACK_DIR is required}"
# shellcheck disable=SC1091
source "$DIR/stack.env"
ALL=(edge functions router trigger)

log() { echo "stack: $*" >&2; }

# wait_for NAME PIDFILE CHECK...: runs CHECK until it succeeds (120 s at most).
wait_for() {
  local name=$1 pidfile=$2
  shift 2
  for _ in $(seq 1 600); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "$name exited during start; log: $DIR/$name.log"
      tail -n 30 "$DIR/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  log "$name not ready after 120 s; log: $DIR/$name.log"
  tail -n 30 "$DIR/$name.log" >&2 || true
  return 1
}

answers() { # URL [METHOD] [BODY]: any status below 500 from the URL
  local code
  code="$(curl -s --max-time 20 -o /dev/null -w '%{http_code}' -X "${2:-GET}" "$1" ${3:+-d "$3"} || true)"
  [[ "$code" =~ ^[1-4] ]]
}

# The Lambda runtime APIs of `cargo lambda watch --only-lambda-apis`, and each function's
# binary (built beforehand) connected to its own runtime API as Lambda would start it: no
# cargo at run time, so a restart takes a second and never waits on a build.
start_functions() {
  (cd "$REPO" && exec setsid bash -c '
    set -a; source "$1"; set +a
    cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$2" &
    for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && break; sleep 0.1; done
    for f in $3; do
      AWS_LAMBDA_FUNCTION_NAME="$f" AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 \
        AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$2/.rt/$f" "$4/$f" &
    done
    wait' functions "$ENV_FILE" "$INVOKE_PORT" "ingest poll checkin capture api relay" "$BIN" \
    >>"$DIR/functions.log" 2>&1) &
  echo $! >"$DIR/functions.pid"
  local invoke="http://127.0.0.1:$INVOKE_PORT" path
  for path in ingest/v1/metrics poll/sdk/snapshots/active/warmup checkin/sdk/snapshots/checkin \
              capture/sdk/snapshots/capture api/api/health; do
    wait_for functions "$DIR/functions.pid" answers "$invoke/lambda-url/$path" POST '{}'
  done
  wait_for functions "$DIR/functions.pid" answers "$invoke/2015-03-31/functions/relay/invocations" POST '{"Records":[]}'
}

start_router() {
  setsid "$BIN/sightline-local-router" "127.0.0.1:$ROUTER_PORT" "http://127.0.0.1:$INVOKE_PORT" \
    >>"$DIR/router.log" 2>&1 &
  echo $! >"$DIR/router.pid"
  wait_for router "$DIR/router.pid" answers "http://127.0.0.1:$ROUTER_PORT/api/health"
}

start_edge() {
  mkdir -p "$DIR/edge"
  local inspector
  inspector="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  (cd "$DIR/edge" && WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false WRANGLER_HIDE_BANNER=true \
    CLOUDFLARE_CF_FETCH_ENABLED=false CI=1 exec setsid "$WRANGLER" dev --local --config "$REPO/infra/wrangler.toml" \
    --ip 127.0.0.1 --port "$EDGE_PORT" --inspector-ip 127.0.0.1 --inspector-port "$inspector" \
    --persist-to "$DIR/edge/state" --show-interactive-dev-session=false --log-level warn \
    --var "ORIGIN_URL:http://127.0.0.1:$ROUTER_PORT" --var "PUBLISH_SECRET:$PUBLISH_SECRET" \
    --var "HEARTBEAT_SECS:$HEARTBEAT_SECS" >>"$DIR/edge.log" 2>&1) &
  echo $! >"$DIR/edge.pid"
  # An unsigned publish is refused by the Worker itself (401): ready without the origin.
  wait_for edge "$DIR/edge.pid" answers "http://127.0.0.1:$EDGE_PORT/internal/publish" POST '{}'
}

start_trigger() {
  : >"$DIR/trigger.log"
  setsid "$TRIGGER_PYTHON" -u "$REPO/tests/aws-functions/stream_trigger.py" --template "$REPO/template.yaml" \
    --function RelayFunction --endpoint "$DYNAMODB_URL" --table "$TABLE" \
    --invoke "http://127.0.0.1:$INVOKE_PORT/2015-03-31/functions/relay/invocations" >>"$DIR/trigger.log" 2>&1 &
  echo $! >"$DIR/trigger.pid"
  wait_for trigger "$DIR/trigger.pid" grep -qx ready "$DIR/trigger.log"
}

# stop PART: SIGTERM to its process group, SIGKILL after 15 s; 1 when it had to be killed.
stop_part() {
  local pidfile="$DIR/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  rm -f "$pidfile"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$1 did not stop within 15 s of SIGTERM: killed"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  return 1
}

cmd="${1:-}"
shift || true
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=("${ALL[@]}")
case "$cmd" in
  start)
    for p in "${parts[@]}"; do
      t0=$SECONDS
      "start_$p"
      log "$p up ($((SECONDS - t0)) s)"
    done
    ;;
  stop)
    status=0
    # The reverse order: the trigger stops invoking before the functions go.
    for ((i = ${#parts[@]} - 1; i >= 0; i--)); do
      stop_part "${parts[$i]}" || status=1
    done
    exit "$status"
    ;;
  *)
    echo "usage: stack.sh start|stop [functions|router|edge|trigger]..." >&2
    exit 2
    ;;
esac
