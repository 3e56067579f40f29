"""A radix tree over token ids that maps cached prefixes to KV blocks.

The tree has block granularity: each node below the root stands for one full KV block, keyed by
the ``block_size`` token ids it holds, so a path from the root spells a prefix whose KV is cached.
The tree holds no references: a cached block whose requests all finished sits in the allocator's
free list, oldest-released first, and stays reusable until the allocator hands it out for new
content, at which point ``on_reuse`` drops it (and the nodes below it) from the tree. So eviction
is least-recently-released first and never touches a block a request holds. A prefix that ends
inside a block is served up to its last full block; the rest is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.block_allocator import BlockAllocator
    from runtime.sequence import Sequence


@dataclass(eq=False)
class Node:
    key: tuple[int, ...]
    block: int
    parent: Node | None
    children: dict[tuple[int, ...], Node] = field(default_factory=dict)


@dataclass
class CacheStats:
    query_tokens: int = 0  # prompt tokens looked up
    hit_tokens: int = 0  # of which served from the cache
    inserted_blocks: int = 0
    evicted_blocks: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0


class RadixCache:
    def __init__(self, allocator: BlockAllocator, block_size: int) -> None:
        self.allocator, self.block_size = allocator, block_size
        self.root = Node((), -1, None)
        self.stats = CacheStats()
        self._by_block: dict[int, Node] = {}
        allocator.on_reuse = self._evict

    @property
    def num_cached_blocks(self) -> int:
        return len(self._by_block)

    def _key(self, token_ids: list[int], index: int) -> tuple[int, ...]:
        bs = self.block_size
        return tuple(token_ids[index * bs : (index + 1) * bs])

    def match(self, seq: Sequence, max_tokens: int) -> list[int]:
        """Acquire the blocks caching the longest prefix of ``seq``'s tokens (at most
        ``max_tokens`` tokens) and note where the sequence sits in the tree."""
        tokens, node, blocks = seq.token_ids, self.root, []
        for i in range(max_tokens // self.block_size):
            child = node.children.get(self._key(tokens, i))
            if child is None:
                break
            self.allocator.acquire(child.block)
            blocks.append(child.block)
            node = child
        seq.prefix_node, seq.num_registered_blocks = node, len(blocks)
        self.stats.query_tokens += seq.num_tokens
        self.stats.hit_tokens += len(blocks) * self.block_size
        return blocks

    def register(self, seq: Sequence) -> None:
        """Add the sequence's newly computed full blocks to the tree.

        A block already cached under the same prefix (computed by another request at the same
        time) replaces the sequence's own copy, which is released.
        """
        node = seq.prefix_node if seq.prefix_node is not None else self.root
        known = seq.num_tokens - seq.num_pending  # PENDING tokens cannot key the tree yet
        full = min(seq.num_computed_tokens, known) // self.block_size
        tokens = seq.token_ids
        for i in range(seq.num_registered_blocks, full):
            key = self._key(tokens, i)
            child = node.children.get(key)
            own = seq.block_table[i]
            if child is None:
                child = Node(key, own, node)
                node.children[key] = child
                self._by_block[own] = child
                self.stats.inserted_blocks += 1
            elif child.block != own:
                self.allocator.acquire(child.block)
                self.allocator.release(own)
                seq.block_table[i] = child.block
            node = child
        seq.prefix_node, seq.num_registered_blocks = node, max(full, seq.num_registered_blocks)

    def _evict(self, block: int) -> None:
        node = self._by_block.pop(block, None)
        if node is None:
            return
        assert node.parent is not None
        del node.parent.children[node.key]
        stack = [node]
        while stack:  # the nodes below lost their prefix: drop them too (their blocks are free)
            current = stack.pop()
            self.stats.evicted_blocks += 1
            for child in current.children.values():
                self._by_block.pop(child.block, None)
                stack.append(child)

    def reset(self) -> None:
        """Forget every cached prefix (blocks held by requests are unaffected)."""
        self.root = Node((), -1, None)
        self._by_block.clear()
