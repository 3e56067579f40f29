"""Static checks: one test per error kind, each at its exact file:line:column."""

from __future__ import annotations

import pytest

from nanolang.api.program import compile as nl_compile
from nanolang.check.checker import check
from nanolang.syntax.errors import NanoErrors
from nanolang.syntax.parser import parse
from tests.nanolang.helpers import PROGRAMS

CASES = [
    # (name, source, line, column, message fragment)
    ("undefined variable", 'program p() {\n    "{x}"\n}', 2, 7, "undefined variable 'x'"),
    (
        "possibly undefined after if",
        "program p(c) {\n    if c { gen y }\n    return y\n}",
        3,
        12,
        "variable 'y' is possibly undefined",
    ),
    (
        "possibly undefined inside fork",
        'program p(c) {\n    fork 2 { if c { gen y } }\n    "{y}"\n}',
        3,
        7,
        "possibly undefined",
    ),
    ("duplicate parameter", "program p(a, b, a) { }", 1, 17, "duplicate parameter 'a'"),
    ("duplicate record field", "program p(a) { return { a, b: 1, a: 2 } }", 1, 34, "field 'a'"),
    ("record in a let", "program p() { let r = { a: 1 } let s = r - 1 }", 1, 40, "a record and"),
    (
        "duplicate variable",
        "program p() {\n    gen a\n    let a = 1\n}",
        3,
        5,
        "'a' is already defined (at 2:5)",
    ),
    (
        "loop var reassigned",
        "program p(x) {\n    for x in [1] { }\n}",
        2,
        5,
        "'x' is already defined",
    ),
    ("builtin name as variable", "program p() { let len = 1 }", 1, 15, "'len' is a built-in"),
    (
        "non-literal default",
        "program p(a, b = a) { }",
        1,
        18,
        "parameter default must be a literal",
    ),
    (
        "unknown gen argument",
        "program p() { gen a(tokens = 3) }",
        1,
        21,
        "unknown argument 'tokens'",
    ),
    (
        "gen max_tokens type",
        'program p() { gen a(max_tokens = "3") }',
        1,
        34,
        "max_tokens: expected an integer",
    ),
    (
        "gen max_tokens range",
        "program p() { gen a(max_tokens = -1) }",
        1,
        34,
        "expected an integer >= 0",
    ),
    (
        "gen temperature type",
        "program p() { gen a(temperature = true) }",
        1,
        35,
        "expected a number",
    ),
    (
        "gen top_p range",
        "program p() { gen a(top_p = 0) }",
        1,
        29,
        "top_p: expected a number in (0.0",
    ),
    ("gen stop type", "program p() { gen a(stop = [1]) }", 1, 28, "non-empty string"),
    (
        "gen ignore_eos type",
        "program p() { gen a(ignore_eos = 1) }",
        1,
        34,
        "expected true or false",
    ),
    (
        "duplicate gen argument",
        "program p() { gen a(seed = 1, seed = 2) }",
        1,
        31,
        "duplicate argument 'seed'",
    ),
    ("invalid regex", 'program p() { gen a(regex = "[0-9") }', 1, 29, "invalid regex '[0-9'"),
    (
        "regex unsupported by decoder",
        'program p() { gen a(regex = "(?<=a)b") }',
        1,
        29,
        "look-around, including look-ahead and look-behind, is not supported",
    ),
    (
        "invalid JSON schema JSON",
        'program p() { gen a(json_schema = r"{") }',
        1,
        35,
        "not valid JSON",
    ),
    (
        "invalid JSON schema type",
        'program p() { gen a(json_schema = r"""{"type": 1}""") }',
        1,
        35,
        "invalid json_schema: type must be a string or array of strings",
    ),
    (
        "regex and schema together",
        'program p() { gen a(regex = "a", json_schema = r"{}") }',
        1,
        15,
        "at most one of regex and json_schema",
    ),
    ("empty select choices", "program p() { select a from [] }", 1, 29, "select has no choices"),
    (
        "duplicate select choices",
        'program p() { select a from ["x", "y", "x"] }',
        1,
        40,
        "duplicate select choice 'x'",
    ),
    ("empty string choice", 'program p() { select a from ["x", ""] }', 1, 35, "non-empty strings"),
    (
        "choices via default",
        'program p(cs = ["x", "x"]) { select a from cs }',
        1,
        22,
        "duplicate select choice",
    ),
    ("choices not a list", 'program p() { select a from "xy" }', 1, 29, "must be a list"),
    (
        "unknown select method",
        'program p() { select a(method = "max") from ["x"] }',
        1,
        33,
        "expected one of 'mean', 'sum'",
    ),
    (
        "nested roles",
        'program p() {\n    user {\n        assistant "x"\n    }\n}',
        3,
        9,
        "roles do not nest: 'assistant' inside 'user' (opened at 2:5)",
    ),
    (
        "break out of a role block",
        "program p() { for x in [1] { assistant { break } } }",
        1,
        42,
        "break is not allowed inside a role block",
    ),
    (
        "role inside a fork inside a role",
        'program p() { assistant { fork 2 { user "x" } } }',
        1,
        36,
        "roles do not nest: 'user' inside 'assistant'",
    ),
    (
        "break in a fork inside a role",
        "program p() { assistant { fork 2 { break } } }",
        1,
        36,
        "break inside a fork body: break ends a for or while loop, not a fork",
    ),
    ("unknown program", "program p() { let x = call q() }", 1, 23, "unknown program 'q'"),
    (
        "unknown call argument",
        "program p() { let x = call q(a = 1, b = 1) }\nprogram q(a) { }",
        1,
        37,
        "q() has no parameter 'b'",
    ),
    (
        "missing call argument",
        "program p() { let x = call q() }\nprogram q(a) { }",
        1,
        23,
        "misses argument(s): a",
    ),
    ("recursive call", "program p() {\n    let x = call p()\n}", 2, 13, "recursive call of 'p'"),
    ("duplicate program", "program p() { }\nprogram p() { }", 2, 9, "duplicate program 'p'"),
    ("unknown function", 'program p() { let x = shout("a") }', 1, 23, "unknown function 'shout'"),
    (
        "a program called as a function",
        'program p() { let x = q("a") }\nprogram q(c) { return c }',
        1,
        23,
        "'q' is a program, not a function: run it with `call q(c = ...)`",
    ),
    (
        "function arity",
        'program p() { let x = len("a", "b") }',
        1,
        23,
        "len() takes 1 argument(s), got 2",
    ),
    ("fork count", "program p() { fork 0 { } }", 1, 20, "fork count must be a positive integer"),
    (
        "return in fork",
        "program p() { fork 2 { return 1 } }",
        1,
        24,
        "return is not allowed inside a fork body",
    ),
    (
        "unreachable after return",
        "program p() {\n    return 1\n    gen x\n}",
        3,
        5,
        "unreachable statement after return",
    ),
]


