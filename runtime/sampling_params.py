"""Per-request sampling parameters, validated at construction."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any


class ConstraintError(ValueError):
    """A regex or JSON schema that cannot be compiled; the message says why."""


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded.

    ``temperature == 0`` means greedy. ``top_k <= 0`` disables top-k. ``stop`` strings never appear
    in the returned text. ``logprobs`` returns the log-probability (under the model's raw
    distribution) of each sampled token; ``prompt_logprobs`` returns it for every prompt token but
    the first (from ``prompt_logprobs_from`` on: earlier positions come back as None and may be
    served from the prefix cache, which is how ``select`` scores choices after a shared context).
    ``top_logprobs`` (0-20) adds, at each of those positions, the most likely tokens with their
    log-probabilities. ``regex`` / ``json_schema`` / ``grammar`` (Lark) constrain the output
    through token masks. ``presence_penalty`` / ``frequency_penalty`` (OpenAI's, over output
    tokens), ``repetition_penalty`` (over prompt and output tokens; 1 = off), ``logit_bias``
    (token id -> added logit) and ``min_tokens`` (EOS and stop token ids masked until that many
    tokens exist) change the distribution sampled from; logprobs stay the raw model's.
    ``score_token_ids`` returns, at every sampled position, the raw model's log-probability of
    each of these token ids (``RequestOutput.score_logprobs``); with ``max_tokens=1`` that is the
    distribution right after the prompt, which is how ``select`` scores one-token choices with
    one request instead of one prompt per choice.
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False
    logprobs: bool = False
    prompt_logprobs: bool = False
    prompt_logprobs_from: int = 1  # first prompt position whose logprob is wanted (earlier: None)
    regex: str | None = None
    json_schema: str | None = None
    grammar: str | None = None
    top_logprobs: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    min_tokens: int = 0
    score_token_ids: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # normalise convenient inputs (a single stop string, lists, a dict schema)
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif self.stop is None:
            object.__setattr__(self, "stop", ())
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        ids = () if self.stop_token_ids is None else tuple(int(t) for t in self.stop_token_ids)
        object.__setattr__(self, "stop_token_ids", ids)
        scored = () if self.score_token_ids is None else tuple(self.score_token_ids)
        object.__setattr__(self, "score_token_ids", scored)
        if isinstance(self.json_schema, dict):
            object.__setattr__(self, "json_schema", json.dumps(self.json_schema))
        bias = self.logit_bias.items() if isinstance(self.logit_bias, dict) else self.logit_bias
        object.__setattr__(self, "logit_bias", tuple((int(t), float(b)) for t, b in bias or ()))
        self._validate()

    def _validate(self) -> None:
        errors = []
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            errors.append(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if self.temperature < 0:
            errors.append(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            errors.append(f"top_p must be in (0, 1], got {self.top_p}")
        if not isinstance(self.top_k, int):
            errors.append(f"top_k must be an integer, got {self.top_k!r}")
        if not 0 <= self.min_p <= 1:
            errors.append(f"min_p must be in [0, 1], got {self.min_p}")
        if any(not isinstance(s, str) or s == "" for s in self.stop):
            errors.append(f"stop strings must be non-empty strings, got {list(self.stop)!r}")
        if not isinstance(self.prompt_logprobs_from, int) or self.prompt_logprobs_from < 1:
            errors.append(f"prompt_logprobs_from must be >= 1, got {self.prompt_logprobs_from!r}")
        scored = self.score_token_ids
        if any(not isinstance(t, int) or isinstance(t, bool) or t < 0 for t in scored):
            errors.append(f"score_token_ids must be token ids >= 0, got {self.score_token_ids!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            errors.append(f"seed must be an integer, got {self.seed!r}")
        given = [c for c in (self.regex, self.json_schema, self.grammar) if c is not None]
        if len(given) > 1:
            errors.append("give at most one of regex, json_schema and grammar")
        errors += self._sampling_errors()
        if errors:
            raise ValueError("invalid SamplingParams: " + "; ".join(errors))

    def _sampling_errors(self) -> list[str]:
        errors = []
        numbers = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "repetition_penalty": self.repetition_penalty,
        }
        numbers.update({f"logit_bias[{t}]": b for t, b in self.logit_bias})
        errors += [f"{k} must be a finite number, got {v!r}" for k, v in numbers.items()
                   if not isinstance(v, int | float) or not math.isfinite(v)]  # fmt: skip
        if not isinstance(self.top_logprobs, int) or not 0 <= self.top_logprobs <= 20:
            errors.append(f"top_logprobs must be an integer in [0, 20], got {self.top_logprobs!r}")
        if not -2 <= self.presence_penalty <= 2 or not -2 <= self.frequency_penalty <= 2:
            errors.append("presence_penalty and frequency_penalty must be in [-2, 2]")
        if not self.repetition_penalty > 0:
            errors.append(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if any(not -100 <= b <= 100 for _, b in self.logit_bias):
            errors.append("logit_bias values must be in [-100, 100]")
        if not isinstance(self.min_tokens, int) or not 0 <= self.min_tokens <= self.max_tokens:
            errors.append(f"min_tokens must be in [0, max_tokens], got {self.min_tokens!r}")
        return errors

    @property
    def adjusts_logits(self) -> bool:
        """Whether sampling needs the request's tokens on the host (penalties, bias, min_tokens)."""
        return bool(
            self.presence_penalty
            or self.frequency_penalty
            or self.repetition_penalty != 1.0
            or self.logit_bias
            or self.min_tokens
        )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def constrained(self) -> bool:
        return self.regex is not None or self.json_schema is not None or self.grammar is not None
