"""Async scheduling (batch i+1 formed before batch i is read back) gives the same results."""

from __future__ import annotations

import pytest

from runtime import LLM, SamplingParams

PROMPTS = ["The quick brown fox", "Programs ask", "one two three four five six", "x"]


def outputs(llm: LLM, prompts: list, params: list[SamplingParams]) -> list[tuple]:
    # logprobs rounded: a batch of another size may change float32 sums in the last bits
    return [
        (o.token_ids, o.text, o.finish_reason, o.stop_reason,
         None if o.logprobs is None else [round(x, 4) for x in o.logprobs])
        for o in llm.generate(prompts, params)
    ]  # fmt: skip


def pair(path: str, **kw) -> tuple[LLM, LLM]:
    sync = LLM(path, dtype="float32", device="cpu", **kw)
    async_ = LLM(path, dtype="float32", device="cpu", async_scheduling=True, **kw)
    return sync, async_


@pytest.fixture(scope="module")
def engines(tiny_llama: str) -> tuple[LLM, LLM]:
    return pair(tiny_llama)


def test_greedy_sampled_and_stopped_requests_match(engines: tuple[LLM, LLM]) -> None:
    sync, async_ = engines
    free = sync.generate(PROMPTS[:1], SamplingParams(max_tokens=12, temperature=0))[0]
    stop_text = free.text[3:5] if len(free.text) > 5 else "zz"
    params = [
        SamplingParams(max_tokens=12, temperature=0, ignore_eos=True, logprobs=True),
        SamplingParams(max_tokens=20, seed=3, logprobs=True),
        SamplingParams(max_tokens=15, temperature=0, stop=[stop_text]),
        SamplingParams(max_tokens=9, seed=4, stop_token_ids=[free.token_ids[2]]),
    ]
    assert outputs(async_, PROMPTS, params) == outputs(sync, PROMPTS, params)
    assert async_.engine.blocks.allocator.num_used == 0


def test_eos_stops_are_seen_late_but_the_extra_token_is_dropped(engines: tuple[LLM, LLM]) -> None:
    sync, async_ = engines
    params = [SamplingParams(max_tokens=60, seed=s) for s in range(8)]
    prompts = [PROMPTS[s % 4] for s in range(8)]
    a, b = outputs(async_, prompts, params), outputs(sync, prompts, params)
    assert a == b
    assert any(o[2] == "stop" for o in a)  # some ended on EOS


def test_constraints_and_prompt_logprobs_force_a_read_back(engines: tuple[LLM, LLM]) -> None:
    sync, async_ = engines
    params = [
        SamplingParams(max_tokens=6, regex="[0-9]{3}", seed=1),
        SamplingParams(max_tokens=3, prompt_logprobs=True, temperature=0),
        SamplingParams(max_tokens=10, temperature=0, ignore_eos=True),
    ]
    a = async_.generate(PROMPTS[:3], params)
    b = sync.generate(PROMPTS[:3], params)
    assert [o.text for o in a] == [o.text for o in b]
    assert a[1].prompt_logprobs == pytest.approx(b[1].prompt_logprobs)


def test_preemption_chunking_and_prefix_cache_under_async(tiny_llama: str) -> None:
    # no admission reserve: admit on the prompt alone, so that growing decodes must preempt
    kw = dict(
        kv_cache_memory_bytes=12 * 8192, max_num_batched_tokens=24, admission_reserve_tokens=0
    )
    sync, async_ = pair(tiny_llama, **kw)
    prompts = [list(range(10 + i, 50 + i)) for i in range(6)] + [list(range(10, 50))]
    params = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True)
    a, b = outputs(async_, prompts, [params] * 7), outputs(sync, prompts, [params] * 7)
    assert a == b
    assert async_.engine.stats.num_preemptions > 0
    assert async_.engine.blocks.allocator.num_used == 0


def test_step_api_abort_with_a_batch_in_flight(engines: tuple[LLM, LLM]) -> None:
    _, async_ = engines
    rid = async_.add_request("abc", SamplingParams(max_tokens=50, ignore_eos=True))
    other = async_.add_request("de", SamplingParams(max_tokens=5, temperature=0, ignore_eos=True))
    for _ in range(3):
        async_.step()
    assert async_.engine._inflight is not None
    async_.abort_request(rid)
    finished = {}
    while async_.has_unfinished_requests():
        for out in async_.step():
            assert out.request_id != rid
            if out.finished:
                finished[out.request_id] = out
    assert len(finished[other].token_ids) == 5
    assert async_.engine.blocks.allocator.num_used == 0
