"""``python -m tools.bench <codec|storage|broker> [options]``: run one of the benchmarks.

Each benchmark is also a module of its own (``python -m tools.bench.codec``) and takes ``--quick``
for the CI smoke run and ``--help`` for its options.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "codec": "the generated codec against kafka-python's",
    "storage": "the partition log against plain-file baselines",
    "broker": "Trafka against Tansu and noida-db, over the wire",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in BENCHMARKS:
        print("usage: python -m tools.bench {codec,storage,broker} [--quick] [options]\n", file=sys.stderr)
        for name, what in BENCHMARKS.items():
            print(f"  {name:8} {what}", file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"tools.bench.{args[0]}")
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
