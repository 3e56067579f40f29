"""plan_step's one-pass loop (with its decode fast path) plans exactly what the straightforward
per-token planner did, on real engine batches: decodes, chunked prefills, pending tokens under
async scheduling, prompt logprobs, sampled and greedy requests."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

import runtime.model_runner as model_runner
from runtime import LLM, SamplingParams
from runtime.block_manager import BlockManager
from runtime.scheduler import SchedulerOutput
from runtime.step_plan import StepPlan, plan_step


def reference_rows(
    batch: SchedulerOutput, prev_row_of: dict[int, int] | None, blocks: BlockManager
) -> dict[str, list[int]]:
    """The per-token planner plan_step replaced: token by token, one loop per field."""
    ids, positions, slots, cu, ctx, sample_rows = [], [], [], [0], [], []
    for entry in batch.scheduled:
        seq, start, n = entry.seq, entry.seq.num_computed_tokens, entry.num_tokens
        ids.extend(max(t, 0) for t in seq.token_ids[start : start + n])
        positions.extend(range(start, start + n))
        slots.extend(blocks.slot(seq, p) for p in range(start, start + n))
        if entry.samples:
            sample_rows.append(len(ids) - 1)
        cu.append(len(ids))
        ctx.append(start + n)
    patch_rows, patch_src, row = [], [], 0
    for entry in batch.scheduled:
        row += entry.num_tokens
        seq = entry.seq
        if seq.num_pending and seq.num_computed_tokens + entry.num_tokens == seq.num_tokens:
            assert prev_row_of is not None
            patch_rows.append(row - 1)
            patch_src.append(prev_row_of[seq.seq_id])
    return {"input_ids": ids, "positions": positions, "slots": slots, "cu_seqlens": cu,
            "context_lens": ctx, "sample_rows": sample_rows, "patch_rows": patch_rows,
            "patch_src": patch_src}  # fmt: skip


def as_lists(plan: StepPlan) -> dict[str, list[int]]:
    out = {}
    for name in ("input_ids", "positions", "slots", "cu_seqlens", "context_lens", "sample_rows",
                 "patch_rows", "patch_src"):  # fmt: skip
        value = getattr(plan, name)
        out[name] = value.tolist() if isinstance(value, np.ndarray) else list(value)
    return out


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_plan_matches_the_per_token_planner(
    tiny_llama: str, monkeypatch: pytest.MonkeyPatch, async_scheduling: bool
) -> None:
    checked: list[int] = []
    patched: list[int] = []
    prompt_tokens: list[int] = []  # ScheduledSequence.is_decode's count, before _launch advances

    def checking_plan_step(batch, prev_row_of, blocks, max_graph_batch, vocab_size):  # type: ignore[no-untyped-def]
        expected = reference_rows(batch, prev_row_of, blocks)
        plan = plan_step(batch, prev_row_of, blocks, max_graph_batch, vocab_size)
        assert as_lists(plan) == expected
        samplers = [e.seq for e in batch.scheduled if e.samples]
        assert plan.top_k == [s.params.top_logprobs if s.params.logprobs else 0 for s in samplers]
        assert plan.num_decode_seqs == batch.num_decode_seqs
        checked.append(len(batch.scheduled))
        patched.append(len(plan.patch_rows))
        prompt_tokens.append(sum(e.num_tokens for e in batch.scheduled if not e.is_decode))
        return plan

    monkeypatch.setattr(model_runner, "plan_step", checking_plan_step)
    # a small token budget: long prompts are chunked while others decode
    llm = LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=24,
              async_scheduling=async_scheduling)  # fmt: skip
    prompts = [list(range(5, 5 + n)) for n in (3, 40, 7, 61, 1, 18)]
    params = [
        SamplingParams(max_tokens=9, temperature=0, ignore_eos=True),
        SamplingParams(max_tokens=6, seed=2, prompt_logprobs=2, logprobs=True, top_logprobs=2),
        SamplingParams(max_tokens=12, seed=5, ignore_eos=True),
        SamplingParams(max_tokens=4, temperature=0, ignore_eos=True, logprobs=True),
        SamplingParams(max_tokens=10, temperature=0, ignore_eos=True),
        SamplingParams(max_tokens=7, seed=9, prompt_logprobs=1),
    ]
    outs = llm.generate(prompts, params)
    assert len(outs[0].token_ids) == 9
    assert max(checked) >= 4 and len(checked) > 10
    assert all(asdict(o.metrics)["first_scheduled_iteration"] is not None for o in outs)
    assert (sum(patched) > 0) == async_scheduling  # pending input tokens only when async
    # _launch's own decode test counted the same prefill tokens as ScheduledSequence.is_decode
    assert llm.engine.stats.prompt_tokens_computed == sum(prompt_tokens) > 0
