"""The scheduler's program policies (runtime.instances): parent pinning, group admission,
progress priority and whole-instance preemption, on the scheduler alone (no model)."""

from __future__ import annotations

import random

import pytest

from runtime.block_allocator import BlockAllocator
from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.instances import Instance, InstanceTable
from runtime.program_ref import ProgramRef
from runtime.sampling_params import SamplingParams
from runtime.scheduler import Scheduler
from runtime.sequence import FinishReason, Sequence, SequenceStatus

BS = 4


def make(num_blocks: int = 32, budget: int = 64, max_seqs: int = 16) -> Scheduler:
    # admission on the prompt alone: these tests count prompt blocks exactly
    cfg = EngineConfig(block_size=BS, max_num_batched_tokens=budget, max_num_seqs=max_seqs,
                       admission_reserve_tokens=0)  # fmt: skip
    return Scheduler(cfg, BlockManager(num_blocks, BS, enable_prefix_caching=True))


_order = iter(range(10_000))


def seq(tokens: list[int], ref: ProgramRef | None = None, max_tokens: int = 4) -> Sequence:
    order = next(_order)
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True)
    s = Sequence(f"r{order}", None, list(tokens), params, 0, order)
    s.program = ref
    return s


def step(sched: Scheduler) -> list[str]:
    """One iteration as the engine applies it: advance, sample token 7, register blocks."""
    out = sched.schedule()
    for e in out.scheduled:
        samples = e.samples
        e.seq.num_computed_tokens += e.num_tokens
        if samples:
            e.seq.output_token_ids.append(7)
        sched.blocks.register(e.seq)
    return [e.seq.request_id for e in out.scheduled]


def finish(sched: Scheduler, s: Sequence) -> None:
    s.finish(FinishReason.LENGTH)
    sched.remove(s)


def run_until_prefilled(sched: Scheduler, s: Sequence) -> None:
    while s.status is not SequenceStatus.RUNNING or s.in_prefill:
        step(sched)


def test_a_parents_blocks_stay_pinned_until_its_child_is_admitted() -> None:
    sched = make(num_blocks=8)
    prompt = list(range(1, 14))  # 13 tokens: 3 full blocks
    parent = seq(prompt, ProgramRef(instance=1, node=0, pin=True))
    sched.add(parent)
    run_until_prefilled(sched, parent)
    finish(sched, parent)
    pinned = sched.instances.instances[1].pins[0]
    assert len(pinned) == 3 and sched.instances.stats.pinned_blocks == 3
    # another request fills every free block: without the pin it would evict the parent's prefix
    other = seq([50 + i for i in range(4 * 5 - 1)])
    sched.add(other)
    run_until_prefilled(sched, other)
    finish(sched, other)
    assert all(sched.blocks.allocator.refcount(b) == 1 for b in pinned)
    child = seq([*prompt, 7, 8, 9], ProgramRef(instance=1, node=1, parent=0, unpin=(0,)))
    sched.add(child)
    step(sched)
    assert child.num_cached_tokens == 12  # the parent's three blocks, served from the cache
    assert 0 not in sched.instances.instances[1].pins  # released once the child holds them
    assert sched.instances.stats.pinned_blocks == 0


def test_ending_the_instance_releases_its_pins() -> None:
    sched = make()
    parent = seq(list(range(1, 10)), ProgramRef(instance=5, node=0, pin=True))
    sched.add(parent)
    run_until_prefilled(sched, parent)
    finish(sched, parent)
    free_before = sched.blocks.allocator.num_free
    sched.instances.release(5)
    assert sched.blocks.allocator.num_free == free_before + 2
    assert 5 not in sched.instances.instances


