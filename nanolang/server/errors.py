"""OpenAI-style error bodies: ``{"error": {"message", "type", "param", "code"}}`` with 4xx/5xx."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class InternalErrors:
    """ASGI middleware: an exception no handler took (a bug) becomes an OpenAI-style 500 and
    the connection stays open for the client's next request. (Starlette's own last-resort
    handler answers too, but then re-raises, and uvicorn closes the connection: a client
    reusing it, as the openai SDK's pool does, saw its next, valid request fail with a
    connection reset.) An exception after the response started (a stream) still propagates:
    the half-sent response cannot be completed, so the connection must close."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await send_error(send, 500, f"internal server error: {type(exc).__name__}")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors: list[dict[str, Any]] = list(exc.errors())
    if not errors:
        return "invalid request", None
    first = errors[0]
    unknown = [_where(e) for e in errors if e.get("type") == "extra_forbidden"]
    if unknown:
        names = ", ".join(unknown)
        return (
            f"unknown or unsupported fields: {names} (this server does not accept them)",
            unknown[0],
        )
    if first.get("type") == "json_invalid":
        return f"malformed JSON body: {first.get('msg', '')}", None
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    return f"{param or 'body'}: {first.get('msg', 'invalid value')}", param


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
