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

from runtime.bench.workloads import BenchRequest
from runtime.kernel_profile import kernel_kind, kernel_spans, timeline_gaps
from runtime.llm import LLM
from runtime.outputs import OutputKind
from runtime.sampling_params import SamplingParams

__all__ = ["kernel_spans", "profile_run", "timeline_gaps"]  # the helpers' old home



def profile_run(
    llm: LLM, requests: list[BenchRequest], skip: int, window: int, top: int = 12
) -> dict[str, Any]:
    """Run ``skip`` iterations, profile the next ``window``, abort the rest; per-iteration
    milliseconds of device time by kind, idle time, the largest kernels and batch sizes. Under
    tensor parallelism rank 0 profiles its own device (every rank runs the same kernels)."""
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
    steps, tokens, seqs = 0, 0, 0
    engine.runner.synchronize()
    session = engine.runner.profile()
    start = time.perf_counter()
    while steps < window and engine.has_unfinished_requests():
        engine.step()
        steps += 1
        tokens += engine.stats.last_batch_tokens
        seqs += engine.stats.last_batch_seqs
    summary = session.stop()  # after the device has run every iteration queued
    wall = time.perf_counter() - start
    for rid in ids:
        engine.abort_request(rid)
    while engine.has_unfinished_requests():  # drain an iteration still in flight
        engine.step()
    times, gaps = summary["times"], summary["gaps"]
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
        "profiled_rank": 0,
        # between the window's first and last kernel, so the drained pipeline at its start and
        # the sync at its end do not count (they do in idle_ms_per_iteration)
        "kernel_gaps": gaps,
    }
