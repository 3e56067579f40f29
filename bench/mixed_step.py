"""Where a prefill-heavy (mixed) iteration's device time goes, on Llama-3-8B with random weights.

Views (``--views``, comma list) over one engine in one process (the benchmark's defaults: 8,192
tokens per iteration, CUDA graphs for decode-only iterations, asynchronous scheduling):

- ``engine``: the first iterations of 1024/512 x N through the real engine under the torch
  profiler (``runtime.bench.profile_run``): wall ms per iteration, kernel ms by kind, idle;
  ``--decode-skip K`` adds the same from iteration K on (decode-only steps, CUDA graphs).
- ``forward``: synthetic batches (``runtime.tune.inputs.make_batch``; ``--cases``) run eagerly,
  as the engine runs mixed iterations: forward, and forward + LM head + greedy pick (CUDA
  events, median), and the device ms of every operation summed over the layers (``OpTimer``).
- ``gemm``: each linear of a layer (and the LM head) alone at ``--gemm-rows`` rows, cuBLAS
  against cuBLASLt, median of CUDA-graph replays, TFLOP/s.
- ``sustain``: gate_up at 8,192 rows right after 2 s idle, then replayed for about 0.25 s (as
  one call, as 8 chunks of 1,024 rows, and 1,024 rows alone), with the SM clock after each.
- ``data``: the same sustained GEMM on this engine's dummy weights and on the peers' (uniform
  +-1e-3), alternated.
- ``sdpa``: causal attention over fresh prompts (``--sdpa-shapes`` NxL), the Triton extend
  kernel over the paged cache against torch's SDPA (cuDNN, FA2) over contiguous rows: ms,
  TFLOP/s, first-call wall time, largest difference.
- ``--throughput normal,uniform,...``: 1024/512 x N end to end once per dummy-weight kind.

    PYTHONPATH=. python bench/mixed_step.py --out FILE.json [--views engine,forward,gemm]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from host_schedule import commit  # bench/ is the script's directory
from timing import median_ms

from runtime import LLM
from runtime.bench.op_timer import OpTimer
from runtime.bench.profile_run import profile_run
from runtime.bench.throughput import run_throughput
from runtime.bench.workloads import WORKLOADS, make_requests, workload_seed
from runtime.model.llama import ForwardContext
from runtime.model.loader import init_dummy
from runtime.tune.inputs import make_batch


def parse_case(text: str) -> tuple[int, list[int]]:
    """'DxTxC': D decodes, then T prefill tokens in chunks of at most C (C default 1024)."""
    parts = [int(p) for p in text.split("x")]
    decodes, tokens = parts[0], parts[1]
    size = parts[2] if len(parts) > 2 else 1024
    chunks = [size] * (tokens // size) + ([tokens % size] if tokens % size else [])
    return decodes, chunks


def events_ms(fn: Callable[[], object], reps: int) -> float:
    """Median ms of ``reps`` eager calls, each bracketed by CUDA events (CPU: wall time)."""
    return median_ms(fn, reps, warmup=0, sync_each=True)


def graph_ms(fn: Callable[[], object], reps: int = 20, calls: int = 5) -> float:
    """Median ms of one call, ``calls`` calls captured in one CUDA graph (no launch gaps)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    return events_ms(graph.replay, reps) / calls


def forward_view(engine: Any, decodes: int, chunks: list[int], context: int, reps: int) -> dict:
    """Eager forward + head + argmax of one synthetic batch, and its per-operation device ms."""
    model, kv = engine.model, engine.runner.kv_caches
    ids, ctx = make_batch(engine, kv, decodes, context, chunks, seed=decodes + len(chunks))
    cu = ctx.attn.cu_seqlens_q_host
    rows = torch.tensor([c - 1 for c in cu[1:]], device=ids.device)

    @torch.inference_mode()
    def step(c: ForwardContext = ctx) -> torch.Tensor:
        hidden = model(ids, c)
        return model.compute_logits(hidden.index_select(0, rows), engine.ops).argmax(-1)

    @torch.inference_mode()
    def forward_only() -> torch.Tensor:
        return model(ids, ctx)

    step()
    step_ms = events_ms(step, reps)
    fwd_ms = events_ms(forward_only, reps)
    timer = OpTimer(ids.device)
    timed = ForwardContext(ctx.positions, ctx.attn, kv, engine.ops, timer)
    step(timed)
    by_kind, by_name = timer.seconds()
    return {
        "decodes": decodes,
        "context": context,
        "chunks": chunks,
        "tokens": int(ids.shape[0]),
        "step_ms": round(step_ms, 3),
        "forward_ms": round(fwd_ms, 3),
        "ops_ms": {k: round(v * 1e3, 3) for k, v in sorted(by_name.items(), key=lambda x: -x[1])},
        "kinds_ms": {k: round(v * 1e3, 3) for k, v in by_kind.items()},
        "ops_sum_ms": round(sum(by_name.values()) * 1e3, 3),
    }


