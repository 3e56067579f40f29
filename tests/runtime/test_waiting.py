"""The waiting queue's kept-up-to-date answers (group members in queue order, blocks needed,
program count) against the same answers recomputed from a plain deque, on random operations."""

from __future__ import annotations

import random
from collections import deque

import pytest

from runtime.program_ref import ProgramRef
from runtime.sampling_params import SamplingParams
from runtime.sequence import Sequence
from runtime.waiting import WaitingQueue, group_key

BS = 4


def blocks_needed(num_tokens: int) -> int:
    return (num_tokens + BS - 1) // BS


def make_seq(rng: random.Random, order: int) -> Sequence:
    tokens = [rng.randrange(100) for _ in range(rng.randrange(1, 30))]
    s = Sequence(f"r{order}", None, tokens, SamplingParams(max_tokens=4), 0, order)
    kind = rng.randrange(3)
    if kind:  # a program request, in a group (fork siblings) or not
        group = rng.randrange(3) if kind == 2 else None
        s.program = ProgramRef(instance=rng.randrange(4), node=order, group=group)
    return s


def check(q: WaitingQueue, ref: deque[Sequence]) -> None:
    assert list(q) == list(ref)
    assert len(q) == len(ref) and bool(q) == bool(ref)
    assert q.blocks_needed == sum(blocks_needed(s.num_tokens) for s in ref)
    assert q.num_programs == sum(1 for s in ref if s.program is not None)
    keys = {group_key(s) for s in ref} | {(i, g) for i in range(4) for g in range(3)}
    for key in keys - {None}:
        assert q.group(key) == [s for s in ref if group_key(s) == key]  # queue order
    for s in ref:
        assert s in q


@pytest.mark.parametrize("seed", range(20))
def test_waiting_queue_matches_a_plain_deque_on_random_operations(seed: int) -> None:
    rng = random.Random(seed)
    q, ref = WaitingQueue(blocks_needed), deque[Sequence]()
    outside: list[Sequence] = []
    order = 0
    for _ in range(400):
        op = rng.randrange(7)
        if op <= 1 or (not ref and not outside):  # a new request
            s = make_seq(rng, order)
            order += 1
            q.append(s)
            ref.append(s)
        elif op == 2 and outside:  # a preempted one goes back to the front
            s = outside.pop(rng.randrange(len(outside)))
            q.appendleft(s)
            ref.appendleft(s)
        elif op == 3 and ref:  # deferred ones: popped off the front, then pushed back in order
            popped = [q.popleft() for _ in range(rng.randrange(1, len(ref) + 1))]
            expect = [ref.popleft() for _ in popped]
            assert popped == expect
            q.push_front(popped)
            ref.extendleft(reversed(expect))
        elif op == 4 and ref:  # admitted or finished from anywhere in the queue
            s = ref[rng.randrange(len(ref))]
            q.remove(s)
            ref.remove(s)
            outside.append(s)
        elif op == 5 and ref:  # progress priority: re-sorted by a key
            key = {s: (rng.randrange(3), s.arrival_order) for s in ref}
            q.sort(key=key.__getitem__)
            ref = deque(sorted(ref, key=key.__getitem__))
        elif op == 6 and ref:
            s = q.popleft()
            assert s is ref.popleft()
            outside.append(s)
        check(q, ref)


def test_a_sequence_cannot_wait_twice() -> None:
    q = WaitingQueue(blocks_needed)
    s = make_seq(random.Random(0), 0)
    q.append(s)
    with pytest.raises(ValueError, match="already waiting"):
        q.appendleft(s)
    assert list(q) == [s] and q.blocks_needed == blocks_needed(s.num_tokens)


@pytest.mark.parametrize("seed", range(20))
def test_reposition_moves_the_instances_that_progressed_to_their_sorted_places(seed: int) -> None:
    rng = random.Random(seed)
    rank = {i: rng.randrange(10) for i in range(4)}

    def key(s: Sequence) -> tuple[int, ...]:
        ref = s.program
        return (0, s.arrival_order) if ref is None else (rank[ref.instance], s.arrival_order)

    q = WaitingQueue(blocks_needed)
    for order in range(rng.randrange(1, 40)):
        q.append(make_seq(rng, order))
    q.sort(key=key)
    moved = {i for i in range(4) if rng.random() < 0.5}
    for i in moved:
        rank[i] -= rng.randrange(1, 5)  # progress moves an instance up the order
    expect = sorted(q, key=key)
    q.reposition(moved, key=key)
    assert list(q) == expect
    for k in {group_key(s) for s in q} - {None}:
        assert k is not None
        assert q.group(k) == [s for s in expect if group_key(s) == k]
