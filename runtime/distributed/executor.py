"""The driver of tensor parallelism: one worker process per rank, the scheduler stays here.

``LLM(..., tensor_parallel_size=N)`` makes the engine start N workers (``torch.multiprocessing``
spawn; rank r on cuda:r with NCCL, or N CPU processes with gloo). The calling process keeps the
scheduler, tokenizer and sequences and runs no model: each iteration it plans the batch
(``runtime.step_plan``), pickles the plan and sends it to every worker over a pipe (its [R, V]
sampling tensors only to rank 0, the rank that samples); rank 0 returns the sampled tokens and
logprobs. Because the caller never joins a collective, it can always notice a worker that died
or failed (it waits on the pipes and the process sentinels together), stop every worker and raise
one clear error, instead of hanging in NCCL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shutil
import signal
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn

import torch.multiprocessing as mp

from runtime.block_manager import BlockManager
from runtime.distributed.allreduce import MULTICAST_OFF
from runtime.distributed.worker import WorkerReady, WorkerSpec, worker_main
from runtime.model_runner import Launched, RunnerTimings, StepResult, launch_record, step_result
from runtime.scheduler import SchedulerOutput
from runtime.step_plan import StepPlan, plan_step

logger = logging.getLogger("runtime")

# set in every worker before it touches CUDA: NVLink multicast (NVLS) stays off for NCCL and
# symmetric memory; the variables the GPU machine sets otherwise are inherited unchanged
WORKER_ENV = dict(MULTICAST_OFF)
STOP_TIMEOUT_S = 10.0  # a worker asked to stop that is still alive after this is killed


class TensorParallelError(RuntimeError):
    """A tensor-parallel worker failed or died; every worker has been stopped."""


class TensorParallelRunner:
    """Plans iterations here and runs them on the workers (``launch`` / ``collect`` like
    ``ModelRunner``); ``blocks`` must be set (from ``num_blocks``) before the first launch."""

    def __init__(self, spec: WorkerSpec, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.blocks: BlockManager | None = None
        self.timings = RunnerTimings()
        self._failure: str | None = None
        self._dir = tempfile.mkdtemp(prefix="nanolang-tp-")
        spec = _with_store(spec, self._dir)
        ctx = mp.get_context("spawn")
        self._procs: list[BaseProcess] = []
        self._conns: list[Connection] = []
        for rank in range(spec.world_size):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(rank, spec, theirs), daemon=True,
                               name=f"nanolang-tp-rank{rank}")  # fmt: skip
            proc.start()
            theirs.close()
            self._procs.append(proc)
            self._conns.append(ours)
        self._sentinels = {p.sentinel: r for r, p in enumerate(self._procs)}
        self._inbox: list[list[tuple[Any, ...]]] = [[] for _ in self._procs]
        self._graceful = [True]  # False once a worker failed: no point asking the others
        self._finalizer = weakref.finalize(
            self, _stop_workers, self._procs, self._conns, self._dir, self._graceful
        )
        try:
            self.ready: list[WorkerReady] = [self._receive(rank, "ready") for rank in range(
                spec.world_size)]  # fmt: skip
        except BaseException as exc:
            self._abandon(exc)
            raise
        first = self.ready[0]
        self.num_blocks = first.num_blocks
        self.max_graph_batch = first.max_graph_batch
        logger.info("tensor parallelism: %d workers (pids %s) on %s, %d KV blocks per rank",
                    spec.world_size, [r.pid for r in self.ready], first.device_name,
                    self.num_blocks)  # fmt: skip
        if first.pipeline:
            logger.info("tensor parallelism: pipeline %s", first.pipeline)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    @property
    def alive(self) -> bool:
        return self._failure is None and all(p.is_alive() for p in self._procs)

    # ------------------------------------------------------------------ the runner interface
    def launch(self, batch: SchedulerOutput, prev: Launched | None) -> Launched:
        self._check_usable()
        assert self.blocks is not None, "set blocks before the first launch"
        t0 = time.perf_counter()
        row_of_prev = None if prev is None else prev.row_of
        plan = plan_step(batch, row_of_prev, self.blocks, self.max_graph_batch, self.vocab_size)
        sampler_msg, other_msg = step_messages(plan)
        try:
            for rank in range(len(self._conns)):
                self._send(rank, sampler_msg if rank == 0 else other_msg)
        except BaseException as exc:
            self._abandon(exc)
            raise
        self.timings.prepare_s = time.perf_counter() - t0
        return launch_record(batch, plan, None)

    def collect(self, launched: Launched) -> StepResult:
        self._check_usable()
        t0 = time.perf_counter()
        try:
            host = self._receive(0, "result")
        except BaseException as exc:
            self._abandon(exc)
            raise
        self.timings.wait_s = time.perf_counter() - t0
        t = self.timings
        t.gpu_s, t.graph_s, t.graph_seqs = host.gpu_s, host.graph_s, host.graph_seqs
        return step_result(launched, host)

    def synchronize(self) -> None:
        """Nothing to wait for here: the driver queues no device work of its own (a profile
        session's ``stop`` waits for rank 0's device)."""

    def profile(self) -> RankProfile:
        """Start a profiler session on rank 0 (every rank runs the same kernels); it takes
        effect from the next iteration sent, and ``stop()`` returns rank 0's summary."""
        self._control(0, ("profile_start",))
        return RankProfile(self)

    def _stop_profile(self) -> dict[str, Any]:
        self._control(0, ("profile_stop",))
        try:
            summary: dict[str, Any] = self._receive(0, "profile", in_order=False)
        except BaseException as exc:
            self._abandon(exc)
            raise
        return summary

    @property
    def plan_guarded(self) -> bool:
        """Whether a plan guard checks the ranks' plans (every rank's alike)."""
        return self.ready[0].plan_guarded

    def plan_guard_report(self, rank: int = 0) -> list[dict[str, Any]]:
        """``rank``'s plan guard buckets so far (every rank reaches the same verdicts), once
        it has run every iteration sent before."""
        self._control(rank, ("plan_guard",))
        try:
            report: list[dict[str, Any]] = self._receive(rank, "plan_guard", in_order=False)
        except BaseException as exc:
            self._abandon(exc)
            raise
        return report

    def _control(self, rank: int, msg: tuple[Any, ...]) -> None:
        self._check_usable()
        self._send(rank, pickle.dumps(msg))

    def _send(self, rank: int, data: bytes) -> None:
        """Send to ``rank``; a rank that closed its end has usually sent its error first (with
        asynchronous scheduling the driver sends the next step before reading the last result):
        that error is the one raised."""
        try:
            self._conns[rank].send_bytes(data)
        except OSError:
            self._fail(self._last_words(rank) or f"rank {rank} stopped taking work")

    def _last_words(self, rank: int) -> str | None:
        """The error ``rank`` sent before it stopped, if one is waiting in its connection (other
        messages read on the way are kept in its inbox)."""
        conn = self._conns[rank]
        try:
            while conn.poll():
                msg = pickle.loads(conn.recv_bytes())
                if msg[0] == "error":
                    return f"rank {msg[1]} raised an error:\n{msg[2].rstrip()}"
                self._inbox[rank].append(msg)
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        return None

    def shutdown(self) -> None:
        """Stop every worker (a no-op once stopped)."""
        if self._failure is None:
            self._failure = "the engine was shut down"
        self._finalizer()

    # ------------------------------------------------------------------ failures
    def _check_usable(self) -> None:
        if self._failure is not None:
            raise TensorParallelError(f"the tensor-parallel workers are stopped: {self._failure}")

    def _abandon(self, exc: BaseException) -> None:
        """An interrupt or error on the driver's side: stop the workers, keep the reason."""
        if self._failure is None:
            self._failure = f"{type(exc).__name__}: {exc}".rstrip(": ")
        self._graceful[0] = False
        self._finalizer()

    def _receive(self, rank: int, kind: str, in_order: bool = True) -> Any:
        """Wait for the next ``kind`` message of ``rank``, watching every worker meanwhile;
        ``in_order=False`` takes the first message of that kind, leaving earlier ones of other
        kinds (iteration results still to be collected) where they are."""
        while not self._inbox[rank] or (
            not in_order and all(m[0] != kind for m in self._inbox[rank])
        ):
            for ready in wait([*self._conns, *self._sentinels]):
                if isinstance(ready, int):  # a process ended: read its last words first
                    r = self._sentinels[ready]
                    if not self._conns[r].poll():
                        self._fail(f"rank {r} died")
                    ready = self._conns[r]
                assert isinstance(ready, Connection)
                r = self._conns.index(ready)
                try:
                    msg = pickle.loads(ready.recv_bytes())
                except (EOFError, OSError):
                    self._fail(f"rank {r} died")
                if msg[0] == "error":
                    self._fail(f"rank {msg[1]} raised an error:\n{msg[2].rstrip()}")
                self._inbox[r].append(msg)
        inbox = self._inbox[rank]
        msg = inbox.pop(0 if in_order else next(i for i, m in enumerate(inbox) if m[0] == kind))
        if msg[0] != kind:
            self._fail(f"rank {rank} sent {msg[0]!r} where {kind!r} was expected")
        return msg[1]

    def _fail(self, cause: str) -> NoReturn:
        """Stop every worker and raise one error that says what happened to each."""
        time.sleep(0.2)  # let a dying peer's exit (the usual root cause) be seen too
        states = [_describe(r, p) for r, p in enumerate(self._procs)]
        self._failure = cause.splitlines()[0]
        self._graceful[0] = False
        self._finalizer()
        raise TensorParallelError(
            f"tensor-parallel worker failure: {cause}\nworkers: {'; '.join(states)}; "
            "every worker has been stopped"
        )


