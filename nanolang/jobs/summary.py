"""The end-of-job summary: the metric over every result in the file (this run and earlier
ones), errors (the most common first lines in the table; one whole text of each for
``--report``), latency p50 / p99, tokens, and this run's throughput and prefix-cache hit rate,
as a rich table (and as data for ``--report``)."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from nanolang.jobs.dataset import Expected, Row
from nanolang.jobs.error_text import error_head
from nanolang.jobs.metrics import resolve_metric
from nanolang.jobs.results import last_per_id
from nanolang.jobs.row_file import StreamedRows
from nanolang.jobs.runner import RunStats

TOP_ERRORS = 3


@dataclass(frozen=True)
class RowStats:
    """What the summary needs of one result line (eval or batch)."""

    error: str | None
    latency_s: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Summary:
    rows: int
    results: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    latency_p50_s: float | None
    latency_p99_s: float | None
    errors: tuple[tuple[str, int], ...] = ()  # (first line, shortened; rows), most common first
    error_examples: tuple[str, ...] = ()  # for each of ``errors``, one whole error text
    metric: str | None = None
    scored: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        """Correct over scored rows (rows with an expected answer; failed rows count wrong)."""
        return self.correct / self.scored if self.scored else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize_stats(total_rows: int, stats: Iterable[RowStats], **metric: Any) -> Summary:
    """A summary of ``stats`` (one per result) out of ``total_rows`` rows."""
    items = list(stats)
    latencies = [s.latency_s for s in items]
    errors: Counter[str] = Counter()
    example: dict[str, str] = {}  # each head's first error, whole
    for s in items:
        if s.error is not None:
            head = error_head(s.error)
            errors[head] += 1
            example.setdefault(head, s.error)
    common = errors.most_common(TOP_ERRORS)
    return Summary(
        rows=total_rows,
        results=len(items),
        failed=sum(errors.values()),
        prompt_tokens=sum(s.prompt_tokens for s in items),
        completion_tokens=sum(s.completion_tokens for s in items),
        latency_p50_s=percentile(latencies, 50),
        latency_p99_s=percentile(latencies, 99),
        errors=tuple(common),
        error_examples=tuple(example[head] for head, _ in common),
        **metric,
    )


def eval_row_stats(result: Mapping[str, Any]) -> RowStats:
    return RowStats(
        error=result.get("error"),
        latency_s=float(result.get("time_s", 0.0)),
        prompt_tokens=int(result.get("prompt_tokens", 0)),
        completion_tokens=int(result.get("completion_tokens", 0)),
    )


Answer = tuple[bool, Any]  # a row's (has an expected answer, the expected answer)


def summarize(rows: Iterable[Row], results: Iterable[Mapping[str, Any]], metric: str) -> Summary:
    """The metric over the results of ``rows``, one per row (results of other ids are ignored;
    of a row with several lines, the last). ``results`` may be streamed (``iter_results``): per
    row only its stats and score are kept; ``rows`` may be streamed (``read_rows``): per row
    only its expected answer is kept, as the scan kept it (no row is read again)."""
    return summarize_answers(answers(rows), results, metric)


def answers(rows: Iterable[Row]) -> dict[str, Answer]:
    """Each row's ``Answer`` by id: of streamed rows whose scan kept their ``Expected`` answers
    (``read_rows``, ``nanolang eval``'s ``RowFacts``), those; else each row's, reading it."""
    if isinstance(rows, StreamedRows) and all(isinstance(r.kept, Expected) for r in rows.refs):
        return {ref.id: (ref.kept.has_expected, ref.kept.expected) for ref in rows.refs}
    return {row.id: (row.has_expected, row.expected) for row in rows}


def summarize_answers(
    by_id: Mapping[str, Answer], results: Iterable[Mapping[str, Any]], metric: str
) -> Summary:
    """``summarize`` given each row's ``Answer`` by id (the rows are not read)."""
    score = resolve_metric(metric)

    def scored(result: Mapping[str, Any]) -> tuple[RowStats, bool | None]:
        has_expected, expected = by_id[str(result["id"])]
        if not has_expected:
            return eval_row_stats(result), None
        right = result.get("error") is None and bool(score(result.get("output"), expected))
        return eval_row_stats(result), right

    mine = last_per_id(results, "id", by_id, scored)
    marks = [right for _, right in mine if right is not None]
    stats = [row_stats for row_stats, _ in mine]
    return summarize_stats(len(by_id), stats, metric=metric, scored=len(marks), correct=sum(marks))


def error_kinds(summary: Summary) -> list[tuple[int, str]]:
    """The most common errors as (rows, one whole text) for ``--report``."""
    pairs = zip(summary.errors, summary.error_examples, strict=False)
    return [(count, text) for (_, count), text in pairs]


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}s"


def summary_rows(summary: Summary, run: RunStats) -> list[tuple[str, str]]:
    """The summary as (measure, value) pairs: the table's rows, and the HTML report's."""
    out = [("rows (done / in dataset)", f"{summary.results} / {summary.rows}")]
    if summary.metric is not None:
        accuracy = summary.accuracy
        score = "n/a"
        if accuracy is not None:
            score = f"{accuracy:.1%} ({summary.correct}/{summary.scored})"
        out.append((f"{summary.metric} accuracy", score))
    out.append(("errors", str(summary.failed)))
    out += [(f"  {count} x", message) for message, count in summary.errors]
    out.append(("latency p50 / p99", f"{seconds(summary.latency_p50_s)} / "
                f"{seconds(summary.latency_p99_s)}"))  # fmt: skip
    out.append(("tokens (prompt / generated)", f"{summary.prompt_tokens} / "
                f"{summary.completion_tokens}"))  # fmt: skip
    hit = "n/a" if run.cache_hit_rate is None else f"{run.cache_hit_rate:.1%}"
    out.append(("this run: prefix cache hit rate", hit))
    out.append(("this run: rows / failed", f"{run.finished} / {run.failed}"))
    rate = run.completion_tokens / run.wall_s if run.wall_s > 0 else 0.0
    out.append(("this run: wall time", f"{run.wall_s:.1f}s ({rate:.1f} generated tok/s)"))
    if run.stopped:
        out.append(("stopped", run.stopped))
    return out


def summary_table(title: str, summary: Summary, run: RunStats) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for measure, value in summary_rows(summary, run):
        table.add_row(measure, value)
    return table


def print_summary(title: str, summary: Summary, run: RunStats) -> None:
    Console().print(summary_table(title, summary, run))
    if summary.failed:  # their lines stay in the file, so a plain rerun skips them
        rows = "1 row" if summary.failed == 1 else f"{summary.failed} rows"
        print(
            f"note: {rows} failed; --retry-failed runs them again (the finished rows are kept)",
            file=sys.stderr,
        )
