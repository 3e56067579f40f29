"""Per-sequence block tables over the block allocator, reusing cached prefixes when enabled."""

from __future__ import annotations

from runtime.block_allocator import BlockAllocator
from runtime.prefix_cache import RadixCache
from runtime.sequence import Sequence


class BlockManager:
    """Grows and frees the block tables of sequences over one allocator, reusing cached prefixes
    through a radix tree when prefix caching is on."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = False):
        self.block_size = block_size
        self.allocator = BlockAllocator(num_blocks)
        self.cache = RadixCache(self.allocator, block_size) if enable_prefix_caching else None

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
        if self.cache is not None:
            self.cache.drop_pending(seq)  # blocks it was still computing are no prefix anymore
        # last blocks first: they go to the free list first, so they are reused (evicted) first
        for block in reversed(seq.block_table):
            self.allocator.release(block)
        seq.block_table = []
        seq.prefix_node, seq.num_registered_blocks = None, 0

    def slot(self, seq: Sequence, position: int) -> int:
        block = seq.block_table[position // self.block_size]
        return block * self.block_size + position % self.block_size

    # prefix caching
    def _reuse_limit(self, seq: Sequence) -> int:
        """Tokens a new sequence may take from the cache: all but its last (which yields the next
        token's logits), and none past the row before its first wanted prompt logprob."""
        limit = seq.num_tokens - 1
        if seq.params.prompt_logprobs:
            limit = min(limit, seq.params.prompt_logprobs_from - 1)
        return limit

    def waits_for_pending(self, seq: Sequence) -> bool:
        """Whether a block this waiting sequence could reuse is still being computed."""
        if self.cache is None or seq.block_table:
            return False
        return self.cache.waits_for_pending(seq, self._reuse_limit(seq))

    def reuse_prefix(self, seq: Sequence) -> None:
        """Start a sequence without blocks from the longest computed cached prefix of its
        tokens."""
        if self.cache is None or seq.block_table:
            return
        seq.block_table = self.cache.match(seq, self._reuse_limit(seq))
        seq.num_computed_tokens = len(seq.block_table) * self.block_size
        seq.num_cached_tokens = min(seq.num_computed_tokens, seq.num_prompt_tokens)

    def undo_reuse(self, seq: Sequence) -> None:
        self.free(seq)
        seq.num_computed_tokens = seq.num_cached_tokens = 0

    def admitted(self, seq: Sequence) -> None:
        """A sequence was admitted with its blocks: count it, and publish the prompt blocks it
        will compute as pending, so that followers wait for them instead of recomputing."""
        if self.cache is not None:
            self.cache.record_admission(seq)
            self.cache.add_pending(seq)

    def register(self, seq: Sequence) -> None:
        if self.cache is not None:
            self.cache.register(seq)
