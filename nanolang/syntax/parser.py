"""Source text to AST: the Lark grammar plus a transformer with one method per rule."""

from __future__ import annotations

import builtins
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.tree import Meta

from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError, NanoSyntaxError, Span
from nanolang.syntax.source import read_source
from nanolang.syntax.strings import Hole, split_literal

GRAMMAR = Path(__file__).with_name("grammar.lark")
# a tree node's children; spelled through builtins because _Builder has a method named ``list``
Children = builtins.list[Any]


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        start=["start", "expr"],
        propagate_positions=True,
        maybe_placeholders=True,
    )


def parse(source: str, file: str = "<string>") -> tree.Module:
    """Parse a whole ``.nano`` source; raises NanoSyntaxError with position and expectations.
    ``import "x.nano"`` lines bring in that file's programs and tools (resolved relative to
    ``file``'s folder; each file once, however often it is imported)."""
    return _parse(source, file, set())


def _parse(source: str, file: str, seen: set[str]) -> tree.Module:
    try:
        items = _Builder(file, 1, 1).transform(_run(source, "start", file, 1, 1))
    except NanoError as exc:
        raise exc.with_source(source) from None
    seen.add(str(Path(file).resolve()))
    programs = [i for i in items if isinstance(i, tree.ProgramDef)]
    tools = [i for i in items if isinstance(i, tree.ToolDecl)]
    imports = [i for i in items if isinstance(i, tree.Import)]
    for item in imports:
        imported = _import(item, file, seen, source)
        if imported is None:
            continue
        programs += [p for p in imported.programs if p not in programs]
        tools += [t for t in imported.tools if t not in tools]
    return tree.Module(tuple(programs), file, source, tuple(tools), tuple(imports))


def _import(item: tree.Import, file: str, seen: set[str], source: str) -> tree.Module | None:
    base = Path(file).parent if file not in ("<string>", "") else Path.cwd()
    path = (base / item.path).resolve()
    if str(path) in seen:
        return None
    if not path.is_file():
        error = NanoSyntaxError(f"cannot import {item.path!r}: no file {path}", item.span)
        raise error.with_source(source)
    return _parse(read_source(path), str(path), seen)


def parse_expr(source: str, file: str = "<string>") -> tree.Expr:
    """Parse one expression (used by ``--arg`` handling and tests)."""
    try:
        return _Builder(file, 1, 1).transform(_run(source, "expr", file, 1, 1))
    except NanoError as exc:
        raise exc.with_source(source) from None


def _run(source: str, start: str, file: str, line: int, column: int, hole: bool = False) -> Tree:
    try:
        parsed = _lark().parse(source, start=start)
    except UnexpectedInput as exc:
        span = _shift(file, line, column, exc.line, exc.column)
        message = _hint(exc, source) or _describe(exc)
        if _at_end(exc):
            lines = source.split("\n")
            span = _shift(file, line, column, len(lines), len(lines[-1]) + 1)
            opener = unclosed_bracket(source)
            if opener is not None and not hole:
                char, at_line, at_col = opener
                span = _shift(file, line, column, at_line, at_col)
                message = f"'{char}' was never closed ({message})"
        elif isinstance(exc, UnexpectedCharacters) and exc.char == '"':
            message, back = unterminated_string(source, exc.pos_in_stream or 0)
            span = _shift(file, line, column, exc.line, exc.column - back)
        if hole:
            message = message.replace(
                "unexpected end of input", "unexpected '}' (end of the {...})"
            )
        raise NanoSyntaxError(message, span) from None
    too_deep = _too_deep(parsed)
    if too_deep is not None:
        span = _shift(file, line, column, *too_deep)
        message = f"nested too deeply: more than {MAX_NESTING} levels of blocks, brackets, "
        raise NanoSyntaxError(message + "calls or operators here; split it up with let", span)
    return parsed


# How deep the syntax tree may nest (Lark tree levels: an if is two, each operator, bracket or
# call one). Every later stage (checks, graph, executor) walks the tree recursively; this keeps
# them all well inside Python's recursion limit, so a deep program is a syntax error, never a
# RecursionError.
MAX_NESTING = 100


# The words NAME does not match (its negative lookahead in grammar.lark): a name missing before
# one of them is reported at it, not one token later after it was taken for the name.
def _keywords() -> frozenset[str]:
    found = re.search(r"^NAME: /\(\?!\(\?:([a-z|]+)\)", GRAMMAR.read_text(), re.M)
    assert found is not None, "grammar.lark's NAME lists the keywords it does not match"
    return frozenset(found.group(1).split("|"))


