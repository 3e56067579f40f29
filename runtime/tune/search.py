"""The search: for every batch-shape bucket, NanoFlow's two stages (schedule.py) against the
dense forward; the answer is a plan or ``dense``, with predicted forward times."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from runtime.pipeline.plan import Plan
from runtime.pipeline.planset import CANDIDATES, LEGACY_KV_DTYPE, Bucket, PlanSet
from runtime.tune.costs import SEGMENTS, BatchShape, Costs, Layout, layouts
from runtime.tune.emit import to_plan
from runtime.tune.milp import MilpError, Solver
from runtime.tune.profiles import Profile
from runtime.tune.schedule import Schedule, grid_points, stage_one, stage_two

logger = logging.getLogger("runtime.tune")


@dataclass(frozen=True)
class SearchConfig:
    decode_points: tuple[int, ...] = (0, 64, 128, 256, 512, 1024)
    prefill_points: tuple[int, ...] = (0, 512, 1024, 2048)
    context_points: tuple[int, ...] = (512, 1024, 2048, 4096)
    graph_context: int = 1024  # decode CUDA graphs have no host lengths: they use this bucket
    # larger shapes stay dense, not searched (the default grid profiles up to 2,048 rows; the
    # engine's token budget is 8,192: `nanolang tune --max-tokens` with a grid that reaches it)
    max_tokens: int = 4096
    max_nano_batches: int = 4
    granules: int = 8  # nano-batch boundaries on a grid of this many steps of the batch
    # a plan must beat dense by this fraction, else dense: above the cost model's measured error
    # on decode batches (the dense forward within 5% on the H200, 2026-11-29)
    margin: float = 0.05
    # stage I also keeps pipelines predicted up to this fraction slower than dense, as the
    # bucket's candidate (never as its plan): near misses to measure, e.g. to calibrate the model
    # or to promote over another KV dtype (0: only pipelines predicted faster than dense)
    explore: float = 0.0
    solver: Solver = Solver.AUTO
    time_limit_s: float = 30.0  # per mixed-integer program
    jobs: int = 1  # buckets searched at once, in worker processes

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError("jobs must be >= 1")
        if not 2 <= self.max_nano_batches <= self.granules:
            raise ValueError("need 2 <= max_nano_batches <= granules")
        if not 0 <= self.margin < 1:
            raise ValueError("margin must be in [0, 1)")
        if not 0 <= self.explore < 1:
            raise ValueError("explore must be in [0, 1)")


@dataclass(frozen=True)
class ShapeResult:
    shape: BatchShape
    dense_us: float  # decoder layers of one forward, dense
    predicted_us: float  # the same with the chosen plan (dense_us when dense wins)
    schedule: Schedule | None  # the best pipeline found (None: none possible)
    plan: Plan | None  # None: dense wins
    reason: str
    candidate: Plan | None = None  # dense won: the best pipeline found, kept for verification


# the grid of a --quick profile (tests, CPU)
QUICK_SEARCH = SearchConfig(decode_points=(0, 4, 8), prefill_points=(0, 8), context_points=(16, 32),
                            graph_context=16, max_nano_batches=2)  # fmt: skip


def nominal_layout(costs: Costs, options: list[Layout]) -> Layout:
    """Stage I's layout: the one whose even two-way split balances best (the larger of the two
    sides' work and the HBM time, smallest)."""
    rows = costs.shape.tokens
    halves = [(0, rows // 2), (rows // 2, rows)]

    def bound(lay: Layout) -> float:
        att = sum(costs.us(lay, "att", a, b) for a, b in halves)
        rest = sum(costs.us(lay, s, a, b) for a, b in halves for s in ("pre", "post"))
        hbm = sum(costs.hbm_us(costs.bytes(s, a, b)) for a, b in halves for s in SEGMENTS)
        return max(att, rest, hbm)

    return min(options, key=bound)


def search_shape(profile: Profile, shape: BatchShape, cfg: SearchConfig) -> ShapeResult:
    costs = Costs(profile, shape)
    layers = profile.shape.num_layers
    dense = layers * costs.dense_layer_us()

    def result(schedule: Schedule | None, plan: Plan | None, reason: str) -> ShapeResult:
        predicted = dense if plan is None or schedule is None else schedule.forward_us(layers)
        return ShapeResult(shape, dense, predicted, schedule, plan, reason)

    options = layouts(profile)
    if not options:
        return result(None, None, "the device runs one stream at a time: nothing can overlap")
    if shape.tokens > cfg.max_tokens:
        return result(None, None, f"more than {cfg.max_tokens} tokens: not searched")
    if shape.tokens > profile.max_tokens or shape.context > profile.max_context:
        why = f"outside the profile ({profile.max_tokens} tokens, context {profile.max_context})"
        return result(None, None, why)
    cuts = len(grid_points(shape.tokens, cfg.granules)) - 1
    counts = range(2, min(cfg.max_nano_batches, cuts) + 1)
    if not counts:
        return result(None, None, f"{shape.tokens} rows cannot be split")
    nominal = nominal_layout(costs, options)
    cutoff = dense * (1 + cfg.explore)  # each count must beat this and the counts before it
    first: Schedule | None = None
    for n in counts:
        try:
            s = stage_one(costs, nominal, n, cfg.granules, cfg.solver, cfg.time_limit_s, cutoff)
        except MilpError:  # nothing at most the cutoff
            continue
        if first is None or s.forward_us(layers) < first.forward_us(layers):
            first, cutoff = s, s.forward_us(layers) * (1 + 1e-9)
    if first is None:
        slack = f" or within {cfg.explore:.0%} of it" if cfg.explore else ""
        return result(None, None, f"no pipeline is faster than dense{slack}")
    best = stage_two(costs, first, options, cfg.solver, cfg.time_limit_s, cutoff * (1 + 1e-6))
    if best.forward_us(layers) > first.forward_us(layers):  # stage II keeps stage I's option
        best = first
    predicted = best.forward_us(layers)
    name = _plan_name(profile, shape, best)
    if predicted >= dense * (1 - cfg.margin):
        why = f"best pipeline {predicted / 1e3:.3f} ms is not {cfg.margin:.0%} below dense"
        return replace(result(best, None, why), candidate=to_plan(name, best, costs))
    plan = to_plan(name, best, costs)
    return result(best, plan, f"{best.nano_batches} nano-batches on {best.layout.name}")


def search_plans(
    profile: Profile, cfg: SearchConfig | None = None, profile_name: str = ""
) -> tuple[PlanSet, list[ShapeResult]]:
    """Every bucket of the grid: a plan set (plans in memory; ``PlanSet.save`` writes them)."""
    cfg = cfg or SearchConfig()
    shapes = [BatchShape(d, p, c) for d in cfg.decode_points for p in cfg.prefill_points
              if d + p > 0 for c in cfg.context_points]  # fmt: skip
    buckets, plans, candidates, results = [], {}, {}, []
    for r in _search_all(profile, shapes, cfg):
        d, p, c = r.shape.decodes, r.shape.prefill_tokens, r.shape.context
        results.append(r)
        fname = None if r.plan is None else f"{r.plan.name}.json"
        if r.plan is not None and fname is not None:
            plans[fname] = r.plan
        cname, cms = None, None
        if r.candidate is not None and r.schedule is not None:
            cname = f"{CANDIDATES}/{r.candidate.name}.json"
            cms = round(r.schedule.forward_us(profile.shape.num_layers) / 1e3, 4)
            candidates[cname] = r.candidate
        buckets.append(Bucket(d, p, c, fname, round(r.predicted_us / 1e3, 4),
                              round(r.dense_us / 1e3, 4), r.reason, cname, cms))  # fmt: skip
    sig = {k: int(v) for k, v in profile.shape.__dict__.items()}
    planset = PlanSet(
        model=profile.model, device=profile.device, device_sms=profile.device_sms,
        decode_points=cfg.decode_points, prefill_points=cfg.prefill_points,
        context_points=cfg.context_points, buckets=tuple(buckets),
        graph_context=cfg.graph_context, signature=sig, profile=profile_name,
        created=datetime.now(UTC).isoformat(timespec="seconds"), plans=plans,
        candidates=candidates, kv_cache_dtype=profile_kv_dtype(profile),
    )  # fmt: skip
    return planset, results


def profile_kv_dtype(profile: Profile) -> str:
    """The KV cache dtype the profile's attention read (profiles made before it was recorded:
    the bf16 cache they all used)."""
    return str(profile.notes.get("kv_cache_dtype", LEGACY_KV_DTYPE))


def _timed(profile: Profile, shape: BatchShape, cfg: SearchConfig) -> ShapeResult:
    t0 = time.perf_counter()
    r = search_shape(profile, shape, cfg)
    logger.info("bucket d=%d p=%d c=%d: %s (%.1fs)", shape.decodes, shape.prefill_tokens,
                shape.context, r.reason, time.perf_counter() - t0)  # fmt: skip
    return r


def _search_all(profile: Profile, shapes: list[BatchShape], cfg: SearchConfig) -> list[ShapeResult]:
    """Each shape's result, in the order of ``shapes``; ``cfg.jobs`` worker processes at once
    (the programs are independent; each worker solves whole buckets)."""
    if cfg.jobs == 1 or len(shapes) < 2:
        return [_timed(profile, s, cfg) for s in shapes]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold CUDA state and solver threads
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(cfg.jobs, len(shapes)), mp_context=ctx) as pool:
        futures = [pool.submit(_timed, profile, s, cfg) for s in shapes]
        return [f.result() for f in futures]


def _plan_name(profile: Profile, shape: BatchShape, s: Schedule) -> str:
    sizes = "-".join(str(b - a) for a, b in s.bounds)
    where = s.layout.name.replace(":", "")
    return f"d{shape.decodes}-p{shape.prefill_tokens}-c{shape.context}-{sizes}-{where}"
