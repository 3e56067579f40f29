"""The online plan guard: a plan set's pipeline checked against the dense forward on the live
engine, per bucket, and kept only where it measured faster.

A plan set's choices come from a cost model (the network search's rooflines under tensor
parallelism, a profile otherwise) that can be wrong on the live engine. For each bucket whose
plan is not dense, the first ``2 * samples`` iterations that land in it alternate plan, dense,
plan, dense, ... and each forward (or decode graph replay) is timed on the device (CUDA events;
a wall clock on the CPU). The next iteration of the bucket decides once: the plan is KEPT when
its median time is at least ``min_gain`` below dense's, else VETOED (the bucket runs dense from
then on). Iterations of one bucket have similar shapes, and alternating them evens out drift
(contexts grow, batches shrink) between the two sides.

Under tensor parallelism every rank must run the same side on the same iteration (a pipeline
issues more all-reduces than dense: ranks that disagreed would deadlock). Every rank runs the
same iterations in the same order, so the alternation, which follows only the bucket's hit
count, is the same on every rank; at the decision each rank's [plan, dense] medians are
all-reduced with MAX (the slowest rank's times decide) and every rank applies that verdict.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, TypeVar

import torch

logger = logging.getLogger("runtime")

BucketKey = tuple[int, int, int]  # a plan-set bucket: (decodes, prefill tokens, context)
Agree = Callable[[list[float]], list[float]]  # element-wise MAX over the ranks (identity: one)
R = TypeVar("R")


class BucketState(Enum):
    TRIAL = "trial"  # alternating plan / dense, timing both
    KEPT = "kept"  # the plan measured faster: it runs
    VETOED = "vetoed"  # it did not: the dense forward runs


class Side(Enum):
    PLAN = "plan"
    DENSE = "dense"


@dataclass(frozen=True)
class GuardConfig:
    samples: int = 4  # timed forwards of each side before the verdict
    min_gain: float = 0.02  # the plan is kept when at least this share faster than dense

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"plan guard samples must be >= 1, got {self.samples}")
        if not 0 <= self.min_gain < 1:
            raise ValueError(f"plan guard min_gain must be in [0, 1), got {self.min_gain}")


@dataclass(frozen=True)
class Turn:
    """What one iteration of a guarded bucket runs, and whether it is timed (a trial)."""

    key: BucketKey
    side: Side
    timed: bool

    @property
    def runs_plan(self) -> bool:
        return self.side is Side.PLAN


class Stopwatch(Protocol):
    def stop(self) -> None: ...

    def ms(self) -> float:
        """Milliseconds between start and stop (may wait for the device)."""
        ...


class WallStopwatch:
    """Host wall clock (the CPU, where a forward has finished when it returns)."""

    def __init__(self) -> None:
        self.start, self.end = time.perf_counter(), 0.0

    def stop(self) -> None:
        self.end = time.perf_counter()

    def ms(self) -> float:
        return (self.end - self.start) * 1e3


class CudaStopwatch:
    """CUDA events on the current stream: the device time of what was queued in between."""

    def __init__(self) -> None:
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        self.start.record()

    def stop(self) -> None:
        self.end.record()

    def ms(self) -> float:
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


def stopwatch_for(device: torch.device) -> Callable[[], Stopwatch]:
    return CudaStopwatch if device.type == "cuda" else WallStopwatch


@dataclass
class BucketTrial:
    """One guarded bucket's state (mutable: it lives through the engine's iterations)."""

    plan: str
    hits: int = 0  # trial iterations issued (each side gets every other one)
    state: BucketState = BucketState.TRIAL
    pending: list[tuple[Side, Stopwatch]] = field(default_factory=list)
    samples: dict[Side, list[float]] = field(default_factory=dict)  # this rank's, at the verdict
    agreed: tuple[float, float] | None = None  # (plan, dense) medians, the slowest rank's


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class PlanGuard:
    """Verifies each guarded bucket's plan against dense (``turn`` per iteration, ``timed``
    around the forward it runs)."""

    def __init__(
        self,
        config: GuardConfig,
        stopwatch: Callable[[], Stopwatch] = WallStopwatch,
        agree: Agree | None = None,
    ) -> None:
        self.config = config
        self.stopwatch = stopwatch
        self.agree: Agree = agree or (lambda values: values)
        self.trials: dict[BucketKey, BucketTrial] = {}

    def turn(self, key: BucketKey, plan: str) -> Turn:
        """The side this iteration of bucket ``key`` (whose plan is ``plan``) runs. Called once
        per iteration of the bucket, in the same order on every rank; the first call after the
        trial's last sample decides the bucket (a collective under tensor parallelism)."""
        trial = self.trials.setdefault(key, BucketTrial(plan))
        if trial.state is BucketState.TRIAL and trial.hits >= 2 * self.config.samples:
            self._decide(key, trial)
        if trial.state is BucketState.KEPT:
            return Turn(key, Side.PLAN, False)
        if trial.state is BucketState.VETOED:
            return Turn(key, Side.DENSE, False)
        side = Side.PLAN if trial.hits % 2 == 0 else Side.DENSE
        trial.hits += 1
        return Turn(key, side, True)

    def untimed_turn(self, key: BucketKey) -> Turn:
        """The side an iteration of bucket ``key`` runs outside its trial (a profiled forward,
        whose per-operation hooks would skew a sample): dense once vetoed, else the plan;
        never timed, and the bucket's trial does not advance."""
        side = Side.DENSE if self.state(key) is BucketState.VETOED else Side.PLAN
        return Turn(key, side, False)

    def timed(self, turn: Turn | None, run: Callable[[], R]) -> R:
        """``run()``, timed when ``turn`` is a trial's."""
        if turn is None or not turn.timed:
            return run()
        watch = self.stopwatch()
        out = run()
        watch.stop()
        self.trials[turn.key].pending.append((turn.side, watch))
        return out

    def _decide(self, key: BucketKey, trial: BucketTrial) -> None:
        for side in Side:
            trial.samples[side] = [w.ms() for s, w in trial.pending if s is side]
        trial.pending.clear()
        local = [_median(trial.samples[Side.PLAN]), _median(trial.samples[Side.DENSE])]
        plan_ms, dense_ms = self.agree(local)
        trial.agreed = (plan_ms, dense_ms)
        keep = plan_ms <= dense_ms * (1 - self.config.min_gain)
        trial.state = BucketState.KEPT if keep else BucketState.VETOED
        logger.info("plan guard: bucket of %d decodes, %d prefill tokens, context %d: %s "
                    "%.3f ms against dense %.3f ms (medians of %d each, the slowest rank's): %s",
                    *key, trial.plan, plan_ms, dense_ms, self.config.samples,
                    "kept" if keep else "vetoed, the bucket runs dense")  # fmt: skip

    def state(self, key: BucketKey) -> BucketState | None:
        trial = self.trials.get(key)
        return None if trial is None else trial.state

    def report(self) -> list[dict[str, Any]]:
        """Per guarded bucket met so far, plain data (a benchmark record's ``plan_guard``)."""
        out = []
        for key, t in sorted(self.trials.items()):
            plan_s, dense_s = t.samples.get(Side.PLAN, []), t.samples.get(Side.DENSE, [])
            out.append({
                "bucket": list(key), "plan": t.plan, "verdict": t.state.value,
                "samples": self.config.samples, "trial_iterations": t.hits,
                "plan_ms": None if t.agreed is None else round(t.agreed[0], 4),
                "dense_ms": None if t.agreed is None else round(t.agreed[1], 4),
                "plan_mean_ms": round(statistics.fmean(plan_s), 4) if plan_s else None,
                "dense_mean_ms": round(statistics.fmean(dense_s), 4) if dense_s else None,
                "plan_samples_ms": [round(x, 4) for x in plan_s],
                "dense_samples_ms": [round(x, 4) for x in dense_s],
            })  # fmt: skip
        return out


def max_over_ranks(device: torch.device) -> Agree:
    """The element-wise MAX over the default process group's ranks (a collective: every rank
    calls it at the same point of its iterations)."""
    import torch.distributed as dist

    def agree(values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [float(v) for v in t.tolist()]

    return agree


def guard_for(config: GuardConfig | None, device: torch.device, agree: Agree | None = None
              ) -> PlanGuard | None:  # fmt: skip
    """The engine's plan guard (None: off, ``EngineConfig.guard_config()`` None), timing on
    ``device``'s clock; ``agree``: the ranks' MAX under tensor parallelism."""
    return None if config is None else PlanGuard(config, stopwatch_for(device), agree)
