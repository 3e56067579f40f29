"""Merging the streams of ``n`` choices: arrival order, and no pulling ahead of the consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nanolang.server.streams import merge


async def source(name: str, count: int, pulled: dict[str, int]) -> AsyncIterator[str]:
    for i in range(count):
        pulled[name] = i + 1
        yield f"{name}{i}"
        await asyncio.sleep(0)


def test_merge_pulls_a_streams_next_item_only_once_the_last_was_taken() -> None:
    """While the consumer lags, items wait in their streams (which keep only the newest
    output), not in the merge: it pulled every stream dry into its own queue."""

    async def main() -> tuple[list[tuple[int, str]], list[dict[str, int]]]:
        pulled: dict[str, int] = {}
        got, seen = [], []
        async for index, item in merge([source("a", 50, pulled), source("b", 50, pulled)]):
            got.append((index, item))
            await asyncio.sleep(0.001)  # a slow client: the sources could run far ahead
            seen.append(dict(pulled))
        return got, seen

    got, seen = asyncio.run(main())
    for index, name in enumerate("ab"):  # every item, each stream's in its order
        assert [item for i, item in got if i == index] == [f"{name}{k}" for k in range(50)]
    for taken, pulled in enumerate(seen, start=1):
        assert sum(pulled.values()) <= taken + 2, (taken, pulled)  # one waiting per stream