class RankProfile:
    """A profiler session running on rank 0 (``TensorParallelRunner.profile``)."""

    def __init__(self, executor: TensorParallelRunner) -> None:
        self._executor = executor

    def stop(self) -> dict[str, Any]:
        """End it once rank 0's device has run every iteration sent: rank 0's kernel times
        and gaps, as ``KernelProfile.stop`` gives them."""
        return self._executor._stop_profile()


def step_messages(plan: StepPlan) -> tuple[bytes, bytes]:
    """The pickled plan for rank 0, and for every other rank. Only rank 0 samples, so the others
    get it without its [R, V] sampling tensors (constraint masks, penalties), which can be most of
    its bytes; without such tensors both are the same bytes, pickled once."""
    full = pickle.dumps(("step", plan), protocol=pickle.HIGHEST_PROTOCOL)
    sampling = plan.sampling
    if sampling.mask is None and sampling.bias is None and sampling.repetition is None:
        return full, full
    light = replace(sampling, mask=None, bias=None, repetition=None)
    return full, pickle.dumps(("step", replace(plan, sampling=light)), pickle.HIGHEST_PROTOCOL)


def _with_store(spec: WorkerSpec, directory: str) -> WorkerSpec:
    env = {**spec.env, **WORKER_ENV}
    level = logging.getLogger("runtime").getEffectiveLevel()
    store = f"file://{os.path.join(directory, 'store')}"
    return replace(spec, init_method=store, env=env, log_level=level)


def _describe(rank: int, proc: BaseProcess) -> str:
    code = proc.exitcode
    if code is None:
        return f"rank {rank} (pid {proc.pid}) running"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return f"rank {rank} (pid {proc.pid}) killed by {name}"
    return f"rank {rank} (pid {proc.pid}) exited with code {code}"


def _stop_workers(
    procs: Sequence[BaseProcess],
    conns: Sequence[Connection],
    directory: str,
    graceful: list[bool],
) -> None:
    """Ask every worker to stop (when none failed), wait a little, then terminate and kill
    what is left: a worker blocked in a collective with a dead peer never returns by itself."""
    stop = pickle.dumps(("stop",))
    for conn in conns if graceful[0] else ():
        with contextlib.suppress(OSError):
            conn.send_bytes(stop)
    deadline = time.monotonic() + (STOP_TIMEOUT_S if graceful[0] else 0.0)
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(10.0)  # a GPU process may take a moment to tear its context down
    for conn in conns:
        conn.close()
    shutil.rmtree(directory, ignore_errors=True)
