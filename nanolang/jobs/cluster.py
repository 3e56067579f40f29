"""``--ray [ADDRESS]``: a job's rows on a Ray cluster, one engine replica per GPU (or per CPU
slot on a CPU cluster), results streamed back to this process's one writer.

Ray core actors, not Ray Data: the job needs to choose which replica gets which rows (chunks of
rows sharing a prompt prefix go to a replica that already holds that prefix, ``dispatch.py``),
to know exactly which rows a replica still held when it died (to re-queue those and no others),
and to keep many rows in flight inside each replica (continuous batching), with one writer
that appends and fsyncs exactly as a one-process run does. Actors with a streaming generator
method give all of that directly; Ray Data's actor pools hand blocks to any actor, retry whole
blocks on failure, and bring pyarrow and pandas with them.

Each replica is an async actor that loads the model once and runs ``finished_rows`` on the chunk
it is given, yielding each row's ``Finished`` line as it completes. Two chunks are kept in
flight per replica so it never idles between chunks. Chunks hold the rows' ``RowRef``s (from the
one scan of the input); a chunk's rows are read from the input file only when a replica takes
it, so the driver holds at most replicas x 2 x ``--chunk-rows`` rows at once, whatever the
input's size (a ref per pending row, and no row, otherwise). A replica that dies (its process
killed, its node lost) fails its streams: the rows whose lines had not arrived go back to the
front of the queue (as refs, read again when taken) and run elsewhere (or on the replica Ray
restarts, ``max_restarts``); rows whose lines arrived were already written, and the writer never
writes an id twice. Seeds derive from each row alone, so a re-queued row computes what it would
have computed on the first replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ObjectLostError, RayActorError

from nanolang.jobs.dispatch import Chunk, ClusterOptions, Dispatcher, make_chunks
from nanolang.jobs.row_file import DatasetError, RowRef, StreamedRows
from nanolang.jobs.runner import (
    CacheStats,
    Finished,
    JobWriter,
    Runner,
    RunStats,
    TooManyErrors,
    finished_rows,
)

log = logging.getLogger(__name__)

NAMESPACE = "nanolang"
FEEDERS_PER_REPLICA = 2
ALIVE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica builds: the engine (``model``, ``device``, ``dtype``) and the runner
    (``kind`` "eval": the program's source, entry and seed; "batch": the served model name)."""

    kind: str
    model: str
    device: str = "cpu"
    dtype: str = "float32"
    concurrency: int = 64
    program_file: str = ""
    program_source: str = ""
    program: str = "main"
    seed: int | None = 0
    model_name: str = ""
    tools_file: str | None = None
    tools_source: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("eval", "batch"):
            raise ValueError(f"kind must be eval or batch, got {self.kind!r}")


def build_runner(spec: ReplicaSpec) -> Runner:
    """The runner a replica uses (the same ones a one-process run uses)."""
    from nanolang.backends.local import LocalBackend

    backend = LocalBackend.from_model(spec.model, device=spec.device, dtype=spec.dtype)
    if spec.kind == "batch":
        from nanolang.jobs.batch import BatchRunner, local_client_factory

        return BatchRunner(local_client_factory(backend, spec.model_name), backend=backend)
    from nanolang.jobs.job import EvalRunner, JobConfig
    from nanolang.syntax.parser import parse

    module = parse(spec.program_source, spec.program_file)
    config = JobConfig(
        spec.program,
        spec.seed,
        spec.concurrency,
        tools=spec.tools_file,
        tools_source=spec.tools_source,
    )
    return EvalRunner(module, backend, config)


class Replica:
    """One engine replica (a Ray actor)."""

    def __init__(self, spec: ReplicaSpec) -> None:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus and spec.device == "cpu":
            import torch

            torch.set_num_threads(max(1, int(cpus)))
        self.spec = spec
        self.runner = build_runner(spec)

    def pid(self) -> int:
        return os.getpid()

    def cache_stats(self) -> CacheStats | None:
        return self.runner.cache_stats()

    async def run(self, rows: list[Any]) -> Any:
        async for item in finished_rows(self.runner, rows, self.spec.concurrency):
            yield item


