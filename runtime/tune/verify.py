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
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from runtime.pipeline.executor import PipelineExecutor
from runtime.pipeline.plan import Plan
from runtime.pipeline.planset import Bucket, PlanSet, kv_dtype_name
from runtime.tune.inputs import KVCaches, make_batch, shared_kv_caches


def time_forward(fn: Callable[[], torch.Tensor], cuda: bool, reps: int = 7) -> float:
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
def verify(
    engine: Any,
    planset: PlanSet,
    kv_gb: float,
    buckets: str = "all",
    min_decodes: int = 0,
    kv_dtype: torch.dtype | None = None,
    directory: Path | None = None,
    contexts: tuple[int, ...] = (),
    prefills: tuple[int, ...] = (),
) -> list[dict]:
    """One record per bucket (``buckets``: 'all', 'plans' (those with a plan) or 'candidates'
    (those with a plan or a candidate); only buckets of at least ``min_decodes`` decodes and, if
    given, of ``contexts`` and ``prefills`` (prefill tokens)), over a KV buffer of ``kv_dtype``
    (default: the engine's cache dtype). Where dense won, the bucket's candidate pipeline (loaded
    from ``directory``, the plan set's) is measured as the plan would be. A batch the buffer
    cannot hold shares KV blocks between sequences (record key ``kv_reuse``: blocks read per
    block held)."""
    kv = shared_kv_caches(engine, int(kv_gb * 1e9), kv_dtype)
    executors = {f: PipelineExecutor(p, engine.model, engine.ops) for f, p in planset.plans.items()}
    rows = []
    for b in planset.buckets:
        if (buckets == "plans" and b.plan is None) or b.decodes < min_decodes:
            continue
        if buckets == "candidates" and b.plan is None and b.candidate is None:
            continue
        if (contexts and b.context not in contexts) or (
            prefills and b.prefill_tokens not in prefills
        ):
            continue
        rec: dict[str, Any] = {**b.__dict__}
        try:
            ex = executors.get(b.plan or "")
            if ex is None and b.candidate and directory is not None:
                plan = Plan.load(directory / b.candidate)
                ex = PipelineExecutor(plan, engine.model, engine.ops)
                b = replace(b, predicted_ms=b.candidate_ms or b.predicted_ms)
                rec["measured"] = "candidate"
            rec.update(_measure(engine, kv, b, ex))
        except Exception as exc:  # one bucket's failure is recorded, the rest go on
            rec["error"] = repr(exc)[:300]
        rows.append(rec)
        print(json.dumps(rec), file=sys.stderr, flush=True)
    return rows


