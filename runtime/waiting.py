"""The scheduler's waiting queue, with what admission asks of it kept up to date as it changes.

Admission used to rebuild these from the whole queue on every pass: the fork-group index (for
group admission) and the blocks every waiting request needs (for the shortage check of progress
priority). Both are now kept as requests enter and leave the queue, so a pass costs what it
admits, not the queue's length. Each entry carries a rank that orders the queue (appended ones
after every other, pushed-front ones before), so a group's waiting members come back in queue
order without a scan.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from runtime.sequence import Sequence

GroupKey = tuple[int, int]  # (instance, group)


def group_key(seq: Sequence) -> GroupKey | None:
    """(instance, group) of a group member; None outside groups."""
    ref = seq.program
    return None if ref is None or ref.group is None else (ref.instance, ref.group)


class WaitingQueue:
    """A deque of waiting sequences plus, per entry, its queue rank and the KV blocks its
    tokens need (a waiting sequence's tokens do not change: a token still on the device is
    already counted as PENDING)."""

    def __init__(self, blocks_needed: Callable[[int], int]) -> None:
        self._blocks_needed = blocks_needed
        self._queue: deque[Sequence] = deque()
        self._entries: dict[Sequence, tuple[int, int]] = {}  # seq -> (rank, blocks needed)
        self._groups: dict[GroupKey, dict[Sequence, None]] = {}  # waiting members, any order
        # program instance -> its waiting sequences (in the order they entered)
        self._instances: dict[int, dict[Sequence, None]] = {}
        self._front = 0  # next rank of a pushed-front entry is _front - 1
        self._back = 0  # next rank of an appended entry
        self.blocks_needed = 0  # every waiting sequence's blocks, summed
        self.num_programs = 0  # waiting sequences of program instances

    # reading
    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return bool(self._queue)

    def __iter__(self) -> Iterator[Sequence]:
        return iter(self._queue)

    def __getitem__(self, index: int) -> Sequence:
        return self._queue[index]

    def __contains__(self, seq: object) -> bool:
        return seq in self._entries

    def has_instance(self, instance: int) -> bool:
        """Whether a request of program instance ``instance`` waits."""
        return instance in self._instances

    def group(self, key: GroupKey) -> list[Sequence]:
        """The waiting members of group ``key``, in queue order."""
        members = self._groups.get(key)
        if not members:
            return []
        rank = self._entries
        return sorted(members, key=lambda s: rank[s][0])

    # changing
    def append(self, seq: Sequence) -> None:
        self._enter(seq, self._back)
        self._back += 1
        self._queue.append(seq)

    def appendleft(self, seq: Sequence) -> None:
        self._front -= 1
        self._enter(seq, self._front)
        self._queue.appendleft(seq)

    def push_front(self, seqs: list[Sequence]) -> None:
        """Put ``seqs`` back at the front, in their order."""
        for seq in reversed(seqs):
            self.appendleft(seq)

    def popleft(self) -> Sequence:
        seq = self._queue.popleft()
        self._leave(seq)
        return seq

    def remove(self, seq: Sequence) -> None:
        self._queue.remove(seq)
        self._leave(seq)

    def sort(self, key: Callable[[Sequence], tuple[int, ...]]) -> None:
        """Reorder by ``key`` (stable) and rank the entries afresh."""
        self._queue = deque(sorted(self._queue, key=key))
        entries = self._entries
        for rank, seq in enumerate(self._queue):
            entries[seq] = (rank, entries[seq][1])
        self._front, self._back = 0, len(self._queue)

    def reposition(self, instances: set[int], key: Callable[[Sequence], tuple[int, ...]]) -> None:
        """Move the requests of ``instances`` (whose rank under ``key`` changed, or which
        entered out of place) to their places in a queue that is otherwise in ``key`` order
        (each instance's requests keep their order among themselves, so group ranks stay
        valid). They are found through the per-instance index, not by reading every entry's
        instance; the rest of the queue is kept by one identity filter."""
        index = self._instances
        moved = [s for i in instances if i in index for s in index[i]]
        if not moved:
            return
        gone = set(moved)
        rest = [s for s in self._queue if s not in gone]
        lo = 0  # inserted in key order, each lands after the one before
        for rank, _, seq in sorted((key(s), i, s) for i, s in enumerate(moved)):  # stable
            lo = bisect_left(rest, rank, lo, key=key)
            rest.insert(lo, seq)
            lo += 1
        self._queue = deque(rest)

    def _enter(self, seq: Sequence, rank: int) -> None:
        if seq in self._entries:
            raise ValueError(f"sequence {seq.request_id!r} is already waiting")
        need = self._blocks_needed(seq.num_tokens)
        self._entries[seq] = (rank, need)
        self.blocks_needed += need
        if seq.program is not None:
            self.num_programs += 1
            self._instances.setdefault(seq.program.instance, {})[seq] = None
            key = group_key(seq)
            if key is not None:
                self._groups.setdefault(key, {})[seq] = None

    def _leave(self, seq: Sequence) -> None:
        _, need = self._entries.pop(seq)
        self.blocks_needed -= need
        if seq.program is not None:
            self.num_programs -= 1
            waiting = self._instances[seq.program.instance]
            del waiting[seq]
            if not waiting:
                del self._instances[seq.program.instance]
            key = group_key(seq)
            if key is not None:
                members = self._groups[key]
                del members[seq]
                if not members:
                    del self._groups[key]
