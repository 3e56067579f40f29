"""A profiled run, kept apart from the throughput runs: where the device time goes.

The engine runs the workload as usual (CUDA graphs, asynchronous scheduling) while the torch
profiler records a window of iterations; on a GPU the kernel durations come from CUPTI (device
timestamps, kernels inside replayed graphs included), so the breakdown describes the real
schedule, not an eager re-run. Kernels are classed by name into GEMM, attention and other; the
window's wall time minus its kernel time is the time the device sat idle (host on the critical
path, launch gaps, and the drained pipeline at the window's start); ``kernel_gaps`` measures the
idle time between the window's first and last kernel from the timeline itself and names the
kernel pairs around the largest gaps. After the window the remaining requests are aborted.
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


def kernel_spans(prof: Any) -> list[tuple[float, float, str]]:
    """(start us, end us, name) of every device kernel and copy the profiler saw, by start."""
    spans = [
        (evt.time_range.start, evt.time_range.end, evt.name)
        for evt in prof.events()
        if evt.device_type == DeviceType.CUDA
    ]
    return sorted(spans)


def timeline_gaps(spans: list[tuple[float, float, str]], top: int = 12) -> dict[str, Any]:
    """Where the device sat idle between kernels: spans are (start, end, name) in microseconds,
    sorted by start. A gap is the time from the latest end so far to the next start (overlapping
    kernels leave none). Totals exclude nothing: divide by the iterations for a per-step figure.
    The largest gaps are summed by the pair (kernel before, kernel after), names cut to 60."""
    total, count = 0.0, 0
    by_pair: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    small = 0  # gaps under 5 us: launch latency between back-to-back kernels
    small_us = 0.0
    last_end, last_name = None, ""
    for start, end, name in spans:
        if last_end is not None and start > last_end:
            gap = start - last_end
            total += gap
            count += 1
            if gap < 5.0:
                small += 1
                small_us += gap
            pair = by_pair[(last_name[:60], name[:60])]
            pair[0] += gap
            pair[1] += 1
        if last_end is None or end >= last_end:
            last_end, last_name = end, name
    pairs = sorted(by_pair.items(), key=lambda kv: -kv[1][0])[:top]
    return {
        "kernels": len(spans),
        "gaps": count,
        "gap_us_total": round(total, 1),
        "gaps_under_5us": small,
        "gap_us_under_5us": round(small_us, 1),
        "largest_by_pair": [
            {"before": b, "after": a, "us_total": round(v[0], 1), "count": int(v[1])}
            for (b, a), v in pairs
        ],
    }


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
    gaps = timeline_gaps(kernel_spans(prof)) if cuda else None
    if gaps is not None:
        gaps["gap_ms_per_iteration"] = round(gaps["gap_us_total"] / 1e3 / max(1, steps), 3)
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
        # between the window's first and last kernel, so the drained pipeline at its start and
        # the sync at its end do not count (they do in idle_ms_per_iteration)
        "kernel_gaps": gaps,
    }
