"""The online plan guard: a plan set's pipeline checked against the dense forward on the live
engine, per bucket, and kept only where it measured faster.

A plan set's choices come from a cost model (the network search's rooflines under tensor
parallelism, a profile otherwise) that can be wrong on the live engine. For each bucket whose
plan is not dense, the iterations that land in it alternate plan, dense, plan, dense, ... and
each forward (or decode graph replay) is timed on the device (CUDA events; a wall clock on the
CPU). Each plan iteration and the dense one after it make a pair; a pair counts only when both
ran the same kind of forward (``Turn.mode``: eager, or a decode graph and, under "by-context",
which attention variant it replays), since an eager forward against a graph replay, or a
uniform-context kernel against a ragged one, measures the kind, not the plan. Once
``samples`` pairs count (or ``4 x samples`` pairs were tried), the next iteration of the bucket
decides: the plan is KEPT when the median of the pairs' plan / dense ratios is at most
``1 - min_gain``, else VETOED (the bucket runs dense). Iterations of one bucket have similar
shapes, and the ratio of neighbours cancels the drift (contexts grow, batches shrink) that a
comparison of the two sides' medians keeps. ``recheck_every`` iterations after a verdict the
bucket is tried again (a verdict taken while the first calls compiled kernels, say, is not
kept for the whole run).

Under tensor parallelism every rank must run the same side on the same iteration (a pipeline
issues more all-reduces than dense: ranks that disagreed would deadlock). Every rank runs the
same iterations in the same order, so the alternation, which follows only the bucket's hit
count, and the pairs' modes, which follow the batch, are the same on every rank; at the
decision each rank's [ratio, plan, dense] medians are all-reduced with MAX (the slowest rank's
decide: the plan is kept only when every rank measured the gain) and every rank applies that
verdict.
"""

from __future__ import annotations

import logging
import math
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
    samples: int = 4  # pairs (a plan forward, then a dense one of the same mode) per verdict
    min_gain: float = 0.02  # the plan is kept when at least this share faster than dense
    recheck_every: int = 4096  # bucket iterations after a verdict until a new trial (0: never)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"plan guard samples must be >= 1, got {self.samples}")
        if not 0 <= self.min_gain < 1:
            raise ValueError(f"plan guard min_gain must be in [0, 1), got {self.min_gain}")
        if self.recheck_every < 0:
            raise ValueError(f"plan guard recheck_every must be >= 0, got {self.recheck_every}")

    @property
    def max_pairs(self) -> int:
        """Pairs a trial tries before it decides on those that count (all of other modes:
        no pair counts, and the plan, not shown faster, is vetoed)."""
        return 4 * self.samples


EAGER = "eager"  # a Turn's mode: an eager forward (a decode graph's is "graph", ...)


