"""The engine matches transformers on the same checkpoints: logits and greedy tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from runtime import LLM, SamplingParams

PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 9]
NEW_TOKENS = 10


def hf_model(path: str) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@torch.no_grad()
def hf_greedy(model: torch.nn.Module, prompt: list[int], n: int) -> list[int]:
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


@torch.no_grad()
def hf_prompt_logprobs(model: torch.nn.Module, prompt: list[int]) -> list[float]:
    lp = torch.log_softmax(model(torch.tensor([prompt])).logits[0].float(), dim=-1)
    return [lp[i, prompt[i + 1]].item() for i in range(len(prompt) - 1)]


def greedy(n: int = NEW_TOKENS) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)


@pytest.mark.parametrize(
    "name",
    [
        "llama",
        "mistral",
        "qwen2",
        "llama_tied",
        "llama3_rope",
        "llama_sharded",
        "qwen2_yarn",
        "llama_dynamic_rope",
    ],
)
def test_greedy_and_logprobs_match_transformers(tiny_models: dict[str, str], name: str) -> None:
    path = tiny_models[name]
    hf = hf_model(path)
    llm = LLM(path, dtype="float32", device="cpu")
    outs = llm.generate(PROMPTS, greedy())
    for prompt, out in zip(PROMPTS, outs, strict=True):
        assert out.token_ids == hf_greedy(hf, prompt, NEW_TOKENS)
        assert out.finish_reason == "length"
    scored = llm.generate(
        PROMPTS, SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=True)
    )
    for prompt, out in zip(PROMPTS, scored, strict=True):
        assert out.prompt_logprobs is not None and out.prompt_logprobs[0] is None
        ours = torch.tensor(out.prompt_logprobs[1:])
        ref = torch.tensor(hf_prompt_logprobs(hf, prompt))
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    assert llm.engine.blocks.allocator.num_used == 0


def test_preemption_when_kv_cache_is_too_small(tiny_models: dict[str, str]) -> None:
    path = tiny_models["llama"]
    hf = hf_model(path)
    prompts = [list(range(10 + i, 50 + i)) for i in range(6)]  # 40 tokens each
    # 12 blocks of 16 tokens: fewer than the 6 x 4 blocks all requests need at once
    llm = LLM(path, dtype="float32", device="cpu", kv_cache_memory_bytes=12 * 8192,
              admission_reserve_tokens=0)  # admit on the prompt alone: decodes must preempt
    assert llm.engine.blocks.allocator.num_blocks == 12
    outs = llm.generate(prompts, greedy(20))
    assert llm.engine.stats.num_preemptions > 0
    for prompt, out in zip(prompts, outs, strict=True):
        assert out.token_ids == hf_greedy(hf, prompt, 20)
    assert llm.engine.blocks.allocator.num_used == 0


def test_chunked_prefill_matches(tiny_models: dict[str, str]) -> None:
    path = tiny_models["qwen2"]
    hf = hf_model(path)
    llm = LLM(path, dtype="float32", device="cpu", max_num_batched_tokens=16)
    prompts = [list(range(3, 60)), [9, 8, 7]]
    outs = llm.generate(prompts, greedy())
    assert max(len(o.metrics.iterations) for o in outs) > NEW_TOKENS  # prompt took several chunks
    for prompt, out in zip(prompts, outs, strict=True):
        assert out.token_ids == hf_greedy(hf, prompt, NEW_TOKENS)
    scored = llm.generate([prompts[0]], SamplingParams(max_tokens=1, prompt_logprobs=True))[0]
    ref = torch.tensor(hf_prompt_logprobs(hf, prompts[0]))
    torch.testing.assert_close(torch.tensor(scored.prompt_logprobs[1:]), ref, atol=1e-4, rtol=1e-4)
