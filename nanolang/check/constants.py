"""Compile-time evaluation of literal expressions (for static argument and choice checks)."""

from __future__ import annotations

from typing import Any

from nanolang.syntax import tree

UNKNOWN = object()


def constant(expr: tree.Expr | None) -> Any:
    """The value of a literal expression, or ``UNKNOWN`` if it depends on run-time values."""
    if isinstance(expr, (tree.Num, tree.Bool)):
        return expr.value
    if isinstance(expr, tree.Str):
        return expr.constant if expr.is_constant else UNKNOWN
    if isinstance(expr, tree.ListLit):
        items = [constant(i) for i in expr.items]
        return UNKNOWN if any(i is UNKNOWN for i in items) else items
    return UNKNOWN
