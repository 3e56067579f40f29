"""How many KV tokens one instance of a program holds at once, estimated before it starts.

The walk follows the program's statements with its arguments bound: literal text and argument
values are counted exactly (tokenised), a role block adds its chat-template header and footer,
a generated value counts as its ``gen``'s ``max_tokens`` wherever it is used (a list of them as
their sum), a ``gen`` adds its ``max_tokens`` to the context, a ``gen`` with ``n`` holds ``n``
outputs at once and adds nothing, a ``select`` holds every choice at once and adds its longest.
Fork branches hold their own tokens at the same time (the shared prefix once), and a ``concat``
fork then appends every branch's text; loop iterations extend one context, as many as the list
has items (``range(a, b)``, ``keys(r)`` and list arguments are known before the run); a
``capture`` is its body; an ``if`` costs its dearer branch; a called program's context lives
beside its caller's. Counts that depend on generated values (a fork count, a computed list, a
``while`` loop, which only ``break`` ends) count as one. Because the runtime preempts whole
instances under KV pressure, an instance that cannot fit on its own could never finish: the
executor refuses it before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nanolang.check.constants import UNKNOWN, constant
from nanolang.check.genargs import DEFAULT_MAX_TOKENS
from nanolang.run.chat import ChatPieces
from nanolang.run.token_cache import TokenCache
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
    tokens: TokenCache
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
            self.roles[role] = self.tokens.count(text)
        return self.roles[role]

    def note(self, live: int, span: Span) -> None:
        if live > self.peak:
            self.peak, self.where = live, span


def footprint(
    module: tree.Module,
    program: tree.ProgramDef,
    args: dict[str, Any],
    tokenizer: Any,
    tokens: TokenCache | None = None,
) -> Footprint:
    """``tokens``: a ``TokenCache`` of ``tokenizer`` shared across calls (a fresh one when
    None)."""
    cache = tokens if tokens is not None else TokenCache(tokenizer)
    walk = _Walk(tokenizer, cache, module, dict(args))
    _block(program.body, 0, 0, walk, 0)
    return Footprint(walk.peak, walk.where)


def _count(text: str, walk: _Walk) -> int:
    return walk.tokens.count(text)


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
    """A gen's budget; 0 for a prefill-only gen (``max_tokens = 0``: nothing is appended)."""
    if any(a.name == "max_tokens" and _constant_int(a.value, walk) == 0 for a in args):
        return 0
    return _int_arg(args, "max_tokens", walk, DEFAULT_MAX_TOKENS)


def _int_arg(args: tuple[tree.Arg, ...], name: str, walk: _Walk, default: int) -> int:
    for arg in args:
        if arg.name == name:
            value = _constant_int(arg.value, walk)
            return value if value is not None and value > 0 else default
    return default


def _known_list(expr: tree.Expr, walk: _Walk) -> list[Any] | None:
    """The list ``expr`` will be, when it is known before the run (else None)."""
    if isinstance(expr, tree.ListLit):  # items known before the run are values, others None
        return [None if (v := constant(item)) is UNKNOWN else v for item in expr.items]
    if isinstance(expr, tree.Var) and expr.name not in walk.generated:
        value = walk.env.get(expr.name)
        return value if isinstance(value, list) else None
    if isinstance(expr, tree.Func) and expr.name == "range" and 1 <= len(expr.args) <= 2:
        bounds = [_constant_int(a, walk) for a in expr.args]
        if all(b is not None for b in bounds):
            return list(range(*bounds))  # type: ignore[arg-type]
    if isinstance(expr, tree.Func) and expr.name in ("keys", "values") and len(expr.args) == 1:
        arg = expr.args[0]
        record = walk.env.get(arg.name) if isinstance(arg, tree.Var) else None
        if isinstance(record, dict) and arg.name not in walk.generated:  # type: ignore[union-attr]
            return list(record)
    return None


