"""``POST /v1/chat/completions``: messages (tool calls and tool results too) rendered by the
model's own chat template; structured outputs and tool calls through constraints."""

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
    requested_constraint,
)
from nanolang.server.protocol import ChatRequest
from nanolang.server.state import ServerState, State
from nanolang.server.tools import ToolMode, template_messages, template_tools, tool_mode
from runtime.outputs import RequestOutput

router = APIRouter()

MAX_TOP_LOGPROBS = 20


def chat_prompt_ids(state: ServerState, req: ChatRequest) -> list[int]:
    """The template's rendering (with the assistant's generation prompt unless the request says
    otherwise); the template carries its own special tokens, so none are added."""
    tokenizer = state.engine.tokenizer
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise APIError(400, "this model has no chat template; use /v1/completions", "messages")
    open_turn = req.continue_final_message
    try:
        text = tokenizer.apply_chat_template(
            template_messages(req.messages),
            tools=template_tools(req),
            tokenize=False,
            add_generation_prompt=req.add_generation_prompt and not open_turn,
            continue_final_message=open_turn,
            **(req.chat_template_kwargs or {}),
        )
    except APIError:
        raise
    except Exception as exc:  # a template may reject roles, orderings or arguments
        raise APIError(400, f"the chat template rejected the messages: {exc}", "messages") from exc
    return state.engine.encode(text, "messages")


def build_jobs(state: ServerState, req: ChatRequest, tools: ToolMode) -> list[Job]:
    check_n(req.n, state.config.max_n)
    check_choices(1, req.n, state.config.max_choices)
    if req.modalities is not None and set(req.modalities) != {"text"}:
        raise APIError(400, "modalities: this server generates text only", "modalities")
    check_stream_options(req)
    if req.top_logprobs is not None and not 0 <= req.top_logprobs <= MAX_TOP_LOGPROBS:
        raise APIError(400, f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}]", "top_logprobs")
    if req.top_logprobs and not req.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", "top_logprobs")
    constraint = requested_constraint(req, req.response_format)
    if tools.constraint() is not None:
        if constraint is not None:
            raise APIError(400, "tool_choice and a response format both constrain", "tool_choice")
        constraint = tools.constraint()
    ids = chat_prompt_ids(state, req)
    asked = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    state.engine.check_prompt(ids, asked, "messages")
    max_tokens = asked if asked is not None else state.engine.room(ids)
    return [
        Job(
            i,
            0,
            ids,
            openai_params(
                req,
                max_tokens,
                choice_seed(req.seed, i),
                logprobs=req.logprobs,
                top_logprobs=req.top_logprobs or 0,
                constraint=constraint,
            ),
        )
        for i in range(req.n)
    ]


class ChatRenderer:
    id_prefix = "chatcmpl"
    object = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def __init__(
        self, tokenizer: Any, tools: ToolMode, token_bytes: Callable[[int], bytes]
    ) -> None:
        self.tokenizer = tokenizer
        self.tools = tools
        self.token_bytes = token_bytes
        self.pending: dict[int, tuple[str, fmt.Scored]] = {}  # buffered until a call can parse

    def opening(self, jobs: list[Job]) -> list[dict[str, Any]]:
        delta = {"role": "assistant", "content": ""}
        return [{"index": j.index, "delta": delta, "logprobs": None, "finish_reason": None}
                for j in jobs]  # fmt: skip

    def choice(self, progress: Progress, out: RequestOutput, stream: bool) -> dict[str, Any] | None:
        text, scored = progress.new_text(out), progress.new_tokens(out)
        index = progress.job.index
        if self.tools.kind in ("required", "auto") and stream:
            held_text, held = self.pending.get(index, ("", fmt.Scored([], [], scored.tops)))
            text, scored = held_text + text, held + scored
            if not out.finished:
                self.pending[index] = (text, scored)
                return None
        if stream and not text and not scored.ids and not out.finished:
            return None
        call = self.tools.parse(text) if out.finished or self.tools.kind == "named" else None
        key, body = ("delta", self._delta(progress, text, call)) if stream else (
            "message", self._message(text, call))  # fmt: skip
        progress.started = True
        logprobs = None
        if progress.job.params.logprobs:
            logprobs = fmt.chat_logprobs(self.tokenizer, scored, self.token_bytes)
        reason = fmt.finish_reason(out)
        if call is not None and reason == "stop" and self.tools.kind != "named":
            reason = "tool_calls"  # OpenAI's reason for a call the model chose (a named
            # tool_choice, which forces the call, finishes with "stop" there)
        return {"index": index, key: body, "logprobs": logprobs, "finish_reason": reason}

    def _message(self, text: str, call: dict[str, Any] | None) -> dict[str, Any]:
        if call is None:
            return {"role": "assistant", "content": text}
        return {"role": "assistant", "content": None, "tool_calls": [call]}

    def _delta(self, progress: Progress, text: str, call: dict[str, Any] | None) -> dict[str, Any]:
        if call is None:
            return {"content": text} if text else {}
        if self.tools.kind == "named" and progress.started:  # later argument pieces
            return {"tool_calls": [{"index": 0, "function": {"arguments": text}}]} if text else {}
        return {"tool_calls": [{"index": 0, **call}]}


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    req: ChatRequest, request: Request, state: State
) -> Response:
    state.check_model(req.model)
    tools = tool_mode(req)
    # off the event loop: a long prompt tokenizes for seconds (every stream stalled)
    jobs = await asyncio.to_thread(build_jobs, state, req, tools)
    renderer = ChatRenderer(state.engine.tokenizer, tools, state.engine.token_bytes)
    param = "tools" if tools.constraint() else constraint_field(req, req.response_format)
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
