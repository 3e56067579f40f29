"""A module-scoped real server (uvicorn on loopback) over the session's tiny llama model."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from nanolang.demo import model_dir
from nanolang.server import ServerConfig
from tests.nanolang.server.live_server import LiveServer, live_server

MODEL = "tiny"


@pytest.fixture(scope="module")
def server(tiny_llama: str) -> Iterator[LiveServer]:
    config = ServerConfig(model=tiny_llama, model_name=MODEL, max_body_bytes=64 * 1024)
    with live_server(config) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


DEMO = "demo"


@pytest.fixture(scope="module")
def demo_server() -> Iterator[LiveServer]:
    """A live server on the bundled demo model (it knows the programs' tasks: real outputs)."""
    with live_server(ServerConfig(model=str(model_dir()), model_name=DEMO)) as live:
        yield live
