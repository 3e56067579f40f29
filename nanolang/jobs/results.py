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
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from nanolang.jobs.job_files import check_job_files
from nanolang.jobs.result_lines import foreign, not_results, parsed, raw_lines

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
    """The ids (field ``key``) of the complete lines of ``path`` (a torn last line is not
    done), read a line at a time; ``FingerprintMismatch`` at a line that is not a result."""
    done = set()
    for number, raw in raw_lines(path):
        if foreign(raw):
            raise not_results(path, number)
        if raw.endswith(b"\n") and raw.strip():
            line = parsed(raw)
            if key in line:
                done.add(str(line[key]))
    return done


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
    runs. Before it touches ``path`` it refuses, with a ``ValueError`` naming the file, what
    the CLIs refuse (``job_files.check_job_files``): a folder, one of the job's ``inputs``
    (give the dataset, program and tools files), a file that is not a results file, a location
    that cannot be made, and a ``report`` (the HTML to be written at the end) that is the
    results file, an input or cannot be made."""

    def __init__(
        self,
        path: Path,
        key: str = "id",
        inputs: Sequence[Path] = (),
        report: Path | None = None,
    ) -> None:
        self.path = path
        self.key = key
        check_job_files(path, inputs, report, lines=False)  # the lines: as they are read
        self.done = done_ids(path, key)  # before repair: a text file's last line is no torn one
        repair(path)
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