def test_a_fork_group_is_admitted_together_after_its_prefix_is_computed_once() -> None:
    sched = make(budget=8)
    shared = list(range(1, 17))  # 16 tokens: 4 full blocks
    members = [
        seq([*shared, 100 + i], ProgramRef(instance=2, node=i, parent=None, group=9))
        for i in range(4)
    ]
    for m in members:
        sched.add(m)
    first = step(sched)
    assert first == [members[0].request_id]  # the first member alone computes the prefix
    while members[0].in_prefill:
        assert all(m.status is SequenceStatus.WAITING for m in members[1:])
        step(sched)
    step(sched)
    assert all(m.status is SequenceStatus.RUNNING for m in members[1:])  # the rest, together
    assert [m.num_cached_tokens for m in members[1:]] == [16, 16, 16]
    assert sched.instances.stats.groups_admitted == 1


def test_a_group_that_does_not_fit_waits_whole() -> None:
    sched = make(num_blocks=9, budget=64)
    shared = list(range(1, 9))  # 2 blocks
    members = [
        seq(shared + [100 + i] * 6, ProgramRef(instance=3, node=i, group=1)) for i in range(3)
    ]
    blocker = seq(list(range(200, 213)))  # 4 blocks held by an unrelated request
    sched.add(blocker)
    step(sched)
    for m in members:
        sched.add(m)
    run_until_prefilled(sched, members[0])  # leader: 2 shared + 2 own blocks; 1 block left
    step(sched)
    assert all(m.status is SequenceStatus.WAITING for m in members[1:])  # not one of them
    finish(sched, blocker)
    step(sched)
    assert all(m.status is SequenceStatus.RUNNING for m in members[1:])


def _one_done_and_two_waiting(sched: Scheduler) -> tuple[Sequence, Sequence]:
    """Instance 10 has finished a request; a new instance's request arrives, then 10's next."""
    early = seq([1, 2, 3], ProgramRef(instance=10, node=0))
    sched.add(early)
    run_until_prefilled(sched, early)
    finish(sched, early)
    fresh = seq([4, 5, 6], ProgramRef(instance=11, node=0))
    sched.add(fresh)
    later = seq([1, 2, 3, 7, 8], ProgramRef(instance=10, node=1, parent=0))
    sched.add(later)
    return fresh, later


def test_instances_further_along_are_admitted_first_when_memory_is_short() -> None:
    sched = make(num_blocks=7, max_seqs=2)
    hog = seq(list(range(100, 117)), max_tokens=64)  # 5 of 7 blocks: the waiting need 3 more
    sched.add(hog)
    step(sched)
    fresh, later = _one_done_and_two_waiting(sched)
    assert sched.instances.short_of_memory(sched.waiting.blocks_needed)
    assert step(sched) == [hog.request_id, later.request_id]
    assert fresh.status is SequenceStatus.WAITING


def test_with_memory_to_spare_requests_are_admitted_in_arrival_order() -> None:
    sched = make(max_seqs=1)
    fresh, later = _one_done_and_two_waiting(sched)
    assert not sched.instances.short_of_memory(sched.waiting.blocks_needed)
    assert step(sched) == [fresh.request_id]  # arrival order keeps batches full to the end
    assert later.status is SequenceStatus.WAITING


def test_kv_pressure_preempts_a_whole_instance() -> None:
    sched = make(num_blocks=6, budget=64)
    ahead = [seq([1, 2, 3 + i], ProgramRef(instance=20, node=i)) for i in range(2)]
    behind = [seq([9, 8, 5 + i], ProgramRef(instance=21, node=i)) for i in range(2)]
    sched.instances.instances.clear()
    for s in ahead:
        sched.add(s)
    sched.instances.instances[20].progress = 3  # instance 20 is further along
    for s in behind:
        sched.add(s)
    step(sched)  # all four running, one block each; two blocks free
    assert all(s.status is SequenceStatus.RUNNING for s in ahead + behind)
    for _ in range(2):
        step(sched)  # decodes cross into second blocks: the pool runs out
    assert [s.metrics.num_preemptions for s in ahead] == [0, 0]
    assert [s.metrics.num_preemptions for s in behind] == [1, 1]  # both calls of 21, together
    assert sched.instances.stats.instances_preempted == 1


