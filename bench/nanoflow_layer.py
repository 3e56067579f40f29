"""NanoFlow pipeline on Llama-3-8B (dummy weights): candidate plans timed as whole 32-layer
forwards (CUDA graphs), checked against the dense forward, and one layer's timeline in both
modes from CUDA events. Run on the GPU machine:

    PYTHONPATH=. python bench/nanoflow_layer.py --out DIR

Writes DIR/nanoflow_sweep.json (plans, ms per forward, error vs dense) and
DIR/nanoflow_timeline.json (per-step start/end in ms of one middle layer, both modes).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from runtime import LLM
from runtime.model.llama import ForwardContext
from runtime.pipeline import PipelineExecutor, Plan, two_partition_plan
from runtime.pipeline.plans import default_plans, two_stream_plan
from runtime.tune.inputs import paged_batch
from runtime.tune.timeline import layer_steps, traced

Forward = Callable[[torch.Tensor, ForwardContext], torch.Tensor]


def batch(engine: Any, decodes: int, ctx_len: int, chunks: list[int], seed: int) -> tuple:
    """input_ids and a ForwardContext: ``decodes`` sequences at context ``ctx_len`` and fresh
    prefill chunks, over randomly placed KV blocks."""
    g = torch.Generator().manual_seed(seed)
    lens, q_lens = [ctx_len] * decodes + chunks, [1] * decodes + chunks
    kv_caches = engine.runner.kv_caches
    positions, meta = paged_batch(engine, kv_caches, lens, q_lens, decodes, g)
    ids = torch.randint(10, 1000, (len(positions),), generator=g).to(engine.device)
    return ids, ForwardContext(positions, meta, kv_caches, engine.ops)


def time_graph(fn: Callable[[], torch.Tensor], reps: int = 20) -> tuple[float, torch.Tensor]:
    """Median ms of graph replays of fn, and fn's output."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times), out.clone()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def candidates(cls: str, total: int) -> list[Plan]:
    """Two nano-batches (even / uneven, four for decode), attention on 32-96 SMs or on a second
    stream of the whole device (sms 0)."""
    if cls == "decode":
        specs = [([1, 1], 48), ([1, 1], 64), ([1, 1], 80), ([3, 5], 64), ([1, 1, 1, 1], 64),
                 ([1, 1], 0)]  # fmt: skip
    else:
        specs = [([1, 1], 32), ([3, 5], 32), ([1, 1], 48), ([1, 1], 0)]
    out = []
    for sizes, sms in specs:
        scaled = [s * total // sum(sizes) for s in sizes]
        scaled[-1] += total - sum(scaled)
        name = f"{cls}-{'-'.join(map(str, scaled))}-" + (f"attn{sms}" if sms else "2streams")
        plan = two_partition_plan(name, scaled, sms) if sms else two_stream_plan(name, scaled)
        out.append(plan)
    return out


def sweep(engine: Any, cls: str, inputs: tuple) -> list[dict[str, Any]]:
    model, ops = engine.model, engine.ops
    ids, ctx = inputs
    dense_ms, ref = time_graph(lambda: model(ids, ctx))
    rows = [{"plan": "dense", "ms": round(dense_ms, 3), "rel_err": 0.0}]
    plans = [default_plans()[cls], *candidates(cls, int(ids.shape[0]))]
    for plan in plans:
        for p in (plan.sequential(), plan):
            try:
                ex = PipelineExecutor(p, model, ops)
                ms, out = time_graph(lambda ex=ex: ex.forward(ids, ctx))
                rows.append({"plan": p.name, "ms": round(ms, 3), "rel_err": rel_err(out, ref),
                             "sms": {str(k): v for k, v in ex.units.sms.items()}})  # fmt: skip
            except Exception as exc:  # a plan that fails is recorded, not fatal
                rows.append({"plan": p.name, "error": repr(exc)[:300]})
            print(cls, rows[-1], flush=True)
    return rows


def timeline(engine: Any, plan: Plan, inputs: tuple, layer: int, graph: bool) -> dict[str, Any]:
    """Per-step events of one forward; steps of ``layer`` in ms from the layer's first step."""
    ids, ctx = inputs
    out: dict[str, Any] = {"graph": graph}
    for p in (plan.sequential(), plan):
        ex = PipelineExecutor(p, engine.model, engine.ops)
        traced(ex, ids, ctx, graph)
        rows = layer_steps(ex, layer)
        ex.trace = None
        out["sequential" if p.is_single_stream else "nanoflow"] = {
            "plan": p.name, "sms": {str(k): v for k, v in ex.units.sms.items()}, "steps": rows,
        }  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--decodes", default="256,512", help="decode batch sizes to sweep")
    ap.add_argument("--timeline-plan", default=None, help="plan JSON (default: shipped decode)")
    ap.add_argument("--kv-gb", type=float, default=70.0, help="KV cache size, GB")
    ap.add_argument("--max-num-seqs", type=int, default=512)
    ap.add_argument("--timeline-only", action="store_true", help="skip the plan sweep")
    args = ap.parse_args()
    llm = LLM("llama-3-8b", load_format="dummy", max_num_seqs=args.max_num_seqs,
              enforce_eager=True, kv_cache_memory_bytes=int(args.kv_gb * (1 << 30)))  # fmt: skip
    engine = llm.engine
    for k, v in engine.runner.kv_caches:
        k.normal_(0, 1)
        v.normal_(0, 1)
    dev = torch.cuda.get_device_name()
    args.out.mkdir(parents=True, exist_ok=True)
    plan = Plan.load(args.timeline_plan) if args.timeline_plan else default_plans()["decode"]
    first = int(args.decodes.split(",")[0])
    decode_in = batch(engine, first, args.context, [], seed=1)
    tl: dict[str, Any] = {"device": dev, "layer": 16, "decodes": first, "context": args.context}
    for graph in (True, False):
        try:
            tl["graph" if graph else "eager"] = timeline(engine, plan, decode_in, 16, graph)
        except Exception as exc:  # recorded: an eager timeline still comes back
            tl["graph" if graph else "eager"] = {"error": repr(exc)[:300]}
        print("timeline", graph, str(tl["graph" if graph else "eager"])[:200], flush=True)
    (args.out / "nanoflow_timeline.json").write_text(json.dumps(tl, indent=1))
    if args.timeline_only:
        return
    result: dict[str, Any] = {"device": dev, "context": args.context}
    for n in args.decodes.split(","):
        inputs = batch(engine, int(n), args.context, [], seed=1)
        result[f"decode-{n}"] = sweep(engine, "decode", inputs)
        (args.out / "nanoflow_sweep.json").write_text(json.dumps(result, indent=1))
    result["prefill"] = sweep(engine, "prefill", batch(engine, 64, args.context, [992, 992], 2))
    (args.out / "nanoflow_sweep.json").write_text(json.dumps(result, indent=1))
    print("done", flush=True)


if __name__ == "__main__":
    main()
