"""Per-operator device time of each installed backend on Llama-3-8B shapes (norms, RoPE,
SiLU-and-mul, sampling), at the token counts one iteration of the benchmark reaches.

Each call is captured ``CALLS`` times in one CUDA graph and the graph replayed: the median replay
divided by ``CALLS`` is the device time of one call without launch gaps (the engine replays decode
steps from graphs). ``eager_us`` is the wall time of one call launched from Python, synchronised
every ``CALLS`` calls (prefill chunks run eagerly). In-place backends run on the same buffers again
and again, which changes the values, not the work.

    python bench/pointwise_ops.py --out bench/results/pointwise.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER, VOCAB = 4096, 32, 8, 128, 14336, 128256  # Llama-3-8B
CALLS = 20
BACKEND_MODULES = {"triton": "kernels.triton", "sgl_kernel": "kernels.sgl_kernel_backend"}
KERNEL_NAMES = {  # what each backend's operator launches, for the records
    "triton": {op: f"kernels.triton.{op}" for op in
               ("rms_norm", "add_rms_norm", "rotary", "silu_and_mul", "sample")},
    "sgl_kernel": {
        "rms_norm": "torch.ops.sgl_kernel.rmsnorm",
        "add_rms_norm": "torch.ops.sgl_kernel.fused_add_rmsnorm (in place)",
        "rotary": "torch.ops.sgl_kernel.rotary_embedding (in place)",
        "silu_and_mul": "torch.ops.sgl_kernel.silu_and_mul",
        "sample": "torch.ops.sgl_kernel.top_k_renorm_probs + top_p_renorm_probs, min-p and the "
                  "exponential race in torch",
    },
}  # fmt: skip


def time_call(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    """(device us per call from graph replays, wall us per eager call)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(CALLS):
        fn()
    torch.cuda.synchronize()
    eager = (time.perf_counter() - t0) / CALLS * 1e6
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(CALLS):
            fn()
    graph.replay()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / CALLS)
    return statistics.median(times), eager


def make_case(op: str, n: int, mod: ModuleType) -> Callable[[], object]:
    """A closure calling ``mod``'s ``op`` on fresh Llama-3-8B-shaped inputs of n tokens / rows."""
    g = torch.Generator(device="cuda").manual_seed(n)
    bf16: dict[str, Any] = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    fn = getattr(mod, op)
    if op in ("rms_norm", "add_rms_norm"):
        x, r = torch.randn(n, HIDDEN, **bf16), torch.randn(n, HIDDEN, **bf16)
        w = torch.randn(HIDDEN, **bf16)
        return (lambda: fn(x, w, 1e-5)) if op == "rms_norm" else (lambda: fn(x, r, w, 1e-5))
    if op == "rotary":
        qkv = torch.randn(n, (HEADS + 2 * KV_HEADS) * HEAD_DIM, **bf16)
        q = qkv[:, : HEADS * HEAD_DIM].view(n, HEADS, HEAD_DIM)
        k = qkv[:, HEADS * HEAD_DIM : (HEADS + KV_HEADS) * HEAD_DIM].view(n, KV_HEADS, HEAD_DIM)
        pos = torch.randint(0, 4096, (n,), device="cuda", generator=g)
        inv = 1.0 / (500000.0 ** (torch.arange(0, HEAD_DIM, 2, device="cuda").float() / HEAD_DIM))
        ang = torch.arange(8192, device="cuda").float()[:, None] * inv[None, :]
        cos_sin = torch.cat([ang.cos(), ang.sin()], dim=-1)
        return lambda: fn(q, k, pos, cos_sin)
    if op == "silu_and_mul":
        x = torch.randn(n, 2 * INTER, **bf16)
        return lambda: fn(x)
    assert op == "sample"
    f32: dict[str, Any] = {"device": "cuda", "generator": g}
    logits = torch.randn(n, VOCAB, **f32) * 4
    noise = torch.empty(n, VOCAB, device="cuda").exponential_(generator=g)
    rows = torch.arange(n, device="cuda")
    temperature = 0.6 + 0.1 * (rows % 5).float()
    top_p = torch.where(rows % 2 == 0, 0.9, 1.0)
    top_k = torch.where(rows % 3 == 0, 50, -1)
    min_p = torch.where(rows % 4 == 0, 0.05, 0.0)
    return lambda: fn(logits, temperature, top_p, top_k, min_p, noise)