@dataclass(frozen=True)
class Turn:
    """What one iteration of a guarded bucket runs, whether it is timed (a trial's), the kind
    of forward it is (``mode``) and, when timed, its place in the trial (``index``)."""

    key: BucketKey
    side: Side
    timed: bool
    mode: str = EAGER
    index: int = -1

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
    hits: int = 0  # iterations of the current trial issued (plan on even, dense on odd ones)
    state: BucketState = BucketState.TRIAL
    modes: list[str] = field(default_factory=list)  # each trial iteration's mode, in order
    pending: list[tuple[int, Side, Stopwatch]] = field(default_factory=list)
    samples: dict[Side, list[float]] = field(default_factory=dict)  # this rank's counted pairs
    agreed: tuple[float, float, float] | None = None  # (ratio, plan, dense) medians, slowest rank's
    dropped: int = 0  # pairs of the last trial that did not count (their modes differed)
    since_verdict: int = 0  # iterations run since the last verdict
    verdicts: list[str] = field(default_factory=list)  # every verdict so far, in order

    def counted_pairs(self) -> int:
        return sum(self.modes[i] == self.modes[i + 1] for i in range(0, self.hits - 1, 2))

    def complete(self, config: GuardConfig) -> bool:
        pairs = self.hits // 2
        return self.hits % 2 == 0 and (
            self.counted_pairs() >= config.samples or pairs >= config.max_pairs
        )

    def restart(self) -> None:
        """A new trial of the bucket (the last verdict's figures stay until the next)."""
        self.state, self.hits, self.modes, self.since_verdict = BucketState.TRIAL, 0, [], 0


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("inf")


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 4)


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

    def turn(self, key: BucketKey, plan: str, mode: str = EAGER) -> Turn:
        """The side this iteration of bucket ``key`` (whose plan is ``plan``; a forward of kind
        ``mode``) runs. Called once per iteration of the bucket, in the same order on every
        rank; the first call after the trial's last pair decides the bucket (a collective under
        tensor parallelism), and the call ``recheck_every`` iterations after a verdict starts a
        new trial."""
        trial = self.trials.setdefault(key, BucketTrial(plan))
        if trial.state is BucketState.TRIAL and trial.complete(self.config):
            self._decide(key, trial)
        elif trial.state is not BucketState.TRIAL and 0 < self.config.recheck_every <= (
            trial.since_verdict
        ):
            trial.restart()
        if trial.state is not BucketState.TRIAL:
            trial.since_verdict += 1
            side = Side.PLAN if trial.state is BucketState.KEPT else Side.DENSE
            return Turn(key, side, False, mode)
        side = Side.PLAN if trial.hits % 2 == 0 else Side.DENSE
        trial.modes.append(mode)
        trial.hits += 1
        return Turn(key, side, True, mode, trial.hits - 1)

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
        self.trials[turn.key].pending.append((turn.index, turn.side, watch))
        return out

    def _decide(self, key: BucketKey, trial: BucketTrial) -> None:
        times = {i: (side, w.ms()) for i, side, w in trial.pending}
        trial.pending.clear()
        pairs = [
            (times[i][1], times[i + 1][1])
            for i in range(0, trial.hits - 1, 2)
            if trial.modes[i] == trial.modes[i + 1] and i in times and i + 1 in times
        ]
        trial.dropped = trial.hits // 2 - len(pairs)
        trial.samples = {Side.PLAN: [p for p, _ in pairs], Side.DENSE: [d for _, d in pairs]}
        ratios = [p / d if d > 0 else float("inf") for p, d in pairs]
        local = [_median(ratios), _median(trial.samples[Side.PLAN]),
                 _median(trial.samples[Side.DENSE])]  # fmt: skip
        ratio, plan_ms, dense_ms = self.agree(local)
        trial.agreed = (ratio, plan_ms, dense_ms)
        keep = ratio <= 1 - self.config.min_gain
        trial.state = BucketState.KEPT if keep else BucketState.VETOED
        trial.verdicts.append(trial.state.value)
        trial.since_verdict = 0
        logger.info("plan guard: bucket of %d decodes, %d prefill tokens, context %d: %s "
                    "%.3f ms against dense %.3f ms, median ratio %.3f of %d pairs (%d of other "
                    "modes left out; the slowest rank's): %s",
                    *key, trial.plan, plan_ms, dense_ms, ratio, len(pairs), trial.dropped,
                    "kept" if keep else "vetoed, the bucket runs dense")  # fmt: skip

    def state(self, key: BucketKey) -> BucketState | None:
        trial = self.trials.get(key)
        return None if trial is None else trial.state

    def report(self) -> list[dict[str, Any]]:
        """Per guarded bucket met so far, plain data (a benchmark record's ``plan_guard``)."""
        out = []
        for key, t in sorted(self.trials.items()):
            plan_s, dense_s = t.samples.get(Side.PLAN, []), t.samples.get(Side.DENSE, [])
            ratio, plan_ms, dense_ms = t.agreed or (math.inf, math.inf, math.inf)
            out.append({
                "bucket": list(key), "plan": t.plan, "verdict": t.state.value,
                "verdicts": list(t.verdicts), "samples": self.config.samples,
                "trial_iterations": t.hits, "pairs": len(plan_s), "dropped_pairs": t.dropped,
                "ratio": _finite(ratio), "plan_ms": _finite(plan_ms),
                "dense_ms": _finite(dense_ms),
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
