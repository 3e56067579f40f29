"""Opening a results file for a run: resume (the default), ``--restart`` or ``--retry-failed``.

Resuming first checks every finished line against this job's fingerprints
(``fingerprint.check_resume``); a results file of another job is an error, never silently
mixed in. ``--restart`` deletes the old results instead; ``--retry-failed`` keeps the finished
rows and removes the failed ones, so they run again and each row still has exactly one line.
Both touch only the rows this run is given (``ids``: with ``--shard I/N``, shard I's), so one
shard's rerun over a results file several shards share keeps every other shard's lines, byte
for byte (``--restart`` also removes lines of another job, as without a shard).
Before any of them, the output files are checked (``job_files.check_job_files``): an output
file that is one of the job's inputs (the dataset given as ``--out``) or holds lines that are
not results (another kind of file) is refused untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanolang.jobs.fingerprint import Fingerprint, check_resume, line_problems
from nanolang.jobs.job_files import check_job_files
from nanolang.jobs.results import iter_results, repair, rewrite

Line = Mapping[str, Any]


@dataclass(frozen=True)
class ResumeOptions:
    restart: bool = False
    retry_failed: bool = False


@dataclass(frozen=True)
class LineFormat:
    """How a results file names rows, stores fingerprints and marks failures."""

    key: str
    fingerprint_of: Callable[[Line], Any]
    failed: Callable[[Line], bool]


EVAL_LINES = LineFormat(
    key="id",
    fingerprint_of=lambda line: line.get("fingerprint"),
    failed=lambda line: line.get("error") is not None,
)


def prepare(
    path: Path,
    expected: Mapping[str, Fingerprint],
    lines: LineFormat,
    options: ResumeOptions,
    inputs: Sequence[Path] = (),
    ids: Collection[str] | None = None,
    report: Path | None = None,
) -> str | None:
    """Make ``path`` ready to append to; a note on what was removed, if anything. ``ids``: the
    rows this run runs (default: every row of ``expected``); ``--restart`` and
    ``--retry-failed`` remove lines of these rows only.

    First, before anything is written, ``check_job_files`` refuses ``path`` and ``report`` with
    a ``ValueError`` (one of the job's ``inputs``, not a results file, a location that cannot
    be made, ...); then a results file of another job is a ``FingerprintMismatch``."""
    check_job_files(path, inputs, report)
    repair(path)
    mine = expected if ids is None else ids

    def in_run(line: Line) -> bool:
        return str(line.get(lines.key)) in mine

    def foreign(line: Line) -> bool:
        return bool(line_problems(line, lines.key, expected, lines.fingerprint_of))

    if options.restart:
        removed = rewrite(path, lambda line: in_run(line) or foreign(line))
        return f"--restart: removed {removed} earlier results from {path}" if removed else None
    check_resume(path, iter_results(path), lines.key, expected, lines.fingerprint_of)
    if options.retry_failed:
        removed = rewrite(path, lambda line: in_run(line) and lines.failed(line))
        return f"--retry-failed: {removed} failed rows of {path} run again" if removed else None
    return None