def gemm_then_norm(n: int, mod: ModuleType) -> Callable[[], object]:
    """o_proj (cuBLAS) then add_rms_norm, as in a decoder layer: shows launch effects (PDL)."""
    g = torch.Generator(device="cuda").manual_seed(n)
    bf16: dict[str, Any] = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    a, w_o = torch.randn(n, HIDDEN, **bf16), torch.randn(HIDDEN, HIDDEN, **bf16) * 0.02
    r, w = torch.randn(n, HIDDEN, **bf16), torch.randn(HIDDEN, **bf16)
    return lambda: mod.add_rms_norm(torch.nn.functional.linear(a, w_o), r, w, 1e-5)


def pdl_records(ns: list[int], reps: int) -> list[dict[str, Any]]:
    """GEMM + add_rms_norm pairs with Triton, and with sgl-kernel with and without PDL."""
    sgl = importlib.import_module("kernels.sgl_kernel_backend")
    variants = [("triton", importlib.import_module("kernels.triton"), None),
                ("sgl_kernel", sgl, False), ("sgl_kernel", sgl, True)]  # fmt: skip
    records = []
    for n in ns:
        for name, mod, pdl in variants:
            if pdl is not None:
                sgl.ENABLE_PDL = pdl
            device_us, _ = time_call(gemm_then_norm(n, mod), reps)
            records.append({"case": "o_proj GEMM + add_rms_norm", "backend": name, "pdl": pdl,
                            "tokens": n, "device_us": round(device_us, 2)})  # fmt: skip
            print(f"gemm+norm {n:5d} {name:10s} pdl={pdl} {device_us:9.2f} us")
    sgl.ENABLE_PDL = False
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", default="1,16,64,256,1024,2048")
    ap.add_argument("--sample-rows", default="1,16,64,256")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--pdl-check", action="store_true", help="also GEMM + norm, PDL on / off")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    backends = {}
    for name, module in BACKEND_MODULES.items():
        try:
            backends[name] = importlib.import_module(module)
        except ImportError as exc:
            print(f"{name}: absent ({exc})", file=sys.stderr)
    sizes = {op: [int(t) for t in args.tokens.split(",")] for op in
             ("rms_norm", "add_rms_norm", "rotary", "silu_and_mul")}  # fmt: skip
    sizes["sample"] = [int(t) for t in args.sample_rows.split(",")]
    records = []
    for op, ns in sizes.items():
        for n in ns:
            for name, mod in backends.items():
                device_us, eager_us = time_call(make_case(op, n, mod), args.reps)
                records.append({
                    "op": op, "backend": name, "kernel": KERNEL_NAMES[name][op], "tokens": n,
                    "device_us": round(device_us, 2), "eager_us": round(eager_us, 2),
                })  # fmt: skip
                print(f"{op:13s} {n:5d} {name:10s} {device_us:9.2f} us  eager {eager_us:8.2f} us")
    winners = {}
    for op in sizes:
        total = {b: sum(r["device_us"] for r in records if r["op"] == op and r["backend"] == b)
                 for b in backends}  # fmt: skip
        winners[op] = min(total, key=total.__getitem__)
    out = {
        "command": "python bench/pointwise_ops.py " + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name(),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "model_shapes": "llama-3-8b bf16 (hidden 4096, 32/8 heads of 128, intermediate 14336, "
                        "vocab 128256); sample: float32 logits",
        "method": f"graph of {CALLS} calls, median of {args.reps} replays / {CALLS}",
        "winner_by_summed_device_time": winners,
        "records": records,
    }  # fmt: skip
    if "sgl_kernel" in backends:
        out["sgl_kernel"] = importlib.import_module("sgl_kernel").__version__
        if args.pdl_check:
            out["gemm_then_norm"] = pdl_records(sizes["add_rms_norm"], args.reps)
    text = json.dumps(out, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps(winners))


if __name__ == "__main__":
    main()
