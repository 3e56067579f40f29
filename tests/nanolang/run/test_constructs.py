"""The constructs beyond gen/select/fork/for/if, on the real engine (tiny random model):
while/break, range/keys, fork with a branch index and concat, gen n/dtype/logprobs, select
methods, host tools, import, and a run's text and messages."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

import nanolang as nl
from nanolang.api.live import LiveProgram
from nanolang.backends.local import LocalBackend
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoCheckError, NanoErrors, NanoRuntimeError


def test_while_break_range_keys(backend: LocalBackend) -> None:
    program = nl.compile(
        """
program loop() {
    while true {
        "Step: " gen step(max_tokens = 1, temperature = 0)
        break
    }
    for i in range(4) {
        let twice = i + i
        if i == 2 { break }
    }
    return { step, twice, n: len(step), k: keys(call rec()) }
}
program rec() { return { a: 1, b: 2 } }""",
        name="loop",
    )
    value = program.run(backend=backend)
    assert value["twice"] == [0, 2, 4] and value["n"] == 1 and value["k"] == ["a", "b"]


def test_fork_with_branch_index_and_concat(backend: LocalBackend) -> None:
    program = nl.compile("""
program main(n = 3) {
    "Facts:\\n"
    fork n as i concat {
        "Fact {i}: " gen fact(max_tokens = 2, temperature = 0) "\\n"
    }
    "Summary:" gen summary(max_tokens = 2, temperature = 0)
}""")
    state = program.run(backend=backend)
    text = state.text()
    facts = state["fact"]
    assert len(facts) == 3
    for i, fact in enumerate(facts):
        assert f"Fact {i}: {fact}\n" in text
    assert (
        text.index("Fact 0") < text.index("Fact 1") < text.index("Fact 2") < text.index("Summary")
    )


def test_gen_n_dtype_and_logprob_metadata(backend: LocalBackend) -> None:
    program = nl.compile("""
program main() {
    "Pick: " gen many(n = 3, max_tokens = 2, temperature = 1.0)
    "\\nHours: " gen hours(dtype = "int", max_tokens = 4, return_logprob = true)
    let m = meta(hours)
    return { many, hours, m }
}""")
    value = program.run(backend=backend, seed=1)
    assert isinstance(value["many"], list) and len(value["many"]) == 3
    assert isinstance(value["hours"], int)
    logprobs = value["m"]["output_token_logprobs"]
    assert len(logprobs) == value["m"]["completion_tokens"] >= 1
    assert all(lp <= 0 and isinstance(tid, int) for lp, tid, _ in logprobs)


@pytest.mark.parametrize(
    "method",
    ["mean", "sum", "token_length_normalized", "greedy", "unconditional_likelihood_normalized"],
)
def test_select_methods(backend: LocalBackend, method: str) -> None:
    program = nl.compile(f"""
program main() {{
    "Answer: " select a(method = "{method}") from ["yes", "no", "not sure"]
    return a
}}""")
    outcome = asyncio.run(program.arun_outcome({}, backend))
    assert outcome.value in ("yes", "no", "not sure")
    (record,) = outcome.calls
    assert record.scores is not None and all(math.isfinite(s) for s in record.scores)
    if method == "unconditional_likelihood_normalized":
        assert len(record.request_ids) == 6  # each choice after the context and after BOS


def calculator(expr: str) -> str:
    a, b = expr.split("*")
    return str(int(a) * int(b))


TOOLS = """
tool calculator(expr)
program main(lhs, rhs) {
    "calculate({lhs}*{rhs}) = "
    let answer = call tool calculator("{lhs}*{rhs}")
    "{answer}"
    return answer
}
"""


def test_host_tools_by_name(backend: LocalBackend) -> None:
    program = nl.compile(TOOLS)
    assert program.run(257, 983, backend=backend, tools=[calculator]) == str(257 * 983)
    with pytest.raises(NanoRuntimeError, match="no function for it"):
        program.run(1, 2, backend=backend)
    with pytest.raises(NanoRuntimeError, match="does not match"):
        program.run(1, 2, backend=backend, tools={"calculator": lambda: 0})


def test_tool_calls_are_checked_by_name_and_arity() -> None:
    with pytest.raises(NanoErrors) as info:
        nl.compile(
            "tool calc(x)\nprogram p() { let a = call tool calc(1, 2) let b = call tool nope() }"
        )
    messages = [e.message for e in info.value.errors]
    assert any("takes 1 argument(s), got 2" in m for m in messages)
    assert any("unknown tool 'nope'" in m for m in messages)


def test_import_brings_programs_once(tmp_path: Path, backend: LocalBackend) -> None:
    (tmp_path / "vote.nano").write_text(
        'program vote(q) { "{q} " gen v(max_tokens = 1, temperature = 0) return v }\n'
    )
    (tmp_path / "a.nano").write_text(
        'import "vote.nano"\nprogram a() { return call vote(q = "x") }\n'
    )
    main = tmp_path / "main.nano"
    main.write_text(
        'import "vote.nano"\nimport "a.nano"\n'
        'program main() { let x = call vote(q = "y") let y = call a() return [x, y] }\n'
    )
    program = nl.load(main)
    assert [p.name for p in program.module.programs] == ["main", "vote", "a"]
    assert len(program.run(backend=backend)) == 2
    with pytest.raises(nl.NanoSyntaxError, match=r"cannot import 'missing\.nano'"):
        nl.compile('import "missing.nano"\nprogram p() { }', filename=str(tmp_path / "m.nano"))


def test_text_and_messages_of_a_run(backend: LocalBackend) -> None:
    program = nl.compile("""
