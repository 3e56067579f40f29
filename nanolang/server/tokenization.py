"""vLLM's tokenizer routes (what lm-evaluation-harness's remote tokenizer calls):
``POST /tokenize``, ``POST /detokenize``, ``GET /tokenizer_info``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from nanolang.server.engine_client import encode_text
from nanolang.server.errors import APIError
from nanolang.server.protocol import DetokenizeRequest, TokenizeRequest
from nanolang.server.state import ServerState, State
from nanolang.server.tools import template_messages

router = APIRouter()


def tokenizer_of(state: ServerState) -> Any:
    if state.engine.tokenizer is None:
        raise APIError(404, "this model has no tokenizer")
    return state.engine.tokenizer


@router.post("/tokenize")
async def tokenize(req: TokenizeRequest, state: State) -> JSONResponse:
    state.check_model(req.model)
    ids = await asyncio.to_thread(tokenize_ids, state, req)  # off the event loop: see chat
    return JSONResponse(
        {"tokens": ids, "count": len(ids), "max_model_len": state.engine.max_model_len}
    )


def tokenize_ids(state: ServerState, req: TokenizeRequest) -> list[int]:
    tokenizer = tokenizer_of(state)
    if (req.prompt is None) == (req.messages is None):
        raise APIError(400, "give exactly one of prompt and messages", "prompt")
    if req.messages is not None:
        messages = template_messages(req.messages)
        try:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=req.add_generation_prompt
            )
        except Exception as exc:  # a template may reject roles or orderings
            raise APIError(400, f"the chat template rejected the messages: {exc}") from exc
        return encode_text(tokenizer, text, "messages")
    return encode_text(tokenizer, req.prompt or "", "prompt", req.add_special_tokens)


@router.post("/detokenize")
async def detokenize(req: DetokenizeRequest, state: State) -> JSONResponse:
    state.check_model(req.model)
    tokenizer = tokenizer_of(state)
    vocab = len(tokenizer)
    if any(not 0 <= t < vocab for t in req.tokens):
        raise APIError(400, f"token ids must be in [0, {vocab})", "tokens")
    return JSONResponse({"prompt": tokenizer.decode(req.tokens)})


@router.get("/tokenizer_info")
async def tokenizer_info(state: State) -> JSONResponse:
    tokenizer = tokenizer_of(state)
    return JSONResponse(
        {
            "tokenizer_class": type(tokenizer).__name__,
            "eos_token": tokenizer.eos_token,
            "bos_token": tokenizer.bos_token,
            "pad_token": tokenizer.pad_token,
            "unk_token": tokenizer.unk_token,
            "chat_template": getattr(tokenizer, "chat_template", None),
            "model_max_length": state.engine.max_model_len,
            "vocab_size": len(tokenizer),
        }
    )
