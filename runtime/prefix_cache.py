"""A radix tree over token ids that maps cached prefixes to KV blocks.

The tree has block granularity: each node below the root stands for one full KV block, keyed by
the ``block_size`` token ids it holds, so a path from the root spells a prefix whose KV is cached.
The tree holds no references: a cached block whose requests all finished sits in the allocator's
free list, oldest-released first, and stays reusable until the allocator hands it out for new
content, at which point ``on_reuse`` drops it (and the nodes below it) from the tree. So eviction
is least-recently-released first and never touches a block a request holds. A prefix that ends
inside a block is served up to its last full block; the rest is recomputed.

Blocks that a running prefill is computing are in the tree too, as pending nodes owned by that
sequence: a request whose prompt continues into a pending node waits for it (the scheduler asks
``waits_for_pending``) instead of computing the same KV again, and every such follower is admitted
once the blocks are computed. A pending node becomes an ordinary one when its owner registers the
block, and disappears with its owner's blocks if the owner is preempted or aborted first.
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
    owner: int | None = None  # seq_id of the sequence still computing this block (pending)


@dataclass
class CacheStats:
    query_tokens: int = 0  # tokens of admitted sequences looked up (once per admission)
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
        self._pending: dict[int, list[Node]] = {}  # seq_id -> the pending nodes it owns
        allocator.on_reuse = self._evict

    @property
    def num_cached_blocks(self) -> int:
        return len(self._by_block)

    def _key(self, seq: Sequence, index: int) -> tuple[int, ...]:
        """The tokens of ``seq``'s block ``index`` (a full block of tokens known on the host).
        Kept on the sequence: its known tokens never change, and the tree is walked for the
        same sequence many times (each admission attempt, each iteration's registration)."""
        keys = seq.block_keys
        if index < len(keys):
            return keys[index]
        bs = self.block_size
        end = (index + 1) * bs
        key = tuple(seq.token_slice(index * bs, end))
        if index == len(keys) and end <= seq.num_tokens - seq.num_pending:
            keys.append(key)
        return key

    def waits_for_pending(self, seq: Sequence, max_tokens: int) -> bool:
        """Whether the longest cached prefix of ``seq`` (at most ``max_tokens`` tokens) stops at
        a block another sequence is still computing."""
        node = self.root
        for i in range(max_tokens // self.block_size):
            child = node.children.get(self._key(seq, i))
            if child is None:
                return False
            if child.owner is not None:
                return child.owner != seq.seq_id
            node = child
        return False

    def match(self, seq: Sequence, max_tokens: int) -> list[int]:
        """Acquire the blocks caching the longest computed prefix of ``seq``'s tokens (at most
        ``max_tokens`` tokens) and note where the sequence sits in the tree."""
        node, blocks = self.root, []
        for i in range(max_tokens // self.block_size):
            child = node.children.get(self._key(seq, i))
            if child is None or child.owner is not None:
                break
            self.allocator.acquire(child.block)
            blocks.append(child.block)
            node = child
        seq.prefix_node, seq.num_registered_blocks = node, len(blocks)
        return blocks

    def record_admission(self, seq: Sequence) -> None:
        """Count one admitted sequence in the statistics (its cached tokens as hits)."""
        self.stats.query_tokens += seq.num_tokens
        self.stats.hit_tokens += seq.num_registered_blocks * self.block_size

    def add_pending(self, seq: Sequence) -> None:
        """Insert the full prompt blocks ``seq`` is about to compute as pending nodes it owns
        (stopping where another sequence already has a node for the same tokens)."""
        node = seq.prefix_node if seq.prefix_node is not None else self.root
        owned = self._pending.setdefault(seq.seq_id, [])
        for i in range(seq.num_registered_blocks, seq.num_prompt_tokens // self.block_size):
            key = self._key(seq, i)
            if key in node.children:
                break
            child = Node(key, seq.block_table[i], node, owner=seq.seq_id)
            node.children[key] = child
            self._by_block[child.block] = child
            owned.append(child)
            node = child

    def drop_pending(self, seq: Sequence) -> None:
        """Remove the nodes ``seq`` still owns (its blocks are being freed uncomputed)."""
        for node in reversed(self._pending.pop(seq.seq_id, [])):
            if node.owner == seq.seq_id and self._by_block.get(node.block) is node:
                self._detach(node, evicted=False)

    def register(self, seq: Sequence) -> None:
        """Add the sequence's newly computed full blocks to the tree.

        A block already cached under the same prefix (computed by another request at the same
        time) replaces the sequence's own copy, which is released.
        """
        node = seq.prefix_node if seq.prefix_node is not None else self.root
        known = seq.num_tokens - seq.num_pending  # PENDING tokens cannot key the tree yet
        full = min(seq.num_computed_tokens, known) // self.block_size
        done = seq.num_registered_blocks
        for i in range(seq.num_registered_blocks, full):
            key = self._key(seq, i)
            child = node.children.get(key)
            own = seq.block_table[i]
            if child is not None and child.owner == seq.seq_id:
                child.owner = None  # computed: followers may use it now
            elif child is not None and child.owner is not None:
                break  # another sequence is computing the same block: merge once it has
            elif child is None:
                child = Node(key, own, node)
                node.children[key] = child
                self._by_block[own] = child
                self.stats.inserted_blocks += 1
            elif child.block != own:
                self.allocator.acquire(child.block)
                self.allocator.release(own)
                seq.block_table[i] = child.block
            node, done = child, i + 1
        seq.prefix_node, seq.num_registered_blocks = node, done

    def _evict(self, block: int) -> None:
        node = self._by_block.get(block)
        if node is not None:
            self._detach(node, evicted=True)

    def _detach(self, node: Node, evicted: bool) -> None:
        self._by_block.pop(node.block, None)
        assert node.parent is not None
        del node.parent.children[node.key]
        stack = [node]
        while stack:  # the nodes below lost their prefix: drop them too (their blocks are free)
            current = stack.pop()
            self.stats.evicted_blocks += evicted
            for child in current.children.values():
                self._by_block.pop(child.block, None)
                stack.append(child)

    def reset(self) -> None:
        """Forget every cached prefix (blocks held by requests are unaffected)."""
        self.root = Node((), -1, None)
        self._by_block.clear()
        self._pending.clear()
