"""String literals inside interpolation holes, unterminated strings, unclosed brackets."""

from __future__ import annotations

import pytest

from nanolang.syntax import tree
from nanolang.syntax.errors import NanoSyntaxError
from nanolang.syntax.formatter import format_module
from nanolang.syntax.parser import parse


def _text(source: str) -> tree.Str:
    stmt = parse(source).programs[0].body[0]
    assert isinstance(stmt, tree.Text)
    return stmt.text


def test_string_literal_inside_a_one_line_hole() -> None:
    text = _text('program p(xs) { "Items: {join(xs, \\", \\")}!" }')
    join = text.parts[1]
    assert isinstance(join, tree.Func) and join.name == "join"
    assert join.args[1] == tree.Str((", ",), join.args[1].span)
    assert text.parts[2] == "!"


def test_string_literal_inside_a_long_hole() -> None:
    text = _text('program p(xs) { """{join(xs, "; ")}""" }')
    join = text.parts[0]
    assert isinstance(join, tree.Func) and join.args[1].parts == ("; ",)  # type: ignore[union-attr]


def test_nested_strings_round_trip_through_the_formatter() -> None:
    module = parse('program p(xs) { "A {join(xs, \\"\\\\n\\")} B" }')
    text = format_module(module)
    again = parse(text)
    assert format_module(again) == text
    part = again.programs[0].body[0].text.parts[1]  # type: ignore[union-attr]
    assert part.args[1].parts == ("\n",)


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ('program p() {\n    "abc\n}', 2, 5, "unterminated string: a one-line string"),
        ('program p() {\n    """abc\n}', 2, 5, 'unterminated string: this """ string'),
        ("program p() {\n  if true {\n    gen x\n}\n", 1, 13, "'{' was never closed"),
    ],
)
def test_unterminated_and_unclosed_point_at_the_opening(
    source: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(NanoSyntaxError) as info:
        parse(source, "bad.nano")
    assert (info.value.span.line, info.value.span.column) == (line, column), info.value.format()
    assert message in info.value.message
