"""The official ``openai`` client against a real server: completions and chat, streamed or not."""

from __future__ import annotations

import json
import math

import httpx
import openai
import pytest

from tests.nanolang.server.conftest import MODEL
from tests.nanolang.server.live_server import LiveServer


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]


def test_completion_structure_usage_and_logprobs(client: openai.OpenAI) -> None:
    out = client.completions.create(
        model=MODEL, prompt="The quick brown fox", max_tokens=5, seed=3, logprobs=0
    )
    assert out.object == "text_completion" and out.model == MODEL
    (choice,) = out.choices
    assert choice.index == 0 and choice.finish_reason in ("stop", "length")
    assert out.usage is not None and out.usage.prompt_tokens > 0
    assert 1 <= out.usage.completion_tokens <= 5
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert choice.logprobs is not None
    lps = choice.logprobs.token_logprobs
    assert len(lps) == out.usage.completion_tokens and all(lp <= 0 for lp in lps)
    assert "".join(choice.logprobs.tokens) == choice.text


def test_seeded_completions_repeat_and_n_gives_n_choices(client: openai.OpenAI) -> None:
    kw = dict(model=MODEL, prompt="One two three", max_tokens=6, temperature=1.0)
    first = client.completions.create(n=3, seed=11, **kw)
    second = client.completions.create(n=3, seed=11, **kw)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    # choice i of a seeded request is the single completion with seed + i
    singles = [client.completions.create(seed=11 + i, **kw) for i in range(3)]
    assert [c.text for c in first.choices] == [s.choices[0].text for s in singles]
    assert first.usage.completion_tokens == sum(s.usage.completion_tokens for s in singles)


def test_batch_of_token_id_prompts(client: openai.OpenAI) -> None:
    out = client.completions.create(
        model=MODEL, prompt=[[5, 6, 7], [8, 9]], max_tokens=2, temperature=0
    )
    assert [c.index for c in out.choices] == [0, 1]
    assert out.usage.prompt_tokens == 5


def test_stop_string_is_cut_from_text(client: openai.OpenAI) -> None:
    free = client.completions.create(model=MODEL, prompt="Score:", max_tokens=12, temperature=0)
    text = free.choices[0].text
    assert len(text) >= 4, "greedy text on the tiny model is long enough to cut"
    stop = text[2:4]
    kw = dict(model=MODEL, prompt="Score:", max_tokens=12, temperature=0, stop=[stop])
    cut = client.completions.create(**kw)
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(stop)]
    # streamed: text that a stop string could still remove is held back, never sent then cut
    chunks = list(client.completions.create(stream=True, **kw))
    assert "".join(c.choices[0].text for c in chunks) == cut.choices[0].text


