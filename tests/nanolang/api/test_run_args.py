"""How ``Program.run`` splits its arguments, run-level sampling defaults, and bad runs that
must fail cleanly (once, with a position, without hurting the engine)."""

from __future__ import annotations

import asyncio

import pytest

import nanolang as nl
from nanolang.api.options import RunOptions, split_run_args
from nanolang.backends.local import LocalBackend
from nanolang.syntax.errors import NanoRuntimeError

SEEDED = """
program main(question, seed = 1, backend = "none") {
    "{question} {seed} {backend}: " gen answer(max_tokens = 2)
    return { question, seed, backend, answer }
}
"""


def test_parameters_named_seed_and_backend_are_the_programs(backend: LocalBackend) -> None:
    program = nl.compile(SEEDED)
    value = program.run("q?", seed=5, backend="x", run_options=RunOptions(backend=backend))
    assert (value["question"], value["seed"], value["backend"]) == ("q?", 5, "x")


def test_positional_arguments_fill_parameters_in_order(backend: LocalBackend) -> None:
    program = nl.compile('program qa(q, n = 1) { "{q}" gen a(max_tokens = 1) return [q, n] }')
    assert program.run("What?", 2, backend=backend)[:2] == ["What?", 2]
    with pytest.raises(NanoRuntimeError, match="takes 2 argument"):
        program.run("a", 1, 3, backend=backend)
    with pytest.raises(NanoRuntimeError, match="got argument 'q' twice"):
        program.run("a", q="b", backend=backend)
    with pytest.raises(NanoRuntimeError, match="unknown argument 'colour'"):
        program.run("a", colour="red", backend=backend)


def test_run_level_sampling_defaults_reach_every_gen(backend: LocalBackend) -> None:
    program = nl.compile('program p() { "x" gen a gen b(max_tokens = 2) return [a, b] }')
    outcome = asyncio.run(program.arun_outcome({}, backend, max_tokens=3, temperature=0.0))
    first, second = outcome.calls
    assert first.params["max_tokens"] == 3 and first.params["temperature"] == 0.0
    assert second.params["max_tokens"] == 2  # the gen's own argument wins
    default = asyncio.run(program.arun_outcome({}, backend)).calls[0]
    assert default.params["max_tokens"] == 128  # SGLang's default, not a silent 16


def test_bad_run_options_are_refused() -> None:
    program = nl.compile('program p() { "x" gen a return a }')
    with pytest.raises(NanoRuntimeError, match="temperature"):
        split_run_args(program.definition, (), {"temperature": -1})


def test_an_over_long_select_fails_cleanly_and_the_engine_goes_on(
    backend: LocalBackend, capfd: pytest.CaptureFixture[str]
) -> None:
    long = "word " * 3000
    program = nl.compile(f'program p() {{ "Pick: " select x from ["a", "{long}"] return x }}')
    with pytest.raises(NanoRuntimeError, match="select request failed"):
        program.run(backend=backend)
    assert backend.failure is None
    ok = nl.compile('program p() { "x" gen a(max_tokens = 1) return a }')
    assert isinstance(ok.run(backend=backend), str)
    assert "Event loop is closed" not in capfd.readouterr().err
