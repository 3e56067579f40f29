"""Extend (prefill) attention on one GPU: each tile configuration of the Triton extend kernel, and
optionally another version of the kernel (``--before FILE``, e.g. main's), on prefill-shaped
batches of Llama-3-8B's heads (32 query / 8 KV heads of 128, pages of 16).

Batches: a chunk of ``n x q`` new tokens, each sequence's chunk at the end of a ``ctx``-token
context (``8x1024@1024``: eight 1,024-token prompts in one 8,192-token iteration, 1024/512's
prefill), and FlashInfer's prefill through the engine's backend where flashinfer is importable
(16-bit caches). Median of ``--repeats`` timed calls (CUDA events) after warm-up; TFLOP/s counts the
causal query-key pairs (4 x head_dim flops per pair and head). JSON on stdout and to ``--out``.
Usage (repo root, on a GPU): PYTHONPATH=. python bench/extend_attention.py --out FILE.json
``--table FILE.json`` prints a results file as markdown tables (ms and TFLOP/s per shape), no GPU.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timing import median_ms

from kernels.metadata import AttentionMetadata
from kernels.triton.extend_attention import ExtendConfig, default_config, extend_attention

HEADS, KV_HEADS, HEAD_DIM, PAGE = 32, 8, 128, 16
# 7x1155@1155: Splitwise-like's mean prompt, seven to an 8,192-token iteration
SHAPES = ("8x1024@1024", "4x2048@2048", "8x1024@2048", "7x1155@1155")
CONFIGS = (
    ExtendConfig(64, 64, 4, 2), ExtendConfig(64, 64, 4, 3), ExtendConfig(64, 128, 4, 2),
    ExtendConfig(128, 64, 8, 2), ExtendConfig(128, 64, 8, 3), ExtendConfig(128, 128, 8, 2),
    ExtendConfig(128, 32, 4, 3),
)  # fmt: skip


SHAPE = re.compile(r"(\d+)x(\d+)@(\d+)")


def parse_shape(text: str) -> tuple[int, int, int]:
    """``NxQ@CTX`` -> (sequences, new tokens each, context each); ValueError otherwise."""
    found = SHAPE.fullmatch(text.strip())
    if found is None or int(found[1]) < 1:
        raise ValueError(f"shape {text!r}: expected NxQ@CTX, e.g. 8x1024@1024")
    n, q_len, ctx = int(found[1]), int(found[2]), int(found[3])
    if not 0 < q_len <= ctx:
        raise ValueError(f"shape {text!r}: the new tokens must be 1 to the context's length")
    return n, q_len, ctx


def make_batch(shape: str, kv_dtype: torch.dtype, device: str = "cuda") -> dict[str, Any]:
    n, q_len, ctx = parse_shape(shape)
    pages = -(-ctx // PAGE)  # a context that ends mid-page still needs that page
    gen = torch.Generator(device=device).manual_seed(0)
    perm = torch.randperm(n * pages, device=device, generator=gen).to(torch.int32)
    cache_shape = (n * pages, PAGE, KV_HEADS, HEAD_DIM)
    k = torch.randn(cache_shape, device=device, generator=gen).to(kv_dtype)
    v = torch.randn(cache_shape, device=device, generator=gen).to(kv_dtype)
    q = torch.randn(n * q_len, HEADS, HEAD_DIM, device=device, generator=gen).bfloat16()
    cu = [q_len * i for i in range(n + 1)]
    meta = AttentionMetadata(
        cu_seqlens_q=torch.tensor(cu, dtype=torch.int32, device=device),
        context_lens=torch.full((n,), ctx, dtype=torch.int32, device=device),
        block_tables=perm.view(n, pages),
        slot_mapping=torch.zeros(n * q_len, dtype=torch.long, device=device),
        num_decode_seqs=0, max_query_len=q_len, max_context_len=ctx, block_size=PAGE,
        cu_seqlens_q_host=tuple(cu), context_lens_host=(ctx,) * n,
    )  # fmt: skip
    pairs = n * sum(ctx - q_len + j + 1 for j in range(q_len))
    return {"q": q, "k": k, "v": v, "meta": meta, "flops": 4 * HEAD_DIM * HEADS * pairs}


def timed(fn: Callable[[], None], repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls, after three warm-up calls."""
    return median_ms(fn, repeats, 3, sync_each=True)


