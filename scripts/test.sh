#!/usr/bin/env bash
# Set up .venv with the test extras, then lint, type-check, check the layers and run the whole
# test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k sqlite`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest "$@"
