"""``--shard I/N``: a deterministic split of a job's rows for schedulers without Ray (SLURM arrays).
Every shard reads the whole input (a line at a time) and keeps its part: rows are ordered by group
key (rows sharing a prompt prefix stay together) then by line, and shard I of N takes the I-th of N
contiguous, near-equal ranges. Shards write their own results files; concatenated, they are the
results of the whole job (lines carry their fingerprints, and ids do not overlap). Shards may also
write one results file in turn: ``--restart`` and ``--retry-failed`` of shard I touch shard I's rows
only (``resume.prepare``'s ``ids``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nanolang.jobs.row_file import StreamedRows

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

    def part(self, total: int) -> slice:
        """Which of ``total`` ordered items are this shard's."""
        return slice(total * self.index // self.count, total * (self.index + 1) // self.count)

    def select(self, items: Sequence[T], group: Callable[[T], str] | None = None) -> Sequence[T]:
        """This shard's items, in the order they are to run (by group, then input order).
        Rows streamed from their file stay streamed (a group key per row is kept, not rows)."""
        if isinstance(items, StreamedRows):
            return self.select_streamed(items, group)
        keyed = sorted(enumerate(items), key=lambda p: (group(p[1]) if group else "", p[0]))
        return [item for _, item in keyed[self.part(len(keyed))]]

    def select_streamed(
        self, rows: StreamedRows[T], group: Callable[[T], str] | None = None
    ) -> StreamedRows[T]:
        """``select`` of rows streamed from their file: still streamed (one pass keeps each
        row's group key, not the row)."""
        ordered = rows.reordered(group) if group is not None else rows
        return ordered[self.part(len(ordered))]
