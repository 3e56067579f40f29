"""The one request-to-response path of completions and chat.

A route turns its request into ``Job``s (one per choice) and a ``Renderer`` (how a choice looks);
``respond`` compiles the constraints off the engine thread, runs the jobs, and answers either one
JSON body or a stream of chunks. A non-streamed choice is the renderer's chunk over the whole
output, so both shapes come from the same code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from nanolang.backends.fair_queue import Owner
from nanolang.server import openai_format as fmt
from nanolang.server.errors import APIError, error_event
from nanolang.server.state import ServerState
from nanolang.server.streams import DONE, TextDelta, gather_all, merge, sse, unless_disconnected
from runtime.outputs import RequestOutput
from runtime.sampling_params import SamplingParams


@dataclass(frozen=True)
class Job:
    """One choice. ``prompt``: which prompt of the request (usage counts each once); ``echo``:
    the prompt comes first in the choice; ``keep_output``: False for max_tokens 0 (the one
    token the engine generates is dropped)."""

    index: int
    prompt: int
    prompt_ids: list[int]
    params: SamplingParams
    echo: bool = False
    keep_output: bool = True


class Progress:
    """What of one job's output has been sent: text (holding back what a stop string could still
    cut), tokens with their logprobs (never a final EOS: it is not in the text)."""

    def __init__(self, job: Job, eos_ids: frozenset[int]) -> None:
        self.job = job
        self.eos_ids = eos_ids
        self.text = TextDelta(job.params.stop)
        self.tokens_sent = 0
        self.started = False  # the first chunk of this choice went out
        # characters of the tokens sent so far (completions' text_offset): not of the text,
        # which lags behind the tokens while a stop string could still cut it
        self.offsets = fmt.TextOffsets()

    def new_text(self, out: RequestOutput) -> str:
        return self.text.text(out) if self.job.keep_output else ""

    def new_tokens(self, out: RequestOutput) -> fmt.Scored:
        ids = out.token_ids if self.job.keep_output else []
        end = len(ids)
        last_is_eos = end and ids[-1] in self.eos_ids and not self.job.params.ignore_eos
        if out.finished and last_is_eos and out.finish_reason == "stop":
            end -= 1
        start, self.tokens_sent = self.tokens_sent, max(end, self.tokens_sent)
        logprobs: list[float | None] = list((out.logprobs or [])[start:end])
        tops: list[fmt.TopK | None] | None = None
        if out.top_logprobs is not None:
            tops = list(out.top_logprobs[start:end])
        return fmt.Scored(ids[start:end], logprobs, tops)

    def prompt_tokens(self, out: RequestOutput) -> fmt.Scored:
        """The prompt's tokens with their logprobs (first None), for echo."""
        logprobs = list(out.prompt_logprobs or [None] * len(out.prompt_token_ids))
        tops = None if out.prompt_top_logprobs is None else list(out.prompt_top_logprobs)
        return fmt.Scored(list(out.prompt_token_ids), logprobs, tops)


class Renderer(Protocol):
    """How one route shapes its response."""

    id_prefix: str
    object: str  # of the JSON body
    chunk_object: str  # of each streamed chunk

    def opening(self, jobs: list[Job]) -> list[dict[str, Any]]:
        """Choices sent before any output (chat's role delta)."""
        ...

    def choice(self, progress: Progress, out: RequestOutput, stream: bool) -> dict[str, Any] | None:
        """The choice (a delta when ``stream``) for what is new in ``out``; None: nothing yet."""
        ...


def finished_error(out: RequestOutput) -> APIError | None:
    if out.finish_reason != "error":
        return None
    return APIError(400, f"the request could not be completed: {out.stop_reason}", None)