def _choice_tokens(choices: tree.Expr, walk: _Walk) -> list[int]:
    if isinstance(choices, tree.ListLit):
        return [_text_tokens(c, walk) for c in choices.items]  # (also interpolated choices)
    known = _known_list(choices, walk)
    return [_count(str(c), walk) for c in known] if known is not None else []


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
    if isinstance(stmt, tree.Capture):
        end = _block(stmt.body, ctx, beside, walk, depth)
        walk.generated.add(stmt.name)
        walk.env[stmt.name] = end - ctx  # the captured text is what the body appended
        return end
    if isinstance(stmt, tree.Gen):
        budget = _max_tokens(stmt.args, walk)
        n = _int_arg(stmt.args, "n", walk, 1)
        walk.generated.add(stmt.name)
        walk.env[stmt.name] = n * budget
        if budget == 0:  # its one probe token is held, then dropped
            walk.note(ctx + beside + 1, stmt.span)
        if n > 1:  # n samples of the same prompt at once; nothing is appended
            walk.note(ctx + beside + n * budget, stmt.span)
            return ctx
        return ctx + budget
    if isinstance(stmt, tree.Select):
        sizes = _choice_tokens(stmt.choices, walk)
        walk.note(ctx + beside + sum(sizes), stmt.span)  # every choice is scored at once
        walk.generated.add(stmt.name)
        walk.env[stmt.name] = max(sizes, default=0)
        return ctx + max(sizes, default=0)
    if isinstance(stmt, tree.Fork):
        count = max(1, _constant_int(stmt.count, walk) or 1)
        own, end = _branch(stmt.body, walk, depth, count)
        walk.note(ctx + beside + count * own, stmt.span)
        return ctx + count * end if stmt.concat else ctx
    if isinstance(stmt, tree.For | tree.While):
        items: list[Any] = [None]  # an unknown list or a while loop: one iteration
        if isinstance(stmt, tree.For):
            known = _known_list(stmt.iterable, walk)
            items = known if known is not None else [None]
        elif _constant_bool(stmt.cond, walk) is False:
            items = []
        return _loop(stmt, items, ctx, beside, walk, depth)
    if isinstance(stmt, tree.If):
        return max(
            _block(stmt.then, ctx, beside, walk, depth),
            _block(stmt.orelse, ctx, beside, walk, depth),
        )
    if isinstance(stmt, tree.Let) and isinstance(stmt.value, tree.Call) and depth < MAX_CALL_DEPTH:
        target = walk.module.get(stmt.value.program)
        if target is not None:
            inner = _Walk(walk.tokenizer, walk.tokens, walk.module, {}, roles=walk.roles)
            _block(target.body, 0, 0, inner, depth + 1)
            walk.note(ctx + beside + inner.peak, stmt.span)
    return ctx


def _branch(
    body: tuple[tree.Stmt, ...], walk: _Walk, depth: int, count: int
) -> tuple[int, int]:
    """The most tokens one fork branch holds beyond the fork's context, and the tokens it has
    appended by its end."""
    inner = _Walk(walk.tokenizer, walk.tokens, walk.module, dict(walk.env), set(walk.generated))
    inner.roles = walk.roles
    end = _block(body, 0, 0, inner, depth)
    for name in inner.generated - walk.generated:  # after the join: lists of the branches' values
        walk.generated.add(name)
        walk.env[name] = count * inner.env[name]
    return inner.peak, end


def _loop(
    stmt: tree.For | tree.While,
    items: list[Any],
    ctx: int,
    beside: int,
    walk: _Walk,
    depth: int,
) -> int:
    """One iteration per item, extending one context (a ``for`` variable is the item, when it
    is known); afterwards a variable bound in the body is the list of its per-item values."""
    before = set(walk.generated)
    budgets: dict[str, int] = {}
    outer = walk.env.get(stmt.var) if isinstance(stmt, tree.For) else None
    for item in items:
        if isinstance(stmt, tree.For):
            walk.env[stmt.var] = item
        ctx = _block(stmt.body, ctx, beside, walk, depth)
        for name in walk.generated - before:
            budgets[name] = budgets.get(name, 0) + int(walk.env[name])
    walk.env.update(budgets)
    if isinstance(stmt, tree.For):
        walk.env[stmt.var] = outer
    return ctx


def _constant_bool(expr: tree.Expr, walk: _Walk) -> bool | None:
    if isinstance(expr, tree.Bool):
        return expr.value
    if isinstance(expr, tree.Var) and expr.name not in walk.generated:
        value = walk.env.get(expr.name)
        return value if isinstance(value, bool) else None
    return None
