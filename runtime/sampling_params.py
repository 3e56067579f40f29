"""Per-request sampling parameters, validated at construction."""

from __future__ import annotations

import json
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
    ``regex`` / ``json_schema`` constrain the output through token masks.
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
        if isinstance(self.json_schema, dict):
            object.__setattr__(self, "json_schema", json.dumps(self.json_schema))
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
        if self.seed is not None and not isinstance(self.seed, int):
            errors.append(f"seed must be an integer, got {self.seed!r}")
        if self.regex is not None and self.json_schema is not None:
            errors.append("give at most one of regex and json_schema")
        if errors:
            raise ValueError("invalid SamplingParams: " + "; ".join(errors))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def constrained(self) -> bool:
        return self.regex is not None or self.json_schema is not None
