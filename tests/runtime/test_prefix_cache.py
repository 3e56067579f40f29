"""Prefix sharing: the radix tree alone, and the engine with the cache on vs off."""

from __future__ import annotations

import pytest

from runtime import LLM, SamplingParams
from runtime.block_manager import BlockManager
from runtime.sequence import PENDING, Sequence


def seq(tokens: list[int], order: int = 0) -> Sequence:
    return Sequence(f"r{order}", None, tokens, SamplingParams(), 0, order)


def compute_all(mgr: BlockManager, s: Sequence) -> None:
    """What the engine does for a fully prefilled sequence: blocks, progress, registration."""
    mgr.grow(s, s.num_tokens)
    s.num_computed_tokens = s.num_tokens
    mgr.register(s)


def test_a_shared_prefix_is_matched_up_to_its_last_full_block() -> None:
    mgr = BlockManager(num_blocks=16, block_size=4, enable_prefix_caching=True)
    first = seq(list(range(10)))  # blocks [0-3] [4-7] and a partial [8, 9]
    compute_all(mgr, first)
    assert mgr.cache is not None and mgr.cache.num_cached_blocks == 2
    second = seq([*range(9), 99], order=1)  # shares 9 tokens: two full blocks
    mgr.reuse_prefix(second)
    assert second.block_table == first.block_table[:2]
    assert second.num_computed_tokens == second.num_cached_tokens == 8
    assert mgr.allocator.refcount(first.block_table[0]) == 2


def test_the_last_token_is_always_computed() -> None:
    mgr = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=True)
    compute_all(mgr, seq(list(range(8))))
    again = seq(list(range(8)), order=1)
    mgr.reuse_prefix(again)
    assert again.num_computed_tokens == 4  # not 8: the last token must produce logits


def test_freed_blocks_stay_cached_until_reused_for_new_content() -> None:
    mgr = BlockManager(num_blocks=4, block_size=4, enable_prefix_caching=True)
    a = seq(list(range(8)))
    compute_all(mgr, a)
    mgr.free(a)
    assert mgr.allocator.num_used == 0 and mgr.cache is not None
    assert mgr.cache.num_cached_blocks == 2  # free, yet still a cached prefix
    b = seq(list(range(100, 112)), order=1)  # needs 3 of the 4 blocks: evicts cached ones
    compute_all(mgr, b)
    assert mgr.cache.stats.evicted_blocks >= 1
    c = seq([*range(8), 5], order=2)
    mgr.reuse_prefix(c)
    assert all(mgr.allocator.refcount(x) >= 1 for x in c.block_table)
    assert c.num_computed_tokens in (0, 4, 8)
    for s in (b, c):
        mgr.free(s)
    assert mgr.allocator.num_used == 0


def test_duplicate_blocks_computed_concurrently_are_merged() -> None:
    mgr = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=True)
    a, b = seq(list(range(5))), seq(list(range(5)), order=1)
    mgr.grow(a, 5)
    mgr.grow(b, 5)
    for s in (a, b):
        s.num_computed_tokens = 5
        mgr.register(s)
    assert a.block_table[0] == b.block_table[0]
    assert mgr.allocator.refcount(a.block_table[0]) == 2
    assert mgr.allocator.num_used == 3  # the duplicate block went back to the free list


FEW_SHOT = "Q: one two three? A: four. Q: five six seven? A: eight. " * 3


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    # shared few-shot prefix, partial-block divergence, and an exact repeat
    return [FEW_SHOT + q for q in ("Q: nine?", "Q: ten?", "Q: nine?", "Q: yes no")] + ["x"]


def run(path: str, prompts: list[str], caching: bool, **kw) -> tuple[list[list[int]], LLM]:
    llm = LLM(path, dtype="float32", device="cpu", enable_prefix_caching=caching, **kw)
    params = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    outs = []
    for p in prompts:  # one by one, so later prompts find earlier prefixes cached
        outs.append(llm.generate([p], params)[0].token_ids)
    outs += [o.token_ids for o in llm.generate(prompts, params)]  # and all at once
    return outs, llm


def test_outputs_identical_with_cache_on_and_off(tiny_llama: str, prompts: list[str]) -> None:
    off, llm_off = run(tiny_llama, prompts, caching=False)
    on, llm_on = run(tiny_llama, prompts, caching=True)
    assert on == off
    stats = llm_on.engine.blocks.cache.stats  # type: ignore[union-attr]
    assert stats.hit_rate > 0.3
    computed_on = llm_on.engine.stats.prompt_tokens_computed
    computed_off = llm_off.engine.stats.prompt_tokens_computed
    assert computed_on < 0.6 * computed_off
    assert llm_on.engine.blocks.allocator.num_used == 0


def test_identical_under_eviction_pressure(tiny_llama: str, prompts: list[str]) -> None:
    # 10 blocks of 16 tokens: every prompt's prefix must be evicted and recomputed at times
    off, _ = run(tiny_llama, prompts, caching=False, kv_cache_memory_bytes=10 * 8192)
    on, llm = run(tiny_llama, prompts, caching=True, kv_cache_memory_bytes=10 * 8192)
    assert on == off
    assert llm.engine.blocks.cache.stats.evicted_blocks > 0  # type: ignore[union-attr]
    assert llm.engine.blocks.allocator.num_used == 0


def test_requests_sharing_a_prefix_at_once_compute_it_once(tiny_llama: str) -> None:
    prefix = list(range(20, 120))  # 100 tokens: six full blocks and a partial one
    prompts = [[*prefix, 200 + i, 201 + i] for i in range(4)]
    params = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    results = {}
    for caching in (False, True):
        llm = LLM(tiny_llama, dtype="float32", device="cpu", enable_prefix_caching=caching)
        outs = llm.generate(prompts, params)  # submitted together, like fork branches
        results[caching] = ([o.token_ids for o in outs], llm.engine.stats.prompt_tokens_computed)
    assert results[True][0] == results[False][0]
    assert results[False][1] == 4 * 102
    assert results[True][1] <= 102 + 3 * (102 - 96)  # the shared 96 tokens computed once


def test_block_keys_are_kept_only_for_tokens_known_on_the_host() -> None:
    mgr = BlockManager(num_blocks=16, block_size=4, enable_prefix_caching=True)
    assert mgr.cache is not None
    s = seq(list(range(6)))
    s.output_token_ids = [6, PENDING, PENDING]  # one resolved output token, two on the device
    s.num_pending = 2
    assert mgr.cache._key(s, 0) == (0, 1, 2, 3)
    assert mgr.cache._key(s, 1) == (4, 5, 6, PENDING)  # answered, but not kept
    assert s.block_keys == [(0, 1, 2, 3)]
    s.output_token_ids[1:] = [7, 8]
    s.num_pending = 0
    assert mgr.cache._key(s, 1) == (4, 5, 6, 7)
    assert s.block_keys == [(0, 1, 2, 3), (4, 5, 6, 7)]


def test_a_sequence_registered_over_steps_matches_as_one_computed_at_once() -> None:
    """Registration with the kept keys, as output tokens arrive, builds the same tree path."""
    mgr = BlockManager(num_blocks=16, block_size=4, enable_prefix_caching=True)
    grown = seq(list(range(5)))
    for token in range(5, 13):  # decode one token at a time
        mgr.grow(grown, grown.num_tokens)
        grown.num_computed_tokens = grown.num_tokens
        mgr.register(grown)
        grown.output_token_ids.append(token)
    follower = seq(list(range(13)), order=1)
    mgr.reuse_prefix(follower)
    assert follower.block_table == grown.block_table[:3]
