"""``python -m runtime.tune.verify``: the searched plans against the search's predictions. For
every bucket of a plan set, one batch of its representative shape: the dense forward and, where
the bucket has a plan, the plan's forward (CUDA graphs replayed and timed with CUDA events; wall
clock on the CPU), each next to the predicted time. Predictions cover the decoder layers; the
measured forward also has the embedding and the final norm (about 1% on Llama-3-8B)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from runtime.pipeline.executor import PipelineExecutor
from runtime.pipeline.planset import Bucket, PlanSet
from runtime.tune.inputs import KVCaches, make_batch, shared_kv_caches


def time_forward(fn: Callable[[], torch.Tensor], cuda: bool, reps: int = 10) -> float:
    """Median ms of fn: CUDA-graph replays on a GPU, calls on the CPU."""
    fn()
    if not cuda:
        samples = []
        for _ in range(max(3, reps // 3)):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        return min(samples)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    samples = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        samples.append(a.elapsed_time(b))
    return statistics.median(samples)


@torch.inference_mode()
def verify(engine: Any, planset: PlanSet, kv_gb: float, buckets: str = "all") -> list[dict]:
    """One record per bucket (``buckets``: 'all' or 'plans', those with a plan)."""
    kv = shared_kv_caches(engine, int(kv_gb * 1e9))
    executors = {f: PipelineExecutor(p, engine.model, engine.ops) for f, p in planset.plans.items()}
    rows = []
    for b in planset.buckets:
        if buckets == "plans" and b.plan is None:
            continue
        rec: dict[str, Any] = {**b.__dict__}
        try:
            rec.update(_measure(engine, kv, b, executors.get(b.plan or "")))
        except Exception as exc:  # one bucket's failure is recorded, the rest go on
            rec["error"] = repr(exc)[:300]
        rows.append(rec)
        print(json.dumps(rec), file=sys.stderr, flush=True)
    return rows


def _measure(engine: Any, kv: KVCaches, b: Bucket, ex: PipelineExecutor | None) -> dict[str, float]:
    cuda = engine.device.type == "cuda"
    chunks = [b.prefill_tokens] if b.prefill_tokens else []
    ids, ctx = make_batch(engine, kv, b.decodes, b.context, chunks, seed=1)
    dense = time_forward(lambda: engine.model(ids, ctx), cuda)
    out = {"dense_measured_ms": round(dense, 4), "dense_error": round(dense / b.dense_ms - 1, 4)}
    if ex is not None:
        ms = time_forward(lambda: ex.forward(ids, ctx), cuda)
        out["plan_measured_ms"] = round(ms, 4)
        out["plan_error"] = round(ms / b.predicted_ms - 1, 4)
        out["plan_vs_dense"] = round(dense / ms, 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.tune.verify", description=__doc__)
    ap.add_argument("--plan-set", type=Path, required=True)
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--load-format", default="dummy")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--kv-gb", type=float, default=60.0)
    ap.add_argument("--buckets", choices=["all", "plans"], default="all")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from runtime.llm import LLM

    planset = PlanSet.load(args.plan_set)
    llm = LLM(args.model, load_format=args.load_format, device=args.device, dtype=args.dtype,
              enforce_eager=True, kv_cache_memory_bytes=1 << 26)  # fmt: skip
    dev = llm.engine.device
    rows = verify(llm.engine, planset, args.kv_gb, args.buckets)
    record = {
        "command": "python -m runtime.tune.verify "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "plan_set": str(args.plan_set),
        "buckets": rows,
    }
    text = json.dumps(record, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
