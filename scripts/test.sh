#!/usr/bin/env bash
# The whole test suite: lint, format, types, unit tests, then the test-bed tests on real hosts.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not testbed" for the fast ones only).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
mypy
exec python3 -m pytest "$@"
