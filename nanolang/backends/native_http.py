"""``HTTP(url)``: programs against a ``nanolang serve`` server, with the local backend's results.

Prompts are tokenized on the client with the server's own tokenizer (fetched once from
``/v1/nano/tokenizer``), and each request goes to ``/v1/nano/generate`` as token ids with every
``SamplingParams`` field, so the server's engine receives exactly what a local engine would.
Requests stream, so cancelling a caller closes its connection and the server aborts the request.
Transient failures (connection refused or cut, 429 / 5xx) are retried with back-off
(``nanolang.backends.retry``); what still fails raises ``RemoteError`` with a one-line message.
"""

from __future__ import annotations

import json
import os
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
        self._clients = PerLoop(self._make_client, lambda client: client.aclose())
        self.retrier = Retrier(retry or RetryPolicy(), self.url)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            try:
                files = self.retrier.run_sync(self._fetch_tokenizer)
            except TransientError as exc:
                raise RemoteError(f"cannot fetch the tokenizer: {exc}") from None
            self._tokenizer = tokenizer_from_files(files)
        return self._tokenizer

    def _fetch_tokenizer(self) -> dict[str, str]:
        response = httpx.get(
            f"{self.url}/v1/nano/tokenizer", headers=self.headers, timeout=self.timeout
        )
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
