"""Constraint compilation: size and time limits, the cache, the checker's function, and a
matcher that hits llguidance's per-token limits ending its request with an error."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator

import pytest

from runtime import LLM, SamplingParams
from runtime.constraints import (
    ConstraintCompiler,
    ConstraintLimitError,
    ConstraintLimits,
    ConstraintSpec,
    constraint_error,
    fit_budget,
    regex_size,
)
from runtime.sampling_params import ConstraintError

BIG_SCHEMA = json.dumps(
    {
        "anyOf": [
            {"type": "object", "properties": {f"p{i}_{k}": {"type": "integer"} for i in range(30)}}
            for k in range(150)
        ]
    }
)


@pytest.fixture(scope="module")
def llm(tiny_llama: str) -> LLM:
    return LLM(tiny_llama, dtype="float32", device="cpu")


def test_regex_size_counts_nested_repetitions() -> None:
    assert regex_size("[0-9]{1,2}") == 2
    assert regex_size("(c{1,400}){1,400}") == 160_000
    assert regex_size("a*b+") == 2


DEEP = "nests too deeply|recursion limit exceeded|invalid regex"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"regex": "(c{1,400}){1,400}"}, "too large"),
        ({"regex": "(a|aa)*b(c{1,1000}){1,1000}"}, "too large"),
        ({"json_schema": '{"type": "string", "pattern": "(c{1,400}){1,400}"}'}, "too large"),
        ({"regex": "[0-9"}, "invalid regex"),
        ({"json_schema": "{not json"}, "not valid JSON"),
        ({"json_schema": '{"type": "foo"}'}, "invalid json_schema"),
        ({"grammar": "start: x"}, "invalid grammar"),
        # nested past a recursion limit (Python's, or llguidance's JSON parser's when the
        # process runs with a higher Python limit): refused, never a RecursionError
        ({"regex": "(" * 2000 + "a" + ")" * 2000}, DEEP),
        ({"json_schema": '{"properties": {"a": ' * 600 + "{}" + "}}" * 600}, DEEP),
    ],
)
def test_constraint_error_for_the_checker(kwargs: dict, message: str) -> None:
    start = time.perf_counter()
    problem = constraint_error(**kwargs)
    assert problem is not None and re.search(message, problem), problem
    assert time.perf_counter() - start < 2.0


def test_constraint_error_accepts_what_the_engine_serves() -> None:
    assert constraint_error(regex="[0-9]{1,3}") is None
    assert constraint_error(json_schema='{"type": "string", "maxLength": 20}') is None
    assert constraint_error(grammar='start: "yes" | "no"') is None
    assert constraint_error() is None


def test_compile_time_limit_and_cache(llm: LLM) -> None:
    tokenizer = llm.engine.tokenizer
    vocab = llm.engine.model_config.vocab_size
    strict = ConstraintCompiler(
        tokenizer, tokenizer.eos_token_id, vocab, ConstraintLimits(compile_seconds=0.001)
    )
    spec = ConstraintSpec("json_schema", BIG_SCHEMA)
    with pytest.raises(ConstraintLimitError, match="took over"):
        strict.prepare(spec)
    start = time.perf_counter()
    with pytest.raises(ConstraintLimitError):  # the failure is cached: no second compile
        strict.prepare(spec)
    assert time.perf_counter() - start < 0.05
    compiler = llm.engine.constraint_compiler()
    small = ConstraintSpec("regex", "[a-z]{3}")
    compiler.prepare(small)
    start = time.perf_counter()
    compiler.compile("[a-z]{3}", None)
    assert time.perf_counter() - start < 0.05


def test_mid_output_limit_ends_the_request_with_an_error(llm: LLM) -> None:
    # accepted at compile time; llguidance's lexer limit trips after some hundred tokens
    limits = ConstraintLimits(max_regex_size=10**9)
    engine = llm.engine
    tokenizer = engine.tokenizer
    engine._constraints = ConstraintCompiler(
        tokenizer, tokenizer.eos_token_id, engine.model_config.vocab_size, limits
    )
    c = tokenizer.convert_tokens_to_ids("c")
    try:
        params = SamplingParams(
            max_tokens=400, regex="(c{1,400}){1,400}", temperature=0, logit_bias={c: 100.0}
        )
        out = llm.generate(["x"], params)[0]
    finally:
        engine._constraints = None
    assert out.finish_reason == "error", out
    assert str(out.stop_reason).startswith("constraint error")
    assert set(out.text) <= {"c"} and 0 < len(out.token_ids) < 400
    with pytest.raises(ConstraintError):
        llm.generate(["x"], SamplingParams(regex="(c{1,400}){1,400}"))


@pytest.mark.parametrize("seed", range(4))
def test_a_regex_output_always_completes_within_max_tokens(llm: LLM, seed: int) -> None:
    # a random model rarely closes the quote on its own: the fitted walker closes it in time
    # (free for the first 3 tokens, then at most 3 more bytes)
    pattern = r'"[^"]*"'
    out = llm.generate(
        ["x"], SamplingParams(max_tokens=6, regex=pattern, temperature=1.0, seed=seed)
    )[0]
    assert re.fullmatch(pattern, out.text, re.DOTALL), out.text
    assert len(out.token_ids) <= 6


def test_a_regex_no_match_of_which_fits_the_budget_runs_unbounded(llm: LLM) -> None:
    out = llm.generate(["x"], SamplingParams(max_tokens=3, regex="a{50}", temperature=0))[0]
    assert out.finish_reason == "length" and set(out.text) <= {"a"}, out


def test_fit_budget_escapes_the_regex_and_the_prefix_for_lark() -> None:
    grammar = fit_budget("a/b\\/c\n.*", "a/b/c\n{x", 8)
    assert "/a\\/b\\/c\\n.*/ & (/a\\/b\\/c\\x{A}\\{x/ B8)" in grammar
    assert "B1: /[\\x00-\\x7F]/ B0" in grammar
    assert constraint_error(grammar=grammar) is None


def test_short_budgets_are_not_restricted(llm: LLM) -> None:
    # fitting starts when min(64, max_tokens // 2) tokens remain: "yes" (one token, three
    # bytes) stays possible with max_tokens = 2, and the first token is never restricted
    tokenizer = llm.engine.tokenizer
    compiler = llm.engine.constraint_compiler()
    walker = compiler.compile("yes|no", None, None, 2)
    yes = tokenizer.encode("yes", add_special_tokens=False)
    assert all(walker.allowed_mask()[t] for t in yes[:1])


@pytest.fixture
def held_fits(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Every fitted-matcher build waits for ``release`` (set at the end of the test) before it
    runs the real build; ``started`` is set once a build has begun."""
    real = ConstraintCompiler.fitted
    started, release = threading.Event(), threading.Event()

    def held(self: ConstraintCompiler, *args: object) -> object:
        started.set()
        release.wait(60)
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ConstraintCompiler, "fitted", held)
    yield started, release
    release.set()


