"""Measures a profile: every operation of a decoder layer (the model's own operations, with the
kernels the registry picked) at nano-batch sizes and SM budgets, and pairwise interference.

On CUDA each timing is a CUDA graph of ``reps`` calls replayed on the placement's stream and
timed with CUDA events: ``whole`` on a plain stream, ``green:N`` on a green-context partition
(runtime/pipeline's partitions, split as the pipeline splits them: N SMs and the rest), and
``grid:N`` for attention on a plain stream with its persistent grid capped at N SMs. Interference:
one graph forks a partner's calls onto the other side's stream (the executor's fork / join) and
events recorded inside it time the operation's calls beside them, against the same graph without
the partner. (Two separately captured graphs replayed at once on two green contexts faulted on
the H200.) On the CPU the device runs one stream at a time: only ``whole`` timings (wall clock),
no interference.
"""

from __future__ import annotations

import enum
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import torch

from runtime.model.llama import ForwardContext
from runtime.pipeline.executor import PipelineExecutor
from runtime.pipeline.planset import kv_dtype_name, signature_of
from runtime.tune.inputs import activations_per_op, copy_of, make_batch, shared_kv_caches
from runtime.tune.profiles import Interference, ModelShape, OpTiming, Profile

logger = logging.getLogger("runtime.tune")
Fn = Callable[[], None]


class Only(enum.Enum):
    """What a profile measures: every operation, or only the attention timings (a re-profile
    after an attention kernel changed; the rest comes from a stored profile)."""

    ALL = "all"
    ATTENTION = "attention"
    DECODE_ATTENTION = "decode-attention"

    @property
    def phases(self) -> tuple[str, ...]:
        return ("decode",) if self is Only.DECODE_ATTENTION else ("decode", "prefill")


@dataclass(frozen=True)
class ProfileConfig:
    tokens: tuple[int, ...] = (16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048)
    attention_tokens: tuple[int, ...] = (16, 64, 128, 256, 384, 512, 768, 1024)
    contexts: tuple[int, ...] = (512, 1024, 2048, 4096)
    sm_step: int = 8  # green-context budgets: multiples of this (Hopper grants multiples of 8)
    interference_tokens: tuple[int, ...] = (256, 1024)
    interference_context: int = 1024
    kv_gb: float = 8.0  # one KV buffer shared by all layers (inputs.shared_kv_caches; capped)
    reps: int = 10  # calls per timed graph (CUDA) or per timed loop (CPU)
    repeats: int = 3  # timed replays; the median counts (CUDA), the fastest (CPU)
    grid_caps: bool = True  # also attention with a capped grid on a plain stream
    # green-context partitions too (off: plain streams and capped grids only); on the H200 the
    # green pairs faulted under concurrency (docs/performance.md), so they are opt-in
    green: bool = False
    # attention's SM budgets (green contexts and grid caps); empty: every multiple of sm_step
    attention_sms: tuple[int, ...] = ()
    # attention's budgets N at which every other operation is also timed with its GEMMs aimed
    # at the other SMs (carve:<device SMs - N>), paired with attention's grid sized to N
    # (grid:N): the search's carve:N layouts. (Attention confined to one program per SM lost in
    # every pair measured: docs/performance.md, 2026-12-02, sixteenth session.)
    carve_sms: tuple[int, ...] = ()
    # what is measured (a re-profile of what changed, merged into a stored profile):
    # all operations, attention alone, or decode attention alone; interference is measured
    # in every case (each pair has attention on one side)
    only: Only = Only.ALL

    def __post_init__(self) -> None:
        if min(self.tokens + self.attention_tokens + self.contexts) < 1 or self.reps < 1:
            raise ValueError("token counts, contexts and reps must be >= 1")
        if self.sm_step < 1 or self.repeats < 1:
            raise ValueError("sm_step and repeats must be >= 1")
        if any(n < 1 for n in self.attention_sms + self.carve_sms):
            raise ValueError("attention SM budgets must be >= 1")

    def budgets(self, device_sms: int) -> list[int]:
        """Attention's SM budgets on a device of ``device_sms`` (each leaves SMs for the rest)."""
        wanted = self.attention_sms or range(self.sm_step, device_sms - self.sm_step + 1,
                                             self.sm_step)  # fmt: skip
        return sorted({n for n in wanted if n < device_sms})


# a tiny grid for tests and CPU runs
QUICK = ProfileConfig(tokens=(4, 16), attention_tokens=(4, 8), contexts=(16, 32),
                      interference_tokens=(8,), interference_context=16, kv_gb=0.01, reps=2,
                      repeats=3)  # fmt: skip


