"""Goal: protocol/ stays sans-IO: it imports nothing that performs I/O or schedules work.

Two checks. Statically, every ``.py`` file under protocol/ is parsed and each ``import x``,
``from x import y`` (submodules such as ``os.path`` included) and string-literal dynamic import is
checked against a list of I/O, concurrency and ambient-nondeterminism modules (STYLE.md rules 1
and 6). Dynamically, a fresh interpreter imports every module of the package and reports which of
trio, asyncio, socket and selectors got loaded. ``os`` cannot be checked that way, since the
interpreter's own startup imports it, so the static check is the one that covers it.

The dynamic check runs twice. First with the third-party libraries protocol/ uses (found by the
static pass) replaced by stubs, so that anything loaded comes from protocol/ itself or the stdlib
modules it imports: then none of trio, asyncio, socket and selectors may appear. Then with the real
libraries, whose own imports are not protocol/'s to control (``crc32c`` reads its version through
``importlib.metadata``, which loads ``email.utils`` and with it ``socket``, ``selectors`` and
``threading``): even then trio and asyncio must not be loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "protocol"

FORBIDDEN = frozenset({
    # event loops and concurrency
    "trio", "anyio", "asyncio", "selectors", "select", "threading", "multiprocessing", "concurrent",
    "subprocess", "signal",
    # sockets, files and the operating system
    "socket", "ssl", "os", "io", "pathlib", "shutil", "tempfile", "mmap", "fcntl",
    # ambient nondeterminism: the clock and the random source are passed in
    "time", "random",
})
# What the dynamic check looks for in sys.modules (os is always there, see the module docstring).
NEVER_LOADED = frozenset({"trio", "asyncio"})
NOT_LOADED_BY_PROTOCOL = frozenset({"trio", "asyncio", "socket", "selectors"})


def protocol_files() -> list[Path]:
    files = sorted(PROTOCOL.rglob("*.py"))
    assert len(files) > 90, "protocol/ and its generated messages should all be found"
    return files


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """Every absolute module a source file imports, with its line: ``a.b`` for ``from a.b import c``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.append((node.lineno, node.module))
                # "from os import path" imports os.path as well.
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            dynamic = (isinstance(func, ast.Name) and func.id == "__import__") or (
                isinstance(func, ast.Attribute) and func.attr == "import_module")
            first = node.args[0] if node.args else None
            if dynamic and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
    return found


def forbidden_imports(source: str, filename: str = "<source>") -> list[str]:
    return [f"{filename}:{line}: {name}" for line, name in imported_modules(source, filename)
            if name.split(".")[0] in FORBIDDEN]


def third_party_modules() -> set[str]:
    """Modules outside the stdlib and protocol/ that protocol/ imports (packages before members)."""
    found = set()
    for path in protocol_files():
        for _, name in imported_modules(path.read_text(), str(path)):
            root = name.split(".")[0]
            if root not in ("protocol", "__future__") and root not in sys.stdlib_module_names:
                found.add(name)
    return found


# --- the checker itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import os.path",
        "from os import path",
        "from os.path import join",
        "import trio as t",
        "from socket import *",
        "from concurrent.futures import ThreadPoolExecutor",
        "def f():\n    import asyncio\n",
        "try:\n    import selectors\nexcept ImportError:\n    pass\n",
        "import struct, subprocess",
        "import importlib\nimportlib.import_module('socket')",
        "__import__('threading')",
        "from time import monotonic",
        "import random",
    ],
)
def test_checker_finds_forbidden_imports(source: str) -> None:
    assert forbidden_imports(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import struct\nimport uuid\nfrom dataclasses import dataclass",
        "from protocol.primitives import I32",
        "from . import primitives",
        "import osmium",  # a name that merely starts like a forbidden one
        "import timeit_like as t",
        "from typing import TYPE_CHECKING",
    ],
)
def test_checker_allows_pure_imports(source: str) -> None:
    assert forbidden_imports(source) == []


# --- the rule, statically --------------------------------------------------------------------------


def test_protocol_imports_no_io_modules() -> None:
    violations = []
    for path in protocol_files():
        violations += forbidden_imports(path.read_text(), str(path.relative_to(ROOT)))
    assert violations == []


# --- the rule, dynamically -------------------------------------------------------------------------

PROBE = """
import importlib, json, sys, types

stub, deps, modules, watched = json.loads(sys.argv[1])


class Stub(types.ModuleType):
    # Stands in for a third-party library: any attribute is a do-nothing callable.
    __path__: list[str] = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


for dep in deps:
    if stub:
        sys.modules[dep] = Stub(dep)
    else:
        importlib.import_module(dep)
for name in modules:
    importlib.import_module(name)
print(json.dumps({"loaded": sorted(n for n in sys.modules if n.split(".")[0] in watched),
                  "imported": sorted(n for n in modules if n in sys.modules)}))
"""


def probe(*, stub_third_party: bool, watched: frozenset[str]) -> list[str]:
    """The watched modules loaded once a fresh interpreter has imported all of protocol/."""
    modules = [module_name(p) for p in protocol_files()]
    for expected in ("protocol", "protocol.messages", "protocol.headers", "protocol.framing"):
        assert expected in modules
    deps = sorted(third_party_modules())
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([stub_third_party, deps, modules, sorted(watched)])],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["imported"] == sorted(modules)
    return list(report["loaded"])


def test_protocol_itself_loads_no_io_modules() -> None:
    # Third-party libraries are stubbed, so whatever is loaded comes from protocol/ or the stdlib
    # modules it imports.
    assert probe(stub_third_party=True, watched=NOT_LOADED_BY_PROTOCOL) == []


def test_nothing_loads_an_event_loop() -> None:
    # With the real libraries too (crc32c loads socket, see the module docstring), trio and
    # asyncio stay out.
    assert probe(stub_third_party=False, watched=NEVER_LOADED) == []


def test_replication_cores_import_no_io_modules() -> None:
    """replication/'s state machines (Raft, controller, partition replicas, metadata) take
    messages, time and randomness and return effects: none imports I/O, concurrency, a clock or
    a random source itself (their storage goes through ``storage``'s FileSystem interface)."""
    files = sorted((ROOT / "replication").glob("*.py"))
    assert len(files) >= 8, files
    bad = []
    for path in files:
        for line, name in imported_modules(path.read_text(encoding="utf-8"), str(path)):
            if name.split(".")[0] in FORBIDDEN or name.split(".")[0] == "broker":
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == []
