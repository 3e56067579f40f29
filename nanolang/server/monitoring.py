"""``/health``, ``/metrics`` (Prometheus text format) and ``/v1/models``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from nanolang.server.openai_format import now
from nanolang.server.state import ServerState, State

router = APIRouter()

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (prometheus type, help); values come from EngineClient.counters()
METRICS = {
    "requests_running": ("gauge", "Requests in the running batch."),
    "requests_waiting": ("gauge", "Requests waiting to be admitted."),
    "kv_blocks_used": ("gauge", "KV-cache blocks in use."),
    "kv_blocks_total": ("gauge", "KV-cache blocks in all."),
    "iterations_total": ("counter", "Engine iterations run."),
    "preemptions_total": ("counter", "Sequences preempted (to be recomputed)."),
    "requests_finished_total": ("counter", "Requests finished."),
    "requests_aborted_total": ("counter", "Requests aborted (e.g. the client went away)."),
    "prompt_tokens_total": ("counter", "Prompt tokens computed (prefill)."),
    "generation_tokens_total": ("counter", "Tokens generated."),
    "iteration_seconds": ("gauge", "Duration of the last engine iteration, seconds."),
    "batch_tokens": ("gauge", "Tokens in the last engine iteration."),
    "batch_sequences": ("gauge", "Sequences in the last engine iteration."),
}


def render_metrics(state: ServerState) -> str:
    values = state.engine.counters()
    lines = []
    for name, (kind, help_text) in METRICS.items():
        full = f"nanolang_{name}"
        lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}", f"{full} {values[name]}"]
    rate = state.throughput.rate()
    lines += [
        "# HELP nanolang_generation_tokens_per_second Tokens generated per second (10 s window).",
        "# TYPE nanolang_generation_tokens_per_second gauge",
        f"nanolang_generation_tokens_per_second {rate:.3f}",
    ]
    return "\n".join(lines) + "\n"


@router.get("/health")
async def health(state: State) -> JSONResponse:
    failure = state.engine.backend.failure
    if failure is not None:
        return JSONResponse({"status": "error", "error": repr(failure)}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
async def metrics(state: State) -> PlainTextResponse:
    return PlainTextResponse(render_metrics(state), media_type=PROMETHEUS_TYPE)


@router.get("/v1/models")
async def models(state: State) -> JSONResponse:
    card = {
        "id": state.config.model_name,
        "object": "model",
        "created": now(),
        "owned_by": "nanolang",
        "max_model_len": state.engine.max_model_len,
    }
    return JSONResponse({"object": "list", "data": [card]})
