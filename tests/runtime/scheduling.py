"""Driving a Scheduler without a model, the way the engine advances what it schedules."""

from __future__ import annotations

from runtime.scheduler import Scheduler
from runtime.sequence import FinishReason


def run_to_completion(sched: Scheduler, max_tokens: int, limit: int = 500) -> tuple[list[int], int]:
    """Schedule until nothing is unfinished: every chunk is computed, every sampling sequence
    gets token 7 and finishes at ``max_tokens`` outputs. Returns each iteration's batch size and
    the preemptions; fails after ``limit`` iterations (no progress) or on an empty batch."""
    sizes: list[int] = []
    preempted = 0
    while sched.has_unfinished():
        out = sched.schedule()
        assert not out.is_empty, "nothing scheduled with requests unfinished"
        preempted += len(out.preempted)
        sizes.append(len(out.scheduled))
        for e in out.scheduled:
            samples = e.samples
            e.seq.num_computed_tokens += e.num_tokens
            if samples:
                e.seq.output_token_ids.append(7)
                if len(e.seq.output_token_ids) == max_tokens:
                    e.seq.finish(FinishReason.LENGTH)
                    sched.remove(e.seq)
        assert len(sizes) < limit, "no progress"
    return sizes, preempted
