"""Attention confined to N SMs beside the GEMMs aimed at the rest, on two plain streams: does the
carve layout behave as a partition (issue 19)?

A decode grid merely sized to N SMs (the shipped capped grids, ``grid:N``) places several small
programs per SM, so on a plain stream it spreads over the device and the GEMMs beside it run 2-6x
slower (2026-12-02 profile); green contexts isolate the two sides (each 0.98-1.16x slower beside
the other, 2026-11-30) but faulted in the pipeline. The carve layout confines attention with one
program per SM and aims the GEMMs at the other SMs (cuBLASLt's SM count target). Measured here,
for each budget N in ``--sms``:

1. Decode attention over ``--batch`` x ``--context`` bf16 tokens confined to N SMs (one program
   per SM) in each configuration of ``CONFIGS`` (checked against the torch reference), alone:
   GB/s and GB/s per SM (issue 19's target: 85 on 48-64 SMs).
2. The layer's four GEMMs at each of ``--rows`` as one chain: on the whole GPU (torch's linear)
   and aimed at ``device_sms - N`` SMs (``kernels.cublaslt_backend.on_sms``), alone; the aimed
   chain against its SM share of the whole-GPU time (at most 1.10: issue 19's target).
3. Both at once (``partition_share.overlap``), a two-by-two of attention (confined, or today's
   grid sized to N) and GEMMs (aimed at the rest, or on the whole GPU): the confined default
   (``CONFINED_DECODE``), its evict_first twin and the fastest confined configuration, each
   beside both chains, and the grid sized to N beside both: each side's slowdown against alone,
   and the pair's wall time against the same work one after the other on the whole GPU.

Usage (repo root, GPU machine):
    PYTHONPATH=.:bench python bench/carve_probe.py --out $OUT/carve_probe.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from partition_share import (
    CHECK_ROWS,
    GEMMS,
    KV_DTYPES,
    attention,
    checked_attention,
    kv_inputs,
    overlap,
    reference,
    time_ms,
)
from timing import run_header

from kernels import cublaslt_backend
from kernels.attention.triton_attention import CONFINED_DECODE
from kernels.triton.decode_attention import DecodeConfig
from kernels.triton.decode_attention_tma import tuned_config

# (label, configuration), every one at one program per SM: tiles, warps, stages; evict_first
CONFIGS: list[tuple[str, DecodeConfig]] = [
    ("default 64x8w4s", CONFINED_DECODE),
    ("64x8w4s evict_first", DecodeConfig(64, 8, 4, 1, evict_kv=True)),  # EVICT_FIRST
    ("128x8w3s", DecodeConfig(128, 8, 3, 1)),
    ("64x16w4s", DecodeConfig(64, 16, 4, 1)),
    ("32x4w6s", DecodeConfig(32, 4, 6, 1)),
    ("64x4w4s swap_ab", DecodeConfig(64, 4, 4, 1, swap_ab=True)),
]
EVICT_FIRST = CONFIGS[1][1]
PAGE = 16

Launch = Callable[[], object]


def gemm_chain(rows: int, linear: Callable[..., torch.Tensor]) -> tuple[Launch, float]:
    """The four GEMMs of ``rows`` tokens one after the other with ``linear`` (fresh random
    inputs), and the worst relative error of its outputs against torch's linear."""
    ops = []
    worst = 0.0
    for n, k in GEMMS.values():
        x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k**-0.5
        ref = F.linear(x, w).float()
        worst = max(worst, float((linear(x, w).float() - ref).norm() / ref.norm()))
        ops.append((x, w))

    def launch() -> None:
        for x, w in ops:
            linear(x, w)

    return launch, worst


def confined_attention(report: dict[str, Any], x: dict[str, Any], sms: int,
                       stream: torch.cuda.Stream) -> list[dict[str, Any]]:  # fmt: skip
    """Section 1 for one budget: every configuration's row (errors recorded, not raised)."""
    expect = reference(x, CHECK_ROWS)
    rows = []
    for label, cfg in CONFIGS:
        row = checked_attention(x, expect, sms, cfg, stream, f"confined {sms}: {label}")
        row.update(label=label, sms=sms)
        rows.append(row)
        report["attention"].append(row)
    return rows


def gemm_rows(rows: int, sms: int, device_sms: int, stream: torch.cuda.Stream) -> dict[str, Any]:
    """Section 2 for one (rows, budget): the chain on the whole GPU and aimed at the rest."""
    whole, _ = gemm_chain(rows, F.linear)
    aimed, err = gemm_chain(rows, cublaslt_backend.on_sms(device_sms - sms))
    t_whole, t_aimed = time_ms(whole, stream), time_ms(aimed, stream)
    share = t_aimed / (t_whole * device_sms / (device_sms - sms))
    # whether cuBLASLt ran every aimed GEMM (no plan under the target: torch's linear instead)
    lt = all(cublaslt_backend._plan_on_sms(0, rows, n, k, torch.bfloat16, device_sms - sms)
             is not None for n, k in GEMMS.values())  # fmt: skip
    row = {"rows": rows, "attention_sms": sms, "gemm_sms": device_sms - sms,
           "whole_ms": round(t_whole, 4), "aimed_ms": round(t_aimed, 4),
           "aimed_vs_share": round(share, 3), "aimed_rel_err": round(err, 5),
           "aimed_by_cublaslt": lt}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def best_config(rows: list[dict[str, Any]]) -> tuple[str, DecodeConfig] | None:
    """The configuration whose checked run read the most GB/s (None: none ran correctly)."""
    ok = [r for r in rows if "gbps" in r]
    if not ok:
        return None
    label = max(ok, key=lambda r: r["gbps"])["label"]
    return next((lab, cfg) for lab, cfg in CONFIGS if lab == label)


