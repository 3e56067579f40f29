"""The fused rope + KV store (kernels.triton.rotary_store_kv) against rotary then store_kv, the
two kernels it replaces, per attention layer, on the shapes of Llama-3-8B (32 q / 8 kv heads of
128) and of one TP=2 rank of Llama-3-70B (32 q / 4 kv heads): 256 and 1,000 decode rows and an
8,192-token mixed batch (decode rows then prefill chunks), bf16 and float8 (e4m3) KV caches.

``device_us``: each variant captured ``CALLS`` times in one CUDA graph, the median replay over
``CALLS`` (device time without launch gaps, as the engine's decode graphs run);
``eager_us``: wall time of one call launched from Python (as eager prefill iterations run them).
Each case first checks that the fused kernel writes the same q and cache bytes as the two kernels.
Inputs are q / k / v views of one QKV projection output, positions up to 8,192, distinct slots
scattered over a cache of ``--cache-slots`` slots.

    PYTHONPATH=. python bench/rope_store.py --out bench/results/rope_store.json

Without a GPU it runs on Triton's CPU interpreter (TRITON_INTERPRET=1, bf16 caches only, wall
times): a check of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pointwise_ops import CALLS, time_call
from kernels.triton import rotary, rotary_store_kv, store_kv

SHAPES = {"llama-3-8b": (32, 8, 128), "llama-3-70b-tp2": (32, 4, 128)}  # q heads, kv heads, dim
CACHE_DTYPES = {"bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn}
BLOCK_SIZE = 16


def make_inputs(
    tokens: int, decodes: int, shape: tuple[int, int, int], cache_dtype: torch.dtype,
    cache_slots: int, device: str,
) -> dict[str, Any]:  # fmt: skip
    """One layer's inputs: the first ``decodes`` rows are decodes (one token of a sequence each),
    the rest prefill chunks of up to 512 consecutive positions and slots."""
    num_q, num_kv, dim = shape
    g = torch.Generator().manual_seed(tokens + num_kv)
    qkv = torch.randn(tokens, (num_q + 2 * num_kv) * dim, generator=g).to(torch.bfloat16)
    qkv = qkv.to(device)
    q, k, v = qkv.split([num_q * dim, num_kv * dim, num_kv * dim], -1)
    blocks = torch.randperm(cache_slots // BLOCK_SIZE, generator=g)
    slots, positions, block = [], [], 0
    for _ in range(decodes):  # a sequence's next slot: somewhere in one of its blocks
        offset = int(torch.randint(BLOCK_SIZE, (1,), generator=g))
        slots.append(int(blocks[block]) * BLOCK_SIZE + offset)
        positions.append(int(torch.randint(8192, (1,), generator=g)))
        block += 1
    while len(slots) < tokens:  # prefill chunks: consecutive positions in consecutive blocks
        chunk = min(512, tokens - len(slots))
        for i in range(chunk):
            slots.append(int(blocks[block + i // BLOCK_SIZE]) * BLOCK_SIZE + i % BLOCK_SIZE)
            positions.append(i)
        block += (chunk + BLOCK_SIZE - 1) // BLOCK_SIZE
    cache_shape = (cache_slots // BLOCK_SIZE, BLOCK_SIZE, num_kv, dim)
    inv = 1.0 / (500000.0 ** (torch.arange(0, dim, 2).float() / dim))
    angles = torch.arange(8192).float()[:, None] * inv[None, :]
    return {
        "q": q.view(tokens, num_q, dim),
        "k": k.view(tokens, num_kv, dim),
        "v": v.view(tokens, num_kv, dim),
        "positions": torch.tensor(positions, device=device),
        "cos_sin": torch.cat([angles.cos(), angles.sin()], dim=-1).to(device),
        "k_cache": torch.zeros(cache_shape, device=device).to(cache_dtype),
        "v_cache": torch.zeros(cache_shape, device=device).to(cache_dtype),
        "slots": torch.tensor(slots, device=device),
        "k_scale": 0.5 if cache_dtype == torch.float8_e4m3fn else 1.0,
        "v_scale": 0.5 if cache_dtype == torch.float8_e4m3fn else 1.0,
    }


def variants(x: dict[str, Any]) -> dict[str, Callable[[], torch.Tensor]]:
    def fused() -> torch.Tensor:
        return rotary_store_kv(
            x["q"], x["k"], x["v"], x["positions"], x["cos_sin"], x["k_cache"], x["v_cache"],
            x["slots"], x["k_scale"], x["v_scale"],
        )  # fmt: skip

    def unfused() -> torch.Tensor:
        q, k = rotary(x["q"], x["k"], x["positions"], x["cos_sin"])
        store_kv(k, x["v"], x["k_cache"], x["v_cache"], x["slots"], x["k_scale"], x["v_scale"])
        return q

    return {"fused": fused, "rotary+store_kv": unfused}


def same_output(x: dict[str, Any]) -> bool:
    """The fused kernel's q and cache bytes equal the two kernels' (from the same caches)."""
    results = []
    for fn in variants(x).values():
        for name in ("k_cache", "v_cache"):
            x[name].view(torch.uint8).zero_()
        q = fn()
        results.append([q, *(x[n].view(torch.uint8).clone() for n in ("k_cache", "v_cache"))])
    return all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def time_variant(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    """(device us per call from graph replays, wall us per eager call: ``pointwise_ops``'s
    timing); on the CPU both are the interpreter's wall time."""
    if not torch.cuda.is_available():
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        wall = (time.perf_counter() - t0) / reps * 1e6
        return wall, wall
    return time_call(fn, reps)


