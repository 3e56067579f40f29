"""A profiled run, kept apart from the throughput runs: where the device time goes.

The engine runs the workload as usual (CUDA graphs, asynchronous scheduling) while the torch
profiler records a window of iterations; on a GPU the kernel durations come from CUPTI (device
timestamps, kernels inside replayed graphs included), so the breakdown describes the real
schedule, not an eager re-run. Kernels are classed by name into GEMM, attention and other; the
window's wall time minus its kernel time is the time the device sat idle (host on the critical
path, launch gaps). After the window the remaining requests are aborted.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import torch
from torch.autograd import DeviceType

from runtime.bench.workloads import BenchRequest
from runtime.llm import LLM
from runtime.outputs import OutputKind
from runtime.sampling_params import SamplingParams

GEMM_MARKS = ("gemm", "cutlass", "nvjet", "xmma", "cublas", "aten::mm", "aten::addmm", "aten::bmm")
ATTENTION_MARKS = ("decode_kernel", "decode_tma", "extend_kernel", "merge_splits", "flashinfer",
                   "batchdecode", "batchprefill", "attention", "flash")  # fmt: skip


def kernel_kind(name: str) -> str:
    """'gemm', 'attention' or 'other' for a kernel (or, on the CPU, an aten operator) name."""
    low = name.lower()
    if any(m in low for m in ATTENTION_MARKS):
        return "attention"
    if any(m in low for m in GEMM_MARKS):
        return "gemm"
    return "other"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _device_times(prof: Any, cuda: bool) -> dict[str, float]:
    """Self time in seconds per kernel (GPU) or per leaf operator (CPU) name."""
    times: dict[str, float] = defaultdict(float)
    for evt in prof.key_averages():
        if cuda and evt.device_type == DeviceType.CUDA:
            times[evt.key] += evt.self_device_time_total / 1e6
        elif not cuda and evt.device_type == DeviceType.CPU and evt.key.startswith("aten::"):
            times[evt.key] += evt.self_cpu_time_total / 1e6
    return dict(times)


def profile_run(
    llm: LLM, requests: list[BenchRequest], skip: int, window: int, top: int = 12
) -> dict[str, Any]:
    """Run ``skip`` iterations, profile the next ``window``, abort the rest; per-iteration
    milliseconds of device time by kind, idle time, the largest kernels and batch sizes."""
    from torch.profiler import ProfilerActivity, profile

    engine = llm.engine
    ids = [
        engine.add_request(
            r.prompt_token_ids,
            SamplingParams(max_tokens=r.output_len, temperature=0.0, ignore_eos=True),
            output_kind=OutputKind.FINAL_ONLY,  # as the throughput run: no output per step
        )
        for r in requests
    ]
    for _ in range(skip):
        if not engine.has_unfinished_requests():
            break
        engine.step()
    cuda = engine.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    steps, tokens, seqs = 0, 0, 0
    _sync(engine.device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        while steps < window and engine.has_unfinished_requests():
            engine.step()
            steps += 1
            tokens += engine.stats.last_batch_tokens
            seqs += engine.stats.last_batch_seqs
        _sync(engine.device)
        wall = time.perf_counter() - start
    for rid in ids:
        engine.abort_request(rid)
    while engine.has_unfinished_requests():  # drain an iteration still in flight
        engine.step()
    times = _device_times(prof, cuda)
    by_kind: dict[str, float] = defaultdict(float)
    for name, secs in times.items():
        by_kind[kernel_kind(name)] += secs
    busy = sum(by_kind.values())
    n = max(1, steps)

    def ms(x: float) -> float:
        return round(x / n * 1e3, 3)

    return {
        "skip_iterations": skip,
        "iterations": steps,
        "mean_batch_tokens": round(tokens / n, 1),
        "mean_batch_seqs": round(seqs / n, 1),
        "wall_ms_per_iteration": ms(wall),
        "device_ms_per_iteration": {
            k: ms(by_kind.get(k, 0.0)) for k in ("gemm", "attention", "other")
        },
        "device_busy_ms_per_iteration": ms(busy),
        "idle_ms_per_iteration": ms(max(0.0, wall - busy)),
        "top_kernels_ms_per_iteration": {
            name[:80]: ms(secs) for name, secs in sorted(times.items(), key=lambda kv: -kv[1])[:top]
        },
        "source": "torch.profiler kernel times (CUPTI)" if cuda else "torch.profiler CPU ops",
    }
