"""The house's layering: nothing points upward, and no module imports itself in a circle.

Every ``import`` in the shipped packages (including those inside functions)
is read with :mod:`ast`. The core (``vtoken``) depends on nothing of ours;
the token (``firmware_sim``) and the validator never see each other, a
transport, a server or the CLI; the edges depend on the core, never the
reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: Package -> the packages of ours it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "vtoken": set(),
    "firmware_sim": {"vtoken"},
    "validator": {"vtoken"},
    "vserial": {"vtoken", "firmware_sim"},
    "portal": {"vtoken", "validator"},
    "server": {"vtoken", "validator", "portal"},
    "loadgen": {"vtoken", "firmware_sim", "validator"},
    "host": {"vtoken", "firmware_sim", "validator", "vserial", "portal", "server", "loadgen"},
}
OURS = set(ALLOWED) | {"bench", "tests"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The modules of ours ``path`` imports (resolved relative imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in OURS}


def _sources() -> list[Path]:
    return sorted(path for package in ALLOWED for path in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_nothing_points_upward(path: Path) -> None:
    package = path.relative_to(REPO).parts[0]
    used = {name.split(".")[0] for name in _imports(path, top_level_only=False)} - {package}
    assert used <= ALLOWED[package], f"{package} may not import {sorted(used - ALLOWED[package])}"


def test_no_module_imports_itself_in_a_circle() -> None:
    modules = {_module_name(path): path for path in _sources()}
    graph = {
        name: {target for target in _imports(path, top_level_only=True) if target in modules and target != name}
        for name, path in modules.items()
    }
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert len(state) == len(modules) > 50
