"""What every handler shares: the config, the engine client, the throughput meter, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from nanolang.server.config import ServerConfig
from nanolang.server.engine_client import EngineClient
from nanolang.server.errors import APIError
from nanolang.server.metrics import ServingMetrics
from nanolang.server.throughput import Throughput


@dataclass(frozen=True)
class ServerState:
    config: ServerConfig
    engine: EngineClient
    throughput: Throughput
    metrics: ServingMetrics

    def check_model(self, model: str | None) -> None:
        """404 (OpenAI's code ``model_not_found``) for a model this server does not serve."""
        if model is not None and model != self.config.model_name:
            raise APIError(
                404,
                f"the model {model!r} does not exist; this server serves "
                f"{self.config.model_name!r}",
                "model",
                "model_not_found",
            )


def get_state(request: Request) -> ServerState:
    return request.app.state.server


State = Annotated[ServerState, Depends(get_state)]
