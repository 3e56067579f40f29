from __future__ import annotations

from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.sampling_params import SamplingParams
from runtime.scheduler import Scheduler
from runtime.sequence import Sequence, SequenceStatus
from tests.runtime.scheduling import run_to_completion


def make(
    num_blocks: int = 16,
    block_size: int = 4,
    budget: int = 32,
    max_seqs: int = 8,
    chunked=True,
    reserve: int = 0,
) -> Scheduler:
    """``reserve`` 0 (admission on the prompt alone) unless a test is about the reserve."""
    cfg = EngineConfig(
        block_size=block_size,
        max_num_batched_tokens=budget,
        max_num_seqs=max_seqs,
        enable_chunked_prefill=chunked,
        admission_reserve_tokens=reserve,
    )
    return Scheduler(cfg, BlockManager(num_blocks, block_size))


def seq(n: int, order: int) -> Sequence:
    return Sequence(f"r{order}", None, list(range(1, n + 1)), SamplingParams(), 0, order)


def run_step(sched: Scheduler, sample_token: int = 7) -> list[tuple[str, int]]:
    """Schedule, then apply what the engine would: advance and append a token when sampling."""
    out = sched.schedule()
    plan = [(e.seq.request_id, e.num_tokens) for e in out.scheduled]
    for e in out.scheduled:
        samples = e.samples
        e.seq.num_computed_tokens += e.num_tokens
        if samples:
            e.seq.output_token_ids.append(sample_token)
    return plan


def test_decodes_come_first_then_prefill_chunks_fill_the_budget() -> None:
    s = make(budget=10)
    a, b = seq(3, 0), seq(20, 1)
    s.add(a)
    assert run_step(s) == [("r0", 3)]
    s.add(b)
    assert run_step(s) == [("r0", 1), ("r1", 9)]  # one decode, then 9 prefill tokens
    assert run_step(s) == [("r0", 1), ("r1", 9)]
    assert run_step(s) == [("r0", 1), ("r1", 2)]  # the prompt's last chunk
    assert run_step(s) == [("r0", 1), ("r1", 1)]  # both decoding


def test_decodes_beyond_the_budget_wait_and_leave_no_room_for_prefill() -> None:
    s = make(budget=3)
    for i in range(3):
        s.add(seq(1, i))
    assert run_step(s) == [("r0", 1), ("r1", 1), ("r2", 1)]
    s.add(seq(5, 3))
    s.add(seq(1, 4))
    # three sequences decoding, a budget of two tokens: two decodes and nothing else
    s.config = EngineConfig(block_size=4, max_num_batched_tokens=2, admission_reserve_tokens=0)
    assert run_step(s) == [("r0", 1), ("r1", 1)]
    assert [q.request_id for q in s.waiting] == ["r3", "r4"]


def test_without_chunked_prefill_a_long_prompt_waits_for_a_full_budget() -> None:
    s = make(budget=8, chunked=False)
    s.add(seq(12, 0))
    assert run_step(s) == []


def test_admission_needs_blocks_for_the_whole_prompt() -> None:
    s = make(num_blocks=4, block_size=4)
    s.add(seq(12, 0))  # 3 blocks
    s.add(seq(8, 1))  # 2 blocks: does not fit beside the first
    assert run_step(s) == [("r0", 12)]
    assert [q.request_id for q in s.waiting] == ["r1"]


def test_max_num_seqs_caps_the_running_set() -> None:
    s = make(max_seqs=2)
    for i in range(3):
        s.add(seq(2, i))
    assert [r for r, _ in run_step(s)] == ["r0", "r1"]


def test_preemption_frees_the_latest_arrival_and_requeues_it_first() -> None:
    s = make(num_blocks=2, block_size=4)
    a, b = seq(4, 0), seq(4, 1)
    s.add(a)
    s.add(b)
    assert run_step(s) == [("r0", 4), ("r1", 4)]  # both fill their only block
    # a decode needs a 2nd block: none is free, so b (latest) is preempted and recomputed later
    assert run_step(s) == [("r0", 1)]
    assert b.status is SequenceStatus.WAITING and b.num_computed_tokens == 0
    assert b.block_table == [] and b.metrics.num_preemptions == 1
    assert s.waiting[0] is b
    s.remove(a)
    assert run_step(s) == [("r1", 5)]  # prompt + its sampled token, recomputed


def test_admission_reserves_room_for_the_outputs_so_nothing_is_preempted() -> None:
    """Prompts of 4 tokens with 8 output tokens each need 3 blocks of 4 at the end: 12 blocks
    hold 4 such sequences. Admitting on the prompt alone takes all 8 and preempts later; with the
    reserve, 4 run at once and no sequence is ever preempted."""
    for reserve, first_batch in ((0, 8), (64, 4)):
        s = make(num_blocks=12, block_size=4, budget=64, max_seqs=16, reserve=reserve)
        seqs = []
        for i in range(8):
            sq = Sequence(f"r{i}", None, [1, 2, 3, 4], SamplingParams(max_tokens=8), 0, i)
            seqs.append(sq)
            s.add(sq)
        sizes, preempted = run_to_completion(s, max_tokens=8)
        assert sizes[0] == first_batch
        assert all(len(q.output_token_ids) == 8 for q in seqs)
        assert (preempted > 0) == (reserve == 0)


def test_reserve_is_capped_per_sequence() -> None:
    """A huge max_tokens reserves only admission_reserve_tokens of growth."""
    s = make(num_blocks=8, block_size=4, budget=64, reserve=8)
    s.add(Sequence("a", None, [1, 2, 3, 4], SamplingParams(max_tokens=10**6), 0, 0))
    s.add(Sequence("b", None, [1, 2, 3, 4], SamplingParams(max_tokens=10**6), 0, 1))
    assert run_step(s) == [("a", 4), ("b", 4)]  # 1 + 2 blocks each: both fit in 8


def test_a_sequence_whose_reserve_exceeds_the_cache_still_runs_alone() -> None:
    s = make(num_blocks=4, block_size=4, budget=64, reserve=100)
    s.add(Sequence("a", None, list(range(1, 13)), SamplingParams(max_tokens=100), 0, 0))
    s.add(Sequence("b", None, [1, 2], SamplingParams(max_tokens=100), 0, 1))
    assert run_step(s) == [("a", 12)]  # b waits: a's reserve holds the rest


def test_common_prefix_matches_a_token_by_token_comparison() -> None:
    import random

    from runtime.scheduler import common_prefix

    rng = random.Random(0)
    for _ in range(200):
        shared = [rng.randrange(50) for _ in range(rng.randrange(0, 700))]
        a = shared + [rng.randrange(50) for _ in range(rng.randrange(0, 40))]
        b = shared + [rng.randrange(50) for _ in range(rng.randrange(0, 40))]
        expected = next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        assert common_prefix(a, b, chunk=rng.choice([1, 7, 256])) == expected
