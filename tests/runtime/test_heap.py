"""frozen_heap: what is alive at the start stays out of collections for the block, nested and
concurrent blocks share one freeze, and garbage cycles among frozen objects are collected after."""

from __future__ import annotations

import gc
import weakref

from runtime.heap import frozen_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_objects_alive_at_the_start_leave_the_collector_for_the_block() -> None:
    before = Node()
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(before)
        # a full collection walks only what was made since
        assert len(gc.get_objects()) < gc.get_freeze_count()
        assert not any(o is before for o in gc.get_objects())
        during = Node()
        assert any(o is during for o in gc.get_objects())
    assert gc.get_freeze_count() == 0
    assert any(o is before for o in gc.get_objects())


def test_nested_blocks_keep_the_freeze_until_the_outermost_ends() -> None:
    # the freeze count itself moves when frozen objects die (other tests' threads), so the test
    # asks whether an object made after the outer freeze was frozen by the inner block
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        after_freeze = Node()
        with frozen_heap():
            assert any(o is after_freeze for o in gc.get_objects())  # no second freeze
        assert gc.get_freeze_count() > 0  # the inner block's end did not unfreeze
        assert any(o is after_freeze for o in gc.get_objects())
    assert gc.get_freeze_count() == 0


def test_a_frozen_cycle_that_dies_in_the_block_is_collected_after_it() -> None:
    node = Node()
    ref = weakref.ref(node)
    with frozen_heap():
        del node
        gc.collect()
        assert ref() is not None  # frozen: the collector does not look at it
    gc.collect()
    assert ref() is None