def gemm_view(model: Any, rows: list[int], head_rows: int) -> list[dict]:
    """Each linear alone: cuBLAS against cuBLASLt, ms and TFLOP/s."""
    layer = model.layers[0]
    shapes = [("qkv_proj", layer.qkv_proj), ("o_proj", layer.o_proj),
              ("gate_up_proj", layer.gate_up_proj), ("down_proj", layer.down_proj)]  # fmt: skip
    head = model.embed_tokens if model.lm_head is None else model.lm_head
    cases = [(name, w, m) for m in rows for name, w in shapes] + [("lm_head", head, head_rows)]
    out = []
    for name, w, m in cases:
        x = torch.randn(m, w.shape[1], dtype=w.dtype, device=w.device)
        rec: dict[str, Any] = {"op": name, "m": m, "n": w.shape[0], "k": w.shape[1]}
        flops = 2 * m * w.shape[0] * w.shape[1]
        for lib in ("cublas", "cublaslt"):
            torch.backends.cuda.preferred_blas_library(lib)
            ms = graph_ms(functools.partial(F.linear, x, w))
            rec[lib] = {"ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1)}
        torch.backends.cuda.preferred_blas_library("cublas")
        out.append(rec)
        print(f"[gemm] {rec}", flush=True)
    return out


def gemm_sustained(model: Any) -> dict:
    """gate_up at 8,192 rows: in one call, as 8 calls of 1,024 rows into one output, and 1,024
    rows alone, each replayed long enough (about 0.25 s) to reach the clocks of a long prefill
    iteration; the SM clock (NVML, where readable) after each."""
    w = model.layers[0].gate_up_proj.detach()
    x = torch.randn(8192, w.shape[1], dtype=w.dtype, device=w.device)
    out = torch.empty(8192, w.shape[0], dtype=w.dtype, device=w.device)
    flops = 2 * 8192 * w.shape[0] * w.shape[1]

    def chunked() -> None:
        for i in range(0, 8192, 1024):
            torch.mm(x[i : i + 1024], w.t(), out=out[i : i + 1024])

    def clock() -> int | None:
        try:
            return int(torch.cuda.clock_rate())
        except Exception:  # NVML absent
            return None

    res: dict[str, Any] = {}
    time.sleep(2.0)
    res["whole_cool_first"] = round(graph_ms(lambda: F.linear(x, w), reps=3, calls=1), 4)
    for name, fn, calls in (("whole", lambda: F.linear(x, w), 5), ("chunked_8x1024", chunked, 5),
                            ("rows_1024_x8", lambda: F.linear(x[:1024], w), 40)):  # fmt: skip
        ms = graph_ms(fn, reps=20, calls=calls) * (8 if name == "rows_1024_x8" else 1)
        res[name] = {"ms_per_8192_rows": round(ms, 4), "tflops": round(flops / ms / 1e9, 1),
                     "sm_clock_mhz_after": clock()}  # fmt: skip
    print(f"[sustain] {res}", flush=True)
    return res


def gemm_data(model: Any, rounds: int = 2) -> dict:
    """Sustained gate_up at 8,192 rows on two kinds of random data, alternated so that both see
    the same clocks: this engine's dummy weights (normal, std 1/sqrt(K)) with unit-scale
    activations (an RMS-normed input, norm weights 1), and the peers' dummy weights (every
    parameter uniform in +-1e-3, norm weights included, so the normed input is ~1e-3 too)."""
    w0 = model.layers[0].gate_up_proj.detach()
    g = torch.Generator(device=w0.device).manual_seed(1)
    k = w0.shape[1]
    normal_w = torch.randn(w0.shape, generator=g, device=w0.device).mul_(k**-0.5).to(w0.dtype)
    normal_x = torch.randn(8192, k, generator=g, device=w0.device).to(w0.dtype)
    peer_w = torch.empty_like(w0).uniform_(-1e-3, 1e-3, generator=g)
    norm_w = torch.empty(k, device=w0.device, dtype=w0.dtype).uniform_(-1e-3, 1e-3, generator=g)
    peer_x = normal_x * norm_w
    flops = 2 * 8192 * w0.shape[0] * k
    res: dict[str, list[float]] = {"normal_weights": [], "uniform_1e-3_weights": []}
    for _ in range(rounds):
        for name, x, w in (("normal_weights", normal_x, normal_w),
                           ("uniform_1e-3_weights", peer_x, peer_w)):  # fmt: skip
            ms = graph_ms(functools.partial(F.linear, x, w), reps=20, calls=5)
            res[name].append(round(flops / ms / 1e9, 1))
    print(f"[gemm_data] TFLOP/s {res}", flush=True)
    return res


def sdpa_case(engine: Any, n: int, length: int) -> dict:
    """Causal attention of n fresh prompts of ``length`` tokens (one layer): the Triton extend
    kernel over the paged cache against torch's SDPA over the contiguous rows (cuDNN with GQA,
    and FA2); the first call's wall time (cuDNN builds a graph per shape) and the largest
    difference from the Triton output."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cfg, model = engine.model_config, engine.model
    dev, dt = model.embed_tokens.device, model.embed_tokens.dtype
    kv = engine.runner.kv_caches[:1]
    _, ctx = make_batch(engine, kv, 0, length, [length] * n, seed=n + length)
    t = n * length
    q = torch.randn(t, cfg.num_heads, cfg.head_dim, device=dev, dtype=dt)
    k = torch.randn(t, cfg.num_kv_heads, cfg.head_dim, device=dev, dtype=dt)
    v = torch.randn_like(k)
    engine.ops.store_kv(k, v, kv[0][0], kv[0][1], ctx.attn.slot_mapping)
    att, scale = engine.ops.paged_attention, cfg.head_dim**-0.5

    def triton() -> torch.Tensor:
        return att.forward(q, kv[0][0], kv[0][1], ctx.attn, scale)

    ref = triton()
    flops = 4 * n * cfg.num_heads * length * (length + 1) / 2 * cfg.head_dim
    ms = graph_ms(triton)
    rec: dict[str, Any] = {"seqs": n, "length": length}
    rec["triton_extend"] = {"ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1)}
    qb = q.view(n, length, cfg.num_heads, -1).transpose(1, 2)
    kb = k.view(n, length, cfg.num_kv_heads, -1).transpose(1, 2)
    vb = v.view(n, length, cfg.num_kv_heads, -1).transpose(1, 2)

    def sdpa() -> torch.Tensor:
        return F.scaled_dot_product_attention(
            qb, kb, vb, is_causal=True, scale=scale, enable_gqa=True
        )

    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("flash", SDPBackend.FLASH_ATTENTION)):  # fmt: skip
        try:
            with sdpa_kernel([backend]):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                got = sdpa()
                torch.cuda.synchronize()
                first = (time.perf_counter() - t0) * 1e3
                ms = graph_ms(sdpa)
            diff = (got.transpose(1, 2).reshape(t, cfg.num_heads, -1) - ref).abs().max()
            rec[name] = {"ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1),
                         "first_call_ms": round(first, 1), "max_abs_diff": float(diff)}  # fmt: skip
        except Exception as exc:  # not supported for these shapes or in this build
            rec[name] = {"error": repr(exc)[:300]}
    print(f"[sdpa] {rec}", flush=True)
    return rec


@torch.no_grad()
def reinit(model: Any, kind: str) -> None:
    """Dummy weights of ``kind``: 'normal' (this engine's ``init_dummy``) or 'uniform' (every
    parameter uniform in +-1e-3, as vLLM's and SGLang's dummy loaders fill them)."""
    if kind == "normal":
        init_dummy(model)
        return
    for p in model.parameters():
        p.uniform_(-1e-3, 1e-3)


def throughput_view(llm: LLM, num_requests: int, inits: list[str], scale: float) -> list[dict]:
    """1024/512 x N end to end on this engine, once per dummy-weight kind, in this order."""
    name = "1024/512"
    engine = llm.engine
    reqs = make_requests(
        WORKLOADS[name], num_requests, engine.model_config.vocab_size, workload_seed(name), scale
    )
    out = []
    for kind in inits:
        reinit(engine.model, kind)
        if engine.blocks.cache is not None:
            engine.blocks.cache.reset()
        res = run_throughput(llm, reqs)
        mixed = [r.seconds for r in res.records if r.num_tokens > r.num_seqs]
        decode = [r.seconds for r in res.records if r.num_tokens == r.num_seqs]
        rec = {
            "workload": name,
            "num_requests": num_requests,
            "dummy_weights": kind,
            "seconds": round(res.seconds, 3),
            "total_tokens_per_s": round(res.total_tokens_per_s, 1),
            "mixed_iterations": len(mixed),
            "mixed_ms": round(1e3 * sum(mixed) / max(1, len(mixed)), 3),
            "decode_ms": round(1e3 * sum(decode) / max(1, len(decode)), 3),
        }
        print(f"[throughput] {rec}", flush=True)
        out.append(rec)
    reinit(engine.model, "normal")
    return out


def engine_view(llm: LLM, num_requests: int, skip: int, window: int, scale: float) -> dict:
    name = "1024/512"
    cfg = llm.engine.model_config
    reqs = make_requests(WORKLOADS[name], num_requests, cfg.vocab_size, workload_seed(name), scale)
    return profile_run(llm, reqs, skip, window, top=25)


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(cells: list[str]) -> list[str]:
    return [_row(cells), _row(["---"] * len(cells))]


def _ms_tf(rec: dict | None) -> str:
    if not rec or "ms" not in rec:
        return "-"
    return f"{rec['ms']:.3f} ms, {rec['tflops']:.0f}"


def tables(record: dict[str, Any]) -> list[str]:
    """Markdown tables of one record (what docs/performance.md shows)."""
    out: list[str] = []
    for key in ("engine", "engine_decode"):
        if e := record.get(key):
            dev = e["device_ms_per_iteration"]
            out += _head(["view", "iterations", "tokens / iteration", "GEMM ms", "attention ms",
                          "other ms", "busy ms", "top kernels (ms / iteration)"])  # fmt: skip
            top = "; ".join(
                f"{k[:40]} {v}" for k, v in list(e["top_kernels_ms_per_iteration"].items())[:6]
            )
            out += [_row([key, e["iterations"], e["mean_batch_tokens"], dev["gemm"],
                          dev["attention"], dev["other"], e["device_busy_ms_per_iteration"],
                          top]), ""]  # fmt: skip
    if fw := record.get("forward"):
        names = list(fw[0]["ops_ms"])
        out += _head(["batch", "tokens", "forward ms", "+ head ms", *names, "sum of ops"])
        for f in fw:
            batch = f"{f['decodes']} decodes + {len(f['chunks'])} chunks"
            ops = [f["ops_ms"].get(n, "-") for n in names]
            out.append(_row([batch, f["tokens"], f["forward_ms"], f["step_ms"], *ops,
                             f["ops_sum_ms"]]))  # fmt: skip
        out.append("")
    if g := record.get("gemm"):
        out += _head(["linear", "rows", "N x K", "cuBLAS (TFLOP/s)", "cuBLASLt (TFLOP/s)"])
        out += [_row([r["op"], r["m"], f"{r['n']} x {r['k']}", _ms_tf(r["cublas"]),
                      _ms_tf(r["cublaslt"])]) for r in g]  # fmt: skip
        out.append("")
    if su := record.get("gemm_sustained"):
        out += _head(["gate_up, 8,192 rows", "ms", "TFLOP/s", "SM clock after (MHz)"])
        w = su["whole"]  # the same GEMM: its FLOPs are TFLOP/s x ms
        cool = su["whole_cool_first"]
        out.append(_row(["one call after 2 s idle", cool,
                         round(w["tflops"] * w["ms_per_8192_rows"] / cool, 1), "-"]))  # fmt: skip
        for k in ("whole", "chunked_8x1024", "rows_1024_x8"):
            v = su[k]
            out.append(_row([k, v["ms_per_8192_rows"], v["tflops"], v["sm_clock_mhz_after"]]))
        out.append("")
    if (sd := record.get("sdpa")) and isinstance(sd, list):
        out += _head(["fresh prompts", "Triton extend", "cuDNN SDPA", "cuDNN first call",
                      "FA2 SDPA", "largest difference"])  # fmt: skip
        for r in sd:
            cu = r.get("cudnn", {})
            out.append(_row([f"{r['seqs']} x {r['length']}", _ms_tf(r["triton_extend"]),
                             _ms_tf(cu), f"{cu.get('first_call_ms', '-')} ms",
                             _ms_tf(r.get("flash")), cu.get("max_abs_diff", "-")]))  # fmt: skip
        out.append("")
    if d := record.get("gemm_data"):
        out += _head(["dummy weights", "gate_up 8,192 rows, TFLOP/s (alternating rounds)"])
        out += [_row([k, ", ".join(str(x) for x in v)]) for k, v in d.items()] + [""]
    if tp := record.get("throughput"):
        out += _head(["dummy weights (in run order)", "total tok/s", "seconds",
                      "mixed iterations", "mixed ms", "decode ms"])  # fmt: skip
        for t in tp:
            out.append(_row([t["dummy_weights"], f"{t['total_tokens_per_s']:,.0f}", t["seconds"],
                             t["mixed_iterations"], t["mixed_ms"], t["decode_ms"]]))  # fmt: skip
        out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--cases", default="0x8192,128x8064,256x0")
    ap.add_argument("--context", type=int, default=1280, help="decodes' context length")
    ap.add_argument("--gemm-rows", default="8192,256")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--engine-requests", type=int, default=256)
    ap.add_argument("--engine-skip", type=int, default=1)
    ap.add_argument("--engine-window", type=int, default=8)
    ap.add_argument("--throughput", default="", help="e.g. normal,uniform: 1024/512 end to end")
    ap.add_argument("--decode-skip", type=int, default=0, help="also profile from here")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the engine view's lengths")
    ap.add_argument("--views", default="engine,forward,gemm,sustain,sdpa")
    ap.add_argument("--sdpa-shapes", default="8x1024,1x1000,2x2048,1x333,4x512")
    ap.add_argument("--code", default=None, help="what code ran (default: its git commit)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--table", nargs="+", default=None, help="print markdown tables of records")
    args = ap.parse_args(argv)
    if args.table:
        for path in args.table:
            print(f"<!-- {path} -->")
            print("\n".join(tables(json.loads(Path(path).read_text()))))
        return 0
    views = set(args.views.split(","))
    llm = LLM(args.model, load_format="dummy", max_num_batched_tokens=8192)
    engine = llm.engine
    record: dict[str, Any] = {
        "code": args.code or commit(),
        "command": "python bench/mixed_step.py " + " ".join(argv or sys.argv[1:]),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "date": datetime.date.today().isoformat(),
        "model": args.model,
        "kernels": engine.ops.backends,
    }
    if "engine" in views:
        record["engine"] = engine_view(llm, args.engine_requests, args.engine_skip,
                                       args.engine_window, args.scale)  # fmt: skip
        print(f"[engine] {record['engine']}", flush=True)
    if "forward" in views:
        record["forward"] = []
        for case in args.cases.split(","):
            decodes, chunks = parse_case(case)
            rec = forward_view(engine, decodes, chunks, args.context, args.reps)
            record["forward"].append(rec)
            print(f"[forward] {rec}", flush=True)
    if torch.cuda.is_available() and "gemm" in views:
        rows = [int(r) for r in args.gemm_rows.split(",")]
        record["gemm"] = gemm_view(engine.model, rows, 264)
    if args.decode_skip:
        record["engine_decode"] = engine_view(
            llm, args.engine_requests, args.decode_skip, args.engine_window, args.scale
        )
        print(f"[engine_decode] {record['engine_decode']}", flush=True)
    if torch.cuda.is_available() and "data" in views:
        record["gemm_data"] = gemm_data(engine.model)
    if args.throughput:
        inits = args.throughput.split(",")
        record["throughput"] = throughput_view(llm, args.engine_requests, inits, args.scale)
    if torch.cuda.is_available() and "sustain" in views:
        record["gemm_sustained"] = gemm_sustained(engine.model)
    if torch.cuda.is_available() and "sdpa" in views:
        shapes = [[int(x) for x in c.split("x")] for c in args.sdpa_shapes.split(",")]
        record["sdpa"] = [sdpa_case(engine, n, length) for n, length in shapes]
    if args.out is None:
        ap.error("--out is required unless --table")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    llm.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
