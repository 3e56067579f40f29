"""The pipeline search's own cost and its two solvers' agreement: all 92 buckets of the default
grid on an H200-shaped synthetic profile (tests/runtime/tune/synthetic.py; roofline-shaped
timings, no measurement), once with HiGHS and once with Gurobi. Run from the project root:

    PYTHONPATH=. python bench/search_timing.py --out bench/results/FILE.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

from runtime.tune import SearchConfig, Solver, search_plans
from tests.runtime.tune.synthetic import synthetic_profile

PROFILE = {"device_sms": 132, "hbm_gb_s": 4300.0, "per_sm_gb_s": 60.0, "slowdown": 1.3}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    prof = synthetic_profile(**PROFILE)  # type: ignore[arg-type]
    runs, predictions = [], []
    for solver in (Solver.HIGHS, Solver.GUROBI):
        t0 = time.perf_counter()
        planset, results = search_plans(prof, SearchConfig(solver=solver))
        runs.append({
            "solver": solver.value,
            "seconds": round(time.perf_counter() - t0, 1),
            "buckets": len(planset.buckets),
            "plans": len(planset.plans),
            "all_proved_optimal": all(r.schedule is None or r.schedule.optimal for r in results),
        })  # fmt: skip
        predictions.append([b.predicted_ms for b in planset.buckets])
    record = {
        "command": "PYTHONPATH=. python bench/search_timing.py",
        "device": "cpu",
        "date": datetime.date.today().isoformat(),
        "profile": f"synthetic_profile(**{PROFILE})",
        "same_predictions": predictions[0] == predictions[1],
        "runs": runs,
    }
    text = json.dumps(record, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
