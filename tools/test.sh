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
# The real clients of the compatibility matrix: kcat (Debian), kafkajs (npm), the Java client.
bash tools/install_clients.sh

echo "== generated code matches the schemas"
.venv/bin/python -m tools.codegen --check
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# Seeds per simulator (tests/sim): a thousand each here; TRAFKA_SIM_SEED=N reruns one.
export TRAFKA_SIM_SEEDS=${TRAFKA_SIM_SEEDS:-1000}
.venv/bin/python -m pytest "$@"
echo "== compatibility matrix: real clients against a real broker"
.venv/bin/python -m pytest compat-tests
echo "== benchmark smoke runs"
.venv/bin/python -m tools.bench.codec --quick
if [ -f tools/bench/storage.py ]; then
    .venv/bin/python -m tools.bench.storage --quick
fi
