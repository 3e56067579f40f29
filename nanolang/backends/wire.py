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
    return out


def output_to_dict(output: RequestOutput) -> dict[str, Any]:
    return dataclasses.asdict(output)


def output_from_dict(data: dict[str, Any]) -> RequestOutput:
    fields = dict(data)
    fields["metrics"] = RequestMetrics(**fields["metrics"])
    return RequestOutput(**fields)
