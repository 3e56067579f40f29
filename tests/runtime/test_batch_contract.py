"""The batch contract the GPU kernels rely on: the first ``num_decode_seqs`` sequences of a batch
are the one-token decodes. The metadata refuses a batch that breaks it, so the CPU path (the torch
reference) fails wherever a GPU kernel would silently compute the wrong attention."""

from __future__ import annotations

import pytest
import torch

from kernels import AttentionMetadata
from runtime import LLM, SamplingParams
from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.scheduler import Scheduler
from runtime.sequence import Sequence


def metadata(q_lens: list[int], num_decode: int) -> AttentionMetadata:
    cu = [0]
    for n in q_lens:
        cu.append(cu[-1] + n)
    ctx = [n + 3 for n in q_lens]
    return AttentionMetadata(
        cu_seqlens_q=torch.tensor(cu, dtype=torch.int32),
        context_lens=torch.tensor(ctx, dtype=torch.int32),
        block_tables=torch.zeros(len(q_lens), 4, dtype=torch.int32),
        slot_mapping=torch.zeros(cu[-1], dtype=torch.int64),
        num_decode_seqs=num_decode, max_query_len=max(q_lens), max_context_len=max(ctx),
        block_size=16, cu_seqlens_q_host=tuple(cu), context_lens_host=tuple(ctx),
    )  # fmt: skip


def test_metadata_accepts_decodes_first() -> None:
    assert metadata([1, 1, 60, 1], 2).num_decode_seqs == 2  # a one-token extend after is fine


@pytest.mark.parametrize(
    ("q_lens", "num_decode"), [([60, 1], 1), ([1, 60, 1], 2), ([1, 1], 3), ([1], -1)]
)
def test_metadata_refuses_a_decode_count_its_rows_do_not_have(
    q_lens: list[int], num_decode: int
) -> None:
    with pytest.raises(ValueError, match="decodes-first contract"):
        metadata(q_lens, num_decode)


def test_scheduler_puts_one_token_admissions_with_the_decodes() -> None:
    blocks = BlockManager(64, 16, enable_prefix_caching=True)
    sched = Scheduler(EngineConfig(block_size=16, max_num_batched_tokens=256), blocks)
    cached = Sequence("a", None, list(range(1, 33)), SamplingParams(), 0, 0)
    sched.add(cached)
    sched.schedule()
    cached.num_computed_tokens = 32
    blocks.register(cached)
    sched.remove(cached)
    sched.add(Sequence("long", None, list(range(100, 160)), SamplingParams(), 0, 1))
    sched.add(Sequence("hit", None, [*range(1, 33), 99], SamplingParams(), 0, 2))
    out = sched.schedule()
    assert [(e.seq.request_id, e.num_tokens) for e in out.scheduled] == [("hit", 1), ("long", 60)]
    assert out.num_decode_seqs == 1


def test_prefix_hit_beside_a_prefill_matches_running_alone(tiny_llama: str) -> None:
    """The issue's reproduction: cache a 32-token prompt, then a batch of a 60-token prompt and
    the cached 32 tokens + 1 (one uncomputed token)."""
    params = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    shared = [(7 * i) % 200 + 3 for i in range(32)]
    long = [(11 * i) % 250 + 1 for i in range(60)]
    alone = LLM(tiny_llama, dtype="float32", device="cpu", enable_prefix_caching=False)
    expected = [o.token_ids for o in alone.generate([long, [*shared, 5]], params)]
    llm = LLM(tiny_llama, dtype="float32", device="cpu", block_size=16)
    llm.generate([shared], params)
    outs = llm.generate([long, [*shared, 5]], params)
    assert outs[1].num_cached_tokens == 32
    assert [o.token_ids for o in outs] == expected
