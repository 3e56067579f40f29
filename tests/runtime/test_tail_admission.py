"""The tail rule of admission (``admission_tail_overcommit``): when every waiting sequence could
run to its end together with the running ones in the free blocks plus a bounded share of the
cache, they start now instead of forming a small batch of their own after the others finish.
The shortfall is preempted near the end and recomputed, each sequence at most once."""

from __future__ import annotations

import pytest

from runtime import LLM, SamplingParams
from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.scheduler import Scheduler
from runtime.sequence import Sequence
from tests.runtime.scheduling import run_to_completion


def drive(n: int, tail: float, num_blocks: int = 40, max_tokens: int = 12) -> dict:
    """``n`` requests of 4 prompt tokens and ``max_tokens`` outputs (4 blocks of 4 at the end
    with the default 12), scheduled to completion the way the engine advances them."""
    cfg = EngineConfig(block_size=4, max_num_batched_tokens=64, max_num_seqs=64,
                       admission_reserve_tokens=2048, admission_tail_overcommit=tail)  # fmt: skip
    s = Scheduler(cfg, BlockManager(num_blocks, 4))
    seqs = [Sequence(f"r{i}", None, [1, 2, 3, 4], SamplingParams(max_tokens=max_tokens), 0, i)
            for i in range(n)]  # fmt: skip
    for q in seqs:
        s.add(q)
    sizes, _ = run_to_completion(s, max_tokens)
    assert all(len(q.output_token_ids) == max_tokens for q in seqs)
    assert s.blocks.allocator.num_free == num_blocks
    return {"iterations": len(sizes), "largest": max(sizes),
            "preemptions": [q.metrics.num_preemptions for q in seqs]}  # fmt: skip


def test_a_tail_within_the_share_starts_with_the_others() -> None:
    # 11 sequences need 44 blocks at their end; 40 hold 10 with the reserve
    off, on = drive(11, 0.0), drive(11, 0.1)
    assert off["largest"] == 10 and max(off["preemptions"]) == 0
    assert on["largest"] == 11
    assert on["iterations"] < off["iterations"] * 0.75  # no second wave of 12 decodes
    assert sum(on["preemptions"]) > 0 and max(on["preemptions"]) == 1


def test_a_tail_beyond_the_share_waits_as_before() -> None:
    # 14 sequences need 56 blocks: 40% over, beyond a 10% share: the schedule does not change
    assert drive(14, 0.1) == drive(14, 0.0)


def test_waiting_beyond_max_num_seqs_is_not_a_tail() -> None:
    cfg = EngineConfig(block_size=4, max_num_batched_tokens=64, max_num_seqs=2,
                       admission_tail_overcommit=1.0)  # fmt: skip
    s = Scheduler(cfg, BlockManager(40, 4))
    for i in range(3):
        s.add(Sequence(f"r{i}", None, [1, 2, 3, 4], SamplingParams(max_tokens=4), 0, i))
    out = s.schedule()
    assert len(out.scheduled) == 2 and len(s.waiting) == 1
    assert not s._tail_fits()  # three cannot run at once under a cap of two


def test_the_share_is_checked() -> None:
    with pytest.raises(ValueError, match="admission_tail_overcommit"):
        EngineConfig(admission_tail_overcommit=1.5)


def test_tail_admission_gives_the_same_tokens(tiny_llama: str) -> None:
    """The tiny model, greedy: with the tail rule the batch is larger and sequences are
    preempted and recomputed near the end, and every output is the one without it."""
    prompts = [list(range(10 + i, 30 + i)) for i in range(7)]
    params = SamplingParams(max_tokens=28, temperature=0, ignore_eos=True)

    def run(tail: float) -> tuple[list[list[int]], int]:
        # 7 x (20 + 28) tokens need 21 blocks of 16 at the end; 19 hold 6 with the reserve
        llm = LLM(tiny_llama, dtype="float32", device="cpu", kv_cache_memory_bytes=19 * 8192,
                  max_num_batched_tokens=256, admission_tail_overcommit=tail)  # fmt: skip
        outs = llm.generate(prompts, params)
        assert llm.engine.blocks.allocator.num_used == 0
        return [list(o.token_ids) for o in outs], llm.engine.stats.num_preemptions

    (off, off_pre), (on, on_pre) = run(0.0), run(0.2)
    assert on == off
    assert off_pre == 0 and on_pre > 0


def test_the_bench_takes_a_list_of_shares() -> None:
    from runtime.bench.__main__ import tail_overcommits

    assert tail_overcommits(None) == [None]
    assert tail_overcommits("0.1,0") == [0.1, 0.0]
    with pytest.raises(SystemExit, match="comma list of numbers"):
        tail_overcommits("0.1,lots")
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(SystemExit, match=r"each share is in \[0, 1\]"):
            tail_overcommits(bad)
