"""The two search stages against an exhaustive search of the same model: every nano-batch
split on the grid, every layer shift and every order on both units, each solved as a linear
program (scipy's linprog, written here from the model's rules); and Gurobi against HiGHS."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from runtime.tune.costs import SEGMENTS, UNIT, BatchShape, Costs, Layout, layouts
from runtime.tune.milp import Solver, gurobi_available
from runtime.tune.schedule import grid_points, stage_one, stage_two
from tests.runtime.tune.synthetic import linear_profile, synthetic_profile

SOLVERS = [
    Solver.HIGHS,
    pytest.param(
        Solver.GUROBI,
        marks=pytest.mark.skipif(not gurobi_available(), reason="gurobipy is not installed"),
    ),
]


MIXED = BatchShape(448, 64, 2048)


def small_costs(shape: BatchShape = MIXED) -> Costs:
    """A 32-SM device where overlap pays on two plain streams despite 15% interference and
    the HBM bound (a 512-token mixed batch: GEMMs compute-bound, attention memory-bound)."""
    prof = synthetic_profile(device_sms=32, per_sm_gb_s=100.0, hbm_gb_s=1500.0, slowdown=1.15,
                             tflops=60.0, launch_us=3.0)  # fmt: skip
    return Costs(prof, shape)


def cutoff(costs: Costs) -> float:
    """Twice the dense forward: a loose bound that keeps the big-M constants realistic."""
    return 2 * 32 * costs.dense_layer_us()


@functools.cache
def exhaustive_optimum() -> float:
    costs = small_costs()
    return exhaustive(costs, streams(costs), 2, granules=4)


def streams(costs: Costs) -> Layout:
    return next(lay for lay in layouts(costs.profile) if lay.name == "streams")


def lp_forward(costs: Costs, layout: Layout, bounds, shift, orders) -> float | None:
    """min layers * T + extra for fixed rows, shifts and unit orders (None: infeasible)."""
    keys = [(k, s) for k in range(len(bounds)) for s in SEGMENTS]
    d = {(k, s): costs.us(layout, s, *bounds[k]) for k, s in keys}
    col = {key: i for i, key in enumerate(keys)}
    t_, hi_, lo_, ex_ = len(keys), len(keys) + 1, len(keys) + 2, len(keys) + 3
    nv = len(keys) + 4
    rows, rhs = [], []

    def le(coefs: dict[int, float], b: float) -> None:  # sum coefs x <= b
        r = np.zeros(nv)
        for i, c in coefs.items():
            r[i] += c
        rows.append(r)
        rhs.append(b)

    for key in keys:
        le({col[key]: 1, t_: -1}, -d[key])  # tau + d <= T
        le({lo_: 1, col[key]: -1, t_: shift[key]}, 0)  # lo <= tau - m T
        le({col[key]: 1, t_: -shift[key], hi_: -1}, -d[key])  # tau - m T + d <= hi
    for k in range(len(bounds)):
        for a, b in (("pre", "att"), ("att", "post")):
            # tau_a - m_a T + d_a <= tau_b - m_b T
            le({col[k, a]: 1, t_: -shift[k, a] + shift[k, b], col[k, b]: -1}, -d[k, a])
        # tau_post + d_post <= tau_pre + T (1 - m_pre + m_post)
        le({col[k, "post"]: 1, col[k, "pre"]: -1, t_: -(1 - shift[k, "pre"] + shift[k, "post"])},
           -d[k, "post"])  # fmt: skip
    for order in orders:
        for a, b in itertools.pairwise(order):
            le({col[a]: 1, col[b]: -1}, -d[a])
    if layout.concurrent:
        traffic = sum(costs.hbm_us(costs.bytes(s, *bounds[k])) for k, s in keys)
        le({t_: -1}, -traffic)
    le({hi_: 1, lo_: -1, t_: -1, ex_: -1}, 0)  # span - T <= extra
    c = np.zeros(nv)
    c[t_], c[ex_] = costs.profile.shape.num_layers, 1
    bnds = [(0, None)] * len(keys) + [(0, None), (None, None), (None, None), (0, None)]
    res = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=bnds, method="highs")
    return float(res.fun) if res.status == 0 else None


def exhaustive(costs: Costs, layout: Layout, n: int, granules: int) -> float:
    points = grid_points(costs.shape.tokens, granules)
    best = float("inf")
    chains = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1)]  # (pre, att, post) shifts: m_b <= m_a
    for cuts in itertools.combinations(points[1:-1], n - 1):
        edges = [points[0], *cuts, points[-1]]
        bounds = list(itertools.pairwise(edges))
        for pattern in itertools.product(chains, repeat=n):
            shift = {(k, s): pattern[k][i] for k in range(n) for i, s in enumerate(SEGMENTS)}
            keys = list(shift)
            unit0 = [key for key in keys if UNIT[key[1]] == 0]
            unit1 = [key for key in keys if UNIT[key[1]] == 1]
            for o0 in itertools.permutations(unit0):
                for o1 in itertools.permutations(unit1):
                    v = lp_forward(costs, layout, bounds, shift, (o0, o1))
                    if v is not None:
                        best = min(best, v)
    return best


@pytest.mark.parametrize("solver", SOLVERS)
def test_stage_one_finds_the_exhaustive_optimum(solver: Solver) -> None:
    costs = small_costs()
    want = exhaustive_optimum()
    got = stage_one(costs, streams(costs), 2, 4, solver, 60.0, cutoff(costs))
    assert got.optimal
    assert got.forward_us(32) == pytest.approx(want, rel=1e-6)
    # the schedule read back obeys the model: tau + d <= period, deps hold
    for key, t in got.tau.items():
        assert t + got.durations[key] <= got.period_us * (1 + 1e-6)
    dense = costs.dense_layer_us() * 32
    assert want < dense  # overlap pays on this instance


@pytest.mark.parametrize("solver", SOLVERS)
def test_stage_two_picks_the_best_layout_for_the_structure(solver: Solver) -> None:
    costs = small_costs()
    options = layouts(costs.profile)
    first = stage_one(costs, streams(costs), 2, 4, solver, 60.0, cutoff(costs))
    got = stage_two(costs, first, options, solver, 60.0, cutoff(costs))
    keys = list(first.tau)
    issue = first.issue_order()
    orders = [sorted((k for k in keys if UNIT[k[1]] == u), key=issue.index) for u in (0, 1)]
    per_layout = {lay.name: lp_forward(costs, lay, first.bounds, first.shift, orders)
                  for lay in options}  # fmt: skip
    feasible = {k: v for k, v in per_layout.items() if v is not None}
    assert got.forward_us(32) == pytest.approx(min(feasible.values()), rel=1e-6)
    assert per_layout[got.layout.name] == pytest.approx(got.forward_us(32), rel=1e-6)


@pytest.mark.skipif(not gurobi_available(), reason="gurobipy is not installed")
@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("shape", [BatchShape(512, 0, 1024), BatchShape(64, 448, 2048)])
def test_gurobi_and_highs_agree(n: int, shape: BatchShape) -> None:
    costs = small_costs(shape)
    layout = layouts(costs.profile)[1]
    a = stage_one(costs, layout, n, 8, Solver.HIGHS, 60.0, cutoff(costs))
    b = stage_one(costs, layout, n, 8, Solver.GUROBI, 60.0, cutoff(costs))
    assert a.optimal and b.optimal
    assert a.forward_us(32) == pytest.approx(b.forward_us(32), rel=1e-6)
    assert (a.solver, b.solver) == ("highs", "gurobi")


def test_balanced_linear_costs_halve_the_period() -> None:
    """No fixed costs, attention as slow as the rest, no interference, no HBM limit: two
    nano-batches overlap perfectly, the period is half the dense layer."""
    prof = linear_profile(att_us_per_row=2.0, rest_us_per_row=2.0)
    costs = Costs(prof, BatchShape(512, 0, 1024))
    dense_layer = costs.dense_layer_us()
    assert dense_layer == pytest.approx(2048.0)
    s = stage_one(costs, streams(costs), 2, 8, Solver.HIGHS, 60.0, cutoff(costs))
    assert s.period_us == pytest.approx(dense_layer / 2, rel=1e-6)
    assert s.bounds == ((0, 256), (256, 512))
