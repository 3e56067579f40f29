"""Synthetic profiles for the search's tests: roofline-shaped timings of a Llama layer (no
measurement), with knobs that decide whether overlap can pay."""

from __future__ import annotations

from runtime.pipeline.plans import LLAMA_OPS
from runtime.tune.profiles import Interference, ModelShape, OpTiming, Profile

KINDS = {"qkv_proj": "gemm", "o_proj": "gemm", "gate_up_proj": "gemm", "down_proj": "gemm",
         "attention": "attention"}  # fmt: skip
LLAMA_8B = ModelShape(4096, 4096, 1024, 14336, 32, 128, 2)
TOKENS = (16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 4096)
CONTEXTS = (512, 1024, 2048, 4096)


def synthetic_profile(
    *,
    device_sms: int = 32,
    sm_step: int = 8,
    tflops: float = 780.0,
    hbm_gb_s: float = 4300.0,
    per_sm_gb_s: float = 90.0,
    launch_us: float = 2.0,
    slowdown: float = 1.0,
    concurrent: bool = True,
    shape: ModelShape = LLAMA_8B,
    tokens: tuple[int, ...] = TOKENS,
    contexts: tuple[int, ...] = CONTEXTS,
    grid: bool = False,
    carve: bool = False,
) -> Profile:
    """Each op at max(compute time, memory time) on its share of the SMs, plus a launch cost;
    every pair of ops slows each other down by ``slowdown`` when both run. ``carve``: the other
    operations also on ``carve:<device_sms - n>`` (beside attention on ``grid:n``)."""
    placements = ["whole"]
    if concurrent:
        for n in range(sm_step, device_sms, sm_step):
            placements += [f"green:{n}"] + ([f"grid:{n}"] if grid else [])
            placements += [f"carve:{device_sms - n}"] if carve else []
    timings: list[OpTiming] = []
    for pl in placements:
        sms = device_sms if pl == "whole" else int(pl.split(":")[1])
        frac = sms / device_sms
        bw = min(hbm_gb_s, per_sm_gb_s * sms) * 1e3  # bytes per µs
        flops = tflops * 1e6 * frac  # flop per µs
        for op in LLAMA_OPS:
            if pl.startswith("grid:") and op != "attention":
                continue  # placements of attention only
            if pl.startswith("carve:") and op == "attention":
                continue  # the other operations' placement beside a capped attention
            if op == "attention":
                kv_token = 2 * shape.kv_size * shape.dtype_bytes
                for c in contexts:
                    for t in tokens:
                        dec = t * c * kv_token / bw + launch_us
                        pre = max(4 * t * c * shape.q_size / flops, c * kv_token / bw) + launch_us
                        timings.append(OpTiming(op, pl, t, dec / 1e3, "decode", c))
                        timings.append(OpTiming(op, pl, t, pre / 1e3, "prefill", c))
                continue
            w = shape.weight_bytes(op)
            for t in tokens:
                act = 2 * t * shape.hidden_size * shape.dtype_bytes
                us = max(2 * t * w / shape.dtype_bytes / flops, (w + act) / bw) + launch_us
                timings.append(OpTiming(op, pl, t, us / 1e3))
    interference = []
    if concurrent and slowdown != 1.0:
        for pl in placements:
            for op in LLAMA_OPS:
                gemms = [o for o in LLAMA_OPS if KINDS.get(o) == "gemm"]
                for other in gemms if op == "attention" else ["attention"]:
                    interference.append(Interference(op, other, pl, 256, slowdown))
    ops = tuple((o, KINDS.get(o, "other")) for o in LLAMA_OPS)
    return Profile("synthetic", "synthetic", device_sms, concurrent, hbm_gb_s, shape, ops,
                   tuple(timings), tuple(interference))  # fmt: skip


def linear_profile(att_us_per_row: float, rest_us_per_row: float, device_sms: int = 32) -> Profile:
    """Every operation's time proportional to its rows (no fixed cost), no interference, no
    bandwidth limit: attention costs ``att_us_per_row``, the other nine share
    ``rest_us_per_row``; both on the whole device and on two plain streams."""
    timings: list[OpTiming] = []
    others = [o for o in LLAMA_OPS if o != "attention"]
    for t in (1, 4096):
        for c in (1024,):
            for phase in ("decode", "prefill"):
                ms = att_us_per_row * t / 1e3
                timings.append(OpTiming("attention", "whole", t, ms, phase, c))
        for op in others:
            timings.append(OpTiming(op, "whole", t, rest_us_per_row * t / len(others) / 1e3))
    ops = tuple((o, KINDS.get(o, "other")) for o in LLAMA_OPS)
    return Profile("linear", "synthetic", device_sms, True, 1e12, LLAMA_8B, ops, tuple(timings))
