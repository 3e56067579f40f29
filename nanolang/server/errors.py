"""OpenAI-style error bodies: ``{"error": {"message", "type", "param", "code"}}`` with 4xx/5xx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nanolang.server.protocol import UNSUPPORTED
from nanolang.server.streams import ClientGone, sse

log = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    500: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """Raised by handlers; becomes an OpenAI-style error response."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(status, message, param, code)
    return JSONResponse(body, status_code=status, headers=headers)


def error_event(exc: Exception) -> str:
    """The SSE event that ends a stream which failed after its 200 went out, with the same
    OpenAI-style body as an error response (the openai SDK raises ``APIError`` on it); an
    exception other than ``APIError`` is a bug: logged, and sent as a 500's body."""
    if isinstance(exc, APIError):
        return sse(error_body(exc.status, exc.message, exc.param, exc.code))
    log.error("a stream failed", exc_info=exc)
    return sse(error_body(500, f"internal server error: {type(exc).__name__}"))


async def send_error(send: Send, status: int, message: str, code: str | None = None) -> None:
    """An OpenAI-style error response sent straight through ASGI (for middleware)."""
    body = json.dumps(error_body(status, message, None, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ResponseProgress:
    """What of a response has gone out through ASGI ``send``."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.streaming = False  # an SSE body
        self.ended = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            headers = dict(message.get("headers", ()))
            self.streaming = headers.get(b"content-type", b"").startswith(b"text/event-stream")
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.ended = True
        await self.send(message)


class InFlight:
    """How many HTTP requests the app is handling; shutdown waits for them to end, since
    uvicorn re-raises SIGTERM once the lifespan is over, and that kills the process at once: a
    request cancelled at shutdown lost the end of its answer."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self, timeout_s: float) -> None:
        """Until no request is in flight, or ``timeout_s`` has passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)


class InternalErrors:
    """ASGI middleware: an exception no handler took (a bug) becomes an OpenAI-style 500 and
    the connection stays open for the client's next request. (Starlette's own last-resort
    handler answers too, but then re-raises, and uvicorn closes the connection: a client
    reusing it, as the openai SDK's pool does, saw its next, valid request fail with a
    connection reset.) An exception after the response started (a stream) still propagates:
    the half-sent response cannot be completed, so the connection must close.

    A request cancelled because the server is stopping (uvicorn cancels what still runs when
    its graceful-shutdown time is over, or on a second Ctrl-C) is answered 503
    ``server_shutting_down``, or its stream ends with that error as an event, and logged in one
    line (uvicorn logged a traceback for each, and answered a plain-text 500)."""

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.in_flight.held():
            await self._handle(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        progress = ResponseProgress(send)
        try:
            await self.app(scope, receive, progress)
        except Exception as exc:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if progress.started:
                raise
            await send_error(send, 500, f"internal server error: {type(exc).__name__}")
        except asyncio.CancelledError:
            log.warning("%s %s cancelled: the server is stopping", scope.get("method"),
                        scope.get("path"))  # fmt: skip
            with contextlib.suppress(Exception):  # the connection may be gone already
                await _end_cancelled(send, progress)


SHUTTING_DOWN = "the server is shutting down; the request was cancelled"


async def _end_cancelled(send: Send, progress: ResponseProgress) -> None:
    if not progress.started:
        await send_error(send, 503, SHUTTING_DOWN, "server_shutting_down")
    elif progress.streaming and not progress.ended:
        event = sse(error_body(503, SHUTTING_DOWN, None, "server_shutting_down")).encode()
        await send({"type": "http.response.body", "body": event, "more_body": False})


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors: list[dict[str, Any]] = list(exc.errors())
    if not errors:
        return "invalid request", None
    first = errors[0]
    unknown = [_where(e) for e in errors if e.get("type") == "extra_forbidden"]
    refused = [name for name in unknown if name in UNSUPPORTED]
    if refused:
        name = refused[0]
        return f"{name} is not supported by this server: {UNSUPPORTED[name]}", name
    if unknown:
        names = ", ".join(unknown)
        return (
            f"unknown or unsupported fields: {names} (this server does not accept them)",
            unknown[0],
        )
    if first.get("type") == "json_invalid":
        return f"malformed JSON body: {first.get('msg', '')}", None
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if not loc and first.get("type") == "model_attributes_type":
        return _not_an_object(first.get("input")), None
    param = ".".join(loc) or None
    return f"{param or 'body'}: {first.get('msg', 'invalid value')}", param


def _not_an_object(body: Any) -> str:
    """Why the body is not a request object. Bytes: FastAPI did not read it as JSON, because
    its Content-Type is not JSON's (``curl -d`` sends a form's)."""
    if isinstance(body, bytes | str):
        return "the body must be a JSON object sent with Content-Type: application/json"
    return f"the body must be a JSON object, not {type(body).__name__}"


def _where(error: dict[str, Any]) -> str:
    return ".".join(str(p) for p in error.get("loc", ()) if p != "body")


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app raises leaves as an OpenAI-style body."""

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(400, message, param)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        # its headers stay: a 405's Allow names the methods the route takes
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, exc: ClientGone) -> JSONResponse:
        return error_response(400, "the client closed the connection; the request was aborted")
