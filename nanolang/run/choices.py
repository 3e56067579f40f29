"""``select``: score each choice by the log-probability of its tokens given the context.

Token boundaries: the context is tokenized once (as for ``gen``) and each choice is tokenized
on its own (no special tokens); the scored prompt is ``context_ids + choice_ids``, so the choice
tokens are exactly the last ``len(choice_ids)`` prompt tokens, whatever the tokenizer would
have merged across the boundary. Each choice is one request with ``max_tokens=1``,
``temperature=0`` and ``prompt_logprobs=True``; all choices are submitted at once, so they
batch together (and share the context prefix in the engine's cache).

Methods (SGLang's names in brackets): ``mean`` [``token_length_normalized``] (default) is the
mean log-probability of the choice's tokens, which does not favour short choices the way a sum
does; ``sum`` is the total log-probability (the choice's probability as a continuation);
``greedy`` compares the choices token by token, keeping at each position those whose token is
the likeliest, as a greedy decoder restricted to the choices would;
``unconditional_likelihood_normalized`` subtracts each choice's mean log-probability after an
empty prompt (the BOS token) from its mean after the context, discounting choices that are
likely anywhere (one more request per choice). Ties go to the earliest choice.

One-token choices (every choice one token, e.g. " A" / " B" / " C" / " D") need no prompt per
choice: a choice's log-probability is that of its token right after the context, so one request
of the context alone, asking for those tokens' log-probabilities at its first sampled position
(``SamplingParams.score_token_ids``), scores them all, where backends can (``Backend.
scores_token_ids``). The numbers are the same (the logits at the context's last position), with
a quarter of the requests for four choices and no choice token prefilled. SGLang's frontend
scores every choice as a prompt of its own (a prefill of the context, then one request per
choice with the context cached).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nanolang.backends.base import Backend

if TYPE_CHECKING:
    from nanolang.run.token_cache import TokenCache
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
    # per choice: (logprob, token id) of each of its tokens after the context
    token_logprobs: tuple[tuple[tuple[float, int], ...], ...] = ()


def choice_token_ids(tokenizer: Any, choice: str) -> list[int]:
    ids = list(tokenizer.encode(choice, add_special_tokens=False))
    if not ids:
        raise SelectError(f"choice {choice!r} has no tokens")
    return ids


def token_logprobs(output: RequestOutput, num_choice_tokens: int) -> list[float]:
    """The log-probabilities of the last ``num_choice_tokens`` prompt tokens of ``output``."""
    logprobs = output.prompt_logprobs
    if logprobs is None or len(logprobs) < num_choice_tokens:
        raise SelectError("the backend returned no prompt log-probabilities for the choice")
    tail = logprobs[len(logprobs) - num_choice_tokens :]
    if any(lp is None for lp in tail):
        raise SelectError("a choice token has no log-probability (is the context empty?)")
    return [float(lp) for lp in tail]  # type: ignore[arg-type]


def score(output: RequestOutput, num_choice_tokens: int, method: str) -> float:
    """Score of the last ``num_choice_tokens`` prompt tokens of ``output`` under ``method``
    (``mean`` or ``sum``; the other methods compare choices with each other: ``best``)."""
    values = token_logprobs(output, num_choice_tokens)
    total = math.fsum(values)
    return total if method == "sum" else total / len(values)


def greedy_best(per_token: list[list[float]]) -> int:
    """The choice a greedy decoder restricted to the choices picks: at each position keep the
    choices whose token there is the likeliest (a choice that has ended stays in)."""
    alive = list(range(len(per_token)))
    for position in range(max(len(v) for v in per_token)):
        going = [i for i in alive if len(per_token[i]) > position]
        if len(going) <= 1:
            break
        top = max(per_token[i][position] for i in going)
        alive = [i for i in alive if len(per_token[i]) <= position or per_token[i][position] == top]
        if len(alive) == 1:
            break
    return alive[0]


async def select(
    backend: Backend,
    context_ids: list[int],
    choices: list[str],
    method: str = "mean",
    generate: Generate | None = None,
    tokens: TokenCache | None = None,
) -> Selection:
    """Score every choice after ``context_ids`` (one request each, all at once, through
    ``generate`` when given, else ``backend.generate``) and return the best one. ``tokens``:
    the backend tokenizer's ``TokenCache``, to take the choices' ids from."""
    from runtime.sampling_params import SamplingParams

    # only the choice tokens' logprobs are needed: the context may come from the prefix cache
    params = SamplingParams(
        max_tokens=1,
        temperature=0.0,
        prompt_logprobs=True,
        prompt_logprobs_from=max(1, len(context_ids)),
    )
    submit = generate if generate is not None else backend.generate
    token_ids = choices_token_ids(backend, choices, tokens)
    one_request = scored_in_one_request(backend, context_ids, token_ids)
    per_token: list[list[float]]
    if one_request:
        output, values = await next_token_logprobs(submit, context_ids, token_ids)
        outputs = [output]
        per_token = [[v] for v in values]
    else:
        prompts = [context_ids + ids for ids in token_ids]
        outputs = await _all(submit, prompts, params)
        per_token = [token_logprobs(o, len(i)) for o, i in zip(outputs, token_ids, strict=True)]
    method = "mean" if method == "token_length_normalized" else method
    scores = tuple(math.fsum(v) / len(v) for v in per_token)
    if method == "sum":
        scores = tuple(math.fsum(v) for v in per_token)
    if method == "unconditional_likelihood_normalized":
        empty = _empty_prompt(backend.tokenizer)
        if one_request:
            output, values = await next_token_logprobs(backend.generate, empty, token_ids)
            scores = tuple(s - v for s, v in zip(scores, values, strict=True))
            outputs = [*outputs, output]
        else:
            plain = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=True)
            prompts = [empty + ids for ids in token_ids]
            unconditional = await _all(backend.generate, prompts, plain)
            scores = tuple(
                s - score(o, len(ids), "mean")
                for s, o, ids in zip(scores, unconditional, token_ids, strict=True)
            )
            outputs = [*outputs, *unconditional]
    if method == "greedy":
        best = greedy_best(per_token)
    else:
        best = max(range(len(choices)), key=lambda i: (scores[i], -i))
    per_choice = tuple(
        tuple(zip(v, ids, strict=True)) for v, ids in zip(per_token, token_ids, strict=True)
    )
    return Selection(
        choices[best], best, scores, tuple(outputs), tuple(token_ids[best]), per_choice
    )


def scored_in_one_request(
    backend: Backend, context_ids: list[int], token_ids: list[list[int]]
) -> bool:
    """Whether the choices are scored by one request of the context (every choice one token,
    a context to follow, a backend that returns ``score_token_ids``' logprobs)."""
    one_token = all(len(ids) == 1 for ids in token_ids)
    return bool(context_ids) and one_token and backend.scores_token_ids


def choices_token_ids(backend: Backend, choices: list[str], tokens: TokenCache | None) -> list:
    """Each choice's token ids, tokenised on its own (``tokens``: the backend's TokenCache)."""
    return [choice_token_ids(tokens or backend.tokenizer, c) for c in choices]


async def next_token_logprobs(
    submit: Generate, prompt: list[int], token_ids: list[list[int]]
) -> tuple[RequestOutput, list[float]]:
    """One request of ``prompt``: the log-probability of each one-token choice's token right
    after it (``score_token_ids`` at the first sampled position; the sampled token is unused)."""
    from runtime.sampling_params import SamplingParams

    firsts = [ids[0] for ids in token_ids]
    params = SamplingParams(max_tokens=1, temperature=0.0, score_token_ids=tuple(firsts))
    output = await submit(prompt, params)
    at = output.score_logprobs
    if not at or any(t not in at[0] for t in firsts):
        raise SelectError("the backend returned no log-probabilities for the choices' tokens")
    return output, [float(at[0][t]) for t in firsts]


async def _all(submit: Generate, prompts: list[list[int]], params: SamplingParams) -> list[Any]:
    """Every prompt at once; when one fails the others are cancelled (aborted), not left
    running after the instance is over."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_one(submit, p, params)) for p in prompts]
    except* Exception as errors:
        raise errors.exceptions[0] from None
    return [t.result() for t in tasks]


async def _one(submit: Generate, prompt: list[int], params: SamplingParams) -> Any:
    return await submit(prompt, params)


def _empty_prompt(tokenizer: Any) -> list[int]:
    """The prompt of nothing: BOS when the tokenizer has one, else what it adds to ''."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None:
        return [bos]
    ids = list(tokenizer.encode("", add_special_tokens=True))
    if not ids:
        raise SelectError("unconditional_likelihood_normalized needs a BOS token")
    return ids
