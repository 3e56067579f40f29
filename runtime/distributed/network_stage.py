"""A rank's pipeline with a network stage: communicators with a CTA cap for the collectives of a
pipeline plan, their measured all-reduce curves, the rank's roofline rates, and the network
search's plan set (``runtime.tune.network``) from them.

Every rank runs this in the same order (communicators are made collectively) and the group
agrees on every measurement before the search (the slowest rank's time, all_reduce MAX), so
every rank computes the same plan set and picks the same plan for the same batch: a pipeline
issues more all-reduces than the dense forward, and ranks that disagreed would deadlock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.distributed as dist

from kernels import Ops
from runtime.model.llama import LlamaModel
from runtime.pipeline.guard import PlanGuard
from runtime.pipeline.planset import PlanSet, signature_of
from runtime.pipeline.runner import PipelineForward
from runtime.tune.network import CollectiveCurve, NetworkCosts, Rates, search_network
from runtime.tune.profiles import ModelShape

logger = logging.getLogger("runtime")

CAPS = (8, 16)  # CTA caps measured besides NCCL's own choice (NanoFlow gave its network 8-16)
CURVE_ROWS = (1, 64, 256, 1024, 4096, 8192)


class NetworkGroups:
    """Communicators of the whole group by CTA cap (None: the default group, named: a network
    stage's collectives always go through NCCL, never the group's symmetric-memory path), made
    on first use (collectively: every rank asks for the same caps in the same order) and warmed
    up by one all-reduce, so none is first used inside a CUDA-graph capture."""

    def __init__(self, device: torch.device, world_size: int) -> None:
        self.device, self.world_size = device, world_size
        self.groups: dict[int | None, Any] = {None: dist.group.WORLD}

    def __call__(self, max_ctas: int | None) -> Any:
        if max_ctas not in self.groups:
            group = self._new(max_ctas)
            dist.all_reduce(torch.zeros(1, device=self.device), group=group)
            self.groups[max_ctas] = group
        return self.groups[max_ctas]

    def _new(self, max_ctas: int | None) -> Any:
        ranks = list(range(self.world_size))
        if self.device.type != "cuda":  # gloo has no CTAs: a communicator of its own anyway
            return dist.new_group(ranks)
        options = dist.ProcessGroupNCCL.Options()
        if not hasattr(options, "config") or not hasattr(options.config, "max_ctas"):
            raise RuntimeError("this torch's ProcessGroupNCCL.Options has no config.max_ctas: "
                               "a CTA cap for the network stage needs NCCL >= 2.17")  # fmt: skip
        options.config.max_ctas = int(max_ctas)  # type: ignore[arg-type]
        return dist.new_group(ranks, backend="nccl", pg_options=options)


def _agree(values: list[float], device: torch.device, op: Any) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return [float(v) for v in t.tolist()]


def allreduce_curve(
    group: Any, device: torch.device, hidden: int, dtype: torch.dtype,
    rows: tuple[int, ...] = CURVE_ROWS, op: Callable[[torch.Tensor], Any] | None = None,
) -> list[tuple[int, float]]:  # fmt: skip
    """(rows, µs) of one all-reduce of hidden-state rows on ``group`` (or by ``op``, an in-place
    all-reduce such as the group's own ``GroupAllReduce``): the median of a few, on the device's
    clock (wall clock on the CPU)."""
    if op is None:
        op = partial(dist.all_reduce, group=group)
    out = []
    for n in rows:
        t = torch.zeros(n, hidden, dtype=dtype, device=device)
        times = []
        for _ in range(7):
            if device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                op(t)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) * 1e3)
            else:
                t0 = time.perf_counter()
                op(t)
                times.append((time.perf_counter() - t0) * 1e6)
        out.append((n, sorted(times[2:])[len(times[2:]) // 2]))
    return out


def measure_rates(model: LlamaModel, device: torch.device, dtype: torch.dtype) -> Rates:
    """The rank's GEMM rate (its gate/up slice over 4,096 rows) and copy bandwidth."""
    cfg = model.cfg
    if device.type != "cuda":
        return Rates(device_sms=1, gemm_tflops=0.1, hbm_gb_s=10.0, concurrent=False)
    a = torch.randn(4096, cfg.hidden_size, device=device, dtype=dtype)
    b = torch.randn(2 * cfg.intermediate_size, cfg.hidden_size, device=device, dtype=dtype)
    src = torch.empty(1 << 29, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)

    def best(fn: Any) -> float:
        fn()
        times = []
        for _ in range(8):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return min(times)

    gemm = best(lambda: torch.nn.functional.linear(a, b))
    copy = best(lambda: dst.copy_(src))
    tflops = 2 * a.shape[0] * a.shape[1] * b.shape[0] / gemm / 1e12
    gb_s = 2 * src.numel() / copy / 1e9
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return Rates(device_sms=sms, gemm_tflops=tflops, hbm_gb_s=gb_s)


def measure_costs(
    model: LlamaModel, device: torch.device, dtype: torch.dtype, groups: NetworkGroups
) -> NetworkCosts:
    """The network search's inputs on this rank, agreed by the group: all-reduce curves of
    NCCL's own choice and each cap of ``CAPS`` (the slowest rank's), the rates (the lowest)."""
    caps: tuple[int | None, ...] = (None, *CAPS) if device.type == "cuda" else (None,)
    curves = []
    for cap in caps:
        try:
            group = groups(cap)
        except (RuntimeError, AttributeError, TypeError) as exc:  # the same on every rank
            logger.warning("no communicator capped at %s CTAs (%s): the search leaves it out",
                           cap, exc)  # fmt: skip
            continue
        points = allreduce_curve(group, device, model.cfg.hidden_size, dtype)
        agreed = _agree([us for _, us in points], device, dist.ReduceOp.MAX)
        curves.append(CollectiveCurve(cap, tuple(zip([n for n, _ in points], agreed, strict=True))))
    dense = None
    own = getattr(getattr(model, "tp", None), "allreduce", None)
    if own is not None and getattr(own, "symm", None) is not None:  # the dense forward's path
        points = allreduce_curve(None, device, model.cfg.hidden_size, dtype, op=own)
        agreed = _agree([us for _, us in points], device, dist.ReduceOp.MAX)
        dense = CollectiveCurve(None, tuple(zip([n for n, _ in points], agreed, strict=True)))
    rates = measure_rates(model, device, dtype)
    tflops, gb_s = _agree([rates.gemm_tflops, rates.hbm_gb_s], device, dist.ReduceOp.MIN)
    rates = Rates(rates.device_sms, tflops, gb_s, rates.concurrent)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    shape = ModelShape(**signature_of(model.cfg, model.embed_tokens.element_size()))
    return NetworkCosts(shape, rates, tuple(curves), dense=dense)


def pipeline_forward(
    spec: str, model: LlamaModel, ops: Ops, device: torch.device, dtype: torch.dtype,
    world_size: int, model_name: str, kv_dtype: torch.dtype | None = None,
    guard: PlanGuard | None = None,
) -> tuple[PipelineForward, dict[str, Any]]:  # fmt: skip
    """``EngineConfig.pipeline`` on one rank, and what the search read and chose (plain data
    for the benchmark's record; empty for a plan file). 'default' (with ':sequential' too): the
    network search's plan set from this group's measurements; a plan or plan-set file: as
    given (its plans must name the layer's network operations; a plan set of another KV cache
    dtype than ``kv_dtype`` is refused). The network search prices attention at the model's
    dtype and its set is made for this engine: not checked. ``guard``: verifies the plan set's
    plans against dense on the live engine (every rank's guard, agreeing by MAX)."""
    groups = NetworkGroups(device, world_size)
    base = spec.partition(":")[0]
    if base != "default":
        fwd = PipelineForward(spec, model, ops, network_groups=groups, kv_dtype=kv_dtype,
                              guard=guard)  # fmt: skip
        return fwd, {}
    start = time.perf_counter()
    costs = measure_costs(model, device, dtype, groups)
    rates, curves = costs.rates, costs.curves
    signature = signature_of(model.cfg, model.embed_tokens.element_size())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    planset, _ = search_network(costs, model_name, name, signature)
    if spec.endswith(":sequential"):
        planset = _sequential(planset)
    chosen = sum(1 for b in planset.buckets if b.plan is not None)
    at_1k = ", ".join(f"{c.max_ctas or 'all'} CTAs {c.us(1024):.0f} us" for c in curves)
    logger.info("network search in %.1f s: %d of %d buckets pipelined; rates %.0f TFLOP/s, "
                "%.0f GB/s; all-reduce of 1,024 rows: %s", time.perf_counter() - start, chosen,
                len(planset.buckets), rates.gemm_tflops, rates.hbm_gb_s, at_1k)  # fmt: skip
    summary = {
        "rates": {"gemm_tflops": round(rates.gemm_tflops, 1), "hbm_gb_s": round(rates.hbm_gb_s),
                  "device_sms": rates.device_sms},
        "allreduce_us": {str(c.max_ctas or "all"): [[n, round(us, 1)] for n, us in c.points]
                         for c in curves},
        "dense_allreduce_us": None if costs.dense is None else
                              [[n, round(us, 1)] for n, us in costs.dense.points],
        "buckets": [[b.decodes, b.prefill_tokens, b.context, b.plan, b.predicted_ms, b.dense_ms]
                    for b in planset.buckets],
        "search_s": round(time.perf_counter() - start, 2),
    }  # fmt: skip
    fwd = PipelineForward(spec, model, ops, source=planset, network_groups=groups, guard=guard)
    return fwd, summary


def _sequential(planset: PlanSet) -> PlanSet:
    from dataclasses import replace

    return replace(planset, plans={n: p.sequential() for n, p in planset.plans.items()})
