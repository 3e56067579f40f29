"""Requests held back from the engine, taken round-robin across the groups that sent them.

A server request with many choices (a list of prompts times ``n``) is one group of engine
requests. Put in the engine's queue all at once, its thousands of sequences stood before every
later request (the queue is first-come first-served), so one client's batch delayed another's
single prompt by minutes. Held here instead, each group's requests enter the engine one turn at a
time, so a group that arrives later gets its turn after at most one request of every other group.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Items by key, each in a group; ``take`` serves the groups in turn (the first item of the
    group whose turn it is; a group with items left goes to the back of the line)."""

    def __init__(self) -> None:
        self._groups: dict[Hashable, dict[str, T]] = {}  # in turn order, items in arrival order
        self._group_of: dict[str, Hashable] = {}

    def __len__(self) -> int:
        return len(self._group_of)

    def __bool__(self) -> bool:
        return bool(self._group_of)

    def put(self, group: Hashable, key: str, item: T) -> None:
        """Hold ``item`` (under a ``key`` not held already) at the back of ``group``."""
        if key in self._group_of:
            raise ValueError(f"{key!r} is already held")
        self._groups.setdefault(group, {})[key] = item
        self._group_of[key] = group

    def take(self) -> T | None:
        """The next item in turn, or None when nothing is held."""
        if not self._groups:
            return None
        group = next(iter(self._groups))
        items = self._groups.pop(group)
        key = next(iter(items))
        item = items.pop(key)
        del self._group_of[key]
        if items:
            self._groups[group] = items  # back of the line
        return item

    def remove(self, key: str) -> T | None:
        """Take out the item held under ``key`` (None if none is); its group keeps its turn."""
        group = self._group_of.pop(key, None)
        if group is None:
            return None
        items = self._groups[group]
        item = items.pop(key)
        if not items:
            del self._groups[group]
        return item

    def clear(self) -> list[T]:
        """Every held item (in no particular order), leaving none held."""
        items = [item for group in self._groups.values() for item in group.values()]
        self._groups.clear()
        self._group_of.clear()
        return items
