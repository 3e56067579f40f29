"""``select``: score each choice by the log-probability of its tokens given the context.

Token boundaries: the context is tokenized once (as for ``gen``) and each choice is tokenized
on its own (no special tokens); the scored prompt is ``context_ids + choice_ids``, so the choice
tokens are exactly the last ``len(choice_ids)`` prompt tokens, whatever the tokenizer would
have merged across the boundary. Each choice is one request with ``max_tokens=1``,
``temperature=0`` and ``prompt_logprobs=True``; all choices are submitted at once, so they
batch together (and share the context prefix in the engine's cache).

Methods: ``mean`` (default) is the mean log-probability of the choice's tokens, which does not
favour short choices the way a sum does; ``sum`` is the total log-probability (the choice's
probability as a continuation). Ties go to the earliest choice.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nanolang.backends.base import Backend

if TYPE_CHECKING:
    from runtime.outputs import RequestOutput
    from runtime.sampling_params import SamplingParams

Generate = Callable[[list[int], "SamplingParams"], Awaitable["RequestOutput"]]


class SelectError(ValueError):
    """A choice cannot be scored (no tokens, or no prompt log-probabilities came back)."""


@dataclass(frozen=True)
class Selection:
    choice: str
    index: int
    scores: tuple[float, ...]
    outputs: tuple[RequestOutput, ...]
    token_ids: tuple[int, ...]  # the chosen choice's tokens, exactly as scored


def choice_token_ids(tokenizer: Any, choice: str) -> list[int]:
    ids = list(tokenizer.encode(choice, add_special_tokens=False))
    if not ids:
        raise SelectError(f"choice {choice!r} has no tokens")
    return ids


def score(output: RequestOutput, num_choice_tokens: int, method: str) -> float:
    """Score of the last ``num_choice_tokens`` prompt tokens of ``output`` under ``method``."""
    logprobs = output.prompt_logprobs
    if logprobs is None or len(logprobs) < num_choice_tokens:
        raise SelectError("the backend returned no prompt log-probabilities for the choice")
    tail = logprobs[len(logprobs) - num_choice_tokens :]
    if any(lp is None for lp in tail):
        raise SelectError("a choice token has no log-probability (is the context empty?)")
    values = [float(lp) for lp in tail]  # type: ignore[arg-type]
    total = math.fsum(values)
    return total / len(values) if method == "mean" else total


async def select(
    backend: Backend,
    context_ids: list[int],
    choices: list[str],
    method: str = "mean",
    generate: Generate | None = None,
) -> Selection:
    """Score every choice after ``context_ids`` (one request each, all at once, through
    ``generate`` when given, else ``backend.generate``) and return the best one."""
    from runtime.sampling_params import SamplingParams

    # only the choice tokens' logprobs are needed: the context may come from the prefix cache
    params = SamplingParams(
        max_tokens=1,
        temperature=0.0,
        prompt_logprobs=True,
        prompt_logprobs_from=max(1, len(context_ids)),
    )
    submit = generate if generate is not None else backend.generate
    token_ids = [choice_token_ids(backend.tokenizer, c) for c in choices]
    outputs = await asyncio.gather(*(submit(context_ids + ids, params) for ids in token_ids))
    scores = tuple(score(o, len(ids), method) for o, ids in zip(outputs, token_ids, strict=True))
    best = max(range(len(choices)), key=lambda i: (scores[i], -i))
    return Selection(choices[best], best, scores, tuple(outputs), tuple(token_ids[best]))
