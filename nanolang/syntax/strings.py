"""String literals: escape sequences and ``{expr}`` interpolation holes, with exact positions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nanolang.syntax.errors import NanoSyntaxError, Span

ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "0": "\0"}


@dataclass(frozen=True)
class Hole:
    """The source text of one ``{...}`` hole and where it starts."""

    source: str
    span: Span


class _Cursor:
    """Walks a literal's raw text while tracking line and column."""

    def __init__(self, raw: str, span: Span) -> None:
        self.raw = raw
        self.pos = 0
        self.line = span.line
        self.column = span.column
        self.file = span.file

    def span(self) -> Span:
        return Span(self.file, self.line, self.column)

    def peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.raw[i] if i < len(self.raw) else ""

    def advance(self) -> str:
        ch = self.raw[self.pos]
        self.pos += 1
        if ch == "\n":
            self.line, self.column = self.line + 1, 1
        else:
            self.column += 1
        return ch


def split_literal(token: str, span: Span) -> list[str | Hole]:
    """Split a quoted string token into text pieces and interpolation holes.

    Raw strings (``r"..."``, ``r\"\"\"...\"\"\"``) have neither escapes nor holes."""
    if token.startswith("r"):
        quote = 3 if token.startswith('r"""') else 1
        body = token[1 + quote : len(token) - quote]
        return [body] if body else []
    quote = 3 if token.startswith('"""') else 1
    cur = _Cursor(token, span)
    for _ in range(quote):
        cur.advance()
    end = len(token) - quote
    parts: list[str | Hole] = []
    text: list[str] = []
    while cur.pos < end:
        ch = cur.peek()
        if ch == "\\":
            text.append(_escape(cur))
        elif (ch == "{" and cur.peek(1) == "{") or (ch == "}" and cur.peek(1) == "}"):
            cur.advance()
            text.append(cur.advance())
        elif ch == "{":
            if text:
                parts.append("".join(text))
                text = []
            parts.append(_hole(cur, end, quote == 1))
        elif ch == "}":
            raise NanoSyntaxError(
                "unmatched '}' in string: write '}}' for a literal brace", cur.span()
            )
        else:
            text.append(cur.advance())
    if text:
        parts.append("".join(text))
    return parts


def _escape(cur: _Cursor) -> str:
    start = cur.span()
    cur.advance()
    ch = cur.peek()
    if ch not in ESCAPES:
        known = " ".join("\\" + k for k in ESCAPES)
        raise NanoSyntaxError(f"unknown escape '\\{ch}' in string; expected one of {known}", start)
    cur.advance()
    return ESCAPES[ch]


def _hole(cur: _Cursor, end: int, short: bool) -> Hole:
    """One ``{expr}``. The expression may hold string literals: written ``\\"...\\"`` inside a
    one-line string (the quotes escaped, as the string around them needs), ``"..."`` inside a
    ``\"\"\"`` string."""
    start = cur.span()
    cur.advance()
    body_span = cur.span()
    chars: list[str] = []
    in_string = False
    while cur.pos < end:
        ch = cur.peek()
        if short and ch == "\\" and cur.peek(1) in '"\\':
            cur.advance()
            ch = cur.advance()
            chars.append(ch)
            in_string = in_string != (ch == '"')
            continue
        if not in_string and ch == "}":
            break
        if not in_string and ch == "{":
            raise NanoSyntaxError(
                "braces are not allowed inside an interpolation; bind the value with 'let' first",
                cur.span(),
            )
        if ch == '"':
            in_string = not in_string
        elif in_string and ch == "\\" and cur.pos + 1 < end:
            chars.append(cur.advance())
        chars.append(cur.advance())
    if cur.pos >= end:
        raise NanoSyntaxError("'{' was never closed: expected an expression then '}'", start)
    cur.advance()
    if not "".join(chars).strip():
        raise NanoSyntaxError("empty interpolation '{}': expected an expression", start)
    return Hole("".join(chars), body_span)


def parse_holes(
    parts: list[str | Hole], parse_expr: Callable[[Hole], object]
) -> tuple[object, ...]:
    """Replace every hole by the expression ``parse_expr`` builds from it."""
    return tuple(p if isinstance(p, str) else parse_expr(p) for p in parts)
