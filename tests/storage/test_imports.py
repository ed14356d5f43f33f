"""omnibus.storage imports nothing else of ours and never asyncio (design: dependency direction)."""

from __future__ import annotations

import ast
import pathlib

import omnibus.storage

PACKAGE = pathlib.Path(omnibus.storage.__file__).parent
# meta.py (SQLite metadata) is owned elsewhere; the rule holds for it too.


def test_storage_imports_only_stdlib_crc32c_and_itself():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside omnibus.storage
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top != "asyncio", f"{path.name} imports asyncio"
                if top == "omnibus":
                    assert name.startswith("omnibus.storage"), f"{path.name} imports {name}"
