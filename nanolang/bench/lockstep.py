"""A deterministic way to run the benchmark: the engine steps on the event loop, in lockstep.

The ``LocalBackend`` steps its engine on a thread of its own, so which requests an iteration
sees depends on how fast the event loop submits them: on a loaded machine the iteration counts
(and so the modes' comparison) change from run to run. ``LockstepBackend`` takes the thread
away: a driver task lets every instance run until all of them wait on the engine, then steps
the engine once and hands its outputs back. Every iteration sees every request that a host of
unbounded speed would have submitted by then, so iterations, batch sizes, prefill tokens and
preemptions depend only on the program, its seeds and the scheduler (the measure
``nanolang bench --programs --lockstep`` uses to compare the scheduling of the modes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from nanolang.backends.local import LocalBackend

T = TypeVar("T")


class LockstepBackend(LocalBackend):
    """A ``LocalBackend`` whose engine runs only inside ``run`` (no engine thread)."""

    def _ensure_thread(self) -> None:
        """No thread: ``run``'s driver steps the engine."""

    def end_instance(self, instance: int) -> None:
        self.llm.engine.release_instance(instance)

    def unpin(self, instance: int, nodes: tuple[int, ...]) -> None:
        if nodes:
            self.llm.engine.unpin(instance, nodes)

    def close(self) -> None:
        self._fail_all(RuntimeError("backend closed"))

    def run(self, main: Awaitable[T]) -> T:
        """Run ``main`` to completion on a new event loop, stepping the engine whenever every
        other task waits."""
        return asyncio.run(self._drive(main))

    async def _drive(self, main: Awaitable[T]) -> T:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        while not task.done():
            await _quiesce(loop)
            if task.done():
                break
            self._drain(block=False)
            if not self.llm.has_unfinished_requests():
                if self._inbox.empty() and _idle(loop):
                    await asyncio.sleep(0.001)  # waiting on something outside the loop
                continue
            self._deliver(self.llm.step())
        return task.result()


async def _quiesce(loop: asyncio.AbstractEventLoop) -> None:
    """Yield until no other callback is ready (every task waits on the engine or a timer)."""
    while True:
        await asyncio.sleep(0)
        if _idle(loop):
            return


def _idle(loop: Any) -> bool:
    ready = getattr(loop, "_ready", None)  # CPython's base event loop keeps its ready queue here
    return ready is None or not ready
