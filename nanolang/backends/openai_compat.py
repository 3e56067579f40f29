"""``OpenAI(url, model)``: programs against any OpenAI-compatible server.

What such a server can do: a plain-text context becomes a ``/v1/completions`` prompt, and a
context of role blocks whose open last block is an empty ``assistant`` becomes a
``/v1/chat/completions`` request. Everything else is refused with ``UnsupportedByServer``, never
approximated: ``select`` (needs prompt log-probabilities), regex / JSON-schema constraints,
``top_k`` / ``min_p`` / ``stop_token_ids`` / ``ignore_eos``, text mixed with role blocks, and
continuing an assistant message that already has text. Requests go through ``openai.AsyncOpenAI``
(pooled connections, retries with exponential back-off on connection errors, 408, 409, 429, 5xx).
"""

from __future__ import annotations

import os
import time
from typing import Any

import openai

from nanolang.backends.base import Backend
from nanolang.backends.native_http import RemoteError
from nanolang.backends.per_loop import PerLoop
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
    if params.top_logprobs:
        raise UnsupportedByServer(
            "top_logprobs_num (the k likeliest tokens per position, also what a max_tokens = 0 "
            "gen reads) is not returned through this OpenAI-compatible backend; run against a "
            "nanolang server (nanolang.backends.HTTP) or locally"
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
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 2,
    ) -> None:
        base = url.rstrip("/")
        self.base = base if base.endswith("/v1") else f"{base}/v1"
        self.model = model
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._clients = PerLoop(
            lambda: openai.AsyncOpenAI(
                base_url=self.base,
                api_key=key or "unused",  # servers without keys ignore the header
                timeout=timeout_s,
                max_retries=max_retries,
            ),
            lambda client: client.close(),
        )
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
        try:
            if turns:
                request_id, text, finish, logprobs = await self._chat(turns, body, params)
            else:
                request_id, text, finish, logprobs = await self._complete(plain, body, params)
        except openai.APIStatusError as exc:
            raise RemoteError(f"server answered {exc.status_code}: {_message(exc)}") from exc
        except openai.APIConnectionError as exc:
            raise RemoteError(f"cannot reach {self.base}: {exc}") from exc
        return RequestOutput(
            request_id=request_id,
            prompt=None,
            prompt_token_ids=list(prompt_ids),
            text=text,
            token_ids=[],
            finished=True,
            finish_reason="length" if finish == "length" else "stop",
            stop_reason=None,
            logprobs=logprobs if params.logprobs else None,
            prompt_logprobs=None,
            metrics=RequestMetrics(arrival_time=time.perf_counter()),
        )

    async def _chat(
        self, turns: list[Turn], body: dict[str, Any], params: SamplingParams
    ) -> tuple[str, str, str | None, list[float]]:
        reply = await self._clients.get().chat.completions.create(
            messages=chat_messages(turns),  # type: ignore[arg-type]
            logprobs=params.logprobs,
            **body,
        )
        choice = reply.choices[0]
        entries = choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
        logprobs = [entry.logprob for entry in entries]
        return reply.id, choice.message.content or "", choice.finish_reason, logprobs

    async def _complete(
        self, prompt: str, body: dict[str, Any], params: SamplingParams
    ) -> tuple[str, str, str | None, list[float]]:
        if params.logprobs:
            body["logprobs"] = 0
        reply = await self._clients.get().completions.create(prompt=prompt, **body)
        choice = reply.choices[0]
        token_logprobs = choice.logprobs.token_logprobs if choice.logprobs else None
        logprobs = [float(x) for x in token_logprobs or [] if x is not None]
        return reply.id, choice.text, choice.finish_reason, logprobs

    def close(self) -> None:
        self._clients.close()


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return exc.message
