"""The nanolang syntax tree: frozen dataclasses, each carrying its source span."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nanolang.syntax.errors import Span

# expressions


@dataclass(frozen=True)
class Str:
    """A string literal; ``parts`` alternate plain text and interpolated expressions."""

    parts: tuple[str | Expr, ...]
    span: Span

    @property
    def is_constant(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    @property
    def constant(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))


@dataclass(frozen=True)
class Num:
    """A number literal (int or float)."""

    value: int | float
    span: Span


@dataclass(frozen=True)
class Bool:
    """``true`` or ``false``."""

    value: bool
    span: Span


@dataclass(frozen=True)
class ListLit:
    """``[a, b, ...]``."""

    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Var:
    """A name: a parameter, or a variable bound by gen, select, let or for."""

    name: str
    span: Span


@dataclass(frozen=True)
class Index:
    """``target[index]``: a list item or a record field."""

    target: Expr
    index: Expr
    span: Span


@dataclass(frozen=True)
class Func:
    """A call of a built-in function (``len``, ``join``, ...)."""

    name: str
    args: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class BinOp:
    """``op`` is one of ``or and == != < > <= >= in not_in + -``."""

    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Not:
    """``not operand``."""

    operand: Expr
    span: Span


@dataclass(frozen=True)
class Arg:
    """``name = value`` in a call, gen or select."""

    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Call:
    """``call PROGRAM(args)``: runs another program in a fresh context."""

    program: str
    args: tuple[Arg, ...]
    span: Span


@dataclass(frozen=True)
class Field:
    """One ``name: value`` of a record (``{ name }`` is short for ``{ name: name }``)."""

    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Record:
    """``{ a, b: expr }``: only as the value of ``return``."""

    fields: tuple[Field, ...]
    span: Span


@dataclass(frozen=True)
class ToolCall:
    """``call tool NAME(args)``: a Python function the host registered under ``name``."""

    tool: str
    args: tuple[Expr, ...]
    span: Span


Expr = Str | Num | Bool | ListLit | Var | Index | Func | BinOp | Not | Call | Record | ToolCall

# statements


@dataclass(frozen=True)
class Text:
    """A string statement: appends its text to the context."""

    text: Str
    span: Span


@dataclass(frozen=True)
class Role:
    """``system|user|assistant`` with a body; the body renders as one chat message."""

    role: str
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Gen:
    """``gen name(args)``: one generation whose text binds to ``name``."""

    name: str
    args: tuple[Arg, ...]
    span: Span


@dataclass(frozen=True)
class Select:
    """``select name(args) from choices``: the most likely of ``choices`` binds to ``name``."""

    name: str
    args: tuple[Arg, ...]
    choices: Expr
    span: Span


@dataclass(frozen=True)
class Fork:
    """``fork COUNT [as INDEX] [concat] { body }``: ``index`` names the branch number (0-based)
    inside the body; ``concat`` appends each branch's new text to the context after the join."""

    count: Expr
    body: tuple[Stmt, ...]
    span: Span
    index: str | None = None
    concat: bool = False


@dataclass(frozen=True)
class For:
    """``for var in iterable { body }``: ``body`` once per item, in order."""

    var: str
    iterable: Expr
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class If:
    """``if cond { then } else { orelse }``."""

    cond: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class While:
    """``while COND { body }``: like ``for``, each variable bound in the body is the list of its
    per-iteration values afterwards; ``break`` ends the innermost loop."""

    cond: Expr
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Break:
    span: Span


@dataclass(frozen=True)
class Capture:
    """``capture NAME { body }`` (SGLang's ``var_scope``): the body runs in the current context
    and ``NAME`` binds to the text it appended."""

    name: str
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Let:
    """``let name = value``; a ``call`` value starts at once and is awaited where it is read."""

    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Return:
    """``return value``: the program's value."""

    value: Expr
    span: Span


Stmt = Text | Role | Gen | Select | Fork | For | If | While | Break | Capture | Let | Return


@dataclass(frozen=True)
class Param:
    """A program parameter, with its default (None when it has none)."""

    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class ProgramDef:
    """``program name(params) { body }``."""

    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Import:
    """``import "other.nano"``: the programs (and tools) of another file, by relative path."""

    path: str
    span: Span


@dataclass(frozen=True)
class ToolDecl:
    """``tool NAME(param, ...)``: a host Python function the programs may call by name."""

    name: str
    params: tuple[str, ...]
    span: Span


@dataclass(frozen=True)
class Module:
    """A parsed source file: its programs, in order, plus the text (for error excerpts).
    ``tools`` are the declared host tools (own and imported); ``imports`` the import lines."""

    programs: tuple[ProgramDef, ...]
    file: str
    source: str | None
    tools: tuple[ToolDecl, ...] = ()
    imports: tuple[Import, ...] = ()

    def tool(self, name: str) -> ToolDecl | None:
        return next((t for t in self.tools if t.name == name), None)

    def get(self, name: str) -> ProgramDef | None:
        return next((p for p in self.programs if p.name == name), None)

    def source_for(self, file: str) -> str | None:
        """The text of ``file`` for error excerpts (programs joined by ``nl.call`` may come
        from other files)."""
        if file == self.file:
            return self.source
        path = Path(file)
        return path.read_text(encoding="utf-8") if path.is_file() else None


def assigned_names(body: tuple[Stmt, ...]) -> list[str]:
    """Names bound by ``gen``, ``select`` and ``let`` anywhere in ``body``, in first-seen order."""
    names: list[str] = []
    for stmt in body:
        if isinstance(stmt, (Gen, Select, Let)):
            found = [stmt.name]
        elif isinstance(stmt, (Role, Fork, For, While)):
            found = assigned_names(stmt.body)
        elif isinstance(stmt, Capture):
            found = [*assigned_names(stmt.body), stmt.name]
        elif isinstance(stmt, If):
            found = assigned_names(stmt.then) + assigned_names(stmt.orelse)
        else:
            found = []
        names.extend(n for n in found if n not in names)
    return names
