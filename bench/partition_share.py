"""Do decode attention and the layer GEMMs keep their share of the GPU on an SM partition?

Issue 19's kernel targets, measured with the kernels the runtime runs on a partition, over a bf16
and an fp8 (e4m3) KV cache, at the nano-batch of the shipped fp8 pipeline (512 decodes of 1,536
tokens, half of 1,024):

1. Decode attention on A SMs (A = 48, 64): the TMA kernel in its tuned configuration (what
   ``paged_attention`` runs with an SM budget) inside a driver-API green context of A SMs, and
   with its grid capped at A SMs on a plain stream (the shipped capped-grid plans); the whole-GPU
   gather kernel (the dense forward's) for reference; a streaming read on the same green context
   as the ceiling. Reported as GB/s of KV and GB/s per SM (target: at least 85 on 48-64 SMs).
   Every output is checked against a float32 torch reference on a few sequences.
2. The four GEMMs (QKV, O, gate/up, down) at 512 and 1,024 rows on the rest of the GPU (green
   context of 132 - A SMs), cuBLAS and cuBLASLt with its SM-count carve-out, against their SM
   share of the whole-GPU time: ``share = t_partition / (t_whole * device_sms / sms)``; the
   target is at most 1.10.
3. Both at once: attention on its A SMs beside the GEMM chain of a 512-row nano-batch on the
   rest (green contexts), and attention capped at A SMs on one plain stream beside the GEMMs on
   another (the shipped plans' layout): each side's slowdown against alone in the same place,
   and the pair's wall time against both run one after the other on the whole GPU (the dense
   layer's way).

Sections are written to the JSON as they finish (a fault in a later one keeps the earlier
ones). Usage (repo root, GPU machine):
``PYTHONPATH=.:bench python bench/partition_share.py --out bench/results/partition_share.json``
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from decode_attention_sms import time_ms as _time_ms
from gemm_partition import SHAPES, blas
from stream_read import stream_read
from timing import run_header

from kernels.metadata import AttentionMetadata
from kernels.reference import paged_attention as reference_attention
from kernels.triton.decode_attention import DecodeConfig
from kernels.triton.decode_attention_tma import tuned_config
from kernels.triton.paged_attention import decode_attention, decode_attention_tma
from runtime.pipeline.partitions import green_partitions, new_stream

Q_HEADS, KV_HEADS, HEAD_DIM, PAGE = 32, 8, 128, 16
GEMMS = SHAPES  # (N, K) of Llama-3-8B
KV_DTYPES = {"bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn}
# streaming read: (programs per SM, rows, stages, warps), the best two of 2026-11-21's sweep
READ_CONFIGS = [(4, 128, 4, 4), (2, 64, 6, 4)]
# the TMA kernel with page ids preloaded into registers (DecodeConfig.ids_block), programs per SM
# as many as shared memory holds (sizes from compiling for sm_90): one and two pages per step
PRELOAD = {
    "bf16": [DecodeConfig(16, 1, 3, 9, tma=True, ids_block=64),
             DecodeConfig(32, 1, 4, 4, tma=True, ids_block=64)],
    "fp8": [DecodeConfig(32, 1, 3, 9, tma=True, ids_block=64),
            DecodeConfig(32, 1, 4, 7, tma=True, ids_block=64)],
}  # fmt: skip
CHECK_ROWS = (0, 1, 257, 511)  # sequences compared against the torch reference
REPS = 10


def time_ms(fn: Launch, stream: torch.cuda.Stream, reps: int = REPS) -> float:
    """Median milliseconds of one call of fn on stream (events around each, after warm-ups)."""
    return _time_ms(fn, stream, reps)


Launch = Callable[[], object]


def kv_inputs(batch: int, context: int, dtype: torch.dtype, seed: int) -> dict[str, Any]:
    """Fresh random q [B, Hq, D], caches [blocks, page, Hk, D] of ``dtype`` and shuffled block
    tables: each sequence's pages are scattered over the cache, as in a running engine."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    per_seq = -(-context // PAGE)
    blocks = batch * per_seq
    shape = (blocks, PAGE, KV_HEADS, HEAD_DIM)

    def rand(*s: int) -> torch.Tensor:
        return torch.randn(s, device="cuda", dtype=torch.bfloat16, generator=gen)

    perm = torch.randperm(blocks, device="cuda", generator=gen).to(torch.int32)
    return {
        "q": rand(batch, Q_HEADS, HEAD_DIM),
        "k": rand(*shape).to(dtype),
        "v": rand(*shape).to(dtype),
        "tables": perm.view(batch, per_seq),
        "lens": torch.full((batch,), context, device="cuda", dtype=torch.int32),
        "context": context,
        "bytes": 2 * blocks * PAGE * KV_HEADS * HEAD_DIM * torch.finfo(dtype).bits // 8,
    }


