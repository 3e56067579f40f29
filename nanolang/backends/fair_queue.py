"""Requests held back from the engine, taken round-robin across the clients that sent them, and
within a client across its requests.

A server request with many choices (a list of prompts times ``n``) is one group of engine
requests. Put in the engine's queue all at once, its thousands of sequences stood before every
later request (the queue is first-come first-served), so one client's batch delayed another's
single prompt by minutes. Held here instead, requests enter the engine one turn at a time: the
clients take turns, and a client's turn goes to its requests in turn (a request's choices in
order). A client that sends fifty requests at once has one turn, as one that sends one request
has: the latter's request enters after at most one engine request of every other client, not one
of every other request, and a client's own small request is not stuck behind its own batch.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Owner:
    """Whose turn a held request waits for: the ``client`` that sent it (the server's client
    identity) and the ``request`` of that client it is a choice of."""

    client: Hashable
    request: Hashable


class FairQueue(Generic[T]):
    """Items by key, each with an ``Owner``; ``take`` serves the clients in turn and, in a
    client's turn, its requests in turn (the first item of the request whose turn it is; a
    request or client with items left goes to the back of its line)."""

    def __init__(self) -> None:
        # clients in turn order; each one's requests in turn order; items in arrival order
        self._clients: dict[Hashable, dict[Hashable, dict[str, T]]] = {}
        self._owner_of: dict[str, Owner] = {}

    def __len__(self) -> int:
        return len(self._owner_of)

    def __bool__(self) -> bool:
        return bool(self._owner_of)

    def put(self, owner: Owner, key: str, item: T) -> None:
        """Hold ``item`` (under a ``key`` not held already) at the back of its request."""
        if key in self._owner_of:
            raise ValueError(f"{key!r} is already held")
        requests = self._clients.setdefault(owner.client, {})
        requests.setdefault(owner.request, {})[key] = item
        self._owner_of[key] = owner

    def take(self) -> T | None:
        """The next item in turn, or None when nothing is held."""
        if not self._clients:
            return None
        client = next(iter(self._clients))
        requests = self._clients.pop(client)
        request = next(iter(requests))
        items = requests.pop(request)
        key = next(iter(items))
        item = items.pop(key)
        del self._owner_of[key]
        if items:
            requests[request] = items  # back of the client's line
        if requests:
            self._clients[client] = requests  # back of the line
        return item

    def remove(self, key: str) -> T | None:
        """Take out the item held under ``key`` (None if none is); its request and client keep
        their turns."""
        owner = self._owner_of.pop(key, None)
        if owner is None:
            return None
        requests = self._clients[owner.client]
        items = requests[owner.request]
        item = items.pop(key)
        if not items:
            del requests[owner.request]
            if not requests:
                del self._clients[owner.client]
        return item

    def clear(self) -> list[T]:
        """Every held item (in no particular order), leaving none held."""
        items = [
            item
            for requests in self._clients.values()
            for held in requests.values()
            for item in held.values()
        ]
        self._clients.clear()
        self._owner_of.clear()
        return items
