"""Plan validation on the CPU: the shipped plans are valid, every invalid plan is rejected with a
message that says what is wrong, and plans survive a JSON round trip."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runtime.pipeline import OpSplit, Partition, Plan, PlanError, Step, Unit, validate
from runtime.pipeline.plans import LLAMA_OPS, default_plans, load_plans, two_partition_plan


@pytest.fixture
def plan() -> Plan:
    return two_partition_plan("test", [96, 160], attention_sms=48)


def _with_split(plan: Plan, op: str, **changes: object) -> Plan:
    ops = tuple(replace(s, **changes) if s.op == op else s for s in plan.ops)  # type: ignore[arg-type]
    return replace(plan, ops=ops)


def test_shipped_and_generated_plans_are_valid(plan: Plan) -> None:
    validate(plan, LLAMA_OPS, 132)
    for p in default_plans().values():
        validate(p, LLAMA_OPS, 132)
        validate(p.sequential(), LLAMA_OPS, 132)
    assert set(load_plans("default:sequential")) == {"decode", "prefill"}


def test_json_round_trip(plan: Plan) -> None:
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert Plan.from_json(again.to_json()).to_dict() == plan.to_dict()


def test_overlapping_partitions(plan: Plan) -> None:
    bad = replace(plan, partitions=(Partition(0, 40, 92), Partition(1, 0, 48)))
    with pytest.raises(PlanError, match=r"partitions 1 \[0, 48\) and 0 \[40, 132\) overlap"):
        validate(bad, LLAMA_OPS, 132)


def test_sm_counts_over_the_device(plan: Plan) -> None:
    with pytest.raises(PlanError, match=r"uses SMs \[48, 132\) but the device has 114 SMs"):
        validate(plan, LLAMA_OPS, 114)
    big = replace(plan, partitions=(Partition(0, 48, 100), Partition(1, 0, 48)))
    with pytest.raises(PlanError, match="device has 132 SMs"):
        validate(big, LLAMA_OPS, 132)


def test_nano_batch_sizes_must_cover_the_batch(plan: Plan) -> None:
    bad = _with_split(plan, "gate_up_proj", sizes=(96, 100))
    with pytest.raises(PlanError, match=r"gate_up_proj: .* cover 196 tokens, the batch has 256"):
        validate(bad, LLAMA_OPS, 132)
    zero = _with_split(plan, "act", sizes=(0, 256))
    with pytest.raises(PlanError, match="act: nano-batch sizes must be >= 1"):
        validate(zero, LLAMA_OPS, 132)


def test_unknown_and_missing_operations(plan: Plan) -> None:
    extra = replace(plan, ops=(*plan.ops, OpSplit("lm_head", (256,), Unit(0))))
    with pytest.raises(PlanError, match=r"unknown operations \['lm_head'\]"):
        validate(extra, LLAMA_OPS, 132)
    missing = replace(plan, ops=tuple(s for s in plan.ops if s.op != "rope"))
    with pytest.raises(PlanError, match=r"missing \['rope'\]"):
        validate(missing, LLAMA_OPS, 132)
    with pytest.raises(PlanError, match="unknown partition 7"):
        validate(_with_split(plan, "rope", unit=Unit(7)), LLAMA_OPS, 132)


def test_dependency_cycle(plan: Plan) -> None:
    # o_proj#0 after down_proj#0 of the same layer, which itself needs o_proj#0
    bad = replace(plan, after=((Step("o_proj", 0), Step("down_proj", 0)),))
    with pytest.raises(PlanError, match=r"dependency cycle: .*o_proj#0.*down_proj#0"):
        validate(bad, LLAMA_OPS, 132)


def test_order_must_follow_dependencies(plan: Plan) -> None:
    order = list(plan.order)
    i, j = order.index(Step("o_proj", 0)), order.index(Step("attention", 0))
    order[i], order[j] = order[j], order[i]
    with pytest.raises(PlanError, match=r"issues o_proj#0 \(layer 0\) before its dependency "):
        validate(replace(plan, order=tuple(order)), LLAMA_OPS, 132)
    unshifted = tuple(replace(s, layer_shift=0) for s in plan.order)
    with pytest.raises(PlanError, match="before its dependency"):
        validate(replace(plan, order=unshifted), LLAMA_OPS, 132)


def test_order_names_each_step_once(plan: Plan) -> None:
    with pytest.raises(PlanError, match=r"order lacks steps \['act#1'\]"):
        validate(replace(plan, order=tuple(s for s in plan.order if str(s) != "act#1")),
                 LLAMA_OPS, 132)  # fmt: skip
    with pytest.raises(PlanError, match="order names act#0 twice"):
        validate(replace(plan, order=(*plan.order, Step("act", 0))), LLAMA_OPS, 132)
    with pytest.raises(PlanError, match="order names act#5, which no operation's split has"):
        validate(replace(plan, order=(*plan.order, Step("act", 5))), LLAMA_OPS, 132)


def test_malformed_json() -> None:
    with pytest.raises(PlanError, match="malformed plan JSON"):
        Plan.from_json('{"name": "x"}')


def test_grid_cap_round_trip_and_bounds(plan: Plan) -> None:
    capped = _with_split(plan, "attention", unit=Unit(1, 0, max_sms=32))
    validate(capped, LLAMA_OPS, 132)
    again = Plan.from_json(capped.to_json())
    assert again == capped and again.split("attention").unit.max_sms == 32
    assert "max_sms" not in plan.to_json()  # absent when uncapped: old plan files unchanged
    with pytest.raises(PlanError, match=r"attention: max_sms 64 must be in \[1, 48\]"):
        validate(_with_split(plan, "attention", unit=Unit(1, 0, max_sms=64)), LLAMA_OPS, 132)
