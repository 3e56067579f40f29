"""``EvalJob``: run a program once per pending dataset row, recording each result as it finishes.

Instances run concurrently on the language's ``Executor`` (``Executor.run`` per row, at most
``max_concurrency`` at a time), so the backend batches their requests. Each instance's index is
its row's line number: with a seed, a row's sampling does not depend on which other rows are
still pending, so a resumed job computes what an uninterrupted one would have.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

from nanolang.backends.base import Backend
from nanolang.jobs.dataset import Expected, Row
from nanolang.jobs.error_text import kept_error
from nanolang.jobs.fingerprint import Fingerprint, digest, program_digest
from nanolang.jobs.job_files import check_job_files
from nanolang.jobs.results import Result, ResultLog
from nanolang.jobs.row_file import StreamedRows
from nanolang.jobs.runner import CacheStats, Finished, JobWriter, RunStats, run_local
from nanolang.run.executor import Executor
from nanolang.run.records import Outcome
from nanolang.run.tools import Tools, read_tools, tools_from_source
from nanolang.syntax import tree


@dataclass(frozen=True)
class JobConfig:
    program: str
    seed: int | None = 0
    max_concurrency: int = 64
    max_errors: int | None = None
    tools: str | None = None  # a Python file with the functions of the module's tool declarations
    tools_source: str | None = None  # its text (read once, so every replica runs the same tools)

    def with_tools(self, path: str | None) -> JobConfig:
        if path is None:
            return self
        return replace(self, tools=path, tools_source=read_tools(path))

    def load_tools(self, module: tree.Module) -> Tools:
        if self.tools_source is None:
            return {}
        return tools_from_source(self.tools_source, self.tools or "<tools>", module)


def job_fingerprint(module: tree.Module, config: JobConfig) -> Fingerprint:
    """What decides every row's result: the program, the seed and the host tools' code."""
    settings: dict[str, object] = {"seed": config.seed}
    if config.tools_source is not None:
        settings["tools"] = config.tools_source
    return {"program": program_digest(module, config.program), "settings": digest(settings)}


def row_fingerprint(job: Fingerprint, row: Row) -> Fingerprint:
    """The job's parts and the row's (its line number picks its instance's seeds)."""
    return {**job, "row": digest({"args": row.args, "expected": row.expected, "line": row.line})}


@dataclass(frozen=True, slots=True)
class RowFacts(Expected):
    """What ``nanolang eval`` keeps of each row from the one scan of its dataset
    (``RowRef.kept``): its expected answer (the summary), fingerprint (resuming) and group key
    (``--shard`` order, ``--ray`` chunks)."""

    fingerprint: Fingerprint
    group: str


def row_facts(
    module: tree.Module, config: JobConfig, group: Callable[[Row], str]
) -> Callable[[Row], RowFacts]:
    """Each row's ``RowFacts`` for this job (``group``: its group key; keys repeat across rows
    and are shared)."""
    job = job_fingerprint(module, config)
    return lambda row: RowFacts(
        row.has_expected, row.expected, row_fingerprint(job, row), sys.intern(group(row))
    )


def engine_cache_stats(backend: Backend) -> CacheStats | None:
    """The prefix cache's counters of an in-process engine (None for remote backends)."""
    engine = getattr(getattr(backend, "llm", None), "engine", None)
    cache = getattr(getattr(engine, "blocks", None), "cache", None)
    if cache is None:
        return None
    return CacheStats(int(cache.stats.query_tokens), int(cache.stats.hit_tokens))


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
        error=None if outcome.error is None else kept_error(outcome.error.format()),
        expected=row.expected,
        time_s=round(elapsed, 4),
        prompt_tokens=sum(len(c.prompt_token_ids) for c in outcome.calls),
        completion_tokens=completion,
        calls=len(outcome.calls),
        fingerprint=fingerprint,
    )


class EvalRunner:
    """Runs one row's program instance on an executor; a ``Runner`` for ``run_local`` and the
    Ray replicas."""

    def __init__(self, module: tree.Module, backend: Backend, config: JobConfig) -> None:
        self.executor = Executor(
            module,
            backend,
            seed=config.seed,
            max_concurrency=config.max_concurrency,
            tools=config.load_tools(module),
        )
        self.job = job_fingerprint(module, config)
        self.backend = backend
        self.config = config

    def row_id(self, row: Row) -> str:
        return row.id

    async def run(self, row: Row) -> Finished:
        start = time.perf_counter()
        outcome = await self.executor.run(self.config.program, row.args, row.line)
        elapsed = time.perf_counter() - start
        result = result_of(row, outcome, elapsed, self.backend, row_fingerprint(self.job, row))
        return Finished(
            row.id,
            asdict(result),
            result.error is not None,
            result.completion_tokens,
            elapsed,
            result.error,
        )

    def cache_stats(self) -> CacheStats | None:
        return engine_cache_stats(self.backend)


class EvalJob:
    """Runs ``rows`` of ``module``'s program ``config.program`` and appends to ``results``."""

    def __init__(
        self,
        module: tree.Module,
        backend: Backend,
        config: JobConfig,
        results: ResultLog,
        on_result: Callable[[Finished], None] | None = None,
    ) -> None:
        self.runner = EvalRunner(module, backend, config)
        self.writer = JobWriter(results, config.max_errors, on_result)
        self.config = config

    def run(self, rows: Iterable[Row]) -> RunStats:
        """Run every row not yet in the results; stops early past ``max_errors``. Rows of
        ``read_rows`` are read from their file as they run; their file given as the results
        file is a ``ValueError`` before any row runs (as ``ResultLog(out, inputs=[data])``)."""
        if isinstance(rows, StreamedRows):
            check_job_files(self.writer.results.path, [rows.path], lines=False)
        return run_local(self.runner, rows, self.writer, self.config.max_concurrency)
