"""``/health``, ``/metrics`` (Prometheus) and ``/v1/models``, ``/v1/models/{id}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from nanolang.server.metrics import CONTENT_TYPE
from nanolang.server.openai_format import now
from nanolang.server.state import ServerState, State

router = APIRouter()


@router.api_route("/health", methods=["GET", "HEAD"])  # uptime monitors often probe with HEAD
async def health(state: State) -> JSONResponse:
    failure = state.engine.backend.failure
    if failure is not None:
        return JSONResponse({"status": "error", "error": repr(failure)}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
async def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


def model_card(state: ServerState) -> dict[str, Any]:
    return {
        "id": state.config.model_name,
        "object": "model",
        "created": now(),
        "owned_by": "nanolang",
        "max_model_len": state.engine.max_model_len,
    }


@router.get("/v1/models")
async def models(state: State) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [model_card(state)]})


@router.get("/v1/models/{model_id:path}")
async def model(model_id: str, state: State) -> JSONResponse:
    state.check_model(model_id)
    return JSONResponse(model_card(state))
