"""Native endpoints for what programs need beyond OpenAI's API.

- ``POST /v1/nano/generate``: any ``SamplingParams`` (regex, json_schema, grammar, top_k,
  min_p, stop_token_ids, prompt_logprobs, top_logprobs, penalties, ...) on a text or token-id
  prompt; answers the engine's ``RequestOutput`` as JSON, or with ``stream: true`` as SSE
  events each carrying only what is new (``nanolang.backends.wire.DeltaEncoder``).
- ``POST /v1/nano/score``: ``select``'s choice scoring (prompt log-probabilities of each choice).
- ``GET /v1/nano/tokenizer``: the tokenizer's files, so a client tokenizes exactly as the server.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from nanolang.backends.fair_queue import Owner
from nanolang.backends.wire import DeltaEncoder, output_to_dict
from nanolang.run.choices import SelectError, select
from nanolang.server.client_identity import client_identity
from nanolang.server.errors import APIError, error_event
from nanolang.server.params import native_params
from nanolang.server.protocol import GenerateRequest, NativePrompt, ScoreRequest
from nanolang.server.state import ServerState, State
from nanolang.server.streams import DONE, sse, unless_disconnected
from runtime.sampling_params import SamplingParams

router = APIRouter()


def native_prompt_ids(state: ServerState, req: NativePrompt) -> list[int]:
    if (req.prompt is None) == (req.prompt_token_ids is None):
        raise APIError(400, "give exactly one of prompt and prompt_token_ids", "prompt")
    if req.prompt_token_ids is not None:
        return list(req.prompt_token_ids)
    return state.engine.encode(req.prompt or "")


@router.post("/v1/nano/generate", response_model=None)
async def generate(
    req: GenerateRequest, request: Request, state: State
) -> JSONResponse | StreamingResponse:
    state.check_model(req.model)
    state.engine.check_alive()
    params = native_params(req.params)
    # off the event loop: a long prompt tokenizes for seconds (every stream stalled)
    ids = await asyncio.to_thread(native_prompt_ids, state, req)
    state.engine.check_prompt(ids, params.max_tokens)
    state.engine.check_token_ids(params, "params.")
    await state.engine.prepare_constraint(params, f"params.{constraint_field(params)}")
    owner = Owner(client_identity(request), object())  # its turn: see client_identity
    if req.stream:
        events = stream_outputs(state, ids, params, owner)
        return StreamingResponse(events, media_type="text/event-stream")
    output = await unless_disconnected(request, state.engine.generate(ids, params, owner))
    state.metrics.observe(output)
    return JSONResponse(output_to_dict(output))


def constraint_field(params: SamplingParams) -> str:
    return next(k for k in ("regex", "json_schema", "grammar", "") if not k or getattr(params, k))


async def stream_outputs(
    state: ServerState, ids: list[int], params: SamplingParams, owner: Owner
) -> AsyncIterator[str]:
    encoder = DeltaEncoder(params.stop)
    try:
        async for output in state.engine.stream(ids, params, owner):
            if output.finished:
                state.metrics.observe(output)
            yield sse(encoder.event(output))
    except Exception as exc:  # the 200 went out: the error ends the stream as an event
        yield error_event(exc)
        return
    yield DONE


@router.post("/v1/nano/score")
async def score(req: ScoreRequest, state: State) -> JSONResponse:
    state.check_model(req.model)
    state.engine.check_alive()
    # off the event loop: a long prompt tokenizes for seconds (every stream stalled)
    ids = await asyncio.to_thread(native_prompt_ids, state, req)
    state.engine.check_prompt(ids, None)
    if len(set(req.choices)) != len(req.choices) or not all(req.choices):
        raise APIError(400, "choices must be distinct non-empty strings", "choices")
    try:
        chosen = await select(state.engine.backend, ids, req.choices, req.method)
    except (SelectError, ValueError) as exc:
        raise APIError(400, str(exc), "choices") from exc
    return JSONResponse({"choice": chosen.choice, "index": chosen.index, "scores": chosen.scores})


@router.get("/v1/nano/tokenizer")
async def tokenizer_files(state: State) -> JSONResponse:
    tokenizer = state.engine.tokenizer
    if tokenizer is None:
        raise APIError(404, "this model has no tokenizer")
    files = await asyncio.to_thread(saved_files, tokenizer)  # megabytes for a large vocabulary
    return JSONResponse(
        {
            "files": files,
            "model": state.config.model_name,
            "max_model_len": state.engine.max_model_len,
        }
    )


def saved_files(tokenizer: Any) -> dict[str, str]:
    """The files ``save_pretrained`` writes, base64-encoded by name."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: base64.b64encode(p.read_bytes()).decode() for p in Path(tmp).iterdir()}
