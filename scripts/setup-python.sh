#!/usr/bin/env bash
# Creates .venv/sdk-python with the official TraceKit Python SDK (tracekit-apm 1.4.1) and the
# OpenTelemetry pins it needs (without the pins pip silently resolves tracekit-apm 1.0.1, whose
# OpenTelemetry requirements conflict with the newest instrumentation packages).
#
# Idempotent: when the venv already holds exactly these pins (recorded in a marker file) it
# does nothing. Override the interpreter with PYTHON=..., the venv path with SDK_VENV=...
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV="${SDK_VENV:-.venv/sdk-python}"
MARKER="$VENV/.sightline-pins"

PINS=(
  "tracekit-apm==1.4.1"
  "opentelemetry-api==1.45.1"
  "opentelemetry-sdk==1.45.1"
  "opentelemetry-exporter-otlp-proto-http==1.45.1"
  "opentelemetry-instrumentation==0.66b1"
  "opentelemetry-instrumentation-requests==0.66b1"
  "opentelemetry-instrumentation-urllib==0.66b1"
  "opentelemetry-instrumentation-urllib3==0.66b1"
  "opentelemetry-semantic-conventions==0.66b1"
)

# The marker records the pins and the interpreter version: a change to either rebuilds.
want="$(printf '%s\n' "${PINS[@]}"; "$PYTHON" -c 'import sys; print(sys.version.split()[0])')"

if [[ -f "$MARKER" && -x "$VENV/bin/python" ]] && [[ "$(cat "$MARKER")" == "$want" ]] \
  && "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("tracekit-apm") != "1.4.1")' 2>/dev/null; then
  echo "setup-python: $VENV is up to date (tracekit-apm 1.4.1)"
  exit 0
fi

echo "setup-python: creating $VENV with $("$PYTHON" --version 2>&1)"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
if ! "$PYTHON" -m venv "$VENV"; then
  # Debian splits venv/ensurepip into python3-venv; virtualenv does the same job.
  echo "setup-python: '$PYTHON -m venv' failed (Debian: apt-get install python3-venv); using virtualenv"
  rm -rf "$VENV"
  "$PYTHON" -m pip install --quiet --user virtualenv 2>/dev/null ||
    "$PYTHON" -m pip install --quiet --user --break-system-packages virtualenv
  "$PYTHON" -m virtualenv --quiet "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$VENV/bin/python" -m pip install --quiet "${PINS[@]}"

# Fail loudly if pip resolved something else.
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
v = m.version("tracekit-apm")
assert v == "1.4.1", f"tracekit-apm resolved to {v}, expected 1.4.1"
import tracekit  # noqa: F401  (the package must import)
print(f"setup-python: tracekit-apm {v} installed")
PY

printf '%s' "$want" > "$MARKER"
