"""Request fields to ``SamplingParams``: OpenAI's subset and the native full set, with 400s."""

from __future__ import annotations

import json
from typing import Any

from nanolang.check.constraints import json_schema_error, regex_error
from nanolang.server.errors import APIError
from nanolang.server.protocol import NativeParams, OpenAIRequest
from runtime.sampling_params import SamplingParams


def refuse_unsupported(req: OpenAIRequest, **extra: Any) -> None:
    """400 for OpenAI options this engine cannot honour (never silently ignored)."""
    if req.presence_penalty or req.frequency_penalty:
        raise APIError(400, "presence / frequency penalties are not supported", "presence_penalty")
    if req.logit_bias:
        raise APIError(400, "logit_bias is not supported", "logit_bias")
    for name, unsupported in extra.items():
        if unsupported:
            raise APIError(400, f"{name} is not supported by this server", name)


def check_n(n: int, max_n: int) -> None:
    if not 1 <= n <= max_n:
        raise APIError(400, f"n must be in [1, {max_n}], got {n}", "n")


def stop_list(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(items) > 4 or any(not s for s in items):
        raise APIError(400, "stop must be up to 4 non-empty strings", "stop")
    return items


def openai_params(
    req: OpenAIRequest, max_tokens: int, seed: int | None, logprobs: bool
) -> SamplingParams:
    return sampling_params(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        stop=stop_list(req.stop),
        seed=seed,
        logprobs=logprobs,
    )


def choice_seed(seed: int | None, index: int) -> int | None:
    """Choice ``index`` of a seeded request with n > 1 gets ``seed + index`` (distinct draws)."""
    return None if seed is None else seed + index


def native_params(params: NativeParams) -> SamplingParams:
    fields = params.model_dump()
    if params.regex is not None and (problem := regex_error(params.regex)):
        raise APIError(400, problem, "params.regex", "invalid_regex")
    if params.json_schema is not None:
        schema = params.json_schema
        text = schema if isinstance(schema, str) else json.dumps(schema)
        if problem := json_schema_error(text):
            raise APIError(400, problem, "params.json_schema", "invalid_json_schema")
        fields["json_schema"] = text
    return sampling_params(**fields)


def sampling_params(**fields: Any) -> SamplingParams:
    try:
        return SamplingParams(**fields)
    except (ValueError, TypeError) as exc:
        raise APIError(400, str(exc)) from exc
