"""Shared pieces of the subcommands: loading a file and reporting errors on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from nanolang.check.checker import check
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError, NanoErrors
from nanolang.syntax.parser import parse
from nanolang.syntax.source import read_source


def load_module(path: str) -> tree.Module | None:
    """Parse and check ``path``; print every error to stderr and return None if any."""
    try:
        source = read_source(path)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None
    except NanoError as exc:
        print(exc.format(), file=sys.stderr)
        return None
    try:
        module = parse(source, path)
    except NanoError as exc:
        print(exc.format(), file=sys.stderr)
        return None
    errors = check(module)
    if errors:
        report(NanoErrors(list(errors)))
        return None
    return module


def report(error: NanoError | NanoErrors) -> None:
    print(error.format(), file=sys.stderr)


def holding_results(path: Path, job: Callable[[], int]) -> int:
    """``job()`` while this process holds ``path``, the job's results file (one job per results
    file); exit status 1, naming the other job, when another job is writing it."""
    from nanolang.jobs.job_files import check_results_location
    from nanolang.jobs.lock import JobLock, ResultsInUse
    from nanolang.jobs.signals import interrupting_signals

    lock = JobLock(path)
    try:
        check_results_location(path)  # a folder, or a location that cannot be made
        lock.__enter__()
    except (ResultsInUse, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a folder that cannot be made or written (read-only, a file)
        print(f"error: cannot write the results file {path}: {exc}", file=sys.stderr)
        return 1
    try:
        with interrupting_signals():  # SIGTERM (a batch system's) and SIGINT stop it as Ctrl-C
            return job()
    finally:
        lock.__exit__(None, None, None)
