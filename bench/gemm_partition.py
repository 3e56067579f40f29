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
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from decode_attention_sms import time_ms
from green_context import sm_partition

REPS = 30  # timed launches per measurement (median)
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


def positive_ints(text: str) -> list[int]:
    """'128,320' -> [128, 320]; argparse reports anything else as a usage error."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=positive_ints, default="128,320,640")
    ap.add_argument("--sms", type=positive_ints, default="68,84")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    device_sms = torch.cuda.get_device_properties(0).multi_processor_count
    whole = torch.cuda.Stream()
    parts = {n: sm_partition(n)[0] for n in args.sms}
    rows = []
    for m in args.tokens:
        for name, (n, k) in SHAPES.items():
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k**-0.5
            ref = F.linear(x, w)
            row: dict[str, object] = {"op": name, "tokens": m, "n": n, "k": k}
            gemm = partial(F.linear, x, w)
            row["full_cublas_ms"] = round(time_ms(gemm, whole, REPS), 4)
            with blas("cublaslt", None):
                row["full_cublaslt_ms"] = round(time_ms(gemm, whole, REPS), 4)
            for sms, part in parts.items():
                carve = device_sms - part.num_sms
                variants = {"cublas": ("cublas", None), "cublaslt": ("cublaslt", None),
                            "cublaslt_carveout": ("cublaslt", carve)}  # fmt: skip
                for label, (lib, c) in variants.items():
                    with blas(lib, c):
                        ms = time_ms(gemm, part.stream, REPS)
                        err = float((gemm().float() - ref.float()).norm() / ref.norm())
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
