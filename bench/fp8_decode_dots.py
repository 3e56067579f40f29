"""Decode attention over an fp8 (e4m3) KV cache: K/V widened to bfloat16 (``fp8_dot="q"``, the
default until this measured the others) against float16 dots (``"fp16"``, the default since
2026-11-30) and float8 dots (``"fp8"``, the swapped gather kernel only), in the placements the
runtime uses and in the swapped gather kernel's.

For each batch (512 and 1,024 decodes of 1,536 tokens by default): the gather kernel on the
whole GPU (the dense forward's), the TMA kernel on the whole GPU, and on A SMs (A = 64, 48) the
TMA kernel in its tuned configuration and the ids-preloaded candidates inside a green context of
A SMs, plus the tuned one capped at A SMs on a plain stream; the swapped gather kernel (KV tile
as the wgmma's M, ``SWAPPED``) on the whole GPU and on each green context; each over fp8 with
every dot dtype it takes, and over a bf16 cache for reference. Every output is checked against
the torch reference on a few sequences (a wrong kernel gets an error row, no speed; relative
error below 2e-2, 5e-2 with fp8 dots, which round q and P to e4m3 too), and the new paths once
more on 64 ragged decodes. Rows: milliseconds, GB/s of KV, GB/s per SM, and per fp8 placement
``q_over_fp16`` / ``q_over_fp8`` (time widened to bf16 over time with the new dots).
Usage (repo root, GPU machine):
``PYTHONPATH=.:bench python bench/fp8_decode_dots.py --out bench/results/fp8_decode_dots.json``
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import torch
from partition_share import (
    CHECK_ROWS,
    KV_DTYPES,
    PAGE,
    PRELOAD,
    checked_attention,
    kv_inputs,
    ragged_check,
    reference,
)
from timing import run_header

from kernels.triton.decode_attention import DecodeConfig
from kernels.triton.decode_attention_tma import tuned_config
from runtime.pipeline.partitions import green_partitions, new_stream

Dot = Literal["q", "fp16", "fp8"]
Placement = tuple[str, int | None, DecodeConfig, torch.cuda.Stream]
# the swapped gather kernel (block_n / warps / stages / programs per SM), with float8 dots too
SWAPPED = [DecodeConfig(64, 4, 3, 4, swap_ab=True), DecodeConfig(128, 4, 3, 2, swap_ab=True)]
Greens = dict[int, tuple[int, torch.cuda.Stream]]  # SMs asked: (SMs granted, its stream)


def placements(
    device_sms: int, greens: Greens, plain: torch.cuda.Stream, kv: str
) -> list[Placement]:
    """(label, num_sms, config, stream) of every placement measured over a ``kv`` cache."""
    out: list[Placement] = [
        ("whole GPU, gather (the dense forward's)", None, DecodeConfig(), plain),
        ("whole GPU, TMA", device_sms, tuned_config(device_sms, PAGE), plain),
    ]
    for c in SWAPPED:
        out.append(("whole GPU, gather, swapped MMA, one program per item", None, c, plain))
    for a, (sms, stream) in greens.items():
        out.append((f"capped at {a} SMs, plain stream, TMA", a, tuned_config(sms, PAGE), plain))
        out.append((f"green context {sms} SMs, TMA", sms, tuned_config(sms, PAGE), stream))
        for c in PRELOAD[kv]:
            out.append((f"green context {sms} SMs, TMA, ids preloaded", sms, c, stream))
        for c in SWAPPED:
            out.append((f"green context {sms} SMs, gather, swapped MMA", sms, c, stream))
    return out


def dots(kv: str, cfg: DecodeConfig) -> list[Dot]:
    """The dot dtypes measured: bf16 pages have one; fp8 ones fp8 too in the swapped gather."""
    if kv != "fp8":
        return ["q"]
    return ["q", "fp16", "fp8"] if cfg.swap_ab and not cfg.tma else ["q", "fp16"]


def measure_batch(
    batch: int, context: int, device_sms: int, greens: Greens, plain: torch.cuda.Stream, seed: int,
) -> list[dict[str, Any]]:  # fmt: skip
    rows: list[dict[str, Any]] = []
    for kv in ("fp8", "bf16"):
        x = kv_inputs(batch, context, KV_DTYPES[kv], seed)
        expect = reference(x, tuple(r for r in CHECK_ROWS if r < batch))
        for label, num_sms, cfg, stream in placements(device_sms, greens, plain, kv):
            timed: dict[str, float] = {}
            for dot in dots(kv, cfg):
                c = replace(cfg, fp8_dot=dot)
                bound = 5e-2 if dot == "fp8" else 2e-2
                row = checked_attention(x, expect, num_sms, c, stream, f"{kv} {label}", bound)
                row.update(kv=kv, batch=batch, context=context, fp8_dot=dot)
                rows.append(row)
                if "time_ms" in row:
                    timed[dot] = row["time_ms"]
            if "q" in timed and len(timed) > 1:  # > 1: faster than widening to bf16
                ratio: dict[str, Any] = {"kv": kv, "batch": batch, "placement": label,
                                         "config": asdict(cfg)}  # fmt: skip
                for dot in ("fp16", "fp8"):
                    if dot in timed:
                        ratio[f"q_over_{dot}"] = round(timed["q"] / timed[dot], 3)
                print(json.dumps(ratio), flush=True)
                rows.append(ratio)
        del x
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", default="512,1024")
    ap.add_argument("--context", type=int, default=1536)
    ap.add_argument("--attn-sms", default="64,48")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    device_sms = torch.cuda.get_device_properties(0).multi_processor_count
    budgets = [int(a) for a in args.attn_sms.split(",")]
    report: dict[str, Any] = {
        **run_header(),
        "context": args.context, "rows": [], "ragged_checks": [],
    }  # fmt: skip

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    plain = torch.cuda.Stream()
    greens: Greens = {}
    for a in budgets:
        part = green_partitions((a, device_sms - a))[0]
        greens[a] = (part.num_sms, new_stream(part))
    report["partitions"] = {str(a): g[0] for a, g in greens.items()}
    checked = [device_sms, *(g[0] for g in greens.values())]
    for sms in checked:  # the new paths on ragged decodes, before any timing
        fp8_dots = [replace(c, fp8_dot="fp8") for c in SWAPPED]
        fp16_dots = [replace(tuned_config(sms, PAGE), fp8_dot="fp16"), DecodeConfig(fp8_dot="fp16")]
        for c in fp16_dots + fp8_dots:
            try:
                err = ragged_check(torch.float8_e4m3fn, c, sms, seed=sms)
            except Exception as exc:  # recorded; the timings below still run
                err = float("nan")
                print(f"ragged check failed: {exc!r:.300}", flush=True)
            bound = 5e-2 if c.fp8_dot == "fp8" else 2e-2  # fp8: q and P rounded to e4m3 too
            check = {"config": asdict(c), "num_sms": sms, "rel_err": round(err, 5),
                     "ok": err < bound}  # fmt: skip
            print(json.dumps(check), flush=True)
            report["ragged_checks"].append(check)
    save()
    for i, batch in enumerate(int(b) for b in args.batches.split(",")):
        report["rows"] += measure_batch(batch, args.context, device_sms, greens, plain, seed=i)
        save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
