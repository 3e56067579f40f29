"""The scheduler keeps its waiting queue in progress-priority order across changes and sorts only
after one that can break it: on random program workloads under KV pressure it forms exactly the
batches of a scheduler that sorts on every pass (the brute-force version)."""

from __future__ import annotations

import random

import pytest

from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.program_ref import ProgramRef
from runtime.sampling_params import SamplingParams
from runtime.scheduler import Scheduler, SchedulerOutput
from runtime.sequence import FinishReason, Sequence

BS = 4


class SortEveryPass(Scheduler):
    """The brute force: the queue is never taken to be in order."""

    def schedule(self) -> SchedulerOutput:
        self._in_priority_order = False
        return super().schedule()


def make(cls: type[Scheduler], num_blocks: int) -> Scheduler:
    cfg = EngineConfig(block_size=BS, max_num_batched_tokens=48, max_num_seqs=8)
    return cls(cfg, BlockManager(num_blocks, BS, enable_prefix_caching=True))


def run(cls: type[Scheduler], seed: int) -> tuple[list[list[tuple[str, int]]], int]:
    """Instances of a root call then a fork of 2-4 calls over its context, arriving over time;
    returns every batch (request id, tokens) and how many passes found memory short."""
    rng = random.Random(seed)
    sched = make(cls, num_blocks=rng.randrange(24, 40))
    order = iter(range(10**6))
    live: dict[int, list[Sequence]] = {}  # instance -> its requests not finished
    stage: dict[int, int] = {}
    batches, short = [], 0

    def add(instance: int, prompt: list[int], group: int | None) -> None:
        n = next(order)
        params = SamplingParams(max_tokens=rng.randrange(1, 6), ignore_eos=True)
        s = Sequence(f"i{instance}-r{n}", None, prompt, params, 0, n)
        s.program = ProgramRef(instance=instance, node=n, group=group)
        live.setdefault(instance, []).append(s)
        sched.add(s)

    next_instance = 0
    for _ in range(400):
        if next_instance < 30 and rng.random() < 0.4:  # a new instance
            base = [rng.randrange(50) for _ in range(rng.randrange(4, 20))]
            stage[next_instance] = 0
            add(next_instance, base, None)
            next_instance += 1
        out = sched.schedule()
        short += sched.instances._short
        batches.append([(e.seq.request_id, e.num_tokens) for e in out.scheduled])
        for e in out.scheduled:
            samples = e.samples
            e.seq.num_computed_tokens += e.num_tokens
            if samples:
                e.seq.output_token_ids.append(rng.randrange(50))
            sched.blocks.register(e.seq)
        for e in out.scheduled:
            s = e.seq
            if s.is_finished or len(s.output_token_ids) < s.params.max_tokens:
                continue
            s.finish(FinishReason.LENGTH)
            sched.remove(s)
            inst = s.program.instance if s.program is not None else -1
            live[inst].remove(s)
            if stage[inst] == 0:  # the root is done: fork over its whole context
                stage[inst] = 1
                for _ in range(rng.randrange(2, 5)):
                    add(inst, [*s.token_ids, rng.randrange(50)], 0)
            elif not live[inst]:
                sched.release_instance(inst)
        if not sched.has_unfinished() and next_instance >= 30:
            break
    assert not sched.has_unfinished()
    return batches, short


@pytest.mark.parametrize("seed", range(12))
def test_kept_order_schedules_exactly_as_sorting_every_pass(seed: int) -> None:
    kept, short = run(Scheduler, seed)
    brute, brute_short = run(SortEveryPass, seed)
    assert short == brute_short
    assert kept == brute
