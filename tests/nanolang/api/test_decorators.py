"""The decorator API traces into the same AST, checks and graph as the .nano language."""

from __future__ import annotations

import pytest

import nanolang as nl
from nanolang.api.decorators import State
from nanolang.api.live import LiveProgram
from nanolang.graph.render import to_text
from nanolang.syntax.errors import NanoCheckError, NanoErrors
from nanolang.syntax.parser import parse
from tests.nanolang.helpers import PROGRAMS, CountingBackend


@nl.program
def classify(s, review, labels=("positive", "negative", "neutral")):
    s += nl.system("You are a precise sentiment classifier.")
    s += nl.user(nl.fmt("Review: {review}\nWhich sentiment is it?", review=review))
    s += nl.assistant(nl.select("label", choices=labels))
    return s["label"]


@nl.program
def scored(s, question):
    s += nl.user(question)
    s += nl.assistant("Score: " + nl.gen("score", regex="[0-9]+", max_tokens=3))
    return {"score": s["score"], "question": question}


def test_same_graph_as_the_nano_program() -> None:
    module = parse((PROGRAMS / "solve.nano").read_text())
    nano = nl.build_graph(module).programs[0]
    traced = classify.graph().programs[0]
    assert traced.signature == nano.signature
    assert to_text(classify.graph()) == to_text(nl.Graph((nano,)))


def test_pieces_concatenate_inside_roles() -> None:
    text = to_text(scored.graph())
    assert '+ assistant: "Score: "' in text
    assert 'params regex = "[0-9]+", max_tokens = 3' in text
    assert "return { score, question }" in text


def test_spans_point_into_this_file() -> None:
    select_stmt = classify.definition.body[2].body[0]  # type: ignore[union-attr]
    assert select_stmt.span.file == __file__
    assert select_stmt.span.line == classify.definition.span.line + 4


def test_static_errors_are_raised_at_decoration() -> None:
    with pytest.raises(NanoErrors) as info:

        @nl.program
        def bad(s):
            s += nl.assistant(nl.gen("x", max_tokens=-1))
            return s["y"]

    messages = [e.message for e in info.value.errors]
    assert any("max_tokens" in m for m in messages)
    assert any("undefined variable 'y'" in m for m in messages)


def test_python_control_flow_on_values_runs_with_real_values() -> None:
    @nl.program
    def branchy(s, x):
        if x:
            s += "yes"

    assert isinstance(branchy, LiveProgram)
    with pytest.raises(nl.NanoRuntimeError, match=r"no static request graph.*if/while"):
        branchy.graph()


@pytest.mark.parametrize(
    ("condition", "taken"),
    [
        ('s["x"] == "ok"', True),
        ('s["x"] != "ok"', False),
        ('"o" in s["x"]', True),
        ('s["x"] in ["a", "b"]', False),
        ('f"{s[\'x\']}!" == "ok!"', True),
    ],
)
def test_comparisons_on_generated_values_are_real(condition: str, taken: bool) -> None:
    source = f"""
def branchy(s):
    s += nl.gen("x", max_tokens=2)
    if {condition}:
        s += "A"
    elif s["x"] == "never":
        s += "B"
    else:
        s += "C"
"""
    namespace: dict = {"nl": nl}
    exec(compile(source, "branchy.py", "exec"), namespace)
    program = nl.program(namespace["branchy"])
    state = program.run(backend=CountingBackend())
    assert state["x"] == "ok"
    assert state.text() == ("okA" if taken else "okC")


def test_operators_on_values_build_expressions() -> None:
    @nl.program
    def compare(s, x):
        s += nl.gen("y", max_tokens=1)
        return {"same": s["y"] == x, "longer": s["y"] + x, "first": s["y"][0]}

    assert "y == x" in to_text(compare.graph())


def test_unary_minus_means_what_it_means_in_a_nano_file() -> None:
    @nl.program
    def negate(s, n=3):
        return {"m": -n, "k": -(n * 2) + 1}

    nano = nl.compile("program negate(n = 3) {\n    return { m: -n, k: -(n * 2) + 1 }\n}\n")
    assert negate.run(backend=CountingBackend()) == {"m": -3, "k": -5}
    assert nano.run(backend=CountingBackend()) == {"m": -3, "k": -5}
    assert to_text(negate.graph()).splitlines()[-1] == to_text(nano.graph()).splitlines()[-1]


def test_fmt_requires_every_hole() -> None:
    with pytest.raises(NanoCheckError, match="no value for hole"):
        nl.fmt("{a} {b}", a="1")


def test_fmt_escapes_braces_and_inlines_literals() -> None:
    assert nl.fmt("{{x}} {a}", a="lit") == "{x} lit"  # every value known: plain text


@nl.program
def pick(s, candidates):
    s += nl.fmt("Candidates:\n{candidates}\nThe best one is number ", candidates=candidates)
    s += nl.gen("number", regex="[1-9]")
    return s["number"]


@nl.program
def solve(s, question, n=3):
    s += nl.user(nl.fmt("Solve step by step:\n{question}", question=question))
    with s.fork(n):
        s += nl.assistant(nl.gen("thought", max_tokens=256, temperature=0.8, stop="\n\n"))
        s += nl.user("Score the solution above from 1 to 10.")
        s += nl.assistant("Score: " + nl.gen("score", regex="[0-9]+", max_tokens=3))
    s["best"] = nl.call(pick, candidates=nl.join(s["thought"], "\n---\n"))
    return {"best": s["best"], "thought": s["thought"], "score": s["score"]}


def test_fork_and_call_trace_to_the_nano_graph() -> None:
    source = (PROGRAMS / "solve.nano").read_text()
    only = source[source.index("program solve") :]
    assert to_text(solve.graph()) == to_text(nl.build_graph(parse(only)))


def test_loop_block_binds_its_variable() -> None:
    @nl.program
    def chat(s, questions):
        with s.loop("q", questions) as q:
            s += nl.user(q)
            s += nl.assistant(nl.gen("reply", max_tokens=2))
        return s["reply"]

    text = to_text(chat.graph())
    assert "= for q in questions" in text and "in for q in questions" in text


def test_a_failing_with_body_adds_nothing() -> None:
    state = State()
    with pytest.raises(RuntimeError), state.fork(2):
        state += "x"
        raise RuntimeError("boom")
    assert state.body == []