KEYWORDS = _keywords()


def _too_deep(parsed: Tree) -> tuple[int, int] | None:
    """Line and column of the first node nested deeper than MAX_NESTING, else None (an
    iterative walk: it must not recurse itself)."""
    stack: list[tuple[Tree | Token, int]] = [(parsed, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if depth > MAX_NESTING:
            return (getattr(node.meta, "line", 1), getattr(node.meta, "column", 1))
        stack.extend((child, depth + 1) for child in node.children)
    return None


def unclosed_bracket(source: str) -> tuple[str, int, int] | None:
    """The innermost bracket (``{ ( [``) still open at the end of ``source``, with its 1-based
    line and column; strings and comments are skipped."""
    stack: list[tuple[str, int, int]] = []
    pairs = {"}": "{", ")": "(", "]": "["}
    line, col, i = 1, 1, 0
    while i < len(source):
        ch = source[i]
        skip = _skipped(source, i)
        if skip:
            for c in source[i : i + skip]:
                line, col = (line + 1, 1) if c == "\n" else (line, col + 1)
            i += skip
            continue
        if ch in "{([":
            stack.append((ch, line, col))
        elif ch in pairs and stack and stack[-1][0] == pairs[ch]:
            stack.pop()
        line, col = (line + 1, 1) if ch == "\n" else (line, col + 1)
        i += 1
    return stack[-1] if stack else None


def _skipped(source: str, i: int) -> int:
    """How many characters from ``i`` are a string literal or a comment (0: neither)."""
    for pattern in (_LONG, _SHORT, _COMMENT):
        found = pattern.match(source, i)
        if found:
            return len(found.group(0))
    return 0


_LONG = re.compile(r'r?"""(?:[^\\]|\\.)*?"""', re.S)
_SHORT = re.compile(r'r?"(?:[^"\\\n]|\\.)*"')
_COMMENT = re.compile(r"#[^\n]*")


def unterminated_string(source: str, pos: int) -> tuple[str, int]:
    """The message for a string that never closes at ``pos``, and how many characters before
    ``pos`` it starts (``\"\"\"`` lexes as an empty string then a stray quote)."""
    if source.startswith('"""', pos):
        return 'unterminated string: this """ string is never closed', 0
    if pos >= 2 and source[pos - 2 : pos + 1] == '"""':
        return 'unterminated string: this """ string is never closed', 2
    message = "unterminated string: a one-line string must close on its line "
    return message + '(use """...""" for text over several lines)', 0


def _shift(file: str, base_line: int, base_col: int, line: int, col: int) -> Span:
    if line < 1:
        return Span(file, base_line, base_col)
    if line == 1:
        return Span(file, base_line, base_col + col - 1)
    return Span(file, base_line + line - 1, col)


def _at_end(exc: UnexpectedInput) -> bool:
    token = getattr(exc, "token", None)
    return isinstance(exc, UnexpectedEOF) or (token is not None and token.type == "$END")


def _hint(exc: UnexpectedInput, source: str) -> str | None:
    """A targeted message for two mistakes whose list of expected tokens would not help: ``=``
    where no argument is named (``if x = 1``, ``pick(c = 1)`` without ``call``), and a call
    argument without its name (``call pick("x")``)."""
    token = getattr(exc, "token", None)
    if not isinstance(exc, UnexpectedToken) or token is None:
        return None
    if token.type == "EQUAL":
        return (
            "unexpected '=': compare with ==, and name arguments only in gen, select and call "
            "(`gen x(max_tokens = 8)`, `call NAME(param = value)`); a record field is `name: value`"
        )
    before = source[: token.start_pos] if token.start_pos is not None else ""
    called = re.search(r"\bcall\s+([A-Za-z_]\w*)\s*\(\s*$", before)
    if called and token.type != "NAME":
        name = called.group(1)
        return f"unexpected {token.value!r}: call arguments are by name: call {name}(param = value)"
    return None


def _describe(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedCharacters):
        got = f"unexpected character {exc.char!r}"
        if not exc.char.isascii() and exc.char.isalpha():
            got += " (names are ASCII letters, digits and _; other text goes in strings)"
        expected: Any = exc.allowed
    elif isinstance(exc, UnexpectedEOF):
        got, expected = "unexpected end of input", exc.expected
    else:
        token = exc.token  # type: ignore[attr-defined]
        got = "unexpected end of input" if token.type == "$END" else f"unexpected {token.value!r}"
        expected = exc.expected  # type: ignore[attr-defined]
        if token.value in KEYWORDS and "NAME" in (expected or ()):
            got += " (a keyword, which cannot be a name)"
    names = sorted({_terminal_text(str(t)) for t in expected or ()})
    if {"a name", "a number", "a string"} <= set(names):  # where any expression may start
        names = ["an expression"] + [n for n in names if n not in _EXPRESSION_STARTS]
    return f"{got}; expected {', '.join(names)}" if names else got


_EXPRESSION_STARTS = frozenset(
    (
        "a name",
        "a number",
        "a string",
        "'('",
        "'['",
        "'{'",
        "'-'",
        "'call'",
        "'not'",
        "'true'",
        "'false'",
    )
)


def _terminal_text(name: str) -> str:
    readable = {
        "NAME": "a name",
        "NUMBER": "a number",
        "SHORT_STRING": "a string",
        "LONG_STRING": "a string",
        "RAW_STRING": "a string",
        "RAW_LONG_STRING": "a string",
        "ROLE": "system/user/assistant",
        "$END": "end of input",
    }
    if name in readable:
        return readable[name]
    for term in _lark().terminals:
        if term.name == name and term.pattern.type == "str":
            return repr(term.pattern.value)
    return name.lower()


class _Builder(Transformer):
    """Builds AST nodes; ``line``/``column`` shift positions for expressions inside strings."""

    def __init__(self, file: str, line: int, column: int) -> None:
        super().__init__()
        self.file, self.line, self.column = file, line, column

    def transform(self, parsed: Tree) -> Any:
        try:
            return super().transform(parsed)
        except VisitError as exc:
            if isinstance(exc.orig_exc, NanoError):
                raise exc.orig_exc from None
            raise

    def _span(self, meta: Meta | Token) -> Span:
        line = getattr(meta, "line", None)
        col = getattr(meta, "column", None)
        if line is None or col is None:
            return Span(self.file, self.line, self.column)
        return _shift(self.file, self.line, self.column, line, col)

    # program structure

    def start(self, children: Children) -> builtins.list[Any]:
        return list(children)

    @v_args(meta=True)
    def import_decl(self, meta: Meta, children: Children) -> tree.Import:
        path = children[0]
        if not path.is_constant:
            raise NanoSyntaxError("an import path must be a plain string", path.span)
        return tree.Import(path.constant, self._span(meta))

    def tool_decl(self, children: Children) -> tree.ToolDecl:
        name, *params = children
        names = tuple(str(p) for p in params if p is not None)
        return tree.ToolDecl(str(name), names, self._span(name))

    @v_args(meta=True)
    def program(self, meta: Meta, children: Children) -> tree.ProgramDef:
        name, *raw, body = children
        params = tuple(p for p in raw if p is not None)
        return tree.ProgramDef(str(name), params, body, self._span(name))

    def param(self, children: Children) -> tree.Param:
        name, default = children
        return tree.Param(str(name), default, self._span(name))

    def block(self, children: Children) -> tuple[tree.Stmt, ...]:
        return tuple(children)

    # statements

    @v_args(meta=True)
    def text_stmt(self, meta: Meta, children: Children) -> tree.Text:
        return tree.Text(children[0], self._span(meta))

    @v_args(meta=True)
    def role_stmt(self, meta: Meta, children: Children) -> tree.Role:
        role, body = children
        if isinstance(body, tree.Str):
            body = (tree.Text(body, body.span),)
        return tree.Role(str(role), body, self._span(meta))

    @v_args(meta=True)
    def gen_stmt(self, meta: Meta, children: Children) -> tree.Gen:
        name, args = children
        return tree.Gen(str(name), args or (), self._span(meta))

    @v_args(meta=True)
    def select_stmt(self, meta: Meta, children: Children) -> tree.Select:
        name, args, choices = children
        return tree.Select(str(name), args or (), choices, self._span(meta))

    @v_args(meta=True)
    def fork_stmt(self, meta: Meta, children: Children) -> tree.Fork:
        count, _as, index, concat, body = children
        name = str(index) if index is not None else None
        return tree.Fork(count, body, self._span(meta), index=name, concat=concat is not None)

    @v_args(meta=True)
    def while_stmt(self, meta: Meta, children: Children) -> tree.While:
        return tree.While(children[0], children[1], self._span(meta))

    @v_args(meta=True)
    def capture_stmt(self, meta: Meta, children: Children) -> tree.Capture:
        name, body = children
        return tree.Capture(str(name), body, self._span(meta))

    def break_stmt(self, children: Children) -> tree.Break:
        return tree.Break(self._span(children[0]))

    @v_args(meta=True)
    def for_stmt(self, meta: Meta, children: Children) -> tree.For:
        name, iterable, body = children
        return tree.For(str(name), iterable, body, self._span(meta))

    @v_args(meta=True)
    def if_stmt(self, meta: Meta, children: Children) -> tree.If:
        cond, then, _else, orelse = children
        if isinstance(orelse, tree.If):
            orelse = (orelse,)
        return tree.If(cond, then, orelse or (), self._span(meta))

    @v_args(meta=True)
    def let_stmt(self, meta: Meta, children: Children) -> tree.Let:
        name, value = children
        return tree.Let(str(name), value, self._span(meta))

    def return_stmt(self, children: Children) -> tree.Return:
        keyword, value = children
        return tree.Return(value, self._span(keyword))

    def arglist(self, children: Children) -> tuple[tree.Arg, ...]:
        return tuple(a for a in children if a is not None)

    def arg(self, children: Children) -> tree.Arg:
        name, value = children
        return tree.Arg(str(name), value, self._span(name))

    @v_args(meta=True)
    def record(self, meta: Meta, children: Children) -> tree.Record:
        return tree.Record(tuple(f for f in children if f is not None), self._span(meta))

    def field(self, children: Children) -> tree.Field:
        name, value = children
        span = self._span(name)
        return tree.Field(
            str(name), value if value is not None else tree.Var(str(name), span), span
        )

    # expressions

    @staticmethod
    def _binop(op: str) -> Any:
        @v_args(meta=True)
        def build(self: _Builder, meta: Meta, children: Children) -> tree.BinOp:
            return tree.BinOp(op, children[0], children[1], self._span(meta))

        return build

    or_, and_, add, sub = _binop("or"), _binop("and"), _binop("+"), _binop("-")
    mul, div = _binop("*"), _binop("/")
    eq, ne, lt, gt = _binop("=="), _binop("!="), _binop("<"), _binop(">")
    le, ge, in_, not_in = _binop("<="), _binop(">="), _binop("in"), _binop("not in")

    @v_args(meta=True)
    def neg(self, meta: Meta, children: Children) -> tree.Expr:
        """``-x`` is ``0 - x`` (a literal number stays a literal: ``- 2`` is ``-2``)."""
        span, operand = self._span(meta), children[0]
        if isinstance(operand, tree.Num) and not isinstance(operand.value, bool):
            return tree.Num(-operand.value, span)
        return tree.BinOp("-", tree.Num(0, span), operand, span)

    @v_args(meta=True)
    def not_(self, meta: Meta, children: Children) -> tree.Not:
        return tree.Not(children[0], self._span(meta))

    @v_args(meta=True)
    def index(self, meta: Meta, children: Children) -> tree.Index:
        return tree.Index(children[0], children[1], self._span(meta))

    def number(self, children: Children) -> tree.Num:
        tok = children[0]
        value = float(tok) if "." in tok else int(tok)
        return tree.Num(value, self._span(tok))

    def true(self, children: Children) -> tree.Bool:
        return tree.Bool(True, self._span(children[0]))

    def false(self, children: Children) -> tree.Bool:
        return tree.Bool(False, self._span(children[0]))

    @v_args(meta=True)
    def list(self, meta: Meta, children: Children) -> tree.ListLit:
        return tree.ListLit(tuple(c for c in children if c is not None), self._span(meta))

    def var(self, children: Children) -> tree.Var:
        return tree.Var(str(children[0]), self._span(children[0]))

    def func(self, children: Children) -> tree.Func:
        name, *args = children
        return tree.Func(str(name), tuple(a for a in args if a is not None), self._span(name))

    @v_args(meta=True)
    def call(self, meta: Meta, children: Children) -> tree.Call:
        name, args = children
        return tree.Call(str(name), args, self._span(meta))

    def tool_call(self, children: Children) -> tree.ToolCall:
        name, *args = children
        return tree.ToolCall(str(name), tuple(a for a in args if a is not None), self._span(name))

    def string(self, children: Children) -> tree.Str:
        tok = children[0]
        span = self._span(tok)
        parts = split_literal(str(tok), span)
        return tree.Str(tuple(self._piece(p) for p in parts), span)

    def _piece(self, part: str | Hole) -> str | tree.Expr:
        if isinstance(part, str):
            return part
        span = part.span
        parsed = _run(part.source, "expr", self.file, span.line, span.column, hole=True)
        return _Builder(self.file, span.line, span.column).transform(parsed)
