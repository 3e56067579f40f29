"""The most a two-nano-batch pipeline could gain over the dense forward, from measurements.

A NanoFlow pipeline hides non-GEMM work (attention, all-reduces, norms) under the GEMMs of the
other nano-batch, but every GEMM then runs twice at half the rows. This bound is deliberately
generous: every non-GEMM kernel hides perfectly, nothing slows anything else down (no shared
HBM, no SM contention), and split GEMMs run at their measured speed alone. So

    pipelined iteration >= max(GEMMs at half the rows, twice; everything else)

with the GEMMs at half the rows taken from the cuBLAS probe (``bench/skinny_linear.py``) and
scaled by how the engine's own GEMMs compare with the probe at the full rows, and "everything
else" the profiled iteration's device time outside GEMMs. Mixed iterations (thousands of rows)
split without a GEMM penalty. A whole run's ceiling applies the two ratios to its mixed and
decode iterations' time (the record's ``iteration_ms_by_kind``).

Usage: python bench/overlap_ceiling.py --probe PROBE.json --model llama-3-70b-tp2 --layers 80
    --decode-profile DECODE.json --mixed-profile MIXED.json --runs RUN.json [--out OUT.json]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

PROJECTIONS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


@dataclass(frozen=True)
class StepCeiling:
    busy_ms: float  # the dense iteration's device time (profiled)
    gemm_ms: float  # of which GEMMs
    split_gemm_ms: float  # the GEMMs as two nano-batches, alone (estimate)
    ceiling: float  # busy / max(split GEMMs, the rest)


def layer_gemm_us(probe: list[dict[str, Any]], model: str, rows: int) -> float:
    """One layer's four projections at ``rows`` rows, cuBLAS alone (microseconds); between two
    probed row counts, linear in the rows."""
    return sum(_projection_us(probe, model, p, rows) for p in PROJECTIONS)


def _projection_us(probe: list[dict[str, Any]], model: str, projection: str, rows: int) -> float:
    points = sorted(
        (r["rows"], r["torch_us"])
        for r in probe
        if r["model"] == model and r["projection"] == projection
    )
    if len({n for n, _ in points}) < len(points):  # which one would be the speed there?
        raise ValueError(f"the probe has {projection} for {model} more than once at one row count")
    for (lo, lo_us), (hi, hi_us) in itertools.pairwise(points):
        if lo <= rows <= hi:
            return float(lo_us + (hi_us - lo_us) * (rows - lo) / (hi - lo))
    if len(points) == 1 and points[0][0] == rows:
        return float(points[0][1])
    raise ValueError(f"the probe has no {projection} for {model} around {rows} rows")


def decode_ceiling(profile: dict[str, Any], probe: list[dict[str, Any]], model: str,
                   layers: int) -> StepCeiling:  # fmt: skip
    """A decode step of the profile's batch split into two equal nano-batches."""
    device = profile["device_ms_per_iteration"]
    busy, gemm = profile["device_busy_ms_per_iteration"], device["gemm"]
    rows = round(profile["mean_batch_seqs"])
    if rows % 2:
        raise ValueError(f"a decode batch of {rows} does not split in two equal halves")
    dense_alone = layers * layer_gemm_us(probe, model, rows) / 1e3
    split_alone = 2 * layers * layer_gemm_us(probe, model, rows // 2) / 1e3
    # the engine's GEMMs (with the LM head) against the probe's four projections at full rows
    split = split_alone * gemm / dense_alone
    return StepCeiling(busy, gemm, round(split, 3), round(busy / max(split, busy - gemm), 4))


def mixed_ceiling(profile: dict[str, Any]) -> StepCeiling:
    """A mixed iteration of thousands of rows: halves keep the GEMMs' speed (an assumption)."""
    busy, gemm = profile["device_busy_ms_per_iteration"], profile["device_ms_per_iteration"]["gemm"]
    return StepCeiling(busy, gemm, gemm, round(busy / max(gemm, busy - gemm), 4))


def run_ceiling(record: dict[str, Any], mixed: StepCeiling, decode: StepCeiling) -> dict[str, Any]:
    """A whole run: its mixed and decode iterations' time, each divided by its ceiling."""
    by_kind = record["iteration_ms_by_kind"]
    n_mixed = record["mixed_iterations"]
    n_decode = record["iterations"] - n_mixed
    mixed_s, decode_s = n_mixed * by_kind["mixed"] / 1e3, n_decode * by_kind["decode"] / 1e3
    best = mixed_s / mixed.ceiling + decode_s / decode.ceiling
    ceiling = round((mixed_s + decode_s) / best, 3)
    return {"workload": record["workload"], "mixed_s": round(mixed_s, 2),
            "decode_s": round(decode_s, 2), "ceiling": ceiling}  # fmt: skip


def _records(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        data = json.load(f)
    return data if isinstance(data, list) else data.get("records", [data])


def _profile(path: str) -> dict[str, Any]:
    for record in _records(path):
        if (
            isinstance(record.get("profile"), dict)
            and "device_ms_per_iteration" in record["profile"]
        ):
            return dict(record["profile"])
    raise ValueError(f"{path}: no record with a kernel profile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", required=True, help="bench/skinny_linear.py's JSON")
    parser.add_argument(
        "--model", required=True, help="the probe's model name, e.g. llama-3-70b-tp2"
    )
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--decode-profile", required=True)
    parser.add_argument("--mixed-profile", required=True)
    parser.add_argument("--runs", required=True, help="engine records (nanolang ones are used)")
    parser.add_argument("--out")
    args = parser.parse_args()
    with open(args.probe) as f:
        probe = json.load(f)["results"]
    decode = decode_ceiling(_profile(args.decode_profile), probe, args.model, args.layers)
    mixed = mixed_ceiling(_profile(args.mixed_profile))
    runs = [
        run_ceiling(r, mixed, decode) for r in _records(args.runs) if r.get("engine") == "nanolang"
    ]
    result = {"command": " ".join(["python", *sys.argv]), "date": datetime.date.today().isoformat(),
              "decode_step": asdict(decode), "mixed_iteration": asdict(mixed), "runs": runs,
              "inputs": {k: getattr(args, k) for k in ("probe", "model", "layers", "decode_profile",
                                                       "mixed_profile", "runs")}}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
