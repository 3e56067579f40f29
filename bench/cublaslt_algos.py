"""cuBLASLt's candidate algorithms against torch's linear, per projection and decode row count.

torch's linear runs cuBLAS's first guess for a shape. For every projection of the chosen models
at each row count this lists cuBLASLt's heuristic candidates (``kernels/cublaslt.py``), times
each the way ``skinny_linear.py`` times the tiles (a CUDA graph of one call per weight copy, the
copies rotating so the weights come from HBM), checks the fastest against torch's output, and
records torch's time, the heuristic's first candidate's and the fastest candidate's. The last
lines sum, per row count, one layer's projections (x32 layers, plus the LM head) for torch and
for the fastest candidates: the decode step's GEMM time each would give. ``--write-table``
writes the shapes where the fastest candidate beats torch by ``--margin`` as the table the
``cublaslt`` linear backend runs (``kernels/cublaslt_algos.json``, this GPU and library version).
The default row counts are the decode CUDA graphs' batch sizes (up to 1,024).

    PYTHONPATH=.:bench python bench/cublaslt_algos.py --out $OUT/cublaslt.json \
        [--rows 16,64,128,176,256] [--models llama-3-8b] [--write-table kernels/cublaslt_algos.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from skinny_linear import ROTATE_BYTES, SHAPES, time_us
from timing import run_header

from kernels import cublaslt
from kernels.cublaslt import LtPlan
from kernels.cublaslt_backend import CANDIDATES, WORKSPACE_BYTES
from runtime.cuda_graph import default_buckets

ROWS = tuple(default_buckets(1024))
LAYERS = {"llama-3-8b": 32, "llama-3-70b-tp2": 80}


def measure(rows: int, n: int, k: int, dtype: torch.dtype, count: int) -> dict[str, Any]:
    gen = torch.Generator(device="cuda").manual_seed(rows + n + k)
    copies = max(2, min(16, ROTATE_BYTES // (n * k * 2)))
    ws = [torch.randn(n, k, device="cuda", dtype=dtype, generator=gen) * k**-0.5
          for _ in range(copies)]  # fmt: skip
    x = torch.randn(rows, k, device="cuda", dtype=dtype, generator=gen)
    out = torch.empty(rows, n, device="cuda", dtype=dtype)
    workspace = torch.empty(WORKSPACE_BYTES, device="cuda", dtype=torch.uint8)
    torch_us = time_us(lambda i: F.linear(x, ws[i]), copies)
    plan = LtPlan(n, k, rows, dtype)
    cands = plan.candidates(WORKSPACE_BYTES, count)
    times = []
    for algo, _ in cands:
        try:
            times.append(time_us(lambda i, a=algo: plan.run(x, ws[i], out, a, workspace), copies))
        except RuntimeError:
            times.append(float("inf"))
    rec: dict[str, Any] = {"rows": rows, "n": n, "k": k, "torch_us": round(torch_us, 2),
                           "candidates": len(cands)}  # fmt: skip
    if not cands or min(times) == float("inf"):
        return rec
    best = min(range(len(times)), key=times.__getitem__)
    plan.run(x, ws[0], out, cands[best][0], workspace)
    ref = F.linear(x, ws[0])
    torch.cuda.synchronize()
    plan.close()
    rec.update(
        first_us=round(times[0], 2), best_us=round(times[best], 2), best_index=best,
        best_workspace=cands[best][1], speedup=round(torch_us / times[best], 3),
        best_algo=[int(w) for w in cands[best][0].data],
        max_abs_err=float((out.float() - ref.float()).abs().max()),
        all_us=[round(t, 2) for t in times],
    )  # fmt: skip
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="llama-3-8b", help="comma-separated: " + ", ".join(SHAPES))
    ap.add_argument("--rows", default=",".join(map(str, ROWS)))
    ap.add_argument(
        "--count",
        type=int,
        default=CANDIDATES,
        help="candidates asked of the heuristic (the backend asks for as many)",
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--write-table", type=Path, help="write the winners as the backend's table")
    ap.add_argument("--margin", type=float, default=0.02, help="a winner is this much faster")
    args = ap.parse_args(argv)
    models = args.models.split(",")
    if bad := [m for m in models if m not in SHAPES]:
        ap.error(f"unknown model(s) {bad}; choose from {sorted(SHAPES)}")
    rows = [int(r) for r in args.rows.split(",")]
    if any(r < 1 for r in rows) or args.count < 1 or args.margin < 0:
        ap.error("--rows must be positive integers, --count >= 1, --margin >= 0")
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    record: dict[str, Any] = {**run_header(), "workspace_bytes": WORKSPACE_BYTES,
                              "cublaslt_version": cublaslt.version(), "results": []}  # fmt: skip
    for model in models:
        for r in rows:
            step = {"torch": 0.0, "best": 0.0}
            for proj, (n, k) in SHAPES[model].items():
                rec = {"model": model, "projection": proj, **measure(r, n, k, torch.bfloat16,
                                                                   args.count)}  # fmt: skip
                record["results"].append(rec)
                print(json.dumps({k2: v for k2, v in rec.items() if k2 != "all_us"}), flush=True)
                times = 1 if proj == "lm_head" else LAYERS[model]
                step["torch"] += rec["torch_us"] * times
                step["best"] += rec.get("best_us", rec["torch_us"]) * times
            line = {"model": model, "rows": r, "step_gemm_ms_torch": round(step["torch"] / 1e3, 3),
                    "step_gemm_ms_best": round(step["best"] / 1e3, 3)}  # fmt: skip
            record.setdefault("steps", []).append(line)
            print(json.dumps(line), flush=True)
            args.out.write_text(json.dumps(record, indent=1))
            if args.write_table:  # after every row count: a run cut short keeps its winners
                write_table(args.write_table, record, args.margin)
    return 0


def table_entries(record: dict[str, Any], margin: float) -> list[dict[str, Any]]:
    """The backend's entries: every measured shape whose fastest candidate beat torch by
    ``margin``, with this GPU's name and the library's version."""
    device, version = record["device"], record["cublaslt_version"]
    return [
        {"device": device, "version": version, "rows": r["rows"], "n": r["n"], "k": r["k"],
         "dtype_bytes": 2, "algo": r["best_algo"], "speedup": r["speedup"],
         "projection": f"{r['model']}/{r['projection']}"}
        for r in record["results"]
        if "best_algo" in r and r["speedup"] >= 1.0 + margin
    ]  # fmt: skip


def write_table(path: Path, record: dict[str, Any], margin: float) -> None:
    table = {"source": record["command"], "date": record["date"], "margin": margin,
             "entries": table_entries(record, margin)}  # fmt: skip
    path.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
