"""The results file of a batch job: one JSON line per finished row, appended and fsynced as
each row finishes, so a killed job loses nothing it finished.

On open, a torn last line (a write cut short by a kill) is cut off, and the ids already present
are the rows a rerun skips. ``rewrite`` (``--restart``, ``--retry-failed``) removes lines
atomically (a temporary file renamed over it), so a kill at any point leaves either the old
file or the new one, and copies the lines it keeps byte for byte.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    """What one row's instance did."""

    id: str
    line: int
    output: Any
    error: str | None
    expected: Any
    time_s: float
    prompt_tokens: int
    completion_tokens: int
    calls: int
    fingerprint: dict[str, str] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


TAIL_BYTES = 1 << 16  # how far back ``repair`` reads at a time, looking for the last newline


def repair(path: Path) -> int:
    """Cut a torn (unterminated) last line off ``path``; the bytes removed. Reads back from
    the end to the last newline only, not the whole file."""
    if not path.exists():
        return 0
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        keep = end_of_last_line(f, size)
        if keep < size:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    if keep < size:
        log.warning("%s: dropped a torn last line (%d bytes)", path, size - keep)
    return size - keep


def end_of_last_line(f: IO[bytes], size: int) -> int:
    """The offset just past the last newline of ``f`` (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - TAIL_BYTES)
        f.seek(start)
        found = f.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


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
    """The 1-based number of the first complete line of ``path`` that is not a JSON object
    (blank lines aside): a file with one is not a results file. None when every line is one
    (a torn last line, still unterminated, is not looked at: ``repair`` cuts it)."""
    if not path.is_file():
        return None
    for number, raw in raw_lines(path):
        complete = raw.endswith(b"\n")
        if complete and raw.strip() and not isinstance(parsed(raw), dict):
            return number
    return None


def iter_results(path: Path) -> Iterator[dict[str, Any]]:
    """Every result line of ``path``, parsed one at a time (lines that do not parse are
    skipped, loudly): resuming and the summary read a results file of any size this way."""
    for number, raw in raw_lines(path):
        if not raw.strip():
            continue
        value = parsed(raw)
        if isinstance(value, dict):
            yield value
        else:
            log.warning("%s:%d: not a JSON object; ignored", path, number)


def load_results(path: Path) -> list[dict[str, Any]]:
    """Every result line of ``path``, as a list (``iter_results`` reads them one by one)."""
    return list(iter_results(path))


def done_ids(path: Path, key: str) -> set[str]:
    """The ids (field ``key``) that have a line in ``path``."""
    return {str(line[key]) for line in iter_results(path) if key in line}


def one_per_id(
    lines: Iterable[Mapping[str, Any]], key: str, ids: Container[str]
) -> list[Mapping[str, Any]]:
    """The last line of each row of ``ids`` (field ``key``), in file order of first appearance:
    a file put together from shards (``cat``) can hold a row twice, and a summary counts each
    row once."""
    return last_per_id(lines, key, ids, lambda line: line)


def last_per_id(
    lines: Iterable[Mapping[str, Any]],
    key: str,
    ids: Container[str],
    pick: Callable[[Mapping[str, Any]], T],
) -> list[T]:
    """``one_per_id`` keeping ``pick(line)`` of each: over streamed lines (``iter_results``),
    a summary then holds what it needs per row, never the whole file."""
    last: dict[str, T] = {}
    for line in lines:
        row_id = str(line.get(key))
        if row_id in ids:
            last[row_id] = pick(line)
    return list(last.values())


def rewrite(path: Path, drop: Callable[[Mapping[str, Any]], bool]) -> int:
    """Remove the result lines for which ``drop(line)`` holds (``--restart``,
    ``--retry-failed``); the number removed. Every other line is copied byte for byte, one at
    a time, into a temporary file that is fsynced and renamed over ``path``'s file (the file a
    symbolic link names: renamed over the link, it replaced the link with a file of its own
    and left the old results in the link's target). Nothing is rewritten when nothing goes."""
    if not path.exists():
        return 0
    target = path.resolve()
    tmp = target.with_name(target.name + ".tmp")
    removed = 0
    with target.open("rb") as source, tmp.open("wb") as copy:
        for raw in source:  # a binary file's lines end at b"\n" only
            value = parsed(raw) if raw.strip() else None
            if isinstance(value, dict) and drop(value):
                removed += 1
            else:
                copy.write(raw)
        copy.flush()
        os.fsync(copy.fileno())
    if removed:
        os.replace(tmp, target)
    else:
        tmp.unlink()
    return removed


class ResultLog:
    """Append-only writer; ``done`` holds the ids (field ``key``) finished by this or earlier
    runs."""

    def __init__(self, path: Path, key: str = "id") -> None:
        self.path = path
        self.key = key
        path.parent.mkdir(parents=True, exist_ok=True)
        repair(path)
        self.done = done_ids(path, key)
        self._file: IO[str] | None = None

    def __enter__(self) -> ResultLog:
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def append(self, result: Result) -> None:
        self.append_line(result.id, result.to_json())

    def append_line(self, row_id: str, text: str) -> None:
        """Append one JSON line for ``row_id`` and fsync it."""
        assert self._file is not None, "use ResultLog as a context manager"
        self._file.write(text + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done.add(row_id)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
