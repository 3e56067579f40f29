"""``OpenAI(url, model)``: programs against any OpenAI-compatible server.

What such a server can do: a plain-text context becomes a ``/v1/completions`` prompt, and a
context of role blocks whose open last block is an empty ``assistant`` becomes a
``/v1/chat/completions`` request. Everything else is refused with ``UnsupportedByServer``, never
approximated: ``select`` (needs prompt log-probabilities), regex / JSON-schema constraints,
``top_k`` / ``min_p`` / ``stop_token_ids`` / ``ignore_eos``, text mixed with role blocks, and
continuing an assistant message that already has text.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from nanolang.backends.base import Backend
from nanolang.backends.native_http import raise_for_error
from nanolang.backends.text_codec import TextCodec, Turn, parse
from runtime.outputs import RequestMetrics, RequestOutput
from runtime.sampling_params import SamplingParams


class UnsupportedByServer(ValueError):
    """The program needs something an OpenAI-compatible server cannot provide."""


def refuse_unsupported(params: SamplingParams) -> None:
    if params.prompt_logprobs:
        raise UnsupportedByServer(
            "select needs prompt log-probabilities, which the OpenAI API does not return; "
            "run against a nanolang server (nanolang.backends.HTTP) or locally"
        )
    if params.constrained:
        raise UnsupportedByServer(
            "regex / json_schema constraints are not part of the OpenAI API; "
            "run against a nanolang server (nanolang.backends.HTTP) or locally"
        )
    unsupported = {
        "top_k": params.top_k > 0,
        "min_p": params.min_p > 0,
        "stop_token_ids": bool(params.stop_token_ids),
        "ignore_eos": params.ignore_eos,
    }
    named = [name for name, used in unsupported.items() if used]
    if named:
        raise UnsupportedByServer(f"the OpenAI API has no {', '.join(named)}")


def chat_messages(turns: list[Turn]) -> list[dict[str, str]]:
    last = turns[-1]
    if not last.open or last.role != "assistant":
        raise UnsupportedByServer(
            "through the OpenAI chat API a gen must be the start of an assistant block "
            f"(here it follows a {'closed' if not last.open else 'open ' + last.role} message)"
        )
    if last.content:
        raise UnsupportedByServer(
            "the OpenAI chat API cannot continue an assistant message that already has text; "
            "put the text in the previous user message instead"
        )
    return [{"role": t.role, "content": t.content} for t in turns[:-1]]


class OpenAIBackend(Backend):
    """A backend for ``url`` (``.../v1`` is added when missing) serving ``model``."""

    def __init__(
        self, url: str, model: str, api_key: str | None = None, timeout_s: float = 600.0
    ) -> None:
        base = url.rstrip("/")
        self.base = base if base.endswith("/v1") else f"{base}/v1"
        self.model = model
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout = httpx.Timeout(timeout_s, connect=10.0)
        self._codec = TextCodec()

    @property
    def tokenizer(self) -> Any:
        return self._codec

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        refuse_unsupported(params)
        plain, turns = parse(self._codec.decode(prompt_ids))
        if turns and plain.strip():
            raise UnsupportedByServer(
                "text outside role blocks mixed with role blocks needs the model's own chat "
                "template; an OpenAI-compatible server takes either a prompt or messages"
            )
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if turns:
            body["messages"] = chat_messages(turns)
            body["logprobs"] = params.logprobs
            data = await self._post("/chat/completions", body)
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            logprobs = [e["logprob"] for e in (choice.get("logprobs") or {}).get("content", [])]
        else:
            body["prompt"] = plain
            if params.logprobs:
                body["logprobs"] = 0
            data = await self._post("/completions", body)
            choice = data["choices"][0]
            text = choice["text"]
            logprobs = list((choice.get("logprobs") or {}).get("token_logprobs") or [])
        return RequestOutput(
            request_id=str(data.get("id", "")),
            prompt=None,
            prompt_token_ids=list(prompt_ids),
            text=text,
            token_ids=[],
            finished=True,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            stop_reason=None,
            logprobs=logprobs if params.logprobs else None,
            prompt_logprobs=None,
            metrics=RequestMetrics(arrival_time=time.perf_counter()),
        )

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(headers=self.headers, timeout=self.timeout) as client:
            response = await client.post(f"{self.base}{path}", json=body)
        raise_for_error(response.status_code, response.content)
        return response.json()

    def close(self) -> None:
        """Nothing to release: each request uses its own connection."""
