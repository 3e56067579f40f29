"""The three ways the benchmark runs a program's instances on one engine.

- ``naive``: one call at a time (instances one after another, fork branches and ``select``
  alternatives too), on an engine without a prefix cache: a plain client. A ``select`` of
  one-token choices is one request in every mode (``choices``: scored from the context's
  next-token logprobs), so the modes differ in scheduling and caching, not in scoring.
- ``independent``: every instance at once, each call an independent request, prefix cache on:
  a frontend over a radix-cache runtime.
- ``graph``: every instance at once, calls handed to the runtime as graph nodes (pins, group
  admission, progress priority, instance preemption).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nanolang.backends.base import Backend
from nanolang.bench.cost import BatchTotals
from nanolang.bench.lockstep import LockstepBackend
from nanolang.run.executor import Executor
from nanolang.run.records import Outcome

if TYPE_CHECKING:
    from nanolang.backends.local import LocalBackend
    from nanolang.syntax import tree
    from runtime.outputs import RequestOutput
    from runtime.sampling_params import SamplingParams

MODES = ("naive", "independent", "graph")


class OneAtATime(Backend):
    """Sends one request at a time to ``inner`` (what a client without batching does)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self._lock = asyncio.Lock()

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    @property
    def kv_capacity_tokens(self) -> int | None:
        return self.inner.kv_capacity_tokens

    @property
    def scores_token_ids(self) -> bool:
        """As the inner backend: a ``select`` is scored the same way in every mode."""
        return self.inner.scores_token_ids

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        async with self._lock:
            return await self.inner.generate(prompt_ids, params)

    def close(self) -> None:
        """The inner backend belongs to the caller."""


@dataclass
class Measurement:
    """What one mode's run of one program measured (engine counters are deltas of this run)."""

    seconds: float
    outcomes: list[Outcome]
    latencies: list[float]
    prefill_tokens: int
    generated_tokens: int
    query_tokens: int
    hit_tokens: int
    peak_blocks: int
    preemptions: int
    iterations: int
    batches: BatchTotals = field(default_factory=BatchTotals)
    engine: dict[str, Any] = field(default_factory=dict)


class StepLog:
    """Wraps the engine's ``step`` to note, over the steps that launched a batch, the most KV
    blocks held after any step and the batches' sizes (see ``BatchTotals``)."""

    def __init__(self, backend: LocalBackend) -> None:
        self.llm = backend.llm
        self.engine = backend.llm.engine
        self.allocator = backend.llm.engine.blocks.allocator
        self.peak = 0
        self.totals = BatchTotals()
        self._step = backend.llm.step
        backend.llm.step = self.step

    def step(self) -> list[RequestOutput]:
        stats = self.engine.stats
        before = stats.num_iterations
        outputs = self._step()
        self.peak = max(self.peak, self.allocator.num_used)
        if stats.num_iterations > before:
            self.totals.add(
                stats.last_batch_tokens, stats.last_batch_seqs, stats.last_kv_tokens_read
            )
            self.totals.schedule_seconds += stats.last_schedule_seconds
        return outputs

    def restore(self) -> None:
        self.llm.step = self._step


async def _run_all(executor: Executor, jobs: list[tuple[str, dict[str, Any]]], concurrency: int):
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = [0.0] * len(jobs)

    async def one(index: int, job: tuple[str, dict[str, Any]]) -> Outcome:
        async with gate:
            start = time.perf_counter()
            outcome = await executor.run(job[0], job[1], index)
            latencies[index] = time.perf_counter() - start
            return outcome

    outcomes = await asyncio.gather(*(one(i, j) for i, j in enumerate(jobs)))
    return list(outcomes), latencies


@contextmanager
def collector_paused(pause: bool = True) -> Iterator[None]:
    """Python's cyclic garbage collector off inside (after a full collection before), when
    ``pause``. A thousand instances in flight hold millions of token ids in lists, and every
    full collection walks them all: on the CPU they cost 40% of the host time of a thousand
    tree-of-thought instances (gen-2 collections of 0.4 s each), whatever the mode."""
    if not pause:
        yield
        return
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_mode(
    mode: str,
    backend: LocalBackend,
    module: tree.Module,
    jobs: list[tuple[str, dict[str, Any]]],
    pause_gc: bool = True,
) -> Measurement:
    """Run ``jobs`` (program name, arguments) in ``mode`` on ``backend``'s engine (with the
    garbage collector paused while they run, when ``pause_gc``)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    engine = backend.llm.engine
    cache = engine.blocks.cache
    if cache is not None:
        cache.reset()  # no mode starts from another's cached prefixes
    stats = engine.stats
    before = (
        stats.prompt_tokens_computed,
        stats.generated_tokens,
        stats.num_preemptions,
        stats.num_iterations,
    )
    cache_before = (cache.stats.query_tokens, cache.stats.hit_tokens) if cache else (0, 0)
    naive = mode == "naive"
    target: Backend = OneAtATime(backend) if naive else backend
    executor = Executor(module, target, seed=0, graph=mode == "graph")
    peak = StepLog(backend)
    with collector_paused(pause_gc):
        start = time.perf_counter()
        try:
            main = _run_all(executor, jobs, 1 if naive else len(jobs))
            if isinstance(backend, LockstepBackend):
                outcomes, latencies = backend.run(main)
            else:
                outcomes, latencies = asyncio.run(main)
        finally:
            peak.restore()
        seconds = time.perf_counter() - start
    cache_after = (cache.stats.query_tokens, cache.stats.hit_tokens) if cache else (0, 0)
    return Measurement(
        seconds=seconds,
        outcomes=outcomes,
        latencies=latencies,
        prefill_tokens=stats.prompt_tokens_computed - before[0],
        generated_tokens=stats.generated_tokens - before[1],
        query_tokens=cache_after[0] - cache_before[0],
        hit_tokens=cache_after[1] - cache_before[1],
        peak_blocks=peak.peak,
        preemptions=stats.num_preemptions - before[2],
        iterations=stats.num_iterations - before[3],
        batches=peak.totals,
        engine=dict(vars(engine.scheduler.instances.stats)),
    )
