"""Decode attention by batch size and KV-split target, timed as the engine runs it.

Small decode batches (the tail of a run: 1-64 sequences) spend 7-19 us per layer in attention
where the KV read takes 1-12 us (2026-12-01 profile of 2- and 16-sequence steps). Each work item
(sequence, kv head, KV split) is one program (of one warp in the TMA kernel) that walks its split
page by page, so a launch lasts about its longest item; the split plan (``plan_splits``) aims for
``NANOLANG_KV_SPLIT_TARGET`` (2) items per SM. This times the engine's two whole-GPU decode
kernels (the gather kernel in its measured configuration, the TMA kernel one program per item)
over batch sizes, contexts (equal, or with ``--ragged`` spread from 1 token to twice the mean, as
the engine's gather kernel sees them) and split targets, each as a CUDA graph of 32 calls on 32
separate caches (one per layer, so that no layer finds the previous one's KV in L2), planned for
``--plan-len`` tokens as the engine's decode graphs are (its max_model_len). ``--cuts`` times
each way of cutting contexts into splits (``NANOLANG_KV_SPLITS``: ``context``, the default, or
``length``, pieces of about one length for the whole batch). Every launch's output is checked
against float32 torch attention over the same pages.

    PYTHONPATH=.:bench python bench/split_target_probe.py --out $OUT/split-target.json [--ragged]
        [--cuts context,length]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path
from typing import Any

import torch
from skinny_linear import time_us  # median us per call of a CUDA graph of one call per copy
from timing import run_header

from kernels.triton.decode_attention import decode_attention
from kernels.triton.decode_attention_tma import decode_attention_tma, tuned_config
from kernels.triton.paged_attention import WHOLE_GPU_GATHER
from kernels.triton.paged_common import KV_SPLIT_CUTS, KV_SPLIT_TARGET_ENV, KV_SPLITS_ENV

LAYERS = 32


def ints(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def context_lens(batch: int, context: int, ragged: bool) -> list[int]:
    """Each sequence's context: ``context`` tokens, or (``ragged``) spread evenly over 1 to
    2 x ``context`` - 1 (mean ``context``, the longest about twice the mean), shuffled by a
    fixed seed; the same lengths for every layer, kernel and target of a (batch, context)."""
    if not ragged or batch == 1:
        return [context] * batch
    lens = [1 + round(i * (2 * context - 2) / (batch - 1)) for i in range(batch)]
    order = torch.randperm(batch, generator=torch.Generator().manual_seed(batch)).tolist()
    return [lens[i] for i in order]


def layer_inputs(
    lens: list[int], args: argparse.Namespace, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """One layer's q, caches and shuffled block table for sequences of ``lens`` tokens."""
    batch, per_seq = len(lens), -(-max(lens) // args.page)
    blocks = batch * per_seq
    kw: dict[str, Any] = {"device": "cuda", "dtype": torch.bfloat16, "generator": gen}
    shape = (blocks, args.page, args.kv_heads, args.head_dim)
    perm = torch.randperm(blocks, device="cuda", generator=gen).to(torch.int32)
    return {
        "q": torch.randn(batch, args.q_heads, args.head_dim, **kw),
        "k_cache": torch.randn(shape, **kw),
        "v_cache": torch.randn(shape, **kw),
        "block_tables": perm.view(batch, per_seq),
        "context_lens": torch.tensor(lens, device="cuda", dtype=torch.int32),
        "out": torch.empty(batch, args.q_heads, args.head_dim, device="cuda", dtype=torch.bfloat16),
    }


def graph_us(layers: list[dict[str, torch.Tensor]], kernel: str, plan_len: int, reps: int) -> float:
    """Median microseconds per layer of a graph of one decode call per layer."""
    page = layers[0]["k_cache"].shape[1]
    if kernel == "tma":
        decode, cfg = decode_attention_tma, tuned_config(132, page)
    else:
        decode, cfg = decode_attention, WHOLE_GPU_GATHER
    scale = layers[0]["q"].shape[-1] ** -0.5

    def layer(i: int) -> None:
        x = layers[i]
        decode(x["q"], x["k_cache"], x["v_cache"], x["block_tables"], x["context_lens"], plan_len,
               scale, x["out"], num_sms=None, config=cfg)  # fmt: skip

    return time_us(layer, len(layers), reps)


def dense_reference(x: dict[str, torch.Tensor], page: int) -> torch.Tensor:
    """The layer's attention in float32 torch, sequence by sequence (the check of every launch)."""
    q = x["q"].float()
    heads, kv_heads = q.shape[1], x["k_cache"].shape[2]
    out = torch.empty_like(q)
    for b, n in enumerate(x["context_lens"].tolist()):
        blocks = x["block_tables"][b, : -(-n // page)].long()
        k = x["k_cache"][blocks].flatten(0, 1)[:n].float()  # [n, Hk, D]
        v = x["v_cache"][blocks].flatten(0, 1)[:n].float()
        k = k.repeat_interleave(heads // kv_heads, dim=1)  # [n, Hq, D]
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        scores = torch.einsum("hd,nhd->hn", q[b], k) * q.shape[-1] ** -0.5
        out[b] = torch.einsum("hn,nhd->hd", scores.softmax(-1), v)
    return out


def probe(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    gen = torch.Generator(device="cuda").manual_seed(0)
    for context in args.contexts:
        for batch in args.batches:
            lens = context_lens(batch, context, args.ragged)
            layers = [layer_inputs(lens, args, gen) for _ in range(LAYERS)]
            kv_bytes = 2 * sum(lens) * args.kv_heads * args.head_dim * 2
            expected = dense_reference(layers[-1], args.page)
            for kernel, cut, target in itertools.product(args.kernels, args.cuts, args.targets):
                os.environ[KV_SPLITS_ENV] = cut
                os.environ[KV_SPLIT_TARGET_ENV] = str(target)
                us = graph_us(layers, kernel, args.plan_len, args.reps)
                out = layers[-1]["out"].float()
                err = float((out - expected).norm() / expected.norm())
                row = {
                    "kernel": kernel, "cut": cut, "batch": batch, "context": context,
                    "target": target, "ragged": args.ragged, "longest": max(lens),
                    "us_per_layer": round(us, 2), "kv_tb_per_s": round(kv_bytes / us / 1e6, 2),
                    "error_vs_torch": err,
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
                if not err < 1e-2:
                    raise SystemExit(f"wrong output at {row}")
            del layers
            torch.cuda.empty_cache()
    os.environ.pop(KV_SPLIT_TARGET_ENV, None)
    os.environ.pop(KV_SPLITS_ENV, None)
    return rows


def table(rows: list[dict[str, Any]], targets: list[int]) -> str:
    """A row per (kernel, cut, context, batch): us per layer at each target, and the best."""
    head = "| kernel | cut | context | batch | " + " | ".join(f"target {t} us" for t in targets)
    lines = [head + " | best |", "|" + " --- |" * (5 + len(targets))]
    name = ("kernel", "cut", "context", "batch")
    keys = dict.fromkeys(tuple(r.get(k, "context") for k in name) for r in rows)
    for key in keys:
        mine = {r["target"]: r["us_per_layer"] for r in rows
                if tuple(r.get(k, "context") for k in name) == key}  # fmt: skip
        best = min(mine, key=lambda t: mine[t])
        cells = " | ".join(str(mine.get(t, "-")) for t in targets)
        lines.append("| " + " | ".join(map(str, key)) + f" | {cells} | {best} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=ints, default=ints("1,2,4,8,16,32,48,64,96,128"))
    ap.add_argument("--contexts", type=ints, default=ints("384,768,1536"))
    ap.add_argument("--targets", type=ints, default=ints("1,2,4,8,16"))
    ap.add_argument("--kernels", default="tma,gather")
    ap.add_argument("--cuts", default="context", help=f"of {', '.join(KV_SPLIT_CUTS)}")
    ap.add_argument(
        "--ragged",
        action="store_true",
        help="contexts spread over 1 to twice --contexts' value (mean that value), not equal",
    )
    ap.add_argument("--plan-len", type=int, default=8192, help="the engine's max_model_len")
    ap.add_argument("--q-heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--page", type=int, default=16)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.kernels = [k for k in args.kernels.split(",") if k]
    if not set(args.kernels) <= {"tma", "gather"}:
        ap.error(f"--kernels: tma and/or gather, got {args.kernels}")
    args.cuts = [c for c in args.cuts.split(",") if c]
    if not args.cuts or not set(args.cuts) <= set(KV_SPLIT_CUTS):
        ap.error(f"--cuts: of {', '.join(KV_SPLIT_CUTS)}, got {args.cuts}")
    longest = max(args.contexts) * (2 if args.ragged else 1)
    if args.plan_len < longest or args.reps < 1:
        ap.error(f"--plan-len must cover the longest context ({longest}) and --reps be >= 1")
    if not torch.cuda.is_available():
        raise SystemExit("split_target_probe needs a CUDA GPU")
    rows = probe(args)
    args.out.write_text(json.dumps({**run_header(), "rows": rows}, indent=1))
    print(table(rows, args.targets))


if __name__ == "__main__":
    main()