@dataclass
class Side:
    """Where an operation runs while profiling: a placement name, its stream, its SM cap."""

    placement: str
    stream: torch.cuda.Stream | None
    num_sms: int | None


class Profiler:
    def __init__(self, engine: Any, cfg: ProfileConfig) -> None:
        self.engine, self.cfg = engine, cfg
        self.model, self.device = engine.model, engine.device
        self.cuda = self.device.type == "cuda"
        self.layer = 1 if len(self.model.layers) > 1 else 0  # its first norm adds a residual
        self.op_list = self.model.operations()[self.layer]
        self.names = [op.name for op in self.op_list]
        self.attention = next(op.name for op in self.op_list if op.kind.value == "attention")
        self.device_sms = (torch.cuda.get_device_properties(self.device).multi_processor_count
                           if self.cuda else 1)  # fmt: skip
        self.failures: list[str] = []
        self.eager: set[str] = set()  # placements whose graphs could not be captured
        self.kv_caches = shared_kv_caches(engine, int(cfg.kv_gb * 1e9))

    # ------------------------------------------------------------------ timing
    def _time(self, fn: Fn, side: Side) -> float:
        """ms per call of fn on its side."""
        if not self.cuda:
            fn()
            samples = []
            for _ in range(self.cfg.repeats):
                t0 = time.perf_counter()
                for _ in range(self.cfg.reps):
                    fn()
                samples.append((time.perf_counter() - t0) * 1e3 / self.cfg.reps)
            return min(samples)  # a shared CPU's noise only ever adds time
        try:
            graph = self._graph(fn, side.stream)
        except RuntimeError as exc:  # capture refused on this stream: time eager launches
            if side.placement not in self.eager:
                self.eager.add(side.placement)
                self.failures.append(f"no graph on {side.placement}, timed eagerly: {exc!r}"[:300])
            return self._eager(fn, side.stream)
        ms = statistics.median(self._replay(graph, side.stream) for _ in range(self.cfg.repeats))
        del graph
        _forget_graph_workspaces()
        return ms

    def _eager(self, fn: Fn, stream: torch.cuda.Stream | None) -> float:
        s = stream or torch.cuda.current_stream()
        samples = []
        with torch.cuda.stream(s):
            fn()
            for _ in range(self.cfg.repeats):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record(s)
                for _ in range(self.cfg.reps):
                    fn()
                b.record(s)
                b.synchronize()
                samples.append(a.elapsed_time(b) / self.cfg.reps)
        return statistics.median(samples)

    def _graph(self, fn: Fn, stream: torch.cuda.Stream | None) -> torch.cuda.CUDAGraph:
        s = stream or torch.cuda.current_stream()
        with torch.cuda.stream(s):
            fn()  # warm-up: compiles kernels outside the capture
        s.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=s):
            for _ in range(self.cfg.reps):
                fn()
        return graph

    def _replay(
        self, graph: torch.cuda.CUDAGraph, stream: torch.cuda.Stream | None, times: int = 1
    ) -> float:
        s = stream or torch.cuda.current_stream()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(s):
            start.record(s)
            for _ in range(times):
                graph.replay()
            end.record(s)
        end.synchronize()
        return start.elapsed_time(end) / (self.cfg.reps * times)

    def _joint(self, fn: Fn, side: Side, partner: Fn | None, other: Side, calls: int) -> float:
        """ms per call of fn inside one CUDA graph that also forks ``calls`` calls of partner
        onto the other side's stream (the executor's fork / join), timed by events recorded in
        the graph around fn's calls; ``calls`` 0: fn alone, timed the same way."""
        s = side.stream or torch.cuda.current_stream()
        o = other.stream or torch.cuda.current_stream()
        with torch.cuda.stream(s):
            fn()
        if calls:
            with torch.cuda.stream(o):
                partner()  # type: ignore[misc]
        torch.cuda.synchronize()
        a = torch.cuda.Event(enable_timing=True, external=True)
        b = torch.cuda.Event(enable_timing=True, external=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=s):
            if calls:
                fork = torch.cuda.Event()
                fork.record(s)
                o.wait_event(fork)
                with torch.cuda.stream(o):
                    for _ in range(calls):
                        partner()  # type: ignore[misc]
            a.record(s)
            for _ in range(self.cfg.reps):
                fn()
            b.record(s)
            if calls:
                join = torch.cuda.Event()
                join.record(o)
                s.wait_event(join)
        samples = []
        for _ in range(self.cfg.repeats):
            with torch.cuda.stream(s):
                graph.replay()
            torch.cuda.synchronize()
            samples.append(a.elapsed_time(b) / self.cfg.reps)
        del graph
        _forget_graph_workspaces()
        return statistics.median(samples)

    # ------------------------------------------------------------------ operations
    def _op_fn(self, i: int, batch: tuple[torch.Tensor, ForwardContext], x: Any, side: Side) -> Fn:
        """Operation i over the batch's activations ``x``, with the side's kernels."""
        ctx = batch[1]
        ops = PipelineExecutor._partition_ops(ctx.ops, side.num_sms)
        run_ctx = replace(ctx, ops=ops)
        op = self.op_list[i]
        return lambda: op.run(copy_of(x), run_ctx)

    def _before(self, batch: tuple[torch.Tensor, ForwardContext]) -> list[Any]:
        return activations_per_op(self.model, batch[0], batch[1], self.layer)

    def _batch(
        self, decodes: int, context: int, chunks: list[int], reuse_blocks: bool = False
    ) -> tuple:
        """``reuse_blocks``: sequences may share KV blocks (for batches larger than the cache:
        operations other than attention never read it, and attention still reads every block)."""
        seed = decodes + 7 * context
        return make_batch(self.engine, self.kv_caches, decodes, context, chunks, seed, reuse_blocks)

    def _attention_batches(self) -> Iterator[tuple[str, int, int, tuple]]:
        for c in self.cfg.contexts:
            for t in self.cfg.attention_tokens:
                for phase, dec, chunks in (("decode", t, []), ("prefill", 0, [t])):
                    if phase not in self.cfg.only.phases:
                        continue
                    try:
                        yield phase, t, c, self._batch(dec, c, chunks)
                    except ValueError as exc:  # more KV than the cache holds
                        self.failures.append(f"attention {phase} {t} x {c}: {exc}")

    def timings(self, sides: list[Side], attention_sides: list[Side]) -> list[OpTiming]:
        out: list[OpTiming] = []
        att = self.names.index(self.attention)
        for t in self.cfg.tokens if self.cfg.only is Only.ALL else ():
            batch = self._batch(t, min(self.cfg.contexts), [], reuse_blocks=True)
            xs = self._before(batch)
            for i, name in enumerate(self.names):
                if i == att:
                    continue
                for side in sides:
                    out += self._measure(name, side, t, self._op_fn(i, batch, xs[i], side))
        for phase, t, c, batch in self._attention_batches():
            x = self._before(batch)[att]
            for side in attention_sides:
                fn = self._op_fn(att, batch, x, side)
                out += self._measure(self.attention, side, t, fn, phase, c)
        return out

    def _measure(
        self, name: str, side: Side, tokens: int, fn: Fn, phase: str = "", context: int = 0
    ) -> list[OpTiming]:
        try:
            ms = self._time(fn, side)
        except Exception as exc:  # a failed placement is recorded, the profile goes on
            self._failed(f"{name} {tokens} x {context} on {side.placement}", exc)
            return []
        return [OpTiming(name, side.placement, tokens, ms, phase, context)]

    def _failed(self, what: str, exc: Exception) -> None:
        """Record a failed measurement; a CUDA error (the context is unusable after it) ends
        the profile with what failed."""
        if "CUDA error" in str(exc) or type(exc).__name__ == "AcceleratorError":
            raise RuntimeError(f"profiling stopped at {what}: {exc}") from exc
        logger.warning("failed: %s: %r", what, exc)
        self.failures.append(f"{what}: {exc!r}"[:300])

    def interference(self, pairs: list[tuple[Side, Side]]) -> list[Interference]:
        """Attention beside each GEMM, and every other operation beside attention, for each
        (attention side, other side) pair."""
        out: list[Interference] = []
        att = self.names.index(self.attention)
        gemms = [i for i, op in enumerate(self.op_list) if op.kind.value == "gemm"]
        c = self.cfg.interference_context
        for t in self.cfg.interference_tokens:
            try:
                batch = self._batch(t, c, [], reuse_blocks=True)
            except ValueError as exc:
                self.failures.append(f"interference at {t} x {c}: {exc}")
                continue
            xs = self._before(batch)
            for a_side, o_side in pairs:
                att_fn = self._op_fn(att, batch, xs[att], a_side)
                for i, name in enumerate(self.names):
                    if i == att:
                        continue
                    fn = self._op_fn(i, batch, xs[i], o_side)
                    out += self._pair(name, self.attention, fn, o_side, att_fn, a_side, t)
                    if i in gemms:
                        out += self._pair(self.attention, name, att_fn, a_side, fn, o_side, t)
        return out

    def _pair(
        self, name: str, beside: str, fn: Fn, side: Side, partner: Fn, other: Side, tokens: int
    ) -> list[Interference]:
        try:
            alone = self._joint(fn, side, None, other, 0)
            partner_ms = self._time(partner, other)
            # partner calls that outlast fn's calls (bounded: a tiny partner beside a long fn)
            calls = min(400, 1 + math.ceil(1.5 * alone * self.cfg.reps / max(partner_ms, 1e-6)))
            ms = self._joint(fn, side, partner, other, calls)
        except Exception as exc:
            self._failed(f"{name} {tokens} beside {beside} on {side.placement}", exc)
            return []
        return [Interference(name, beside, side.placement, tokens, ms / alone, other.placement)]


