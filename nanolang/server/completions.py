"""``POST /v1/completions``: OpenAI's text completions (echo, top-k logprobs, max_tokens 0 for
scoring: what lm-evaluation-harness sends), streamed or not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nanolang.server import openai_format as fmt
from nanolang.server.client_identity import client_identity
from nanolang.server.errors import APIError
from nanolang.server.generation import Job, Progress, respond
from nanolang.server.params import (
    check_choices,
    check_n,
    check_stream_options,
    choice_seed,
    constraint_field,
    openai_params,
    refuse_unsupported,
    requested_constraint,
)
from nanolang.server.protocol import CompletionRequest
from nanolang.server.state import ServerState, State
from runtime.outputs import RequestOutput

router = APIRouter()

MAX_TOP_LOGPROBS = 20


def num_prompts(prompt: Any) -> int:
    """How many prompts ``prompt`` holds (a string or one list of token ids is one)."""
    if isinstance(prompt, str) or not prompt or all(isinstance(t, int) for t in prompt):
        return 1
    return len(prompt)


def prompt_id_lists(state: ServerState, prompt: Any) -> list[list[int]]:
    if isinstance(prompt, str):
        return [state.engine.encode(prompt)]
    if prompt and all(isinstance(t, int) for t in prompt):
        return [list(prompt)]
    if not prompt:
        raise APIError(400, "the prompt is empty", "prompt")
    return [state.engine.encode(p) if isinstance(p, str) else list(p) for p in prompt]


def build_jobs(state: ServerState, req: CompletionRequest) -> list[Job]:
    refuse_unsupported(suffix=req.suffix is not None, best_of=(req.best_of or 1) > 1)
    if req.logprobs is not None and not 0 <= req.logprobs <= MAX_TOP_LOGPROBS:
        raise APIError(400, f"logprobs must be in [0, {MAX_TOP_LOGPROBS}]", "logprobs")
    check_n(req.n, state.config.max_n)
    check_choices(num_prompts(req.prompt), req.n, state.config.max_choices)
    check_stream_options(req)
    max_tokens = 16 if req.max_tokens is None else req.max_tokens
    if max_tokens < 0:
        raise APIError(400, f"max_tokens must be >= 0, got {max_tokens}", "max_tokens")
    constraint = requested_constraint(req, req.response_format)
    wants_logprobs = req.logprobs is not None
    jobs = []
    for p, ids in enumerate(prompt_id_lists(state, req.prompt)):
        state.engine.check_prompt(ids, None)
        for i in range(req.n):
            params = openai_params(
                req,
                max(max_tokens, 1),
                choice_seed(req.seed, i),
                logprobs=wants_logprobs,
                top_logprobs=req.logprobs or 0,
                prompt_logprobs=req.echo and wants_logprobs,
                constraint=constraint,
            )
            jobs.append(Job(p * req.n + i, p, ids, params, req.echo, max_tokens > 0))
    return jobs


class CompletionRenderer:
    id_prefix = "cmpl"
    object = "text_completion"
    chunk_object = "text_completion"

    def __init__(self, tokenizer: Any, token_bytes: Callable[[int], bytes]) -> None:
        self.tokenizer = tokenizer
        self.token_bytes = token_bytes

    def opening(self, jobs: list[Job]) -> list[dict[str, Any]]:
        return []

    def choice(self, progress: Progress, out: RequestOutput, stream: bool) -> dict[str, Any] | None:
        job = progress.job
        text, scored = progress.new_text(out), progress.new_tokens(out)
        if job.echo and not progress.started:
            text = self.tokenizer.decode(out.prompt_token_ids) + text
            scored = progress.prompt_tokens(out) + scored
        if stream and not text and not scored.ids and not out.finished:
            return None
        progress.started = True
        logprobs = None
        if job.params.logprobs:
            logprobs = fmt.completion_logprobs(
                self.tokenizer, scored, progress.offsets, self.token_bytes
            )
        return {
            "index": job.index,
            "text": text,
            "logprobs": logprobs,
            "finish_reason": finish_reason(job, out),
        }


def finish_reason(job: Job, out: RequestOutput) -> str | None:
    if not out.finished:
        return None
    return "length" if not job.keep_output else fmt.finish_reason(out)


@router.post("/v1/completions", response_model=None)
async def create_completion(
    req: CompletionRequest, request: Request, state: State
) -> Response:
    state.check_model(req.model)
    # off the event loop: a long prompt tokenizes for seconds (every stream stalled)
    jobs = await asyncio.to_thread(build_jobs, state, req)
    renderer = CompletionRenderer(state.engine.tokenizer, state.engine.token_bytes)
    param = constraint_field(req, req.response_format)
    client = client_identity(request, req.user or req.safety_identifier)
    return await respond(
        state,
        request,
        renderer,
        jobs,
        req.stream,
        req.include_usage,
        client,
        param,
        req.continuous_usage,
    )