async def respond(
    state: ServerState,
    request: Request,
    renderer: Renderer,
    jobs: list[Job],
    stream: bool,
    include_usage: bool,
    client: str,
    constraint_param: str | None = None,
    continuous_usage: bool = False,
) -> Response:
    """Run ``jobs`` for ``client`` (its identity: ``client_identity``; its requests share one
    turn to enter the engine with other clients')."""
    state.engine.check_alive()
    for params in {id(j.params): j.params for j in jobs}.values():
        state.engine.check_token_ids(params)
        await state.engine.prepare_constraint(params, constraint_param)
    head = {
        "id": fmt.new_id(renderer.id_prefix),
        "created": fmt.now(),
        "model": state.config.model_name,
    }
    owner = Owner(client, head["id"])
    if stream:
        events = stream_events(state, renderer, jobs, include_usage, head, owner, continuous_usage)
        return StreamingResponse(events, media_type="text/event-stream")
    work = gather_all([state.engine.generate(j.prompt_ids, j.params, owner) for j in jobs])
    outputs = await unless_disconnected(request, work)
    for out in outputs:
        state.metrics.observe(out)
        if (error := finished_error(out)) is not None:
            raise error
    head = {**head, "object": renderer.object}
    eos = state.engine.eos_token_ids
    # off the event loop: n choices of top logprobs decode a token per entry, and the JSON of
    # such an answer is megabytes (it took seconds there, and every stream stalled meanwhile)
    body = await asyncio.to_thread(render_body, renderer, head, jobs, outputs, eos)
    return Response(body, media_type="application/json")


def render_body(
    renderer: Renderer,
    head: dict[str, Any],
    jobs: list[Job],
    outputs: list[RequestOutput],
    eos: frozenset[int],
) -> bytes:
    """The non-streamed answer's JSON (encoded as ``JSONResponse`` encodes it)."""
    choices = [
        renderer.choice(Progress(job, eos), out, stream=False)
        for job, out in zip(jobs, outputs, strict=True)
    ]
    body = {**head, "choices": choices, "usage": usage(jobs, outputs)}
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def usage(jobs: list[Job], outputs: list[RequestOutput]) -> dict[str, Any]:
    first: dict[int, RequestOutput] = {}
    for job, out in zip(jobs, outputs, strict=True):
        first.setdefault(job.prompt, out)
    prompt = sum(len(o.prompt_token_ids) for o in first.values())
    cached = sum(o.num_cached_tokens for o in first.values())
    kept = [o for j, o in zip(jobs, outputs, strict=True) if j.keep_output]
    return fmt.usage(prompt, kept, cached)


def usage_so_far(jobs: list[Job], latest: dict[int, RequestOutput]) -> dict[str, Any]:
    """The usage of a stream until now (every prompt counted, outputs as far as they got)."""
    prompts = {job.prompt: len(job.prompt_ids) for job in jobs}
    first: dict[int, RequestOutput] = {}
    for k, out in sorted(latest.items()):
        first.setdefault(jobs[k].prompt, out)
    cached = sum(o.num_cached_tokens for o in first.values())
    kept = [out for k, out in latest.items() if jobs[k].keep_output]
    return fmt.usage(sum(prompts.values()), kept, cached)


async def stream_events(
    state: ServerState,
    renderer: Renderer,
    jobs: list[Job],
    include_usage: bool,
    head: dict[str, Any],
    owner: Owner,
    continuous_usage: bool = False,
) -> AsyncIterator[str]:
    head = {**head, "object": renderer.chunk_object}
    latest: dict[int, RequestOutput] = {}

    def event(choice: dict[str, Any]) -> str:
        extra = {"usage": usage_so_far(jobs, latest)} if continuous_usage else {}
        return sse({**head, "choices": [choice], **extra})

    for opening in renderer.opening(jobs):
        yield event(opening)
    eos = state.engine.eos_token_ids
    progress = [Progress(j, eos) for j in jobs]
    finals: dict[int, RequestOutput] = {}
    try:
        streams = [state.engine.stream(j.prompt_ids, j.params, owner) for j in jobs]
        async for k, out in merge(streams):
            latest[k] = out
            if out.finished:
                state.metrics.observe(out)
                if (error := finished_error(out)) is not None:
                    raise error
                finals[k] = out
            chunk = renderer.choice(progress[k], out, stream=True)
            if chunk is not None:
                yield event(chunk)
    except Exception as exc:  # the 200 went out: the error ends the stream as an event
        yield error_event(exc)
        return
    if include_usage:
        done = [finals[k] for k in range(len(jobs))]
        yield sse({**head, "choices": [], "usage": usage(jobs, done)})
    yield DONE
