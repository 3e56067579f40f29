"""Decode attention over a bf16 cache at Llama-3-8B's heads (32 q / 8 kv) and at a Llama-3-70B
TP=2 rank's (32 q / 4 kv: a group of 8): does the whole-GPU kernel keep the KV read rate when
the group doubles and the work items halve? In a 70B TP=2 decode step at 256 sequences the
gather kernel read about 3.2 TB/s where Llama-3-8B's reaches 94-96% of a copy (2026-11-30).

Per shape and context (256 decodes; contexts all equal, or uniformly random up to twice the
mean): the gather kernel with its default configuration and a few others, one program per work
item; the TMA kernel with one program per item; every output checked against the torch
reference on four sequences (a wrong kernel gets an error row, no speed).
Usage (repo root, GPU machine): PYTHONPATH=.:bench python bench/decode_gqa.py --out OUT.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import partition_share as ps
import torch
from timing import run_header

from kernels.triton.decode_attention import DecodeConfig
from kernels.triton.decode_attention_tma import tuned_config

GATHER = [DecodeConfig(), DecodeConfig(block_n=32), DecodeConfig(block_n=128, num_stages=2),
          DecodeConfig(num_warps=8), DecodeConfig(swap_ab=True)]  # fmt: skip


def inputs(batch: int, context: int, ragged: bool, seed: int) -> dict[str, Any]:
    x = ps.kv_inputs(batch, 2 * context if ragged else context, torch.bfloat16, seed)
    if ragged:
        gen = torch.Generator(device="cuda").manual_seed(seed + 1000)
        x["lens"] = torch.randint(16, 2 * context + 1, (batch,), device="cuda", generator=gen,
                                  dtype=torch.int32)  # fmt: skip
    x["context"] = int(x["lens"].max())
    x["bytes"] = 2 * int(x["lens"].sum()) * ps.KV_HEADS * ps.HEAD_DIM * 2
    return x


def copy_rate(stream: torch.cuda.Stream) -> float:
    """GB/s of a 2 GiB device-to-device copy (bytes read plus written); the buffers go back to
    the device before the kernels' inputs are made."""
    rate = _copy_rate(stream)
    torch.cuda.empty_cache()
    return rate


def _copy_rate(stream: torch.cuda.Stream) -> float:
    src = torch.empty(1 << 31, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = ps.time_ms(lambda: dst.copy_(src), stream)
    return round(2 * src.numel() / (ms * 1e-3) / 1e9, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--contexts", default="800,1536")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/decode_gqa.py times GPU kernels: it needs a CUDA GPU")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    report: dict[str, Any] = {**run_header(), "batch": args.batch, "rows": []}
    stream, seed = torch.cuda.Stream(), 0
    ps.CHECK_ROWS = (0, 1, args.batch // 2 + 1, args.batch - 1)
    report["copy_gb_per_s"] = copy_rate(stream)
    tma = replace(tuned_config(sms, ps.PAGE), fp8_dot="fp16")
    for kv_heads in (8, 4):
        ps.KV_HEADS = kv_heads
        for context in (int(c) for c in args.contexts.split(",")):
            for ragged in (False, True):
                seed += 1
                x = inputs(args.batch, context, ragged, seed)
                expect = ps.reference(x, ps.CHECK_ROWS)
                placements = [(f"gather {i}", None, c) for i, c in enumerate(GATHER)]
                placements.append(("tma-items", None, tma))
                for label, grid, cfg in placements:
                    row = ps.checked_attention(x, expect, grid, cfg, stream, label)
                    row.update(kv_heads=kv_heads, group=ps.Q_HEADS // kv_heads,
                               mean_context=context, ragged=ragged)  # fmt: skip
                    if "gbps" in row:
                        row["of_copy"] = round(row["gbps"] / report["copy_gb_per_s"], 3)
                    report["rows"].append(row)
                del x
                torch.cuda.empty_cache()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
