"""The end-of-job summary: the metric over every result in the file (this run and earlier
ones), failures, tokens and throughput, as a rich table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from nanolang.jobs.dataset import Row
from nanolang.jobs.job import RunStats
from nanolang.jobs.metrics import resolve_metric


@dataclass(frozen=True)
class Summary:
    rows: int
    results: int
    failed: int
    metric: str
    scored: int
    correct: int
    completion_tokens: int

    @property
    def accuracy(self) -> float | None:
        """Correct over scored rows (rows with an expected answer; failed rows count wrong)."""
        return self.correct / self.scored if self.scored else None


def summarize(rows: Sequence[Row], results: Sequence[dict[str, Any]], metric: str) -> Summary:
    """The metric over the results of ``rows`` (results of other ids are ignored)."""
    score = resolve_metric(metric)
    by_id = {r.id: r for r in rows}
    mine = [r for r in results if str(r.get("id")) in by_id]
    scored = correct = 0
    for result in mine:
        row = by_id[str(result["id"])]
        if not row.has_expected:
            continue
        scored += 1
        correct += result.get("error") is None and score(result.get("output"), row.expected)
    return Summary(
        rows=len(rows),
        results=len(mine),
        failed=sum(1 for r in mine if r.get("error") is not None),
        metric=metric,
        scored=scored,
        correct=correct,
        completion_tokens=sum(int(r.get("completion_tokens", 0)) for r in mine),
    )


def summary_table(title: str, summary: Summary, run: RunStats) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    accuracy = summary.accuracy
    table.add_row("rows (done / in dataset)", f"{summary.results} / {summary.rows}")
    table.add_row("failed", str(summary.failed))
    score = "n/a" if accuracy is None else f"{accuracy:.1%} ({summary.correct}/{summary.scored})"
    table.add_row(f"{summary.metric} accuracy", score)
    table.add_row("generated tokens (all runs)", str(summary.completion_tokens))
    table.add_row("this run: rows / failed", f"{run.finished} / {run.failed}")
    rate = run.completion_tokens / run.wall_s if run.wall_s > 0 else 0.0
    table.add_row("this run: wall time", f"{run.wall_s:.1f}s ({rate:.1f} tok/s)")
    if run.stopped:
        table.add_row("stopped", run.stopped)
    return table


def print_summary(title: str, summary: Summary, run: RunStats) -> None:
    Console().print(summary_table(title, summary, run))
