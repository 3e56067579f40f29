"""Kernel times from a torch profiler session: by name, by kind, and the gaps between kernels.

Shared by the profiled benchmark run in one process (``runtime.bench.profile_run``) and by a
tensor-parallel worker that profiles its own rank when the driver asks (``runtime.distributed``):
on a GPU the durations come from CUPTI (device timestamps, kernels inside replayed CUDA graphs
included); on the CPU the leaf ``aten::`` operators' self times stand in for kernels.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch.autograd import DeviceType

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


def device_times(prof: Any, cuda: bool) -> dict[str, float]:
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


class KernelProfile:
    """A torch profiler session on this process's device (kernels and copies on a GPU, aten
    operators on the CPU), summarised by ``stop``."""

    def __init__(self, device: torch.device) -> None:
        from torch.profiler import ProfilerActivity, profile

        self.cuda = device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self._prof = profile(activities=activities)
        self._prof.__enter__()

    def stop(self) -> dict[str, Any]:
        """End the session: {"times": seconds per kernel name, "gaps": timeline_gaps or None}."""
        if self.cuda:
            torch.cuda.synchronize()
        self._prof.__exit__(None, None, None)
        times = device_times(self._prof, self.cuda)
        gaps = timeline_gaps(kernel_spans(self._prof)) if self.cuda else None
        return {"times": times, "gaps": gaps}
