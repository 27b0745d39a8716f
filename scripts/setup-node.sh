#!/usr/bin/env bash
# Installs the npm packages of tests/otel/node (the real OpenTelemetry JS exporter that the
# otel-e2e step of scripts/test.sh drives) exactly as its package-lock.json pins them, with
# `npm ci`.
#
# Idempotent: node_modules keeps a stamp of the sha256 of package.json and package-lock.json
# and of the Node version it was installed with; when all three still match it does nothing.
# Needs node 20.6+ and npm, and access to the npm registry.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DIR=tests/otel/node
STAMP="$DIR/node_modules/.sightline-lock-stamp"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup-node: '$tool' not found (Node 20.6+ with npm is needed)" >&2
    exit 1
  fi
done

want="$(cd "$DIR" && sha256sum package.json package-lock.json; echo "node $(node --version)")"

if [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$want" ]]; then
  echo "setup-node: $DIR/node_modules is up to date with package-lock.json"
  exit 0
fi

echo "setup-node: npm ci in $DIR (node $(node --version), npm $(npm --version 2>/dev/null))"
(cd "$DIR" && npm ci --no-audit --no-fund)

# Fail loudly if the exporter does not load.
(cd "$DIR" && node -e '
  require("@opentelemetry/exporter-trace-otlp-http");
  require("@opentelemetry/sdk-trace-base");
  const v = require("@opentelemetry/exporter-trace-otlp-http/package.json").version;
  console.log(`setup-node: @opentelemetry/exporter-trace-otlp-http ${v} installed`);
')

printf '%s\n' "$want" > "$STAMP"
