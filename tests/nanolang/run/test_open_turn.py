"""A fork inside an open role block and a ``max_tokens = 0`` gen (SGLang's cot_decoding), on
the real engine (tiny random model), in both forms; plus the arithmetic it needs."""

from __future__ import annotations

import math

import pytest

import nanolang as nl
from nanolang.backends.local import LocalBackend
from nanolang.backends.openai_compat import UnsupportedByServer, refuse_unsupported
from nanolang.syntax.errors import NanoRuntimeError
from runtime.sampling_params import SamplingParams


def _footer(backend: LocalBackend) -> str:
    rendered = backend.tokenizer.apply_chat_template(
        [{"role": "assistant", "content": "X"}], tokenize=False
    )
    return str(rendered.split("X")[-1])


def test_fork_branches_continue_the_open_turn(backend: LocalBackend) -> None:
    program = nl.compile("""
program main() {
    user "Hi"
    assistant {
        "Sure: "
        fork 2 as i {
            "({i}) " gen part(max_tokens = 2, temperature = 0)
            let seen = meta(part)["prompt_tokens"]
        }
        fork 2 as j concat { "[{j}]" }
        " done"
    }
    return { part, seen }
}
program state() {
    user "Hi"
    assistant { "Sure: " fork 2 as i concat { "({i}) " gen part(max_tokens = 2, temperature = 0) } }
}""")
    value = program.run(backend=backend)
    assert len(value["part"]) == 2 and value["seen"][0] == value["seen"][1]
    state = program["state"].run(backend=backend)
    parts = state["part"]
    messages = state.messages()
    assert [m["role"] for m in messages] == ["user", "assistant"]
    # both branches' text joined inside the one assistant message, which then closes once
    assert messages[1]["content"] == f"Sure: (0) {parts[0]}(1) {parts[1]}"
    assert state.text().endswith(f"(1) {parts[1]}" + _footer(backend))


def test_each_branch_prompt_ends_inside_the_open_turn(backend: LocalBackend) -> None:
    program = nl.compile("""
program main() {
    user "Hi"
    assistant { fork 2 as i { "({i})" gen part(max_tokens = 1, temperature = 0) } }
}""")
    outcome = program.run_batch_outcomes([{}], progress=False, backend=backend)[0]
    assert outcome.error is None
    prompts = [r.prompt_token_ids for r in outcome.calls]
    opened = backend.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    for i, prompt in enumerate(sorted(prompts, key=lambda p: backend.tokenizer.decode(p))):
        assert backend.tokenizer.decode(prompt).endswith(opened[-8:] + f"({i})")


def test_max_tokens_0_returns_the_next_tokens_top_k(backend: LocalBackend) -> None:
    program = nl.compile("""
program main() {
    "The sky is"
    gen probe(max_tokens = 0, return_logprob = true, top_logprobs_num = 4,
              return_text_in_logprobs = true)
    let m = meta(probe)
    gen next(max_tokens = 1, temperature = 0, return_logprob = true, top_logprobs_num = 4)
    return { probe, m, first: meta(next)["output_top_logprobs"][0] }
}""")
    state_value = program.run(backend=backend)
    m = state_value["m"]
    assert state_value["probe"] == "" and m["completion_tokens"] == 0
    assert m["output_token_ids"] == [] and m["output_token_logprobs"] == []
    (top,) = m["output_top_logprobs"]  # one position: the prompt's end
    assert len(top) == 4
    probs = [math.exp(lp) for lp, _, _ in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert all(text == backend.tokenizer.decode([tid]) for _, tid, text in top)
    # nothing was appended: the next gen sees the same prompt, so the same top-k
    assert [tid for _, tid, _ in top] == [tid for _, tid, _ in state_value["first"]]
    for (a, _, _), (b, _, _) in zip(top, state_value["first"], strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_max_tokens_0_refusals(backend: LocalBackend) -> None:
    with pytest.raises(nl.NanoErrors, match="max_tokens = 0 generates nothing"):
        nl.compile('program main() { "x" gen g(max_tokens = 0, n = 2) return g }')
    program = nl.compile('program main(k) { "x" gen g(max_tokens = 0, n = k) return g }')
    with pytest.raises(NanoRuntimeError, match="max_tokens = 0 generates nothing"):
        program.run(k=2, backend=backend)  # n known only when it runs
    with pytest.raises(nl.NanoErrors, match="integer >= 0"):
        nl.compile("program main() { gen g(max_tokens = -1) }")
    with pytest.raises(UnsupportedByServer, match="top_logprobs_num"):
        refuse_unsupported(SamplingParams(max_tokens=1, logprobs=True, top_logprobs=3))


@nl.function
def open_turn(s, k):
    s += nl.user("Question: 2 + 2?")
    s += nl.assistant_begin()
    step = s.fork(1)[0]
    forks = s.fork(k)
    step += nl.gen("top", max_tokens=0, return_logprob=True, top_logprobs_num=k)
    tokens = step.get_meta_info("top")["output_top_logprobs"][0]
    for f, (_, _, text) in zip(forks, tokens, strict=True):
        f += text + nl.gen("rest", max_tokens=2, temperature=0, top_logprobs_num=2)
    forks.join()
    widths = [len(f.get_meta_info("rest")["output_top_logprobs"]) for f in forks]
    s += nl.assistant_end()
    return {"tokens": [t for _, _, t in tokens], "rest": s["rest"], "widths": widths}


def test_decorated_open_turn_with_forks(backend: LocalBackend) -> None:
    value = open_turn.run(k=3, backend=backend)
    assert len(value["tokens"]) == 3 and len(value["rest"]) == 3
    assert all(1 <= w <= 2 for w in value["widths"])


def test_decorated_role_marks_are_checked(backend: LocalBackend) -> None:
    @nl.function
    def twice(s):
        s += nl.assistant_begin()
        s += nl.user_begin()

    with pytest.raises(NanoRuntimeError, match="roles do not nest"):
        twice.run(backend=backend)

    @nl.function
    def unopened(s):
        s += nl.assistant_end()

    with pytest.raises(NanoRuntimeError, match="without an open 'assistant' message"):
        unopened.run(backend=backend)

    with pytest.raises(TypeError, match="appended on its own"):

        @nl.function
        def glued(s):
            s += "x" + nl.assistant_begin()


def test_multiply_divide_and_exp(backend: LocalBackend) -> None:
    program = nl.compile("program main(a = 3, b = 4) { return a * b / 8 - exp(0) }")
    assert program.run(backend=backend) == pytest.approx(0.5)
    zero = nl.compile("program main(a = 1, b = 0) { return a / b }")
    with pytest.raises(NanoRuntimeError, match="division by zero"):
        zero.run(backend=backend)
