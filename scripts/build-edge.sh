#!/usr/bin/env bash
# Builds the edge Worker (functions/edge) from source, offline, into functions/edge/build/
# (index.js + the wasm module). Installs its tools only when missing:
#   rustup target wasm32-unknown-unknown, worker-build, wasm-bindgen-cli at exactly the
#   version in functions/edge/Cargo.lock, and the npm packages of tests/edge (wrangler
#   carries the esbuild worker-build bundles with). wasm-opt is skipped (--no-opt).
# Usage: scripts/build-edge.sh [--dev]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EDGE="$ROOT/functions/edge"
NODE_DIR="$ROOT/tests/edge"
WORKER_BUILD_VERSION="0.8.7"
PROFILE="--release"
[[ "${1:-}" == "--dev" ]] && PROFILE="--dev"

log() { echo "[build-edge] $*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! worker-build --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  log "installing worker-build $WORKER_BUILD_VERSION (several minutes on a fresh machine)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked \
    || cargo install worker-build --version "$WORKER_BUILD_VERSION"
fi

WBG_VERSION="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' "$EDGE/Cargo.lock")"
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WBG_VERSION"; then
  log "installing wasm-bindgen-cli $WBG_VERSION (several minutes on a fresh machine)"
  cargo install wasm-bindgen-cli --version "$WBG_VERSION" --locked \
    || cargo install wasm-bindgen-cli --version "$WBG_VERSION"
fi

if [[ ! -x "$NODE_DIR/node_modules/.bin/wrangler" ]]; then
  log "installing the npm packages of tests/edge"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund)
fi

export WASM_BINDGEN_BIN
WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export ESBUILD_BIN="$NODE_DIR/node_modules/.bin/esbuild"
export CARGO_TARGET_DIR="$EDGE/target"

cd "$EDGE"
log "worker-build $PROFILE"
worker-build "$PROFILE" --no-opt
ls -l "$EDGE/build" "$EDGE/build/"*.wasm 2>/dev/null >&2 || true
