"""How many KV tokens one instance of a program holds at once, estimated before it starts.

The walk follows the program's statements with its arguments bound: literal text and argument
values are counted exactly (tokenised), a role block adds its chat-template header and footer,
a generated value counts as its ``gen``'s ``max_tokens``
wherever it is used, a ``gen`` adds its ``max_tokens`` to the context, a ``select`` its longest
choice. Fork branches hold their own tokens at the same time (the shared prefix once); loop
iterations extend one context; an ``if`` costs its dearer branch; a called program's context
lives beside its caller's. Counts that depend on generated values (a fork count, a loop list)
count as one. Because the runtime preempts whole instances under KV pressure, an instance that
cannot fit on its own could never finish: the executor refuses it before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nanolang.check.genargs import DEFAULT_MAX_TOKENS
from nanolang.run.chat import ChatPieces
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError, Span

MAX_CALL_DEPTH = 16


@dataclass(frozen=True)
class Footprint:
    tokens: int  # peak KV tokens of one instance (every gen at its max_tokens)
    where: Span | None  # the statement at which the peak is reached


@dataclass
class _Walk:
    tokenizer: Any
    module: tree.Module
    env: dict[str, Any]  # argument values, and generated names -> their token budget (int)
    generated: set[str] = field(default_factory=set)
    peak: int = 0
    where: Span | None = None
    roles: dict[str, int] = field(default_factory=dict)  # role -> its header and footer tokens

    def role_tokens(self, role: str) -> int:
        if role not in self.roles:
            try:
                chat = ChatPieces(self.tokenizer)
                text = chat.header((role,)) + chat.footer((role,))
            except (NanoError, AttributeError):  # no usable template: it adds nothing
                text = ""
            self.roles[role] = _count(text, self)
        return self.roles[role]

    def note(self, live: int, span: Span) -> None:
        if live > self.peak:
            self.peak, self.where = live, span


def footprint(
    module: tree.Module, program: tree.ProgramDef, args: dict[str, Any], tokenizer: Any
) -> Footprint:
    walk = _Walk(tokenizer, module, dict(args))
    _block(program.body, 0, 0, walk, 0)
    return Footprint(walk.peak, walk.where)


def _count(text: str, walk: _Walk) -> int:
    return len(walk.tokenizer.encode(text, add_special_tokens=False)) if text else 0


def _text_tokens(expr: tree.Expr, walk: _Walk) -> int:
    if isinstance(expr, tree.Str):
        return sum(
            _count(p, walk) if isinstance(p, str) else _text_tokens(p, walk) for p in expr.parts
        )
    if isinstance(expr, tree.Var):
        if expr.name in walk.generated:
            return int(walk.env[expr.name])
        value = walk.env.get(expr.name)
        return _count(value if isinstance(value, str) else str(value), walk) if value else 0
    return 0


def _constant_int(expr: tree.Expr, walk: _Walk) -> int | None:
    if isinstance(expr, tree.Num) and isinstance(expr.value, int):
        return expr.value
    if isinstance(expr, tree.Var) and expr.name not in walk.generated:
        value = walk.env.get(expr.name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


def _max_tokens(args: tuple[tree.Arg, ...], walk: _Walk) -> int:
    for arg in args:
        if arg.name == "max_tokens":
            value = _constant_int(arg.value, walk)
            return value if value is not None and value > 0 else DEFAULT_MAX_TOKENS
    return DEFAULT_MAX_TOKENS


def _block(body: tuple[tree.Stmt, ...], ctx: int, beside: int, walk: _Walk, depth: int) -> int:
    """Walk ``body`` from a context of ``ctx`` tokens while ``beside`` other tokens are live;
    returns the context's length after it."""
    for stmt in body:
        ctx = _stmt(stmt, ctx, beside, walk, depth)
        walk.note(ctx + beside, stmt.span)
    return ctx


def _stmt(stmt: tree.Stmt, ctx: int, beside: int, walk: _Walk, depth: int) -> int:
    if isinstance(stmt, tree.Text):
        return ctx + _text_tokens(stmt.text, walk)
    if isinstance(stmt, tree.Role):
        return _block(stmt.body, ctx + walk.role_tokens(stmt.role), beside, walk, depth)
    if isinstance(stmt, tree.Gen):
        budget = _max_tokens(stmt.args, walk)
        walk.generated.add(stmt.name)
        walk.env[stmt.name] = budget
        return ctx + budget
    if isinstance(stmt, tree.Select):
        choices = stmt.choices
        longest = 0
        if isinstance(choices, tree.ListLit):
            longest = max((_text_tokens(c, walk) for c in choices.items), default=0)
        return ctx + longest
    if isinstance(stmt, tree.Fork):
        count = max(1, _constant_int(stmt.count, walk) or 1)
        own = _branch(stmt.body, walk, depth)
        walk.note(ctx + beside + count * own, stmt.span)
        return ctx
    if isinstance(stmt, tree.For):
        items = stmt.iterable
        n = len(items.items) if isinstance(items, tree.ListLit) else None
        if n is None and isinstance(items, tree.Var):
            value = walk.env.get(items.name)
            n = len(value) if isinstance(value, list) else 1
        for _ in range(n or 0):
            ctx = _block(stmt.body, ctx, beside, walk, depth)
        return ctx
    if isinstance(stmt, tree.If):
        return max(
            _block(stmt.then, ctx, beside, walk, depth),
            _block(stmt.orelse, ctx, beside, walk, depth),
        )
    if isinstance(stmt, tree.Let) and isinstance(stmt.value, tree.Call) and depth < MAX_CALL_DEPTH:
        target = walk.module.get(stmt.value.program)
        if target is not None:
            inner = _Walk(walk.tokenizer, walk.module, {}, roles=walk.roles)
            _block(target.body, 0, 0, inner, depth + 1)
            walk.note(ctx + beside + inner.peak, stmt.span)
    return ctx


def _branch(body: tuple[tree.Stmt, ...], walk: _Walk, depth: int) -> int:
    """The most tokens one fork branch adds beyond the fork's context."""
    inner = _Walk(walk.tokenizer, walk.module, dict(walk.env), set(walk.generated))
    inner.roles = walk.roles
    _block(body, 0, 0, inner, depth)
    for name in inner.generated - walk.generated:  # after the join: lists of the branches' values
        walk.generated.add(name)
        walk.env[name] = inner.env[name]
    return inner.peak