def reference(x: dict[str, Any], rows: tuple[int, ...]) -> torch.Tensor:
    """The given sequences' attention by the torch reference (kernels.reference): [rows, Hq, D]."""
    pick = torch.tensor(rows, device="cuda")
    n = len(rows)
    meta = AttentionMetadata(
        cu_seqlens_q=torch.arange(n + 1, device="cuda", dtype=torch.int32),
        context_lens=x["lens"][pick], block_tables=x["tables"][pick],
        slot_mapping=torch.zeros(n, device="cuda", dtype=torch.int64), num_decode_seqs=n,
        max_query_len=1, max_context_len=x["context"], block_size=PAGE,
    )  # fmt: skip
    return reference_attention(x["q"][pick], x["k"], x["v"], meta, HEAD_DIM**-0.5).float()


def attention(
    x: dict[str, Any], num_sms: int | None, cfg: DecodeConfig | None
) -> tuple[Launch, torch.Tensor]:
    """A decode launch over all of x's sequences: the gather kernel on the whole GPU
    (``num_sms`` None), else the kernel ``cfg`` names on a persistent grid of ``num_sms``."""
    out = torch.empty_like(x["q"])
    kernel = decode_attention_tma if cfg is not None and cfg.tma else decode_attention
    args = (x["q"], x["k"], x["v"], x["tables"], x["lens"], x["context"], HEAD_DIM**-0.5, out)

    def launch() -> None:
        kernel(*args, num_sms=num_sms, config=cfg)

    return launch, out


def checked_attention(
    x: dict[str, Any], expect: torch.Tensor, num_sms: int | None, cfg: DecodeConfig | None,
    stream: torch.cuda.Stream, label: str, bound: float = 2e-2,
) -> dict[str, Any]:  # fmt: skip
    """Time one placement and check its output (relative error below ``bound``); a failure is
    recorded, not raised (speeds of a wrong kernel are never reported)."""
    row: dict[str, Any] = {"placement": label}
    row["config"] = asdict(cfg) if cfg else "gather, full grid"
    try:
        launch, out = attention(x, num_sms, cfg)
        ms = time_ms(launch, stream)
    except Exception as exc:  # e.g. a configuration over the shared-memory limit
        row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        print(json.dumps(row), flush=True)
        return row
    err = float((out[list(CHECK_ROWS)].float() - expect).norm() / expect.norm())
    row["rel_err"] = round(err, 5)
    if not err < bound:
        row["error"] = f"relative error {err} against the torch reference"
    else:
        gbps = x["bytes"] / (ms * 1e-3) / 1e9
        row.update(time_ms=round(ms, 4), gbps=round(gbps, 1))
        if num_sms:
            row.update(sms=num_sms, gbps_per_sm=round(gbps / num_sms, 1))
    print(json.dumps(row), flush=True)
    return row


def ragged_check(dtype: torch.dtype, cfg: DecodeConfig, num_sms: int, seed: int) -> float:
    """Relative error of the kernel against the reference on 64 decodes of random lengths
    (1-3,000 tokens: partial pages, an id block's tail, one or two pages per step)."""
    x = kv_inputs(64, 3000, dtype, seed)
    gen = torch.Generator(device="cuda").manual_seed(seed + 100)
    x["lens"] = torch.randint(1, 3001, (64,), device="cuda", generator=gen, dtype=torch.int32)
    rows = tuple(range(64))
    launch, out = attention(x, num_sms, cfg)
    launch()
    expect = reference(x, rows)
    return float((out.float() - expect).norm() / expect.norm())


def ceiling(sms: int, stream: torch.cuda.Stream, src: torch.Tensor) -> dict[str, Any]:
    best = min(
        (time_ms(stream_read(src, sms * per_sm, rows, st, w), stream), (per_sm, rows, st, w))
        for per_sm, rows, st, w in READ_CONFIGS
    )  # fmt: skip
    gbps = src.numel() * src.element_size() / (best[0] * 1e-3) / 1e9
    return {"gbps": round(gbps, 1), "gbps_per_sm": round(gbps / sms, 1), "config": best[1]}


def gemm_inputs(rows: int) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x, w, torch's output) per GEMM, fresh random inputs."""
    out = {}
    for name, (n, k) in GEMMS.items():
        x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k**-0.5
        out[name] = (x, w, F.linear(x, w))
    return out


