"""Request fields to ``SamplingParams``: OpenAI's and vLLM's fields and the native full set,
with a 400 for every value the engine cannot honour."""

from __future__ import annotations

import json
import re
from typing import Any

from nanolang.server.errors import APIError
from nanolang.server.protocol import NativeParams, OpenAIRequest, ResponseFormat
from runtime.constraints import ConstraintSpec
from runtime.sampling_params import SamplingParams

MAX_STOP = 256  # stop strings per request (lm-eval sends more than OpenAI's 4)


def refuse_unsupported(**unsupported: bool) -> None:
    """400 for options this engine cannot honour (never silently ignored)."""
    for name, refused in unsupported.items():
        if refused:
            raise APIError(400, f"{name} is not supported by this server", name)


def check_stream_options(req: OpenAIRequest) -> None:
    """``stream_options`` only with ``stream: true`` (as OpenAI and vLLM answer)."""
    if req.stream_options is not None and not req.stream:
        raise APIError(400, "stream_options is only allowed with stream: true", "stream_options")


def check_n(n: int, max_n: int) -> None:
    if not 1 <= n <= max_n:
        raise APIError(400, f"n must be in [1, {max_n}], got {n}", "n")


def check_choices(prompts: int, n: int, limit: int) -> None:
    """400 for a request whose prompts times ``n`` exceed the server's ``--max-choices``."""
    if prompts * n > limit:
        raise APIError(
            400,
            f"this request asks for {prompts * n} choices ({prompts} prompts x n={n}); this "
            f"server takes at most {limit} per request (nanolang serve --max-choices): split "
            "the prompts over several requests",
            "prompt" if prompts > 1 else "n",
        )


def stop_list(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(items) > MAX_STOP or any(not s for s in items):
        raise APIError(400, f"stop must be up to {MAX_STOP} non-empty strings", "stop")
    return items


def logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    out = {}
    for key, value in (bias or {}).items():
        if not key.lstrip("-").isdigit():
            raise APIError(400, f"logit_bias keys must be token ids, got {key!r}", "logit_bias")
        out[int(key)] = value
    return out


def openai_params(
    req: OpenAIRequest,
    max_tokens: int,
    seed: int | None,
    logprobs: bool,
    top_logprobs: int = 0,
    prompt_logprobs: bool = False,
    constraint: ConstraintSpec | None = None,
) -> SamplingParams:
    fields: dict[str, Any] = {}
    if constraint is not None:
        fields[constraint.kind] = constraint.text
    return sampling_params(
        dict(
            max_tokens=max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=-1 if req.top_k is None else req.top_k,
            min_p=req.min_p or 0.0,
            stop=stop_list(req.stop),
            stop_token_ids=tuple(req.stop_token_ids or ()),
            seed=seed,
            ignore_eos=req.ignore_eos,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            top_logprobs=top_logprobs,
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            repetition_penalty=1.0 if req.repetition_penalty is None else req.repetition_penalty,
            logit_bias=logit_bias(req.logit_bias),
            min_tokens=req.min_tokens,
            **fields,
        )
    )


def choice_regex(choices: list[str]) -> str:
    if not choices or any(not isinstance(c, str) or not c for c in choices):
        raise APIError(400, "choice must be a list of non-empty strings", "guided_choice")
    return "(" + "|".join(re.escape(c) for c in choices) + ")"


def _schema_text(schema: dict[str, Any] | str, param: str) -> str:
    try:
        if isinstance(schema, str):
            json.loads(schema)
            return schema
        return json.dumps(schema)
    except json.JSONDecodeError as exc:
        raise APIError(400, f"{param} is not valid JSON: {exc}", param) from exc
    except RecursionError:
        raise APIError(400, f"{param} nests too deeply", param) from None


JSON_OBJECT = '{"type": "object"}'


def requested_constraint(
    req: OpenAIRequest, response_format: ResponseFormat | None
) -> ConstraintSpec | None:
    """The one constraint a request asks for through any of the fields that can carry one."""
    found = _requested(req, response_format)
    return None if found is None else found[1]


def constraint_field(req: OpenAIRequest, response_format: ResponseFormat | None) -> str | None:
    """The field that carries the request's constraint (what its errors name)."""
    found = _requested(req, response_format)
    return None if found is None else found[0]


def _requested(
    req: OpenAIRequest, response_format: ResponseFormat | None
) -> tuple[str, ConstraintSpec] | None:
    found: list[tuple[str, ConstraintSpec]] = []
    if response_format is not None and response_format.type == "json_object":
        found.append(("response_format", ConstraintSpec("json_schema", JSON_OBJECT)))
    if response_format is not None and response_format.type == "json_schema":
        given = response_format.json_schema
        if given is None or given.schema_ is None:
            raise APIError(400, "response_format json_schema needs a schema", "response_format")
        text = _schema_text(given.schema_, "response_format")
        found.append(("response_format", ConstraintSpec("json_schema", text)))
    so = req.structured_outputs
    candidates: dict[str, tuple[str, Any]] = {
        "guided_json": ("json_schema", req.guided_json),
        "json_schema": ("json_schema", req.json_schema),
        "guided_regex": ("regex", req.guided_regex),
        "regex": ("regex", req.regex),
        "guided_choice": ("choice", req.guided_choice),
        "guided_grammar": ("grammar", req.guided_grammar),
        "structured_outputs.json": ("json_schema", so.json_ if so else None),
        "structured_outputs.regex": ("regex", so.regex if so else None),
        "structured_outputs.choice": ("choice", so.choice if so else None),
        "structured_outputs.grammar": ("grammar", so.grammar if so else None),
        "structured_outputs.json_object": ("json_object", so.json_object or None if so else None),
    }
    for param, (kind, value) in candidates.items():
        if value is None:
            continue
        if kind == "json_schema":
            found.append((param, ConstraintSpec(kind, _schema_text(value, param))))
        elif kind == "choice":
            found.append((param, ConstraintSpec("regex", choice_regex(value))))
        elif kind == "json_object":
            found.append((param, ConstraintSpec("json_schema", JSON_OBJECT)))
        else:
            found.append((param, ConstraintSpec(kind, value)))
    if len(found) > 1:
        names = ", ".join(p for p, _ in found)
        raise APIError(400, f"give at most one constraint; this request has {names}", found[1][0])
    return found[0] if found else None


def choice_seed(seed: int | None, index: int) -> int | None:
    """Choice ``index`` of a seeded request with n > 1 gets ``seed + index`` (distinct draws)."""
    return None if seed is None else seed + index


def native_params(params: NativeParams) -> SamplingParams:
    fields = params.model_dump()
    if params.json_schema is not None:
        fields["json_schema"] = _schema_text(params.json_schema, "params.json_schema")
    fields["logit_bias"] = logit_bias(params.logit_bias)
    return sampling_params(fields, "params.")


def sampling_params(fields: dict[str, Any], param_prefix: str = "") -> SamplingParams:
    """``SamplingParams(**fields)``; a 400 naming the field it refused (as ``param``)."""
    try:
        return SamplingParams(**fields)
    except (ValueError, TypeError) as exc:
        raise APIError(400, str(exc), _refused_field(str(exc), fields, param_prefix)) from exc


def _refused_field(message: str, fields: dict[str, Any], prefix: str) -> str | None:
    """The field a ``SamplingParams`` error starts with ("top_p must be in (0, 1], ...")."""
    first = message.removeprefix("invalid SamplingParams: ").split(" ", 1)[0]
    return prefix + first if first in fields else None
