#!/usr/bin/env bash
# Install Trafka into .venv and run a single-node broker: 127.0.0.1:9092, data in ./trafka-data.
# Extra arguments go to `trafka serve` (e.g. --override num.partitions=3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/trafka serve "$@"
