"""Paged KV-cache blocks by id: a reference-counted allocator, free list in release order."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class OutOfBlocksError(RuntimeError):
    pass


class BlockAllocator:
    """Hands out fixed-size KV blocks by id; a block returns to the free list at refcount 0.

    Reference counts let several sequences share a block (prefix sharing). The free list is kept in
    release order and allocation takes its oldest entry, so a freed block that still caches a
    prefix survives as long as possible: ``acquire`` takes such a block back out of the free list,
    and ``on_reuse`` tells the prefix cache when a free block is handed out for new content.
    """

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"need at least one KV block, got {num_blocks}")
        self.num_blocks = num_blocks
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self._refcount = [0] * num_blocks
        self.on_reuse: Callable[[int], None] | None = None

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        """Blocks held by at least one request (cached-but-free blocks count as free)."""
        return self.num_blocks - len(self._free)

    def refcount(self, block: int) -> int:
        return self._refcount[block]

    def allocate(self, n: int) -> list[int]:
        if n > len(self._free):
            raise OutOfBlocksError(f"asked for {n} KV blocks, {len(self._free)} free")
        blocks = [self._free.popitem(last=False)[0] for _ in range(n)]
        for b in blocks:
            self._refcount[b] = 1
            if self.on_reuse is not None:
                self.on_reuse(b)
        return blocks

    def acquire(self, block: int) -> None:
        """Take one more reference to ``block``, reviving it from the free list if needed."""
        if self._refcount[block] == 0:
            del self._free[block]
        self._refcount[block] += 1

    def release(self, block: int) -> None:
        if self._refcount[block] <= 0:
            raise ValueError(f"block {block} released more often than allocated")
        self._refcount[block] -= 1
        if self._refcount[block] == 0:
            self._free[block] = None
