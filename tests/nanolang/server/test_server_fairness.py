"""Admission fairness on a real server: a small request that arrives behind one with a thousand
choices starts in its turn instead of after all of them; a request over ``--max-choices`` is a
400 naming the flag; a client that leaves a huge request takes all of its held choices with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from nanolang.server import ServerConfig
from tests.nanolang.server.conftest import MODEL
from tests.nanolang.server.live_server import LiveServer, live_server

PROMPTS, N = 250, 4  # 1,000 choices
MAX_SEQS = 32  # the engine runs 32 sequences at a time: the huge request takes ~32 waves


@pytest.fixture(scope="module")
def server(tiny_llama: str) -> Iterator[LiveServer]:
    config = ServerConfig(
        model=tiny_llama,
        model_name=MODEL,
        max_choices=PROMPTS * N,
        llm_kwargs={"max_num_seqs": MAX_SEQS},
    )
    with live_server(config) as live:
        yield live


def client(server: LiveServer, timeout: float = 120) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=timeout
    )


def huge_prompts() -> list[str]:
    return [f"prompt number {i} says" for i in range(PROMPTS)]


def wait_until_running(server: LiveServer) -> None:
    deadline = time.monotonic() + 60
    while server.metrics()["requests_running"] == 0:
        assert time.monotonic() < deadline, "the huge request never started"
        time.sleep(0.01)


def test_a_small_request_behind_a_huge_one_finishes_long_before_it(server: LiveServer) -> None:
    done: dict[str, float] = {}
    answers: dict[str, object] = {}

    def huge() -> None:
        answers["huge"] = client(server).completions.create(
            model=MODEL, prompt=huge_prompts(), n=N, max_tokens=16, extra_body={"ignore_eos": True}
        )
        done["huge"] = time.monotonic()

    start = time.monotonic()
    thread = threading.Thread(target=huge)
    thread.start()
    wait_until_running(server)
    waiting = server.metrics()["requests_waiting"]
    small_start = time.monotonic()
    small = client(server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    done["small"] = time.monotonic()
    thread.join(timeout=300)
    assert not thread.is_alive()
    huge_answer = answers["huge"]
    assert isinstance(huge_answer, openai.types.Completion)
    assert len(huge_answer.choices) == PROMPTS * N
    assert all(c.finish_reason == "length" for c in huge_answer.choices)
    assert small.choices[0].message.content is not None
    # the huge request's choices were still queued when the small one came, yet the small one
    # finished first, in a small part of the huge one's time (first come first served, it
    # waited behind those ~950 choices: about as long as the huge request took)
    assert waiting > 10 * MAX_SEQS
    assert done["small"] < done["huge"]
    small_s, huge_s = done["small"] - small_start, done["huge"] - start
    assert small_s < 0.25 * huge_s, (small_s, huge_s)
    assert server.wait_idle()["requests_waiting"] == 0


def test_too_many_choices_is_a_400_naming_the_limit_and_the_flag(server: LiveServer) -> None:
    body = {"model": MODEL, "prompt": [*huge_prompts(), "one more"], "n": N, "max_tokens": 1}
    response = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "prompt"
    assert "1004 choices (251 prompts x n=4)" in error["message"]
    assert f"at most {PROMPTS * N}" in error["message"] and "--max-choices" in error["message"]
    with pytest.raises(openai.BadRequestError, match="--max-choices"):
        client(server).completions.create(model=MODEL, prompt=["a"] * (PROMPTS * N // 2 + 1), n=2)


def test_a_client_leaving_a_huge_request_takes_its_held_choices_along(server: LiveServer) -> None:
    before = server.metrics()
    body = {
        "model": MODEL,
        "prompt": huge_prompts(),
        "n": N,
        "max_tokens": 64,
        "ignore_eos": True,
    }
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/completions", json=body, timeout=httpx.Timeout(30, read=1))
    after = server.wait_idle(timeout_s=60)
    assert after["requests_running"] == after["requests_waiting"] == after["kv_blocks_used"] == 0
    finished = after["requests_finished_total"] - before["requests_finished_total"]
    assert finished < PROMPTS * N / 2
    ok = client(server).completions.create(model=MODEL, prompt="still there", max_tokens=2)
    assert ok.choices[0].text is not None