@pytest.mark.parametrize(
    ("source", "line", "column", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_static_error_position(source: str, line: int, column: int, fragment: str) -> None:
    errors = check(parse(source, "e.nano"))
    assert len(errors) == 1, [e.format() for e in errors]
    error = errors[0]
    assert (error.span.file, error.span.line, error.span.column) == ("e.nano", line, column)
    assert fragment in error.message
    lines = error.format().splitlines()
    assert lines[0] == f"e.nano:{line}:{column}: error: {error.message}"
    assert lines[1] == "    " + source.splitlines()[line - 1]
    assert lines[2] == "    " + " " * (column - 1) + "^"


def test_valid_programs_have_no_errors() -> None:
    for name in ("solve", "control"):
        assert check(parse((PROGRAMS / f"{name}.nano").read_text())) == []


def test_definite_assignment_on_both_branches() -> None:
    source = "program p(c) { if c { gen y } else { let y = 1 } return y }"
    assert check(parse(source)) == []


def test_fork_and_for_bodies_bind_lists_after_the_block() -> None:
    source = "program p() { fork 2 { gen a } for i in [1] { gen b } return { a, b } }"
    assert check(parse(source)) == []


def test_control_inside_a_role_block_continues_the_open_turn() -> None:
    source = (
        "program p(xs) { assistant { fork 2 as i { if i == 0 { gen a } else { gen a } }\n"
        '    for x in xs { "{x}" if x == "." { break } } while len(xs) > 9 { break }\n'
        "    gen b(max_tokens = 0, top_logprobs_num = 2) } return { a, b } }"
    )
    assert check(parse(source)) == []


def test_a_prefill_only_gen_with_sampling_shape_arguments_is_refused_before_a_run() -> None:
    source = (
        "program p(k) {\n"
        "    gen a(max_tokens = 0, n = 1, top_logprobs_num = 3)\n"
        '    gen b(max_tokens = 0, n = 2, regex = "x")\n'
        '    gen c(max_tokens = 0, n = k, dtype = "int")\n'
        "    gen d(max_tokens = 0, n = k)\n"
        "    return { a, b, c, d } }"
    )
    errors = check(parse(source))
    assert [(e.span.line, e.span.column) for e in errors] == [(3, 5), (4, 5)]
    assert errors[0].message.endswith("(given: n, regex)")
    assert errors[1].message.endswith("(given: dtype)")  # n = k: known when it runs


def test_arithmetic_and_exp_are_typed() -> None:
    ok = "program p() { let x = exp(-0.5) * 2 / 4 - 1 return x }"
    assert check(parse(ok)) == []
    bad = 'program p() { let x = "a" * 2 let y = 1 / "b" return x }'
    assert [e.span.column for e in check(parse(bad))] == [23, 39]


def test_all_errors_are_reported_in_order() -> None:
    source = 'program p(a, a) {\n    "{x}"\n    gen g(foo = 1)\n}'
    errors = check(parse(source))
    assert [(e.span.line, e.span.column) for e in errors] == [(1, 14), (2, 7), (3, 11)]


def test_compile_raises_all_errors() -> None:
    with pytest.raises(NanoErrors) as info:
        nl_compile('program p() { "{x}" "{y}" }', filename="c.nano")
    assert len(info.value.errors) == 2
    assert "c.nano:1:17: error: undefined variable 'x'" in str(info.value)


def test_dtype_is_checked_as_the_regex_it_stands_for() -> None:
    from nanolang.check.genargs import DTYPE_REGEX, GEN_ARGS, argument_error
    from runtime.constraints import constraint_error

    for dtype, pattern in DTYPE_REGEX.items():
        assert constraint_error(regex=pattern) is None, dtype
        assert argument_error(GEN_ARGS, "dtype", dtype) is None
    errors = check(parse('program p() { gen x(dtype = "int", regex = "[0-9]") }', "e.nano"))
    assert [e.message for e in errors] == [
        "give dtype or a regex/json_schema, not both (dtype is a regex)"
    ]
    errors = check(parse('program p() { gen x(dtype = "list") }', "e.nano"))
    assert "expected one of 'int', 'float', 'bool', 'str'" in errors[0].message