def table(report: dict[str, Any]) -> str:
    """Markdown: attention per configuration and budget, the aimed chains, and the pairs."""
    out = ["| attention, one program per SM | SMs | ms | GB/s | GB/s per SM |",
           "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in report["attention"]:
        if "gbps" in r:
            out.append(f"| {r['label']} | {r['sms']} | {r['time_ms']} | {r['gbps']} | "
                       f"{r['gbps_per_sm']} |")  # fmt: skip
        else:
            out.append(f"| {r['label']} | {r['sms']} | {r.get('error', '-')} | - | - |")
    out += ["", "| GEMM chain rows | attention SMs | whole GPU ms | aimed at the rest ms | "
            "aimed / SM share |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    out += [f"| {g['rows']} | {g['attention_sms']} | {g['whole_ms']} | {g['aimed_ms']} | "
            f"{g['aimed_vs_share']} |" for g in report["gemms"]]  # fmt: skip
    out += ["", "| pair | attention slower by | GEMMs slower by | against whole-GPU serial |",
            "| --- | --- | --- | --- |"]  # fmt: skip
    out += [f"| {o['layout']} | {o['attention_slowdown']}x | {o['gemm_slowdown']}x | "
            f"{o['speedup_vs_whole_gpu_serial']}x |" for o in report["overlap"]]  # fmt: skip
    return "\n".join(out)


def _ints(ap: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    """A comma list of positive integers, or the parser's usage error."""
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        ap.error(f"{flag}: expected a comma list of integers, got {text!r}")
    if not out or min(out) < 1:
        ap.error(f"{flag}: expected integers >= 1, got {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--sms", default="16,32,48", help="attention's SM budgets")
    ap.add_argument("--rows", default="1024,4096", help="GEMM rows beside attention")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    budgets, all_rows = _ints(ap, "--sms", args.sms), _ints(ap, "--rows", args.rows)
    if args.batch <= max(CHECK_ROWS) or args.context < 1:
        ap.error(f"--batch must exceed {max(CHECK_ROWS)} (the rows checked against the "
                 f"reference) and --context be >= 1, got {args.batch} and "
                 f"{args.context}")  # fmt: skip
    device_sms = torch.cuda.get_device_properties(0).multi_processor_count
    if not all(0 < s < device_sms for s in budgets):
        ap.error(f"--sms: each budget must be in [1, {device_sms - 1}] (the device has "
                 f"{device_sms} SMs), got {args.sms}")  # fmt: skip
    report: dict[str, Any] = {**run_header(), "shape": {"batch": args.batch,
                              "context": args.context}, "attention": [], "gemms": [],
                              "overlap": []}  # fmt: skip

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    a_stream, g_stream = torch.cuda.Stream(), torch.cuda.Stream()
    x = kv_inputs(args.batch, args.context, KV_DTYPES["bf16"], seed=0)
    dense, _ = attention(x, None, None)  # the dense forward's gather kernel, whole GPU
    dense_att_ms = time_ms(dense, a_stream)
    report["dense_attention_ms"] = round(dense_att_ms, 4)
    for sms in budgets:
        rows = confined_attention(report, x, sms, a_stream)
        save()
        picks = [("default", CONFINED_DECODE), ("evict_first", EVICT_FIRST)]
        best = best_config(rows)
        if best is not None and best[1] not in (CONFINED_DECODE, EVICT_FIRST):
            picks.append((f"best ({best[0]})", best[1]))
        for r in all_rows:
            report["gemms"].append(gemm_rows(r, sms, device_sms, g_stream))
            whole, _ = gemm_chain(r, F.linear)
            aimed, _ = gemm_chain(r, cublaslt_backend.on_sms(device_sms - sms))
            dense_gemm_ms = time_ms(whole, g_stream)
            for note, cfg in picks:
                confined, _ = attention(x, sms, cfg)
                for chain_note, chain in (("aimed", aimed), ("whole GPU", whole)):
                    name = (f"{r} rows: attention confined to {sms} SMs, {note} | GEMMs "
                            f"{chain_note}")  # fmt: skip
                    report["overlap"].append({"config": asdict(cfg), **overlap(
                        name, confined, a_stream, chain, g_stream, dense_att_ms,
                        dense_gemm_ms)})  # fmt: skip
                    save()
            spread, _ = attention(x, sms, tuned_config(sms, PAGE))  # today's grid:N
            for chain_note, chain in (("whole GPU", whole), ("aimed", aimed)):
                report["overlap"].append({"config": asdict(tuned_config(sms, PAGE)), **overlap(
                    f"{r} rows: attention's grid sized to {sms} SMs (grid:{sms}) | GEMMs "
                    f"{chain_note}", spread, a_stream, chain, g_stream, dense_att_ms,
                    dense_gemm_ms)})  # fmt: skip
                save()
    print(table(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
