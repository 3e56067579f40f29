"""Which replica runs which rows: chunks of rows that share a prompt prefix, handed out on
demand (a replica asks when it has room), preferring a chunk of a group the replica has served
before (its prefix cache holds that group's prefix), and chunks put back when a replica dies.

Rows are grouped by key, ordered by key then input order, and cut into chunks of at most
``chunk_rows`` rows that never mix groups. A group larger than one chunk spreads over replicas
(each then computes its prefix once); a small group stays whole on one replica.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Chunk:
    group: str
    rows: tuple[Any, ...]


def make_chunks(rows: Sequence[Any], group: Callable[[Any], str], chunk_rows: int) -> list[Chunk]:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    by_group: dict[str, list[Any]] = {}
    for row in rows:
        by_group.setdefault(group(row), []).append(row)
    chunks = []
    for key in sorted(by_group):
        members = by_group[key]
        for start in range(0, len(members), chunk_rows):
            chunks.append(Chunk(key, tuple(members[start : start + chunk_rows])))
    return chunks


class Dispatcher:
    """Hands out chunks to replicas; ``take`` waits while chunks are in flight elsewhere (one
    of them may yet come back) and returns None once every chunk is done."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.pending: deque[Chunk] = deque(chunks)
        self.in_flight = 0
        self.warm: dict[int, set[str]] = {}
        self.requeued_rows = 0
        self.changed = asyncio.Condition()

    async def take(self, replica: int) -> Chunk | None:
        async with self.changed:
            while not self.pending and self.in_flight:
                await self.changed.wait()
            if not self.pending:
                return None
            chunk = self._pick(replica)
            self.in_flight += 1
            self.warm.setdefault(replica, set()).add(chunk.group)
            return chunk

    def _pick(self, replica: int) -> Chunk:
        warm = self.warm.get(replica, set())
        for i, chunk in enumerate(self.pending):
            if chunk.group in warm:
                del self.pending[i]
                return chunk
        return self.pending.popleft()

    async def finish(self, chunk: Chunk, unfinished: Sequence[Any] = ()) -> None:
        """``chunk`` is over; ``unfinished`` rows (its replica died) go back to the front."""
        async with self.changed:
            self.in_flight -= 1
            if unfinished:
                self.pending.appendleft(Chunk(chunk.group, tuple(unfinished)))
                self.requeued_rows += len(unfinished)
            self.changed.notify_all()

    @property
    def remaining_rows(self) -> int:
        return sum(len(c.rows) for c in self.pending)


@dataclass(frozen=True)
class ClusterOptions:
    """``address``: the cluster's (None: Ray's default, a new local cluster unless
    ``RAY_ADDRESS`` is set). ``replicas``: default one per GPU, else one per ``replica_cpus``
    CPUs. ``chunk_rows``: rows per chunk handed to a replica."""

    address: str | None = None
    replicas: int | None = None
    replica_cpus: float = 1.0
    chunk_rows: int = 16
    max_restarts: int = 1
