"""Prefix-aware admission: in-flight prefills sit in the radix tree as pending nodes, a request
waits only for the pending blocks it needs and its followers are admitted together; cache
statistics count real admissions only; preemption gives the victim's tokens back to the
iteration's budget; an admission watermark keeps a block free for the running decodes."""

from __future__ import annotations

from runtime import LLM, SamplingParams
from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.scheduler import Scheduler
from runtime.sequence import Sequence, SequenceStatus

SYSTEM = [(13 * i) % 300 + 3 for i in range(32)]  # two 16-token blocks shared by every request


def seq(tokens: list[int], order: int) -> Sequence:
    return Sequence(f"r{order}", None, tokens, SamplingParams(max_tokens=1), 0, order)


def step(sched: Scheduler) -> list[tuple[str, int]]:
    """Schedule, then do what the engine does at launch: advance and register computed blocks."""
    out = sched.schedule()
    for e in out.scheduled:
        samples = e.samples
        e.seq.num_computed_tokens += e.num_tokens
        sched.blocks.register(e.seq)
        if samples:
            e.seq.output_token_ids.append(7)
    return [(e.seq.request_id, e.num_tokens) for e in out.scheduled]


def test_followers_wait_only_for_the_pending_blocks_then_come_together() -> None:
    blocks = BlockManager(64, 16, enable_prefix_caching=True)
    sched = Scheduler(EngineConfig(block_size=16, max_num_batched_tokens=512), blocks)
    for i in range(6):
        sched.add(seq([*SYSTEM, 330 + i, 331 + i, 332 + i], i))
    sched.add(seq([1, 2, 3], 6))  # shares nothing: not held back by the others
    assert step(sched) == [("r0", 35), ("r6", 3)]  # r1..r5 wait for r0's two pending blocks
    second = step(sched)  # all five followers at once, from the cache: three tokens each
    assert sorted(second) == sorted([("r0", 1), ("r6", 1)] + [(f"r{i}", 3) for i in range(1, 6)])
    stats = blocks.cache.stats  # type: ignore[union-attr]
    assert stats.hit_tokens == 5 * 32


def test_sixteen_requests_with_a_shared_header_batch_with_the_cache_on(tiny_llama: str) -> None:
    prompts = [[*SYSTEM, 330 + i, 7, 9] for i in range(16)]
    params = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
    runs = {}
    for caching in (False, True):
        llm = LLM(tiny_llama, dtype="float32", device="cpu", enable_prefix_caching=caching,
                  block_size=16)  # fmt: skip
        outs = [o.token_ids for o in llm.generate(prompts, params)]
        runs[caching] = (outs, llm.num_iterations, llm.engine.stats.prompt_tokens_computed)
    assert runs[True][0] == runs[False][0]
    assert runs[True][1] <= runs[False][1] + 1  # one iteration to compute the header first
    assert runs[True][2] == 35 + 15 * 3


def test_cache_stats_count_only_real_admissions() -> None:
    blocks = BlockManager(4, 16, enable_prefix_caching=True)
    sched = Scheduler(EngineConfig(block_size=16, admission_watermark=0), blocks)
    sched.add(seq(list(range(1, 40)), 0))  # 3 blocks
    step(sched)
    blocked = seq([*range(1, 33), 90, 91, 92, *range(200, 220)], 1)  # 4 blocks: must wait
    sched.add(blocked)
    for _ in range(5):
        step(sched)
    stats = blocks.cache.stats  # type: ignore[union-attr]
    assert stats.query_tokens == 39 and stats.hit_tokens == 0  # the blocked head not counted
    assert blocked.status is SequenceStatus.WAITING


def test_a_preempted_victims_tokens_go_back_to_the_budget() -> None:
    blocks = BlockManager(8, 4)
    sched = Scheduler(EngineConfig(block_size=4, max_num_batched_tokens=10,
                                   admission_watermark=0), blocks)  # fmt: skip
    late = seq([1, 2, 3], 5)  # a decode with room in its block, scheduled first
    early = seq([5, 6, 7, 8], 1)  # a decode that needs a second block: none is free
    prefill = seq(list(range(20, 44)), 2)  # 24 tokens (6 blocks), 4 computed so far
    late.output_token_ids.append(9)
    early.output_token_ids.append(9)
    for s, computed in ((late, 3), (early, 4), (prefill, 4)):
        blocks.grow(s, computed if s is early else s.num_tokens)
        s.num_computed_tokens, s.status = computed, SequenceStatus.RUNNING
    assert blocks.allocator.num_free == 0
    sched.running = [late, early, prefill]
    out = sched.schedule()
    assert out.preempted == [late]  # the latest arrival, already scheduled this iteration
    assert [(e.seq.request_id, e.num_tokens) for e in out.scheduled] == [("r1", 1), ("r2", 9)]


def test_admission_watermark_keeps_a_block_for_running_decodes() -> None:
    blocks = BlockManager(4, 4)
    sched = Scheduler(EngineConfig(block_size=4, admission_watermark=0.25), blocks)
    running = seq([1, 2, 3, 4], 0)
    sched.add(running)
    step(sched)  # one block, full: its next decode needs a second
    sched.add(seq([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 1))  # 3 blocks: all that is left
    assert step(sched) == [("r0", 1)]  # not admitted: it would be preempted at once
    assert sched.running == [running] and running.metrics.num_preemptions == 0
