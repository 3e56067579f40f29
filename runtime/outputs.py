"""What the engine hands back for a request: plain data."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class OutputKind(enum.Enum):
    """Which outputs ``LLMEngine.step`` returns for a request: its state after every iteration
    that advanced it (``CUMULATIVE``, the default: a caller that streams), or only its final
    output (``FINAL_ONLY``: a caller that waits for the result; no ``RequestOutput`` is built
    for it while it runs, which at a thousand decodes is most of the host's work per step)."""

    CUMULATIVE = "cumulative"
    FINAL_ONLY = "final_only"


@dataclass
class RequestMetrics:
    """Timings (seconds, ``time.perf_counter``) and engine iterations of one request."""

    arrival_time: float
    first_scheduled_iteration: int | None = None
    first_token_time: float | None = None
    finished_iteration: int | None = None
    finished_time: float | None = None
    num_preemptions: int = 0
    iterations: list[int] = field(default_factory=list)


@dataclass
class RequestOutput:
    """The state of one request after an engine step (``finished`` tells whether it is final).

    ``text`` never contains a matched stop string. ``finish_reason`` is ``"stop"`` (EOS, a
    stop token or a stop string), ``"length"`` (max_tokens or the context length), ``"abort"``,
    or None while the request runs. ``logprobs[i]`` is the log-probability of ``token_ids[i]``;
    ``prompt_logprobs[i]`` that of ``prompt_token_ids[i]`` given the tokens before it (None at 0).
    With ``top_logprobs`` k > 0, ``top_logprobs[i]`` / ``prompt_top_logprobs[i]`` map the k most
    likely token ids at that position to their logprobs. With ``score_token_ids``,
    ``score_logprobs[i]`` maps each of those ids to its logprob at output position i (the
    distribution ``token_ids[i]`` was sampled from). ``finish_reason`` ``"error"``: the
    request could not go on (``stop_reason`` says why, e.g. a constraint's limit).
    """

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    text: str
    token_ids: list[int]
    finished: bool
    finish_reason: str | None
    stop_reason: str | int | None
    logprobs: list[float] | None
    prompt_logprobs: list[float | None] | None
    metrics: RequestMetrics
    num_cached_tokens: int = 0
    top_logprobs: list[dict[int, float]] | None = None
    prompt_top_logprobs: list[dict[int, float] | None] | None = None
    score_logprobs: list[dict[int, float]] | None = None
