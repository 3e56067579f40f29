"""One async client per event loop: an async HTTP client belongs to the loop that made it, and
every ``asyncio.run`` (one per ``Program.run``) brings a new loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Client = TypeVar("Client")


class PerLoop(Generic[Client]):
    """``get()``: the running loop's client, made with ``make`` when the loop is new."""

    def __init__(
        self, make: Callable[[], Client], close: Callable[[Client], Awaitable[None]]
    ) -> None:
        self._make, self._close = make, close
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> Client:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = self._make(), loop
        return self._client

    def close(self) -> None:
        """Close the last client on its own loop (scheduled there when that loop is running)."""
        client, self._client = self._client, None
        loop, self._loop = self._loop, None
        if client is None or loop is None or loop.is_closed():
            return
        if loop.is_running():
            loop.create_task(self._close(client))  # type: ignore[arg-type]
        else:
            loop.run_until_complete(self._close(client))
