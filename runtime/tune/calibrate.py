"""``python -m runtime.tune.calibrate``: the cost model calibrated from measured forwards.

The profile times every operation alone and in pairs; a whole 32-layer forward then runs a few
percent over the sum (the dense forward) and a pipelined one, whose two sides overlap for whole
layers, by as much as 12% (attention capped at 80 SMs on the H200). Verify records
(``python -m runtime.tune.verify``) hold both times for each measured bucket. Per layout
(``dense``, ``streams``, ``grid:N``, ``green:N``) the factor is the median of measured over
predicted forward time over the records measured over the profile's KV dtype; the search
(``runtime.tune.costs``) multiplies every segment on that layout by it, so both of NanoFlow's
stages and the dense-or-plan decision see the calibrated times. A layout without a
measurement is priced with the largest factor measured. The factors go into the profile's
``notes["calibration"]``."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from runtime.tune.profiles import Profile

_LAYOUT = re.compile(r"-(streams|grid\d+|green\d+|carve\d+)$")


def layout_of(plan_name: str) -> str:
    """The layout a searched plan's name ends with, as the cost model names it
    (``d1024-p0-c2048-512-512-grid80`` -> ``grid:80``)."""
    m = _LAYOUT.search(Path(plan_name).stem)
    if m is None:
        raise ValueError(f"{plan_name!r} does not end with a searched layout (streams, gridN, "
                         f"greenN, carveN)")  # fmt: skip
    name = m.group(1)
    return name if name == "streams" else re.sub(r"(\d+)$", r":\1", name)


def ratios(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Measured / predicted forward time per layout, from verify bucket records."""
    out: dict[str, list[float]] = {}
    for r in records:
        if r.get("error") or "dense_measured_ms" not in r:
            continue
        out.setdefault("dense", []).append(r["dense_measured_ms"] / r["dense_ms"])
        name = r.get("plan") or r.get("candidate")
        predicted = r.get("candidate_ms") if r.get("measured") == "candidate" else r["predicted_ms"]
        if name and "plan_measured_ms" in r and predicted:
            out.setdefault(layout_of(name), []).append(r["plan_measured_ms"] / predicted)
    return out


def measured_over(record: dict[str, Any], kv_dtype: str) -> list[dict[str, Any]]:
    """A verify record's buckets measured over ``kv_dtype`` (its first pass, or its fp8 pass)."""
    rows: list[dict[str, Any]] = []
    first = record.get("kv_cache_dtype", "auto")
    if first in (kv_dtype, "auto"):
        rows += record.get("buckets", [])
    if record.get("fp8_kv_cache_dtype") == kv_dtype:
        rows += record.get("fp8_buckets", [])
    return rows


def factors(records: list[dict[str, Any]]) -> dict[str, float]:
    """Each measured layout's factor: the median of its measured / predicted ratios."""
    return {k: round(statistics.median(v), 4) for k, v in sorted(ratios(records).items())}


def calibrated(profile: Profile, records: list[dict[str, Any]], source: str) -> Profile:
    """The profile with ``notes["calibration"]`` set from ``records`` (replacing any before:
    the records' predictions must come from a search of the uncalibrated profile)."""
    from dataclasses import replace

    by_layout = ratios(records)
    notes = {**profile.notes, "calibration": factors(records),
             "calibration_points": {k: len(v) for k, v in sorted(by_layout.items())},
             "calibration_source": source}  # fmt: skip
    return replace(profile, notes=notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.tune.calibrate", description=__doc__)
    ap.add_argument("--profile", type=Path, required=True)
    ap.add_argument("--verify", type=Path, nargs="+", required=True,
                    help="verify records of plan sets searched from this profile, uncalibrated",
                    )  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="the calibrated profile's JSON file")
    args = ap.parse_args(argv)
    try:
        prof = Profile.load(args.profile)
        kv = str(prof.notes.get("kv_cache_dtype", "bfloat16"))
        records = [r for v in args.verify for r in measured_over(json.loads(v.read_text()), kv)]
        if not records:
            raise ValueError(f"no bucket in {[str(v) for v in args.verify]} was measured over {kv}")
        new = calibrated(prof, records, ", ".join(v.name for v in args.verify))
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    new.save(args.out)
    for k, f in new.notes["calibration"].items():
        print(f"{k}: x{f} ({new.notes['calibration_points'][k]} measured)", file=sys.stderr)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
