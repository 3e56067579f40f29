"""Host tools: Python functions a run provides for the ``tool`` declarations of a module."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
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


def tools_from_source(source: str, filename: str, module: tree.Module) -> Tools:
    """The functions of a Python file's text named like ``module``'s tool declarations (the
    host's code: a ``.nano`` file names tools, the host says what they run)."""
    host = types.ModuleType("nanolang_tools")
    host.__file__ = filename
    try:
        exec(compile(source, filename, "exec"), host.__dict__)  # the host's own tools file
    except SyntaxError as exc:
        where = f"{exc.filename or filename}:{exc.lineno or 0}:{exc.offset or 0}"
        raise ValueError(f"{where}: the tools file does not parse: {exc.msg}") from None
    except Exception as exc:
        raise ValueError(f"the tools file {filename} failed to load: {exc!r}") from exc
    namespace = host.__dict__
    return {t.name: namespace[t.name] for t in module.tools if callable(namespace.get(t.name))}


def load_tools(path: str | None, module: tree.Module) -> Tools:
    """``tools_from_source`` of the file at ``path`` (no tools without one)."""
    if path is None:
        return {}
    return tools_from_source(read_tools(path), str(path), module)


def read_tools(path: str) -> str:
    """The text of the tools file at ``path`` (a ValueError saying why it cannot be read)."""
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read tools from {path}: {exc}") from None


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
