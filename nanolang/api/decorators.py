"""The Python decorator API: a function over a state ``s`` traced once into the same AST.

``@nl.program`` calls the function with a tracing state and symbolic arguments; every
``s += ...`` appends statements, ``s["name"]`` reads a variable, and the return value becomes
``return``. The result is a checked ``Program`` identical to one parsed from a .nano file, so it
compiles to the same graph and runs on the same executor. Python control flow cannot depend on
generated values (they do not exist while tracing): using one as a bool or str is an error.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nanolang.api.program import Program
from nanolang.check.checker import check_or_raise
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoCheckError, Span


def _caller_span(depth: int = 2) -> Span:
    frame = sys._getframe(depth)
    code = frame.f_code
    column = 1
    positions = list(code.co_positions())
    index = frame.f_lasti // 2
    if 0 <= index < len(positions) and positions[index][2] is not None:
        column = positions[index][2] + 1  # type: ignore[operator]
    return Span(code.co_filename, frame.f_lineno, column)


class Value:
    """A symbolic nanolang value while tracing (a variable, a formatted string, ...)."""

    def __init__(self, expr: tree.Expr) -> None:
        self.expr = expr

    def __bool__(self) -> bool:
        raise TypeError(
            "a nanolang value is not known while tracing; Python if/while cannot use it"
        )

    def __str__(self) -> str:
        raise TypeError("a nanolang value is not known while tracing; use nl.fmt to build text")

    __format__ = None  # type: ignore[assignment]


class Pieces:
    """Statements to append with ``s += ...``; ``+`` concatenates them (and strings)."""

    def __init__(self, stmts: tuple[tree.Stmt, ...]) -> None:
        self.stmts = stmts

    def __add__(self, other: Any) -> Pieces:
        return Pieces(self.stmts + as_stmts(other, _caller_span()))

    def __radd__(self, other: Any) -> Pieces:
        return Pieces(as_stmts(other, _caller_span()) + self.stmts)


def to_expr(value: Any, span: Span) -> tree.Expr:
    """A Python literal or a traced Value as an expression."""
    if isinstance(value, Value):
        return value.expr
    if isinstance(value, bool):
        return tree.Bool(value, span)
    if isinstance(value, (int, float)):
        return tree.Num(value, span)
    if isinstance(value, str):
        return tree.Str((value,) if value else (), span)
    if isinstance(value, (list, tuple)):
        return tree.ListLit(tuple(to_expr(v, span) for v in value), span)
    if isinstance(value, dict):
        fields = tuple(tree.Field(str(k), to_expr(v, span), span) for k, v in value.items())
        return tree.Record(fields, span)
    raise TypeError(f"cannot use {type(value).__name__} in a nanolang program")


def as_stmts(item: Any, span: Span) -> tuple[tree.Stmt, ...]:
    if isinstance(item, Pieces):
        return item.stmts
    if isinstance(item, (list, tuple)):
        return tuple(s for i in item for s in as_stmts(i, span))
    expr = to_expr(item, span)
    text = expr if isinstance(expr, tree.Str) else tree.Str((expr,), span)
    return (tree.Text(text, span),)


class State:
    """The ``s`` of a traced program."""

    def __init__(self) -> None:
        self.body: list[tree.Stmt] = []

    def __iadd__(self, item: Any) -> State:
        self.body.extend(as_stmts(item, _caller_span()))
        return self

    def __getitem__(self, name: str) -> Value:
        return Value(tree.Var(name, _caller_span()))

    def __setitem__(self, name: str, value: Any) -> None:
        """``s["x"] = value`` is ``let x = value``."""
        span = _caller_span()
        self.body.append(tree.Let(name, to_expr(value, span), span))

    def fork(self, count: Any) -> _Block:
        """``with s.fork(n):`` the statements inside run as ``n`` parallel branches."""
        span = _caller_span()
        return _Block(self, lambda body: tree.Fork(to_expr(count, span), body, span))

    def loop(self, name: str, items: Any) -> _Block:
        """``with s.loop("x", xs) as x:`` the statements inside run once per item."""
        span = _caller_span()
        block = _Block(self, lambda body: tree.For(name, to_expr(items, span), body, span))
        block.value = Value(tree.Var(name, span))
        return block


class _Block:
    """Collects the statements of a ``with`` body into one fork or for statement."""

    def __init__(self, state: State, make: Callable[[tuple[tree.Stmt, ...]], tree.Stmt]) -> None:
        self.state = state
        self.make = make
        self.value: Value | None = None
        self.outer: list[tree.Stmt] = []

    def __enter__(self) -> Value | None:
        self.outer, self.state.body = self.state.body, []
        return self.value

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        inner, self.state.body = self.state.body, self.outer
        if exc_type is None:
            self.state.body.append(self.make(tuple(inner)))


def _role(role: str) -> Callable[..., Pieces]:
    def build(*content: Any) -> Pieces:
        span = _caller_span()
        return Pieces((tree.Role(role, as_stmts(list(content), span), span),))

    build.__name__ = role
    build.__doc__ = f"A {role} message holding ``content`` (text, values, gen, select)."
    return build


system, user, assistant = _role("system"), _role("user"), _role("assistant")


def _args(kwargs: dict[str, Any], span: Span) -> tuple[tree.Arg, ...]:
    return tuple(tree.Arg(k, to_expr(v, span), span) for k, v in kwargs.items() if v is not None)


def gen(name: str, **kwargs: Any) -> Pieces:
    """``gen name(kwargs)``: generate text into variable ``name`` (a dict schema becomes JSON)."""
    span = _caller_span()
    if isinstance(kwargs.get("json_schema"), dict):
        kwargs["json_schema"] = json.dumps(kwargs["json_schema"])
    return Pieces((tree.Gen(name, _args(kwargs, span), span),))


def select(name: str, choices: Any, method: str | None = None) -> Pieces:
    """``select name(method = ...) from choices``."""
    span = _caller_span()
    return Pieces(
        (tree.Select(name, _args({"method": method}, span), to_expr(choices, span), span),)
    )


_callees: list[Program] = []


def call(target: Program, **args: Any) -> Value:
    """``call target(args)``: run another program (its module joins this one's)."""
    span = _caller_span()
    _callees.append(target)
    return Value(tree.Call(target.name, _args(args, span), span))


def func(name: str, *args: Any) -> Value:
    """A built-in function call, e.g. ``nl.func("len", s["xs"])``."""
    span = _caller_span()
    return Value(tree.Func(name, tuple(to_expr(a, span) for a in args), span))


def join(items: Any, sep: str = "") -> Value:
    """``join(items, sep)``."""
    span = _caller_span()
    return Value(tree.Func("join", (to_expr(items, span), to_expr(sep, span)), span))


def fmt(template: str, **values: Any) -> Value:
    """A string with ``{name}`` holes filled from ``values`` (``{{``/``}}`` escape braces)."""
    span = _caller_span()
    parts: list[str | tree.Expr] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if template.startswith("{{", i) or template.startswith("}}", i):
            _push(parts, ch)
            i += 2
        elif ch == "{":
            end = template.find("}", i)
            name = template[i + 1 : end] if end > 0 else ""
            if name not in values:
                raise NanoCheckError(f"nl.fmt: no value for hole {{{name}}}", span)
            expr = to_expr(values[name], span)
            _push(parts, expr.constant if isinstance(expr, tree.Str) and expr.is_constant else expr)
            i = end + 1
        else:
            _push(parts, ch)
            i += 1
    return Value(tree.Str(tuple(parts), span))


def _push(parts: list[str | tree.Expr], piece: str | tree.Expr) -> None:
    if isinstance(piece, str) and parts and isinstance(parts[-1], str):
        parts[-1] += piece
    elif piece != "":
        parts.append(piece)


def program(fn: Callable[..., Any]) -> Program:
    """Trace ``fn(s, *params)`` into a checked Program (see the module docstring)."""
    signature = inspect.signature(fn)
    names = list(signature.parameters)[1:]
    span = Span(fn.__code__.co_filename, fn.__code__.co_firstlineno, 1)
    params = []
    for name in names:
        default = signature.parameters[name].default
        value = None if default is inspect.Parameter.empty else to_expr(default, span)
        params.append(tree.Param(name, value, span))
    state = State()
    first_callee = len(_callees)
    try:
        result = fn(state, *(Value(tree.Var(n, span)) for n in names))
        callees = _callees[first_callee:]
    finally:
        del _callees[first_callee:]
    body = list(state.body)
    if result is not None:
        body.append(tree.Return(to_expr(result, span), span))
    definition = tree.ProgramDef(fn.__name__, tuple(params), tuple(body), span)
    programs = _with_callees(definition, callees)
    module = tree.Module(programs, span.file, _read(span.file))
    check_or_raise(module)
    return Program(module, fn.__name__)


def _with_callees(
    definition: tree.ProgramDef, callees: list[Program]
) -> tuple[tree.ProgramDef, ...]:
    """This program, then every program the callees' modules hold (each name once)."""
    programs = {definition.name: definition}
    for callee in callees:
        for other in callee.module.programs:
            known = programs.setdefault(other.name, other)
            if known is not other and known != other:
                raise NanoCheckError(f"two different programs are named {other.name!r}", other.span)
    return tuple(programs.values())


def _read(file: str) -> str | None:
    path = Path(file)
    return path.read_text(encoding="utf-8") if path.is_file() else None
