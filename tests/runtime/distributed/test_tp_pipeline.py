"""The pipeline's network stage under tensor parallelism: the plan format and its rules, the
tensor-parallel layer's operations, and two gloo ranks running a network-stage plan (the
all-reduces of one nano-batch on their own unit and communicator) giving one process's tokens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.config import ModelConfig, read_json
from runtime.distributed.tensor_parallel import TPDecoderLayer, TPLayout
from runtime.model.llama import DecoderLayer, OpKind
from runtime.pipeline.plan import Plan, PlanError, Step, Unit
from runtime.pipeline.plans import LLAMA_OPS, NETWORK_OPS, TP_LLAMA_OPS, network_plan
from runtime.pipeline.validate import validate

PROMPTS = ["The quick brown fox", "Programs ask questions, pick answers", "0 1 2 3"]
ENGINE = dict(dtype="float32", device="cpu", max_num_batched_tokens=16)


def test_the_tensor_parallel_layer_has_an_allreduce_after_each_row_parallel_gemm(
    tiny_models: dict[str, str],
) -> None:
    cfg = ModelConfig.from_hf(read_json(Path(tiny_models["llama"]) / "config.json"))
    layer = DecoderLayer(cfg, 0, torch.float32)
    dense = [op.name for op in layer.operations()]
    layer.__class__ = TPDecoderLayer
    layer.tp = TPLayout(0, 2)
    ops = layer.operations()
    assert dense == list(LLAMA_OPS)
    assert [op.name for op in ops] == list(TP_LLAMA_OPS)
    assert [op.name for op in ops if op.kind is OpKind.NETWORK] == list(NETWORK_OPS)


def test_a_network_plan_round_trips_and_validates_for_the_tensor_parallel_layer() -> None:
    plan = network_plan("net", (96, 160), network_ctas=8)
    validate(plan, TP_LLAMA_OPS, 132, NETWORK_OPS)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    net = {s.op: s.unit for s in again.ops if s.op in NETWORK_OPS}
    assert set(net.values()) == {Unit(0, 1, 8)}  # their own stream, capped at 8 CTAs
    # the collective of nano-batch 0 is issued before nano-batch 1's GEMMs, which overlap it
    order = [str(s) for s in again.order]
    assert order.index("o_allreduce#0") < order.index("o_proj#1")
    assert order.index("down_allreduce#0") < order.index("down_proj#1")
    validate(plan.sequential(), TP_LLAMA_OPS, 132, NETWORK_OPS)  # the one-stream baseline


def test_network_plan_rules_name_the_offending_part() -> None:
    plan = network_plan("net", (64, 64))
    with pytest.raises(PlanError, match=r"unknown operations.*o_allreduce"):
        validate(plan, LLAMA_OPS, 132)  # the dense model has no collectives
    two_units = dataclasses.replace(plan, ops=tuple(
        dataclasses.replace(s, unit=Unit(0, 2)) if s.op == "down_allreduce" else s
        for s in plan.ops))  # fmt: skip
    with pytest.raises(PlanError, match="network operations must share one unit"):
        validate(two_units, TP_LLAMA_OPS, 132, NETWORK_OPS)
    shared = dataclasses.replace(plan, ops=tuple(
        dataclasses.replace(s, unit=Unit(0, 1)) if s.op == "act" else s for s in plan.ops))
    with pytest.raises(PlanError, match=r"also given \['act'\]"):
        validate(shared, TP_LLAMA_OPS, 132, NETWORK_OPS)
    early = list(plan.order)
    i, j = early.index(Step("o_proj", 0)), early.index(Step("o_allreduce", 0))
    early[i], early[j] = early[j], early[i]
    with pytest.raises(PlanError, match=r"issues o_allreduce#0 .* before its dependency o_proj#0"):
        validate(dataclasses.replace(plan, order=tuple(early)), TP_LLAMA_OPS, 132, NETWORK_OPS)
    with pytest.raises(PlanError, match="at least two nano-batches"):
        network_plan("one", (128,))
    with pytest.raises(PlanError, match="max_sms 200 must be in"):
        validate(network_plan("big", (64, 64), network_ctas=200), TP_LLAMA_OPS, 132, NETWORK_OPS)


@pytest.mark.slow
def test_two_ranks_with_a_network_stage_match_one_process(
    tiny_models: dict[str, str], tmp_path: Path
) -> None:
    """Two gloo workers run a network-stage plan (two nano-batches, the all-reduces on a
    communicator of their own) and give one process's greedy tokens and prompt logprobs."""
    path = tmp_path / "net.json"
    path.write_text(network_plan("tiny-net", (8, 8), network_ctas=8).to_json())
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True, prompt_logprobs=True)
    dense = LLM(tiny_models["llama"], **ENGINE)  # type: ignore[arg-type]
    want = dense.generate(PROMPTS, params)
    with LLM(tiny_models["llama"], tensor_parallel_size=2, pipeline=str(path),
             **ENGINE) as llm:  # type: ignore[arg-type]  # fmt: skip
        assert "tiny-net" in llm.engine.runner.ready[0].pipeline  # type: ignore[union-attr]
        got = llm.generate(PROMPTS, params)
    for g, w in zip(got, want, strict=True):
        assert g.token_ids == w.token_ids
        assert g.prompt_logprobs[1:] == pytest.approx(w.prompt_logprobs[1:], abs=1e-4)


@pytest.mark.slow
def test_the_default_pipeline_at_two_ranks_searches_and_matches_one_process(
    tiny_models: dict[str, str],
) -> None:
    """'default' under TP: the ranks measure their all-reduce, agree and search; on the CPU
    nothing overlaps, so every bucket is dense, and the tokens are one process's."""
    params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    want = [o.token_ids for o in LLM(tiny_models["llama"], **ENGINE).generate(PROMPTS, params)]  # type: ignore[arg-type]
    with LLM(tiny_models["llama"], tensor_parallel_size=2, pipeline="default",
             **ENGINE) as llm:  # type: ignore[arg-type]  # fmt: skip
        described = llm.engine.runner.ready[0].pipeline  # type: ignore[union-attr]
        assert "0 plans" in described and "dense" in described
        # dense everywhere: the ranks keep the model's own forward, and the engine says so
        assert described.endswith("the dense forward (the model's own)")
        assert llm.engine.pipeline_summary == described
        assert [o.token_ids for o in llm.generate(PROMPTS, params)] == want
