"""Top-k logprobs at sampled and prompt positions; penalties, logit_bias and min_tokens."""

from __future__ import annotations

import math

import pytest

from runtime import LLM, SamplingParams

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def llm(tiny_llama: str) -> LLM:
    return LLM(tiny_llama, dtype="float32", device="cpu")


def test_top_logprobs_at_sampled_and_prompt_positions(llm: LLM) -> None:
    p = SamplingParams(
        max_tokens=4,
        temperature=0,
        logprobs=True,
        prompt_logprobs=True,
        top_logprobs=5,
        ignore_eos=True,
    )
    out = llm.generate([PROMPT], p)[0]
    assert out.top_logprobs is not None and len(out.top_logprobs) == 4
    for token, lp, top in zip(out.token_ids, out.logprobs or [], out.top_logprobs, strict=True):
        assert len(top) == 5
        best = max(top, key=lambda t: top[t])
        assert best == token and math.isclose(top[token], lp, abs_tol=1e-5)  # greedy
    prompt_top = out.prompt_top_logprobs
    assert prompt_top is not None and prompt_top[0] is None
    assert len(prompt_top) == len(out.prompt_token_ids)
    for token, lp, top in zip(
        out.prompt_token_ids[1:], (out.prompt_logprobs or [])[1:], prompt_top[1:], strict=True
    ):
        assert top is not None and len(top) == 5
        assert lp is not None and lp <= max(top.values()) + 1e-6
        if token in top:
            assert math.isclose(top[token], lp, abs_tol=1e-5)


def test_logprobs_match_a_full_forward(llm: LLM) -> None:
    ids = llm.engine.tokenizer.encode(PROMPT, add_special_tokens=False)
    p = SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=True, top_logprobs=3)
    out = llm.generate([ids], p)[0]
    whole = llm.generate(
        [ids[:-1]], SamplingParams(max_tokens=1, temperature=0, logprobs=True, top_logprobs=3)
    )[0]
    assert out.prompt_top_logprobs is not None and whole.top_logprobs is not None
    last = out.prompt_top_logprobs[-1]
    assert last is not None and set(last) == set(whole.top_logprobs[0])


def test_logit_bias_and_min_tokens(llm: LLM) -> None:
    forced = llm.generate(
        [PROMPT], SamplingParams(max_tokens=3, temperature=0, logit_bias={7: 100.0})
    )[0]
    assert forced.token_ids == [7, 7, 7]
    eos = llm.engine.tokenizer.eos_token_id
    ban = SamplingParams(max_tokens=8, min_tokens=5, temperature=0, logit_bias={eos: 100.0})
    out = llm.generate([PROMPT], ban)[0]
    assert len(out.token_ids) == 6 and out.token_ids[-1] == eos  # EOS allowed from the 6th on
    assert eos not in out.token_ids[:5]


def test_penalties_change_the_greedy_path(llm: LLM) -> None:
    base = dict(max_tokens=24, temperature=0, ignore_eos=True)
    plain = llm.generate([PROMPT], SamplingParams(**base))[0].token_ids
    for extra in (
        {"repetition_penalty": 5.0},
        {"frequency_penalty": 2.0},
        {"presence_penalty": 2.0},
    ):
        changed = llm.generate([PROMPT], SamplingParams(**base, **extra))[0].token_ids
        assert changed != plain, extra
        assert len(set(changed)) >= len(set(plain)), extra  # fewer repeats, never more


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": float("nan")}, "finite"),
        ({"presence_penalty": float("inf")}, "finite"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"min_tokens": 50, "max_tokens": 4}, "min_tokens"),
        ({"logit_bias": {3: 1000.0}}, "logit_bias"),
    ],
)
def test_invalid_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_score_token_ids_are_the_next_token_logprobs(llm: LLM) -> None:
    """The logprob of each scored id after the prompt equals the prompt logprob of that token
    when it is appended to the prompt (what select computed with one request per choice)."""
    ids = llm.engine.tokenizer.encode(PROMPT, add_special_tokens=False)
    scored = (5, 17, 100, 3)
    p = SamplingParams(max_tokens=3, temperature=0, logprobs=True, ignore_eos=True,
                       score_token_ids=scored)  # fmt: skip
    out = llm.generate([ids], p)[0]
    assert out.score_logprobs is not None and len(out.score_logprobs) == 3
    assert all(set(at) == set(scored) for at in out.score_logprobs)
    each = llm.generate(
        [[*ids, t] for t in scored],
        SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=True),
    )
    for token, o in zip(scored, each, strict=True):
        assert o.prompt_logprobs is not None and o.prompt_logprobs[-1] is not None
        assert math.isclose(out.score_logprobs[0][token], o.prompt_logprobs[-1], abs_tol=1e-5)
    # at a later position too: the sampled token's own logprob, when it is one of them
    second = out.token_ids[1]
    p = SamplingParams(max_tokens=2, temperature=0, logprobs=True, ignore_eos=True,
                       score_token_ids=(second,))  # fmt: skip
    forced = llm.generate([ids], p)[0]
    assert forced.score_logprobs is not None and forced.logprobs is not None
    assert math.isclose(forced.score_logprobs[1][second], forced.logprobs[1], abs_tol=1e-6)
    plain = llm.generate([ids], SamplingParams(max_tokens=1, temperature=0))[0]
    assert plain.score_logprobs is None


def test_score_token_ids_are_checked(llm: LLM) -> None:
    with pytest.raises(ValueError, match="score_token_ids"):
        SamplingParams(score_token_ids=(-1,))
    vocab = llm.engine.model_config.vocab_size
    with pytest.raises(ValueError, match="score_token_ids out of range"):
        llm.generate([PROMPT], SamplingParams(max_tokens=1, score_token_ids=(vocab,)))
