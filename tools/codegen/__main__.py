"""Generate ``protocol/messages/`` from Apache Kafka's JSON message schemas.

Usage::

    python -m tools.codegen [--schemas DIR ...] [--out DIR] [--check]

Each API key becomes one module with its request and response classes; each data or header
message becomes a module of its own; ``__init__.py`` holds the ``ApiKey`` enum and the tables from
API key to classes. ``--check`` writes nothing and exits 1 when the committed output differs from
what the schemas produce (CI runs it), so the generated code is never edited by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.codegen.emit import HEADER_LINE, module_text
from tools.codegen.schema import MessageSpec, load_all, snake

REPO = Path(__file__).resolve().parents[2]
SPEC_ROOT = REPO.parent / "shared" / "kafka-spec"
DEFAULT_SCHEMAS = SPEC_ROOT / "message"
DEFAULT_OUT = REPO / "protocol" / "messages"


def api_name(msg: MessageSpec) -> str:
    for suffix in ("Request", "Response"):
        if msg.name.endswith(suffix):
            return msg.name[: -len(suffix)]
    return msg.name


def generate(specs: list[MessageSpec]) -> dict[str, str]:
    """File name -> text for the whole package."""
    files: dict[str, str] = {}
    by_api: dict[int, list[MessageSpec]] = {}
    others: list[MessageSpec] = []
    for m in specs:
        if m.kind in ("request", "response") and m.api_key is not None:
            by_api.setdefault(m.api_key, []).append(m)
        else:
            others.append(m)
    modules: list[tuple[str, int | None, list[MessageSpec]]] = []
    for key in sorted(by_api):
        msgs = sorted(by_api[key], key=lambda m: m.kind)  # request before response
        name = api_name(msgs[0])
        modules.append((snake(name), key, msgs))
        files[snake(name) + ".py"] = module_text(msgs, f"Kafka API {key}, {name}: request and response messages.")
    for m in sorted(others, key=lambda m: m.name):
        modules.append((snake(m.name), None, [m]))
        files[snake(m.name) + ".py"] = module_text([m], f"Kafka {m.kind} message {m.name}.")
    files["__init__.py"] = registry_text(modules)
    return files


def registry_text(modules: list[tuple[str, int | None, list[MessageSpec]]]) -> str:
    lines = [
        HEADER_LINE,
        '"""Every Kafka message class, the ApiKey enum, and the tables from API key to classes."""',
        "",
        "from __future__ import annotations",
        "",
        "from enum import IntEnum",
        "",
        "from protocol.message import Message",
        "from protocol.messages import (",
    ]
    lines += [f"    {mod}," for mod, _, _ in sorted(modules)]
    lines += [")", "", "", "class ApiKey(IntEnum):"]
    for _mod, key, msgs in modules:
        if key is not None:
            lines.append(f"    {snake(api_name(msgs[0])).upper()} = {key}")
    lines += ["", "", "REQUESTS: dict[int, type[Message]] = {"]
    for mod, key, msgs in modules:
        for m in msgs:
            if key is not None and m.kind == "request":
                lines.append(f"    {key}: {mod}.{m.name},")
    lines += ["}", "", "RESPONSES: dict[int, type[Message]] = {"]
    for mod, key, msgs in modules:
        for m in msgs:
            if key is not None and m.kind == "response":
                lines.append(f"    {key}: {mod}.{m.name},")
    lines += ["}", "", "# Data and header messages, by name.", "OTHERS: dict[str, type[Message]] = {"]
    for mod, key, msgs in modules:
        if key is None:
            lines.append(f"    {msgs[0].name!r}: {mod}.{msgs[0].name},")
    lines += ["}", ""]
    return "\n".join(lines)


def default_schema_dirs() -> list[Path]:
    """``message/`` and every other schema directory beside it (the coordinators' record schemas
    and the KRaft metadata records live in directories of their own in Kafka's tree)."""
    others = sorted(d for d in SPEC_ROOT.iterdir() if d.is_dir() and d != DEFAULT_SCHEMAS
                    and any(d.glob("*.json"))) if SPEC_ROOT.is_dir() else []
    return [DEFAULT_SCHEMAS, *others]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.codegen", description=__doc__.splitlines()[0])
    parser.add_argument("--schemas", type=Path, action="append",
                        help=f"a schema directory (repeatable; default: every directory of JSON schemas under {SPEC_ROOT})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output on disk differs")
    args = parser.parse_args(argv)
    schema_dirs = args.schemas or default_schema_dirs()
    for d in schema_dirs:
        if not d.is_dir():
            print(f"schema directory {d} does not exist", file=sys.stderr)
            return 2
    files = generate(load_all(schema_dirs))
    out: Path = args.out
    existing = {p.name for p in out.glob("*.py")} if out.is_dir() else set()
    if args.check:
        stale = sorted(n for n in files if not (out / n).is_file() or (out / n).read_text() != files[n])
        extra = sorted(existing - files.keys())
        for n in stale:
            print(f"out of date: {out / n}", file=sys.stderr)
        for n in extra:
            print(f"not generated by the schemas: {out / n}", file=sys.stderr)
        if stale or extra:
            print("run `python -m tools.codegen` and commit the result", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files match the schemas")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for n in existing - files.keys():
        (out / n).unlink()
    for n, text in files.items():
        path = out / n
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    print(f"wrote {len(files)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
