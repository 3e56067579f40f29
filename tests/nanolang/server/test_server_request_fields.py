"""OpenAI request fields that change nothing generated (``store``, ``metadata``,
``service_tier``, ``prediction``, prompt-cache hints, ...) are accepted and ignored, as the openai
SDK and LangChain send them; fields that would change the output and cannot be honoured are a 400
naming the field and why."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.nanolang.server.conftest import MODEL
from tests.nanolang.server.live_server import LiveServer

MESSAGES: Any = [{"role": "user", "content": "Say something"}]
IGNORED: dict[str, Any] = {
    "store": True,
    "metadata": {"team": "search", "run": "7"},
    "service_tier": "auto",
    "safety_identifier": "user-hash-1",
    "prompt_cache_key": "conversation-42",
    "prompt_cache_retention": "24h",
    "user": "someone",
}


def test_chat_fields_that_change_nothing_are_accepted_and_ignored(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0
    )
    extras = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,
        prediction={"type": "content", "content": "something already known"},
        modalities=["text"],
        parallel_tool_calls=False,
        **IGNORED,
    )
    assert extras.choices[0].message.content == plain.choices[0].message.content
    assert extras.usage is not None and plain.usage is not None
    assert extras.usage.completion_tokens == plain.usage.completion_tokens
    assert extras.usage.prompt_tokens == plain.usage.prompt_tokens
    chunks = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
        **IGNORED,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content


def test_completion_fields_that_change_nothing_are_accepted(client: openai.OpenAI) -> None:
    plain = client.completions.create(model=MODEL, prompt="Once", max_tokens=8, temperature=0)
    extras = client.completions.create(
        model=MODEL, prompt="Once", max_tokens=8, temperature=0, extra_body=IGNORED
    )
    assert extras.choices[0].text == plain.choices[0].text


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("reasoning_effort", "low", "reasoning-effort"),
        ("verbosity", "low", "verbosity"),
        ("audio", {"voice": "alloy", "format": "wav"}, "text only"),
        ("functions", [{"name": "f", "parameters": {"type": "object"}}], "use tools"),
        ("web_search_options", {}, "web search"),
    ],
)
def test_chat_fields_that_would_change_the_output_are_a_400_naming_them(
    client: openai.OpenAI, field: str, value: Any, why: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=2, **{field: value}
        )
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["param"] == field
    assert error["message"].startswith(f"{field} is not supported by this server")
    assert why in error["message"]


def test_audio_output_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="generates text only") as raised:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=2, modalities=["text", "audio"]
        )
    assert isinstance(raised.value.body, dict) and raised.value.body["param"] == "modalities"


def test_a_field_of_no_api_is_still_refused(server: LiveServer) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 2, "temprature": 0.5}
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "temprature"


def test_langchain_sending_store_metadata_and_service_tier(server: LiveServer) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=MODEL,
        base_url=f"{server.url}/v1",
        api_key="unused",  # type: ignore[arg-type]
        temperature=0,
        max_tokens=6,
        max_retries=0,  # type: ignore[call-arg]
        service_tier="auto",
        store=True,
        model_kwargs={"prompt_cache_key": "k", "safety_identifier": "u"},
    )
    sent = llm._get_request_payload("Hello")
    assert {"store", "service_tier", "prompt_cache_key", "safety_identifier"} <= set(sent)
    assert isinstance(llm.invoke("Hello").content, str)
    streamed = "".join(str(chunk.content) for chunk in llm.stream("Hello"))
    assert streamed == llm.invoke("Hello").content
