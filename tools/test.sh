#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need into .venv, then runs
# the generator check, the linters, every test and the benchmark smoke runs. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== generated code matches the schemas"
.venv/bin/python -m tools.codegen --check
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
echo "== benchmark smoke runs"
.venv/bin/python -m tools.bench.codec --quick
if [ -f tools/bench/storage.py ]; then
    .venv/bin/python -m tools.bench.storage --quick
fi
