"""ASGI middleware that runs before routing: a request-body size cap and the API key."""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nanolang.server.errors import send_error

OPEN_PATHS = frozenset({"/health"})


class BodySizeLimit:
    """Answers 413 to bodies over ``max_bytes``: by Content-Length, or for a body without one
    (chunked) by reading it first, up to the limit, and replaying it to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await send_error(send, 413, f"request body over {self.max_bytes} bytes")
                return
            await self.app(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await send_error(send, 413, f"request body over {self.max_bytes} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(parts)
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class APIKeyGuard:
    """When ``api_key`` is set, requires ``Authorization: Bearer <key>`` on all but /health."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.api_key and scope["path"] not in OPEN_PATHS:
            given = _header(scope, b"authorization") or ""
            scheme, _, token = given.partition(" ")
            ok = scheme.lower() == "bearer" and secrets.compare_digest(
                token.strip().encode(), self.api_key.encode()
            )
            if not ok:
                await send_error(send, 401, "missing or invalid API key", "invalid_api_key")
                return
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None
