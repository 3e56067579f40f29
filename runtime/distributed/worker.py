"""One tensor-parallel rank in its own process: its model slice, KV cache and CUDA graphs.

A worker builds its slice of the model, sizes its KV cache from its own free memory (the group
takes the smallest count, so every rank holds the same blocks), captures its decode graphs and
then executes the plans the driver sends, in order. Rank 0 samples; the other ranks receive its
tokens through a broadcast, so every rank has them on the device for the next iteration's pending
inputs. Rank 0 reads each iteration back on a sender thread and returns it to the driver; the
main thread meanwhile executes the next plan. Any error is sent to the driver, then the worker
exits (the driver stops the others).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import torch
import torch.distributed as dist

from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.distributed.allreduce import group_all_reduce
from runtime.distributed.tensor_parallel import TPLayout, build_tensor_parallel_model
from runtime.engine_ops import engine_ops
from runtime.kernel_profile import KernelProfile
from runtime.kv_budget import kv_memory_budget, num_kv_blocks
from runtime.model_runner import DeviceStep, ModelRunner, kv_bytes_per_block, kv_cache_dtype

logger = logging.getLogger("runtime")


@dataclass(frozen=True)
class WorkerSpec:
    """What every rank builds (picklable: sent to the spawned processes)."""

    model: str
    dtype: str  # a torch dtype name, already resolved by the driver
    device: str  # "cuda" (rank r on cuda:r) or "cpu"
    load_format: str
    config: EngineConfig
    hf_overrides: dict[str, Any] | None
    max_positions: int  # the engine's context limit
    world_size: int
    init_method: str  # torch.distributed rendezvous (a file store)
    env: dict[str, str] = field(default_factory=dict)  # set in the worker before any CUDA call
    log_level: int = logging.WARNING  # the driver's level for the "runtime" logger


@dataclass(frozen=True)
class WorkerReady:
    """What a rank reports once it can run iterations."""

    rank: int
    pid: int
    num_blocks: int  # the group's minimum
    kv_heads: int  # KV heads this rank's cache holds
    max_graph_batch: int  # 0: no CUDA graphs
    kernels: str
    backends: dict[str, str]
    kv_elem: int
    weight_elem: int
    device_name: str
    allreduce_latency_s: float  # one all-reduce of one token's hidden state
    allreduce_bytes_per_s: float  # bytes of a large all-reduce over its time past the latency
    pipeline: str = ""  # the pipeline's plans (EngineConfig.pipeline), as PipelineForward says
    # the network search's inputs and choices per bucket (pipeline "default"), plain data
    network_search: dict[str, Any] = field(default_factory=dict)
    allreduce: str = "nccl"  # the group's own all-reduce (GroupAllReduce.describe)
    plan_guarded: bool = False  # a plan guard checks the pipeline's plans (ModelRunner's)


def worker_main(rank: int, spec: WorkerSpec, conn: Connection) -> None:
    """The process entry point (spawned by ``runtime.distributed.executor``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    os.environ.update(spec.env)
    logging.basicConfig(level=spec.log_level, format=f"rank {rank}: %(name)s: %(message)s")
    _exit_with_parent()
    lock = threading.Lock()
    try:
        runner, ready = _start(rank, spec)
        _send(conn, lock, ("ready", ready))
        _serve(rank, runner, conn, lock)
    except BaseException:
        _send(conn, lock, ("error", rank, traceback.format_exc()))
        os._exit(1)  # peers may be blocked in a collective: the driver stops them
    if dist.is_initialized():
        dist.destroy_process_group()


def _exit_with_parent() -> None:
    """Exit when the driver is gone (killed without a chance to stop its workers)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="tp-parent-watch", daemon=True).start()


def _send(conn: Connection, lock: threading.Lock, msg: tuple[Any, ...]) -> None:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    with lock, contextlib.suppress(OSError):  # OSError: the driver is gone, nobody to tell
        conn.send_bytes(data)


def _start(rank: int, spec: WorkerSpec) -> tuple[ModelRunner, WorkerReady]:
    cfg = spec.config
    device = torch.device(f"cuda:{rank}" if spec.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # the ranks share the host's cores: no oversubscribed thread pools
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec.world_size))
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=spec.init_method,
        rank=rank,
        world_size=spec.world_size,
    )
    dtype = getattr(torch, spec.dtype)
    allreduce = group_all_reduce(cfg.allreduce, None, device, dtype, cfg.symm_mem_max_bytes)
    layout = TPLayout.current(allreduce=allreduce)
    start = time.perf_counter()
    model = build_tensor_parallel_model(
        spec.model, spec.hf_overrides, dtype, device, spec.load_format, spec.max_positions,
        cfg.seed, layout,
    )  # fmt: skip
    ops = engine_ops(cfg, device)
    latency, bandwidth = measure_allreduce(device, model.cfg.hidden_size, dtype, allreduce)
    logger.info("slice built in %.1f s; all-reduce (%s) %.1f us + %.1f GB/s",
                time.perf_counter() - start, allreduce.describe(), latency * 1e6,
                bandwidth / 1e9)  # fmt: skip
    forward, search = None, dict[str, Any]()
    kv_dtype = kv_cache_dtype(cfg.kv_cache_dtype, dtype)
    if cfg.pipeline is not None:  # before the KV cache takes the memory its communicators need
        from runtime.distributed.network_stage import pipeline_forward
        from runtime.pipeline.guard import guard_for, max_over_ranks

        # every rank's guard decides a bucket at the same iteration, on the slowest rank's times
        guard = guard_for(cfg.guard_config(), device, max_over_ranks(device))
        forward, search = pipeline_forward(cfg.pipeline, model, ops, device, dtype, spec.world_size,
                                           spec.model, kv_dtype, guard)  # fmt: skip
    num_blocks = _group_num_blocks(model, cfg, device, dtype, kv_dtype, spec.max_positions)
    blocks = BlockManager(num_blocks, cfg.block_size)  # only its block size is used here
    runner = ModelRunner(model, ops, blocks, num_blocks, kv_dtype)
    runner.samples = rank == 0
    if forward is not None and not forward.always_dense:  # dense everywhere: the model's own
        runner.forward = forward
    runner.share_tokens = lambda tokens: dist.broadcast(tokens, src=0)
    if device.type == "cuda" and not cfg.enforce_eager:
        start = time.perf_counter()
        max_len = min(spec.max_positions, num_blocks * cfg.block_size)
        runner.capture_cuda_graphs(max_len, cfg.max_num_seqs)
        logger.info("graphs captured in %.1f s", time.perf_counter() - start)
    ready = WorkerReady(
        rank=rank,
        pid=os.getpid(),
        num_blocks=num_blocks,
        kv_heads=runner.kv_caches[0][0].shape[2],
        max_graph_batch=runner.max_graph_batch,
        kernels=ops.describe(),
        backends=dict(ops.backends),
        kv_elem=runner.kv_caches[0][0].element_size(),
        weight_elem=model.embed_tokens.element_size(),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        allreduce_latency_s=latency,
        allreduce_bytes_per_s=bandwidth,
        pipeline="" if forward is None else forward.describe(),
        network_search=search,
        plan_guarded=runner.plan_guarded,
        allreduce=allreduce.describe(),
    )
    return runner, ready


def measure_allreduce(
    device: torch.device,
    hidden: int,
    dtype: torch.dtype,
    op: Callable[[torch.Tensor], Any] = dist.all_reduce,
    tokens: int = 2048,
) -> tuple[float, float]:
    """(latency, bandwidth) of the group's all-reduce ``op`` on hidden-state rows: the time of a
    one-row all-reduce, and the bytes of a ``tokens``-row one over the time it takes beyond that
    (the roofline's network term; also a warm-up that creates the communicator)."""

    def best(t: torch.Tensor) -> float:
        times = []
        for _ in range(8):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            op(t)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return min(times[2:])

    small = best(torch.zeros(1, hidden, dtype=dtype, device=device))
    big = torch.zeros(tokens, hidden, dtype=dtype, device=device)
    large = best(big)
    nbytes = big.numel() * big.element_size()
    return small, nbytes / max(large - small, 1e-9)


def _group_num_blocks(
    model: Any,
    cfg: EngineConfig,
    device: torch.device,
    dtype: torch.dtype,
    kv_dtype: torch.dtype,
    max_len: int,
) -> int:
    """KV blocks that fit in this rank's free memory (its slice's bytes per block), the smallest
    over the group: every rank's cache must hold the blocks the one scheduler hands out."""
    per_block = kv_bytes_per_block(model, cfg.block_size, kv_dtype)
    budget = kv_memory_budget(model.cfg, cfg, device, dtype)
    useful = cfg.max_num_seqs * -(-max_len // cfg.block_size)
    mine = num_kv_blocks(budget, per_block, useful)
    count = torch.tensor([mine], dtype=torch.int64, device=device)
    dist.all_reduce(count, op=dist.ReduceOp.MIN)
    n = int(count.item())
    if n < 1:
        raise MemoryError(
            f"no memory for the KV cache on some rank: this rank's budget is {budget} bytes, "
            f"one block needs {per_block}"
        )
    return n


def _serve(rank: int, runner: ModelRunner, conn: Connection, lock: threading.Lock) -> None:
    """Execute plans until the driver says stop; rank 0 returns every iteration's results."""
    sender = _Sender(conn, lock, runner.device) if rank == 0 else None
    prev: DeviceStep | None = None
    session: KernelProfile | None = None
    try:
        while True:
            msg = pickle.loads(conn.recv_bytes())
            if msg[0] == "stop":
                return
            if msg[0] == "profile_start":  # the driver's profiled window (rank 0)
                if session is not None:
                    raise RuntimeError("profile_start while a profile is running")
                session = runner.profile()
                continue
            if msg[0] == "profile_stop":
                if session is None:
                    raise RuntimeError("profile_stop without profile_start")
                summary, session = session.stop(), None
                _send(conn, lock, ("profile", summary))
                continue
            if msg[0] == "plan_guard":  # this rank's guard verdicts so far
                _send(conn, lock, ("plan_guard", runner.plan_guard_report()))
                continue
            prev = runner.execute(msg[1], None if prev is None else prev.tokens)
            if sender is not None:
                sender.put(prev)
    finally:
        if sender is not None:
            sender.close()


class _Sender:
    """Reads rank 0's iterations back (waiting on the device) and sends them to the driver, so
    the main thread can queue the next iteration meanwhile."""

    def __init__(self, conn: Connection, lock: threading.Lock, device: torch.device) -> None:
        self.conn, self.lock, self.device = conn, lock, device
        self.queue: queue.SimpleQueue[DeviceStep | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="tp-sender", daemon=True)
        self.thread.start()

    def put(self, step: DeviceStep) -> None:
        self.queue.put(step)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        try:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            while (step := self.queue.get()) is not None:
                _send(self.conn, self.lock, ("result", step.read()))
        except BaseException:
            _send(self.conn, self.lock, ("error", 0, traceback.format_exc()))
            os._exit(1)
