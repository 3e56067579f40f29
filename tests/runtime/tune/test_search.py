"""The whole search on synthetic profiles: a plan or dense per bucket, validated plan files, a
plan set that round-trips; dense wherever overlap cannot pay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runtime.pipeline import validate
from runtime.pipeline.plans import LLAMA_OPS
from runtime.pipeline.planset import PlanSet
from runtime.tune import BatchShape, SearchConfig, search_plans, search_shape
from tests.runtime.tune.synthetic import synthetic_profile

SMALL_GRID = SearchConfig(decode_points=(0, 64, 512), prefill_points=(0, 512),
                          context_points=(1024, 4096), max_nano_batches=3)  # fmt: skip


def overlap_pays():
    """An H200-shaped roofline where the attention side keeps full bandwidth on few SMs."""
    return synthetic_profile(device_sms=32, per_sm_gb_s=300.0, hbm_gb_s=4300.0, tflops=780.0,
                             slowdown=1.1)  # fmt: skip


def test_search_writes_valid_plans_and_a_plan_set(tmp_path: Path) -> None:
    prof = overlap_pays()
    planset, results = search_plans(prof, SMALL_GRID, profile_name="synthetic.json")
    assert len(planset.buckets) == len(results) == 2 * 3 * 2 - 2
    chosen = [r for r in results if r.plan is not None]
    assert chosen, "overlap should pay somewhere on this profile"
    assert any(r.plan is None for r in results), "and not at 64 decodes, where weights dominate"
    for r in chosen:
        validate(r.plan, LLAMA_OPS, prof.device_sms)
        assert r.predicted_us < r.dense_us * (1 - SMALL_GRID.margin)
        assert r.plan.batch_tokens == r.shape.tokens
    path = planset.save(tmp_path / "set")
    again = PlanSet.load(path)
    assert again.buckets == planset.buckets
    assert again.plans == planset.plans
    for b in again.buckets:
        plan = again.plan_for(b.decodes, b.prefill_tokens, b.context)
        assert (plan is None) == (b.plan is None)
        if plan is not None:
            assert b.predicted_ms < b.dense_ms


def test_the_plan_set_records_the_profiles_kv_cache_dtype() -> None:
    prof = overlap_pays()
    assert "kv_cache_dtype" not in prof.notes  # a profile from before the field: bf16
    assert search_plans(prof, SMALL_GRID)[0].kv_cache_dtype == "bfloat16"
    fp8 = dataclasses.replace(prof, notes={**prof.notes, "kv_cache_dtype": "float8_e4m3fn"})
    assert search_plans(fp8, SMALL_GRID)[0].kv_cache_dtype == "float8_e4m3fn"


def test_small_weight_bound_batches_stay_dense() -> None:
    """64 decodes: every nano-batch re-reads the weights, so splitting only costs."""
    r = search_shape(overlap_pays(), BatchShape(64, 0, 1024), SMALL_GRID)
    assert r.plan is None
    assert r.predicted_us == r.dense_us


def test_heavy_interference_makes_dense_win_everywhere() -> None:
    prof = synthetic_profile(device_sms=32, per_sm_gb_s=300.0, slowdown=2.5)
    planset, results = search_plans(prof, SMALL_GRID)
    assert all(b.plan is None for b in planset.buckets)
    assert not planset.plans
    assert all(r.predicted_us == r.dense_us for r in results)


def test_a_device_without_overlap_is_dense_with_the_reason() -> None:
    prof = synthetic_profile(concurrent=False)
    r = search_shape(prof, BatchShape(512, 0, 1024), SMALL_GRID)
    assert r.plan is None and "one stream at a time" in r.reason


def test_bad_search_config() -> None:
    with pytest.raises(ValueError, match="max_nano_batches"):
        SearchConfig(max_nano_batches=1)


def test_capped_grid_layouts_become_plans_with_max_sms() -> None:
    from runtime.tune.costs import Costs, layouts
    from runtime.tune.emit import to_plan
    from runtime.tune.milp import Solver
    from runtime.tune.schedule import stage_one

    prof = synthetic_profile(device_sms=32, per_sm_gb_s=300.0, slowdown=1.1, grid=True)
    costs = Costs(prof, BatchShape(512, 0, 2048))
    grid = [lay for lay in layouts(prof) if lay.name.startswith("grid:")]
    assert [lay.attention_cap for lay in grid] == [8, 16, 24]
    s = stage_one(costs, grid[1], 2, 8, Solver.HIGHS, 30.0, 1e3 * costs.dense_layer_us())
    plan = to_plan("grid", s, costs)  # validated inside
    att = plan.split("attention").unit
    assert (att.partition, att.stream, att.max_sms) == (0, 1, 16)
    assert len(plan.partitions) == 1 and plan.partitions[0].num_sms == 32
    assert {o.unit.max_sms for o in plan.ops if o.op != "attention"} == {None}


def test_parallel_search_gives_the_serial_answer() -> None:
    prof = overlap_pays()
    grid = dataclasses.replace(SMALL_GRID, context_points=(1024,), max_nano_batches=2)
    serial, _ = search_plans(prof, grid)
    parallel, results = search_plans(prof, dataclasses.replace(grid, jobs=2))
    assert parallel.buckets == serial.buckets
    assert parallel.plans == serial.plans
    assert [r.shape for r in results] == [
        BatchShape(d, p, 1024) for d in (0, 64, 512) for p in (0, 512) if d + p
    ]


def test_explore_keeps_near_misses_as_candidates_never_as_plans() -> None:
    """Heavy interference: no pipeline beats dense, but with ``explore`` the best one within
    that fraction of dense is kept as the bucket's candidate (to measure), never as its plan."""
    prof = synthetic_profile(device_sms=32, per_sm_gb_s=300.0, slowdown=2.5)
    shape = BatchShape(512, 0, 1024)
    plain = search_shape(prof, shape, SMALL_GRID)
    assert plain.plan is None and plain.candidate is None and plain.schedule is None
    near = search_shape(prof, shape, dataclasses.replace(SMALL_GRID, explore=0.9))
    assert near.plan is None and near.candidate is not None and near.schedule is not None
    slower = near.schedule.forward_us(prof.shape.num_layers)
    assert near.dense_us <= slower <= near.dense_us * 1.9
    assert near.predicted_us == near.dense_us
    validate(near.candidate, LLAMA_OPS, prof.device_sms)
    with pytest.raises(ValueError, match="explore"):
        SearchConfig(explore=1.0)
