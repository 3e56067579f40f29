"""Request ids under asynchronous scheduling: the engine tracks sequences by an internal identity,
so a request aborted (or finished) with its batch in flight cannot be confused with a new request
that reuses its id; an id that is still live is refused."""

from __future__ import annotations

import pytest

from runtime import LLM, SamplingParams

GREEDY = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(tiny_llama: str) -> LLM:
    return LLM(tiny_llama, dtype="float32", device="cpu", async_scheduling=True)


def drain(llm: LLM, max_steps: int = 200) -> dict[str, list]:
    finished: dict[str, list] = {}
    for _ in range(max_steps):
        if not llm.has_unfinished_requests():
            return finished
        for out in llm.step():
            if out.finished:
                assert out.request_id not in finished, "a request finished twice"
                finished[out.request_id] = out.token_ids
    raise AssertionError("the engine never drained (a request lost its sequence)")


def test_reusing_the_id_of_a_request_aborted_in_flight(llm: LLM) -> None:
    alone = llm.generate([[9, 8, 7]], GREEDY)[0].token_ids
    llm.engine.add_request([5, 6, 7, 8], SamplingParams(max_tokens=50, ignore_eos=True), "x")
    for _ in range(3):
        llm.step()
    assert llm.engine._inflight is not None  # x's batch is on the device
    llm.engine.abort_request("x")
    llm.engine.add_request([9, 8, 7], GREEDY, "x")
    assert drain(llm) == {"x": alone}
    assert llm.engine.blocks.allocator.num_used == 0


def test_reusing_the_id_of_a_request_that_finished_in_flight(llm: LLM) -> None:
    alone = llm.generate([[4, 4, 4, 4]], GREEDY)[0].token_ids
    llm.engine.add_request([3, 1, 4], SamplingParams(max_tokens=2, temperature=0), "y")
    seen = {}
    while "y" not in seen:
        seen.update({o.request_id: o for o in llm.step() if o.finished})
    llm.engine.add_request([4, 4, 4, 4], GREEDY, "y")  # y's last batch may still be in flight
    assert drain(llm) == {"y": alone}
    assert llm.engine.blocks.allocator.num_used == 0


def test_a_live_request_id_is_refused(llm: LLM) -> None:
    llm.engine.add_request([1, 2, 3], GREEDY, "z")
    with pytest.raises(ValueError, match="'z' is already running"):
        llm.engine.add_request([4, 5], GREEDY, "z")
    assert drain(llm).keys() == {"z"}
