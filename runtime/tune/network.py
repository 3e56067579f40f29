"""The network stage's search (tensor parallelism): for every batch-shape bucket, the dense
forward or a plan that runs the all-reduces of one nano-batch on their own stream while another
nano-batch's GEMMs run (``runtime.pipeline.plans.network_plan``), whichever the cost model
predicts faster by a margin.

The cost model prices one rank's operations from rates (a GEMM rate and HBM bandwidth, measured
on the rank; a roofline per operation with a per-kernel floor) and the all-reduce from measured
curves (time per row count, per CTA cap). A candidate plan is priced by simulating it as the
executor issues it: the plan's steps in issue order, each on its unit's stream, starting when
its stream is free and its inputs are done. A compute step that overlaps a running collective is
slowed by the SMs the collective holds (device SMs / (device SMs - its CTAs)); splitting a GEMM
re-reads its weights, which the roofline charges; an eager forward (a batch with prefill rows:
decode-only batches replay CUDA graphs) waits for the host to issue each step. The search is
plain arithmetic on inputs that every rank holds identically (the group agrees on the
measurements first), so every rank picks the same plan for the same batch: their collectives
stay in step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from runtime.pipeline.plan import Plan
from runtime.pipeline.plans import NETWORK_OPS, TP_LLAMA_OPS, network_plan
from runtime.pipeline.planset import Bucket, PlanSet
from runtime.pipeline.validate import data_deps
from runtime.tune.costs import BatchShape
from runtime.tune.profiles import ModelShape, _interp

# an uncapped NCCL all-reduce holds about this many SMs (NCCL picks its channels itself)
UNCAPPED_CTAS = 32
GEMMS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


@dataclass(frozen=True)
class CollectiveCurve:
    """One all-reduce of hidden-state rows on one communicator: (rows, µs) points."""

    max_ctas: int | None  # the communicator's CTA cap; None: NCCL's own choice
    points: tuple[tuple[int, float], ...]

    def us(self, rows: int) -> float:
        return 0.0 if rows <= 0 else _interp(list(self.points), rows)

    @property
    def sms(self) -> int:
        return UNCAPPED_CTAS if self.max_ctas is None else self.max_ctas


@dataclass(frozen=True)
class Rates:
    """What one rank's device reaches: the roofline's two ceilings and a per-kernel floor."""

    device_sms: int
    gemm_tflops: float
    hbm_gb_s: float
    concurrent: bool = True  # False (the CPU): one stream at a time, nothing overlaps
    kernel_floor_us: float = 3.0
    # host time to issue one step of an eager forward (a CUDA graph has none): an operation of
    # the dense forward, and a pipeline step (its events, stream waits and record_stream calls
    # too); estimates, not measured: a small mixed batch is issue-bound in a pipeline
    dense_issue_us: float = 25.0
    pipeline_issue_us: float = 50.0


@dataclass(frozen=True)
class NetworkSearchConfig:
    decode_points: tuple[int, ...] = (0, 32, 64, 128, 256, 512, 1024)
    prefill_points: tuple[int, ...] = (0, 256, 1024, 2048, 4096, 8192)
    context_points: tuple[int, ...] = (512, 1024, 2048, 4096)
    graph_context: int = 1024  # decode CUDA graphs have no host lengths: they use this bucket
    fractions: tuple[float, ...] = (0.5, 0.375, 0.625, 0.25, 0.75)  # first nano-batch's share
    # a plan must beat dense by this fraction (the overlap model is unverified; a smaller gain
    # is within what interference the model does not see could take back)
    margin: float = 0.03
    min_rows: int = 32  # smaller batches stay dense: too little to split
    layers_simulated: int = 4  # the forward = these layers plus (L - n) periods


@dataclass(frozen=True)
class NetworkCosts:
    """Durations (µs) of one rank's operations over rows of a batch shape."""

    shape: ModelShape  # the rank's layer (heads and MLP width divided by the group size)
    rates: Rates
    curves: tuple[CollectiveCurve, ...]  # the uncapped communicator's first
    batch: BatchShape = field(default_factory=lambda: BatchShape(0, 0, 0))
    # the dense forward's all-reduce when it is not the uncapped communicator's (the group's
    # symmetric-memory path up to a size); None: the uncapped curve
    dense: CollectiveCurve | None = None

    def at(self, batch: BatchShape) -> NetworkCosts:
        return NetworkCosts(self.shape, self.rates, self.curves, batch, self.dense)

    def curve(self, max_ctas: int | None) -> CollectiveCurve:
        return next(c for c in self.curves if c.max_ctas == max_ctas)

    def op_us(
        self, op: str, a: int, b: int, max_ctas: int | None = None, dense: bool = False
    ) -> float:
        """Operation ``op`` over batch rows [a, b) (``dense``: in the dense forward)."""
        rows = b - a
        if rows <= 0:
            return 0.0
        if op in NETWORK_OPS:
            if dense and self.dense is not None:
                return self.dense.us(rows)
            return self.curve(max_ctas).us(rows)
        s, r, e = self.shape, self.rates, self.shape.dtype_bytes
        hbm = r.hbm_gb_s * 1e3  # bytes per µs
        if op in GEMMS:
            w = s.weight_bytes(op)
            flops = 2.0 * rows * w / e
            moved = w + rows * (s.hidden_size + w // e // s.hidden_size) * e
            t = max(flops / (r.gemm_tflops * 1e6), moved / hbm)
        elif op == "attention":
            dec, pre = self.batch.split_rows(a, b)
            kv_token = 2 * s.kv_size * e
            ctx = self.batch.context
            t = dec * ctx * kv_token / hbm
            if pre:
                span = max(ctx, pre)
                t += max(2.0 * pre * span * s.q_size / (r.gemm_tflops * 1e6),
                         span * kv_token / hbm)  # fmt: skip
        else:  # norms, rope, activation, KV store: a few rows of activations in and out
            t = 3.0 * rows * s.hidden_size * e / hbm
        return max(t, r.kernel_floor_us)


def simulate(
    plan: Plan,
    ops: Sequence[str],
    cost: Callable[[str, int, int], float],
    num_layers: int,
    slowdown: float = 1.0,
    network: Sequence[str] = NETWORK_OPS,
    one_stream: bool = False,
    issue_us: float = 0.0,
) -> float:
    """The forward time (µs) of ``num_layers`` layers as the executor issues ``plan`` over a
    batch of ``plan.batch_tokens`` rows: each step on its unit's stream (``one_stream``: every
    step on one, a device that runs one stream at a time), after its inputs; a compute step
    overlapping a running collective takes ``slowdown`` times as long for the overlapping
    part. ``issue_us``: the host's time to issue a step; none starts before it is issued."""
    from runtime.pipeline.validate import issue_sequence

    bounds = [plan.split(n).bounds for n in ops]
    units = {n: None if one_stream else plan.split(n).unit for n in ops}
    free: dict[object, float] = {}
    done: dict[tuple[int, int, int], float] = {}
    busy: list[tuple[float, float]] = []  # intervals of collectives placed so far
    host = 0.0
    for node in issue_sequence(plan, ops, num_layers):
        host += issue_us
        _layer, i, k = node
        a, b = bounds[i][k]
        op, unit = ops[i], units[ops[i]]
        ready = max([done[d] for d in data_deps(bounds, node) if d in done], default=0.0)
        start = max(free.get(unit, 0.0), ready, host)
        d = cost(op, a, b)
        if op in network:
            busy.append((start, start + d))
        elif slowdown > 1.0 and d > 0:
            overlap = sum(max(0.0, min(e, start + d) - max(s, start)) for s, e in busy)
            d += (slowdown - 1.0) * min(overlap, d)
        free[unit] = done[node] = start + d
    return max(done.values(), default=0.0)


def forward_us(
    plan: Plan,
    costs: NetworkCosts,
    num_layers: int,
    simulated: int,
    ops: Sequence[str],
    eager: bool = False,
    dense: bool = False,
) -> float:
    """The whole forward from ``simulated`` layers: their time plus the last layer's period
    for each layer beyond them. ``eager``: issued step by step by the host (not a graph);
    ``dense``: ``plan`` is the dense forward (its all-reduces are the group's own)."""
    cap = next((s.unit.max_sms for s in plan.ops if s.op in NETWORK_OPS), None)
    if plan.is_single_stream:
        cap = None
    curve = costs.curve(cap)
    slowdown = 1.0
    if not plan.is_single_stream:
        sms = costs.rates.device_sms
        slowdown = sms / max(1, sms - curve.sms)

    def cost(op: str, a: int, b: int) -> float:
        return costs.op_us(op, a, b, cap, dense)

    n, serial = min(simulated, num_layers), not costs.rates.concurrent
    issue = 0.0
    if eager:
        rates = costs.rates
        issue = rates.dense_issue_us if plan.is_single_stream else rates.pipeline_issue_us
    last = simulate(plan, ops, cost, n, slowdown, one_stream=serial, issue_us=issue)
    if n == num_layers:
        return last
    before = simulate(plan, ops, cost, n - 1, slowdown, one_stream=serial, issue_us=issue)
    return last + (num_layers - n) * (last - before)


def dense_plan(rows: int, ops: Sequence[str], device_sms: int) -> Plan:
    """The dense forward as a plan: one nano-batch, one stream (for pricing only)."""
    from runtime.pipeline.plan import OpSplit, Partition, Step, Unit

    splits = tuple(OpSplit(op, (rows,), Unit(0, 0)) for op in ops)
    order = tuple(Step(op, 0) for op in ops)
    return Plan("dense", rows, device_sms, (Partition(0, 0, device_sms),), splits, order)


@dataclass(frozen=True)
class NetworkChoice:
    shape: BatchShape
    dense_us: float
    predicted_us: float
    plan: Plan | None  # None: dense
    reason: str


def search_shape(
    costs: NetworkCosts, shape: BatchShape, cfg: NetworkSearchConfig, ops: Sequence[str]
) -> NetworkChoice:
    at, layers, sms = costs.at(shape), costs.shape.num_layers, costs.rates.device_sms
    rows = shape.tokens
    eager = shape.prefill_tokens > 0  # decode-only batches replay CUDA graphs
    dense = forward_us(dense_plan(rows, ops, sms), at, layers, cfg.layers_simulated, ops, eager,
                       dense=True)  # fmt: skip
    if not costs.rates.concurrent:
        return NetworkChoice(shape, dense, dense, None, "one stream at a time: nothing overlaps")
    if rows < cfg.min_rows:
        return NetworkChoice(shape, dense, dense, None, f"under {cfg.min_rows} rows")
    best: tuple[float, Plan] | None = None
    for frac in cfg.fractions:
        first = max(1, min(rows - 1, round(rows * frac)))
        for curve in costs.curves:
            cap = curve.max_ctas
            name = f"d{shape.decodes}-p{shape.prefill_tokens}-c{shape.context}-" \
                   f"{first}-{rows - first}-net{cap or 'all'}"  # fmt: skip
            plan = network_plan(name, (first, rows - first), cap, sms, ops)
            t = forward_us(plan, at, layers, cfg.layers_simulated, ops, eager)
            if best is None or t < best[0]:
                best = (t, plan)
    assert best is not None
    t, plan = best
    if t >= dense * (1 - cfg.margin):
        why = f"best network stage {t / 1e3:.3f} ms is not {cfg.margin:.0%} below dense"
        return NetworkChoice(shape, dense, dense, None, why)
    return NetworkChoice(shape, dense, t, plan, f"{plan.name}: {1 - t / dense:.1%} below dense")


def search_network(
    costs: NetworkCosts,
    model: str,
    device: str,
    signature: dict[str, int],
    cfg: NetworkSearchConfig | None = None,
    ops: Sequence[str] = TP_LLAMA_OPS,
) -> tuple[PlanSet, list[NetworkChoice]]:
    """Every bucket of the grid: dense or a network-stage plan (a plan set, plans in memory)."""
    cfg = cfg or NetworkSearchConfig()
    buckets, plans, choices = [], {}, []
    for d in cfg.decode_points:
        for p in cfg.prefill_points:
            for c in cfg.context_points:
                if d + p == 0:
                    continue
                r = search_shape(costs, BatchShape(d, p, c), cfg, ops)
                choices.append(r)
                fname = None if r.plan is None else f"{r.plan.name}.json"
                if r.plan is not None and fname is not None:
                    plans[fname] = r.plan
                buckets.append(Bucket(d, p, c, fname, round(r.predicted_us / 1e3, 4),
                                      round(r.dense_us / 1e3, 4), r.reason))  # fmt: skip
    planset = PlanSet(
        model=model, device=device, device_sms=costs.rates.device_sms,
        decode_points=cfg.decode_points, prefill_points=cfg.prefill_points,
        context_points=cfg.context_points, buckets=tuple(buckets),
        graph_context=cfg.graph_context, signature=signature, profile="network search",
        created=datetime.now(UTC).isoformat(timespec="seconds"), plans=plans,
    )  # fmt: skip
    return planset, choices
