"""Dataset rows of a batch job: one JSON object per line of a ``.jsonl`` file.

Every field of a row is a program argument, except ``id`` (the row's name in the results;
default: its 0-based line number), the expected-answer field (``expected`` unless told) and
the job's metadata fields (a ``--group-by`` field the program does not take), kept in ``meta``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanolang.jobs.row_file import DatasetError, Keep, Parse, StreamedRows, json_lines

__all__ = ["DatasetError", "Expected", "Row", "json_lines", "parse_row", "read_rows", "row_of"]

ID_FIELD = "id"


@dataclass(frozen=True)
class Row:
    """One dataset row: its id, its line number, the program's arguments, the expected answer."""

    id: str
    line: int
    args: dict[str, Any]
    expected: Any = None
    has_expected: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Expected:
    """What a scan of the dataset keeps of a row for the summary (``RowRef.kept``): whether it
    has an expected answer, and the answer."""

    has_expected: bool
    expected: Any


def expected_of(row: Row) -> Expected:
    return Expected(row.has_expected, row.expected)


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


def row_of(expected_field: str = "expected", meta_fields: Collection[str] = ()) -> Parse[Row]:
    """``parse_row`` with the job's expected-answer and metadata fields."""
    fields = tuple(meta_fields)
    return lambda path, line, obj: parse_row(path, line, obj, expected_field, fields)


def row_id(row: Row) -> str:
    return row.id


def read_rows(
    path: Path,
    expected_field: str = "expected",
    meta_fields: Collection[str] = (),
    keep: Keep[Row] | None = None,
) -> StreamedRows[Row]:
    """The rows of ``path`` (blank lines are skipped but still count as lines); ``meta_fields``
    are not program arguments (they go to ``Row.meta``). One pass checks every line (a
    ``DatasetError`` names the file and line of a bad one, or a repeated id) and keeps
    ``keep(row)`` of each row in its ``RowRef`` (by default its ``Expected`` answer, which
    ``summarize`` takes instead of reading the row again); the rows are then read back from the
    file as they are used, so memory holds a little per row, never the file
    (``row_file.StreamedRows``)."""
    parse = row_of(expected_field, meta_fields)
    return StreamedRows.of_file(path, parse, row_id, "id", keep or expected_of)
