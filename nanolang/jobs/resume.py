"""Opening a results file for a run: resume (the default), ``--restart`` or ``--retry-failed``.

Resuming first checks every finished line against this job's fingerprints
(``fingerprint.check_resume``); a results file of another job is an error, never silently
mixed in. ``--restart`` deletes the old results instead; ``--retry-failed`` keeps the finished
rows and removes the failed ones, so they run again and each row still has exactly one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanolang.jobs.fingerprint import Fingerprint, check_resume
from nanolang.jobs.results import drop_failed, load_results, repair, truncate

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
) -> str | None:
    """Make ``path`` ready to append to; a note on what was removed, if anything.

    Raises ``FingerprintMismatch`` when resuming over another job's results."""
    repair(path)
    if options.restart:
        removed = truncate(path)
        return f"--restart: removed {removed} earlier results from {path}" if removed else None
    check_resume(path, load_results(path), lines.key, expected, lines.fingerprint_of)
    if options.retry_failed:
        removed = drop_failed(path, lines.failed)
        return f"--retry-failed: {removed} failed rows of {path} run again" if removed else None
    return None
