"""Dataset rows of a batch job: one JSON object per line of a ``.jsonl`` file.

Every field of a row is a program argument, except ``id`` (the row's name in the results;
default: its 0-based line number) and the expected-answer field (``expected`` unless told).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ID_FIELD = "id"


class DatasetError(ValueError):
    """A row that is not a JSON object, or ids that repeat."""


@dataclass(frozen=True)
class Row:
    """One dataset row: its id, its line number, the program's arguments, the expected answer."""

    id: str
    line: int
    args: dict[str, Any]
    expected: Any = None
    has_expected: bool = False


def parse_row(line: int, obj: Any, expected_field: str) -> Row:
    if not isinstance(obj, dict):
        raise DatasetError(f"line {line + 1}: a row must be a JSON object")
    args = {k: v for k, v in obj.items() if k not in (ID_FIELD, expected_field)}
    row_id = str(obj[ID_FIELD]) if ID_FIELD in obj else str(line)
    return Row(row_id, line, args, obj.get(expected_field), expected_field in obj)


def json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line index, value)`` of every non-blank line of a UTF-8 JSONL file (blank lines still
    count as lines; a byte order mark before the first is not data). A line that is not UTF-8
    or not JSON is a ``DatasetError`` naming the file and line."""
    with path.open("rb") as f:
        for line, raw in enumerate(f):
            try:
                text = raw.decode("utf-8-sig" if line == 0 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}:{line + 1}: not UTF-8 ({exc.reason})") from None
            if not text.strip():
                continue
            try:
                yield line, json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line + 1}: not JSON: {exc.msg}") from None


def read_rows(path: Path, expected_field: str = "expected") -> list[Row]:
    """The rows of ``path`` (blank lines are skipped but still count as lines)."""
    rows = [parse_row(line, obj, expected_field) for line, obj in json_lines(path)]
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise DatasetError(f"{path}: id {row.id!r} appears more than once")
        seen.add(row.id)
    return rows
