"""The lines of a results file, read one at a time, and which of them are results: a results
file holds one JSON object per line (a torn last line, cut short by a kill, at least starts as
one); a file with any other line is another kind of file, never to be written to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nanolang.jobs.fingerprint import FingerprintMismatch


def raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Each line of ``path`` (its newline kept; a torn last line has none) with its 1-based
    number, read one at a time: memory holds one line, never the file. Lines end at newlines
    only: ``str.splitlines`` also splits at U+2028, U+2029 and U+0085, which JSON written with
    ``ensure_ascii=False`` keeps raw inside strings (a result whose output held one read as two
    broken lines)."""
    if not path.exists():
        return
    with path.open("rb") as f:
        yield from enumerate(f, 1)  # a binary file's lines end at b"\n" only


def parsed(raw: bytes) -> Any:
    """``raw`` as JSON, or None when it is not UTF-8 JSON."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def first_foreign_line(path: Path) -> int | None:
    """The 1-based number of the first line of ``path`` that is not a result (blank lines
    aside): a file with one is not a results file. None when every line is one. A complete
    line must be a JSON object; a torn last line (unterminated, which ``repair`` cuts) must at
    least start as one (a text file whose one line has no newline is not a torn result)."""
    if not path.is_file():
        return None
    for number, raw in raw_lines(path):
        if foreign(raw):
            return number
    return None


def foreign(raw: bytes) -> bool:
    """Whether the line ``raw`` (with its newline, if any) is not a result."""
    if not raw.strip():
        return False
    if not raw.endswith(b"\n"):  # torn: only its start is known
        return not raw.lstrip().startswith(b"{")
    return not isinstance(parsed(raw), dict)


def not_results(path: Path, number: int) -> FingerprintMismatch:
    return FingerprintMismatch(
        f"{path}:{number}: not a result (a JSON object per line), so {path} is not a "
        "results file: give another output file (or delete it first)"
    )
