"""How a running job reports: the project's progress bar (done / failed / tokens per second /
ETA) on stderr, or with ``quiet`` one plain log line per finished row (for log files). When
stderr is not a terminal (a log file, a pipe, a batch system's output), the bar could not be
drawn and showed nothing until the job ended; a plain status line every ``LOG_EVERY_S``
seconds (and after the last row) takes its place."""

from __future__ import annotations

import sys
import time
from collections.abc import Set
from pathlib import Path
from types import TracebackType

from rich.console import Console

from nanolang.api.progress import ProgressBar
from nanolang.jobs.error_text import error_head
from nanolang.jobs.results import done_ids
from nanolang.jobs.runner import Finished

INTERRUPTED = 130  # the exit status of a job stopped by Ctrl-C (128 + SIGINT), as shells use
LOG_EVERY_S = 30.0  # how often a job whose stderr is no terminal logs its progress


def clock(seconds: float | None) -> str:
    """``H:MM:SS`` (``-:--:--`` when unknown), as the bar shows times."""
    if seconds is None:
        return "-:--:--"
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def interrupted(path: Path, key: str, ids: Set[str]) -> str:
    """The one line a job stopped by Ctrl-C leaves: what is saved, and how to go on."""
    done = len(done_ids(path, key) & ids)
    return (
        f"interrupted: {done} of {len(ids)} rows are saved in {path}; "
        "run the same command again to resume"
    )


def stderr_is_terminal() -> bool:
    return Console(stderr=True).is_terminal


class JobProgress:
    """Context manager; ``advance(result)`` after each row. ``total`` counts pending rows.
    ``log_every_s``: without a terminal (and not ``quiet``), the seconds between status lines
    (default ``LOG_EVERY_S``)."""

    def __init__(
        self, title: str, total: int, quiet: bool = False, log_every_s: float | None = None
    ) -> None:
        live = not quiet and stderr_is_terminal()
        self.bar = ProgressBar(title, total, enabled=live, token_rate=True)
        self.quiet = quiet
        self.log_every_s = None if live or quiet else log_every_s or LOG_EVERY_S
        self.logged_at = time.perf_counter()

    def __enter__(self) -> JobProgress:
        self.bar.__enter__()
        self.logged_at = self.bar.start
        return self

    def advance(self, result: Finished) -> None:
        bar = self.bar
        bar.step(result.failed, result.completion_tokens)
        if self.quiet:
            status = "failed" if result.failed else "ok"
            why = f": {error_head(result.error)}" if result.error else ""
            self.log(f"row {result.row_id} {status} in {result.latency_s:.2f}s{why}")
        elif self.log_every_s is not None:
            now = time.perf_counter()
            if now - self.logged_at >= self.log_every_s or bar.done == bar.total:
                self.logged_at = now
                self.log(f"{clock(now - bar.start)} elapsed, ETA {clock(self.eta_s(now))}")

    def eta_s(self, now: float) -> float | None:
        bar = self.bar
        if not bar.done:
            return None
        return (now - bar.start) / bar.done * (bar.total - bar.done)

    def log(self, detail: str) -> None:
        bar = self.bar
        print(
            f"{bar.title}: {bar.done}/{bar.total} done, {bar.failed} failed, "
            f"{bar.rate:.1f} tok/s; {detail}",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bar.__exit__(exc_type, exc, tb)
