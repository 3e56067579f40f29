"""FairQueue: clients take turns, a client's requests take turns within its turn, items keep
their order within a request, removal by key."""

from __future__ import annotations

import pytest

from nanolang.backends.fair_queue import FairQueue, Owner


def take_all(queue: FairQueue[str]) -> list[str]:
    out = []
    while (item := queue.take()) is not None:
        out.append(item)
    return out


def put(queue: FairQueue[str], client: str, request: str, key: str) -> None:
    queue.put(Owner(client, request), key, key)


def test_requests_of_different_clients_take_turns_in_arrival_order() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(4):
        put(queue, "big", "r", f"b{i}")
    put(queue, "small", "r", "s0")
    put(queue, "other", "r", "o0")
    put(queue, "other", "r", "o1")
    assert len(queue) == 7
    assert take_all(queue) == ["b0", "s0", "o0", "b1", "o1", "b2", "b3"]
    assert not queue and queue.take() is None


def test_a_client_arriving_later_waits_one_turn_of_each_other_client() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(1000):
        put(queue, "big", "r", f"b{i}")
    assert queue.take() == "b0"
    put(queue, "late", "r", "l0")
    assert [queue.take(), queue.take()] == ["b1", "l0"]


def test_a_client_with_fifty_requests_has_one_turn() -> None:
    """Fifty one-choice requests of one client and one of another: the other's enters second,
    not after the fifty (as it did with a turn per request)."""
    queue: FairQueue[str] = FairQueue()
    for i in range(50):
        put(queue, "a", f"req{i}", f"a{i}")
    put(queue, "b", "req0", "b0")
    assert take_all(queue)[:3] == ["a0", "b0", "a1"]


def test_within_a_client_its_requests_take_turns() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(3):
        put(queue, "a", "batch", f"x{i}")
    put(queue, "a", "single", "s0")
    put(queue, "b", "r", "b0")
    put(queue, "b", "r", "b1")
    # a's turn, b's turn, a's turn (its second request), b's, then a's batch alone
    assert take_all(queue) == ["x0", "b0", "s0", "b1", "x1", "x2"]


def test_remove_takes_an_item_out_and_keeps_the_turns() -> None:
    queue: FairQueue[str] = FairQueue()
    for key in ("a0", "a1"):
        put(queue, "a", "r", key)
    put(queue, "a", "other", "a2")
    put(queue, "b", "r", "b0")
    assert queue.remove("a0") == "a0"
    assert queue.remove("a0") is None
    assert queue.remove("b0") == "b0"  # its client empties and leaves the line
    assert queue.remove("a2") == "a2"  # a request empties; its client stays
    assert take_all(queue) == ["a1"]


def test_a_key_is_held_once_and_clear_hands_everything_back() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.put(Owner("a", 1), "k", "x")
    with pytest.raises(ValueError, match="already held"):
        queue.put(Owner("b", 1), "k", "y")
    queue.put(Owner("b", 1), "j", "y")
    queue.put(Owner("b", 2), "i", "z")
    assert sorted(queue.clear()) == ["x", "y", "z"]
    assert len(queue) == 0 and queue.take() is None