def _forget_graph_workspaces() -> None:
    """cuBLAS keeps a workspace per stream; one first used inside a capture lives in that
    graph's memory pool. The profiler frees each graph and then runs eagerly on the same
    streams, so the cached workspaces are dropped (reallocated on next use) once a graph goes."""
    torch.cuda.synchronize()
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        clear()


def hbm_gb_s(device: torch.device) -> float:
    """Streaming copy bandwidth (read + write bytes per second), GB/s."""
    n = (256 << 20) if device.type == "cuda" else (16 << 20)
    src = torch.ones(n, dtype=torch.float16, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    samples = []
    for _ in range(5):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            dst.copy_(src)
            b.record()
            b.synchronize()
            secs = a.elapsed_time(b) / 1e3
        else:
            t0 = time.perf_counter()
            dst.copy_(src)
            secs = time.perf_counter() - t0
        samples.append(2 * src.numel() * src.element_size() / secs / 1e9)
    return statistics.median(samples)


def _sides(prof: Profiler) -> tuple[list[Side], list[Side], list[tuple[Side, Side]]]:
    """Placements of the other operations, of attention, and the interference pairs."""
    if not prof.cuda:
        whole = Side("whole", None, None)
        return [whole], [whole], []
    from runtime.pipeline.partitions import green_partitions, new_stream

    s = prof.device_sms
    other_whole = Side("whole", torch.cuda.Stream(prof.device), None)
    att_whole = Side("whole", torch.cuda.Stream(prof.device), None)
    others, atts, pairs = [other_whole], [att_whole], [(att_whole, other_whole)]
    for n in prof.cfg.budgets(s):
        if prof.cfg.green:
            try:
                a, o = green_partitions((n, s - n))
            except Exception as exc:
                prof.failures.append(f"green contexts ({n}, {s - n}): {exc!r}"[:300])
                continue
            att_side = Side(f"green:{a.num_sms}", new_stream(a), a.num_sms)
            other_side = Side(f"green:{o.num_sms}", new_stream(o), None)
            atts.append(att_side)
            others.append(other_side)
            pairs.append((att_side, other_side))
        if prof.cfg.grid_caps:
            atts.append(Side(f"grid:{n}", att_whole.stream, n))
            pairs.append((atts[-1], other_whole))
    for n in sorted(set(prof.cfg.carve_sms)):
        if n >= s:  # no SMs left for the GEMMs: said in the profile, not silently dropped
            prof.failures.append(f"carve budget {n}: the device has {s} SMs")
            continue
        grid = [a for a in atts if a.placement == f"grid:{n}"]
        if not grid:  # a budget outside the grid caps: attention timed there too
            grid = [Side(f"grid:{n}", att_whole.stream, n)]
            atts += grid
        others.append(Side(f"carve:{s - n}", other_whole.stream, s - n))
        pairs.append((grid[0], others[-1]))
    return others, atts, pairs


@torch.inference_mode()
def profile_engine(engine: Any, model_name: str, cfg: ProfileConfig, command: str = "") -> Profile:
    """Profile the engine's model on its device."""
    t0 = time.perf_counter()
    prof = Profiler(engine, cfg)
    others, atts, pairs = _sides(prof)
    timings = prof.timings(others, atts)
    interference = prof.interference(pairs) if prof.cuda else []
    elem = engine.model.embed_tokens.element_size()
    shape = ModelShape(**signature_of(engine.model_config, elem))
    device = torch.cuda.get_device_name(prof.device) if prof.cuda else "cpu"
    ops = tuple((op.name, op.kind.value) for op in prof.op_list)
    notes = {"seconds": round(time.perf_counter() - t0, 1), "failures": prof.failures,
             "kernels": dict(engine.ops.backends),
             "config": {**cfg.__dict__, "only": cfg.only.value},
             "kv_cache_dtype": kv_dtype_name(prof.kv_caches[0][0].dtype)}  # fmt: skip
    return Profile(
        model=model_name, device=device, device_sms=prof.device_sms, concurrent=prof.cuda,
        hbm_gb_s=round(hbm_gb_s(prof.device), 1), shape=shape, ops=ops, timings=tuple(timings),
        interference=tuple(interference), created=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command, notes=notes,
    )  # fmt: skip
