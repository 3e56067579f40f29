"""Binding a program's arguments: defaults filled in, unknown or missing ones reported."""

from __future__ import annotations

from typing import Any

from nanolang.check.constants import constant
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoRuntimeError, Span
from nanolang.values.kinds import is_value, normalise


def _default(param: tree.Param) -> Any:
    return constant(param.default)


def bind_args(
    program: tree.ProgramDef, args: dict[str, Any], span: Span | None = None
) -> dict[str, Any]:
    """``args`` with defaults filled in; missing, unknown or non-value ones are errors."""
    where = span or program.span
    names = [p.name for p in program.params]
    unknown = [k for k in args if k not in names]
    if unknown:
        raise NanoRuntimeError(
            f"{program.name}() got unknown argument(s) {', '.join(unknown)}; "
            f"expected {', '.join(names) or 'none'}",
            where,
        )
    missing = [p.name for p in program.params if p.default is None and p.name not in args]
    if missing:
        raise NanoRuntimeError(
            f"{program.name}() is missing argument(s): {', '.join(missing)}", where
        )
    bound = {}
    for param in program.params:
        value = args[param.name] if param.name in args else _default(param)
        if not is_value(value):
            raise NanoRuntimeError(
                f"argument {param.name!r} is not a nanolang value: {value!r}", where
            )
        bound[param.name] = normalise(value)
    return bound