FITTED = SamplingParams(max_tokens=8, regex="[a-z ]{2,30}", temperature=0)  # fitted at 4 left
PLAIN = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True)


def test_a_slow_fit_stalls_only_its_own_request(tiny_llama: str, held_fits) -> None:
    started, release = held_fits
    llm = LLM(tiny_llama, dtype="float32", device="cpu")
    release.set()
    want = llm.generate(["x"], FITTED)[0]  # the same request, its builds not held
    release.clear()
    started.clear()
    engine = llm.engine
    rid = engine.add_request("x", FITTED)
    others = [engine.add_request(p, PLAIN) for p in ("one two", "three")]
    for _ in range(20):
        if started.is_set():
            break
        engine.step()
    assert started.wait(10), "the fit was never built"
    held_steps = []
    for _ in range(12):  # the build is held: the others go on, the regex request waits
        held_steps.append({o.request_id: len(o.token_ids) for o in engine.step()})
    assert all(rid not in step for step in held_steps)
    for other in others:
        counts = [step[other] for step in held_steps if other in step]
        assert len(counts) == 12 and counts == sorted(counts) and counts[-1] - counts[0] == 11
    release.set()
    done = {}
    while engine.has_unfinished_requests():
        done.update({o.request_id: o for o in engine.step() if o.finished})
    got = done[rid]
    assert (got.token_ids, got.text, got.finish_reason) == (
        want.token_ids, want.text, want.finish_reason)  # fmt: skip
    assert re.fullmatch("[a-z ]{2,30}", got.text), got.text


def test_a_fit_over_the_time_limit_is_no_fit(tiny_llama: str, held_fits) -> None:
    started, _release = held_fits
    llm = LLM(tiny_llama, dtype="float32", device="cpu")
    llm.engine.constraint_compiler().limits = ConstraintLimits(compile_seconds=0.3)
    t0 = time.perf_counter()
    out = llm.generate(["x"], FITTED)[0]  # every build held past the limit: unfitted to the end
    assert started.is_set() and time.perf_counter() - t0 >= 0.3
    assert out.finished and len(out.token_ids) <= 8
