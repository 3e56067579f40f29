"""Tokens per second over a sliding window, sampled from the engine's token counter."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class Throughput:
    """Samples ``read()`` (a monotonically growing token count) every ``interval_s`` seconds
    and reports the rate over the last ``window_s`` seconds."""

    def __init__(
        self, read: Callable[[], float], window_s: float = 10.0, interval_s: float = 0.5
    ) -> None:
        self.read = read
        self.window_s = window_s
        self.interval_s = interval_s
        self._samples: deque[tuple[float, float]] = deque()

    def sample(self) -> None:
        now = time.monotonic()
        self._samples.append((now, float(self.read())))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()

    def rate(self) -> float:
        """Tokens per second over the window (0 until two samples exist)."""
        self.sample()
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    async def run(self) -> None:
        """Sample forever (cancel to stop)."""
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)
