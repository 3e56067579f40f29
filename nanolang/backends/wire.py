"""``RequestOutput`` and ``SamplingParams`` as JSON: the native endpoint's wire format.

Both sides of the HTTP backend use these, so a program sees exactly the output the server's
engine produced (token ids, text, finish reason, logprobs, prompt logprobs, iterations)."""

from __future__ import annotations

import dataclasses
from typing import Any

from runtime.outputs import RequestMetrics, RequestOutput
from runtime.sampling_params import SamplingParams

PARAM_FIELDS = tuple(f.name for f in dataclasses.fields(SamplingParams) if f.name != "extra")


def params_to_dict(params: SamplingParams) -> dict[str, Any]:
    """Every field the engine reads, so the server builds an equal ``SamplingParams``."""
    out = {name: getattr(params, name) for name in PARAM_FIELDS}
    out["stop"] = list(params.stop)
    out["stop_token_ids"] = list(params.stop_token_ids)
    out["logit_bias"] = {str(t): b for t, b in params.logit_bias}
    return out


def output_to_dict(output: RequestOutput) -> dict[str, Any]:
    return dataclasses.asdict(output)


def output_from_dict(data: dict[str, Any]) -> RequestOutput:
    fields = dict(data)
    fields["metrics"] = RequestMetrics(**fields["metrics"])
    for key in ("top_logprobs", "prompt_top_logprobs"):  # JSON made the token ids strings
        if fields.get(key) is not None:
            fields[key] = [_int_keys(d) for d in fields[key]]
    return RequestOutput(**fields)


def _int_keys(top: dict[str, float] | None) -> dict[int, float] | None:
    return None if top is None else {int(k): v for k, v in top.items()}
