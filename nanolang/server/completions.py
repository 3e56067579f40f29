"""``POST /v1/completions``: OpenAI's text completions, streamed or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from nanolang.server import openai_format as fmt
from nanolang.server.errors import APIError
from nanolang.server.params import check_n, choice_seed, openai_params, refuse_unsupported
from nanolang.server.protocol import CompletionRequest
from nanolang.server.state import ServerState, State
from nanolang.server.streams import (
    DONE,
    TextDelta,
    gather_all,
    merge,
    sse,
    unless_disconnected,
)
from runtime.outputs import RequestOutput
from runtime.sampling_params import SamplingParams

router = APIRouter()


@dataclass(frozen=True)
class Job:
    """One choice: choice ``index`` = prompt number * n + sample number."""

    index: int
    prompt_ids: list[int]
    params: SamplingParams


def prompt_id_lists(state: ServerState, prompt: Any) -> list[list[int]]:
    if isinstance(prompt, str):
        return [state.engine.encode(prompt)]
    if prompt and all(isinstance(t, int) for t in prompt):
        return [list(prompt)]
    if not prompt:
        raise APIError(400, "the prompt is empty", "prompt")
    return [state.engine.encode(p) if isinstance(p, str) else list(p) for p in prompt]


def build_jobs(state: ServerState, req: CompletionRequest) -> list[Job]:
    refuse_unsupported(
        req, echo=req.echo, suffix=req.suffix is not None, best_of=(req.best_of or 1) > 1
    )
    if req.logprobs not in (None, 0):
        raise APIError(
            400,
            "only logprobs=0 (the sampled token's log-probability) is supported; "
            "this engine returns no top alternatives",
            "logprobs",
        )
    check_n(req.n, state.config.max_n)
    max_tokens = 16 if req.max_tokens is None else req.max_tokens
    jobs = []
    for p, ids in enumerate(prompt_id_lists(state, req.prompt)):
        state.engine.check_prompt(ids, max_tokens)
        for i in range(req.n):
            params = openai_params(req, max_tokens, choice_seed(req.seed, i), req.logprobs == 0)
            jobs.append(Job(p * req.n + i, ids, params))
    return jobs


def prompt_tokens(jobs: list[Job], n: int) -> int:
    return sum(len(j.prompt_ids) for j in jobs[::n])


@router.post("/v1/completions", response_model=None)
async def create_completion(
    req: CompletionRequest, request: Request, state: State
) -> JSONResponse | StreamingResponse:
    state.check_model(req.model)
    jobs = build_jobs(state, req)
    if req.stream:
        events = stream_events(state, req, jobs)
        return StreamingResponse(events, media_type="text/event-stream")
    work = gather_all([state.engine.generate(j.prompt_ids, j.params) for j in jobs])
    outputs = await unless_disconnected(request, work)
    tokenizer = state.engine.tokenizer
    choices = [
        {
            "index": job.index,
            "text": out.text,
            "logprobs": fmt.completion_logprobs(tokenizer, out.token_ids, out.logprobs),
            "finish_reason": fmt.finish_reason(out),
        }
        for job, out in zip(jobs, outputs, strict=True)
    ]
    body = {
        "id": fmt.new_id("cmpl"),
        "object": "text_completion",
        "created": fmt.now(),
        "model": state.config.model_name,
        "choices": choices,
        "usage": fmt.usage(prompt_tokens(jobs, req.n), outputs),
    }
    return JSONResponse(body)


async def stream_events(
    state: ServerState, req: CompletionRequest, jobs: list[Job]
) -> AsyncIterator[str]:
    head = {
        "id": fmt.new_id("cmpl"),
        "object": "text_completion",
        "created": fmt.now(),
        "model": state.config.model_name,
    }
    deltas = [TextDelta(j.params.stop) for j in jobs]
    finals: dict[int, RequestOutput] = {}
    streams = [state.engine.stream(j.prompt_ids, j.params) for j in jobs]
    try:
        async for k, out in merge(streams):
            chunk = completion_chunk(state, jobs[k].index, deltas[k], out)
            if chunk is not None:
                yield sse({**head, "choices": [chunk]})
            if out.finished:
                finals[k] = out
    except APIError as exc:
        yield sse({"error": {"message": exc.message, "type": "invalid_request_error"}})
        return
    if req.include_usage:
        usage = fmt.usage(prompt_tokens(jobs, req.n), list(finals.values()))
        yield sse({**head, "choices": [], "usage": usage})
    yield DONE


def completion_chunk(
    state: ServerState, index: int, delta: TextDelta, out: RequestOutput
) -> dict[str, Any] | None:
    offset = delta.sent
    text = delta.text(out)
    ids, logprobs = delta.tokens(out)
    if not text and not out.finished and not (logprobs and ids):
        return None
    return {
        "index": index,
        "text": text,
        "logprobs": fmt.completion_logprobs(state.engine.tokenizer, ids, logprobs, offset),
        "finish_reason": fmt.finish_reason(out),
    }
