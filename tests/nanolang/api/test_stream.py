"""Streaming: run(stream=True).text_iter(), program.stream(...), nanolang run --stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import nanolang as nl
from nanolang.backends.local import LocalBackend
from nanolang.cli import main

QA = """
program qa(question) {
    system "You are a helpful assistant."
    user "{question}"
    assistant { gen answer(max_tokens = 12, temperature = 0) }
}
"""


def test_text_iter_streams_the_whole_text_token_by_token(backend: LocalBackend) -> None:
    program = nl.compile(QA)
    state = program.run(question="Hi?", stream=True, backend=backend)
    chunks = list(state.text_iter())
    assert "".join(chunks) == state.text()
    assert len(chunks) > 3  # the answer arrived in pieces, not at once
    answer = program.run(question="Hi?", stream=True, backend=backend)
    assert "".join(answer.text_iter("answer")) == answer["answer"]


def test_async_stream_of_a_live_program(backend: LocalBackend) -> None:
    @nl.function
    def qa(s, question):
        s += "Q: " + question + "\n"
        if question.endswith("?"):
            s += "A:" + nl.gen("answer", max_tokens=6, temperature=0)

    async def collect() -> str:
        return "".join([d async for d in qa.stream("Why?", backend=backend)])

    text = asyncio.run(collect())
    assert text.startswith("Q: Why?\nA:") and len(text) > len("Q: Why?\nA:")


def test_stream_raises_the_error_at_the_end(backend: LocalBackend) -> None:
    program = nl.compile('program p() { "x" let n = int("no") }')

    async def collect() -> list[str]:
        return [d async for d in program.stream(backend=backend)]

    with pytest.raises(nl.NanoRuntimeError, match="cannot parse"):
        asyncio.run(collect())


def test_cli_run_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "qa.nano"
    source.write_text(QA.replace("program qa(question)", 'program qa(question = "Hi?")'))
    assert main(["run", str(source), "--stream", "--seed", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "null" and "Hi?" in "\n".join(out[:-1])


CHAT = """
program chat(questions) {
    for q in questions {
        user "{q}"
        assistant { gen reply(max_tokens = 6, temperature = 0, ignore_eos = true) }
    }
    if len(reply) > 0 { "done" }
}
"""


def test_a_loop_streams_its_gens_token_by_token(backend: LocalBackend) -> None:
    """A for loop's body extends the instance's own context: it streams as it goes, not in one
    piece once the loop ends, and text_iter(NAME) yields each iteration's tokens of gen NAME."""
    program = nl.compile(CHAT)
    state = program.run(questions=["a?", "b?"], stream=True, backend=backend)
    chunks = list(state.text_iter())
    assert "".join(chunks) == state.text()
    assert len(chunks) > 8 and max(len(c) for c in chunks) < len(state.text()) / 2
    replies = program.run(questions=["a?", "b?"], stream=True, backend=backend)
    assert "".join(replies.text_iter("reply")) == "".join(replies["reply"])


def test_state_access_on_a_program_that_returns_says_to_use_result(backend: LocalBackend) -> None:
    program = nl.compile('program p() { "x" gen g(max_tokens = 2) return "done" }')
    state = program.run(stream=True, backend=backend)
    with pytest.raises(
        TypeError, match=r"state\['g'\] reads the state of a program without return"
    ):
        state["g"]
    assert state.result() == "done"
    record = nl.compile('program p() { "x" gen g(max_tokens = 2) return { g } }')
    streamed = record.run(stream=True, backend=backend)
    assert streamed["g"] == streamed.result()["g"]
