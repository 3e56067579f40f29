"""Source positions and the errors that carry them (file:line:column, source line, caret)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A 1-based position in a source file (``line``/``column`` of the first character)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NO_SPAN = Span("<unknown>", 0, 0)


def source_excerpt(source: str | None, span: Span) -> str:
    """The source line of ``span`` followed by a caret under its column (empty if unknown)."""
    if source is None or span.line < 1:
        return ""
    lines = source.splitlines()
    if span.line > len(lines):
        return ""
    text = lines[span.line - 1].replace("\t", " ")
    before = text[: max(span.column - 1, 0)]
    pad = "".join("  " if unicodedata.east_asian_width(c) in "WF" else " " for c in before)
    return f"    {text}\n    {pad}^"


class NanoError(Exception):
    """Base class of every nanolang error: a message at a source position."""

    kind = "error"

    def __init__(self, message: str, span: Span = NO_SPAN, source: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.source = source

    def with_source(self, source: str | None) -> NanoError:
        if self.source is None:
            self.source = source
        return self

    def format(self) -> str:
        """``file:line:col: kind: message`` then the source line and a caret."""
        if self.span.line < 1:  # no position known: say so by omission, not with <unknown>:0:0
            where = "" if self.span.file == NO_SPAN.file else f"{self.span.file}: "
            return f"{where}{self.kind}: {self.message}"
        head = f"{self.span}: {self.kind}: {self.message}"
        excerpt = source_excerpt(self.source, self.span)
        return f"{head}\n{excerpt}" if excerpt else head

    def __str__(self) -> str:
        return self.format()


class NanoSyntaxError(NanoError):
    """The source does not match the grammar."""

    kind = "syntax error"


class NanoCheckError(NanoError):
    """A static (semantic) error found before any request is sent."""

    kind = "error"


class NanoRuntimeError(NanoError):
    """An error raised while a program instance runs (bad value, failed request, ...)."""

    kind = "runtime error"


class NanoErrors(Exception):
    """Several static errors at once (the checker reports all it finds)."""

    def __init__(self, errors: list[NanoError]) -> None:
        super().__init__("\n".join(e.format() for e in errors))
        self.errors = errors

    def format(self) -> str:
        return "\n".join(e.format() for e in self.errors)