program main() {
    system "Be brief."
    user "Hi"
    assistant { gen reply(max_tokens = 2, temperature = 0) }
}""")
    state = program.run(backend=backend)
    roles = [m["role"] for m in state.messages()]
    assert roles == ["system", "user", "assistant"]
    assert state.messages()[-1]["content"] == state["reply"]
    assert state.text().endswith(
        state["reply"]
        + backend.tokenizer.apply_chat_template(
            [{"role": "assistant", "content": "X"}], tokenize=False
        ).split("X")[-1]
    )


def test_images_are_refused() -> None:
    with pytest.raises(NanoErrors, match="images are not supported"):
        nl.compile('program p() { user "{image(\\"cat.png\\")}" }')
    with pytest.raises(NotImplementedError, match="images are not supported"):
        nl.image("cat.png")


def test_break_outside_a_loop_and_endless_while() -> None:
    with pytest.raises(NanoErrors) as info:
        nl.compile("program p() { while true { } fork 2 { break } break }")
    messages = [e.message for e in info.value.errors]
    assert any("break outside a loop" in m for m in messages)
    assert any("never ends" in m for m in messages)
    assert any("break inside a fork body" in m for m in messages)
    assert isinstance(info.value.errors[0], NanoCheckError)


def test_capture_binds_the_text_its_body_appended(backend: LocalBackend) -> None:
    program = nl.compile("""
program main(city = "Paris") {
    "About {city}:\\n"
    capture record {
        "{{\\"name\\": " gen name(dtype = "str", max_tokens = 6, temperature = 0)
        ", \\"n\\": " gen n(dtype = "int", max_tokens = 3, temperature = 0) "}}"
    }
    user { capture question { "Where is " gen place(max_tokens = 2, temperature = 0) "?" } }
    return { record, name, n, question, place }
}""")
    value = program.run(backend=backend)
    assert value["record"] == f'{{"name": {value["name"]}, "n": {value["n"]}}}'
    assert value["question"] == f"Where is {value['place']}?"


def test_var_scope_traces_to_capture() -> None:
    @nl.function
    def scoped(s: Any) -> None:
        s += "A: "
        with s.var_scope("tail"):
            s += "x" + nl.gen("more", max_tokens=2)

    assert isinstance(scoped, nl.Program) and not isinstance(scoped, LiveProgram)
    body = scoped.definition.body
    assert isinstance(body[-1], tree.Capture) and body[-1].name == "tail"


def test_capture_errors() -> None:
    with pytest.raises(NanoErrors) as info:
        nl.compile(
            "program p() { for i in [1] { capture a { break } } capture b { user \"x\" }"
            " capture c { return 1 } }"
        )
    messages = [e.message for e in info.value.errors]
    assert any("break is not allowed inside a capture block" in m for m in messages)
    assert any("'user' block is not allowed inside capture" in m for m in messages)
    assert any("return is not allowed inside a capture block" in m for m in messages)
    with pytest.raises(NanoErrors, match="cannot apply '-' to a string and an int"):
        nl.compile('program p() { capture a { "x" } return a - 1 }')
