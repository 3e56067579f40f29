"""What the search would answer over fp8 with today's decode kernels, before measuring them: the
shipped bf16 H200 profile with its decode-attention timings replaced from the 2026-11-30 kernel
measurements (docs/performance.md, "fp8 decode"), searched on the fp8 buckets on the CPU.

Two bounds for attention on a capped grid, which was not measured over fp8 with the new kernels:
  scaled: every decode-attention timing (whole GPU and capped grids) times WHOLE_RATIO, the
          whole-GPU gain (TMA one program per item with float16 dots over fp8, 0.943 ms, against
          the gather kernel over bf16, 1.420 ms, at 1,024 decodes x 1,536): optimistic for the
          pipelines (a capped grid gains as much as the whole GPU);
  per-sm: whole GPU as in ``scaled``; grid:N at PER_SM_GB_S of fp8 KV per SM (the TMA kernel on
          48-64 SM green contexts), never faster than the whole GPU.
Prefill attention and the interference factors stay the bf16 profile's (not re-measured). These
are predictions for the next GPU call (bench/nanoflow_fp8_call.sh), not measurements.

  python bench/nanoflow_fp8_whatif.py --out /tmp/whatif --summary RESULT.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from runtime.tune.costs import DENSE, BatchShape, Costs
from runtime.tune.milp import Solver
from runtime.tune.profiles import OpTiming, Profile, placement_sms
from runtime.tune.search import SearchConfig, search_plans, search_shape

STORED = Path("runtime/pipeline/plans/searched/llama-3-8b-h200/profile.json")
WHOLE_RATIO = 0.943 / 1.420
PER_SM_GB_S = 25.0
KV_BYTES_PER_TOKEN = 2 * 1024  # K and V of one token of one layer, fp8 (Llama-3-8B: 8 x 128)


def whatif(stored: Profile, variant: str) -> Profile:
    def decode(t: OpTiming) -> OpTiming:
        ms = t.ms * WHOLE_RATIO
        if variant == "per-sm" and t.placement != "whole":
            sms = placement_sms(t.placement, stored.device_sms)
            gb = t.tokens * t.context * KV_BYTES_PER_TOKEN / 1e9
            ms = max(ms, 1e3 * gb / (PER_SM_GB_S * sms))
        return dataclasses.replace(t, ms=ms)

    timings = tuple(decode(t) if t.phase == "decode" else t for t in stored.timings)
    notes = {**stored.notes, "kv_cache_dtype": "float8_e4m3fn",
             "whatif": {"variant": variant, "whole_ratio": WHOLE_RATIO,
                        "per_sm_gb_s": PER_SM_GB_S, "source": str(STORED)}}  # fmt: skip
    return dataclasses.replace(stored, timings=timings, notes=notes)


def bounds(prof: Profile, time_limit: float) -> list[dict]:
    """Decode forwards of 1,024 / 512 sequences: dense (its attention and the rest), and the best
    pipeline the search finds at any cost (explore 0.95, margin 0), with the profile's
    interference and without any (the overlap bound if neither side slowed the other)."""
    cfg = SearchConfig(explore=0.95, margin=0.0, solver=Solver.HIGHS, time_limit_s=time_limit)
    out = []
    for shape in (BatchShape(1024, 0, 1024), BatchShape(1024, 0, 1536), BatchShape(512, 0, 1536)):
        c, layers = Costs(prof, shape), prof.shape.num_layers
        row: dict = {"decodes": shape.decodes, "context": shape.context,
                     "attention_ms": round(layers * c.us(DENSE, "att", 0, shape.tokens) / 1e3, 2),
                     "rest_ms": round(layers * sum(c.us(DENSE, s, 0, shape.tokens)
                                                   for s in ("pre", "post")) / 1e3, 2)}  # fmt: skip
        for key, p in (
            ("interference", prof),
            ("no_interference", dataclasses.replace(prof, interference=())),
        ):
            r = search_shape(p, shape, cfg)
            row["dense_ms"] = round(r.dense_us / 1e3, 2)
            if r.schedule is not None:
                best = r.schedule.forward_us(layers)
                row[key] = {"best_ms": round(best / 1e3, 2), "layout": r.schedule.layout.name,
                            "dense_over_best": round(r.dense_us / best, 3)}  # fmt: skip
        out.append(row)
        print("  ", row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", type=Path, default=STORED)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--summary", type=Path, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=10.0)
    args = ap.parse_args()
    stored = Profile.load(args.profile)
    cfg = SearchConfig(decode_points=(0, 256, 512, 1024), prefill_points=(0, 512, 1024, 2048),
                       context_points=(512, 1024, 1536, 2048), explore=0.1, solver=Solver.HIGHS,
                       time_limit_s=args.time_limit, jobs=args.jobs)  # fmt: skip
    command = "PYTHONPATH=. python " + shlex.join(sys.argv)
    summary: dict = {"command": command, "device": "cpu (search)",
                     "date": time.strftime("%Y-%m-%d"), "profile": str(args.profile),
                     "prediction": "what-if timings, not measured", "variants": {}}  # fmt: skip
    for variant in ("scaled", "per-sm"):
        t0 = time.perf_counter()
        planset, results = search_plans(whatif(stored, variant), cfg)
        planset.save(args.out / variant)
        rows = [{"decodes": r.shape.decodes, "prefill_tokens": r.shape.prefill_tokens,
                 "context": r.shape.context, "dense_ms": round(r.dense_us / 1e3, 3),
                 "predicted_ms": round(r.predicted_us / 1e3, 3),
                 "plan": r.plan.name if r.plan else None,
                 "best_pipeline_ms": round(r.schedule.forward_us(32) / 1e3, 3)
                 if r.schedule else None, "reason": r.reason}
                for r in results if r.shape.decodes >= 512]  # fmt: skip
        summary["variants"][variant] = {
            "search_s": round(time.perf_counter() - t0, 1),
            "jobs": args.jobs,
            "buckets": len(results),
            "plans": len(planset.plans),
            "decode_512_plus": rows,
        }
        print(
            f"{variant}: {len(planset.plans)} plans of {len(results)} buckets, "
            f"{time.perf_counter() - t0:.0f} s"
        )
        summary["variants"][variant]["bounds"] = bounds(whatif(stored, variant), args.time_limit)
    if args.summary:
        args.summary.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
