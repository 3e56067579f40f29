"""Bad input gets a 4xx with an OpenAI-style body and the server keeps serving; API keys."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from nanolang.server import ServerConfig
from tests.nanolang.server.conftest import MODEL
from tests.nanolang.server.live_server import LiveServer, live_server

JSON = {"content-type": "application/json"}


def post(server: LiveServer, path: str, body: Any, headers: dict | None = None) -> httpx.Response:
    if not isinstance(body, str | bytes):
        body = json.dumps(body)
    content = body
    return httpx.post(f"{server.url}{path}", content=content, headers=headers or JSON, timeout=30)


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] in ("invalid_request_error", "not_found_error", "authentication_error")
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param


def assert_still_serving(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}
    ok = post(server, "/v1/completions", {"model": MODEL, "prompt": "ok", "max_tokens": 2})
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 1


COMPLETION = {"model": MODEL, "prompt": "hello", "max_tokens": 4}
DEEP_REGEX = "(" * 2000 + "a" + ")" * 2000


def nested_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


NESTED_SCHEMA = nested_schema(300)
BAD_INPUTS = {
    "malformed_json": ("/v1/completions", '{"model": "tiny", "prompt": ', 400, None),
    "not_an_object": ("/v1/chat/completions", "[1, 2]", 400, None),
    "unknown_model": ("/v1/completions", {**COMPLETION, "model": "gpt-9"}, 404, "model"),
    "unknown_model_chat": (
        "/v1/chat/completions",
        {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
        404,
        "model",
    ),
    "negative_max_tokens": ("/v1/completions", {**COMPLETION, "max_tokens": -3}, 400, "max_tokens"),
    "negative_max_tokens_chat": (
        "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": -1},
        400,
        "max_tokens",
    ),
    "prompt_over_context": ("/v1/completions", {**COMPLETION, "prompt": [5] * 600}, 400, "prompt"),
    "text_prompt_over_context": (
        "/v1/completions",
        {**COMPLETION, "prompt": "seven eight nine " * 400},
        400,
        "prompt",
    ),
    "invalid_regex": (
        "/v1/nano/generate",
        {"prompt": "Score:", "params": {"regex": "[0-9"}},
        400,
        "params.regex",
    ),
    "invalid_json_schema": (
        "/v1/nano/generate",
        {"prompt": "x", "params": {"json_schema": "{not json"}},
        400,
        "params.json_schema",
    ),
    "token_id_out_of_vocabulary": ("/v1/completions", {**COMPLETION, "prompt": [10**6]}, 400, None),
    "empty_prompt": ("/v1/completions", {**COMPLETION, "prompt": ""}, 400, "prompt"),
    "bad_temperature": ("/v1/completions", {**COMPLETION, "temperature": -1}, 400, None),
    "top_p_zero": ("/v1/completions", {**COMPLETION, "top_p": 0}, 400, "top_p"),
    "native_bad_top_p": (
        "/v1/nano/generate",
        {"prompt": "x", "params": {"top_p": 5}},
        400,
        "params.top_p",
    ),
    "too_many_choices": ("/v1/completions", {**COMPLETION, "n": 1000}, 400, "n"),
    "too_many_top_logprobs": ("/v1/completions", {**COMPLETION, "logprobs": 21}, 400, "logprobs"),
    "wrong_type": ("/v1/completions", {**COMPLETION, "max_tokens": "many"}, 400, "max_tokens"),
    "missing_field": ("/v1/chat/completions", {"model": MODEL}, 400, "messages"),
    # hostile input that used to reach Python's recursion limit (a 500)
    "deeply_nested_regex": (
        "/v1/completions",
        {**COMPLETION, "guided_regex": "(" * 500 + "a" + ")" * 500},
        400,
        "guided_regex",
    ),
    "deeply_nested_json_schema": (
        "/v1/completions",
        {**COMPLETION, "guided_json": NESTED_SCHEMA},
        400,
        "guided_json",
    ),
    "deeply_nested_schema_pattern": (
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "string", "pattern": DEEP_REGEX}},
            },
        },
        400,
        "response_format",
    ),
    "lone_surrogate_prompt": (
        "/v1/completions",
        '{"model": "tiny", "prompt": "a\\ud800b", "max_tokens": 2}',
        400,
        "prompt",
    ),
    "lone_surrogate_message": (
        "/v1/chat/completions",
        '{"model": "tiny", "messages": [{"role": "user", "content": "\\udfff"}]}',
        400,
        "messages",
    ),
    "lone_surrogate_native": ("/v1/nano/generate", '{"prompt": "\\ud800"}', 400, "prompt"),
    "lone_surrogate_tokenize": ("/tokenize", '{"prompt": "\\ud800"}', 400, "prompt"),
    "logit_bias_out_of_vocabulary": (
        "/v1/completions",
        {**COMPLETION, "logit_bias": {"999999": 5}},
        400,
        "logit_bias",
    ),
    "stop_token_id_out_of_vocabulary": (
        "/v1/completions",
        {**COMPLETION, "stop_token_ids": [10**7]},
        400,
        "stop_token_ids",
    ),
    "stream_options_without_stream": (
        "/v1/completions",
        {**COMPLETION, "stream_options": {"include_usage": True}},
        400,
        "stream_options",
    ),
    "stream_options_without_stream_chat": (
        "/v1/chat/completions",
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "x"}],
            "stream": False,
            "stream_options": {"include_usage": True},
        },
        400,
        "stream_options",
    ),
    "native_logit_bias_out_of_vocabulary": (
        "/v1/nano/generate",
        {"prompt": "x", "params": {"logit_bias": {"-1": 5}}},
        400,
        "params.logit_bias",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_4xx_and_the_server_goes_on(server: LiveServer, case: str) -> None:
    path, body, status, param = BAD_INPUTS[case]
    assert_openai_error(post(server, path, body), status, param)
    assert_still_serving(server)


def test_a_body_not_sent_as_json_says_so(server: LiveServer) -> None:
    """``curl -d`` sends a form's Content-Type, so FastAPI does not read the JSON: the 400 says
    what to send (it said 'body: Input should be a valid dictionary or object to extract
    fields from')."""
    body = json.dumps(COMPLETION)
    form = {"content-type": "application/x-www-form-urlencoded"}
    response = post(server, "/v1/completions", body, form)
    assert_openai_error(response, 400)
    assert "Content-Type: application/json" in response.json()["error"]["message"]
    listed = post(server, "/v1/chat/completions", "[1, 2]")
    assert_openai_error(listed, 400)
    assert listed.json()["error"]["message"] == "the body must be a JSON object, not list"


def test_oversized_body_is_413(server: LiveServer) -> None:
    big = {**COMPLETION, "prompt": "x" * (server.config.max_body_bytes + 1)}
    assert_openai_error(post(server, "/v1/completions", big), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(server.config.max_body_bytes // 1024 + 2):
            yield b"y" * 1024
        yield b'"}'

    streamed = httpx.post(f"{server.url}/v1/completions", content=chunks(), headers=JSON)
    assert_openai_error(streamed, 413)
    assert_still_serving(server)


def test_an_internal_error_is_a_500_and_keeps_the_connection(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a handler answers an OpenAI-style 500 and leaves the keep-alive connection
    usable: the next request on it is answered (uvicorn used to close it, so a pooled client's
    next, good request failed with a connection reset)."""

    def broken(text: str) -> list[int]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.state.engine, "encode", broken)
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/v1/completions", json.dumps(COMPLETION), JSON)
        failed = conn.getresponse()
        body = json.loads(failed.read())
        assert failed.status == 500
        assert body["error"]["type"] == "server_error"
        assert "RuntimeError" in body["error"]["message"]
        monkeypatch.undo()
        conn.request("POST", "/v1/completions", json.dumps(COMPLETION), JSON)
        ok = conn.getresponse()  # on the same connection
        assert ok.status == 200, ok.read()
        assert len(json.loads(ok.read())["choices"]) == 1
    finally:
        conn.close()


def test_unknown_route_is_an_openai_style_404(server: LiveServer) -> None:
    assert_openai_error(httpx.get(f"{server.url}/v1/nothing", timeout=10), 404)


def test_wrong_method_is_a_405_naming_the_allowed_ones(server: LiveServer) -> None:
    """A 405 carries Allow, as HTTP requires (the OpenAI-style body had replaced the headers);
    HEAD /health is answered (it was a 405)."""
    for method, path, allowed in (
        ("GET", "/v1/completions", "POST"),
        ("PUT", "/v1/chat/completions", "POST"),
        ("POST", "/v1/models", "GET"),
    ):
        response = httpx.request(method, f"{server.url}{path}", timeout=10)
        assert_openai_error(response, 405)
        assert response.headers.get("allow") == allowed
    head = httpx.head(f"{server.url}/health", timeout=10)  # how uptime monitors probe
    assert head.status_code == 200 and head.content == b""


def test_openai_client_raises_its_own_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model=MODEL, prompt=[3] * 700, max_tokens=1)


@pytest.fixture(scope="module")
def keyed(tiny_llama: str) -> Iterator[LiveServer]:
    config = ServerConfig(model=tiny_llama, model_name=MODEL, api_key="sekret-key")
    with live_server(config) as live:
        yield live


def test_api_key_is_required_on_every_route_but_health(keyed: LiveServer) -> None:
    assert httpx.get(f"{keyed.url}/health", timeout=10).status_code == 200
    for path in ("/v1/models", "/metrics", "/v1/nano/tokenizer"):
        response = httpx.get(f"{keyed.url}{path}", timeout=10)
        assert_openai_error(response, 401)
        wrong = httpx.get(f"{keyed.url}{path}", headers={"Authorization": "Bearer no"}, timeout=10)
        assert_openai_error(wrong, 401)
    assert_openai_error(post(keyed, "/v1/completions", COMPLETION), 401)


def test_api_key_accepted_from_the_openai_client(keyed: LiveServer) -> None:
    good = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="sekret-key", max_retries=0)
    out = good.completions.create(model=MODEL, prompt="hi", max_tokens=2)
    assert len(out.choices) == 1
    bad = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model=MODEL, prompt="hi", max_tokens=2)
    assert keyed.metrics()["generation_tokens_total"] >= 1
