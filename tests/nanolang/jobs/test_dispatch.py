"""The dispatcher alone: chunks never mix prefix groups, a replica gets chunks of a group it
has served before, and a dead replica's unfinished rows come back first."""

from __future__ import annotations

import asyncio

import pytest

from nanolang.jobs.dispatch import Chunk, Dispatcher, make_chunks


def test_chunks_keep_groups_apart_and_in_order() -> None:
    rows = ["a1", "b1", "a2", "a3", "b2", "c1"]
    chunks = make_chunks(rows, lambda r: r[0], chunk_rows=2)
    assert chunks == [
        Chunk("a", ("a1", "a2")),
        Chunk("a", ("a3",)),
        Chunk("b", ("b1", "b2")),
        Chunk("c", ("c1",)),
    ]
    with pytest.raises(ValueError, match="chunk_rows"):
        make_chunks(rows, lambda r: r[0], chunk_rows=0)


def test_a_replica_prefers_groups_it_has_served_and_requeued_rows_come_first() -> None:
    async def scenario() -> list[tuple[int, Chunk | None]]:
        rows = ["a1", "a2", "b1", "b2", "a3", "b3"]
        dispatcher = Dispatcher(make_chunks(rows, lambda r: r[0], chunk_rows=1))
        taken = []
        first = await dispatcher.take(0)  # a1
        second = await dispatcher.take(1)  # a2 (nothing warm yet: the oldest)
        assert first is not None and second is not None
        taken += [(0, first), (1, second)]
        await dispatcher.finish(first)
        await dispatcher.finish(second, unfinished=second.rows)  # replica 1 died
        assert dispatcher.requeued_rows == 1
        taken.append((0, await dispatcher.take(0)))  # the re-queued a2, first in line
        taken.append((1, await dispatcher.take(1)))  # a3: replica 1 served group a
        return taken

    taken = asyncio.run(scenario())
    assert [(i, c.rows if c else None) for i, c in taken] == [
        (0, ("a1",)),
        (1, ("a2",)),
        (0, ("a2",)),
        (1, ("a3",)),
    ]


def test_take_waits_while_chunks_are_in_flight_and_ends_when_all_are_done() -> None:
    async def scenario() -> tuple[Chunk | None, Chunk | None]:
        dispatcher = Dispatcher([Chunk("g", ("r1", "r2"))])
        held = await dispatcher.take(0)
        assert held is not None
        waiter = asyncio.create_task(dispatcher.take(1))
        await asyncio.sleep(0.01)
        assert not waiter.done()  # the chunk may yet come back
        await dispatcher.finish(held, unfinished=("r2",))
        got = await waiter
        assert got is not None
        await dispatcher.finish(got)
        return got, await dispatcher.take(0)

    got, last = asyncio.run(scenario())
    assert got == Chunk("g", ("r2",)) and last is None
