"""Can the wait of a tensor-parallel all-reduce hide part of the next GEMM's weight read?

At Llama-3-70B, TP=2, 128 decodes, a decode iteration is 161 all-reduces of about 14 us each
(symmetric memory) between GEMMs that stream their weights from HBM below its bandwidth; the
search cannot overlap them without splitting the batch, which reads the weights twice. The
hypothesis tested here: while the all-reduce runs (few SMs, little HBM traffic), a kernel on a
side stream reads the first P bytes of the next GEMM's weights into L2 (``evict_last``), so that
the GEMM finds them there. One GPU stands in for the pair: the all-reduce is a spin kernel of
the same length (``torch.cuda._sleep``, one SM).

Per (projection, rows, P), from CUDA graphs over enough weight copies that each comes from HBM:
``gemm`` alone, ``wait_gemm`` (spin, then the GEMM: today's order) and ``prefetch`` (the same
with the side-stream read during the spin), in microseconds per item; ``saved_us`` is
wait_gemm - prefetch. A saving of about 5 us per GEMM would take the 70B decode iteration about
0.8 ms (2.5%) shorter.

    PYTHONPATH=. python bench/l2_prefetch_probe.py --out $OUT/l2_prefetch.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from skinny_linear import time_us  # median us per item of a CUDA graph of one call per copy

# one rank's slices of Llama-3-70B at TP=2: (N, K)
SHAPES = {"qkv_proj": (5120, 8192), "o_proj": (8192, 4096), "gate_up_proj": (28672, 8192),
          "down_proj": (8192, 14336)}  # fmt: skip
ROTATE_BYTES = 768 << 20  # weights touched per replay: many times the 50 MB L2


def touch_kernel() -> Any:
    """A Triton kernel that reads ``n`` elements into L2 (evict_last) and keeps one float per
    program, so that the loads are not optimised away."""
    import triton
    import triton.language as tl

    @triton.jit
    def touch(w_ptr, out_ptr, n, BLOCK: tl.constexpr, ITERS: tl.constexpr):  # type: ignore[no-untyped-def]
        pid = tl.program_id(0)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for i in range(ITERS):
            offs = (pid * ITERS + i) * BLOCK + tl.arange(0, BLOCK)
            v = tl.load(w_ptr + offs, mask=offs < n, other=0.0, eviction_policy="evict_last")
            acc += v.to(tl.float32)
        tl.store(out_ptr + pid, tl.sum(acc, axis=0))

    del triton
    return touch


BLOCK, ITERS = 2048, 8


def prefetch(touch: Any, w: torch.Tensor, nbytes: int, out: torch.Tensor) -> None:
    """Read the first ``nbytes`` of ``w`` (row-major: its first output rows, whole K)."""
    n = min(w.numel(), nbytes // w.element_size())
    grid = (-(-n // (BLOCK * ITERS)),)
    touch[grid](w, out, n, BLOCK=BLOCK, ITERS=ITERS, num_warps=4)


def spin_cycles(wait_us: float) -> int:
    """Cycles of ``torch.cuda._sleep`` that last about ``wait_us`` (measured, not assumed)."""
    probe = 100_000
    t = time_us(lambda _i: torch.cuda._sleep(probe), 8)
    return max(1, int(probe * wait_us / t))


def measure(name: str, rows: int, prefetch_mb: list[int], cycles: int, touch: Any) -> list[dict]:
    n, k = SHAPES[name]
    copies = max(2, ROTATE_BYTES // (n * k * 2))
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k**-0.5 for _ in range(copies)]
    x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(4096, device="cuda", dtype=torch.float32)
    side = torch.cuda.Stream()
    gemm = time_us(lambda i: F.linear(x, ws[i]), copies)
    wait = time_us(lambda _i: torch.cuda._sleep(cycles), copies)

    def wait_then(i: int) -> None:
        torch.cuda._sleep(cycles)
        F.linear(x, ws[i])

    base = time_us(wait_then, copies)
    rows_out = []
    for mb in prefetch_mb:

        def with_prefetch(i: int, mb: int = mb) -> None:
            main = torch.cuda.current_stream()
            side.wait_stream(main)  # the fork: the read starts with the wait
            with torch.cuda.stream(side):
                prefetch(touch, ws[i], mb << 20, out)
            torch.cuda._sleep(cycles)
            F.linear(x, ws[i])
            main.wait_stream(side)  # the join (a real layer joins before its next all-reduce)

        timed = time_us(with_prefetch, copies)
        rows_out.append({
            "projection": name, "rows": rows, "n": n, "k": k, "weight_mb": round(n * k * 2 / 2**20),
            "prefetch_mb": mb, "gemm_us": round(gemm, 2), "wait_us": round(wait, 2),
            "wait_gemm_us": round(base, 2), "prefetch_us": round(timed, 2),
            "saved_us": round(base - timed, 2),
        })  # fmt: skip
        print(json.dumps(rows_out[-1]), flush=True)
    return rows_out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="128,256")
    ap.add_argument("--prefetch-mb", default="8,16,24,32")
    ap.add_argument("--wait-us", type=float, default=14.0)
    ap.add_argument("--projections", default=",".join(SHAPES))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    unknown = set(args.projections.split(",")) - set(SHAPES)
    if unknown:
        ap.error(f"--projections: unknown {sorted(unknown)}; choose from {list(SHAPES)}")
    if not torch.cuda.is_available():
        print("l2_prefetch_probe: needs a CUDA GPU", file=sys.stderr)
        return 2
    touch = touch_kernel()
    cycles = spin_cycles(args.wait_us)
    mbs = [int(m) for m in args.prefetch_mb.split(",")]
    rows = []
    for name in args.projections.split(","):
        for r in (int(v) for v in args.rows.split(",")):
            rows += measure(name, r, mbs, cycles, touch)
    if args.out:
        record = {"command": " ".join(["python", *sys.argv]),
                  "device": torch.cuda.get_device_name(), "wait_us": args.wait_us,
                  "spin_cycles": cycles, "rows": rows}  # fmt: skip
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
