"""One layer's measured timeline: every step's start and end (CUDA events inside a replayed
CUDA graph) for a searched plan and for the dense layer (one nano-batch on one stream), so the
two can be drawn side by side. The events add graph nodes: read durations, not gaps."""

from __future__ import annotations

from typing import Any

import torch

from runtime.model.llama import ForwardContext
from runtime.pipeline.executor import PipelineExecutor
from runtime.pipeline.plan import OpSplit, Partition, Plan, Step, Unit


def dense_plan(plan: Plan, op_names: list[str]) -> Plan:
    """The dense forward as a plan: one nano-batch of the whole batch, one stream, all SMs."""
    whole = Partition(0, 0, plan.device_sms)
    ops = tuple(OpSplit(op, (plan.batch_tokens,), Unit(0, 0)) for op in op_names)
    order = tuple(Step(op, 0) for op in op_names)
    return Plan(f"dense-{plan.batch_tokens}", plan.batch_tokens, plan.device_sms, (whole,), ops,
                order)  # fmt: skip


def traced(
    ex: PipelineExecutor, ids: torch.Tensor, ctx: ForwardContext, graph: bool = True
) -> None:
    """One forward with per-step events: captured and replayed as a CUDA graph, or eager."""
    ex.forward(ids, ctx)  # warm-up outside any capture
    torch.cuda.synchronize()
    ex.trace = []
    if not graph:
        ex.forward(ids, ctx)
    else:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            ex.forward(ids, ctx)
        for _ in range(3):
            g.replay()
    torch.cuda.synchronize()


def layer_steps(ex: PipelineExecutor, layer: int) -> list[dict[str, Any]]:
    """The traced steps of ``layer``, in ms from its first step's start."""
    assert ex.trace is not None
    steps = [t for t in ex.trace if t.layer == layer]
    base: Any = steps[0].start  # a CUDA event; elapsed times may be negative: shifted below
    rows = [{"op": t.op, "nano_batch": t.nano_batch, "partition": t.partition, "rows": list(t.rows),
             "start_ms": base.elapsed_time(t.start), "end_ms": base.elapsed_time(t.end)}
            for t in steps]  # fmt: skip
    first = min(r["start_ms"] for r in rows)
    for r in rows:
        r["start_ms"] = round(r["start_ms"] - first, 4)
        r["end_ms"] = round(r["end_ms"] - first, 4)
    return rows


@torch.inference_mode()
def timeline(engine: Any, plan: Plan, ids: torch.Tensor, ctx: ForwardContext) -> dict[str, Any]:
    """The middle layer's steps with the plan and with the dense layer."""
    names = [op.name for op in engine.model.operations()[0]]
    layer = len(engine.model.layers) // 2
    out: dict[str, Any] = {"layer": layer, "tokens": int(ids.shape[0])}
    for key, p in (("dense", dense_plan(plan, names)), ("plan", plan)):
        ex = PipelineExecutor(p, engine.model, engine.ops)
        traced(ex, ids, ctx)
        out[key] = {"plan": p.name, "sms": {str(k): v for k, v in ex.units.sms.items()},
                    "steps": layer_steps(ex, layer)}  # fmt: skip
        ex.trace = None
    return out
