"""Program instances as the scheduler sees them: progress, pinned KV blocks and fork groups.

Four policies use the request graph the language attaches to requests (``ProgramRef``):

- **parent pinning**: a finished request whose node a known child will extend keeps its cached
  KV blocks (one reference each, so the prefix cache cannot evict them) until the child is
  admitted (``unpin``) or the instance is released. Pins are the first thing given up under KV
  pressure, lowest-priority instance first.
- **group admission**: the members of a group (fork siblings, ``select`` alternatives) wait
  until the first member has computed (or found cached) the full blocks they share, so their
  shared prefix is computed once, and are then admitted together, or not at all while they do
  not all fit.
- **progress priority**: while the KV cache is short (the blocks held and the blocks the
  waiting requests need exceed it, unless the instances in flight all declared their peak KV
  demand and those peaks fit in the cache together), waiting requests are admitted in order
  of their instance's progress (finished requests, most first), then the instance's arrival, so
  instances that are further along finish instead of every instance advancing in lockstep with
  its KV held. With memory to spare, requests are admitted in arrival order (the order that
  keeps batches full to the end of a run).
- **instance preemption**: under KV pressure the running requests of the lowest-priority
  instance are preempted together (and its pins released), never one call of an instance
  while its siblings keep their blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.block_allocator import BlockAllocator
    from runtime.sequence import Sequence

Priority = tuple[int, int, int]


@dataclass(eq=False)  # compared by identity (kept as a key of the pinned set)
class Instance:
    arrival: int  # arrival order of its first request
    peak_tokens: int | None = None  # its declared peak KV demand (ProgramRef.peak_tokens)
    progress: int = 0  # requests finished
    pins: dict[int, list[int]] = field(default_factory=dict)  # node -> pinned KV blocks
    leaders: dict[int, Sequence] = field(default_factory=dict)  # group -> first member


@dataclass
class InstanceStats:
    pinned_blocks: int = 0  # now
    pins_made: int = 0
    pins_released_under_pressure: int = 0
    groups_admitted: int = 0
    instances_preempted: int = 0


class InstanceTable:
    """Per-instance state over one block allocator."""

    def __init__(self, allocator: BlockAllocator, block_size: int) -> None:
        self.allocator = allocator
        self.block_size = block_size
        self.instances: dict[int, Instance] = {}
        self._declared_tokens = 0  # the declared peaks of the instances in flight, summed
        self._undeclared = 0  # instances in flight that declared no peak
        self.stats = InstanceStats()
        self._short = False  # see short_of_memory
        self._pinned: dict[Instance, None] = {}  # instances holding pins (searched under pressure)

    def note(self, seq: Sequence) -> bool:
        """A request of a program instance arrived; True if it is the instance's first."""
        ref = seq.program
        if ref is not None and ref.instance not in self.instances:
            self.instances[ref.instance] = Instance(seq.arrival_order, ref.peak_tokens)
            if ref.peak_tokens is None:
                self._undeclared += 1
            else:
                self._declared_tokens += ref.peak_tokens
            return True
        return False

    def priority(self, seq: Sequence) -> Priority:
        """Smaller first: instance progress (most first), instance arrival, request arrival."""
        ref = seq.program
        inst = self.instances.get(ref.instance) if ref is not None else None
        if inst is None:
            return (0, seq.arrival_order, seq.arrival_order)
        return (-inst.progress, inst.arrival, seq.arrival_order)

    def short_of_memory(self, blocks_needed: int) -> bool:
        """Whether the KV cache is short: the blocks held now plus ``blocks_needed`` (every
        waiting request's, ``WaitingQueue.blocks_needed``, whole prompts counted whether cached
        or shared or not) exceed the cache, unless every instance in flight declared its peak and
        the peaks fit in the cache together (``fit_at_peak``: at a thousand instances without
        pressure the count alone said short where the cache never held an eighth of it). Once short,
        it stays so until the scheduler is idle (``calm``), so the admission order does not flap
        while the cache fills and drains."""
        if not self._short and blocks_needed > self.allocator.num_free and not self.fit_at_peak():
            self._short = True
        return self._short

    def fit_at_peak(self) -> bool:
        """Whether the instances in flight all declared their peak KV demand and those peaks,
        summed, fit in the cache (then they can all hold their peaks at once)."""
        capacity = self.allocator.num_blocks * self.block_size
        return bool(self.instances) and not self._undeclared and self._declared_tokens <= capacity

    def calm(self) -> None:
        """Nothing waits or runs: the next burst of requests is judged afresh."""
        self._short = False

    def same_instance(self, a: Sequence, b: Sequence) -> bool:
        return (
            a.program is not None
            and b.program is not None
            and (a.program.instance == b.program.instance)
        )

    # lifecycle
    def finished(self, seq: Sequence, cached_blocks: list[int]) -> None:
        """``seq`` finished: count it, and pin its cached blocks if a child will extend them."""
        ref = seq.program
        inst = self.instances.get(ref.instance) if ref is not None else None
        if ref is None or inst is None:
            return
        inst.progress += 1
        if ref.pin and cached_blocks and ref.node not in inst.pins:
            acquire = self.allocator.acquire
            for block in cached_blocks:
                acquire(block)
            inst.pins[ref.node] = list(cached_blocks)
            self._pinned[inst] = None
            self.stats.pinned_blocks += len(cached_blocks)
            self.stats.pins_made += 1

    def admitted(self, seq: Sequence) -> None:
        """``seq`` holds its prefix's blocks now: the pins it names are no longer needed."""
        ref = seq.program
        inst = self.instances.get(ref.instance) if ref is not None else None
        if ref is not None and inst is not None:
            for node in ref.unpin:
                self._unpin(inst, node)

    def unpin(self, instance: int, nodes: tuple[int, ...]) -> None:
        inst = self.instances.get(instance)
        if inst is not None:
            for node in nodes:
                self._unpin(inst, node)

    def release(self, instance: int) -> None:
        """The instance ended: drop its pins and group state."""
        inst = self.instances.pop(instance, None)
        if inst is not None:
            if inst.peak_tokens is None:
                self._undeclared -= 1
            else:
                self._declared_tokens -= inst.peak_tokens
            for node in list(inst.pins):
                self._unpin(inst, node)

    def _unpin(self, inst: Instance, node: int) -> None:
        blocks = inst.pins.pop(node, None)
        if blocks is None:
            return
        release = self.allocator.release
        for block in reversed(blocks):
            release(block)
        self.stats.pinned_blocks -= len(blocks)
        if not inst.pins:
            del self._pinned[inst]

    def release_lowest_pins(self, below: Sequence | None = None) -> bool:
        """Under KV pressure: drop the pins of the lowest-priority instance that has any (with
        ``below``, only of instances ranked after its instance); False when there were none.
        Only the instances holding pins are searched (ranks are unique: the order of the search
        does not matter)."""
        best: tuple[tuple[int, int], Instance] | None = None
        floor = self.priority(below)[:2] if below is not None else None
        for inst in self._pinned:
            rank = (-inst.progress, inst.arrival)
            lower = floor is None or rank > floor
            if lower and (best is None or rank > best[0]):
                best = (rank, inst)
        if best is None:
            return False
        for node in list(best[1].pins):
            self._unpin(best[1], node)
        self.stats.pins_released_under_pressure += 1
        return True

    def release_pins_of(self, seq: Sequence) -> None:
        if seq.program is not None and seq.program.instance in self.instances:
            inst = self.instances[seq.program.instance]
            for node in list(inst.pins):
                self._unpin(inst, node)

    # groups
    def group_leader(self, seq: Sequence) -> Sequence | None:
        """The first member of ``seq``'s group (``seq`` itself if it is the first); None
        outside groups."""
        ref = seq.program
        if ref is None or ref.group is None:
            return None
        inst = self.instances.get(ref.instance)
        if inst is None:
            return None
        return inst.leaders.setdefault(ref.group, seq)
