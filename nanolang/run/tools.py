"""Host tools: Python functions a run provides for the ``tool`` declarations of a module."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nanolang.syntax import tree
from nanolang.syntax.errors import NanoRuntimeError

Tools = dict[str, Callable[..., Any]]


def as_tools(
    tools: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] | None,
) -> Tools:
    """A name -> function dict from a dict or a list of functions (named by ``__name__``)."""
    if tools is None:
        return {}
    if isinstance(tools, Mapping):
        return dict(tools)
    return {fn.__name__: fn for fn in tools}


def check_tools(module: tree.Module, tools: Tools) -> None:
    """Every declared tool has a function that accepts its arguments; raised before any
    request is sent."""
    for decl in module.tools:
        fn = tools.get(decl.name)
        if fn is None:
            given = ", ".join(sorted(tools)) or "none"
            raise NanoRuntimeError(
                f"tool {decl.name!r} is declared but the run was given no function for it "
                f"(tools given: {given})",
                decl.span,
            )
        try:
            inspect.signature(fn).bind(*decl.params)
        except TypeError as exc:
            raise NanoRuntimeError(
                f"tool {decl.name}({', '.join(decl.params)}) does not match the Python "
                f"function {fn.__name__}: {exc}",
                decl.span,
            ) from None
        except ValueError:  # a builtin without a signature: accepted as is
            continue