def test_streamed_completion_matches_non_streamed(client: openai.OpenAI) -> None:
    kw = dict(model=MODEL, prompt="A model reads tokens", max_tokens=8, seed=5)
    whole = client.completions.create(**kw)
    chunks = list(
        client.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == whole.choices[0].finish_reason and all(r is None for r in reasons[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


@pytest.mark.parametrize("echo", [False, True])
def test_streamed_logprobs_offsets_match_non_streamed(client: openai.OpenAI, echo: bool) -> None:
    """text_offset counts the tokens' characters in a stream too: with a stop string the text
    lags behind the tokens (held back while the stop string could still cut it), and the
    offsets counted that text (they were 0 0 0 ... then off by the held-back characters)."""
    stop = ["a stop string that never comes"]
    kw = dict(model=MODEL, prompt="A model reads tokens", max_tokens=10, seed=5, stop=stop)
    kw.update(logprobs=1, echo=echo)
    whole = client.completions.create(**kw).choices[0].logprobs
    assert whole is not None and len(whole.tokens or []) >= 10
    tokens: list[str] = []
    offsets: list[int] = []
    for chunk in client.completions.create(stream=True, **kw):
        logprobs = chunk.choices[0].logprobs
        if logprobs is not None:
            tokens += logprobs.tokens or []
            offsets += logprobs.text_offset or []
    assert tokens == whole.tokens
    assert offsets == whole.text_offset


def test_chat_completion(client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    out = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=6, seed=2, logprobs=True
    )
    assert out.object == "chat.completion"
    (choice,) = out.choices
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.logprobs is not None
    assert len(choice.logprobs.content) == out.usage.completion_tokens
    assert all(math.isfinite(e.logprob) for e in choice.logprobs.content)
    tokenizer_prompt = "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"
    assert out.usage.prompt_tokens == len(_encode(client, tokenizer_prompt))


def _encode(client: openai.OpenAI, text: str) -> list[int]:
    from runtime.tiny import build_tokenizer

    return build_tokenizer().encode(text, add_special_tokens=False)


def test_streamed_chat_matches_non_streamed(client: openai.OpenAI) -> None:
    kw = dict(model=MODEL, messages=[{"role": "user", "content": "Count"}], max_tokens=7, seed=9)
    whole = client.chat.completions.create(n=2, **kw)
    chunks = list(client.chat.completions.create(stream=True, n=2, **kw))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    for i in range(2):
        deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].index == i]
        assert deltas[0].role == "assistant"
        assert "".join(d.content or "" for d in deltas) == whole.choices[i].message.content


def test_metrics_are_prometheus_text(server: LiveServer, client: openai.OpenAI) -> None:
    client.completions.create(model=MODEL, prompt="x", max_tokens=2)
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.headers["content-type"].startswith("text/plain")
    m = server.metrics()
    for name in ("requests_running", "requests_waiting", "kv_blocks_used", "iteration_seconds"):
        assert name in m
    assert m["kv_blocks_total"] > 0 and m["generation_tokens_total"] >= 2
    assert m["generation_tokens_per_second"] >= 0


def test_explicit_nulls_mean_the_defaults(server: LiveServer) -> None:
    """OpenAI's request fields are nullable, and clients that serialize a whole request object
    send ``null`` for what they leave unset (``"n": null``, ``"stream": null``, ...): null means
    not given, as on OpenAI and vLLM (it was a 400 for n, stream, logprobs and echo)."""
    unset = {"n": None, "stream": None, "temperature": None, "top_p": None, "stop": None,
             "seed": None, "stream_options": None, "user": None, "min_tokens": None,
             "ignore_eos": None}  # fmt: skip
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    chat |= {**unset, "logprobs": None, "top_logprobs": None, "tools": None, "tool_choice": None}
    completion = {"model": MODEL, "prompt": "Hi", "max_tokens": 3, **unset}
    completion |= {"logprobs": None, "echo": None, "best_of": None, "suffix": None}
    for path, body in (("/v1/chat/completions", chat), ("/v1/completions", completion)):
        answer = httpx.post(f"{server.url}{path}", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        (choice,) = answer.json()["choices"]
        assert choice["logprobs"] is None and choice["finish_reason"] in ("stop", "length")


def test_continuous_usage_stats_put_usage_in_every_chunk(server: LiveServer) -> None:
    """vLLM's ``stream_options.continuous_usage_stats`` (with ``include_usage``): each chunk
    carries the usage so far (it was accepted and ignored)."""
    options = {"include_usage": True, "continuous_usage_stats": True}
    body = {"model": MODEL, "prompt": "One two", "max_tokens": 5, "n": 2, "seed": 1,
            "ignore_eos": True, "stream": True, "stream_options": options}  # fmt: skip
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as answer:
        events = [line.removeprefix("data: ") for line in answer.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    *deltas, final = chunks
    assert final["choices"] == [] and final["usage"]["completion_tokens"] == 10
    counts = [c["usage"]["completion_tokens"] for c in deltas]
    assert counts == sorted(counts) and counts[-1] == 10
    prompt = final["usage"]["prompt_tokens"]
    for chunk in deltas:
        usage = chunk["usage"]
        assert usage["prompt_tokens"] == prompt
        assert usage["total_tokens"] == prompt + usage["completion_tokens"]
