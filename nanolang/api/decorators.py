"""The Python decorator API: a function over a state ``s`` traced once into the same AST.

``@nl.program`` calls the function with a tracing state and symbolic arguments; every
``s += ...`` appends statements, ``s["name"]`` reads a variable, and the return value becomes
``return``. The result is a checked ``Program`` identical to one parsed from a .nano file, so it
compiles to the same graph and runs on the same executor. Python control flow cannot depend on
generated values (they do not exist while tracing): using one as a bool or str is an error.
"""

from __future__ import annotations

import inspect
import itertools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanolang.api.current import current_state, live_factory
from nanolang.api.program import Program
from nanolang.check.checker import check_or_raise
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoCheckError, Span
from nanolang.values.functions import BUILTINS


def caller_span(depth: int = 2) -> Span:
    """Where the code calling our caller is (``depth`` frames up): spans point at user code."""
    frame = sys._getframe(depth)
    code = frame.f_code
    column = 1
    positions = list(code.co_positions())
    index = frame.f_lasti // 2
    if 0 <= index < len(positions) and positions[index][2] is not None:
        column = positions[index][2] + 1  # type: ignore[operator]
    return Span(code.co_filename, frame.f_lineno, column)


class UntraceableError(TypeError):
    """Python control flow or formatting needs a generated value, which tracing does not have."""


def _untraceable(what: str) -> UntraceableError:
    return UntraceableError(
        f"{what} needs the value itself, which is not known while tracing a static graph "
        f"(at {caller_span(3)})"
    )


class Value:
    """A symbolic nanolang value while tracing (a variable, a formatted string, ...).

    Operators build expressions (``s["x"] == "a"`` is the expression ``x == "a"``); anything
    that needs the value itself (``if``, ``while``, ``in``, ``str()``, f-strings, ``len``,
    iteration) raises ``UntraceableError`` at once, never a silent guess."""

    def __init__(self, expr: tree.Expr) -> None:
        self.expr = expr

    def _op(self, op: str, other: Any, reverse: bool = False) -> Any:
        if isinstance(other, Pieces):
            return NotImplemented
        span = caller_span(3)
        left, right = self.expr, to_expr(other, span)
        if reverse:
            left, right = right, left
        return Value(tree.BinOp(op, left, right, span))

    def __eq__(self, other: object) -> Value:  # type: ignore[override]
        return self._op("==", other)

    def __ne__(self, other: object) -> Value:  # type: ignore[override]
        return self._op("!=", other)

    def __lt__(self, other: Any) -> Value:
        return self._op("<", other)

    def __gt__(self, other: Any) -> Value:
        return self._op(">", other)

    def __le__(self, other: Any) -> Value:
        return self._op("<=", other)

    def __ge__(self, other: Any) -> Value:
        return self._op(">=", other)

    def __add__(self, other: Any) -> Value:
        return self._op("+", other)

    def __radd__(self, other: Any) -> Value:
        return self._op("+", other, reverse=True)

    def __sub__(self, other: Any) -> Value:
        return self._op("-", other)

    def __rsub__(self, other: Any) -> Value:
        return self._op("-", other, reverse=True)

    def __mul__(self, other: Any) -> Value:
        return self._op("*", other)

    def __rmul__(self, other: Any) -> Value:
        return self._op("*", other, reverse=True)

    def __truediv__(self, other: Any) -> Value:
        return self._op("/", other)

    def __rtruediv__(self, other: Any) -> Value:
        return self._op("/", other, reverse=True)

    def __neg__(self) -> Value:  # -x, as in a .nano file: 0 - x
        span = caller_span()
        return Value(tree.BinOp("-", tree.Num(0, span), self.expr, span))

    def __getitem__(self, key: Any) -> Value:
        span = caller_span()
        return Value(tree.Index(self.expr, to_expr(key, span), span))

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise _untraceable("a Python if/while/and/or/not on a nanolang value")

    def __contains__(self, item: Any) -> bool:
        raise _untraceable("'in' on a nanolang value")

    def __iter__(self) -> Any:
        raise _untraceable("iterating over a nanolang value")

    def __len__(self) -> int:
        raise _untraceable("len() of a nanolang value")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise _untraceable(f"the Python attribute .{name} of a nanolang value")

    def __index__(self) -> int:
        raise _untraceable("a nanolang value as a Python integer (range, indexing)")

    def __int__(self) -> int:
        raise _untraceable("int() of a nanolang value")

    def __float__(self) -> float:
        raise _untraceable("float() of a nanolang value")

    def __str__(self) -> str:
        raise _untraceable("str() of a nanolang value (use nl.fmt to build text)")

    def __format__(self, spec: str) -> str:
        raise _untraceable("an f-string over a nanolang value (use nl.fmt to build text)")


