from __future__ import annotations

import pytest

from runtime.block_allocator import BlockAllocator, OutOfBlocksError
from runtime.block_manager import BlockManager
from runtime.sampling_params import SamplingParams
from runtime.sequence import Sequence


def make_seq(n_tokens: int, order: int = 0) -> Sequence:
    return Sequence(f"r{order}", None, list(range(n_tokens)), SamplingParams(), 0, order)


def test_allocate_and_release_round_trip() -> None:
    alloc = BlockAllocator(4)
    blocks = alloc.allocate(3)
    assert len(set(blocks)) == 3 and alloc.num_free == 1
    for b in blocks:
        alloc.release(b)
    assert alloc.num_free == 4 and alloc.num_used == 0


def test_refcounts_keep_shared_blocks_alive() -> None:
    alloc = BlockAllocator(2)
    (b,) = alloc.allocate(1)
    alloc.acquire(b)
    assert alloc.refcount(b) == 2
    alloc.release(b)
    assert alloc.num_free == 1  # still owned once
    alloc.release(b)
    assert alloc.num_free == 2
    with pytest.raises(ValueError, match="released more often"):
        alloc.release(b)


def test_acquire_revives_a_free_block_and_reuse_is_oldest_first() -> None:
    alloc = BlockAllocator(3)
    reused: list[int] = []
    alloc.on_reuse = reused.append
    a, b, c = alloc.allocate(3)
    for block in (b, a, c):
        alloc.release(block)
    alloc.acquire(a)  # a cached block taken back: no longer free
    assert alloc.num_free == 2 and alloc.refcount(a) == 1
    assert alloc.allocate(1) == [b]  # the oldest released block goes first
    assert reused == [a, b, c, b]


def test_out_of_blocks_is_an_error_not_a_partial_allocation() -> None:
    alloc = BlockAllocator(2)
    with pytest.raises(OutOfBlocksError):
        alloc.allocate(3)
    assert alloc.num_free == 2


def test_block_manager_grows_tables_and_maps_slots() -> None:
    mgr = BlockManager(num_blocks=8, block_size=4)
    seq = make_seq(5)
    assert mgr.num_new_blocks(seq, 5) == 2
    mgr.grow(seq, 5)
    assert len(seq.block_table) == 2
    mgr.grow(seq, 8)  # still fits in two blocks
    assert len(seq.block_table) == 2
    mgr.grow(seq, 9)
    assert len(seq.block_table) == 3
    assert mgr.slot(seq, 5) == seq.block_table[1] * 4 + 1
    mgr.free(seq)
    assert seq.block_table == [] and mgr.allocator.num_used == 0
