"""The carve layouts: attention's grid sized to N SMs on one plain stream, the GEMMs aimed at
the other SMs (cuBLASLt's SM count target) on another: a partition without green contexts, kept
by the GEMMs. On the H100 (2026-12-02, bench/carve_probe.py) such a pair at 4,096 rows ran 1.12x
faster than the two in turn on the whole GPU, where attention beside unaimed GEMMs did not pay
and attention confined to one program per SM lost in every pair. The layouts are priced from
their own timings and pairs; these tests give them synthetic ones."""

from __future__ import annotations

import dataclasses

from runtime.pipeline import validate
from runtime.pipeline.plans import LLAMA_OPS
from runtime.tune import BatchShape, SearchConfig, search_shape
from runtime.tune.costs import Costs, Layout, layouts
from runtime.tune.emit import to_plan
from runtime.tune.milp import Solver
from runtime.tune.profiles import Interference, Profile
from runtime.tune.schedule import stage_one
from tests.runtime.tune.synthetic import KINDS, synthetic_profile

SMS = 132  # the H200's
BUDGETS = range(8, SMS, 8)
GEMMS = [o for o in LLAMA_OPS if KINDS.get(o) == "gemm"]
GRID = SearchConfig(decode_points=(512,), prefill_points=(2048,), context_points=(2048,),
                    max_nano_batches=2)  # fmt: skip


def straggling(carve: bool) -> Profile:
    """An H200-shaped profile (no green contexts: they faulted there) whose operations on the
    whole device run 3x slower beside attention on a second stream, its grid uncapped or sized
    to N SMs (such a grid spreads over the device), while aimed at the rest of the SMs beside
    the same grid:N attention they run at their share, slowed 5%."""
    prof = synthetic_profile(device_sms=SMS, per_sm_gb_s=300.0, grid=True, carve=carve)
    timings = tuple(t for t in prof.timings if not t.placement.startswith("green:"))
    others = [op for op in LLAMA_OPS if op != "attention"]
    pairs = [Interference(op, "attention", "whole", 256, 3.0, "whole") for op in others]
    pairs += [Interference("attention", g, "whole", 256, 1.1, "whole") for g in GEMMS]
    for n in BUDGETS:
        for att, rest, slowdown in ((f"grid:{n}", "whole", 3.0),
                                    (f"grid:{n}", f"carve:{SMS - n}", 1.05)):  # fmt: skip
            pairs += [Interference("attention", g, att, 256, 1.1, rest) for g in GEMMS]
            pairs += [Interference(op, "attention", rest, 256, slowdown, att) for op in others]
    return dataclasses.replace(prof, timings=timings, interference=tuple(pairs))


def test_carve_layouts_come_from_carve_timings() -> None:
    assert not [lay for lay in layouts(straggling(False)) if lay.name.startswith("carve:")]
    carve = [lay for lay in layouts(straggling(True)) if lay.name.startswith("carve:")]
    assert carve == [Layout(f"carve:{n}", f"grid:{n}", f"carve:{SMS - n}", True)
                     for n in BUDGETS]  # fmt: skip
    assert (carve[1].attention_cap, carve[1].other_cap) == (16, 116)
    assert Layout("grid:8", "grid:8", "whole", True).other_cap is None


def test_a_carve_plan_caps_both_units() -> None:
    prof = straggling(True)
    costs = Costs(prof, BatchShape(512, 0, 2048))
    lay = next(lay for lay in layouts(prof) if lay.name == "carve:8")
    s = stage_one(costs, lay, 2, 8, Solver.HIGHS, 30.0, 1e3 * costs.dense_layer_us())
    plan = to_plan("carve", s, costs)  # validated inside
    assert plan.split("attention").unit.max_sms == 8
    assert {o.unit.max_sms for o in plan.ops if o.op != "attention"} == {SMS - 8}
    assert len(plan.partitions) == 1 and plan.partitions[0].num_sms == SMS


def test_the_search_finds_overlap_only_through_the_carve() -> None:
    """The grid layouts alone lose to dense under the straggling GEMMs; the same profile with
    the carve timings yields a plan, and it is a carve plan (a mixed iteration: 512 decodes
    beside 2,048 prefill rows)."""
    shape = BatchShape(512, 2048, 2048)
    assert search_shape(straggling(False), shape, GRID).plan is None
    found = search_shape(straggling(True), shape, GRID)
    assert found.plan is not None and found.predicted_us < found.dense_us
    validate(found.plan, LLAMA_OPS, SMS)
    caps = {o.unit.max_sms for o in found.plan.ops if o.op != "attention"}
    assert caps == {SMS - found.plan.split("attention").unit.max_sms}


def test_a_grid_timed_only_beside_a_carve_is_no_grid_layout() -> None:
    """A carve budget outside the grid caps times attention's grid:N only beside the carve's
    rest: the search gets carve:N but no grid:N beside the whole device, whose interference
    was never measured (it would be priced as none)."""
    prof = straggling(True)
    n = 24
    pairs = tuple(f for f in prof.interference
                  if not (f"grid:{n}" in (f.placement, f.partner) and "whole" in
                          (f.placement, f.partner)))  # fmt: skip
    names = {lay.name for lay in layouts(dataclasses.replace(prof, interference=pairs))}
    assert f"carve:{n}" in names and f"grid:{n}" not in names
    assert "grid:16" in names and "carve:16" in names
