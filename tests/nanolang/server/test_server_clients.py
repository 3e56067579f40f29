"""Real clients against a live server on the demo model: the openai SDK (parse with a pydantic
model, top_logprobs, echo + logprobs, tool calls), LangChain's with_structured_output and
guidance's OpenAI backend."""

from __future__ import annotations

import json
import math

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.nanolang.server.conftest import DEMO as MODEL
from tests.nanolang.server.live_server import LiveServer

EXTRACT = "Meet Bruno, a 40-year-old from Mexico City."
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)


@pytest.fixture()
def client(demo_server: LiveServer) -> openai.OpenAI:
    url = f"{demo_server.url}/v1"
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": f"Extract the person as JSON. Text: {EXTRACT}"}],
        response_format=Person,
        max_tokens=60,
        temperature=0,
    )
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person)
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None


def test_json_object_response_format(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Extract the person as JSON. Text: {EXTRACT}"}],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
    )
    assert isinstance(json.loads(out.choices[0].message.content or ""), dict)


def test_chat_top_logprobs(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
    )
    content = out.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content
    for entry in content:
        assert len(entry.top_logprobs) == 5
        best = entry.top_logprobs[0]
        assert best.logprob >= max(t.logprob for t in entry.top_logprobs)
        assert math.isclose(entry.logprob, best.logprob, abs_tol=1e-4)  # greedy: the top one
    text = "".join(e.token for e in content)
    assert text == out.choices[0].message.content  # no EOS entry that is not in the text


def test_chat_logprobs_bytes_are_the_tokens_own(
    client: openai.OpenAI, demo_server: LiveServer
) -> None:
    """A token holding part of a character (the first byte of an emoji) has its own bytes in
    ``bytes``, so a client can join them into the character (they were the bytes of the
    U+FFFD it decodes to alone), and its ``token`` is those bytes as escapes, as OpenAI's."""
    first_byte = demo_server.state.engine.encode("🎉")[0]
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=1,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        logit_bias={str(first_byte): 100},
    )
    entry = out.choices[0].logprobs.content[0]  # type: ignore[union-attr,index]
    assert entry.bytes == list("🎉".encode()[:1])
    assert entry.token == "\\xf0"
    for alternative in entry.top_logprobs:  # the text is theirs, part characters escaped
        raw = bytes(alternative.bytes or [])
        assert raw.decode(errors="backslashreplace") == alternative.token


def test_completion_echo_with_logprobs(client: openai.OpenAI, demo_server: LiveServer) -> None:
    prompt = "The capital of France is"
    ids = demo_server.state.engine.encode(prompt)
    out = client.completions.create(
        model=MODEL, prompt=prompt, echo=True, logprobs=3, max_tokens=2, temperature=0
    )
    choice = out.choices[0]
    lp = choice.logprobs
    assert lp is not None and choice.text.startswith(prompt)
    assert len(lp.tokens or []) == len(ids) + 2
    assert (lp.token_logprobs or [])[0] is None and (lp.top_logprobs or [])[0] is None
    assert all(v is not None and v <= 0 for v in (lp.token_logprobs or [])[1:])
    assert all(t is not None and 1 <= len(t) <= 3 for t in (lp.top_logprobs or [])[1:])
    assert "".join(lp.tokens or []) == choice.text
    scored = client.completions.create(
        model=MODEL, prompt=prompt, echo=True, logprobs=1, max_tokens=0, temperature=0
    )
    assert scored.choices[0].text == prompt
    assert scored.choices[0].logprobs.token_logprobs == lp.token_logprobs[: len(ids)]  # type: ignore[union-attr]
    assert scored.usage is not None and scored.usage.completion_tokens == 0


def test_named_tool_call_arguments_validate(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris for 3 days?"}]
    choice = {"type": "function", "function": {"name": "get_weather"}}
    out = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=TOOLS,
        tool_choice=choice,
        max_tokens=40,  # type: ignore[arg-type]
        temperature=0,
    )
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)  # type: ignore[union-attr]
    # OpenAI: a call forced by a named tool_choice finishes with "stop" ("tool_calls" is for a
    # call the model chose: auto, required)
    assert out.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=TOOLS,
        tool_choice=choice,
        max_tokens=40,  # type: ignore[arg-type]
        temperature=0,
        stream=True,
    )
    chunks = [chunk for chunk in stream if chunk.choices]
    pieces = [
        tc.function.arguments or ""
        for chunk in chunks
        for tc in chunk.choices[0].delta.tool_calls or []
        if tc.function is not None
    ]
    assert "".join(pieces) == call.function.arguments  # type: ignore[union-attr]
    reasons = [chunk.choices[0].finish_reason for chunk in chunks]
    assert reasons[-1] == "stop" and set(reasons[:-1]) == {None}


def test_required_tool_and_tool_messages(client: openai.OpenAI, demo_server: LiveServer) -> None:
    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call-1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call-1", "content": "sunny"},
        {"role": "user", "content": "And in Rome?"},
    ]
    rendered = post(demo_server, "/tokenize", {"messages": history}).json()["tokens"]
    prompt = post(demo_server, "/detokenize", {"tokens": rendered}).json()["prompt"]
    assert '{"name": "get_weather", "arguments": {"city": "Oslo"' in prompt  # the template's
    assert "<|tool|>\nsunny" in prompt
    out = client.chat.completions.create(
        model=MODEL,
        messages=history,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=80,  # type: ignore[arg-type]
        temperature=0,
    )
    message = out.choices[0].message
    if out.choices[0].finish_reason == "tool_calls":
        jsonschema.validate(json.loads(message.tool_calls[0].function.arguments), WEATHER)  # type: ignore[index,union-attr]
    else:  # cut by max_tokens before the call closed: text, never an invalid call
        assert out.choices[0].finish_reason == "length" and not message.tool_calls