def gemm_shares(
    rows: int, sms: int, stream: torch.cuda.Stream, device_sms: int
) -> list[dict[str, Any]]:
    whole = torch.cuda.Stream()
    result = []
    for name, (x, w, ref) in gemm_inputs(rows).items():
        linear: Launch = partial(F.linear, x, w)
        t_whole = time_ms(linear, whole)
        row: dict[str, Any] = {"op": name, "rows": rows, "sms": sms, "whole_ms": round(t_whole, 4)}
        fair = t_whole * device_sms / sms  # the time at exactly its share of the SMs
        for label, lib, carve in (("cublas", "cublas", None),
                                  ("cublaslt_carveout", "cublaslt", device_sms - sms)):  # fmt: skip
            with blas(lib, carve):
                ms = time_ms(linear, stream)
                err = float((F.linear(x, w).float() - ref.float()).norm() / ref.float().norm())
            assert err < 1e-2, f"{name} {label} on {sms} SMs: relative error {err}"
            row[f"{label}_ms"] = round(ms, 4)
            row[f"{label}_vs_share"] = round(ms / fair, 3)
        print(json.dumps(row), flush=True)
        result.append(row)
    return result


def chain(rows: int) -> Launch:
    """The four GEMMs of a nano-batch of ``rows`` tokens, one after the other."""
    ops = gemm_inputs(rows)

    def launch() -> None:
        for x, w, _ in ops.values():
            F.linear(x, w)

    return launch


