"""Streaming plumbing: merging several request streams, safe text deltas, SSE framing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

from runtime.outputs import RequestOutput

T = TypeVar("T")

DONE = "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def merge(streams: list[AsyncGenerator[T, None]]) -> AsyncIterator[tuple[int, T]]:
    """Items of every stream as ``(stream index, item)`` in arrival order.

    A stream's next item is pulled only once its last one was taken, so while the consumer lags
    (its client reads slowly) items wait in their streams, not here. The first error is raised
    once the stream that had it is reached; leaving early (the client went away) cancels every
    pump, which closes the streams and so aborts their requests."""
    queue: asyncio.Queue[tuple[int, Any, BaseException | None, bool, asyncio.Event]] = (
        asyncio.Queue()
    )

    async def pump(index: int, stream: AsyncGenerator[T, None]) -> None:
        taken = asyncio.Event()
        try:
            async for item in stream:
                taken.clear()
                queue.put_nowait((index, item, None, False, taken))
                await taken.wait()
        except Exception as exc:
            queue.put_nowait((index, None, exc, True, taken))
            return
        finally:  # cancelled while waiting between items too: the stream's request is aborted
            await stream.aclose()
        queue.put_nowait((index, None, None, True, taken))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item, error, finished, taken = await queue.get()
            taken.set()
            if error is not None:
                raise error
            if finished:
                remaining -= 1
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def unless_disconnected(request: Request, work: Awaitable[T], poll_s: float = 0.1) -> T:
    """``work``'s result; if the client goes away first, ``work`` is cancelled (which aborts
    its engine requests) and the handler ends with ``ClientGone``."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone
    finally:
        task.cancel()


class ClientGone(Exception):
    """The client disconnected before its non-streamed answer was ready."""


async def gather_all(coros: list[Awaitable[T]]) -> list[T]:
    """All results in order; on the first failure the others are cancelled and it is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


class TextDelta:
    """The new text of a growing output, holding back what a stop string could still cut.

    The engine removes a matched stop string from the text, so while a request runs the last
    ``longest stop - 1`` characters may yet disappear; they are sent only once it finishes."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.sent = 0

    def text(self, output: RequestOutput) -> str:
        end = len(output.text) if output.finished else max(len(output.text) - self.hold, 0)
        if end <= self.sent:
            return ""
        delta = output.text[self.sent : end]
        self.sent = end
        return delta
