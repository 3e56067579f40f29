"""Reading a ``.nano`` file: its text, or a syntax error at the first byte that is not UTF-8."""

from __future__ import annotations

import codecs
from pathlib import Path

from nanolang.syntax.errors import NanoSyntaxError, Span


def read_source(path: str | Path) -> str:
    """The text of ``path`` decoded as UTF-8, as Python reads a text file: a leading byte-order
    mark is dropped and CRLF / CR line ends become ``\\n``. A file that is not UTF-8 raises
    NanoSyntaxError at the line and column of its first bad byte (OSError as usual for a
    missing file)."""
    data = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return _newlines(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        before = _newlines(data[: exc.start].decode("utf-8"))
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        message = (
            f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded "
            "(save it as UTF-8)"
        )
        error = NanoSyntaxError(message, Span(str(path), line, column))
        raise error.with_source(_newlines(data.decode("utf-8", "replace"))) from None


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
