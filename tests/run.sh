#!/usr/bin/env bash
# The test command: sets up (idempotently) and runs every test tier.
# Extra arguments go to pytest, e.g. `tests/run.sh -m unit` for the quick loop.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
source "$repo/.ci/setup.sh"
cd "$repo"
ruff check . >&2
exec python -m pytest "$@"
