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
    for key in ("top_logprobs", "prompt_top_logprobs", "score_logprobs"):  # ids became strings
        if fields.get(key) is not None:
            fields[key] = [_int_keys(d) for d in fields[key]]
    return RequestOutput(**fields)


def _int_keys(top: dict[str, float] | None) -> dict[int, float] | None:
    return None if top is None else {int(k): v for k, v in top.items()}


# lists that grow with the output
DELTA_FIELDS = ("token_ids", "logprobs", "top_logprobs", "score_logprobs")
PROMPT_FIELDS = ("prompt_token_ids", "prompt_logprobs", "prompt_top_logprobs")


class DeltaEncoder:
    """The native stream's events: each carries the text and tokens that are new since the
    previous event (prompt fields only in the first; every other field as of now). Text that a
    stop string could still cut is held back until the request finishes."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.text_sent = 0
        self.tokens_sent = 0
        self.first = True

    def event(self, output: RequestOutput) -> dict[str, Any]:
        data = output_to_dict(output)
        end = len(output.text) if output.finished else max(len(output.text) - self.hold, 0)
        end = max(end, self.text_sent)
        data["text"] = output.text[self.text_sent : end]
        self.text_sent = end
        start, self.tokens_sent = self.tokens_sent, len(output.token_ids)
        for key in DELTA_FIELDS:
            if data[key] is not None:
                data[key] = data[key][start:]
        if not self.first:
            for key in PROMPT_FIELDS:
                data[key] = None
        self.first = False
        return data


class DeltaDecoder:
    """Rebuilds the engine's ``RequestOutput`` from a native stream's delta events."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None

    def add(self, event: dict[str, Any]) -> None:
        if self.state is None:
            self.state = dict(event)
            return
        state = self.state
        text = state["text"] + event["text"]
        grown = {k: None if state[k] is None else state[k] + (event[k] or []) for k in DELTA_FIELDS}
        kept = {k: state[k] for k in PROMPT_FIELDS}
        state.update(event)
        state.update(grown, text=text, **kept)

    def output(self) -> RequestOutput | None:
        if self.state is None or not self.state.get("finished"):
            return None
        return output_from_dict(self.state)
