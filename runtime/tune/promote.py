"""``python -m runtime.tune.promote``: a plan set for one KV cache dtype from a verify record
(``python -m runtime.tune.verify --buckets candidates``). Every bucket runs dense, except those
where verify measured the bucket's candidate pipeline (the search's best, which lost to dense
under its margin or over another KV dtype) beating the dense forward by at least ``min_gain``
over that dtype: those run the candidate. A way to put a measured pipeline in the engine where
the search said dense; the bucket's reason says it was promoted and by what measurement."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runtime.pipeline.plan import Plan, PlanError
from runtime.pipeline.planset import Bucket, PlanSet

Shape = tuple[int, int, int]


def verified_records(record: dict[str, Any], kv_dtype: str, planset: PlanSet) -> list[dict]:
    """The verify record's buckets measured over ``kv_dtype`` (a torch dtype name): its
    ``fp8_buckets`` for float8, else its ``buckets`` when those were measured over that dtype
    ('auto' in records before the field was resolved: the plan set's own dtype)."""
    if kv_dtype.startswith("float8") and "fp8_buckets" in record:
        return list(record["fp8_buckets"])
    measured = record.get("kv_cache_dtype", "auto")
    if measured == "auto":
        measured = planset.kv_cache_dtype
    if measured == "fp8":
        measured = "float8_e4m3fn"
    if measured != kv_dtype:
        raise PlanError(f"the verify record has no buckets measured over {kv_dtype} "
                        f"(its buckets: {measured})")  # fmt: skip
    return list(record.get("buckets", []))


def promote(
    planset: PlanSet, directory: Path, records: list[dict], kv_dtype: str, min_gain: float,
    source: str = "",
) -> PlanSet:  # fmt: skip
    """The plan set over ``kv_dtype``: dense everywhere but the buckets whose measured candidate
    beats dense by ``min_gain`` (their candidate plans loaded from ``directory``)."""
    wins = {_shape(r): r for r in records if (_gain(r) or 0.0) >= 1 + min_gain}
    buckets, plans = [], {}
    for b in planset.buckets:
        r = wins.get((b.decodes, b.prefill_tokens, b.context))
        if r is None or not b.candidate:
            buckets.append(_dense(b, kv_dtype, planset.kv_cache_dtype, source))
            continue
        name = Path(b.candidate).name
        plans[name] = Plan.load(directory / b.candidate)
        buckets.append(replace(
            b, plan=name, predicted_ms=float(r["plan_measured_ms"]),
            dense_ms=float(r["dense_measured_ms"]), candidate=None, candidate_ms=None,
            reason=f"promoted: measured {r['plan_vs_dense']:.3f}x dense over {kv_dtype} KV "
            f"({source}); times are measured, not predicted",
        ))  # fmt: skip
    # the profile's path relative to the searched plan sets' directory (a set's own file name,
    # or already a path there, as in an explore set)
    profile = planset.profile if "/" in planset.profile else f"{directory.name}/{planset.profile}"
    return replace(planset, buckets=tuple(buckets), plans=plans, candidates={},
                   kv_cache_dtype=kv_dtype, profile=profile,
                   created=datetime.now(UTC).isoformat(timespec="seconds"))  # fmt: skip


def _dense(b: Bucket, kv_dtype: str, searched: str, source: str = "") -> Bucket:
    where = f" in {source}" if source else ""
    return replace(b, plan=None, predicted_ms=b.dense_ms, candidate=None, candidate_ms=None,
                   reason=f"dense: no candidate measured faster over {kv_dtype} KV{where} (times: "
                   f"the search's over {searched})")  # fmt: skip


def _shape(r: dict) -> Shape:
    return int(r["decodes"]), int(r["prefill_tokens"]), int(r["context"])


def _gain(r: dict) -> float | None:
    """Dense over candidate time of a measured candidate; None: not a measured candidate."""
    if r.get("measured") != "candidate" or "plan_vs_dense" not in r:
        return None
    return float(r["plan_vs_dense"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.tune.promote", description=__doc__)
    ap.add_argument("--plan-set", type=Path, required=True, help="the searched plan set")
    ap.add_argument("--verify", type=Path, required=True, help="verify's JSON record")
    ap.add_argument("--kv-cache-dtype", choices=["auto", "fp8"], default="fp8",
                    help="the KV dtype of the new set (auto: the plan set's)")  # fmt: skip
    ap.add_argument("--min-gain", type=float, default=0.02,
                    help="a candidate must beat dense by this fraction (measured)")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="directory of the new plan set")
    args = ap.parse_args(argv)
    try:
        planset = PlanSet.load(args.plan_set)
        record = json.loads(args.verify.read_text())
        kv = planset.kv_cache_dtype if args.kv_cache_dtype == "auto" else "float8_e4m3fn"
        records = verified_records(record, kv, planset)
        source = f"{args.verify.name}, {record.get('device', '?')}, {record.get('date', '?')}"
        new = promote(planset, args.plan_set.parent, records, kv, args.min_gain, source)
    except (OSError, json.JSONDecodeError, PlanError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = new.save(args.out)
    for b in new.buckets:
        if b.plan is not None:
            print(f"d={b.decodes} p={b.prefill_tokens} c={b.context}: {b.plan}: {b.reason}",
                  file=sys.stderr)  # fmt: skip
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
