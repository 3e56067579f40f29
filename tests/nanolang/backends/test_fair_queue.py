"""FairQueue: groups take turns, items keep their order within a group, removal by key."""

from __future__ import annotations

import pytest

from nanolang.backends.fair_queue import FairQueue


def take_all(queue: FairQueue[str]) -> list[str]:
    out = []
    while (item := queue.take()) is not None:
        out.append(item)
    return out


def test_groups_take_turns_in_arrival_order() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(4):
        queue.put("big", f"b{i}", f"b{i}")
    queue.put("small", "s0", "s0")
    queue.put("other", "o0", "o0")
    queue.put("other", "o1", "o1")
    assert len(queue) == 7
    assert take_all(queue) == ["b0", "s0", "o0", "b1", "o1", "b2", "b3"]
    assert not queue and queue.take() is None


def test_a_group_arriving_later_waits_one_turn_of_each_other_group() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(1000):
        queue.put("big", f"b{i}", f"b{i}")
    assert queue.take() == "b0"
    queue.put("late", "l0", "l0")
    assert [queue.take(), queue.take()] == ["b1", "l0"]


def test_remove_takes_an_item_out_and_keeps_the_turns() -> None:
    queue: FairQueue[str] = FairQueue()
    for key in ("a0", "a1"):
        queue.put("a", key, key)
    queue.put("b", "b0", "b0")
    assert queue.remove("a0") == "a0"
    assert queue.remove("a0") is None
    assert queue.remove("b0") == "b0"  # its group empties and leaves the line
    assert take_all(queue) == ["a1"]


def test_a_key_is_held_once_and_clear_hands_everything_back() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.put("a", "k", "x")
    with pytest.raises(ValueError, match="already held"):
        queue.put("b", "k", "y")
    queue.put("b", "j", "y")
    assert sorted(queue.clear()) == ["x", "y"]
    assert len(queue) == 0 and queue.take() is None
