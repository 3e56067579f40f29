"""How a running job reports: a rich progress bar (done / failed / tokens per second / ETA) on
stderr, or with ``quiet`` one plain log line per finished row (for log files)."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nanolang.jobs.results import Result


class JobProgress:
    """Context manager; ``advance(result)`` after each row. ``total`` counts pending rows."""

    def __init__(self, title: str, total: int, quiet: bool = False) -> None:
        self.title = title
        self.total = total
        self.quiet = quiet
        self.done = 0
        self.failed = 0
        self.tokens = 0
        self.start = time.perf_counter()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("{task.fields[rate]:.1f} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=quiet,
        )
        self.task = self.progress.add_task(title, total=total, failed=0, rate=0.0)

    @property
    def rate(self) -> float:
        """Generated tokens per second in this run."""
        return self.tokens / max(time.perf_counter() - self.start, 1e-9)

    def __enter__(self) -> JobProgress:
        self.start = time.perf_counter()
        self.progress.start()
        return self

    def advance(self, result: Result) -> None:
        self.done += 1
        self.failed += result.error is not None
        self.tokens += result.completion_tokens
        self.progress.update(self.task, advance=1, failed=self.failed, rate=self.rate)
        if self.quiet:
            status = "failed" if result.error is not None else "ok"
            print(
                f"{self.title}: {self.done}/{self.total} done, {self.failed} failed, "
                f"{self.rate:.1f} tok/s; row {result.id} {status} in {result.time_s:.2f}s",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()
