"""``HTTP(url)``: programs against a ``nanolang serve`` server, with the local backend's results.

Prompts are tokenized on the client with the server's own tokenizer (fetched once from
``/v1/nano/tokenizer``, one client for a fetch and its retries; a failed fetch is remembered: a
server that answers an error has no tokenizer for this backend, and one that stays busy or
unreachable is asked again only after ``RetryPolicy.max_s``), and each request goes to
``/v1/nano/generate`` as token ids with every ``SamplingParams`` field, so the server's engine
receives exactly what a local engine would.
Requests stream, so cancelling a caller closes its connection and the server aborts the request.
Transient failures (connection refused or cut, 429 / 5xx) are retried with back-off
(``nanolang.backends.retry``); what still fails raises ``RemoteError`` with a one-line message.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from nanolang.backends.base import Backend, BackendError
from nanolang.backends.per_loop import PerLoop
from nanolang.backends.remote_tokenizer import tokenizer_from_files
from nanolang.backends.retry import (
    Retrier,
    RetryPolicy,
    TransientError,
    body_text,
    check_status,
)
from nanolang.backends.wire import DeltaDecoder, params_to_dict
from runtime.outputs import RequestOutput
from runtime.sampling_params import SamplingParams

API_KEY_ENV = "NANOLANG_API_KEY"


class RemoteError(BackendError):
    """The server refused or failed a request (its status and error message)."""


def raise_for_error(status: int, body: bytes) -> None:
    if status < 400:
        return
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body_text(body)
    raise RemoteError(f"server answered {status}: {message}")


def server_root(url: str) -> str:
    """A server's root URL from what users pass: the root, or the ``/v1`` base as OpenAI
    clients' ``base_url`` is written (``http://host:8000/v1/`` -> ``http://host:8000``)."""
    root = url.rstrip("/")
    return root.removesuffix("/v1") if root.endswith("/v1") else root


@dataclass(frozen=True)
class FetchFailure:
    """A failed tokenizer fetch: its message, and when to ask again (``None``: never, the
    server answered an error)."""

    message: str
    retry_at: float | None

    def holds(self, now: float) -> bool:
        return self.retry_at is None or now < self.retry_at


class HTTPBackend(Backend):
    """A backend whose engine is a nanolang server at ``url`` (e.g. ``http://127.0.0.1:8000``;
    its ``/v1`` base works too)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_connections: int = 256,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = server_root(url)
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout = httpx.Timeout(timeout_s, connect=10.0)
        self.limits = httpx.Limits(max_connections=max_connections)
        self._tokenizer: Any = None
        self._tokenizer_failure: FetchFailure | None = None
        self._tokenizer_lock = threading.Lock()
        self._clients = PerLoop(self._make_client, lambda client: client.aclose())
        self.retrier = Retrier(retry or RetryPolicy(), self.url)

    @property
    def tokenizer(self) -> Any:
        tokenizer = self._tokenizer
        if tokenizer is not None:
            return tokenizer
        with self._tokenizer_lock:
            if self._tokenizer is None:
                self._tokenizer = self._load_tokenizer()
            return self._tokenizer

    def _load_tokenizer(self) -> Any:
        """The server's tokenizer, or ``RemoteError``: the remembered failure while it holds
        (every instance asks for the tokenizer), else a new fetch's."""
        failure = self._tokenizer_failure
        if failure is not None and failure.holds(time.monotonic()):
            raise RemoteError(failure.message)
        try:
            # one client for the fetch and its retries, closed with it: nothing for close() to
            # race (a fetch happens once, or once per failure's back-off: see FetchFailure)
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout) as c:
                files = self.retrier.run_sync(lambda: self._fetch_tokenizer(c))
        except TransientError as exc:
            message = f"cannot fetch the tokenizer: {exc}"
            retry_at = time.monotonic() + self.retrier.policy.max_s
            self._tokenizer_failure = FetchFailure(message, retry_at)
            raise RemoteError(message) from None
        except RemoteError as exc:
            self._tokenizer_failure = FetchFailure(str(exc), None)
            raise
        return tokenizer_from_files(files)

    @staticmethod
    def _fetch_tokenizer(client: httpx.Client) -> dict[str, str]:
        response = client.get("/v1/nano/tokenizer")
        check_status(response.status_code, response.content)
        raise_for_error(response.status_code, response.content)
        return dict(response.json()["files"])

    def _make_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=self.timeout, limits=self.limits
        )

    def client(self) -> httpx.AsyncClient:
        """The running event loop's connection pool."""
        return self._clients.get()

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        try:
            return await self.retrier.run(lambda: self._generate_once(prompt_ids, params))
        except TransientError as exc:
            raise RemoteError(str(exc)) from None

    async def _generate_once(self, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        body: dict[str, Any] = {
            "prompt_token_ids": list(prompt_ids),
            "params": params_to_dict(params),
            "stream": True,
        }
        decoder = DeltaDecoder()
        async with self.client().stream("POST", "/v1/nano/generate", json=body) as response:
            if response.status_code >= 400:
                content = await response.aread()
                check_status(response.status_code, content)
                raise_for_error(response.status_code, content)
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[len("data: ") :])
                if "error" in event:
                    raise RemoteError(f"server error: {event['error'].get('message')}")
                decoder.add(event)
        output = decoder.output()
        if output is None:
            raise TransientError("the server's stream ended before the request finished")
        return output

    def close(self) -> None:
        self._clients.close()
