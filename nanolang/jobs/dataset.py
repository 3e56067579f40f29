"""Dataset rows of a batch job: one JSON object per line of a ``.jsonl`` file.

Every field of a row is a program argument, except ``id`` (the row's name in the results;
default: its 0-based line number) and the expected-answer field (``expected`` unless told).
"""

from __future__ import annotations

import json
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


def read_rows(path: Path, expected_field: str = "expected") -> list[Row]:
    """The rows of ``path`` (blank lines are skipped but still count as lines)."""
    rows: list[Row] = []
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line + 1}: not JSON: {exc.msg}") from None
            rows.append(parse_row(line, obj, expected_field))
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise DatasetError(f"{path}: id {row.id!r} appears more than once")
        seen.add(row.id)
    return rows
