"""A rich progress bar for batch runs (counts finished and failed instances)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nanolang.run.records import Outcome


class BatchProgress:
    """Context manager; ``advance(outcome)`` after each instance. Draws on stderr."""

    def __init__(self, total: int, enabled: bool = True, title: str = "batch") -> None:
        self.total = total
        self.failed = 0
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed: {task.fields[failed]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.progress.add_task(title, total=total, failed=0)

    def __enter__(self) -> BatchProgress:
        self.progress.start()
        return self

    def advance(self, outcome: Outcome) -> None:
        if outcome.error is not None:
            self.failed += 1
        self.progress.update(self.task, advance=1, failed=self.failed)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()
