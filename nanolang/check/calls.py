"""Checks of ``call PROGRAM(args)``: known program, argument names, and no recursion."""

from __future__ import annotations

from nanolang.syntax import tree
from nanolang.syntax.errors import Span


def call_errors(module: tree.Module, call: tree.Call) -> list[tuple[str, Span]]:
    """Problems of one call site: unknown program, unknown, duplicate or missing arguments."""
    target = module.get(call.program)
    if target is None:
        known = ", ".join(p.name for p in module.programs) or "none"
        return [(f"unknown program {call.program!r}; programs in this file: {known}", call.span)]
    params = {p.name: p for p in target.params}
    errors: list[tuple[str, Span]] = []
    given: set[str] = set()
    for arg in call.args:
        if arg.name not in params:
            errors.append(
                (
                    f"{call.program}() has no parameter {arg.name!r}; expected {_names(target)}",
                    arg.span,
                )
            )
        elif arg.name in given:
            errors.append((f"duplicate argument {arg.name!r}", arg.span))
        given.add(arg.name)
    missing = [p.name for p in target.params if p.default is None and p.name not in given]
    if missing:
        errors.append(
            (f"call of {call.program}() misses argument(s): {', '.join(missing)}", call.span)
        )
    return errors


def _names(program: tree.ProgramDef) -> str:
    return ", ".join(p.name for p in program.params) or "no arguments"


def calls_in(body: tuple[tree.Stmt, ...]) -> list[tree.Call]:
    """Every call expression in ``body``, in source order."""
    found: list[tree.Call] = []
    for stmt in body:
        for node in _walk_stmt(stmt):
            if isinstance(node, tree.Call):
                found.append(node)
    return found


def walk(expr: tree.Expr) -> list[object]:
    """``expr`` and every node below it."""
    return _walk_value(expr)


def _walk_stmt(stmt: tree.Stmt) -> list[object]:
    nodes: list[object] = []
    for value in vars(stmt).values():
        nodes.extend(_walk_value(value))
    return nodes


def _walk_value(value: object) -> list[object]:
    if isinstance(value, tuple):
        return [n for v in value for n in _walk_value(v)]
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, Span):
        return [value, *(n for v in vars(value).values() for n in _walk_value(v))]
    return []


def recursion_errors(module: tree.Module) -> list[tuple[str, Span]]:
    """A call that can reach its own program again (programs must terminate)."""
    edges = {p.name: calls_in(p.body) for p in module.programs}
    errors: list[tuple[str, Span]] = []
    for program in module.programs:
        for call in edges[program.name]:
            if _reaches(edges, call.program, program.name, set()):
                errors.append(
                    (f"recursive call of {call.program!r} (programs may not recurse)", call.span)
                )
    return errors


def _reaches(edges: dict[str, list[tree.Call]], start: str, goal: str, seen: set[str]) -> bool:
    if start == goal:
        return True
    if start in seen or start not in edges:
        return False
    seen.add(start)
    return any(_reaches(edges, c.program, goal, seen) for c in edges[start])
