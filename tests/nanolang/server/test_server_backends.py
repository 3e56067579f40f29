"""Programs against the server: HTTP backend == local backend for a seed; the OpenAI backend
runs gen and roles and refuses select and regex; native endpoints; ``nanolang run --server``."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import nanolang as nl
from nanolang.backends import HTTP, Local, OpenAI, UnsupportedByServer
from nanolang.cli import main
from runtime.sampling_params import SamplingParams
from tests.nanolang.server.conftest import MODEL
from tests.nanolang.server.live_server import LiveServer

PROGRAM = """
program main(topic = "films") {
    system "You rate things."
    user "Rate three {topic}."
    fork 2 {
        assistant { gen idea(max_tokens = 4, temperature = 0.9, top_k = 20) }
    }
    user "Pick a mood."
    assistant { select mood from ["positive", "negative", "neutral"] }
    "Score: " gen score(regex = r"[0-9]{1,2}", max_tokens = 3)
    gen tail(max_tokens = 5, stop = ["."], temperature = 0)
    return { idea, mood, score, tail }
}
"""

CHAT_ONLY = """
program main(q = "hi") {
    system "Be short."
    user "{q}"
    assistant { gen answer(max_tokens = 5, temperature = 0) }
    return answer
}
"""

TEXT_ONLY = """
program main() {
    "The answer is " gen a(max_tokens = 4, temperature = 0, stop = ["\\n"])
    return a
}
"""


@pytest.fixture(scope="module")
def local(tiny_llama: str) -> Iterator[Local]:
    backend = Local.from_model(tiny_llama)
    yield backend
    backend.close()


@pytest.fixture()
def http(server: LiveServer) -> Iterator[HTTP]:
    backend = HTTP(server.url)
    yield backend
    backend.close()


def run_calls(program: nl.Program, backend: nl.Backend, seed: int) -> tuple[object, list]:
    outcome = asyncio.run(program.arun_outcome({}, backend, seed=seed))
    assert outcome.error is None, outcome.error.format()
    calls = [(c.name, c.prompt_token_ids, c.text, c.finish_reason, c.scores) for c in outcome.calls]
    return outcome.value, sorted(calls, key=repr)  # records arrive in completion order


@pytest.mark.parametrize("seed", [0, 1])
def test_http_backend_equals_local_backend(local: Local, http: HTTP, seed: int) -> None:
    program = nl.compile(PROGRAM)
    local_value, local_calls = run_calls(program, local, seed)
    http_value, http_calls = run_calls(program, http, seed)
    assert http_value == local_value
    assert http_calls == local_calls  # same prompts (token ids), texts, finish reasons, scores
    assert re.fullmatch(r"[0-9]{1,2}", http_value["score"])


def test_http_backend_uses_the_servers_tokenizer(local: Local, http: HTTP) -> None:
    text = "<|user|>\nThe quick brown fox<|end|>\n"
    assert http.tokenizer.encode(text) == local.tokenizer.encode(text)
    assert http.tokenizer.chat_template == local.tokenizer.chat_template


def test_http_backend_reports_server_errors(http: HTTP) -> None:
    program = nl.compile('program main(t) { "{t}" gen a() \n return a }')
    outcome = asyncio.run(program.arun_outcome({"t": "seven eight nine " * 300}, http))
    assert outcome.error is not None
    assert "server answered 400" in str(outcome.error) and "context" in str(outcome.error)


def test_openai_backend_runs_gen_and_roles(server: LiveServer) -> None:
    backend = OpenAI(server.url, MODEL)
    answer = nl.compile(CHAT_ONLY).run(backend=backend, q="hello")
    direct = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Be short."},
                {"role": "user", "content": "hello"},
            ],
            "max_tokens": 5,
            "temperature": 0,
        },
        timeout=30,
    ).json()
    assert answer == direct["choices"][0]["message"]["content"]
    text = nl.compile(TEXT_ONLY).run(backend=backend)
    assert isinstance(text, str) and "\n" not in text


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (
            'program main() { "Mood: " select m from ["a", "b"] \n return m }',
            "prompt log-probabilities",
        ),
        ('program main() { "N: " gen n(regex = "[0-9]") \n return n }', "regex / json_schema"),
        ('program main() { "x" gen n(top_k = 5) \n return n }', "top_k"),
        (
            'program main() { user "q" \n assistant { "Sure: " gen a() } \n return a }',
            "cannot continue an assistant message",
        ),
    ],
)
def test_openai_backend_refuses_what_the_api_cannot_do(
    server: LiveServer, source: str, needle: str
) -> None:
    outcome = asyncio.run(nl.compile(source).arun_outcome({}, OpenAI(server.url, MODEL)))
    assert outcome.error is not None and needle in str(outcome.error)


def test_openai_backend_refusal_is_a_clear_exception(server: LiveServer) -> None:
    backend = OpenAI(server.url, MODEL)
    with pytest.raises(UnsupportedByServer, match="select needs"):
        asyncio.run(backend.generate([65], SamplingParams(prompt_logprobs=True)))


def test_native_generate_with_json_schema_and_token_ids(server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    body = {"prompt_token_ids": [1, 40, 41], "params": {"json_schema": schema, "max_tokens": 30}}
    out = httpx.post(f"{server.url}/v1/nano/generate", json=body, timeout=30).json()
    assert out["prompt_token_ids"] == [1, 40, 41] and out["finished"]
    if out["finish_reason"] == "stop":
        assert isinstance(json.loads(out["text"])["age"], int)


def test_score_token_ids_cross_the_wire(local: Local, http: HTTP) -> None:
    params = SamplingParams(max_tokens=2, temperature=0, ignore_eos=True, score_token_ids=(5, 7))
    remote = asyncio.run(http.generate([1, 40, 41], params))
    here = asyncio.run(local.generate([1, 40, 41], params))
    assert remote.score_logprobs is not None and here.score_logprobs is not None
    assert [sorted(d) for d in remote.score_logprobs] == [[5, 7], [5, 7]]  # int ids again
    for a, b in zip(remote.score_logprobs, here.score_logprobs, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_native_score_matches_select_on_the_local_backend(server: LiveServer, local: Local) -> None:
    from nanolang.run.choices import select

    choices = ["positive", "negative", "neutral"]
    body = {"prompt": "Review: great film. Sentiment:", "choices": choices, "method": "sum"}
    scored = httpx.post(f"{server.url}/v1/nano/score", json=body, timeout=30).json()
    ids = local.tokenizer.encode(body["prompt"], add_special_tokens=False)
    expected = asyncio.run(select(local, ids, choices, "sum"))
    assert scored["choice"] == expected.choice and scored["index"] == expected.index
    assert scored["scores"] == pytest.approx(list(expected.scores), abs=1e-5)


def test_cli_run_against_a_server(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_llama: str
) -> None:
    path = tmp_path / "p.nano"
    path.write_text(TEXT_ONLY, encoding="utf-8")
    assert main(["run", str(path), "--server", server.url, "--seed", "3"]) == 0
    remote = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["run", str(path), "--model", tiny_llama, "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == remote
    assert main(["run", str(path), "--server", server.url, "--model", tiny_llama]) == 2


def test_server_url_may_be_the_openai_base_url(
    server: LiveServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--server`` / ``HTTP(url)`` take the server's root or its ``/v1`` base, as OpenAI
    clients' ``base_url`` is written (the /v1 form made every request a bare 404)."""
    path = tmp_path / "p.nano"
    path.write_text(TEXT_ONLY, encoding="utf-8")
    assert main(["run", str(path), "--server", server.url, "--seed", "3"]) == 0
    root = capsys.readouterr().out.strip().splitlines()[-1]
    for url in (f"{server.url}/v1", f"{server.url}/v1/"):
        assert main(["run", str(path), "--server", url, "--seed", "3"]) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1] == root
