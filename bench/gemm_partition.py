"""Llama-3-8B's GEMMs on a green-context SM partition: which BLAS path keeps its share of speed?

For each layer GEMM (QKV, O, gate/up, down) at a few token counts, times F.linear on the whole GPU
and inside a driver-API green context of N SMs, three ways: cuBLAS (torch's default), cuBLASLt,
and cuBLASLt told to leave ``device_sms - N`` SMs alone (torch's experimental SM carve-out). The
carve-out matters for kernels that size a persistent grid to the device: on a partition such a
grid runs in several waves. Usage (repo root, GPU machine):

    PYTHONPATH=.:bench python bench/gemm_partition.py --out bench/results/gemm_partition.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from green_context import sm_partition

SHAPES = {
    "qkv_proj": (6144, 4096),
    "o_proj": (4096, 4096),
    "gate_up_proj": (28672, 4096),
    "down_proj": (4096, 14336),
}  # fmt: skip  (N, K) of Llama-3-8B


@contextmanager
def blas(library: str, carveout: int | None) -> Iterator[None]:
    previous = torch.backends.cuda.preferred_blas_library()
    torch.backends.cuda.preferred_blas_library(library)
    torch._C._set_sm_carveout_experimental(carveout)
    try:
        yield
    finally:
        torch._C._set_sm_carveout_experimental(None)
        torch.backends.cuda.preferred_blas_library(previous)


def time_ms(fn: Callable[[], object], stream: torch.cuda.Stream, reps: int = 30) -> float:
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
        pairs = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(stream)
            fn()
            b.record(stream)
            pairs.append((a, b))
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", default="128,320,640")
    ap.add_argument("--sms", default="68,84")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    device_sms = torch.cuda.get_device_properties(0).multi_processor_count
    whole = torch.cuda.Stream()
    parts = {int(n): sm_partition(int(n))[0] for n in args.sms.split(",")}
    rows = []
    for m in (int(t) for t in args.tokens.split(",")):
        for name, (n, k) in SHAPES.items():
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k**-0.5
            ref = F.linear(x, w)
            row: dict[str, object] = {"op": name, "tokens": m, "n": n, "k": k}
            row["full_cublas_ms"] = round(time_ms(lambda x=x, w=w: F.linear(x, w), whole), 4)
            with blas("cublaslt", None):
                row["full_cublaslt_ms"] = round(time_ms(lambda x=x, w=w: F.linear(x, w), whole), 4)
            for sms, part in parts.items():
                carve = device_sms - part.num_sms
                variants = {"cublas": ("cublas", None), "cublaslt": ("cublaslt", None),
                            "cublaslt_carveout": ("cublaslt", carve)}  # fmt: skip
                for label, (lib, c) in variants.items():
                    with blas(lib, c):
                        ms = time_ms(lambda x=x, w=w: F.linear(x, w), part.stream)
                        err = float((F.linear(x, w).float() - ref.float()).norm() / ref.norm())
                    assert err < 1e-2, f"{label} on {sms} SMs: relative error {err}"
                    row[f"sm{part.num_sms}_{label}_ms"] = round(ms, 4)
            print(json.dumps(row), flush=True)
            rows.append(row)
    report = {
        "device": torch.cuda.get_device_name(0),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "PYTHONPATH=.:bench python " + " ".join(sys.argv),
        "torch": torch.__version__,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
