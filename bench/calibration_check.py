"""Leave-one-out check of the cost model's calibration (runtime.tune.calibrate): every measured
forward (dense or pipeline) predicted with the factor of its layout fitted from the other
measurements only, against the uncalibrated prediction.

    PYTHONPATH=. python bench/calibration_check.py PROFILE VERIFY.json [VERIFY.json ...] --out F
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from runtime.tune.calibrate import layout_of, measured_over
from runtime.tune.profiles import Profile


def points(records: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """One point per measured forward: layout, predicted and measured ms."""
    out = []
    for r in records:
        if r.get("error") or "dense_measured_ms" not in r:
            continue
        shape = {"decodes": r["decodes"], "prefill_tokens": r["prefill_tokens"],
                 "context": r["context"], "source": source}  # fmt: skip
        out.append({**shape, "layout": "dense", "predicted_ms": r["dense_ms"],
                    "measured_ms": r["dense_measured_ms"]})  # fmt: skip
        name = r.get("plan") or r.get("candidate")
        predicted = r.get("candidate_ms") if r.get("measured") == "candidate" else r["predicted_ms"]
        if name and "plan_measured_ms" in r and predicted:
            measured = r["plan_measured_ms"]
            out.append({**shape, "layout": layout_of(name), "plan": name,
                        "predicted_ms": predicted, "measured_ms": measured})  # fmt: skip
    return out


def leave_one_out(pts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, p in enumerate(pts):
        others = [q["measured_ms"] / q["predicted_ms"] for j, q in enumerate(pts)
                  if j != i and q["layout"] == p["layout"]]  # fmt: skip
        factor = statistics.median(others) if others else 1.0
        rows.append({**p, "raw_error": round(p["measured_ms"] / p["predicted_ms"] - 1, 4),
                     "held_out_factor": round(factor, 4), "fitted_on": len(others),
                     "calibrated_error": round(p["measured_ms"] / (p["predicted_ms"] * factor)
                                               - 1, 4)})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("profile", type=Path)
    ap.add_argument("verify", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    kv = str(Profile.load(args.profile).notes.get("kv_cache_dtype", "bfloat16"))
    pts = [p for v in args.verify
           for p in points(measured_over(json.loads(v.read_text()), kv), v.name)]  # fmt: skip
    rows = leave_one_out(pts)
    pipe = [r for r in rows if r["layout"] != "dense" and r["fitted_on"]]
    raw = [abs(r["raw_error"]) for r in pipe]
    held = [abs(r["calibrated_error"]) for r in pipe]
    summary = {
        "points": len(rows),
        "pipelines_held_out": len(pipe),
        "max_abs_raw_error_pipelines": max(raw, default=None),
        "max_abs_calibrated_error_pipelines": max(held, default=None),
    }
    record = {"command": "PYTHONPATH=. python bench/calibration_check.py "
              + " ".join(str(a) for a in [args.profile, *args.verify]) + f" --out {args.out}",
              "kv_cache_dtype": kv, "summary": summary, "rows": rows}  # fmt: skip
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for r in rows:
        print(f"{r['decodes']:5d} {r['prefill_tokens']:5d} {r['context']:5d} {r['layout']:8s} "
              f"pred {r['predicted_ms']:8.2f} meas {r['measured_ms']:8.2f} "
              f"raw {r['raw_error']:+.3f} LOO x{r['held_out_factor']} ({r['fitted_on']}) "
              f"-> {r['calibrated_error']:+.3f}")
    print(summary)


if __name__ == "__main__":
    main()
