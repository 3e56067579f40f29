"""Per-operation-kind device time of one iteration, from CUDA events (or wall time on the CPU)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import torch

from runtime.model.llama import Operation


class OpTimer:
    """A ``ForwardContext.op_hook`` that times every operation and sums by kind."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, str, object, object]] = []

    def __call__(self, op: Operation, run: Callable[[], None]) -> None:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            self.marks.append((op.name, op.kind.value, start, end))
        else:
            t0 = time.perf_counter()
            run()
            self.marks.append((op.name, op.kind.value, t0, time.perf_counter()))

    def seconds(self) -> tuple[dict[str, float], dict[str, float]]:
        """(seconds by operation kind, seconds by operation name), summed over all layers."""
        if self.cuda:
            torch.cuda.synchronize()
        by_kind: dict[str, float] = defaultdict(float)
        by_name: dict[str, float] = defaultdict(float)
        for name, kind, start, end in self.marks:
            secs = (
                start.elapsed_time(end) / 1e3  # type: ignore[attr-defined]
                if self.cuda
                else end - start  # type: ignore[operator]
            )
            by_kind[kind] += secs
            by_name[name] += secs
        return dict(by_kind), dict(by_name)
