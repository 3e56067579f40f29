"""``POST /v1/chat/completions``: messages rendered by the model's own chat template."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from nanolang.server import openai_format as fmt
from nanolang.server.errors import APIError
from nanolang.server.params import check_n, choice_seed, openai_params, refuse_unsupported
from nanolang.server.protocol import ChatRequest
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


def chat_prompt_ids(state: ServerState, req: ChatRequest) -> list[int]:
    """The template's rendering with the assistant's generation prompt; the template carries
    its own special tokens, so none are added."""
    tokenizer = state.engine.tokenizer
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise APIError(400, "this model has no chat template; use /v1/completions", "messages")
    messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # a template may reject roles or orderings
        raise APIError(400, f"the chat template rejected the messages: {exc}", "messages") from exc
    return state.engine.encode(text)


def build_params(state: ServerState, req: ChatRequest, ids: list[int]) -> list[SamplingParams]:
    refuse_unsupported(req, top_logprobs=bool(req.top_logprobs))
    check_n(req.n, state.config.max_n)
    asked = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    state.engine.check_prompt(ids, asked, "messages")
    max_tokens = asked if asked is not None else state.engine.room(ids)
    return [
        openai_params(req, max_tokens, choice_seed(req.seed, i), req.logprobs) for i in range(req.n)
    ]


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    req: ChatRequest, request: Request, state: State
) -> JSONResponse | StreamingResponse:
    state.check_model(req.model)
    ids = chat_prompt_ids(state, req)
    params = build_params(state, req, ids)
    if req.stream:
        return StreamingResponse(
            stream_events(state, req, ids, params), media_type="text/event-stream"
        )
    work = gather_all([state.engine.generate(ids, p) for p in params])
    outputs = await unless_disconnected(request, work)
    tokenizer = state.engine.tokenizer
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": out.text},
            "logprobs": fmt.chat_logprobs(tokenizer, out.token_ids, out.logprobs),
            "finish_reason": fmt.finish_reason(out),
        }
        for i, out in enumerate(outputs)
    ]
    body = {
        "id": fmt.new_id("chatcmpl"),
        "object": "chat.completion",
        "created": fmt.now(),
        "model": state.config.model_name,
        "choices": choices,
        "usage": fmt.usage(len(ids), outputs),
    }
    return JSONResponse(body)


async def stream_events(
    state: ServerState, req: ChatRequest, ids: list[int], params: list[SamplingParams]
) -> AsyncIterator[str]:
    head = {
        "id": fmt.new_id("chatcmpl"),
        "object": "chat.completion.chunk",
        "created": fmt.now(),
        "model": state.config.model_name,
    }
    for i in range(len(params)):
        role = {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        yield sse({**head, "choices": [role]})
    deltas = [TextDelta(p.stop) for p in params]
    finals: list[RequestOutput] = []
    try:
        async for i, out in merge([state.engine.stream(ids, p) for p in params]):
            chunk = chat_chunk(state, i, deltas[i], out)
            if chunk is not None:
                yield sse({**head, "choices": [chunk]})
            if out.finished:
                finals.append(out)
    except APIError as exc:
        yield sse({"error": {"message": exc.message, "type": "invalid_request_error"}})
        return
    if req.include_usage:
        yield sse({**head, "choices": [], "usage": fmt.usage(len(ids), finals)})
    yield DONE


def chat_chunk(
    state: ServerState, index: int, delta: TextDelta, out: RequestOutput
) -> dict[str, Any] | None:
    text = delta.text(out)
    token_ids, logprobs = delta.tokens(out)
    if not text and not out.finished and not (logprobs and token_ids):
        return None
    return {
        "index": index,
        "delta": {"content": text} if text else {},
        "logprobs": fmt.chat_logprobs(state.engine.tokenizer, token_ids, logprobs),
        "finish_reason": fmt.finish_reason(out),
    }
