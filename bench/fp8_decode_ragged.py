"""Which decode kernel should the whole GPU run over an fp8 (e4m3) KV cache, on uniform and on
ragged contexts? The gather kernel (one program per work item: the hardware balances items of
mixed length), the TMA kernel on a persistent grid of the device's SMs (items handed out
statically, a long item at the tail holds its program), and the TMA kernel with one program per
item; each with float16 dots (``fp8_dot="fp16"``, the engine's default since 2026-11-30), and the
gather kernel widened to bf16 (``"q"``, the dense forward's before) for reference.

Batches of 512 and 1,024 decodes (Llama-3-8B heads: 32 q / 8 kv, dim 128, page 16), contexts all
1,536 tokens or uniformly random in 64..3,072 (the same mean); the launch gets the batch's largest
context as ``max_context_len``, as the engine does. Every output is checked against the torch
reference on a few sequences (a wrong kernel gets an error row, no speed). The pick
(``DecodeChoice.whole_gpu``: gather, tma, tma-items): among the float16-dot placements no slower
than gather+fp16 on a ragged batch, the smallest geometric mean of time over gather+fp16's across
the four cases.
Usage (repo root, GPU machine):
``PYTHONPATH=.:bench python bench/fp8_decode_ragged.py --out bench/results/fp8_decode_ragged.json``
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from partition_share import (
    CHECK_ROWS,
    HEAD_DIM,
    KV_DTYPES,
    KV_HEADS,
    PAGE,
    checked_attention,
    kv_inputs,
    reference,
)
from timing import run_header

from kernels.triton.decode_attention import DecodeConfig
from kernels.triton.decode_attention_tma import tuned_config

UNIFORM, LOW, HIGH = 1536, 64, 3072


def placements(device_sms: int) -> list[tuple[str, str, int | None, DecodeConfig]]:
    """(DecodeChoice.whole_gpu, dots, grid SMs or None for one program per item, config)."""
    tma = tuned_config(device_sms, PAGE)
    return [
        ("gather", "q", None, DecodeConfig(fp8_dot="q")),
        ("gather", "fp16", None, DecodeConfig(fp8_dot="fp16")),
        ("tma", "fp16", device_sms, replace(tma, fp8_dot="fp16")),
        ("tma-items", "fp16", None, replace(tma, fp8_dot="fp16")),
    ]


def batch_inputs(batch: int, shape: str, kv: str, seed: int) -> dict[str, Any]:
    """kv_inputs with the contexts of ``shape`` and the bytes they really hold."""
    ragged = shape == "ragged"
    x = kv_inputs(batch, HIGH if ragged else UNIFORM, KV_DTYPES[kv], seed)
    if ragged:
        gen = torch.Generator(device="cuda").manual_seed(seed + 1000)
        x["lens"] = torch.randint(LOW, HIGH + 1, (batch,), device="cuda", generator=gen,
                                  dtype=torch.int32)  # fmt: skip
    x["context"] = int(x["lens"].max())
    elem = torch.finfo(KV_DTYPES[kv]).bits // 8
    x["bytes"] = 2 * int(x["lens"].sum()) * KV_HEADS * HEAD_DIM * elem
    return x


def pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The float16-dot placement to run: among those no slower than gather+fp16 on any ragged
    case (mixed lengths are what the engine mostly sees), the smallest geometric mean of time
    over gather+fp16's across all cases; gather when none qualifies or a case failed."""
    times: dict[tuple[str, str], dict[tuple[int, str], float]] = {}
    for r in rows:
        if "time_ms" in r:
            by_case = times.setdefault((r["kernel"], r["fp8_dot"]), {})
            by_case[(r["batch"], r["shape"])] = r["time_ms"]
    base = times.get(("gather", "fp16"), {})
    ratios: dict[str, float] = {}
    for (kernel, dot), by_case in times.items():
        if dot != "fp16" or not base or set(by_case) != set(base):
            continue  # a placement with a failed case is not picked
        if any(by_case[c] > base[c] for c in base if c[1] == "ragged"):
            continue
        logs = [math.log(by_case[c] / base[c]) for c in base]
        ratios[kernel] = round(math.exp(sum(logs) / len(logs)), 4)
    best = min(ratios, key=lambda k: ratios[k]) if ratios else "gather"
    return {"pick": best, "time_over_gather_fp16": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", default="512,1024")
    ap.add_argument("--kv", default="fp8", help="comma list of fp8, bf16")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    device_sms = torch.cuda.get_device_properties(0).multi_processor_count
    report: dict[str, Any] = {
        **run_header(),
        "contexts": {"uniform": UNIFORM, "ragged": [LOW, HIGH]}, "rows": [],
    }  # fmt: skip
    plain = torch.cuda.Stream()
    seed = 0
    for kv in args.kv.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for shape in ("uniform", "ragged"):
                seed += 1
                x = batch_inputs(batch, shape, kv, seed)
                expect = reference(x, tuple(r for r in CHECK_ROWS if r < batch))
                for kernel, dot, sms, cfg in placements(device_sms):
                    if kv != "fp8" and dot != "fp16":
                        continue  # 16-bit pages have one dot dtype
                    label = f"{kv} {shape} whole GPU, {kernel}, {dot} dots"
                    row = checked_attention(x, expect, sms, cfg, plain, label)
                    row.update(kv=kv, batch=batch, shape=shape, kernel=kernel, fp8_dot=dot,
                               max_context=x["context"])  # fmt: skip
                    report["rows"].append(row)
                del x
                torch.cuda.empty_cache()
            if kv == "fp8":
                report.update(pick([r for r in report["rows"] if r["kv"] == "fp8"]))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report.get(k) for k in ("pick", "time_over_gather_fp16")}), flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