def test_a_group_behind_a_cached_prefix_is_admitted_at_once() -> None:
    sched = make(budget=64)
    shared = list(range(1, 17))
    parent = seq(shared, ProgramRef(instance=4, node=0, pin=True))
    sched.add(parent)
    run_until_prefilled(sched, parent)
    finish(sched, parent)
    members = [
        seq([*shared, 7, 100 + i], ProgramRef(instance=4, node=1, parent=0, group=1, unpin=(0,)))
        for i in range(3)
    ]
    for m in members:
        sched.add(m)
    assert step(sched) == [m.request_id for m in members]  # no wait: the prefix was cached
    assert [m.num_cached_tokens for m in members] == [16, 16, 16]


def _lowest_pinned_brute(table: InstanceTable, below: Sequence | None) -> Instance | None:
    """The instance ``release_lowest_pins`` must pick, by a scan of every instance."""
    floor = table.priority(below)[:2] if below is not None else None
    pinned = [
        inst
        for inst in table.instances.values()
        if inst.pins and (floor is None or (-inst.progress, inst.arrival) > floor)
    ]
    return max(pinned, key=lambda i: (-i.progress, i.arrival), default=None)


@pytest.mark.parametrize("seed", range(8))
def test_the_lowest_pinned_instance_is_found_among_the_pinned_ones(seed: int) -> None:
    """``release_lowest_pins`` searches only the instances holding pins: on random finishes
    (pinning or not), unpins, releases and searches it picks what a scan of every instance
    picks, and its set of pinned instances stays exact."""
    rng = random.Random(seed)
    table = InstanceTable(BlockAllocator(4096), BS)
    nodes = iter(range(10**6))
    for _ in range(600):
        op = rng.randrange(6)
        instance = rng.randrange(12)
        ref = ProgramRef(instance=instance, node=next(nodes), pin=rng.random() < 0.6)
        s = seq([1, 2, 3], ref)
        if op <= 2:  # a request finishes (noted first if its instance is new)
            table.note(s)
            table.finished(s, table.allocator.allocate(rng.randrange(0, 3)))
        elif op == 3 and table.instances.get(instance) and table.instances[instance].pins:
            table.unpin(instance, (rng.choice(list(table.instances[instance].pins)),))
        elif op == 4:
            table.release(instance)
        else:  # a search, under a random request or none
            table.note(s)
            below = s if rng.random() < 0.5 else None
            expected = _lowest_pinned_brute(table, below)
            held = dict(expected.pins) if expected is not None else {}
            assert table.release_lowest_pins(below) is (expected is not None)
            if expected is not None:
                assert held and not expected.pins
        assert set(table._pinned) == {i for i in table.instances.values() if i.pins}


def _waiting_more_than_free(sched: Scheduler, peaks: list[int | None]) -> list[Sequence]:
    """One request per instance (declaring ``peaks``), together needing more blocks than free."""
    seqs = [
        seq(list(range(1, 14)), ProgramRef(instance=30 + i, node=0, peak_tokens=p))
        for i, p in enumerate(peaks)
    ]
    for s in seqs:
        sched.add(s)
    assert sched.waiting.blocks_needed > sched.blocks.allocator.num_free
    return seqs


def test_instances_whose_declared_peaks_fit_together_never_make_the_cache_short() -> None:
    sched = make(num_blocks=10)  # 40 tokens; each 13-token prompt counts 4 blocks: 12 > 10
    _waiting_more_than_free(sched, [13, 13, 13])
    assert sched.instances.fit_at_peak()
    assert not sched.instances.short_of_memory(sched.waiting.blocks_needed)


def test_an_undeclared_or_too_large_peak_leaves_the_waiting_count_to_judge() -> None:
    for peaks in ([13, 13, None], [13, 13, 15]):
        sched = make(num_blocks=10)
        _waiting_more_than_free(sched, peaks)
        assert not sched.instances.fit_at_peak()
        assert sched.instances.short_of_memory(sched.waiting.blocks_needed)


def test_an_ended_instance_no_longer_counts_at_its_peak() -> None:
    sched = make(num_blocks=10)
    _waiting_more_than_free(sched, [13, 13, 15, None])
    assert not sched.instances.fit_at_peak()
    sched.instances.release(32)
    sched.instances.release(33)
    assert sched.instances.fit_at_peak()
