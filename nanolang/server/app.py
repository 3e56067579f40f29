"""The FastAPI application: routes, guards, error handlers, and the engine thread's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from nanolang.backends.local import LocalBackend
from nanolang.server import chat, completions, monitoring, native, tokenization
from nanolang.server.config import ServerConfig
from nanolang.server.engine_client import EngineClient
from nanolang.server.errors import InFlight, InternalErrors, install_error_handlers
from nanolang.server.guards import APIKeyGuard, BodySizeLimit
from nanolang.server.metrics import ServingMetrics
from nanolang.server.state import ServerState
from nanolang.server.throughput import Throughput
from runtime.heap import frozen_heap

SHUTDOWN_DRAIN_S = 2.0  # at most, once uvicorn has cancelled what still ran


def load_backend(config: ServerConfig) -> LocalBackend:
    """The engine for ``config.model`` (CPU float32 unless ``llm_kwargs`` say otherwise)."""
    return LocalBackend.from_model(config.model, **config.llm_kwargs)


def create_app(config: ServerConfig, backend: LocalBackend | None = None) -> FastAPI:
    """The app serving ``backend`` (loaded from ``config.model`` when None; closed at shutdown
    only when the app loaded it)."""
    owned = backend is None
    engine = EngineClient(backend or load_backend(config))
    stats = engine.engine.stats
    throughput = Throughput(lambda: stats.generated_tokens)
    metrics = ServingMetrics(engine.counters, throughput.rate)
    state = ServerState(config, engine, throughput, metrics)
    in_flight = InFlight()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sampler = asyncio.create_task(state.throughput.run())
        try:
            with frozen_heap():  # the startup heap stays out of full collections while serving
                yield
        except asyncio.CancelledError:
            # a forced stop (a second Ctrl-C) cancels the lifespan instead of ending it: stop
            # here all the same (uvicorn logged the cancellation as a failed shutdown)
            pass
        finally:
            # requests cancelled at shutdown end their answers before the process may exit
            await in_flight.wait_idle(SHUTDOWN_DRAIN_S)
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            engine.close()
            if owned:
                await asyncio.to_thread(engine.backend.close)

    app = FastAPI(title="nanolang", lifespan=lifespan)
    app.state.server = state
    for module in (completions, chat, native, tokenization, monitoring):
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(APIKeyGuard, api_key=config.api_key)
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    # outermost of ours: catches what the others raise
    app.add_middleware(InternalErrors, in_flight=in_flight)
    return app


def serve(config: ServerConfig, **uvicorn_kwargs: Any) -> None:
    """Take the port, load the model and serve until interrupted."""
    import uvicorn

    sock = listening_socket(config.host, config.port)  # a port in use fails before the load
    with sock:
        app = create_app(config)
        uvicorn_kwargs.setdefault("timeout_graceful_shutdown", config.shutdown_timeout_s)
        settings = uvicorn.Config(app, host=config.host, port=config.port, **uvicorn_kwargs)
        host, port = sock.getsockname()[:2]  # (uvicorn says where only when it binds)
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        logging.getLogger("uvicorn.error").info(
            "Serving %r on %s (Press CTRL+C to quit)", config.model_name, url
        )
        uvicorn.Server(settings).run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """``host:port`` bound as uvicorn binds it; a ValueError saying why when it cannot be (in
    use, say), so that is known at once, not after minutes of loading a model."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return sock
