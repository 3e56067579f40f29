"""OutputKind: a FINAL_ONLY request gets one output, its final one, equal to what a streaming
(CUMULATIVE) twin ends with; streaming requests still get one output per iteration."""

from __future__ import annotations

from collections import Counter

import pytest

from runtime import LLM, OutputKind, RequestOutput, SamplingParams

PROMPTS = ["The quick brown fox", "Programs ask", "one two three four five six", "x"]


def final(o: RequestOutput) -> tuple:
    return (o.token_ids, o.text, o.finish_reason, o.stop_reason, o.logprobs, o.top_logprobs,
            o.prompt_logprobs, o.metrics.finished_iteration)  # fmt: skip


@pytest.fixture(scope="module", params=[False, True], ids=["sync", "async"])
def llm(request: pytest.FixtureRequest, tiny_llama: str) -> LLM:
    return LLM(tiny_llama, dtype="float32", device="cpu", async_scheduling=request.param)


def run_twins(llm: LLM, params: list[SamplingParams]) -> tuple[list, list, dict[str, int]]:
    """Every prompt once per kind in the same batches: (cumulative finals, final-only finals,
    how many outputs each request got, by kind: ``{"cumulative": [...], ...}``)."""
    engine = llm.engine
    cum = [engine.add_request(p, sp) for p, sp in zip(PROMPTS, params, strict=True)]
    fin = [
        engine.add_request(p, sp, output_kind=OutputKind.FINAL_ONLY)
        for p, sp in zip(PROMPTS, params, strict=True)
    ]
    done: dict[str, RequestOutput] = {}
    seen: Counter = Counter()
    while engine.has_unfinished_requests():
        for out in engine.step():
            assert out.request_id not in done, "an output after the final one"
            seen[out.request_id] += 1
            if out.finished:
                done[out.request_id] = out
    counts = {"cumulative": [seen[r] for r in cum], "final_only": [seen[r] for r in fin]}
    return [final(done[r]) for r in cum], [final(done[r]) for r in fin], counts


def test_final_only_requests_end_as_their_streaming_twins(llm: LLM) -> None:
    greedy = SamplingParams(max_tokens=15, temperature=0, ignore_eos=True)
    free = llm.generate(PROMPTS, greedy)  # what the stopped requests would say unstopped
    assert len(free[2].text) > 5
    params = [
        SamplingParams(max_tokens=12, temperature=0, ignore_eos=True, logprobs=True,
                       top_logprobs=2),
        SamplingParams(max_tokens=20, seed=3, prompt_logprobs=True),
        SamplingParams(max_tokens=15, temperature=0, ignore_eos=True, stop=[free[2].text[3:5]]),
        SamplingParams(max_tokens=15, temperature=0, ignore_eos=True,
                       stop_token_ids=[free[3].token_ids[2]]),
    ]  # fmt: skip
    cum, fin, counts = run_twins(llm, params)
    assert fin == cum
    assert [o[2] for o in fin][2:] == ["stop", "stop"]  # a stop string, a stop token
    assert counts["final_only"] == [1, 1, 1, 1]  # one output each: the final one
    assert all(n > 1 for n in counts["cumulative"])  # one per iteration that advanced it
    assert llm.engine.blocks.allocator.num_used == 0


def test_streaming_outputs_are_unchanged_while_final_only_ones_run_alongside(llm: LLM) -> None:
    engine = llm.engine
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    alone = engine.add_request(PROMPTS[0], params)
    steps_alone: list[list[int]] = []
    while engine.has_unfinished_requests():
        steps_alone += [o.token_ids for o in engine.step() if o.request_id == alone]
    streamed = engine.add_request(PROMPTS[0], params)
    for p in PROMPTS:
        engine.add_request(p, params, output_kind=OutputKind.FINAL_ONLY)
    steps: list[list[int]] = []
    while engine.has_unfinished_requests():
        steps += [o.token_ids for o in engine.step() if o.request_id == streamed]
    assert steps == steps_alone  # the same cumulative outputs, step by step


def test_aborting_a_final_only_request_returns_its_output_once(llm: LLM) -> None:
    engine = llm.engine
    params = SamplingParams(max_tokens=50, temperature=0, ignore_eos=True)
    rid = engine.add_request(PROMPTS[1], params, output_kind=OutputKind.FINAL_ONLY)
    other = engine.add_request(PROMPTS[2], SamplingParams(max_tokens=5, temperature=0))
    outs = [o for _ in range(3) for o in engine.step()]
    assert all(o.request_id == other for o in outs)
    aborted = engine.abort_request(rid)
    assert aborted is not None and aborted.finished and aborted.finish_reason == "abort"
    assert 1 <= len(aborted.token_ids) <= 3  # tokens read back before the abort
    while engine.has_unfinished_requests():
        assert all(o.request_id != rid for o in engine.step())
    assert engine.blocks.allocator.num_used == 0
