"""Parsing: golden canonical forms, round trips, positions, and syntax errors at file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanolang.syntax import tree
from nanolang.syntax.errors import NanoSyntaxError, Span
from nanolang.syntax.formatter import format_module
from nanolang.syntax.parser import KEYWORDS, parse, parse_expr
from nanolang.syntax.source import read_source
from tests.nanolang.helpers import PROGRAMS, golden


@pytest.mark.parametrize("name", ["solve", "control"])
def test_golden_canonical_form(name: str) -> None:
    module = parse((PROGRAMS / f"{name}.nano").read_text(), f"{name}.nano")
    golden(f"{name}.formatted.nano", format_module(module))


@pytest.mark.parametrize("name", ["solve", "control"])
def test_canonical_form_round_trips(name: str) -> None:
    text = format_module(parse((PROGRAMS / f"{name}.nano").read_text()))
    assert format_module(parse(text)) == text


def test_spans_point_at_tokens() -> None:
    source = 'program p(x) {\n    user "a {x} b"\n    gen g(max_tokens = 2)\n}\n'
    program = parse(source, "f.nano").programs[0]
    role = program.body[0]
    assert isinstance(role, tree.Role) and role.span == Span("f.nano", 2, 5)
    text = role.body[0]
    assert isinstance(text, tree.Text)
    hole = text.text.parts[1]
    assert isinstance(hole, tree.Var) and hole.span == Span("f.nano", 2, 14)
    gen = program.body[1]
    assert isinstance(gen, tree.Gen) and gen.span == Span("f.nano", 3, 5)
    assert gen.args[0].value == tree.Num(2, Span("f.nano", 3, 24))


def test_hole_position_in_triple_quoted_string() -> None:
    source = 'program p(q) {\n    """line one\n  {q}"""\n}'
    text = parse(source).programs[0].body[0]
    assert isinstance(text, tree.Text)
    assert text.text.parts == ("line one\n  ", tree.Var("q", Span("<string>", 3, 4)))


def test_escapes_and_doubled_braces() -> None:
    expr = parse_expr('"a\\n\\t\\"{{x}}\\\\"')
    assert isinstance(expr, tree.Str) and expr.constant == 'a\n\t"{x}\\'


def test_operator_precedence() -> None:
    expr = parse_expr("not a == b or c and d")
    assert isinstance(expr, tree.BinOp) and expr.op == "or"
    assert isinstance(expr.left, tree.Not) and isinstance(expr.right, tree.BinOp)


def test_else_if_chains() -> None:
    body = parse("program p(x) { if x { } else if x { } else { let y = 1 } }").programs[0].body
    first = body[0]
    assert isinstance(first, tree.If) and isinstance(first.orelse[0], tree.If)
    assert isinstance(first.orelse[0].orelse[0], tree.Let)


SYNTAX_ERRORS = [
    ("program p( { }", 1, 12, "unexpected '{'; expected ')', a name"),
    ("program p() { gen }", 1, 19, "expected a name"),
    ("program p() {\n  @\n}", 2, 3, "unexpected character '@'"),
    ("program p() {\n  let café = 1\n}", 2, 10, "unexpected character 'é' (names are ASCII"),
    ("program p(x) { if x = 1 { } }", 1, 21, "unexpected '=': compare with =="),
    ('program p() { let s = q(c = "y") }', 1, 27, "name arguments only in gen, select and call"),
    ('program p() { let r = call q("x") }', 1, 30, "call arguments are by name: call q(param"),
    ("program p() { let x = 1 + }", 1, 27, "unexpected '}'"),
    ('program p() { user "a {x" }', 1, 23, "was never closed"),
    ('program p() { "a } b" }', 1, 18, "unmatched '}'"),
    ('program p() { "bad \\q" }', 1, 20, "unknown escape '\\q'"),
    ('program p() { "{ }" }', 1, 16, "empty interpolation"),
    ('program p() {\n  "x {1 +}"\n}', 2, 10, "unexpected '}' (end of the {...})"),
    ("program p() {", 1, 13, "'{' was never closed"),
    ("program p() { select x from }", 1, 29, "expected"),
    (
        'program p() { user { "a" } } }',
        1,
        30,
        "unexpected '}'; expected 'import', 'program', 'tool', end of input",
    ),
]


@pytest.mark.parametrize(("source", "line", "column", "message"), SYNTAX_ERRORS)
def test_syntax_error_positions(source: str, line: int, column: int, message: str) -> None:
    with pytest.raises(NanoSyntaxError) as info:
        parse(source, "bad.nano")
    error = info.value
    assert (error.span.file, error.span.line, error.span.column) == ("bad.nano", line, column)
    assert message in error.message
    text = error.format()
    assert text.startswith(f"bad.nano:{line}:{column}: syntax error: ")
    source_line = source.splitlines()[line - 1]
    assert text.splitlines()[1] == f"    {source_line}"
    assert text.splitlines()[2] == "    " + " " * (column - 1) + "^"


def test_capture_parses_and_formats_back() -> None:
    module = parse('program p() {\n    capture x {\n        "a" gen g\n    }\n    return x\n}\n')
    stmt = module.programs[0].body[0]
    assert isinstance(stmt, tree.Capture) and stmt.name == "x" and len(stmt.body) == 2
    assert (stmt.span.line, stmt.span.column) == (2, 5)
    text = format_module(module)
    assert "capture x {" in text and format_module(parse(text)) == text


def test_a_file_that_is_not_utf8_is_a_syntax_error_at_the_bad_byte(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.nano"
    bad.write_bytes('program p() {\n    "caf\u00e9"\n}\n'.encode("latin-1"))
    with pytest.raises(NanoSyntaxError) as info:
        read_source(bad)
    assert (info.value.span.line, info.value.span.column) == (2, 9)
    assert "not UTF-8" in info.value.message and "0xe9" in info.value.message


def test_an_import_that_is_not_utf8_points_at_the_import(tmp_path: Path) -> None:
    (tmp_path / "other.nano").write_bytes(b"\xff\xfeprogram q() { }\n")
    main = tmp_path / "main.nano"
    main.write_text('import "other.nano"\nprogram p() { }\n')
    with pytest.raises(NanoSyntaxError) as info:
        parse(main.read_text(), str(main))
    assert str(info.value.span).endswith("other.nano:1:1")
    assert "not UTF-8" in info.value.message


NESTED = {
    "sum": "program p() {\n    let x = 1" + " + 1" * 5000 + "\n    return x\n}\n",
    "ifs": "program p() {\n" + "if true {\n" * 400 + '"x"\n' + "}\n" * 400 + "}\n",
    "lists": "program p() {\n    let x = " + "[" * 300 + "1" + "]" * 300 + "\n}\n",
    "calls": "program p() {\n    let x = " + "len(" * 300 + '"a"' + ")" * 300 + "\n}\n",
}


@pytest.mark.parametrize("shape", sorted(NESTED))
def test_nesting_past_the_limit_is_a_syntax_error_not_a_recursion_error(shape: str) -> None:
    with pytest.raises(NanoSyntaxError) as info:
        parse(NESTED[shape], "deep.nano")
    assert "nested too deeply" in info.value.message
    assert info.value.span.file == "deep.nano" and info.value.span.line >= 2


@pytest.mark.parametrize("keyword", sorted(KEYWORDS))
def test_a_keyword_is_not_a_name(keyword: str) -> None:
    with pytest.raises(NanoSyntaxError) as info:
        parse(f"program p() {{\n    let {keyword} = 1\n}}\n", "k.nano")
    assert (info.value.span.line, info.value.span.column) == (2, 9)
    assert f"unexpected {keyword!r} (a keyword, which cannot be a name)" in info.value.message


def test_a_missing_name_is_reported_at_the_keyword_after_it() -> None:
    with pytest.raises(NanoSyntaxError) as info:
        parse("program p() {\n    gen\n    return 1\n}\n", "k.nano")
    assert (info.value.span.line, info.value.span.column) == (3, 5)
    assert info.value.message.endswith("expected a name")
    with pytest.raises(NanoSyntaxError) as info:
        parse("program p() {\n    select x from\n    return x\n}\n", "k.nano")
    assert (info.value.span.line, info.value.span.column) == (3, 5)
    assert info.value.message.endswith("expected an expression")


def test_words_that_are_keywords_only_in_place_stay_names() -> None:
    source = 'program p() {\n    let tool = 1\n    let user = [tool, "x"]\n    let iffy = 2\n}\n'
    names = [s.name for s in parse(source).programs[0].body if isinstance(s, tree.Let)]
    assert names == ["tool", "user", "iffy"]


def test_unary_minus_parses_and_formats_back() -> None:
    module = parse("program p(x) {\n    let a = -x * -2\n}\n")
    let = module.programs[0].body[0]
    assert isinstance(let, tree.Let) and isinstance(let.value, tree.BinOp)
    assert let.value.right == tree.Num(-2, Span("<string>", 2, 18))
    assert format_module(parse(format_module(module))) == format_module(module)


def test_the_caret_counts_wide_characters_twice() -> None:
    with pytest.raises(NanoSyntaxError) as info:
        parse('program p() {\n    "日本" @\n}\n', "w.nano")
    assert info.value.span.column == 10
    assert info.value.format().splitlines()[2] == "    " + " " * 11 + "^"


def test_a_file_reads_as_python_reads_text_crlf_and_a_byte_order_mark(tmp_path: Path) -> None:
    windows = tmp_path / "windows.nano"
    windows.write_bytes(b'\xef\xbb\xbfprogram p() {\r\n    """a\r\nb"""\r\n    return 1\r\n}\r\n')
    text = read_source(windows)
    assert text == 'program p() {\n    """a\nb"""\n    return 1\n}\n'
    body = parse(text, str(windows)).programs[0].body
    assert isinstance(body[0], tree.Text) and body[0].text == tree.Str(("a\nb",), body[0].span)


def test_a_record_is_an_expression_anywhere() -> None:
    module = parse("program p(x) {\n    let r = { a: 1, x, b: { c: [x] } }\n    return r\n}\n")
    let = module.programs[0].body[0]
    assert isinstance(let, tree.Let) and isinstance(let.value, tree.Record)
    assert [f.name for f in let.value.fields] == ["a", "x", "b"]
    text = format_module(module)
    assert "let r = { a: 1, x, b: { c: [x] } }" in text and format_module(parse(text)) == text