def parse_batches(text: str) -> list[tuple[str, int, int]]:
    """'decode:256,decode:1000,mixed:8192' -> (kind, tokens, decode rows); a mixed batch has
    256 decode rows (fewer if it is smaller) and prefill chunks for the rest."""
    out = []
    for part in text.split(","):
        kind, _, n = part.strip().partition(":")
        if kind not in ("decode", "mixed") or not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--batches: expected decode:N or mixed:N, got {part!r}")
        tokens = int(n)
        out.append((kind, tokens, tokens if kind == "decode" else min(256, tokens // 2)))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="decode:256,decode:1000,mixed:8192")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--cache-dtypes", default=",".join(CACHE_DTYPES))
    ap.add_argument("--cache-slots", type=int, default=1 << 17, help="KV slots of one layer")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batches = parse_batches(args.batches)
    records = []
    for shape in args.shapes.split(","):
        for dtype_name in args.cache_dtypes.split(","):
            for kind, tokens, decodes in batches:
                x = make_inputs(tokens, decodes, SHAPES[shape], CACHE_DTYPES[dtype_name],
                                args.cache_slots, device)  # fmt: skip
                record: dict[str, Any] = {"shape": shape, "kv_cache": dtype_name, "batch": kind,
                                          "tokens": tokens, "decode_rows": decodes,
                                          "same_output": same_output(x)}  # fmt: skip
                for name, fn in variants(x).items():
                    device_us, eager_us = time_variant(fn, args.reps)
                    record[name] = {"device_us": round(device_us, 2),
                                    "eager_us": round(eager_us, 2)}  # fmt: skip
                record["device_speedup"] = round(
                    record["rotary+store_kv"]["device_us"] / record["fused"]["device_us"], 3
                )
                records.append(record)
                print(f"{shape:16s} {dtype_name:4s} {kind:6s} {tokens:5d}  fused "
                      f"{record['fused']['device_us']:8.2f} us  rotary+store_kv "
                      f"{record['rotary+store_kv']['device_us']:8.2f} us  "
                      f"x{record['device_speedup']}  same={record['same_output']}")  # fmt: skip
    out = {
        "command": "PYTHONPATH=. python bench/rope_store.py " + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (Triton interpreter)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "method": f"graph of {CALLS} calls, median of {args.reps} replays / {CALLS}; eager: "
                  f"wall time of {CALLS} calls launched back to back / {CALLS}",
        "records": records,
    }  # fmt: skip
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
