"""A small mixed-integer linear model and two solvers for it: Gurobi (gurobipy, optional; its
PyPI package runs without a licence file up to 2,000 variables and 2,000 constraints) and HiGHS
(through scipy's ``milp``, always available). The search builds models here, never in a solver's
own API, so both solvers see exactly the same problem."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

# the size limit of gurobipy's bundled restricted licence
GUROBI_FREE_LIMIT = 2000


class Solver(enum.Enum):
    AUTO = "auto"  # Gurobi when installed and the model fits its free licence, else HiGHS
    GUROBI = "gurobi"
    HIGHS = "highs"


class MilpError(RuntimeError):
    """The model is infeasible, the solver failed, or the solver is not available."""


@dataclass(frozen=True)
class Var:
    index: int
    name: str
    lb: float
    ub: float
    integer: bool


# a linear expression: {variable index: coefficient} plus a constant
@dataclass
class Expr:
    terms: dict[int, float] = field(default_factory=dict)
    const: float = 0.0

    @staticmethod
    def of(*items: tuple[float, Var] | float) -> Expr:
        e = Expr()
        for it in items:
            if isinstance(it, tuple):
                e.add(it[0], it[1])
            else:
                e.const += float(it)
        return e

    def add(self, coef: float, var: Var) -> Expr:
        if coef:
            self.terms[var.index] = self.terms.get(var.index, 0.0) + float(coef)
        return self

    def plus(self, other: Expr, scale: float = 1.0) -> Expr:
        for i, c in other.terms.items():
            self.terms[i] = self.terms.get(i, 0.0) + scale * c
        self.const += scale * other.const
        return self


@dataclass(frozen=True)
class Constraint:
    terms: tuple[tuple[int, float], ...]
    lo: float
    hi: float
    name: str


@dataclass(frozen=True)
class Solution:
    objective: float
    values: tuple[float, ...]
    solver: Solver
    optimal: bool  # False: the time limit stopped the solver with this feasible solution

    def __getitem__(self, var: Var) -> float:
        return self.values[var.index]

    def value(self, e: Expr) -> float:
        return e.const + sum(c * self.values[i] for i, c in e.terms.items())


class Model:
    """Minimise a linear objective subject to lo <= expr <= hi rows and variable bounds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.vars: list[Var] = []
        self.rows: list[Constraint] = []
        self.objective = Expr()

    def var(self, name: str, lb: float = 0.0, ub: float = math.inf, integer: bool = False) -> Var:
        v = Var(len(self.vars), name, lb, ub, integer)
        self.vars.append(v)
        return v

    def binary(self, name: str) -> Var:
        return self.var(name, 0.0, 1.0, integer=True)

    def constrain(
        self, e: Expr, lo: float = -math.inf, hi: float = math.inf, name: str = ""
    ) -> None:
        """lo <= e <= hi (e's constant moves to the bounds)."""
        terms = tuple((i, c) for i, c in e.terms.items() if c)
        self.rows.append(Constraint(terms, lo - e.const, hi - e.const, name))

    def le(self, a: Expr, b: Expr, name: str = "") -> None:
        """a <= b."""
        self.constrain(Expr().plus(a).plus(b, -1.0), hi=0.0, name=name)

    def eq(self, a: Expr, b: Expr, name: str = "") -> None:
        self.constrain(Expr().plus(a).plus(b, -1.0), lo=0.0, hi=0.0, name=name)

    def minimize(self, e: Expr) -> None:
        self.objective = e

    @property
    def size(self) -> tuple[int, int]:
        """(variables, one-sided constraints): what Gurobi's licence counts."""
        two_sided = sum(1 for r in self.rows if r.lo != r.hi and math.isfinite(r.lo + r.hi))
        return len(self.vars), len(self.rows) + two_sided

    def solve(self, solver: Solver = Solver.AUTO, time_limit_s: float = 60.0) -> Solution:
        chosen = choose_solver(self, solver)
        if chosen is Solver.GUROBI:
            try:
                return _solve_gurobi(self, time_limit_s)
            except MilpError:
                if solver is Solver.GUROBI:
                    raise
        return _solve_highs(self, time_limit_s)


def gurobi_available() -> bool:
    try:
        import gurobipy  # noqa: F401
    except ImportError:
        return False
    return True


def choose_solver(model: Model, solver: Solver) -> Solver:
    if solver is Solver.GUROBI and not gurobi_available():
        raise MilpError("gurobipy is not installed (pip install gurobipy), or use the HiGHS solver")
    if solver is not Solver.AUTO:
        return solver
    fits = max(model.size) <= GUROBI_FREE_LIMIT
    return Solver.GUROBI if fits and gurobi_available() else Solver.HIGHS


def _solve_highs(model: Model, time_limit_s: float) -> Solution:
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array

    n = len(model.vars)
    c = np.zeros(n)
    for i, coef in model.objective.terms.items():
        c[i] = coef
    rows, cols, data = [], [], []
    for r, row in enumerate(model.rows):
        for i, coef in row.terms:
            rows.append(r)
            cols.append(i)
            data.append(coef)
    cons = []
    if model.rows:
        a = coo_array((data, (rows, cols)), shape=(len(model.rows), n)).tocsr()
        cons.append(LinearConstraint(a, [r.lo for r in model.rows], [r.hi for r in model.rows]))
    res = milp(
        c,
        integrality=np.array([1 if v.integer else 0 for v in model.vars]),
        bounds=Bounds([v.lb for v in model.vars], [v.ub for v in model.vars]),
        constraints=cons,
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-9},
    )
    if res.x is None:
        raise MilpError(f"HiGHS found no solution for {model.name}: {res.message}")
    x = tuple(float(v) for v in res.x)
    return Solution(float(res.fun) + model.objective.const, x, Solver.HIGHS, res.status == 0)


def _solve_gurobi(model: Model, time_limit_s: float) -> Solution:
    import gurobipy as gp

    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 0)
    env.start()
    try:
        m = gp.Model(model.name, env=env)
        m.Params.TimeLimit = time_limit_s
        m.Params.MIPGap = 1e-9
        xs = [
            m.addVar(lb=v.lb, ub=v.ub, vtype="I" if v.integer else "C", name=f"x{v.index}")
            for v in model.vars
        ]
        for r in model.rows:
            expr = gp.LinExpr([c for _, c in r.terms], [xs[i] for i, _ in r.terms])
            if r.lo == r.hi:
                m.addConstr(expr == r.lo)
                continue
            if r.lo > -math.inf:
                m.addConstr(expr >= r.lo)
            if r.hi < math.inf:
                m.addConstr(expr <= r.hi)
        obj = model.objective.terms
        m.setObjective(gp.LinExpr(list(obj.values()), [xs[i] for i in obj]), gp.GRB.MINIMIZE)
        m.optimize()
        if m.SolCount == 0:
            raise MilpError(f"Gurobi found no solution for {model.name} (status {m.Status})")
        x = tuple(float(v.X) for v in xs)
        optimal = m.Status == gp.GRB.OPTIMAL
        return Solution(float(m.ObjVal) + model.objective.const, x, Solver.GUROBI, optimal)
    except gp.GurobiError as exc:  # e.g. the model outgrew the restricted licence
        raise MilpError(f"Gurobi failed on {model.name}: {exc}") from exc
    finally:
        env.dispose()
