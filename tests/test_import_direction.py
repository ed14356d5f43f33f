"""The dependency direction of design.md, checked on every module's imports with ``ast``.

    wire/     imports nothing of ours but wire/, and never asyncio or socket (sans-IO)
    storage/  imports nothing of ours outside storage/
    core/     imports only core/ and storage/ of ours
    core/, wire/, storage/ never import asyncio (only server/, embedded, cli, testing, http may)

Every import counts: module level, inside functions, under ``if TYPE_CHECKING``, relative imports
(resolved against the importing module's package) and ``importlib.import_module("...")`` /
``__import__("...")`` with a literal name.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import omnibus

SRC = pathlib.Path(omnibus.__file__).parent

# (layer, allowed omnibus prefixes, forbidden top-level modules)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "omnibus.wire": (("omnibus.wire",), ("asyncio", "socket")),
    "omnibus.storage": (("omnibus.storage",), ("asyncio",)),
    "omnibus.core": (("omnibus.core", "omnibus.storage"), ("asyncio",)),
}


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """Absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".")
    if level - 1 > len(parts) - 1:
        raise ValueError(f"relative import beyond the top package in {module}")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{target}" if target else base


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module name ``source`` imports, with its line number."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(module, is_package, node.level, node.module)
            out.append((node.lineno, base))
            if node.level:  # `from . import x` may name submodules: check them too
                out.extend((node.lineno, f"{base}.{a.name}") for a in node.names if a.name != "*")
        elif isinstance(node, ast.Call):
            f = node.func
            dotted = (isinstance(f, ast.Attribute) and f.attr == "import_module"
                      and isinstance(f.value, ast.Name) and f.value.id == "importlib")
            dunder = isinstance(f, ast.Name) and f.id == "__import__"
            if (dotted or dunder) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                name = node.args[0].value
                if dotted and name.startswith("."):
                    level = len(name) - len(name.lstrip("."))
                    name = resolve(module, is_package, level, name.lstrip(".") or None)
                out.append((node.lineno, name))
    return out


def violations(source: str, module: str, is_package: bool) -> list[str]:
    layer = next((l for l in RULES if module == l or module.startswith(l + ".")), None)
    if layer is None:
        return []
    allowed, forbidden = RULES[layer]
    found = []
    for line, name in imported_names(source, module, is_package):
        top = name.split(".")[0]
        if top in forbidden:
            found.append(f"{module}:{line} imports {name} (forbidden in {layer})")
        elif top == "omnibus" and not any(name == a or name.startswith(a + ".") for a in allowed):
            found.append(f"{module}:{line} imports {name} ({layer} may import only {allowed})")
    return found


MODULES = sorted(SRC.rglob("*.py"))


def test_modules_found():
    names = {module_name(p) for p in MODULES}
    assert "omnibus.core.routing.trie" in names
    assert "omnibus.storage.log" in names
    assert "omnibus.core" in names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_import_direction(path: pathlib.Path):
    module = module_name(path)
    assert violations(path.read_text(encoding="utf-8"), module, path.name == "__init__.py") == []


# -- the checker itself ----------------------------------------------------------------------------


def test_resolve_relative_imports():
    assert resolve("omnibus.core.queues", False, 1, "messages") == "omnibus.core.messages"
    assert resolve("omnibus.core.routing.trie", False, 2, "clock") == "omnibus.core.clock"
    assert resolve("omnibus.core.routing.trie", False, 3, "server") == "omnibus.server"
    assert resolve("omnibus.core", True, 1, "queues") == "omnibus.core.queues"
    assert resolve("omnibus.core.routing", True, 2, None) == "omnibus.core"
    with pytest.raises(ValueError):
        resolve("omnibus.core", True, 3, "x")


@pytest.mark.parametrize(
    "module,source,bad",
    [
        ("omnibus.core.x", "from omnibus.server import app", True),
        ("omnibus.core.x", "from ..server import app", True),
        ("omnibus.core.routing.x", "from ...server import app", True),
        ("omnibus.core.routing.x", "from ... import server", True),
        ("omnibus.core.x", "def f():\n    import asyncio", True),
        ("omnibus.core.x", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    from omnibus.wire import amqp", True),
        ("omnibus.core.x", "import importlib\nimportlib.import_module('omnibus.http')", True),
        ("omnibus.core.x", "import omnibus", True),
        ("omnibus.core.x", "from omnibus.storage.log import Log\nfrom . import clock", False),
        ("omnibus.core.routing.x", "from ..messages import Message\nfrom .trie import SubjectTrie", False),
        ("omnibus.storage.x", "from omnibus.core import clock", True),
        ("omnibus.storage.x", "from .log import Log\nimport sqlite3", False),
        ("omnibus.wire.amqp.frames", "import socket", True),
        ("omnibus.wire.amqp.frames", "from .._common.buffer import Buffer", False),
        ("omnibus.wire.amqp.frames", "from ...storage import records", True),
        ("omnibus.server.app", "import asyncio\nfrom omnibus.core import queues", False),
    ],
)
def test_checker_catches_violations(module, source, bad):
    assert bool(violations(source, module, False)) is bad
