"""Streaming plumbing: merging several request streams, safe text deltas, SSE framing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

from runtime.outputs import RequestOutput

T = TypeVar("T")

DONE = "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def merge(streams: list[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """Items of every stream as ``(stream index, item)`` in arrival order.

    The first error is raised once the stream that had it is reached; leaving early (the client
    went away) cancels every pump, which closes the streams and so aborts their requests."""
    queue: asyncio.Queue[tuple[int, Any, BaseException | None, bool]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                queue.put_nowait((index, item, None, False))
        except Exception as exc:
            queue.put_nowait((index, None, exc, True))
            return
        queue.put_nowait((index, None, None, True))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item, error, finished = await queue.get()
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
