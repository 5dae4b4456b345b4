#!/usr/bin/env bash
# The whole test suite: lint, format, types, unit tests, then the test-bed tests on real hosts.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not testbed" for the fast ones only).
# Runs in the virtual environment scripts/setup.sh --test made.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "test: no .venv here; run scripts/setup.sh --test first" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
mypy
# two streams side by side (tests/conftest.py STREAMS); -n 0 after them runs one
exec python -m pytest -n 2 --dist loadgroup "$@"
