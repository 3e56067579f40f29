"""Paged KV-cache blocks: a reference-counted allocator and per-sequence block tables."""

from __future__ import annotations

from collections import deque

from runtime.sequence import Sequence


class OutOfBlocksError(RuntimeError):
    pass


class BlockAllocator:
    """Hands out fixed-size KV blocks by id; a block returns to the free list at refcount 0.

    Reference counts let several sequences share a block (prefix sharing): ``share`` adds an owner,
    ``release`` removes one.
    """

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"need at least one KV block, got {num_blocks}")
        self.num_blocks = num_blocks
        self._free: deque[int] = deque(range(num_blocks))
        self._refcount = [0] * num_blocks

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self._free)

    def refcount(self, block: int) -> int:
        return self._refcount[block]

    def allocate(self, n: int) -> list[int]:
        if n > len(self._free):
            raise OutOfBlocksError(f"asked for {n} KV blocks, {len(self._free)} free")
        blocks = [self._free.popleft() for _ in range(n)]
        for b in blocks:
            self._refcount[b] = 1
        return blocks

    def share(self, block: int) -> None:
        if self._refcount[block] <= 0:
            raise ValueError(f"block {block} is free and cannot be shared")
        self._refcount[block] += 1

    def release(self, block: int) -> None:
        if self._refcount[block] <= 0:
            raise ValueError(f"block {block} released more often than allocated")
        self._refcount[block] -= 1
        if self._refcount[block] == 0:
            self._free.append(block)


class BlockManager:
    """Grows and frees the block tables of sequences over one allocator."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.block_size = block_size
        self.allocator = BlockAllocator(num_blocks)

    def blocks_needed(self, num_tokens: int) -> int:
        return (num_tokens + self.block_size - 1) // self.block_size

    def num_new_blocks(self, seq: Sequence, num_tokens: int) -> int:
        """Blocks ``seq`` must add so that its table covers ``num_tokens`` tokens."""
        return max(0, self.blocks_needed(num_tokens) - len(seq.block_table))

    def can_grow(self, seq: Sequence, num_tokens: int) -> bool:
        return self.num_new_blocks(seq, num_tokens) <= self.allocator.num_free

    def grow(self, seq: Sequence, num_tokens: int) -> None:
        seq.block_table.extend(self.allocator.allocate(self.num_new_blocks(seq, num_tokens)))

    def free(self, seq: Sequence) -> None:
        for block in reversed(seq.block_table):
            self.allocator.release(block)
        seq.block_table = []

    def slot(self, seq: Sequence, position: int) -> int:
        block = seq.block_table[position // self.block_size]
        return block * self.block_size + position % self.block_size
