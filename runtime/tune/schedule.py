"""NanoFlow's two search stages as mixed-integer programs over one layer's steady state.

A schedule repeats every ``period`` µs, one layer per period. Each nano-batch ``k`` has three
segments (``pre``, ``att``, ``post``; see costs.py) with a start ``tau`` within the period and a
layer shift ``m`` in {0, 1}: the segment of layer L runs in round L - m (the plan's
``layer_shift``), at (L - m) * period + tau, and fits in its round (tau + d <= period). Segments
on one unit never overlap (a binary per pair orders them); ``pre -> att -> post`` of a nano-batch
follow each other within a layer, and ``post`` of layer L precedes ``pre`` of layer L + 1. Unlike
NanoFlow, the period is also bounded by the HBM traffic of a period at the measured bandwidth.

Stage I picks the number of nano-batches (one model per count), their row ranges (a path over a
grid of cut points: any cost that depends on a nano-batch's rows, such as its decode / prefill
mix, stays linear), the shifts and the order on each unit, at a nominal layout. Stage II keeps
that structure and picks the layout (attention's SM share, or two plain streams).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.tune.costs import SEGMENTS, UNIT, Costs, Layout
from runtime.tune.milp import Expr, Model, Solution, Solver, Var

Key = tuple[int, str]  # (nano-batch, segment)


@dataclass(frozen=True)
class Schedule:
    """A solved steady state: rows per nano-batch, where each segment starts, its shift."""

    layout: Layout
    bounds: tuple[tuple[int, int], ...]  # row range of each nano-batch
    tau: dict[Key, float]  # µs from the start of the round
    shift: dict[Key, int]
    period_us: float
    durations: dict[Key, float]
    solver: str = ""
    optimal: bool = True  # the solver proved the period optimal (no time limit hit)

    @property
    def nano_batches(self) -> int:
        return len(self.bounds)

    def span_us(self) -> float:
        """One layer from its first segment's start to its last one's end."""
        start = {k: self.tau[k] - self.shift[k] * self.period_us for k in self.tau}
        return max(start[k] + self.durations[k] for k in start) - min(start.values())

    def forward_us(self, num_layers: int) -> float:
        """All layers: one period each, plus the part of a layer that sticks out of a period."""
        return num_layers * self.period_us + max(0.0, self.span_us() - self.period_us)

    def issue_order(self) -> list[Key]:
        """Segments of one round in start order (ties: pre, att, post; lower nano-batch)."""
        rank = {s: i for i, s in enumerate(SEGMENTS)}
        return sorted(self.tau, key=lambda k: (round(self.tau[k], 6), rank[k[1]], k[0]))


def grid_points(tokens: int, granules: int) -> list[int]:
    """Cut points 0 = g_0 < ... < g_G = tokens, about evenly spaced."""
    return sorted({round(i * tokens / granules) for i in range(granules + 1)})


@dataclass
class _Vars:
    tau: dict[Key, Var]
    shift: dict[Key, Var]
    w: dict[Key, Var]  # period * shift
    period: Var
    dur: dict[Key, Expr]


def _core(
    model: Model,
    n: int,
    dur: dict[Key, Expr],
    layers: int,
    cutoff_us: float,
    order: dict | None = None,
) -> _Vars:
    """Timing variables, the rules every schedule obeys, and the objective: the forward time of
    ``layers`` layers (one period each plus the part of a layer that sticks out of its period),
    at most ``cutoff_us``. ``order`` fixes the unit orders and shifts (stage II) instead of
    leaving them to binaries (stage I)."""
    big_m = cutoff_us / layers  # bounds the period, so also tau_a + d_a - tau_b
    period = model.var("period", 0.0, big_m)
    keys = [(k, s) for k in range(n) for s in SEGMENTS]
    tau = {key: model.var(f"tau{key}", 0.0, big_m) for key in keys}
    shift = {key: model.binary(f"m{key}") for key in keys}
    w = {key: model.var(f"w{key}", 0.0, big_m) for key in keys}
    for key in keys:
        m, wk = shift[key], w[key]
        if order is not None:
            model.constrain(Expr.of((1.0, m)), order["shift"][key], order["shift"][key])
        # w = period * m
        model.le(Expr.of((1.0, wk)), Expr.of((big_m, m)))
        model.le(Expr.of((1.0, wk)), Expr.of((1.0, period)))
        model.le(Expr.of((1.0, period), (big_m, m), -big_m), Expr.of((1.0, wk)))
        # fits in its round
        model.le(Expr.of((1.0, tau[key])).plus(dur[key]), Expr.of((1.0, period)))
    for k in range(n):
        for sa, sb in (("pre", "att"), ("att", "post")):
            # same layer: -w_b + tau_b >= -w_a + tau_a + d_a; so m_b <= m_a (a cut)
            lhs = Expr.of((-1.0, w[k, sa]), (1.0, tau[k, sa])).plus(dur[k, sa])
            model.le(lhs, Expr.of((-1.0, w[k, sb]), (1.0, tau[k, sb])), f"dep{k}{sa}{sb}")
            model.le(Expr.of((1.0, shift[k, sb])), Expr.of((1.0, shift[k, sa])))
        # post of layer L before pre of layer L + 1
        lhs = Expr.of((1.0, tau[k, "post"])).plus(dur[k, "post"])
        rhs = Expr.of((1.0, period), (-1.0, w[k, "pre"]), (1.0, w[k, "post"]), (1.0, tau[k, "pre"]))
        model.le(lhs, rhs, f"layer{k}")
    # cuts the disjunctions imply: a unit's work, and a nano-batch's chain, fit in a period
    for k in range(n):
        chain = Expr()
        for s in SEGMENTS:
            chain.plus(dur[k, s])
        model.le(chain, Expr.of((1.0, period)))
    for unit in (0, 1):
        same = [key for key in keys if UNIT[key[1]] == unit]
        work = Expr()
        for key in same:
            work.plus(dur[key])
        model.le(work, Expr.of((1.0, period)))
        for a, b in itertools.combinations(same, 2):
            if order is not None:  # a before b, or b before a, as stage I chose
                first, second = (a, b) if order["before"][a, b] else (b, a)
                lhs = Expr.of((1.0, tau[first])).plus(dur[first])
                model.le(lhs, Expr.of((1.0, tau[second])))
                continue
            y = model.binary(f"y{a}{b}")  # 1: a before b
            a_first = Expr.of((1.0, tau[a]), (big_m, y), -big_m).plus(dur[a])
            model.le(a_first, Expr.of((1.0, tau[b])))
            model.le(Expr.of((1.0, tau[b]), (-big_m, y)).plus(dur[b]), Expr.of((1.0, tau[a])))
    # the span of one layer: starts tau - w (>= -period), ends tau - w + d
    hi = model.var("span_hi", -big_m, big_m)
    lo = model.var("span_lo", -big_m, big_m)
    extra = model.var("extra", 0.0, 2 * big_m)  # >= span - period
    for key in keys:
        start = Expr.of((1.0, tau[key]), (-1.0, w[key]))
        model.le(Expr.of((1.0, lo)), start)
        model.le(Expr().plus(start).plus(dur[key]), Expr.of((1.0, hi)))
    model.le(Expr.of((1.0, hi), (-1.0, lo), (-1.0, period)), Expr.of((1.0, extra)))
    forward = Expr.of((float(layers), period), (1.0, extra))
    model.constrain(forward, hi=cutoff_us, name="cutoff")
    model.minimize(forward)
    return _Vars(tau, shift, w, period, dur)


def _read(sol: Solution, v: _Vars, layout: Layout, bounds: Sequence[tuple[int, int]]) -> Schedule:
    tau = {k: max(0.0, sol[x]) for k, x in v.tau.items()}
    shift = {k: round(sol[x]) for k, x in v.shift.items()}
    dur = {k: sol.value(e) for k, e in v.dur.items()}
    return Schedule(
        layout, tuple(bounds), tau, shift, sol[v.period], dur, sol.solver.value, sol.optimal
    )


def stage_one(
    costs: Costs,
    layout: Layout,
    n: int,
    granules: int,
    solver: Solver,
    time_limit_s: float,
    cutoff_us: float,
) -> Schedule:
    """Nano-batch rows, order and shifts for ``n`` nano-batches on ``layout`` that minimise the
    forward time, if one is at most ``cutoff_us`` (else MilpError)."""
    points = grid_points(costs.shape.tokens, granules)
    last = len(points) - 1
    if last < n:
        raise ValueError(f"{costs.shape.tokens} rows cannot make {n} nano-batches")
    model = Model(f"stage1-n{n}-{layout.name}")
    # pick[k][(i, j)]: nano-batch k covers rows [points[i], points[j])
    pick: list[dict[tuple[int, int], Var]] = []
    for k in range(n):
        lo_i, hi_j = k, last - (n - 1 - k)
        pick.append({(i, j): model.binary(f"x{k}_{i}_{j}")
                     for i in range(lo_i, hi_j) for j in range(i + 1, hi_j + 1)
                     if (k > 0 or i == 0) and (k < n - 1 or j == last)})  # fmt: skip
        model.constrain(Expr.of(*[(1.0, x) for x in pick[k].values()]), 1.0, 1.0)
    for k in range(n - 1):  # nano-batch k + 1 starts where k ends
        for g in range(1, last):
            ends = Expr.of(*[(1.0, x) for (_i, j), x in pick[k].items() if j == g])
            starts = Expr.of(*[(1.0, x) for (i, _j), x in pick[k + 1].items() if i == g])
            model.eq(ends, starts)
    dur: dict[Key, Expr] = {}
    nbytes = Expr()
    for k in range(n):
        for s in SEGMENTS:
            e = Expr()
            for (i, j), x in pick[k].items():
                e.add(costs.us(layout, s, points[i], points[j]), x)
                nbytes.add(costs.hbm_us(costs.bytes(s, points[i], points[j])), x)
            dur[k, s] = e
    v = _core(model, n, dur, costs.profile.shape.num_layers, cutoff_us)
    if layout.concurrent:
        model.le(nbytes, Expr.of((1.0, v.period)), "hbm")
    sol = model.solve(solver, time_limit_s)
    bounds = []
    for k in range(n):
        (i, j) = next(ij for ij, x in pick[k].items() if sol[x] > 0.5)
        bounds.append((points[i], points[j]))
    return _read(sol, v, layout, bounds)


def stage_two(
    costs: Costs,
    first: Schedule,
    options: Sequence[Layout],
    solver: Solver,
    time_limit_s: float,
    cutoff_us: float,
) -> Schedule:
    """Stage I's rows, order and shifts kept; the layout (SM shares) chosen."""
    n = first.nano_batches
    model = Model(f"stage2-n{n}")
    choose = {lay.name: model.binary(f"p_{lay.name}") for lay in options}
    model.constrain(Expr.of(*[(1.0, p) for p in choose.values()]), 1.0, 1.0)
    dur: dict[Key, Expr] = {}
    for k, (a, b) in enumerate(first.bounds):
        for s in SEGMENTS:
            dur[k, s] = Expr.of(*[(costs.us(lay, s, a, b), choose[lay.name]) for lay in options])
    keys = list(first.tau)
    before = {(x, y): first.tau[x] <= first.tau[y] for x, y in itertools.permutations(keys, 2)}
    for x, y in itertools.combinations(keys, 2):  # ties: the issue order decides
        if first.tau[x] == first.tau[y]:
            order = first.issue_order()
            before[x, y] = order.index(x) < order.index(y)
            before[y, x] = not before[x, y]
    layers = costs.profile.shape.num_layers
    v = _core(model, n, dur, layers, cutoff_us, {"shift": first.shift, "before": before})
    traffic = sum(costs.hbm_us(costs.bytes(s, a, b))
                  for a, b in first.bounds for s in SEGMENTS)  # fmt: skip
    hbm = Expr.of(*[(traffic, choose[lay.name]) for lay in options if lay.concurrent])
    model.le(hbm, Expr.of((1.0, v.period)), "hbm")
    sol = model.solve(solver, time_limit_s)
    layout = next(lay for lay in options if sol[choose[lay.name]] > 0.5)
    return _read(sol, v, layout, first.bounds)