class Pieces:
    """Statements to append with ``s += ...``; ``+`` concatenates them (and strings)."""

    def __init__(self, stmts: tuple[tree.Stmt, ...]) -> None:
        self.stmts = stmts

    def __add__(self, other: Any) -> Pieces:
        return Pieces(self.stmts + as_stmts(other, caller_span()))

    def __radd__(self, other: Any) -> Pieces:
        return Pieces(as_stmts(other, caller_span()) + self.stmts)


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


@dataclass(frozen=True)
class RoleMark:
    """``nl.assistant_begin()`` / ``nl.assistant_end()`` (also user, system): SGLang's open
    turn. Appended on its own (``s += nl.assistant_begin()``); the program then runs with real
    values, the turn staying open (gens and forks continue it) until its ``_end()``."""

    role: str
    begin: bool
    span: Span

    def label(self) -> str:
        return f"nl.{self.role}_{'begin' if self.begin else 'end'}()"

    def __add__(self, other: Any) -> Any:
        raise TypeError(f"{self.label()} is appended on its own: s += {self.label()}")

    __radd__ = __add__


def _role_mark(role: str, begin: bool) -> Callable[[], RoleMark]:
    def make() -> RoleMark:
        return RoleMark(role, begin, caller_span())

    make.__name__ = f"{role}_{'begin' if begin else 'end'}"
    return make


user_begin, user_end = _role_mark("user", True), _role_mark("user", False)
system_begin, system_end = _role_mark("system", True), _role_mark("system", False)
assistant_begin, assistant_end = _role_mark("assistant", True), _role_mark("assistant", False)


def as_stmts(item: Any, span: Span) -> tuple[tree.Stmt, ...]:
    if isinstance(item, RoleMark):
        raise TypeError(f"{item.label()} is appended on its own: s += {item.label()}")
    if isinstance(item, Pieces):
        return item.stmts
    if not isinstance(item, Value) and hasattr(item, "pieces"):  # s.user("...") as a value
        return item.pieces().stmts  # type: ignore[no-any-return]
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
        if isinstance(item, RoleMark):  # an open turn across Python statements: run for real
            raise _untraceable(item.label())
        self.body.extend(as_stmts(item, caller_span()))
        return self

    def __getitem__(self, name: str) -> Value:
        return Value(tree.Var(name, caller_span()))

    def __setitem__(self, name: str, value: Any) -> None:
        """``s["x"] = value`` is ``let x = value``."""
        span = caller_span()
        self.body.append(tree.Let(name, to_expr(value, span), span))

    def fork(self, count: Any, index: str | None = None) -> _ForkBlock:
        """``with s.fork(n):`` the statements inside run as ``n`` parallel branches (``index``
        names the branch number inside them). ``forks = s.fork(n)`` with per-branch Python
        code cannot be traced: the program then runs with real values."""
        span = caller_span()
        return _ForkBlock(
            self, lambda body: tree.Fork(to_expr(count, span), body, span, index=index)
        )

    def user(self, *content: Any) -> _RoleBlock:
        return _RoleBlock(self, "user", content, caller_span())

    def system(self, *content: Any) -> _RoleBlock:
        return _RoleBlock(self, "system", content, caller_span())

    def assistant(self, *content: Any) -> _RoleBlock:
        return _RoleBlock(self, "assistant", content, caller_span())

    def var_scope(self, name: str) -> _Block:
        """``with s.var_scope("x"):`` is ``capture x { ... }``: ``x`` binds to the text
        appended inside the block."""
        span = caller_span()
        return _Block(self, lambda body: tree.Capture(name, body, span))

    def text(self) -> str:
        raise _untraceable("s.text()")

    def messages(self) -> list[dict[str, str]]:
        raise _untraceable("s.messages()")

    def get_meta_info(self, name: str) -> dict[str, Any]:
        raise _untraceable("s.get_meta_info()")

    def loop(self, name: str, items: Any) -> _Block:
        """``with s.loop("x", xs) as x:`` the statements inside run once per item."""
        span = caller_span()
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


