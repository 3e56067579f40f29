"""``nanolang batch``: OpenAI batch requests answered by the server's own request handling.

Each request line goes, as an HTTP request, to the app ``nanolang serve`` runs: in this process
through an in-memory ASGI transport (the same routes, validation, error bodies and engine as the
server, without a socket), or to a server at ``--server URL`` with transient failures retried
with back-off. Each answer becomes a line of OpenAI's batch output format::

    {"id": "batch_req_...", "custom_id": "...",
     "response": {"status_code": 200, "request_id": "...", "body": {...}} | null,
     "error": null | {"code": "...", "message": "..."},
     "nanolang": {"fingerprint": {"request": "..."}, "latency_s": 0.12}}

An HTTP error (a 400 for a bad body, say) is a ``response`` with its status and error body; a
request that got no HTTP answer (a bad line, a server unreachable through every retry) has
``response: null`` and an ``error``. ``nanolang`` is this project's extension: the request's
fingerprint (for resuming) and its latency.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from nanolang.backends.base import Backend
from nanolang.backends.native_http import server_root
from nanolang.backends.retry import Retrier, RetryPolicy, TransientError, check_status
from nanolang.jobs.batch_input import BatchRow
from nanolang.jobs.error_text import kept_error
from nanolang.jobs.job import engine_cache_stats
from nanolang.jobs.resume import LineFormat
from nanolang.jobs.runner import CacheStats, Finished
from nanolang.jobs.summary import RowStats

if TYPE_CHECKING:
    from nanolang.backends.local import LocalBackend

EXTENSION = "nanolang"
TIMEOUT_S = 600.0

ClientFactory = Callable[[], httpx.AsyncClient]


def failed(line: Mapping[str, Any]) -> bool:
    response = line.get("response") or {}
    return line.get("error") is not None or int(response.get("status_code", 0)) >= 400


BATCH_LINES = LineFormat(
    key="custom_id",
    fingerprint_of=lambda line: (line.get(EXTENSION) or {}).get("fingerprint"),
    failed=failed,
)


def error_message(line: Mapping[str, Any]) -> str | None:
    if line.get("error") is not None:
        return str(line["error"].get("message", line["error"]))
    response = line.get("response") or {}
    if int(response.get("status_code", 0)) >= 400:
        body = response.get("body") or {}
        detail = body.get("error", {}).get("message") if isinstance(body, dict) else body
        return f"HTTP {response.get('status_code')}: {detail}"
    return None


def usage(line: Mapping[str, Any]) -> dict[str, Any]:
    body = (line.get("response") or {}).get("body")
    found = body.get("usage") if isinstance(body, dict) else None
    return found if isinstance(found, dict) else {}


def batch_row_stats(line: Mapping[str, Any]) -> RowStats:
    tokens = usage(line)
    return RowStats(
        error=error_message(line),
        latency_s=float((line.get(EXTENSION) or {}).get("latency_s", 0.0)),
        prompt_tokens=int(tokens.get("prompt_tokens", 0)),
        completion_tokens=int(tokens.get("completion_tokens", 0)),
    )


def output_line(
    row: BatchRow,
    response: dict[str, Any] | None,
    error: dict[str, str] | None,
    latency_s: float,
) -> dict[str, Any]:
    if error is not None:
        error = {**error, "message": kept_error(error["message"])}
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": row.custom_id,
        "response": response,
        "error": error,
        EXTENSION: {"fingerprint": row.fingerprint, "latency_s": round(latency_s, 4)},
    }


def local_client_factory(backend: LocalBackend, model_name: str) -> ClientFactory:
    """Clients of the server's app around ``backend``, in memory (no socket)."""
    from nanolang.server import ServerConfig, create_app

    app = create_app(ServerConfig(model=model_name, model_name=model_name), backend)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return lambda: httpx.AsyncClient(
        transport=transport, base_url="http://nanolang-batch", timeout=TIMEOUT_S
    )


def remote_client_factory(url: str, api_key: str | None) -> ClientFactory:
    """Clients of the server at ``url`` (its root or its ``/v1`` base: the request lines' urls
    start with /v1)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(TIMEOUT_S, connect=10.0)
    root = server_root(url)
    return lambda: httpx.AsyncClient(base_url=root, headers=headers, timeout=timeout)


class BatchRunner:
    """Answers request rows (a ``Runner``). ``retry``: back-off for a remote server; None for
    the in-process app, which has no transient failures."""

    def __init__(
        self,
        make_client: ClientFactory,
        retry: RetryPolicy | None = None,
        backend: Backend | None = None,
        target: str = "server",
    ) -> None:
        self.make_client = make_client
        self.retrier = Retrier(retry, target) if retry is not None else None
        self.backend = backend
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def row_id(self, row: BatchRow) -> str:
        return row.custom_id

    def client(self) -> httpx.AsyncClient:
        """One client per event loop (each ``asyncio.run`` gets its own)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = self.make_client(), loop
        return self._client

    async def run(self, row: BatchRow) -> Finished:
        start = time.perf_counter()
        response, error = None, None
        if row.problem is not None:
            error = {"code": "invalid_request", "message": row.problem}
        else:
            try:
                response = await self.send(row)
            except TransientError as exc:
                code = "server_unreachable" if exc.unreachable else "server_error"
                error = {"code": code, "message": str(exc)}
            except httpx.HTTPError as exc:
                error = {"code": "request_failed", "message": f"{type(exc).__name__}: {exc}"}
        line = output_line(row, response, error, time.perf_counter() - start)
        stats = batch_row_stats(line)
        return Finished(
            row.custom_id,
            line,
            failed(line),
            stats.completion_tokens,
            stats.latency_s,
            stats.error,
        )

    async def send(self, row: BatchRow) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            answer = await self.client().post(row.url, json=row.body)
            if self.retrier is not None:
                check_status(answer.status_code, answer.content)
            try:
                body: Any = answer.json()
            except ValueError:
                body = {"text": kept_error(answer.text)}
            request_id = answer.headers.get("x-request-id") or f"req_{uuid.uuid4().hex}"
            return {"status_code": answer.status_code, "request_id": request_id, "body": body}

        return await (self.retrier.run(once) if self.retrier is not None else once())

    def cache_stats(self) -> CacheStats | None:
        return None if self.backend is None else engine_cache_stats(self.backend)
