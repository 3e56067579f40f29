"""How many KV blocks admission keeps back for the running sequences' growth.

Admission keeps free, besides the watermark, the blocks the running sequences will still add
(each up to ``admission_reserve_tokens`` more output tokens), so a batch sized to memory does
not preempt as it grows. Two policies (``EngineConfig.admission``):

- ``"reserve"`` keeps back the whole growth of every running sequence at once: the sum of what
  each will add.
- ``"peak"`` keeps back the most the running sequences will ever need at one time. A decoding
  sequence that will finish within its reserve (``max_tokens`` at most the reserve away) and
  shares no block frees its blocks when it finishes, one output token per iteration from now, so
  the blocks it holds go back to the pool before sequences that run longer have grown into
  them. The demand ``t`` iterations from now is every other sequence's whole growth, plus each
  such sequence's growth by ``t`` while it runs, minus the blocks of those finished by then; its
  largest value over ``t`` is kept back. A sequence that is still prefilling, shares blocks
  (prefix cache, forks), belongs to a program instance (whose blocks may stay pinned), or has
  more to generate than the reserve counts with its whole growth, as under ``"reserve"``.

``"peak"`` never keeps back more than ``"reserve"``; under the worst case (no sequence stops
early) the blocks it counts on come back in time as long as every decode runs every iteration
(decodes are scheduled first), which ``FINISH_SLACK`` iterations of lateness (a read-back one
iteration behind under asynchronous scheduling) do not break. Preemption stays as the backstop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np

from runtime.block_allocator import BlockAllocator
from runtime.sequence import Sequence

AdmissionPolicy = Literal["reserve", "peak"]
ADMISSION_POLICIES: tuple[AdmissionPolicy, ...] = ("reserve", "peak")

FINISH_SLACK = 2  # iterations a sequence may finish later than its remaining tokens say


def remaining_tokens(seq: Sequence, reserve: int) -> int:
    """Output tokens ``seq`` may still add, counted up to ``reserve``."""
    return max(0, min(seq.params.max_tokens - len(seq.output_token_ids), reserve))


def growth_blocks(seq: Sequence, block_size: int, reserve: int) -> int:
    """Blocks ``seq`` must add to its table to hold its tokens and its remaining output."""
    tokens = len(seq.prompt_token_ids) + len(seq.output_token_ids) + remaining_tokens(seq, reserve)
    return max(0, -(-tokens // block_size) - len(seq.block_table))


def _frees_on_time(seq: Sequence, allocator: BlockAllocator, reserve: int) -> bool:
    """Whether ``seq`` returns its blocks within ``remaining_tokens`` (+ slack) iterations: it
    decodes, will stop within the reserve, holds only blocks of its own, and is no program's."""
    table = seq.block_table
    if not table or seq.program is not None:
        return False
    if seq.params.max_tokens - len(seq.output_token_ids) > reserve:
        return False  # runs past what the reserve counts
    uncomputed = len(seq.prompt_token_ids) + len(seq.output_token_ids) - seq.num_computed_tokens
    if uncomputed > 1:
        return False  # still prefilling: when it starts decoding is not known
    # the prefix cache shares from a table's first block on: a first block of its own means
    # none is shared
    return allocator.refcount(table[0]) == 1


class GrowthProfile:
    """Policy ``"peak"``: the blocks the running sequences will need beyond those they hold now,
    at future iterations 0, B, 2B, ... (B the block size) up to past the reserve, as an array.

    A sequence with ``n`` tokens and ``h`` blocks has added, t iterations from now,
    min(g, max(0, ceil(n / B) - h) + ceil(max(0, t - r) / B)) blocks (r: the free slots of its
    last block, g: its whole growth), one token per iteration being the fastest it can grow. One
    that frees on time (``_frees_on_time``) has returned its h blocks and all it added from its
    finish F = remaining + ``FINISH_SLACK`` on. Between two grid points the demand is at most
    the growth at the later one of every sequence not finished before the earlier one, minus the
    blocks of those finished before it: that is the value kept at each point, so the grid never
    understates the demand between its points."""

    def __init__(
        self, running: Iterable[Sequence], allocator: BlockAllocator, block_size: int, reserve: int
    ) -> None:
        self.block_size = block_size
        horizon = reserve + FINISH_SLACK + 2 * block_size
        self.times = np.arange(0, horizon + block_size, block_size, dtype=np.int64)  # [G]
        now, slots, cap, finish, held = [], [], [], [], []
        never = np.iinfo(np.int64).max
        for seq in running:
            n = len(seq.prompt_token_ids) + len(seq.output_token_ids)
            h = len(seq.block_table)
            now.append(max(0, -(-n // block_size) - h))
            slots.append(-n % block_size)
            cap.append(growth_blocks(seq, block_size, reserve))
            if _frees_on_time(seq, allocator, reserve):
                finish.append(remaining_tokens(seq, reserve) + FINISH_SLACK)
                held.append(h)
            else:
                finish.append(never)
                held.append(0)
        self.demand = np.zeros(len(self.times), dtype=np.int64)
        if not now:
            return
        added = self._added(np.array(now), np.array(slots), np.array(cap))  # [N, G]
        fin = np.array(finish, dtype=np.int64)[:, None]
        earlier = np.concatenate(([-1], self.times[:-1]))[None, :]  # the previous grid point
        gone = fin <= earlier  # finished before the interval ending at this point began
        self.demand = np.where(gone, -np.array(held)[:, None], added).sum(axis=0)

    def _added(self, now: np.ndarray, slots: np.ndarray, cap: np.ndarray) -> np.ndarray:
        """[N, G] blocks each sequence has added by each grid point, at its fastest growth."""
        t = self.times[None, :]
        late = np.maximum(0, t - slots[:, None])
        return np.minimum(cap[:, None], now[:, None] + -(-late // self.block_size))

    def candidate(self, growth: int) -> np.ndarray:
        """[G] blocks a sequence just admitted adds beyond its prompt's by each grid point (its
        first output token needs a new block at once, the worst case)."""
        one = self._added(np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([growth]))
        return one[0]

    def peak_with(self, growth: int) -> int:
        """The largest demand over the grid with one more sequence of that growth."""
        return int((self.demand + self.candidate(growth)).max())

    def add(self, growth: int) -> None:
        """A sequence was admitted: its growth joins the demand."""
        self.demand = self.demand + self.candidate(growth)
