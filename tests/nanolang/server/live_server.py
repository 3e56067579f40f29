"""A real uvicorn server on 127.0.0.1 (a free port) in a background thread, for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from nanolang.server import ServerConfig, create_app
from nanolang.server.state import ServerState


@dataclass(frozen=True)
class LiveServer:
    url: str
    app: FastAPI
    config: ServerConfig

    @property
    def state(self) -> ServerState:
        return self.app.state.server

    def metrics(self) -> dict[str, float]:
        """The /metrics values by name (without the ``nanolang_`` prefix)."""
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        text = httpx.get(f"{self.url}/metrics", headers=headers, timeout=10).text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.split()
                values[name.removeprefix("nanolang_")] = float(value)
        return values

    def wait_idle(self, timeout_s: float = 20.0) -> dict[str, float]:
        """Poll /metrics until nothing runs or waits and no KV block is used (bounded)."""
        deadline = time.monotonic() + timeout_s
        while True:
            m = self.metrics()
            idle = m["requests_running"] == m["requests_waiting"] == m["kv_blocks_used"] == 0
            if idle or time.monotonic() > deadline:
                return m
            time.sleep(0.05)


@contextmanager
def live_server(config: ServerConfig) -> Iterator[LiveServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app, config)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
