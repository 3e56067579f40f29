"""The pipeline executor on the CPU (streams are no-ops there): the same greedy tokens as the
plain dense forward, for the shipped plans, a plan whose operations split differently, and the
sequential variant; plus the nano-batch split of a real batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from runtime import LLM, SamplingParams
from runtime.pipeline import OpSplit, Plan, PlanError, Step, Unit, two_partition_plan
from runtime.pipeline.plans import LLAMA_OPS
from runtime.pipeline.split import snap_bounds

PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30, [11, 12]]


def greedy(n: int = 10) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, logprobs=True)


def mixed_plan() -> Plan:
    """QKV in 3 nano-batches, attention in 4, MLP in 2, norms whole: rows are regrouped."""
    base = two_partition_plan("mixed", [1, 1], attention_sms=8, device_sms=16)
    sizes = {"qkv_proj": (3, 3, 2), "rope": (3, 3, 2), "store_kv": (3, 3, 2),
             "attention": (2, 2, 2, 2), "input_norm": (8,), "post_attn_norm": (8,)}  # fmt: skip
    ops = tuple(replace(s, sizes=sizes.get(s.op, (4, 4))) for s in base.ops)
    order = [Step(s.op, k) for s in ops for k in range(len(s.sizes))]
    return replace(base, batch_tokens=8, ops=ops, order=tuple(order))


@pytest.fixture(scope="module")
def dense(tiny_llama: str) -> list:
    return LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=64).generate(
        PROMPTS, greedy()
    )


@pytest.mark.parametrize("spec", ["default", "default:sequential", "mixed"])
def test_pipeline_gives_the_dense_tokens(
    tiny_llama: str, dense: list, spec: str, tmp_path: Path
) -> None:
    if spec == "mixed":
        path = tmp_path / "mixed.json"
        path.write_text(mixed_plan().to_json())
        spec = str(path)
    llm = LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=64, pipeline=spec)
    assert type(llm.engine.runner.forward).__name__ == "PipelineForward"
    outs = llm.generate(PROMPTS, greedy())
    for a, b in zip(outs, dense, strict=True):
        assert a.token_ids == b.token_ids
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_executor_records_every_step_once(tiny_llama: str) -> None:
    llm = LLM(tiny_llama, dtype="float32", device="cpu", pipeline="default")
    ex = llm.engine.runner.forward.executor_for(4, 4)  # type: ignore[attr-defined]
    ex.trace = []
    llm.generate([[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]], greedy(2))
    steps = {(t.layer, t.op, t.nano_batch) for t in ex.trace}
    layers = len(llm.engine.model.layers)
    assert {op for _, op, _ in steps} == set(LLAMA_OPS)
    assert {lay for lay, _, _ in steps} == set(range(layers))
    assert all(t.rows[0] < t.rows[1] for t in ex.trace)
    assert {k for _, _, k in steps} == {0, 1}  # four decodes: two nano-batches of two
    assert {t.rows for t in ex.trace if t.op == "attention"} == {(0, 2), (2, 4)}


def test_snap_bounds_follow_sequences() -> None:
    # sequences start at rows 0, 1, 2, 10, 40: cuts land on sequence starts, in order
    starts = [0, 1, 2, 10, 40]
    assert snap_bounds([128, 128], starts) == [(0, 10), (10, 40)]
    assert snap_bounds([1, 1, 1, 1], [0, 40]) == [(0, 0), (0, 0), (0, 40), (40, 40)]
    assert snap_bounds([3, 1], list(range(9))) == [(0, 6), (6, 8)]


def test_mixed_plan_is_valid() -> None:
    from runtime.pipeline import validate

    validate(mixed_plan(), LLAMA_OPS, 16)
    assert OpSplit("act", (4, 4), Unit(0)) in mixed_plan().ops


def test_a_carve_plan_gives_the_dense_tokens(tiny_llama: str, dense: list, tmp_path: Path) -> None:
    """Attention confined to 8 SMs on a second stream, the rest aimed at the other 8 (the
    search's carve layout): valid, and the dense tokens (the CPU has no SM-aimed kernels)."""
    from runtime.pipeline import carve_plan, validate

    plan = carve_plan("carve", [4, 4], attention_sms=8, device_sms=16)
    validate(plan, LLAMA_OPS, 16)
    caps = {(s.op == "attention", s.unit.stream, s.unit.max_sms) for s in plan.ops}
    assert caps == {(True, 1, 8), (False, 0, 8)} and len(plan.partitions) == 1
    path = tmp_path / "carve.json"
    path.write_text(plan.to_json())
    llm = LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=64,
              pipeline=str(path))  # fmt: skip
    outs = llm.generate(PROMPTS, greedy())
    assert [o.token_ids for o in outs] == [o.token_ids for o in dense]


def test_a_carve_plan_caps_both_units_and_refuses_a_budget_outside_the_device() -> None:
    """A carve plan caps attention at its SMs and the other operations at the rest (the
    executor sizes attention's grid to the first and aims the GEMMs at the second)."""
    from runtime.pipeline import carve_plan

    carve = carve_plan("carve", [4, 4], attention_sms=8, device_sms=16)
    assert carve.split("attention").unit.max_sms == 8
    assert {s.unit.max_sms for s in carve.ops if s.op != "attention"} == {8}
    narrow = carve_plan("narrow", [4, 4], attention_sms=4, device_sms=16)
    assert narrow.split("qkv_proj").unit.max_sms == 12
    for bad in (0, 16):  # no SMs for attention, or none left for the GEMMs
        with pytest.raises(PlanError, match="attention_sms must be in"):
            carve_plan("carve", [4, 4], attention_sms=bad, device_sms=16)
