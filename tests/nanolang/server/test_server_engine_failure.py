"""When the engine thread dies (a device error, say), every client hears it in OpenAI's shape:
an open stream ends with an error event, and every later request is a 503 before anything
starts; /health says 503 too. (The stream was cut without a word, an incomplete chunked read,
and later requests were a 500 'internal server error: RuntimeError', or a 200 whose stream
broke off.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from nanolang.server import ServerConfig
from tests.nanolang.server.conftest import MODEL
from tests.nanolang.server.live_server import LiveServer, live_server

LONG = {"model": MODEL, "prompt": "0 1 2", "max_tokens": 200, "ignore_eos": True}


@pytest.fixture()
def failing(
    tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LiveServer, threading.Event]]:
    """A server of its own whose engine step raises once the event is set."""
    with live_server(ServerConfig(model=tiny_llama, model_name=MODEL)) as live:
        llm = live.state.engine.llm
        step = llm.step
        broken = threading.Event()

        def failing_step() -> list:
            if broken.is_set():
                raise RuntimeError("device lost")
            return step()

        monkeypatch.setattr(llm, "step", failing_step)
        yield live, broken


def events(response: httpx.Response) -> Iterator[dict | str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            yield data if data == "[DONE]" else json.loads(data)


def test_engine_failure_mid_stream_is_an_error_event_then_503s(
    failing: tuple[LiveServer, threading.Event],
) -> None:
    live, broken = failing
    with httpx.stream("POST", f"{live.url}/v1/completions", json={**LONG, "stream": True}) as r:
        assert r.status_code == 200
        seen = []
        for event in events(r):
            seen.append(event)
            if len(seen) == 2:
                broken.set()
    last = seen[-1]
    assert isinstance(last, dict) and set(last) == {"error"}, seen[-3:]
    assert last["error"]["type"] == "server_error" and last["error"]["code"] == "engine_failed"
    assert "device lost" in last["error"]["message"]
    assert set(last["error"]) == {"message", "type", "param", "code"}

    health = httpx.get(f"{live.url}/health", timeout=10)
    assert health.status_code == 503 and "device lost" in health.json()["error"]
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as info:
            client.completions.create(model=MODEL, prompt="hi", max_tokens=2, stream=stream)
        assert info.value.status_code == 503, info.value
        assert isinstance(info.value.body, dict) and info.value.body["code"] == "engine_failed"
    with pytest.raises(openai.InternalServerError, match="device lost"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    native = httpx.post(f"{live.url}/v1/nano/generate", json={"prompt": "x"}, timeout=10)
    assert native.status_code == 503 and native.json()["error"]["code"] == "engine_failed"


def test_engine_failure_fails_a_waiting_non_streamed_request_with_503(
    failing: tuple[LiveServer, threading.Event],
) -> None:
    live, broken = failing
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
    stream = client.completions.create(
        model=MODEL, prompt="0 1 2", max_tokens=200, extra_body={"ignore_eos": True}, stream=True
    )
    chunks = iter(stream)
    next(chunks)  # the engine runs
    result: dict[str, BaseException] = {}

    def waiting() -> None:
        try:
            client.completions.create(
                model=MODEL, prompt="3 4", max_tokens=200, extra_body={"ignore_eos": True}
            )
        except openai.APIError as exc:
            result["error"] = exc

    thread = threading.Thread(target=waiting)
    thread.start()
    deadline = time.monotonic() + 30
    while live.metrics()["requests_running"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    broken.set()
    thread.join(timeout=30)
    error = result["error"]
    assert isinstance(error, openai.InternalServerError) and error.status_code == 503
    with pytest.raises(openai.APIError, match="device lost"):
        list(chunks)
