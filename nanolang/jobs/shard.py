"""``--shard I/N``: a deterministic split of a job's rows for schedulers without Ray (SLURM
arrays). Every shard reads the whole input and keeps its part: rows are ordered by group key
(rows sharing a prompt prefix stay together) then by line, and shard I of N takes the I-th of N
contiguous, near-equal ranges. Shards write their own results files; concatenated, they are the
results of the whole job (lines carry their fingerprints, and ids do not overlap). Shards may
also write one results file in turn: ``--restart`` and ``--retry-failed`` of shard I touch shard
I's rows only (``resume.prepare``'s ``ids``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"--shard I/N needs 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, spec: str) -> Shard:
        found = _SPEC.match(spec)
        if found is None:
            raise ValueError(f"--shard takes I/N (e.g. 0/4), got {spec!r}")
        return cls(int(found.group(1)), int(found.group(2)))

    def select(self, items: Sequence[T], group: Callable[[T], str] | None = None) -> list[T]:
        """This shard's items, in the order they are to run (by group, then input order)."""
        keyed = sorted(enumerate(items), key=lambda p: (group(p[1]) if group else "", p[0]))
        start = len(keyed) * self.index // self.count
        end = len(keyed) * (self.index + 1) // self.count
        return [item for _, item in keyed[start:end]]