def load_kernel(path: Path) -> Callable[..., None]:
    spec = importlib.util.spec_from_file_location("extend_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn: Callable[..., None] = module.extend_attention
    return fn


def run_case(b: dict[str, Any], kernel: Callable[..., None], **kw: Any) -> Callable[[], None]:
    meta: AttentionMetadata = b["meta"]
    out = torch.empty_like(b["q"])

    def call() -> None:
        kernel(b["q"], b["k"], b["v"], meta.block_tables, meta.context_lens, meta.cu_seqlens_q,
               0, meta.num_seqs, meta.max_query_len, HEAD_DIM**-0.5, out, **kw)  # fmt: skip

    return call


def flashinfer_case(b: dict[str, Any]) -> Callable[[], None] | None:
    """FlashInfer's prefill through the engine's backend (its plan made once, on the first call,
    as the engine plans once per batch), or None where flashinfer is not importable or does not
    take this cache (it runs 16-bit caches; others go to its Triton fallback)."""
    if importlib.util.find_spec("flashinfer") is None or b["k"].element_size() != 2:
        return None
    from kernels.attention.flashinfer_attention import FlashInferAttention

    backend = FlashInferAttention(b["q"].device)

    def call() -> None:
        backend.forward(b["q"], b["k"], b["v"], b["meta"], HEAD_DIM**-0.5)

    return call


def table(record: dict[str, Any]) -> str:
    """Markdown: one table per cache dtype, a row per kernel, "ms, TFLOP/s" per shape."""
    rows = [r for r in record["rows"] if "kernel" in r]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    lines = []
    for kv in dict.fromkeys(r["kv"] for r in rows):
        lines += [f"| kernel ({kv} cache) | " + " | ".join(shapes) + " |",
                  "| --- |" + " --- |" * len(shapes)]  # fmt: skip
        cell = {(r["kernel"], r["shape"]): f"{r['ms']:.3f} ms, {r['tflops']:.0f}"
                for r in rows if r["kv"] == kv}  # fmt: skip
        for kernel in dict.fromkeys(r["kernel"] for r in rows if r["kv"] == kv):
            cells = [cell.get((kernel, s), "-") for s in shapes]
            lines.append(f"| {kernel} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--kv-dtypes", default="bf16,fp8")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--before", type=Path, default=None, help="another extend_attention.py")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--table", type=Path, default=None, help="print a results file's tables")
    args = ap.parse_args(argv)
    if args.table is not None:
        print(table(json.loads(args.table.read_text())))
        return 0
    kv_types = {"bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn}
    try:  # every shape and cache dtype checked before any GPU work
        for shape in args.shapes.split(","):
            parse_shape(shape)
    except ValueError as err:
        ap.error(str(err))
    unknown = [kv for kv in args.kv_dtypes.split(",") if kv not in kv_types]
    if unknown:
        ap.error(f"--kv-dtypes: unknown {unknown[0]!r}; choose from {', '.join(kv_types)}")
    if not torch.cuda.is_available():
        ap.error("needs a CUDA GPU")
    before = load_kernel(args.before) if args.before else None
    rows = []
    for kv in args.kv_dtypes.split(","):
        for shape in args.shapes.split(","):
            b = make_batch(shape, kv_types[kv])
            default = default_config(b["q"], b["meta"].max_query_len)
            # the sweep on the first cache dtype; the others time the default configuration
            configs = CONFIGS if kv == args.kv_dtypes.split(",")[0] else (default,)
            cases: dict[str, Callable[[], None]] = {
                f"{c.block_m}x{c.block_n} w{c.num_warps} s{c.stages}": run_case(
                    b, extend_attention, config=c
                )
                for c in configs
            }
            if before is not None:
                cases["before"] = run_case(b, before)
            flashinfer = flashinfer_case(b)
            if flashinfer is not None:
                cases["flashinfer"] = flashinfer
            for name, fn in cases.items():
                ms = timed(fn, args.repeats)
                rows.append({"kv": kv, "shape": shape, "kernel": name, "ms": round(ms, 4),
                             "tflops": round(b["flops"] / ms / 1e9, 1)})  # fmt: skip
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            rows.append({"kv": kv, "shape": shape, "default": str(default)})
    record = {
        "command": "python bench/extend_attention.py " + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name(),
        "date": datetime.date.today().isoformat(),
        "rows": rows,
    }
    text = json.dumps(record, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
