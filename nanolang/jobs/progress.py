"""How a running job reports: the project's progress bar (done / failed / tokens per second /
ETA) on stderr, or with ``quiet`` one plain log line per finished row (for log files)."""

from __future__ import annotations

import sys
from collections.abc import Set
from pathlib import Path
from types import TracebackType

from nanolang.api.progress import ProgressBar
from nanolang.jobs.results import load_results, one_per_id
from nanolang.jobs.runner import Finished

INTERRUPTED = 130  # the exit status of a job stopped by Ctrl-C (128 + SIGINT), as shells use


def interrupted(path: Path, key: str, ids: Set[str]) -> str:
    """The one line a job stopped by Ctrl-C leaves: what is saved, and how to go on."""
    done = len(one_per_id(load_results(path), key, ids))
    return (
        f"interrupted: {done} of {len(ids)} rows are saved in {path}; "
        "run the same command again to resume"
    )


class JobProgress:
    """Context manager; ``advance(result)`` after each row. ``total`` counts pending rows."""

    def __init__(self, title: str, total: int, quiet: bool = False) -> None:
        self.bar = ProgressBar(title, total, enabled=not quiet, token_rate=True)
        self.quiet = quiet

    def __enter__(self) -> JobProgress:
        self.bar.__enter__()
        return self

    def advance(self, result: Finished) -> None:
        bar = self.bar
        bar.step(result.failed, result.completion_tokens)
        if self.quiet:
            status = "failed" if result.failed else "ok"
            print(
                f"{bar.title}: {bar.done}/{bar.total} done, {bar.failed} failed, "
                f"{bar.rate:.1f} tok/s; row {result.row_id} {status} in {result.latency_s:.2f}s",
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