class _ForkBlock(_Block):
    """``with s.fork(n):`` traces; the SGLang list form (``forks[i] += ...``) does not."""

    def _list_form(self, *_: Any) -> Any:
        raise _untraceable("the fork list form (forks[i], forks += ..., forks.join())")

    __getitem__ = __iter__ = __len__ = __iadd__ = join = _list_form


class _RoleBlock:
    """``s += s.user("...")`` or ``with s.user(): s += ...`` while tracing."""

    def __init__(self, state: State, role: str, content: tuple[Any, ...], span: Span) -> None:
        self.state, self.role, self.content, self.span = state, role, content, span
        self.outer: list[tree.Stmt] = []

    def pieces(self) -> Pieces:
        stmts = as_stmts(list(self.content), self.span)
        return Pieces((tree.Role(self.role, stmts, self.span),))

    def __enter__(self) -> None:
        self.outer, self.state.body = self.state.body, list(as_stmts(list(self.content), self.span))

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        inner, self.state.body = self.state.body, self.outer
        if exc_type is None:
            self.state.body.append(tree.Role(self.role, tuple(inner), self.span))


def _role(role: str) -> Callable[..., Pieces]:
    def build(*content: Any) -> Pieces:
        span = caller_span()
        return Pieces((tree.Role(role, as_stmts(list(content), span), span),))

    build.__name__ = role
    build.__doc__ = f"A {role} message holding ``content`` (text, values, gen, select)."
    return build


system, user, assistant = _role("system"), _role("user"), _role("assistant")


def _args(kwargs: dict[str, Any], span: Span) -> tuple[tree.Arg, ...]:
    return tuple(tree.Arg(k, to_expr(v, span), span) for k, v in kwargs.items() if v is not None)


_anonymous = itertools.count()
_DTYPES = {int: "int", float: "float", bool: "bool", str: "str"}


def _name(name: str | None) -> str:
    return name if name is not None else f"_gen{next(_anonymous)}"


def gen(name: str | None = None, *positional: Any, **kwargs: Any) -> Pieces:
    """``gen name(kwargs)``: generate text into variable ``name`` (SGLang's signature: the
    name may be omitted, ``max_tokens`` may be positional, ``max_new_tokens`` is an alias,
    ``choices=`` makes it a select, ``dtype`` is int/float/bool/str or its name; a dict schema
    becomes JSON)."""
    span = caller_span()
    if kwargs.get("choices") is not None:
        method = kwargs.get("choices_method")
        return Pieces((_select_stmt(_name(name), kwargs["choices"], method, span),))
    kwargs.pop("choices", None)
    if positional:  # SGLang's gen(name, max_tokens, ...)
        kwargs = {"max_tokens": positional[0], **kwargs}
    if "max_new_tokens" in kwargs:
        kwargs["max_tokens"] = kwargs.pop("max_new_tokens")
    if "dtype" in kwargs:
        kwargs["dtype"] = _DTYPES.get(kwargs["dtype"], kwargs["dtype"])
    if isinstance(kwargs.get("json_schema"), dict):
        kwargs["json_schema"] = json.dumps(kwargs["json_schema"])
    return Pieces((tree.Gen(_name(name), _args(kwargs, span), span),))


def gen_int(name: str | None = None, **kwargs: Any) -> Pieces:
    """``gen name(dtype = "int")``."""
    return gen(name, dtype="int", **kwargs)


