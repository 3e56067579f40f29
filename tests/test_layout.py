"""The source layout's rules: every package says what it is for, no module is named like a
standard-library module, and no two modules import each other (directly or round a circle)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nanolang", "runtime", "kernels")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports anywhere (top level, functions, TYPE_CHECKING)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # ``from package import module`` imports the module
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in known else node.module)
    return {name for name in names if name in known}


def test_every_package_says_what_it_is_for() -> None:
    for package in PACKAGES:
        for init in (ROOT / package).rglob("__init__.py"):
            doc = ast.get_docstring(ast.parse(init.read_text()))
            assert doc, f"{init.relative_to(ROOT)} has no docstring"


def test_no_module_is_named_like_a_standard_library_module() -> None:
    clashes = [
        str(path.relative_to(ROOT))
        for name, path in modules().items()
        if name.rpartition(".")[2] in sys.stdlib_module_names
    ]
    assert clashes == []


def test_no_import_circles() -> None:
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    circles = []
    for start in graph:  # a depth-first walk from each module back to itself
        stack, seen = [(start, (start,))], set()
        while stack:
            name, trail = stack.pop()
            for dep in graph[name]:
                if dep == start:
                    circles.append(" -> ".join((*trail, start)))
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, (*trail, dep)))
    assert circles == []
