"""One request cannot stall the server: pathological constraints get a 4xx, and while they and a
slow-to-compile schema are in flight, /health and an ordinary completion answer within a second."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from nanolang.server import ServerConfig
from runtime.constraints import ConstraintSpec
from tests.nanolang.server.conftest import MODEL
from tests.nanolang.server.live_server import LiveServer, live_server

PATHOLOGICAL = [
    ("/v1/completions", {"regex": "(c{1,400}){1,400}"}),
    ("/v1/completions", {"regex": "(a|aa)*b(c{1,1000}){1,1000}"}),
    ("/v1/completions", {"guided_json": {"type": "string", "pattern": "(c{1,400}){1,400}"}}),
    ("/v1/nano/generate", {"params": {"regex": "(c{1,400}){1,400}", "max_tokens": 8}}),
]
# thousands of alternatives: valid, but its matcher takes a while to build
BIG_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "properties": {f"p{i}_{k}": {"type": "integer"} for i in range(30)},
            "required": [f"p{i}_{k}" for i in range(30)],
        }
        for k in range(150)
    ]
}


@pytest.fixture(scope="module")
def server(tiny_llama: str) -> Iterator[LiveServer]:
    config = ServerConfig(model=tiny_llama, model_name=MODEL, max_body_bytes=1 << 20)
    with live_server(config) as live:
        yield live


def send(server: LiveServer, path: str, extra: dict) -> httpx.Response:
    base = {"model": MODEL, "prompt": "x"}
    body = {**base, **extra} if path.startswith("/v1/nano") else {**base, "max_tokens": 8, **extra}
    return httpx.post(
        f"{server.url}{path}",
        content=json.dumps(body),
        timeout=120,
        headers={"content-type": "application/json"},
    )


def timed_ordinary(server: LiveServer) -> tuple[float, float]:
    start = time.perf_counter()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    health = time.perf_counter() - start
    start = time.perf_counter()
    ok = send(server, "/v1/completions", {"prompt": "hello", "max_tokens": 2})
    assert ok.status_code == 200, ok.text
    return health, time.perf_counter() - start


def test_pathological_constraints_are_4xx_and_stall_nothing(server: LiveServer) -> None:
    timed_ordinary(server)  # warm
    with ThreadPoolExecutor(max_workers=len(PATHOLOGICAL) + 1) as pool:
        big = pool.submit(send, server, "/v1/completions", {"guided_json": BIG_SCHEMA})
        bad = [pool.submit(send, server, path, extra) for path, extra in PATHOLOGICAL]
        timings = [timed_ordinary(server) for _ in range(3)]
        for future in bad:
            response = future.result()
            assert 400 <= response.status_code < 500, response.text
            assert "too large" in response.json()["error"]["message"]
        assert big.result().status_code in (200, 400)  # within or over the compile limit
    assert max(h for h, _ in timings) < 1.0, timings
    assert max(c for _, c in timings) < 1.0, timings


def test_constraint_compiles_do_not_hold_up_other_requests(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiles wait on threads of their own: with more slow compiles in flight than the
    default pool has threads (at most 32), an ordinary completion, whose prompt is tokenized
    on that pool, still answers at once."""
    compiler = server.state.engine.compiler
    assert compiler is not None
    prepare = compiler.prepare
    release = threading.Event()

    def slow_prepare(spec: ConstraintSpec) -> None:
        if spec.text.startswith("slow"):
            release.wait(60)  # a compile running to its time limit
        prepare(spec)

    monkeypatch.setattr(compiler, "prepare", slow_prepare)
    with ThreadPoolExecutor(max_workers=40) as pool:
        slow = [
            pool.submit(send, server, "/v1/completions", {"regex": f"slow{i}"}) for i in range(36)
        ]
        time.sleep(0.5)  # every slow one is compiling (or waiting for a compile thread)
        try:
            _, ordinary = timed_ordinary(server)
        finally:
            release.set()
        assert all(f.result().status_code == 200 for f in slow)
    assert ordinary < 1.0, ordinary
