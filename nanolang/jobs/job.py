"""``EvalJob``: run a program once per pending dataset row, recording each result as it finishes.

Instances run concurrently on the language's ``Executor`` (``Executor.run`` per row, at most
``max_concurrency`` at a time), so the backend batches their requests. Each instance's index is
its row's line number: with a seed, a row's sampling does not depend on which other rows are
still pending, so a resumed job computes what an uninterrupted one would have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nanolang.backends.base import Backend
from nanolang.jobs.dataset import Row
from nanolang.jobs.fingerprint import Fingerprint, digest, program_digest
from nanolang.jobs.results import Result, ResultLog
from nanolang.run.executor import Executor
from nanolang.run.records import Outcome
from nanolang.syntax import tree


class TooManyErrors(RuntimeError):
    """More rows failed than ``--max-errors`` allows; the job stopped."""


@dataclass(frozen=True)
class JobConfig:
    program: str
    seed: int | None = 0
    max_concurrency: int = 64
    max_errors: int | None = None


@dataclass(frozen=True)
class RunStats:
    """What this run did (rows finished earlier are not counted). ``cache_hit_rate``: the
    share of prompt tokens the engine(s) served from the prefix cache (None when unknown, e.g.
    behind a server)."""

    finished: int
    failed: int
    completion_tokens: int
    wall_s: float
    stopped: str | None = None
    cache_hit_rate: float | None = None


def row_fingerprints(
    module: tree.Module, config: JobConfig, rows: Sequence[Row]
) -> dict[str, Fingerprint]:
    """What decides each row's result: the program, the seed, the row (its line number picks
    its instance's seeds)."""
    program = program_digest(module, config.program)
    settings = digest({"seed": config.seed})
    return {
        row.id: {
            "program": program,
            "settings": settings,
            "row": digest({"args": row.args, "expected": row.expected, "line": row.line}),
        }
        for row in rows
    }


def cache_hit_rate(backend: Backend) -> float | None:
    """The prefix cache's hit rate of an in-process engine (None for remote backends)."""
    engine = getattr(getattr(backend, "llm", None), "engine", None)
    cache = getattr(getattr(engine, "blocks", None), "cache", None)
    return None if cache is None else float(cache.stats.hit_rate)


def result_of(
    row: Row,
    outcome: Outcome,
    elapsed: float,
    backend: Backend,
    fingerprint: Fingerprint | None = None,
) -> Result:
    generated = [c.text for c in outcome.calls if c.kind == "gen"]
    completion = 0
    if generated:  # a request succeeded, so the tokenizer is at hand (a dead server has none)
        tokenizer = backend.tokenizer
        completion = sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in generated)
    return Result(
        id=row.id,
        line=row.line,
        output=outcome.value if outcome.error is None else None,
        error=None if outcome.error is None else outcome.error.format(),
        expected=row.expected,
        time_s=round(elapsed, 4),
        prompt_tokens=sum(len(c.prompt_token_ids) for c in outcome.calls),
        completion_tokens=completion,
        calls=len(outcome.calls),
        fingerprint=fingerprint,
    )


class EvalJob:
    """Runs ``rows`` of ``module``'s program ``config.program`` and appends to ``results``."""

    def __init__(
        self,
        module: tree.Module,
        backend: Backend,
        config: JobConfig,
        results: ResultLog,
        on_result: Callable[[Result], None] | None = None,
    ) -> None:
        self.executor = Executor(
            module, backend, seed=config.seed, max_concurrency=config.max_concurrency
        )
        self.backend = backend
        self.config = config
        self.results = results
        self.on_result = on_result
        self.finished = 0
        self.failed = 0
        self.completion_tokens = 0
        self.stop_reason: str | None = None
        self.fingerprints: dict[str, Fingerprint] = {}

    def run(self, rows: Sequence[Row]) -> RunStats:
        """Run every row not yet in the results; stops early on ``TooManyErrors``."""
        pending = [r for r in rows if r.id not in self.results.done]
        self.fingerprints = row_fingerprints(self.executor.module, self.config, pending)
        start = time.perf_counter()
        stopped = None
        try:
            asyncio.run(self._run_all(pending))
        except TooManyErrors as exc:
            stopped = str(exc)
        elapsed = time.perf_counter() - start
        return RunStats(
            self.finished,
            self.failed,
            self.completion_tokens,
            elapsed,
            stopped,
            cache_hit_rate(self.backend),
        )

    async def _run_all(self, rows: Sequence[Row]) -> None:
        gate = asyncio.Semaphore(self.config.max_concurrency)
        try:
            async with asyncio.TaskGroup() as group:
                for row in rows:
                    group.create_task(self._run_one(row, gate))
        except* TooManyErrors as errors:
            raise errors.exceptions[0] from None

    async def _run_one(self, row: Row, gate: asyncio.Semaphore) -> None:
        async with gate:
            if self.stop_reason is not None:  # the job is stopping: start no more rows
                return
            start = time.perf_counter()
            outcome = await self.executor.run(self.config.program, row.args, row.line)
            elapsed = time.perf_counter() - start
        result = result_of(row, outcome, elapsed, self.backend, self.fingerprints.get(row.id))
        self.results.append(result)
        self.finished += 1
        self.failed += result.error is not None
        self.completion_tokens += result.completion_tokens
        if self.on_result is not None:
            self.on_result(result)
        limit = self.config.max_errors
        if limit is not None and self.failed > limit and self.stop_reason is None:
            self.stop_reason = f"{self.failed} rows failed (more than --max-errors {limit})"
            raise TooManyErrors(self.stop_reason)
