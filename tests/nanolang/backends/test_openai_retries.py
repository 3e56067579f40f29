"""The OpenAI backend through ``openai.AsyncOpenAI`` against a scripted server on loopback: a
503 is retried with back-off, a 400 becomes a ``RemoteError`` with the server's message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from nanolang.backends import OpenAI, RemoteError
from runtime.sampling_params import SamplingParams
from tests.nanolang.loopback import loopback_server

COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "text": " four", "finish_reason": "stop", "logprobs": None}],
}


class Script:
    def __init__(self, answers: list[tuple[int, dict[str, object]]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, object]] = []


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script([])

    def answer(body: bytes) -> tuple[int, str, bytes]:
        script.requests.append(json.loads(body))
        status, reply = script.answers.pop(0)
        return status, "application/json", json.dumps(reply).encode()

    with loopback_server(answer) as url:
        yield url, script


def generate(url: str, prompt: str) -> str:
    backend = OpenAI(url, "m", max_retries=2)
    ids = backend.tokenizer.encode(prompt)
    try:
        return asyncio.run(backend.generate(ids, SamplingParams(max_tokens=3))).text
    finally:
        backend.close()


def test_a_server_error_is_retried(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.answers = [(503, {"error": {"message": "busy"}}), (200, COMPLETION)]
    assert generate(url, "2 + 2 =") == " four"
    assert [r["prompt"] for r in script.requests] == ["2 + 2 =", "2 + 2 ="]


def test_a_bad_request_is_a_remote_error_with_the_servers_message(
    scripted: tuple[str, Script],
) -> None:
    url, script = scripted
    script.answers = [(400, {"error": {"message": "prompt too long", "type": "invalid"}})]
    with pytest.raises(RemoteError, match="server answered 400: prompt too long"):
        generate(url, "x")
    assert len(script.requests) == 1
