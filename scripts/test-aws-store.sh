#!/usr/bin/env bash
# The DynamoDB + S3 adapters (shared/store-aws) against real emulators: starts DynamoDB Local
# and moto's S3 (scripts/aws-emulators.sh), runs the store contract suite, the table setup
# test, the outage test and the request count of a poll and a capture (figures printed, see
# docs/PERFORMANCE.md), and always stops the emulators.
#
# SIGHTLINE_REQUIRE_AWS_TESTS=1 makes a test that finds no emulator fail instead of skipping,
# so a green run means the suites really ran against the emulators.
# Logs: target/test-output/aws-store/ (emulator logs in target/test-output/aws-store/emulators/).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi

OUT=target/test-output/aws-store
mkdir -p "$OUT"
# Own emulator state, so another step's emulators are never touched.
export SIGHTLINE_AWS_EMULATORS_DIR="$PWD/$OUT/emulators"

trap 'scripts/aws-emulators.sh stop' EXIT
scripts/aws-emulators.sh start
# shellcheck disable=SC1091
source "$SIGHTLINE_AWS_EMULATORS_DIR/env"
export SIGHTLINE_REQUIRE_AWS_TESTS=1

cargo test -p sightline-store-aws --tests -- --nocapture 2>&1 | tee "$OUT/cargo-test.log"
status=${PIPESTATUS[0]}

# The contract suites must have run, not skipped.
for t in dynamodb_passes_item_store_contract s3_passes_blob_store_contract \
  dynamodb_outage_is_unavailable_then_recovers requests_per_poll_and_capture; do
  if ! grep -q "test $t ... ok" "$OUT/cargo-test.log"; then
    echo "test-aws-store: $t did not pass" >&2
    status=1
  fi
done
if grep -q "^skipped " "$OUT/cargo-test.log"; then
  echo "test-aws-store: some tests were skipped" >&2
  status=1
fi
exit "$status"
