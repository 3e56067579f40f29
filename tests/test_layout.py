"""The source layout's rules (docs/architecture.md, Layout): every package says what it is for, no
module is named like a standard-library module, no two modules import each other (directly or
round a circle), and nanolang's stages import only the stages below them."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nanolang", "runtime", "kernels")
# nanolang's stages, top first (as drawn in docs/architecture.md); demo/ stands aside
STAGES = {
    "cli": 0,
    "server": 1,
    "jobs": 1,
    "bench": 1,
    "api": 2,
    "graph": 3,
    "run": 4,
    "check": 5,
    "values": 6,
    "syntax": 7,
    "backends": 8,
}


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


def stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.get(parts[1]) if parts[0] == "nanolang" and len(parts) > 2 else None


def test_nanolang_stages_import_only_stages_below() -> None:
    known = modules()
    assert {m.split(".")[1] for m in known if stage(m) is not None} == set(STAGES)
    upward = [
        f"{name} -> {dep}"
        for name, path in known.items()
        for dep in imports(path, known)
        if (mine := stage(name)) is not None
        and (theirs := stage(dep)) is not None
        and theirs < mine
    ]
    assert upward == []
