"""A job's input rows, streamed from their JSONL file: one pass checks every line and keeps,
per row, its id, line number and byte offset, and what the job needs of the row before and
after it runs (``RowRef.kept``: its fingerprint, group key, ...), so that pass is the only one
over the file; ``StreamedRows`` then reads the rows back from the file one at a time, in any
order (a shard's, a prefix group's), so a multi-GB dataset never sits in memory whole and each
line is parsed once more only when its row runs. Dataset rows (``dataset.py``) and OpenAI batch
requests (``batch_input.py``) are both read this way."""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

Parse = Callable[[Path, int, Any], T]  # (file, 0-based line, JSON value) -> row


class DatasetError(ValueError):
    """A row that is not a JSON object, ids that repeat, or a file without rows."""


Keep = Callable[[T], Any]  # row -> what a job keeps of it from the scan (``RowRef.kept``)


@dataclass(frozen=True, slots=True)
class RowRef:
    """Where a row is: its id, its 0-based line number and the byte offset of that line; and
    ``kept``, what the job keeps of it from the scan (None unless the scan was given ``keep``)."""

    id: str
    line: int
    offset: int
    kept: Any = None


def decoded(path: Path, line: int, raw: bytes) -> Any:
    """The JSON value of ``raw`` (line ``line`` of ``path``); None for a blank line. A line
    that is not UTF-8 or not JSON is a ``DatasetError`` naming the file and line."""
    try:
        text = raw.decode("utf-8-sig" if line == 0 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}:{line + 1}: not UTF-8 ({exc.reason})") from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{line + 1}: not JSON: {exc.msg}") from None


def json_lines_at(path: Path) -> Iterator[tuple[int, int, Any]]:
    """``(line index, byte offset, value)`` of every non-blank line of a UTF-8 JSONL file, a
    line at a time (blank lines still count as lines; a byte order mark before the first is
    not data). Lines end at newlines only (JSON may hold U+2028 raw inside a string)."""
    offset = 0
    with path.open("rb") as f:
        for line, raw in enumerate(f):  # a binary file's lines end at b"\n" only
            value = decoded(path, line, raw)
            if value is not None or raw.strip():
                yield line, offset, value
            offset += len(raw)


def json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line index, value)`` of every non-blank line (``json_lines_at`` without offsets)."""
    for line, _, value in json_lines_at(path):
        yield line, value


def scan(
    path: Path,
    parse: Parse[T],
    row_id: Callable[[T], str],
    what: str,
    keep: Keep[T] | None = None,
) -> list[RowRef]:
    """Every row of ``path`` checked (parsed, ids unique: ``what`` names the id field in the
    error), holding one row at a time; their ``RowRef``s in file order, each with ``keep(row)``
    when given. A file without rows is a ``DatasetError`` (an empty file is a mistake: a
    download that failed, the wrong file; a job over it would "succeed" having run nothing)."""
    refs: list[RowRef] = []
    first: dict[str, int] = {}
    for line, offset, value in json_lines_at(path):
        row = parse(path, line, value)
        name = row_id(row)
        if name in first:
            raise DatasetError(
                f"{path}:{line + 1}: {what} {name!r} repeats (first on line {first[name] + 1})"
            )
        first[name] = line
        refs.append(RowRef(name, line, offset, None if keep is None else keep(row)))
    if not refs:
        raise DatasetError(f"{path}: no rows (the file is empty or has only blank lines)")
    return refs


class StreamedRows(Sequence[T], Generic[T]):
    """The rows at ``refs`` of ``path``, in that order, read back from the file as they are
    used (each parse is redone: memory holds the refs and the row in hand). A line that no
    longer holds its row (the file changed during the job) is a ``DatasetError``."""

    def __init__(
        self, path: Path, refs: Sequence[RowRef], parse: Parse[T], row_id: Callable[[T], str]
    ) -> None:
        self.path = path
        self.refs = refs
        self.parse = parse
        self.row_id = row_id

    @classmethod
    def of_file(
        cls,
        path: Path,
        parse: Parse[T],
        row_id: Callable[[T], str],
        what: str,
        keep: Keep[T] | None = None,
    ) -> StreamedRows[T]:
        """Every row of ``path``, in file order, checked by ``scan`` (which keeps ``keep(row)``
        of each in its ``RowRef``)."""
        return cls(path, scan(path, parse, row_id, what, keep), parse, row_id)

    def at(self, refs: Sequence[RowRef]) -> StreamedRows[T]:
        """The rows at ``refs`` (some of these rows' refs) of the same file."""
        return StreamedRows(self.path, refs, self.parse, self.row_id)

    @property
    def ids(self) -> list[str]:
        """The rows' ids, in order (no row is read)."""
        return [ref.id for ref in self.refs]

    def __len__(self) -> int:
        return len(self.refs)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> StreamedRows[T]: ...

    def __getitem__(self, index: int | slice) -> T | StreamedRows[T]:
        if isinstance(index, slice):
            return self.at(self.refs[index])
        with self.path.open("rb") as f:
            return self.read(f, self.refs[index])

    def __iter__(self) -> Iterator[T]:
        with self.path.open("rb") as f:
            for ref in self.refs:
                yield self.read(f, ref)

    def read(self, f: Any, ref: RowRef) -> T:
        f.seek(ref.offset)
        row = self.parse(self.path, ref.line, decoded(self.path, ref.line, f.readline()))
        if self.row_id(row) != ref.id:
            raise DatasetError(
                f"{self.path}:{ref.line + 1}: the file changed while the job ran "
                f"(expected the row {ref.id!r} there)"
            )
        return row

    def without(self, ids: Container[str]) -> StreamedRows[T]:
        """These rows but those whose id is in ``ids`` (no row is read)."""
        return self.at([ref for ref in self.refs if ref.id not in ids])

    def reordered(self, key: Callable[[T], Any]) -> StreamedRows[T]:
        """These rows sorted by ``key(row)`` (ties keep their order), reading each once and
        keeping its key (``ordered`` sorts by what the scan kept, reading none)."""
        keys = [key(row) for row in self]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        return self.at([self.refs[i] for i in order])

    def ordered(self, key: Callable[[RowRef], Any]) -> StreamedRows[T]:
        """These rows sorted by ``key(ref)`` (ties keep their order; no row is read)."""
        return self.at(sorted(self.refs, key=key))
