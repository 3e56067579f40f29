"""Does a GEMM beside decode attention on the same SMs beat the two one after the other?

NanoFlow's overlap on disjoint SM partitions has not paid on the H200 (docs/performance.md).
This measures the alternative: one launch whose GEMM programs and attention programs share every
SM (``kernels/triton/gemm_beside_attention.py``), for one nano-batch's GEMM beside another's
decode attention, at the shapes where the issue says overlap should pay (Llama-3-8B, about 1,000
decodes of 1k context over an fp8 cache, split in two) and at bf16 batches of 256 and 512.

Per scenario, each timed as the median of back-to-back calls (device time, CUDA events):
- ``attention_engine_ms``: the engine's decode attention on the whole GPU (``paged_attention``
  with the engine's default choice: by-context@1.05 over bf16, auto over fp8); ``attention_ms``:
  the best of that, the gather kernel's default grid and the launch's own attention configs on
  a persistent grid;
- ``cublas_ms``: torch's linear alone; ``gemm_role_ms``: the launch's GEMM role alone;
- ``sequential_ms``: torch's linear, then the engine's attention (what the engine runs today);
- ``two_streams_ms``: the two on two streams at once (NanoFlow on plain streams);
- ``capped_streams_ms``: the best config's two roles as two capped launches on two streams;
- ``shared_ms``: the best config of the one launch (GEMM tile, programs per SM of each role,
  the attention's tile, warps), its outputs checked against the two kernels';
- ``floor_ms``: max(the two alone, their bytes at the HBM copy bandwidth given by --hbm-tb-s).

    PYTHONPATH=.:bench python bench/gemm_beside_attention.py --out $OUT/gemm_beside_attention.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, PAGE = 4096, 32, 8, 128, 16  # Llama-3-8B


@dataclass(frozen=True)
class Scenario:
    name: str
    seqs: int  # the attention nano-batch's decodes
    context: int
    kv_dtype: str  # "fp8" or "bf16"
    rows: int  # the GEMM nano-batch's rows
    n: int
    k: int


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("fp8-500x1024-gate_up-500", 500, 1024, "fp8", 500, 28672, HIDDEN),
        Scenario("fp8-500x1024-down-500", 500, 1024, "fp8", 500, HIDDEN, 14336),
        Scenario("bf16-256x1024-gate_up-256", 256, 1024, "bf16", 256, 28672, HIDDEN),
        Scenario("bf16-128x1024-gate_up-128", 128, 1024, "bf16", 128, 28672, HIDDEN),
    )
}


def bytes_moved(s: Scenario) -> int:
    """KV bytes the attention reads plus the weight bytes the GEMM reads (activations left out)."""
    kv_elem = 1 if s.kv_dtype == "fp8" else 2
    return s.seqs * s.context * 2 * KV_HEADS * HEAD_DIM * kv_elem + s.n * s.k * 2


def floor_ms(s: Scenario, attention_ms: float, gemm_ms: float, hbm_tb_s: float) -> float:
    """No launch of the two can beat either alone, nor move their bytes faster than HBM."""
    return max(attention_ms, gemm_ms, bytes_moved(s) / (hbm_tb_s * 1e12) * 1e3)


def summary(s: Scenario, m: dict[str, Any], hbm_tb_s: float) -> dict[str, Any]:
    """The derived figures of a scenario's measured times (milliseconds)."""
    alone = min(m["cublas_ms"], m["gemm_role_ms"])
    floor = floor_ms(s, m["attention_ms"], alone, hbm_tb_s)
    out = {
        "floor_ms": round(floor, 4),
        "sequential_over_shared": round(m["sequential_ms"] / m["shared_ms"], 3),
        "two_streams_over_shared": round(m["two_streams_ms"] / m["shared_ms"], 3),
        "sequential_over_floor": round(m["sequential_ms"] / floor, 3),
    }
    return out


