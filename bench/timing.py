"""The benchmarks' eager timer: the median of calls each bracketed by CUDA events (wall time on
the CPU), after warm-up calls."""

from __future__ import annotations

import datetime
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def median_ms(
    fn: Callable[[], object],
    reps: int = 20,
    warmup: int = 3,
    stream: torch.cuda.Stream | None = None,
    sync_each: bool = False,
) -> float:
    """Median milliseconds of one call of ``fn`` over ``reps`` calls, after ``warmup`` calls, all
    on ``stream`` (the current stream when None). ``sync_each``: wait for each call before
    launching the next, so every call starts on an idle device and its launch gaps count (else the
    calls queue back to back and the events see device time). On the CPU: wall time per call."""
    if not torch.cuda.is_available():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    stream = stream or torch.cuda.current_stream()
    pairs = []
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            fn()
            end.record(stream)
            pairs.append((start, end))
            if sync_each:
                end.synchronize()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in pairs)


def run_header(pythonpath: str = ".:bench") -> dict[str, Any]:
    """What every GPU benchmark record starts with: the device, its SM count, the date (UTC),
    the command line as run from the repository root, and torch's version."""
    return {
        "device": torch.cuda.get_device_name(0),
        "device_sms": torch.cuda.get_device_properties(0).multi_processor_count,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": f"PYTHONPATH={pythonpath} python " + " ".join(sys.argv),
        "torch": torch.__version__,
    }
