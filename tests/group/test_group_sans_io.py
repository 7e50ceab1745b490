"""Goal: broker/group is a sans-IO core (STYLE.md rules 1 and 6), like protocol/.

Statically, no module under broker/group imports an I/O, concurrency, clock or randomness
module. Dynamically, a fresh interpreter that imports the package loads neither trio nor
asyncio nor socket.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "broker" / "group"
FORBIDDEN = frozenset({
    "trio", "anyio", "asyncio", "selectors", "select", "threading", "multiprocessing", "concurrent",
    "subprocess", "signal", "socket", "ssl", "os", "io", "pathlib", "shutil", "tempfile", "mmap", "fcntl",
    "time", "random", "uuid",
})


def test_no_io_imports() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "classic.py", "coordinator.py", "records.py"}
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "uuid" and [a.name for a in node.names] == ["UUID"]:
                    continue  # the UUID value type (topic ids); uuid1/uuid4 stay out
                names = [node.module]
            else:
                continue
            found += [f"{path.name}:{node.lineno}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert found == []


def test_importing_loads_no_event_loop_or_sockets() -> None:
    probe = ("import json, sys, broker.group; "
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('trio', 'asyncio', 'socket', 'selectors'))))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False, env={"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
