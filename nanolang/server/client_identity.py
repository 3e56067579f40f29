"""Who sent a request, for fair admission: requests of one client share one turn to enter the
engine (``nanolang.backends.fair_queue``), however many of them it sends at once.

The identity is, in order: the request's OpenAI ``user`` field (or its successor
``safety_identifier``) when given, else the API key of its ``Authorization`` header, else the
peer's IP address (not its port: a client's concurrent requests come over several connections).
The ``user`` and the key are kept only as digests, so no key is held in the server's queues; the
peer's address is kept as it is. Clients behind one proxy that sends one key share one turn
unless they send ``user``; within a client, its requests still take turns with each other.
"""

from __future__ import annotations

import hashlib

from starlette.requests import HTTPConnection


def client_identity(request: HTTPConnection, user: str | None = None) -> str:
    """``request``'s client: ``user:`` or ``key:`` and a digest, or ``peer:`` and the address
    (see above)."""
    if user:
        return "user:" + _digest(user)
    key = _bearer_token(request.headers.get("authorization"))
    if key:
        return "key:" + _digest(key)
    peer = request.client.host if request.client is not None else ""
    return "peer:" + (peer or "unknown")


def _bearer_token(header: str | None) -> str:
    """The key of an ``Authorization: Bearer <key>`` header ("" when there is none)."""
    value = (header or "").strip()
    scheme, _, rest = value.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else value


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]