def gen_string(name: str | None = None, **kwargs: Any) -> Pieces:
    """``gen name(dtype = "str")``: a JSON string literal."""
    return gen(name, dtype="str", **kwargs)


def select(
    name: str | None = None,
    choices: Any = None,
    method: str | None = None,
    temperature: float | None = None,
    choices_method: str | None = None,
) -> Pieces:
    """``select name(method = ...) from choices`` (``choices_method`` is SGLang's spelling)."""
    span = caller_span()
    if choices is None:
        raise TypeError("select needs choices")
    return Pieces((_select_stmt(_name(name), choices, method or choices_method, span),))


def _select_stmt(name: str, choices: Any, method: Any, span: Span) -> tree.Select:
    if method is not None and not isinstance(method, str):
        method = getattr(method, "name", None) or type(method).__name__
    return tree.Select(name, _args({"method": method}, span), to_expr(choices, span), span)


def image(*_: Any, **__: Any) -> Pieces:
    """Images are refused: the runtime has no vision model."""
    raise NotImplementedError(
        "images are not supported: nanolang's runtime serves text-only models (no vision model)"
    )


def video(*_: Any, **__: Any) -> Pieces:
    """Video is refused: the runtime has no vision model."""
    raise NotImplementedError(
        "video is not supported: nanolang's runtime serves text-only models (no vision model)"
    )


_callees: list[Program] = []


def call(target: Program, **args: Any) -> Any:
    """``call target(args)``: run another program (its module joins this one's). In a program
    running with real values, the call runs now and gives its value."""
    state = current_state()
    if state is not None:
        return state.call(target, args)
    span = caller_span()
    _callees.append(target)
    return Value(tree.Call(target.name, _args(args, span), span))


def func(name: str, *args: Any) -> Any:
    """A built-in function call, e.g. ``nl.func("len", s["xs"])`` (on real values: now)."""
    span = caller_span()
    if not any(isinstance(a, Value) for a in args) and name in BUILTINS:
        return BUILTINS[name].fn(*args)
    return Value(tree.Func(name, tuple(to_expr(a, span) for a in args), span))


def join(items: Any, sep: str = "") -> Any:
    """``join(items, sep)`` (on real values: now)."""
    span = caller_span()
    if not isinstance(items, Value) and not isinstance(sep, Value):
        return BUILTINS["join"].fn(list(items), sep)
    return Value(tree.Func("join", (to_expr(items, span), to_expr(sep, span)), span))


def fmt(template: str, **values: Any) -> Any:
    """A string with ``{name}`` holes filled from ``values`` (``{{``/``}}`` escape braces)."""
    span = caller_span()
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
    if all(isinstance(p, str) for p in parts):  # every value is known: plain text
        return "".join(parts)  # type: ignore[arg-type]
    return Value(tree.Str(tuple(parts), span))


def _push(parts: list[str | tree.Expr], piece: str | tree.Expr) -> None:
    if isinstance(piece, str) and parts and isinstance(parts[-1], str):
        parts[-1] += piece
    elif piece != "":
        parts.append(piece)


def program(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Trace ``fn(s, *params)`` into a checked Program (see the module docstring). When the
    function needs generated values themselves (a Python ``if`` on one, an f-string, the fork
    list form), it cannot be traced: the Program then runs the function once per instance with
    real values (``nanolang.api.live``), and ``graph()`` says why there is no static graph.
    ``@nl.program(...)`` with keyword options is refused clearly for the options SGLang has
    and nanolang does not (``num_api_spec_tokens``: API speculative execution)."""
    if fn is None:
        if options:
            raise NotImplementedError(
                f"@nl.program options {sorted(options)} are not supported "
                "(API speculative execution is out of scope)"
            )
        return program
    try:
        return _trace(fn)
    except UntraceableError as exc:
        return live_factory[0](fn, str(exc))  # registered by nanolang.api.live


function = program  # SGLang's spelling: @sgl.function


def _trace(fn: Callable[..., Any]) -> Program:
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