def _measure(engine: Any, kv: KVCaches, b: Bucket, ex: PipelineExecutor | None) -> dict[str, float]:
    cuda = engine.device.type == "cuda"
    chunks = [b.prefill_tokens] if b.prefill_tokens else []
    ids, ctx = make_batch(engine, kv, b.decodes, b.context, chunks, seed=1, reuse_blocks=True)
    dense = time_forward(lambda: engine.model(ids, ctx), cuda)
    out = {"dense_measured_ms": round(dense, 4), "dense_error": round(dense / b.dense_ms - 1, 4)}
    held = kv[0][0].shape[0] - 1
    read = sum(-(-n // ctx.attn.block_size) for n in ctx.attn.context_lens_host or ())
    if read > held:
        out["kv_reuse"] = round(read / held, 3)
    if ex is not None:
        ms = time_forward(lambda: ex.forward(ids, ctx), cuda)
        out["plan_measured_ms"] = round(ms, 4)
        out["plan_error"] = round(ms / b.predicted_ms - 1, 4)
        out["plan_vs_dense"] = round(dense / ms, 4)
    return out


def _best_timeline(
    engine: Any, planset: PlanSet, rows: list[dict], args: argparse.Namespace, kv_dtype: Any,
    path: Path,
) -> dict[str, Any]:  # fmt: skip
    """The measured best plan's bucket (highest plan_vs_dense): one layer traced with the plan
    and dense, written to ``path``; returns a summary (or why there is none)."""
    from runtime.tune.timeline import timeline

    measured = [r for r in rows if "plan_vs_dense" in r]
    if not measured:
        return {"error": "no plan was measured"}
    best = max(measured, key=lambda r: r["plan_vs_dense"])
    kv = shared_kv_caches(engine, int(args.kv_gb * 1e9), kv_dtype)
    chunks = [best["prefill_tokens"]] if best["prefill_tokens"] else []
    ids, ctx = make_batch(engine, kv, best["decodes"], best["context"], chunks, seed=1,
                          reuse_blocks=True)  # fmt: skip
    try:
        plan = (planset.plans[best["plan"]] if best["plan"]
                else Plan.load(args.plan_set.parent / best["candidate"]))  # fmt: skip
        tl = timeline(engine, plan, ids, ctx)
    except Exception as exc:  # the verification above still counts
        return {"bucket": best, "error": repr(exc)[:300]}
    tl.update(bucket=best, device=torch.cuda.get_device_name(engine.device),
              kv_cache_dtype=kv_dtype_name(kv_dtype or engine.kv_dtype))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tl, indent=1) + "\n")
    return {"bucket": best, "file": str(path)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.tune.verify", description=__doc__)
    ap.add_argument("--plan-set", type=Path, required=True)
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--load-format", default="dummy")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--kv-gb", type=float, default=8.0, help="shared KV buffer (capped)")
    ap.add_argument("--buckets", choices=["all", "plans", "candidates"], default="all")
    ap.add_argument("--min-decodes", type=int, default=0, help="only buckets with this many")
    ap.add_argument("--contexts", default="", help="only buckets of these contexts (comma list)")
    ap.add_argument("--prefills", default="",
                    help="only buckets of these prefill tokens (comma list; 0: decode only)",
                    )  # fmt: skip
    ap.add_argument(
        "--kv-cache-dtype",
        choices=["auto", "fp8"],
        default="auto",
        help="the KV buffer attention reads (fp8: float8 e4m3, scales 1.0)",
    )
    ap.add_argument("--fp8-min-decodes", type=int, default=None,
                    help="then the buckets of at least this many decodes again over an fp8 KV "
                    "buffer (record key fp8_buckets)")  # fmt: skip
    ap.add_argument("--timeline", type=Path, default=None,
                    help="JSON file for one layer's steps of the measured best plan and the dense "
                    "layer")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from runtime.llm import LLM

    planset = PlanSet.load(args.plan_set)
    llm = LLM(args.model, load_format=args.load_format, device=args.device, dtype=args.dtype,
              enforce_eager=True, kv_cache_memory_bytes=1 << 26)  # fmt: skip
    dev = llm.engine.device
    kv_dtype = torch.float8_e4m3fn if args.kv_cache_dtype == "fp8" else None
    contexts = tuple(int(c) for c in args.contexts.split(",") if c)
    prefills = tuple(int(p) for p in args.prefills.split(",") if p)
    rows = verify(llm.engine, planset, args.kv_gb, args.buckets, args.min_decodes, kv_dtype,
                  args.plan_set.parent, contexts, prefills)  # fmt: skip
    record: dict[str, Any] = {
        "command": "python -m runtime.tune.verify "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "plan_set": str(args.plan_set),
        # the KV buffer the buckets were measured over, and the one the plan set was searched
        # over (the engine runs a plan set over its own dtype only)
        "kv_cache_dtype": kv_dtype_name(kv_dtype or llm.engine.kv_dtype),
        "plan_set_kv_cache_dtype": planset.kv_cache_dtype,
        "buckets": rows,
    }
    if args.timeline is not None:
        record["timeline"] = _best_timeline(llm.engine, planset, rows, args, kv_dtype,
                                            args.timeline)  # fmt: skip
    if args.fp8_min_decodes is not None:
        record["fp8_kv_cache_dtype"] = kv_dtype_name(torch.float8_e4m3fn)
        record["fp8_buckets"] = verify(llm.engine, planset, args.kv_gb, args.buckets,
                                       args.fp8_min_decodes, torch.float8_e4m3fn,
                                       args.plan_set.parent, contexts, prefills)  # fmt: skip
        if args.timeline is not None:  # the fp8 pass's best plan too, beside the first
            fp8_path = args.timeline.with_name(args.timeline.stem + "-fp8.json")
            record["fp8_timeline"] = _best_timeline(
                llm.engine, planset, record["fp8_buckets"], args, torch.float8_e4m3fn, fp8_path
            )
    text = json.dumps(record, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
