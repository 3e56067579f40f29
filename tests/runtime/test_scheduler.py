from __future__ import annotations

from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.sampling_params import SamplingParams
from runtime.scheduler import Scheduler
from runtime.sequence import Sequence, SequenceStatus


def make(
    num_blocks: int = 16, block_size: int = 4, budget: int = 32, max_seqs: int = 8, chunked=True
) -> Scheduler:
    cfg = EngineConfig(
        block_size=block_size,
        max_num_batched_tokens=budget,
        max_num_seqs=max_seqs,
        enable_chunked_prefill=chunked,
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
