"""The one progress bar of the project: rich, on stderr, counting finished and failed items, with
generated tokens per second and an ETA when asked (``nanolang eval``)."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nanolang.run.records import Outcome


class ProgressBar:
    """Context manager; ``step(failed, tokens)`` after each item. Draws nothing when disabled."""

    def __init__(
        self, title: str, total: int, enabled: bool = True, token_rate: bool = False
    ) -> None:
        self.title, self.total = title, total
        self.done = self.failed = self.tokens = 0
        self.start = time.perf_counter()
        columns: list[str | ProgressColumn] = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
        ]
        if token_rate:
            columns.append(TextColumn("{task.fields[rate]:.1f} tok/s"))
        columns.append(TimeElapsedColumn())
        if token_rate:
            columns += [TextColumn("ETA"), TimeRemainingColumn()]
        self.progress = Progress(*columns, console=Console(stderr=True), disable=not enabled)
        self.task = self.progress.add_task(title, total=total, failed=0, rate=0.0)

    @property
    def rate(self) -> float:
        """Generated tokens per second since the bar started."""
        return self.tokens / max(time.perf_counter() - self.start, 1e-9)

    def __enter__(self) -> ProgressBar:
        self.start = time.perf_counter()
        self.progress.start()
        return self

    def step(self, failed: bool, tokens: int = 0) -> None:
        self.done += 1
        self.failed += failed
        self.tokens += tokens
        self.progress.update(self.task, advance=1, failed=self.failed, rate=self.rate)

    def advance(self, outcome: Outcome) -> None:
        """``step`` for one finished program instance (an executor's ``on_done``)."""
        self.step(outcome.error is not None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()