def test_langchain_with_structured_output(demo_server: LiveServer) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=MODEL,
        base_url=f"{demo_server.url}/v1",
        api_key="unused",  # type: ignore[arg-type]
        temperature=0,
        max_tokens=60,
        max_retries=0,  # type: ignore[call-arg]
    )
    prompt = f"Extract the person as JSON. Text: {EXTRACT}"
    for method in ("json_schema", "function_calling"):
        person = llm.with_structured_output(Person, method=method).invoke(prompt)  # type: ignore[arg-type]
        assert isinstance(person, Person), method


def test_guidance_openai_backend_gen(demo_server: LiveServer) -> None:
    from guidance import assistant, gen, models, user

    lm = models.OpenAI(MODEL, base_url=f"{demo_server.url}/v1", api_key="unused")
    with user():
        lm += "The capital of France?"
    with assistant():
        lm += gen("answer", max_tokens=5, temperature=0)
    assert isinstance(lm["answer"], str) and lm["answer"]


def post(server: LiveServer, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def test_vllm_extras(demo_server: LiveServer) -> None:
    base = {"model": MODEL, "prompt": "The capital of France is", "temperature": 0}
    long = post(
        demo_server,
        "/v1/completions",
        {**base, "max_tokens": 12, "min_tokens": 12, "ignore_eos": True},
    )
    assert long.json()["usage"]["completion_tokens"] == 12
    picked = post(
        demo_server,
        "/v1/completions",
        {**base, "max_tokens": 3, "guided_choice": ["Paris", "Rome"]},
    )
    assert picked.json()["choices"][0]["text"] in ("Paris", "Rome")
    token = demo_server.state.engine.encode("7")[0]
    biased = post(
        demo_server,
        "/v1/completions",
        {**base, "max_tokens": 3, "ignore_eos": True, "logit_bias": {str(token): 100}},
    )
    assert biased.json()["choices"][0]["text"] == "777"
    stops = ["\n", "Paris", "Rome", "Berlin", "Madrid", "."]
    stopped = post(demo_server, "/v1/completions", {**base, "max_tokens": 12, "stop": stops})
    assert stopped.status_code == 200
    assert not any(s in stopped.json()["choices"][0]["text"] for s in stops)
    for field in ("repetition_penalty", "presence_penalty", "frequency_penalty", "top_k", "min_p"):
        value = 5 if field == "top_k" else 0.5 if field != "repetition_penalty" else 1.3
        assert post(demo_server, "/v1/completions", {**base, field: value}).status_code == 200


def test_unknown_fields_and_non_finite_numbers_are_refused(demo_server: LiveServer) -> None:
    base = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    unknown = post(demo_server, "/v1/completions", {**base, "bogus": 1, "also_bogus": 2})
    assert unknown.status_code == 400
    assert "bogus" in unknown.json()["error"]["message"]
    assert "also_bogus" in unknown.json()["error"]["message"]
    body = json.dumps({**base, "temperature": float("nan")})
    nan = httpx.post(
        f"{demo_server.url}/v1/completions",
        content=body,
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 400 and "temperature" in nan.json()["error"]["message"]


def test_tokenizer_routes_and_model_card(demo_server: LiveServer) -> None:
    ids = post(demo_server, "/tokenize", {"prompt": "hello world"}).json()["tokens"]
    assert ids == demo_server.state.engine.encode("hello world")
    assert post(demo_server, "/detokenize", {"tokens": ids}).json()["prompt"] == "hello world"
    info = httpx.get(f"{demo_server.url}/tokenizer_info", timeout=10).json()
    assert info["eos_token"] and info["chat_template"]
    card = httpx.get(f"{demo_server.url}/v1/models/{MODEL}", timeout=10)
    assert card.json()["id"] == MODEL
    assert httpx.get(f"{demo_server.url}/v1/models/other", timeout=10).status_code == 404


def test_latency_histograms(client: openai.OpenAI, demo_server: LiveServer) -> None:
    client.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0)
    text = httpx.get(f"{demo_server.url}/metrics", timeout=10).text
    for name in ("time_to_first_token", "inter_token_latency", "e2e_request_latency"):
        count = next(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(f"nanolang_{name}_seconds_count")
        )
        assert count >= 1, name


def test_cached_tokens_in_usage(client: openai.OpenAI) -> None:
    prompt = "The capital of France is Paris. The capital of Italy is Rome. " * 3
    client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=0)
    again = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=0)
    details = again.usage.prompt_tokens_details  # type: ignore[union-attr]
    assert details is not None and details.cached_tokens  # full blocks of the first one
    assert 0 < details.cached_tokens < again.usage.prompt_tokens  # type: ignore[union-attr]


def test_auto_tool_choice_answers_text_or_a_valid_call(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        tools=TOOLS,  # type: ignore[arg-type]
        max_tokens=16,
        temperature=0,
    )
    message = out.choices[0].message
    if message.tool_calls:
        jsonschema.validate(json.loads(message.tool_calls[0].function.arguments), WEATHER)  # type: ignore[union-attr]
    else:
        assert isinstance(message.content, str)
