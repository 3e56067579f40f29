"""The small MILP layer: both solvers give the same optimum on the same model; infeasible models
and a missing Gurobi give clear errors."""

from __future__ import annotations

import pytest

from runtime.tune.milp import Expr, MilpError, Model, Solver, choose_solver, gurobi_available

SOLVERS = [
    Solver.HIGHS,
    pytest.param(
        Solver.GUROBI,
        marks=pytest.mark.skipif(not gurobi_available(), reason="gurobipy is not installed"),
    ),
]


def knapsack() -> tuple[Model, list]:
    """Values 10, 13, 7, 8; weights 5, 7, 4, 3; capacity 12: the best is items 0, 2, 3 (25)."""
    m = Model("knapsack")
    xs = [m.binary(f"x{i}") for i in range(4)]
    m.constrain(Expr.of(*[(w, x) for w, x in zip((5, 7, 4, 3), xs, strict=True)]), hi=12)
    m.minimize(Expr.of(*[(-v, x) for v, x in zip((10, 13, 7, 8), xs, strict=True)]))
    return m, xs


@pytest.mark.parametrize("solver", SOLVERS)
def test_knapsack_optimum(solver: Solver) -> None:
    m, xs = knapsack()
    sol = m.solve(solver)
    assert sol.solver is solver and sol.optimal
    assert sol.objective == pytest.approx(-25)
    assert [round(sol[x]) for x in xs] == [1, 0, 1, 1]


@pytest.mark.parametrize("solver", SOLVERS)
def test_integer_and_continuous_mix(solver: Solver) -> None:
    """min t  s.t.  t >= 3.5 n, t >= 10 - 2 n, n integer in [0, 5]: n = 2, t = 7."""
    m = Model("mix")
    n, t = m.var("n", 0, 5, integer=True), m.var("t")
    m.le(Expr.of((3.5, n)), Expr.of((1.0, t)))
    m.le(Expr.of((-2.0, n), 10.0), Expr.of((1.0, t)))
    m.minimize(Expr.of((1.0, t), 1.0))  # the objective's constant is carried through
    sol = m.solve(solver)
    assert sol.objective == pytest.approx(8.0)
    assert sol[n] == pytest.approx(2.0) and sol[t] == pytest.approx(7.0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_infeasible_model_raises(solver: Solver) -> None:
    m = Model("infeasible")
    x = m.var("x", 0, 1)
    m.constrain(Expr.of((1.0, x)), lo=2.0)
    with pytest.raises(MilpError, match="no solution for infeasible"):
        m.solve(solver)


def test_auto_picks_highs_for_models_over_the_free_licence() -> None:
    m = Model("big")
    for i in range(2001):
        m.var(f"x{i}")
    assert choose_solver(m, Solver.AUTO) is Solver.HIGHS
    small, _ = knapsack()
    expected = Solver.GUROBI if gurobi_available() else Solver.HIGHS
    assert choose_solver(small, Solver.AUTO) is expected


def test_two_sided_rows_count_twice_for_gurobi() -> None:
    m = Model("rows")
    x = m.var("x")
    m.constrain(Expr.of((1.0, x)), lo=1.0, hi=2.0)
    m.constrain(Expr.of((1.0, x)), lo=1.5, hi=1.5)
    assert m.size == (1, 3)