def connect(address: str | None) -> bool:
    """Join (or start) the cluster; True when this call initialised Ray (and so shuts it down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False}
    if address:
        kwargs["address"] = address
    elif not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    ray.init(logging_level=logging.WARNING, **kwargs)
    return True


def replica_count(spec: ReplicaSpec, options: ClusterOptions) -> int:
    if options.replicas is not None:
        if options.replicas < 1:
            raise ValueError(f"--replicas must be >= 1, got {options.replicas}")
        return options.replicas
    resources = ray.cluster_resources()
    if spec.device != "cpu":
        return max(1, int(resources.get("GPU", 0)))
    return max(1, int(resources.get("CPU", 1) // options.replica_cpus))


def start_replicas(spec: ReplicaSpec, options: ClusterOptions, count: int) -> list[Any]:
    actor = ray.remote(Replica)
    gpus = 0 if spec.device == "cpu" else 1
    return [
        actor.options(
            name=f"nanolang-replica-{os.getpid()}-{i}",
            num_cpus=options.replica_cpus,
            num_gpus=gpus,
            max_restarts=options.max_restarts,
            max_task_retries=0,
            max_concurrency=FEEDERS_PER_REPLICA + 2,
        ).remote(spec)
        for i in range(count)
    ]


async def alive(actor: Any) -> bool:
    """Whether ``actor`` answers (waits while Ray restarts it)."""
    try:
        await asyncio.wait_for(actor.pid.remote(), ALIVE_TIMEOUT_S)
    except (RayActorError, TimeoutError):
        return False
    return True


Read = Callable[[Sequence[RowRef]], list[Any]]  # a chunk's refs -> its rows, read from the file


async def feed(
    index: int,
    actor: Any,
    dispatcher: Dispatcher,
    writer: JobWriter,
    read: Read,
) -> None:
    """Keep one chunk at a time running on replica ``index`` until there are none left. The
    chunk's rows are read from the file as it is sent (and held by Ray until its task ends)."""
    while (chunk := await dispatcher.take(index)) is not None:
        received: set[str] = set()
        try:
            stream = actor.run.options(num_returns="streaming").remote(read(chunk.rows))
            async for ref in stream:
                item: Finished = await ref
                received.add(item.row_id)
                writer.write(item)
        except (RayActorError, ObjectLostError) as exc:
            await lost(index, chunk, received, dispatcher, exc)
            if not await alive(actor):
                log.warning("replica %d is gone; the others carry on", index)
                return
            continue
        await dispatcher.finish(chunk)


async def lost(
    index: int, chunk: Chunk, received: set[str], dispatcher: Dispatcher, exc: Exception
) -> None:
    unfinished = [ref for ref in chunk.rows if ref.id not in received]
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    log.warning("replica %d died with %d rows unfinished; re-queued (%s)",
                index, len(unfinished), reason)  # fmt: skip
    await dispatcher.finish(chunk, unfinished)


async def drive(actors: Sequence[Any], dispatcher: Dispatcher, writer: JobWriter, read: Read
                ) -> None:  # fmt: skip
    try:
        async with asyncio.TaskGroup() as group:
            for index, actor in enumerate(actors):
                for _ in range(FEEDERS_PER_REPLICA):
                    group.create_task(feed(index, actor, dispatcher, writer, read))
    except* (TooManyErrors, DatasetError) as errors:
        raise errors.exceptions[0] from None


def cluster_cache_stats(actors: Sequence[Any]) -> CacheStats | None:
    """The prefix-cache counters summed over the replicas still alive."""
    total: CacheStats | None = None
    for actor in actors:
        try:
            stats = ray.get(actor.cache_stats.remote(), timeout=30)
        except (RayActorError, ray.exceptions.GetTimeoutError):
            continue
        if stats is not None:
            total = stats if total is None else total + stats
    return total


def run_on_ray(
    spec: ReplicaSpec,
    rows: StreamedRows[Any],
    group: Callable[[RowRef], str],
    writer: JobWriter,
    options: ClusterOptions,
) -> RunStats:
    """Run the rows not yet in ``writer``'s results on the cluster's replicas: chunks of their
    refs cut by ``group(ref)`` (the prefix-group key the scan kept), each chunk's rows read
    from the file when a replica takes it."""
    started = connect(options.address)
    actors: list[Any] = []
    try:
        actors = start_replicas(spec, options, replica_count(spec, options))
        pending = rows.without(writer.results.done)  # finished rows are not read

        def read(refs: Sequence[RowRef]) -> list[Any]:
            return list(pending.at(refs))

        dispatcher = Dispatcher(make_chunks(pending.refs, group, options.chunk_rows))
        stopped = None
        try:
            asyncio.run(drive(actors, dispatcher, writer, read))
        except TooManyErrors as exc:
            stopped = str(exc)
        if stopped is None and dispatcher.remaining_rows:
            stopped = f"every replica died; {dispatcher.remaining_rows} rows are left for a rerun"
        if dispatcher.requeued_rows:
            log.warning("%d rows were re-queued after a replica died", dispatcher.requeued_rows)
        return writer.stats(stopped, cluster_cache_stats(actors))
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