def together(
    att: Launch, att_stream: torch.cuda.Stream, att_calls: int,
    gemm: Launch, gemm_stream: torch.cuda.Stream, gemm_calls: int,
) -> tuple[float, float]:  # fmt: skip
    """Milliseconds until each side's last call ends, both started by one event; launches are
    interleaved so that neither side waits for the host to issue the other's."""
    runs = []
    for _ in range(3):
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        ends = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(att_stream)
        gemm_stream.wait_event(start)
        issued = [0, 0]
        while issued[0] < att_calls or issued[1] < gemm_calls:
            side = 0 if issued[0] * gemm_calls <= issued[1] * att_calls else 1
            side = side if issued[side] < (att_calls, gemm_calls)[side] else 1 - side
            with torch.cuda.stream(att_stream if side == 0 else gemm_stream):
                (att if side == 0 else gemm)()
            issued[side] += 1
        ends[0].record(att_stream)
        ends[1].record(gemm_stream)
        torch.cuda.synchronize()
        runs.append((start.elapsed_time(ends[0]), start.elapsed_time(ends[1])))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def overlap(
    name: str, att: Launch, att_stream: torch.cuda.Stream, gemm: Launch,
    gemm_stream: torch.cuda.Stream, dense_att_ms: float, dense_gemm_ms: float,
) -> dict[str, Any]:  # fmt: skip
    att_ms, gemm_ms = time_ms(att, att_stream), time_ms(gemm, gemm_stream)
    att_calls = 20
    gemm_calls = max(1, round(att_calls * att_ms / gemm_ms))
    a, g = together(att, att_stream, att_calls, gemm, gemm_stream, gemm_calls)
    serial_whole = att_calls * dense_att_ms + gemm_calls * dense_gemm_ms
    row = {
        "layout": name, "attention_calls": att_calls, "gemm_chains": gemm_calls,
        "attention_alone_ms": round(att_ms, 4), "gemm_chain_alone_ms": round(gemm_ms, 4),
        "attention_slowdown": round(a / (att_calls * att_ms), 3),
        "gemm_slowdown": round(g / (gemm_calls * gemm_ms), 3),
        "wall_ms": round(max(a, g), 3),
        "serial_here_ms": round(att_calls * att_ms + gemm_calls * gemm_ms, 3),
        "serial_whole_gpu_ms": round(serial_whole, 3),
        "speedup_vs_whole_gpu_serial": round(serial_whole / max(a, g), 3),
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def attention_section(
    report: dict[str, Any], name: str, x: dict[str, Any],
    granted: dict[int, tuple[int, int]],
    streams: dict[int, tuple[torch.cuda.Stream, torch.cuda.Stream]],
    plain: torch.cuda.Stream, device_sms: int,
) -> None:  # fmt: skip
    """Every placement of decode attention over x (KV dtype ``name``) into report["attention"],
    and the preload candidates' checks on ragged batches into report["ragged_checks"]."""
    expect = reference(x, CHECK_ROWS)
    rows = report["attention"]

    def measure(num_sms: int | None, cfg: DecodeConfig | None, stream: torch.cuda.Stream,
                label: str) -> dict[str, Any]:  # fmt: skip
        row = {"kv": name, **checked_attention(x, expect, num_sms, cfg, stream, label)}
        rows.append(row)
        return row

    x["whole"] = measure(None, None, plain, f"{name} whole GPU, gather (the dense forward's)")
    measure(device_sms, tuned_config(device_sms, PAGE), plain, f"{name} whole GPU, TMA")
    for c in PRELOAD[name]:
        measure(device_sms, c, plain, f"{name} whole GPU, TMA, ids preloaded")
    for a, (sms, _) in granted.items():
        green = streams[a][0]
        cfg = tuned_config(sms, PAGE)
        measure(a, cfg, plain, f"{name} capped at {a} SMs, plain stream, TMA")
        measure(sms, cfg, green, f"{name} green context {sms} SMs, TMA")
        for c in PRELOAD[name]:
            measure(sms, c, green, f"{name} green context {sms} SMs, TMA, ids preloaded")
    for j, c in enumerate(PRELOAD[name]):
        try:
            err = ragged_check(KV_DTYPES[name], c, 64, seed=10 + j)
        except Exception as exc:
            err = float("nan")
            print(f"ragged check failed: {exc!r:.300}", flush=True)
        check = {"kv": name, "config": asdict(c), "rel_err": round(err, 5)}
        report.setdefault("ragged_checks", []).append(check)
        print(json.dumps(check), flush=True)


def best_preload(rows: list[dict[str, Any]], kv: str, sms: int) -> DecodeConfig | None:
    """The fastest correct preload candidate measured on a green context of ``sms`` SMs."""
    good = [r for r in rows if r["kv"] == kv and r.get("sms") == sms and "time_ms" in r
            and "ids preloaded" in r["placement"] and "green" in r["placement"]]  # fmt: skip
    if not good:
        return None
    return DecodeConfig(**min(good, key=lambda r: r["time_ms"])["config"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--context", type=int, default=1536)
    ap.add_argument("--attn-sms", default="64,48")
    ap.add_argument("--gemm-rows", default="512,1024")
    ap.add_argument("--kv-dtypes", default="fp8,bf16")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    device_sms = torch.cuda.get_device_properties(0).multi_processor_count
    report: dict[str, Any] = {
        **run_header(),
        "shape": {"batch": args.batch, "context": args.context, "q_heads": Q_HEADS,
                  "kv_heads": KV_HEADS, "head_dim": HEAD_DIM, "page": PAGE},
        "attention": [], "ceilings": {}, "gemms": [], "overlap": [],
    }  # fmt: skip

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    budgets = [int(a) for a in args.attn_sms.split(",")]
    parts = {a: green_partitions((a, device_sms - a)) for a in budgets}
    streams = {a: (new_stream(p[0]), new_stream(p[1])) for a, p in parts.items()}
    granted = {a: (p[0].num_sms, p[1].num_sms) for a, p in parts.items()}
    report["partitions"] = {str(a): list(g) for a, g in granted.items()}
    plain, plain2 = torch.cuda.Stream(), torch.cuda.Stream()
    inputs = {}
    for i, name in enumerate(args.kv_dtypes.split(",")):  # 1. attention
        x = inputs[name] = kv_inputs(args.batch, args.context, KV_DTYPES[name], seed=i)
        attention_section(report, name, x, granted, streams, plain, device_sms)
        save()
    src = torch.randn(1 << 29, device="cuda", dtype=torch.bfloat16)  # 1 GiB
    for a in budgets:
        report["ceilings"][str(granted[a][0])] = ceiling(granted[a][0], streams[a][0], src)
    del src
    save()
    for rows_ in (int(r) for r in args.gemm_rows.split(",")):  # 2. GEMMs
        for a in budgets:
            report["gemms"] += gemm_shares(rows_, granted[a][1], streams[a][1], device_sms)
    save()
    nano = args.batch  # 3. both at once, a 512-row nano-batch's GEMMs beside its attention
    gemm = chain(nano)
    dense_gemm_ms = time_ms(gemm, plain)
    for name, x in inputs.items():
        if "time_ms" not in x["whole"]:
            continue  # the reference kernel itself failed: nothing to compare against
        dense_att_ms = x["whole"]["time_ms"]
        for a in budgets:
            sms = granted[a][0]
            layouts = [("", tuned_config(sms, PAGE))]
            best = best_preload(report["attention"], name, sms)
            if best is not None:
                layouts.append((", ids preloaded", best))
            for note, cfg in layouts:
                capped, _ = attention(x, a, cfg)
                report["overlap"].append({"kv": name, "config": asdict(cfg), **overlap(
                    f"{name}: attention capped at {a} SMs{note} | GEMMs, two plain streams",
                    capped, plain, gemm, plain2, dense_att_ms, dense_gemm_ms)})  # fmt: skip
                save()
                confined, _ = attention(x, sms, cfg)
                report["overlap"].append({"kv": name, "config": asdict(cfg), **overlap(
                    f"{name}: attention on {sms} SMs{note} | GEMMs on {granted[a][1]}, green "
                    "contexts", confined, streams[a][0], gemm, streams[a][1], dense_att_ms,
                    dense_gemm_ms,
                )})  # fmt: skip
                save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
