"""Aborts on client disconnect, and a bounded load of concurrent streaming clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from nanolang.server import openai_format as fmt
from tests.nanolang.server.conftest import MODEL
from tests.nanolang.server.live_server import LiveServer

NUM_CLIENTS = 64


def metrics_after_events(server: LiveServer, response: httpx.Response, count: int) -> dict:
    """Read ``count`` events, then the server's metrics while the stream is still open."""
    seen = 0
    for line in response.iter_lines():
        seen += line.startswith("data: {")
        if seen == count:
            return server.metrics()
    raise AssertionError(f"the stream ended after {seen} events")


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def disconnect_mid_stream(server: LiveServer, path: str, body: dict) -> None:
    """Open a long stream, read a few events, hang up; the request must be aborted."""
    before = server.metrics()
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", f"{server.url}{path}", json=body) as response,
    ):
        assert response.status_code == 200
        running = metrics_after_events(server, response, 3)
        assert running["requests_running"] == 1 and running["kv_blocks_used"] > 0
    assert wait_for(
        lambda: server.metrics()["requests_aborted_total"] > before["requests_aborted_total"]
    )
    after = server.wait_idle()
    assert after["kv_blocks_used"] == 0 and after["requests_running"] == 0
    assert after["requests_finished_total"] == before["requests_finished_total"]
    assert after["generation_tokens_total"] - before["generation_tokens_total"] < 400


def test_disconnect_aborts_a_native_stream_and_frees_its_blocks(server: LiveServer) -> None:
    params = {"max_tokens": 450, "ignore_eos": True, "temperature": 0}
    body = {"prompt": "The quick brown fox", "params": params, "stream": True}
    disconnect_mid_stream(server, "/v1/nano/generate", body)


def test_disconnect_aborts_a_completion_stream(server: LiveServer) -> None:
    # greedy decoding from this prompt runs to max_tokens on the tiny model (an early EOS would
    # show as a finished request in the checks)
    body = {"model": MODEL, "prompt": "0 1 2 3", "max_tokens": 450, "temperature": 0}
    disconnect_mid_stream(server, "/v1/completions", {**body, "stream": True})


async def one_client(client: openai.AsyncOpenAI, i: int) -> tuple[str, str | None, int]:
    stream = await client.completions.create(
        model=MODEL,
        prompt=f"Item {i}: the answer is",
        max_tokens=8,
        seed=i,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, reason, tokens = "", None, -1
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].text
            reason = chunk.choices[0].finish_reason or reason
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return text, reason, tokens


async def load(url: str) -> list[tuple[str, str | None, int]]:
    limits = httpx.Limits(max_connections=NUM_CLIENTS)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        client = openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="unused", http_client=http, max_retries=0
        )
        jobs = [one_client(client, i) for i in range(NUM_CLIENTS)]
        return await asyncio.wait_for(asyncio.gather(*jobs), timeout=120)


def test_concurrent_streaming_clients_are_all_answered(server: LiveServer) -> None:
    before = server.metrics()
    results = asyncio.run(load(server.url))
    assert len(results) == NUM_CLIENTS
    for _text, reason, tokens in results:
        assert reason in ("stop", "length") and 1 <= tokens <= 8
    after = server.wait_idle()
    assert after["kv_blocks_used"] == 0
    finished = after["requests_finished_total"] - before["requests_finished_total"]
    assert finished == NUM_CLIENTS
    assert after["iterations_total"] - before["iterations_total"] < NUM_CLIENTS * 8  # batched
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}


def test_a_client_that_gives_up_on_a_non_streamed_request_aborts_it(server: LiveServer) -> None:
    # 16 greedy choices of 450 tokens take hundreds of engine steps; the client waits 0.1 s
    before = server.metrics()
    body = {"model": MODEL, "prompt": "0 1 2 3", "max_tokens": 450, "temperature": 0, "n": 16}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/completions", json=body, timeout=httpx.Timeout(0.1))
    assert wait_for(
        lambda: server.metrics()["requests_aborted_total"] >= before["requests_aborted_total"] + 16
    )
    after = server.wait_idle()
    assert after["kv_blocks_used"] == 0
    assert after["requests_finished_total"] == before["requests_finished_total"]


def test_rendering_a_large_answer_stalls_no_one(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-streamed answer is rendered off the event loop: n choices of top logprobs decode a
    token per entry (here each decode is made slow, 2 ms, as a large vocabulary's can be), and
    /health answers meanwhile (it waited seconds, as did every stream, for the whole body)."""
    plain = fmt.token_string

    def slow(tokenizer: object, token: int) -> str:
        time.sleep(0.002)
        return plain(tokenizer, token)

    monkeypatch.setattr(fmt, "token_string", slow)
    body = {"model": MODEL, "prompt": "0 1", "max_tokens": 20, "ignore_eos": True}
    body.update(n=4, logprobs=20, seed=1)  # 4 x 20 x 21 decodes: over 3 s in all
    with ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        big = pool.submit(httpx.post, f"{server.url}/v1/completions", json=body, timeout=60)
        waits = []
        while not big.done():
            asked = time.monotonic()
            assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
            waits.append(time.monotonic() - asked)
            time.sleep(0.02)
        response = big.result()
    assert response.status_code == 200, response.text
    assert len(response.json()["choices"]) == 4 and time.monotonic() - start > 3
    assert max(waits) < 1.0, max(waits)


def test_a_prompt_that_tokenizes_slowly_stalls_no_one(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prompts are tokenized off the event loop: a long one takes seconds (4 MB: 7 s on this
    CPU), made here a 2-second encode, and meanwhile /health and other completions answer
    (they waited for it)."""
    tokenizer = server.state.engine.tokenizer
    plain = tokenizer.encode

    def slow(text: str, **kwargs: object) -> list[int]:
        if "SLOW" in text:
            time.sleep(2)
        return plain(text, **kwargs)

    monkeypatch.setattr(tokenizer, "encode", slow)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "SLOW"}], "max_tokens": 2}
    completion = {"model": MODEL, "prompt": "SLOW", "max_tokens": 2}
    with ThreadPoolExecutor(2) as pool:
        slow_ones = [
            pool.submit(httpx.post, f"{server.url}{path}", json=body, timeout=60)
            for path, body in (("/v1/chat/completions", chat), ("/v1/completions", completion))
        ]
        time.sleep(0.3)
        waits = []
        while not all(f.done() for f in slow_ones):
            asked = time.monotonic()
            assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
            quick = {"model": MODEL, "prompt": "hello", "max_tokens": 2}
            assert httpx.post(f"{server.url}/v1/completions", json=quick, timeout=30).is_success
            waits.append(time.monotonic() - asked)
        assert all(f.result().status_code == 200 for f in slow_ones)
    assert waits and max(waits) < 1.0, waits
