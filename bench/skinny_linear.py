"""Decode-sized GEMMs: cuBLAS (torch's linear) against kernels/triton/linear.py's tiles, per shape.

For every projection of the chosen models at decode row counts, times torch's linear and each
candidate tile config of the Triton kernel, checks the best against a float32 product, and keeps
the winner. The weights rotate over enough copies that they come from HBM, as a layer's do in the
model, not from L2. ``--write-table`` writes the shapes where the tiles win by at least
``--margin`` as kernels/triton/linear_configs.json for this GPU (the engine then runs them with
``NANOLANG_KERNELS=linear=triton``).

    PYTHONPATH=.:bench python bench/skinny_linear.py --out $OUT/skinny_linear.json \
        [--write-table kernels/triton/linear_configs.json]
    python bench/skinny_linear.py --table FILE.json   # the markdown table of a record
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

# (model, projection) -> (N, K); 70B at TP=2 is one rank's slice
SHAPES: dict[str, dict[str, tuple[int, int]]] = {
    "llama-3-8b": {"qkv_proj": (6144, 4096), "o_proj": (4096, 4096),
                   "gate_up_proj": (28672, 4096), "down_proj": (4096, 14336),
                   "lm_head": (128256, 4096)},
    "llama-3-70b-tp2": {"qkv_proj": (5120, 8192), "o_proj": (8192, 4096),
                        "gate_up_proj": (28672, 8192), "down_proj": (8192, 14336)},
}  # fmt: skip
# 16 and 32: the table's buckets for 1-16 and 17-32 rows, the decode steps of a run's tail (a few
# sequences left, each step reading every weight once: bound on HBM, not on the tensor cores)
ROWS = (16, 32, 64, 128, 256, 512, 1024)
ROTATE_BYTES = 512 << 20  # weights touched per timed round: several times the 50 MB L2
SMALL_ROWS = 32  # up to this many rows the candidates are narrow tiles with deep pipelines
SMEM_BYTES = 200_000  # shared memory one program's pipeline may take


def candidates(rows: int = 64) -> list[Any]:
    """The tile configs tried at ``rows``. Above SMALL_ROWS: 64-128-row tiles (the GEMM is near
    the tensor cores' speed). Up to it the weights' bytes are the whole cost, so the tiles are
    16-32 rows (the smallest a dot takes) and 32-128 columns, so that even a 4,096-column weight
    gives every SM a program or more, over 128-256-deep K steps in 4-8 stages to keep enough
    bytes in flight per SM."""
    from kernels.triton.linear import LinearConfig

    if rows <= SMALL_ROWS:
        space = itertools.product((16, 32), (32, 64, 128), (128, 256), (4, 6, 8))
    else:
        space = itertools.product((64, 128), (64, 128, 256), (64, 128), (3, 4, 5))
    out = []
    for bm, bn, bk, stages in space:
        if (bn + bm) * bk * 2 * stages > SMEM_BYTES:
            continue
        out.append(LinearConfig(bm, bn, bk, stages, 8 if bm * bn >= 128 * 128 else 4))
    return out


def time_us(fn: Any, copies: int, reps: int = 10) -> float:
    """Median microseconds of one call, from a CUDA graph of one call per weight copy."""
    for i in range(copies):
        fn(i)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(copies):
            fn(i)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / copies)
    return statistics.median(times)


def measure(rows: int, n: int, k: int, dtype: torch.dtype, configs: list[Any]) -> dict[str, Any]:
    from kernels.triton.linear import linear_tiles

    gen = torch.Generator(device="cuda").manual_seed(rows + n + k)
    copies = max(2, min(16, ROTATE_BYTES // (n * k * 2)))
    ws = [torch.randn(n, k, device="cuda", dtype=dtype, generator=gen) * k**-0.5
          for _ in range(copies)]  # fmt: skip
    x = torch.randn(rows, k, device="cuda", dtype=dtype, generator=gen)
    torch_us = time_us(lambda i: F.linear(x, ws[i]), copies)
    best, best_us, failed = None, float("inf"), 0
    for c in configs:
        try:
            us = time_us(lambda i, c=c: linear_tiles(x, ws[i], c), copies)
        except Exception:  # a config the compiler or the GPU refuses (resources)
            failed += 1
            continue
        if us < best_us:
            best, best_us = c, us
    record: dict[str, Any] = {"rows": rows, "n": n, "k": k, "torch_us": round(torch_us, 2),
                              "configs_failed": failed}  # fmt: skip
    if best is None:
        return record
    ref = F.linear(x.float(), ws[0].float())
    err = (linear_tiles(x, ws[0], best).float() - ref).abs().max().item()
    flops = 2 * rows * n * k
    record.update(
        triton_us=round(best_us, 2),
        speedup=round(torch_us / best_us, 3),
        config=best.__dict__,
        max_abs_err=err,
        torch_err=(F.linear(x, ws[0]).float() - ref).abs().max().item(),
        torch_tflops=round(flops / torch_us / 1e6, 1),
        triton_tflops=round(flops / best_us / 1e6, 1),
    )
    return record


def write_table(path: Path, device: str, records: list[dict[str, Any]], margin: float) -> int:
    """The winners (by ``margin``, correct to the float32 product like torch's own) as the
    kernel's table for ``device``; entries already there for other GPUs, or for shapes (row
    bucket, N, K) this run did not measure (a --rows 16,32 run keeps the 64-128-row winners, a
    run cut short the shapes it did not reach), are kept."""
    from kernels.triton.linear import row_bucket

    old = json.loads(path.read_text()) if path.exists() else {}
    probed = {(row_bucket(r["rows"]), r["n"], r["k"]) for r in records}
    kept = [e for e in old.get("entries", [])
            if e["device"] != device or (e["rows"], e["n"], e["k"]) not in probed]  # fmt: skip
    new = [
        {"device": device, "rows": row_bucket(r["rows"]), "n": r["n"], "k": r["k"],
         "dtype_bytes": 2, "config": r["config"], "torch_us": r["torch_us"],
         "triton_us": r["triton_us"], "projection": r["projection"]}
        for r in records
        if "triton_us" in r and r["triton_us"] < r["torch_us"] * (1 - margin)
        and r["max_abs_err"] <= 2 * r["torch_err"] + 1e-2
    ]  # fmt: skip
    path.write_text(json.dumps({"schema": "nanolang.linear-configs", "version": 1,
                                "note": "written by bench/skinny_linear.py --write-table",
                                "entries": kept + new}, indent=1) + "\n")  # fmt: skip
    return len(new)


def table(record: dict[str, Any]) -> str:
    lines = ["| model | projection | rows | N x K | cuBLAS us (TFLOP/s) | tiles us (TFLOP/s) "
             "| tiles / cuBLAS time | config (m x n x k, stages, warps) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in record["results"]:
        c = r.get("config")
        tiles = f"{r['triton_us']} ({r['triton_tflops']})" if c else "-"
        ratio = f"{r['triton_us'] / r['torch_us']:.3f}" if c else "-"
        cfg = (f"{c['block_m']}x{c['block_n']}x{c['block_k']}, {c['num_stages']}, "
               f"{c['num_warps']}") if c else "-"  # fmt: skip
        lines.append(f"| {r['model']} | {r['projection']} | {r['rows']} | {r['n']} x {r['k']} | "
                     f"{r['torch_us']} ({r.get('torch_tflops', '-')}) | {tiles} | {ratio} | "
                     f"{cfg} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default=",".join(SHAPES),
                    help="comma-separated: " + ", ".join(SHAPES))  # fmt: skip
    ap.add_argument("--rows", default=",".join(map(str, ROWS)))
    ap.add_argument("--out", type=Path, help="the record (JSON)")
    ap.add_argument("--write-table", type=Path, help="write the winners as the kernel's table")
    ap.add_argument("--margin", type=float, default=0.03, help="a winner is this much faster")
    ap.add_argument("--table", type=Path, help="print the markdown table of a record and exit")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in SHAPES]
    if unknown:
        print(f"error: unknown model {unknown[0]!r}; known: {', '.join(SHAPES)}", file=sys.stderr)
        return 2
    try:
        rows = [int(r) for r in args.rows.split(",") if r.strip()]
    except ValueError:
        rows = []
    if not rows or min(rows) < 1:
        print(f"error: --rows takes positive integers, got {args.rows!r}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("error: needs a CUDA GPU", file=sys.stderr)
        return 2
    from timing import run_header

    configs = {count: candidates(count) for count in rows}
    record: dict[str, Any] = {**run_header(), "dtype": "bfloat16",
                              "candidates": {str(c): len(cs) for c, cs in configs.items()},
                              "results": []}  # fmt: skip
    wins = 0
    for model in models:
        for proj, (n, k) in SHAPES[model].items():
            for count in rows:
                r = {"model": model, "projection": proj, **measure(count, n, k, torch.bfloat16,
                                                                    configs[count])}  # fmt: skip
                record["results"].append(r)
                print(json.dumps(r), flush=True)
                if args.out:
                    args.out.write_text(json.dumps(record, indent=1) + "\n")
                if args.write_table:  # after every shape: a probe cut short keeps its winners
                    wins = write_table(args.write_table, record["device"], record["results"],
                                       args.margin)  # fmt: skip
    if args.write_table:
        print(f"wrote {wins} winning shapes to {args.write_table}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
