"""The engine with the fused rope + KV store (kernels' rotary_store_kv) and without it
(``fuse_rope_kv_store=False``: rotary, then store_kv): the same greedy tokens and
log-probabilities on the tiny model, over decodes and mixed prefill + decode iterations (small
token budget: prompts are prefilled in chunks beside running decodes), bf16-sized and float8
KV caches. On the CPU both paths are the torch reference; on a GPU the Triton kernels under CUDA
graphs."""

from __future__ import annotations

import pytest
import torch

from runtime import LLM, SamplingParams

PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30, [9] * 57]
GREEDY = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True, logprobs=True)


def _generate(path: str, fused: bool, **kwargs: object) -> tuple[list, str]:  # type: ignore[type-arg]
    llm = LLM(
        path, fuse_rope_kv_store=fused, max_num_batched_tokens=24, admission_reserve_tokens=0,
        max_num_seqs=8, **kwargs,
    )  # fmt: skip
    outs = llm.generate(PROMPTS, GREEDY)
    mixed = llm.engine.stats.num_iterations > GREEDY.max_tokens  # type: ignore[operator]
    assert mixed and llm.engine.blocks.allocator.num_used == 0
    return outs, llm.engine.ops.backends["rotary_store_kv"]


def _same(fused: list, unfused: list, exact: bool) -> None:  # type: ignore[type-arg]
    for a, b in zip(fused, unfused, strict=True):
        assert a.token_ids == b.token_ids
        if exact:
            assert a.logprobs == b.logprobs
        else:
            torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs))


@pytest.mark.parametrize("kv_cache_dtype", ["auto", "fp8"])
def test_fused_and_unfused_give_the_same_tokens_on_the_cpu(
    tiny_llama: str, kv_cache_dtype: str
) -> None:
    kw = {"dtype": "float32", "device": "cpu", "kv_cache_dtype": kv_cache_dtype}
    fused, backend = _generate(tiny_llama, True, **kw)
    unfused, off = _generate(tiny_llama, False, **kw)
    assert (backend, off) == ("torch", "unfused")
    _same(fused, unfused, exact=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kv_cache_dtype", ["auto", "fp8"])
def test_fused_and_unfused_give_the_same_tokens_on_the_gpu(
    tiny_models: dict[str, str], kv_cache_dtype: str
) -> None:
    for name in ("llama", "mistral"):  # 4 and 1 KV heads
        kw = {"dtype": "bfloat16", "device": "cuda", "kv_cache_dtype": kv_cache_dtype}
        fused, backend = _generate(tiny_models[name], True, **kw)
        unfused, off = _generate(tiny_models[name], False, **kw)
        assert (backend, off) == ("triton", "unfused")
        # the fused kernel writes the same bytes; two engines may still pick other GEMM kernels
        _same(fused, unfused, exact=False)
