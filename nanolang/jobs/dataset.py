"""Dataset rows of a batch job: one JSON object per line of a ``.jsonl`` file.

Every field of a row is a program argument, except ``id`` (the row's name in the results;
default: its 0-based line number), the expected-answer field (``expected`` unless told) and
the job's metadata fields (a ``--group-by`` field the program does not take), kept in ``meta``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ID_FIELD = "id"

T = TypeVar("T")


class DatasetError(ValueError):
    """A row that is not a JSON object, ids that repeat, or a file without rows."""


@dataclass(frozen=True)
class Row:
    """One dataset row: its id, its line number, the program's arguments, the expected answer."""

    id: str
    line: int
    args: dict[str, Any]
    expected: Any = None
    has_expected: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def parse_row(
    path: Path, line: int, obj: Any, expected_field: str, meta_fields: Collection[str] = ()
) -> Row:
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}:{line + 1}: a row must be a JSON object")
    kept = (ID_FIELD, expected_field, *meta_fields)
    args = {k: v for k, v in obj.items() if k not in kept}
    meta = {k: v for k, v in obj.items() if k in meta_fields}
    row_id = str(obj[ID_FIELD]) if ID_FIELD in obj else str(line)
    return Row(row_id, line, args, obj.get(expected_field), expected_field in obj, meta)


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


def not_empty(path: Path, rows: list[T]) -> list[T]:
    """``rows``, or a ``DatasetError`` when there are none (an empty file is a mistake: a
    download that failed, the wrong file; a job over it would "succeed" having run nothing)."""
    if not rows:
        raise DatasetError(f"{path}: no rows (the file is empty or has only blank lines)")
    return rows


def read_rows(
    path: Path, expected_field: str = "expected", meta_fields: Collection[str] = ()
) -> list[Row]:
    """The rows of ``path`` (blank lines are skipped but still count as lines); ``meta_fields``
    are not program arguments (they go to ``Row.meta``)."""
    rows = [
        parse_row(path, line, obj, expected_field, meta_fields) for line, obj in json_lines(path)
    ]
    first: dict[str, int] = {}
    for row in rows:
        if row.id in first:
            raise DatasetError(
                f"{path}:{row.line + 1}: id {row.id!r} appears more than once "
                f"(first on line {first[row.id] + 1})"
            )
        first[row.id] = row.line
    return not_empty(path, rows)
