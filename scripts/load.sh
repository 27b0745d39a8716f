#!/usr/bin/env bash
# HTTP load test of the local server: builds release `sightline` and `loadgen`, starts
# `sightline serve` on a free loopback port with a temporary data dir, then runs
#   1. capture, closed loop  (CAPTURE_CONCURRENCY workers, CAPTURE_SECS)  -> max snapshots/s
#   2. capture, open loop at CAPTURE_RATE/s (same workers, CAPTURE_RATE_SECS) -> p99 at the target rate
#   3. capture, open loop at CAPTURE_LOW_RATE/s                           -> p99 at a rate it sustains
#   4. poll, closed loop     (POLL_CONCURRENCY workers, POLL_SECS)        -> max polls/s
# and prints one JSON object per run (plus the server's CPU seconds during it). The server
# and the load generator share the machine's cores. Every step is bounded by `timeout`.
#
# Usage: scripts/load.sh            (env overrides below; RESULTS_DIR=dir keeps the JSON;
#        SKIP_BUILD=1 SIGHTLINE_BIN=… LOADGEN_BIN=… run prebuilt binaries)
set -euo pipefail

CAPTURE_CONCURRENCY=${CAPTURE_CONCURRENCY:-32}
CAPTURE_SECS=${CAPTURE_SECS:-20}
CAPTURE_RATE=${CAPTURE_RATE:-5000}
# The target is a sustained rate: the open-loop run at it is longer than the others.
CAPTURE_RATE_SECS=${CAPTURE_RATE_SECS:-60}
CAPTURE_LOW_RATE=${CAPTURE_LOW_RATE:-250}
POLL_CONCURRENCY=${POLL_CONCURRENCY:-64}
POLL_SECS=${POLL_SECS:-15}
WARMUP_SECS=${WARMUP_SECS:-2}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
# The load generator shares the server's cores. At a higher priority it reads a response
# when it arrives, not when it next gets a core, so its latencies are the server's and
# not its own waits (the server gets no more CPU for it: the generator preempts it).
# Applied only where allowed (root or CAP_SYS_NICE); LOADGEN_NICE=0 turns it off. Each
# report's `loadgen_nice` says what the run had.
LOADGEN_NICE=${LOADGEN_NICE:--10}
SKIP_BUILD=${SKIP_BUILD:-0}
KEY=${KEY:-sl_load_$(date +%s)_$$}

cd "$(dirname "$0")/.."

if [ "$SKIP_BUILD" != 1 ]; then
    timeout 3600 cargo build --release -p sightline-local --bin sightline -p sightline-benches --bin loadgen
fi
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
SIGHTLINE=${SIGHTLINE_BIN:-$TARGET_DIR/release/sightline}
LOADGEN=${LOADGEN_BIN:-$TARGET_DIR/release/loadgen}

NICE=()
if [ "$LOADGEN_NICE" != 0 ] && [ "$(nice -n "$LOADGEN_NICE" nice 2>/dev/null)" = "$LOADGEN_NICE" ]; then
    NICE=(nice -n "$LOADGEN_NICE")
fi

DATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sightline-load.XXXXXX")
SERVER_LOG="$DATA_DIR/server.log"
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA_DIR"
}
trap cleanup EXIT

# Port 0: the kernel picks a free port; the server prints the address it bound.
SIGHTLINE_BOOTSTRAP_API_KEY="$KEY" SIGHTLINE_LOG=${SIGHTLINE_LOG:-warn} \
    "$SIGHTLINE" --data-dir "$DATA_DIR/data" serve --listen 127.0.0.1:0 >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
BASE=
for _ in $(seq 100); do
    BASE=$(sed -n 's/^Sightline listening on \(http:[^ ]*\).*/\1/p' "$SERVER_LOG" | head -n1)
    [ -n "$BASE" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG"; exit 1; }
    sleep 0.1
done
[ -n "$BASE" ] || { echo "server did not start" >&2; cat "$SERVER_LOG" >&2; exit 1; }
echo "server pid $SERVER_PID at $BASE (data dir $DATA_DIR/data)" >&2

# User + system CPU seconds of the server so far.
server_cpu() { awk '{ print ($14 + $15) / 100 }' "/proc/$SERVER_PID/stat"; }

run() {
    local name=$1 secs=$2
    shift 2
    local before after out
    before=$(server_cpu)
    out=$(timeout $((secs + WARMUP_SECS + 60)) "${NICE[@]}" "$LOADGEN" --base "$BASE" --key "$KEY" \
        --duration "$secs" --warmup "$WARMUP_SECS" --threads "$LOADGEN_THREADS" "$@")
    after=$(server_cpu)
    echo "== $name (server CPU seconds incl. warm-up: $(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }'))"
    echo "$out"
    if [ -n "${RESULTS_DIR:-}" ]; then
        mkdir -p "$RESULTS_DIR"
        echo "$out" >"$RESULTS_DIR/$name.json"
    fi
}

run capture_closed "$CAPTURE_SECS" --mode capture --concurrency "$CAPTURE_CONCURRENCY"
run capture_rate "$CAPTURE_RATE_SECS" --mode capture --concurrency "$CAPTURE_CONCURRENCY" --rate "$CAPTURE_RATE"
run capture_rate_low "$CAPTURE_SECS" --mode capture --concurrency "$CAPTURE_CONCURRENCY" --rate "$CAPTURE_LOW_RATE"
run poll_closed "$POLL_SECS" --mode poll --concurrency "$POLL_CONCURRENCY"

echo "== store after the runs: $(du -sh "$DATA_DIR/data" | cut -f1)"
