"""Random inputs never produce a traceback: only a clean NanoError (or a valid program)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanolang.check.checker import check
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError, Span
from nanolang.syntax.formatter import format_module
from nanolang.syntax.parser import parse, parse_expr
from nanolang.syntax.unparse import unparse
from tests.nanolang.helpers import PROGRAMS

TOKENS = [
    "program",
    "p",
    "q",
    "x",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    "=",
    ":",
    "gen",
    "select",
    "from",
    "fork",
    "for",
    "in",
    "if",
    "else",
    "let",
    "return",
    "call",
    "system",
    "user",
    "assistant",
    "and",
    "or",
    "not",
    "==",
    "<",
    "+",
    "-",
    "1",
    "0",
    "2.5",
    "true",
    '"a {x} b"',
    '"{"',
    '"}"',
    '"""t"""',
    'r"[0-9"',
    "len",
    "join",
    "max_tokens",
    "regex",
    "#c\n",
    "\n",
]
SOLVE = (PROGRAMS / "solve.nano").read_text()
SPAN = Span("<gen>", 1, 1)


def _clean(source: str) -> None:
    try:
        module = parse(source, "fuzz.nano")
    except NanoError as exc:
        assert exc.span.line >= 1 and exc.format().startswith("fuzz.nano:")
        return
    for error in check(module):
        assert error.span.line >= 1 and error.format()
    assert format_module(parse(format_module(module))) == format_module(module)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_random_text(source: str) -> None:
    _clean(source)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_sequences(tokens: list[str]) -> None:
    _clean(" ".join(tokens))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(SOLVE)), st.integers(0, 12), st.text(max_size=6))
def test_mutated_valid_program(start: int, length: int, insert: str) -> None:
    _clean(SOLVE[:start] + insert + SOLVE[start + length :])


NAMES = st.sampled_from(["a", "b", "xs", "n"])
LEAVES = st.one_of(
    st.integers(-5, 50).map(lambda i: tree.Num(i, SPAN)),
    st.booleans().map(lambda b: tree.Bool(b, SPAN)),
    st.text(alphabet='ab{}"\\\n ', max_size=4).map(lambda s: tree.Str((s,) if s else (), SPAN)),
    NAMES.map(lambda n: tree.Var(n, SPAN)),
)
OPS = ["or", "and", "==", "!=", "<", ">", "<=", ">=", "in", "not in", "+", "-"]


def _extend(children: st.SearchStrategy[tree.Expr]) -> st.SearchStrategy[tree.Expr]:
    return st.one_of(
        st.tuples(st.sampled_from(OPS), children, children).map(
            lambda t: tree.BinOp(t[0], t[1], t[2], SPAN)
        ),
        children.map(lambda c: tree.Not(c, SPAN)),
        st.tuples(children, children).map(lambda t: tree.Index(t[0], t[1], SPAN)),
        st.lists(children, max_size=3).map(lambda items: tree.ListLit(tuple(items), SPAN)),
        st.tuples(st.sampled_from(["len", "str", "join"]), children).map(
            lambda t: tree.Func(t[0], (t[1],), SPAN)
        ),
    )


@settings(max_examples=300, deadline=None)
@given(st.recursive(LEAVES, _extend, max_leaves=12))
def test_expressions_round_trip_through_source(expr: tree.Expr) -> None:
    text = unparse(expr)
    assert unparse(parse_expr(text)) == text
