"""Expressions and built-ins at run time (programs without requests), and their errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nanolang.check.checker import check_or_raise
from nanolang.run.executor import Executor
from nanolang.syntax.parser import parse
from tests.nanolang.helpers import CountingBackend


def _run(source: str, **args: Any) -> Any:
    module = parse(source, "x.nano")
    check_or_raise(module)
    return asyncio.run(Executor(module, CountingBackend()).run(module.programs[0].name, args))


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("1 + 2 - 4", -1),
        ('"a" + "b"', "ab"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ('len("abc") + len([1, 2])', 5),
        ('join(["a", 1, true], "-")', "a-1-true"),
        ('join(["x", "y"])', "xy"),
        ('str([1, "a"])', '[1, "a"]'),
        ('int(" 42 ")', 42),
        ("int(2.9)", 2),
        ('lower("AbC")', "abc"),
        ('strip("  x ")', "x"),
        ('"b" in "abc"', True),
        ('"z" not in ["a"]', True),
        ("1 in [true]", False),
        ("1 == 1.0", True),
        ('1 == "1"', False),
        ("2 < 3 and 3 >= 3 and not (1 > 2)", True),
        ('"a" < "b" or false', True),
        ("[10, 20, 30][-1]", 30),
        ('"abc"[1]', "b"),
        ('"v={xs[0]} {len(xs)} {xs}"', "v=1 2 [1, 2]"),
        ("-xs[1]", -2),
        ("2 * -len(xs) - -1", -3),
        ("- 2.5", -2.5),
        ("--xs[0]", 1),
        ("1 -xs[0]", 0),
        ('{ a: 1, xs }["xs"]', [1, 2]),
        ("len({ a: { b: [] } }) + len(keys({ c: 1, d: 2 }))", 3),
    ],
)
def test_expression_values(expr: str, value: Any) -> None:
    outcome = _run(f"program p(xs = [1, 2]) {{ return {expr} }}")
    assert outcome.error is None, outcome.error.format()
    assert outcome.value == value


def test_records_and_index_by_key() -> None:
    outcome = _run(
        'program p() { let r = call q() return { a: r["k"], n: len(r) } }\n'
        'program q() { return { k: "v", j: 1 } }'
    )
    assert outcome.value == {"a": "v", "n": 2}


def test_argument_defaults_and_tuples() -> None:
    assert _run("program p(xs = [1], y = 2) { return [xs, y] }", xs=(3, 4)).value == [[3, 4], 2]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("xs[5]", "index 5 out of range for a list"),
        ('xs["a"]', "cannot index a list with a string"),
        ('int("x")', "int() cannot parse 'x'"),
        ("one + a", "cannot apply '+' to number and string"),
        ("one < xs", "cannot apply '<' to number and list"),
        ("not one", "expected true or false, got number"),
        ("len(one)", "len() needs a string, list or record, got number"),
        ("one in a", "cannot test number in string"),
        ('float("nan")', "float() cannot parse 'nan' as a finite number"),
        ('float(" -inf")', "float() cannot parse ' -inf' as a finite number"),
    ],
)
def test_runtime_errors_name_the_position(expr: str, message: str) -> None:
    # parameters without defaults: their types are unknown statically, so these reach run time
    source = f"program p(xs, one, a) {{\n    return {expr}\n}}"
    outcome = _run(source, xs=[1, 2], one=1, a="a")
    assert outcome.error is not None
    assert message in outcome.error.message
    assert outcome.error.format().startswith(f"x.nano:2:12: runtime error: {message}")


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("float(big)", "as a finite number"),
        ("float(int(big))", "is too large for a float"),
        ("int(big) / 3", "'/' overflows"),
        ("float(near) * 10.0", "'*' overflows"),
        ("float(near) + float(near) - 1", "'+' overflows"),
        ("sum([float(near), float(near)])", "sum() overflows"),
    ],
)
def test_float_is_always_finite(expr: str, message: str) -> None:
    """A value is JSON: ``run`` never prints NaN or Infinity, nor fails with a traceback."""
    outcome = _run(f"program p(big, near) {{ return {expr} }}", big="1" + "0" * 400, near="9" * 308)
    assert outcome.error is not None and message in outcome.error.message


def test_if_on_a_non_boolean_value_fails_at_run_time() -> None:
    outcome = _run("program p(v) {\n    if v { }\n}", v="x")
    assert outcome.error is not None and "must be true or false" in outcome.error.message
    assert (outcome.error.span.line, outcome.error.span.column) == (2, 8)


def test_unknown_and_missing_program_arguments() -> None:
    outcome = _run("program p(a) { return a }", b=1)
    assert outcome.error is not None and "unknown argument(s) b" in outcome.error.message
    outcome = _run("program p(a) { return a }", a=object())
    assert outcome.error is not None and "not a nanolang value" in outcome.error.message
