"""The files a job writes, checked before anything is written: the one check of both the CLIs
(``nanolang eval`` / ``batch``) and the Python API (``ResultLog``).

Refused, with a ``ValueError`` naming the file: a results file that is a folder, one of the
job's inputs (the dataset given as the output: the job would append its results to it, and
``--restart`` would empty it), or in a folder that cannot be made; a results file holding lines
that are not results (another kind of file: ``FingerprintMismatch``, a ``ValueError``); a report
that is a folder, the results file or an input (written after the last row, over it), or in a
folder that cannot be made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nanolang.jobs.result_lines import first_foreign_line, not_results


def check_job_files(
    out: Path, inputs: Sequence[Path] = (), report: Path | None = None, lines: bool = True
) -> None:
    """Refuse ``out`` (the results file) and ``report`` as the module docstring says; make
    their folders. ``lines=False`` leaves out the scan of ``out``'s lines (``ResultLog`` checks
    them as it reads them)."""
    check_results_location(out)
    for source in inputs:
        if out.exists() and source.exists() and out.samefile(source):
            raise ValueError(
                f"the output file {out} is the job's input {source}: give another output file"
            )
    if lines:
        check_results_lines(out)
    if report is not None:
        check_report(report, [out, *inputs])


def check_results_location(out: Path) -> None:
    """``ValueError`` when ``out`` is a folder or its folder cannot be made (a file in the
    way, no permission); else its folder exists."""
    if out.is_dir():
        raise ValueError(f"the output file {out} is a directory: give a file in it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot write the results file {out}: {exc}") from None


def check_results_lines(out: Path) -> None:
    """``FingerprintMismatch`` when a line of ``out`` is not a result (``first_foreign_line``)."""
    number = first_foreign_line(out)
    if number is not None:
        raise not_results(out, number)


def check_report(report: Path, job_files: Sequence[Path]) -> None:
    """``ValueError`` when ``report`` is a folder, one of ``job_files`` or in a folder that
    cannot be made; else its folder exists."""
    if report.is_dir():
        raise ValueError(f"the report {report} is a directory: give a file in it")
    for other in job_files:
        if report.resolve() == other.resolve():
            raise ValueError(f"the report {report} is the job's file {other}: give another file")
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot write the report {report}: {exc}") from None