def _paged_batch(s: Scenario, gen: torch.Generator, device: str) -> dict[str, Any]:
    blocks_per_seq = -(-s.context // PAGE)
    num_blocks = s.seqs * blocks_per_seq + 1
    table = (torch.randperm(num_blocks - 1, generator=gen, device=device) + 1).to(torch.int32)
    shape = (num_blocks, PAGE, KV_HEADS, HEAD_DIM)
    dtype = torch.float8_e4m3fn if s.kv_dtype == "fp8" else torch.bfloat16
    k = torch.randn(shape, device=device, generator=gen, dtype=torch.bfloat16).to(dtype)
    v = torch.randn(shape, device=device, generator=gen, dtype=torch.bfloat16).to(dtype)
    return {
        "q": torch.randn(
            s.seqs, HEADS, HEAD_DIM, device=device, generator=gen, dtype=torch.bfloat16
        ),
        "k": k,
        "v": v,
        "tables": table.view(s.seqs, blocks_per_seq),
        "lens": torch.full((s.seqs,), s.context, dtype=torch.int32, device=device),
    }


def decode_metadata(s: Scenario, tables: torch.Tensor, lens: torch.Tensor) -> Any:
    """The engine's attention metadata of a decode-only batch of the scenario's sequences."""
    from kernels.metadata import AttentionMetadata

    return AttentionMetadata(
        cu_seqlens_q=torch.arange(s.seqs + 1, dtype=torch.int32, device=lens.device),
        context_lens=lens, block_tables=tables,
        slot_mapping=torch.zeros(s.seqs, dtype=torch.int64, device=lens.device),
        num_decode_seqs=s.seqs, max_query_len=1, max_context_len=s.context, block_size=PAGE,
        cu_seqlens_q_host=tuple(range(s.seqs + 1)), context_lens_host=(s.context,) * s.seqs,
    )  # fmt: skip


def candidates(quick: bool) -> list[dict[str, Any]]:
    """The launch's configs tried: GEMM tiles (TMA or pointer loads) x programs per SM of each
    role x attention tiles x role order, at 4 warps; and the first tile and attention tile at 8
    warps. Programs per SM
    are runtime arguments: only the tiles, warps and role order compile a new kernel."""
    from kernels.triton.decode_attention import DecodeConfig
    from kernels.triton.gemm_beside_attention import GemmConfig

    # TMA copies (the tiled linear's way on Hopper) and masked pointer loads (cp.async)
    tiles = [GemmConfig(128, 128, 64, 2, tma=True), GemmConfig(128, 128, 64, 3, tma=True),
             GemmConfig(128, 64, 64, 3, tma=True), GemmConfig(128, 128, 64, 2)]  # fmt: skip
    per_sm = [(1, 1), (1, 2), (2, 1), (2, 2)]
    # one attention program per share of the grid, as the launch runs them (ctas_per_sm=1)
    decodes = [DecodeConfig(64, 4, 2, ctas_per_sm=1), DecodeConfig(32, 4, 4, ctas_per_sm=1)]
    orders = [False, True]
    if quick:
        tiles, per_sm, decodes, orders = tiles[:1], per_sm[:2], decodes[:1], orders[:1]
    out = [{"gemm": g, "per_sm": p, "decode": d, "num_warps": 4, "interleave": i}
           for g, p, d, i in itertools.product(tiles, per_sm, decodes, orders)]  # fmt: skip
    if not quick:
        out += [{"gemm": tiles[0], "per_sm": p, "decode": decodes[0], "num_warps": 8,
                 "interleave": i} for p, i in itertools.product(per_sm, orders)]  # fmt: skip
    return out


def compiled_variants() -> list[dict[str, Any]]:
    """Shared memory, registers and warps of every compiled variant of the launch's kernel: two
    programs fit on an H200 SM only within 228 KB of shared memory and 64K registers."""
    from kernels.triton.gemm_beside_attention import gemm_attention_kernel

    out = []
    for caches in getattr(gemm_attention_kernel, "device_caches", {}).values():
        for k in caches[0].values():
            meta = getattr(k, "metadata", None)
            out.append({"shared_bytes": getattr(meta, "shared", None),
                        "num_warps": getattr(meta, "num_warps", None),
                        "registers_per_thread": getattr(k, "n_regs", None),
                        "spills": getattr(k, "n_spills", None)})  # fmt: skip
    return out  # fmt: skip


def measure(s: Scenario, sms: int, quick: bool, reps: int, device: str = "cuda") -> dict[str, Any]:
    """Every time of one scenario (``device`` "cpu": Triton's interpreter, for a smoke test of
    this script only; its times mean nothing)."""
    from timing import median_ms

    from kernels.decode_choice import DecodeChoice
    from kernels.triton.decode_attention import decode_attention
    from kernels.triton.gemm_beside_attention import gemm, gemm_beside_attention
    from kernels.triton.paged_attention import paged_attention

    gen = torch.Generator(device=device).manual_seed(len(s.name))
    b = _paged_batch(s, gen, device)
    x = torch.randn(s.rows, s.k, device=device, generator=gen, dtype=torch.bfloat16)
    w = torch.randn(s.n, s.k, device=device, generator=gen, dtype=torch.bfloat16) * s.k**-0.5
    out = torch.empty_like(b["q"])
    scale = HEAD_DIM**-0.5
    kv = (b["q"], b["k"], b["v"], b["tables"], b["lens"], s.context, scale, out)

    def attention(config: Any = None, num_sms: int | None = None) -> None:
        decode_attention(*kv, num_sms=num_sms, config=config)

    # what the engine runs on the whole GPU: by-context@1.05 over bf16, auto (the TMA kernel,
    # one program per item) over fp8
    meta = decode_metadata(s, b["tables"], b["lens"])
    choice = DecodeChoice.parse("auto" if s.kv_dtype == "fp8" else "by-context@1.05")

    def engine_attention() -> None:
        paged_attention(b["q"], b["k"], b["v"], meta, scale, choice=choice)

    m: dict[str, Any] = {"scenario": asdict(s), "bytes": bytes_moved(s)}
    m["cublas_ms"] = median_ms(lambda: F.linear(x, w), reps)
    m["attention_engine_ms"] = median_ms(engine_attention, reps)
    m["attention_default_ms"] = median_ms(attention, reps)
    m["gemm_role_ms"] = min(
        median_ms(
            lambda c=c: gemm(
                x, w, programs=sms * c["per_sm"][0], config=c["gemm"], num_warps=c["num_warps"]
            ),
            reps,
        )
        for c in candidates(quick)
        if c["per_sm"][1] == 1
    )
    side = torch.cuda.Stream() if device == "cuda" else None

    def sequential() -> None:
        F.linear(x, w)
        engine_attention()

    def two_streams() -> None:
        if side is None:  # the CPU: one after the other
            return sequential()
        main = torch.cuda.current_stream()
        side.wait_stream(main)
        F.linear(x, w)
        with torch.cuda.stream(side):
            engine_attention()
        main.wait_stream(side)

    m["sequential_ms"] = median_ms(sequential, reps)
    m["two_streams_ms"] = median_ms(two_streams, reps)
    tried, best, best_ms = [], None, float("inf")
    attn_best = min(m["attention_engine_ms"], m["attention_default_ms"])
    for c in candidates(quick):
        gp, ap = sms * c["per_sm"][0], sms * c["per_sm"][1]

        def shared(c: dict[str, Any] = c, gp: int = gp, ap: int = ap) -> torch.Tensor:
            return gemm_beside_attention(
                x, w, *kv, gemm_programs=gp, attn_programs=ap, gemm_config=c["gemm"],
                decode_config=c["decode"], num_warps=c["num_warps"], interleave=c["interleave"],
            )  # fmt: skip

        row = {"gemm": asdict(c["gemm"]), "per_sm": c["per_sm"], "decode_block_n":
               c["decode"].block_n, "decode_stages": c["decode"].num_stages,
               "num_warps": c["num_warps"], "interleave": c["interleave"]}  # fmt: skip
        try:
            row["ms"] = round(median_ms(shared, reps), 4)
            row["attention_alone_ms"] = round(median_ms(
                lambda c=c, ap=ap: attention(c["decode"], num_sms=ap), reps), 4)  # fmt: skip
        except Exception as exc:  # a config the compiler or the GPU refuses (resources)
            row["error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
            tried.append(row)
            continue
        attn_best = min(attn_best, row["attention_alone_ms"])
        tried.append(row)
        if row["ms"] < best_ms:
            best, best_ms = c, row["ms"]
    m["attention_ms"] = attn_best
    m["tried"] = tried
    if best is None:
        m["shared_ms"] = None
        return m
    m["shared_ms"] = best_ms
    m["shared_config"] = next(r for r in tried if r.get("ms") == best_ms)
    y = gemm_beside_attention(
        x,
        w,
        *kv,
        gemm_programs=sms * best["per_sm"][0],
        attn_programs=sms * best["per_sm"][1],
        gemm_config=best["gemm"],
        decode_config=best["decode"],
        num_warps=best["num_warps"],
        interleave=best["interleave"],
    )
    shared_out = out.clone()
    attention()
    m["capped_streams_ms"] = capped_streams_ms(best, sms, x, w, attention, side, reps)
    m["max_abs_err_gemm"] = (y.float() - F.linear(x, w).float()).abs().max().item()
    m["max_abs_err_attention"] = (shared_out.float() - out.float()).abs().max().item()
    m["compiled_variants"] = compiled_variants()
    return m


def capped_streams_ms(
    best: dict[str, Any],
    sms: int,
    x: torch.Tensor,
    w: torch.Tensor,
    attention: Any,
    side: Any,
    reps: int,
) -> float | None:
    """The best config's two roles as two launches on two streams at once, each capped at its
    programs (NanoFlow's released code caps its kernels' CTAs this way): what the one launch
    gains over the same kernels run side by side without it. None on the CPU."""
    from timing import median_ms

    from kernels.triton.gemm_beside_attention import gemm

    if side is None:
        return None
    gp, ap = sms * best["per_sm"][0], sms * best["per_sm"][1]

    def both() -> None:
        main = torch.cuda.current_stream()
        side.wait_stream(main)
        gemm(x, w, programs=gp, config=best["gemm"], num_warps=best["num_warps"])
        with torch.cuda.stream(side):
            attention(best["decode"], num_sms=ap)
        main.wait_stream(side)

    return round(median_ms(both, reps), 4)


def table(record: dict[str, Any]) -> str:
    head = ["scenario", "attention", "cuBLAS", "GEMM role", "sequential", "two streams",
            "capped streams", "one launch", "floor", "sequential / one launch"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in record["results"]:
        if r.get("shared_ms") is None:
            continue
        lines.append("| " + " | ".join([
            r["scenario"]["name"], f"{r['attention_ms']:.3f}", f"{r['cublas_ms']:.3f}",
            f"{r['gemm_role_ms']:.3f}", f"{r['sequential_ms']:.3f}", f"{r['two_streams_ms']:.3f}",
            "-" if r.get("capped_streams_ms") is None else f"{r['capped_streams_ms']:.3f}",
            f"{r['shared_ms']:.3f}", f"{r['floor_ms']:.3f}", f"{r['sequential_over_shared']}",
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated: " + ", ".join(SCENARIOS))  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="two configs per scenario")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--hbm-tb-s", type=float, default=4.3, help="HBM copy bandwidth for the floor")
    ap.add_argument("--out", type=Path, help="the record (JSON)")
    ap.add_argument("--table", type=Path, help="print the markdown table of a record and exit")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    if args.reps < 1 or not args.hbm_tb_s > 0:
        print(f"error: --reps must be >= 1 and --hbm-tb-s positive, got {args.reps} and "
              f"{args.hbm_tb_s}", file=sys.stderr)  # fmt: skip
        return 2
    names = [n for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        print(f"error: unknown scenario {unknown[0] if unknown else ''!r}; known: "
              f"{', '.join(SCENARIOS)}", file=sys.stderr)  # fmt: skip
        return 2
    if not torch.cuda.is_available():
        print("error: needs a CUDA GPU", file=sys.stderr)
        return 2
    from timing import run_header

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    record: dict[str, Any] = {**run_header(), "hbm_tb_s": args.hbm_tb_s, "results": []}
    for name in names:
        s = SCENARIOS[name]
        m = measure(s, sms, args.quick, args.reps)
        if m.get("shared_ms") is not None:
            m.update(summary(s, m, args.hbm_tb_s))
        record["results"].append(m)
        print(json.dumps({k: v for k, v in m.items() if k != "tried"}), flush=True)
        if args.out:
            args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(table(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
