#!/usr/bin/env bash
# Quickstart: set up, build the example image, run a 2-node distributed job
# locally, and show where its outputs and logs landed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
TFBUILD_EXTRAS="${TFBUILD_EXTRAS:-test}" source "$repo/.ci/setup.sh"
cd "$repo"
runs="$repo/.tfbuild/runs"
tfbuild base
# --trust-host-ca: builds on machines behind a TLS-intercepting proxy need the
# host's CA bundle; elsewhere it is harmless.
tfbuild image examples/keras-digits --tag tfbuild/keras-digits:latest --trust-host-ca
tfbuild run tfbuild/keras-digits:latest --nodes 2 --backend multiworker \
  --upload-to "file://$runs" -- --epochs 3
run_id="$(ls -t "$runs" | head -n 1)"
tfbuild runs show "file://$runs" "$run_id"
echo "outputs: $runs/$run_id/outputs"
echo "logs:    $runs/$run_id/logs"
