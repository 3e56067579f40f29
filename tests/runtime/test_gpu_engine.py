"""The engine on a CUDA GPU: same tokens as the CPU path, with and without CUDA graphs."""

from __future__ import annotations

import pytest
import torch

from runtime import LLM, SamplingParams
from tests.runtime.greedy_agreement import agreeing_prefixes

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30]


def greedy(n: int = 12) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, logprobs=True)


@pytest.fixture(scope="module")
def cpu_outputs(tiny_llama: str) -> list:
    return LLM(tiny_llama, dtype="float32", device="cpu").generate(PROMPTS, greedy())


@pytest.mark.parametrize(
    ("eager", "async_scheduling"),
    [(True, False), (False, False), (False, True)],
    ids=["eager", "cuda-graphs", "cuda-graphs-async"],
)
def test_gpu_matches_cpu_in_float32(
    tiny_llama: str, cpu_outputs: list, eager: bool, async_scheduling: bool
) -> None:
    llm = LLM(
        tiny_llama, dtype="float32", device="cuda", enforce_eager=eager, max_num_seqs=8,
        async_scheduling=async_scheduling,
    )  # fmt: skip
    assert llm.engine.ops.backends["paged_attention"] != "torch"
    assert (llm.engine.runner.graphs is None) == eager
    outs = llm.generate(PROMPTS, greedy())
    for ref, out in zip(cpu_outputs, outs, strict=True):
        assert out.token_ids == ref.token_ids
        torch.testing.assert_close(
            torch.tensor(out.logprobs), torch.tensor(ref.logprobs), atol=2e-3, rtol=0
        )
    assert llm.engine.blocks.allocator.num_used == 0


def test_graphs_and_eager_agree_under_sampling_in_bf16(tiny_llama: str) -> None:
    params = [SamplingParams(max_tokens=16, seed=s, ignore_eos=True) for s in range(6)]
    prompts = [[11 + i, 40, 2 * i + 50] for i in range(6)]
    eager = LLM(tiny_llama, dtype="bfloat16", device="cuda", enforce_eager=True, max_num_seqs=8)
    graphs = LLM(tiny_llama, dtype="bfloat16", device="cuda", max_num_seqs=8)
    a = [o.token_ids for o in eager.generate(prompts, params)]
    b = [o.token_ids for o in graphs.generate(prompts, params)]
    same = sum(x == y for x, y in zip(a, b, strict=True))
    assert same >= 5, (a, b)  # bf16 reduction order may flip a rare near-tie


def test_llama_3_8b_dummy_runs_in_bf16_with_kv_sized_to_free_memory() -> None:
    llm = LLM("llama-3-8b", load_format="dummy", max_num_seqs=256)
    engine = llm.engine
    assert engine.dtype == torch.bfloat16 and engine.device.type == "cuda"
    free, total = torch.cuda.mem_get_info()
    kv_bytes = sum(k.numel() * k.element_size() * 2 for k, _ in engine.runner.kv_caches)
    assert kv_bytes > 0.3 * total  # tens of gigabytes of KV cache
    # all but the (1 - gpu_memory_utilization) share and the activation reserve is in use
    assert free < (1 - engine.config.gpu_memory_utilization) * total + (3 << 30)
    outs = llm.generate([[1, 2, 3, 4] * 50] * 4, SamplingParams(max_tokens=8, ignore_eos=True))
    assert all(len(o.token_ids) == 8 and o.finish_reason == "length" for o in outs)


@pytest.mark.parametrize("decode", ["gather:q", "gather:fp16", "tma:fp16", "tma-items:fp16"])
def test_fp8_decode_choices_follow_the_reference_backend(tiny_llama: str, decode: str) -> None:
    """Each decode choice over an fp8 KV cache, decodes replayed from CUDA graphs, against the
    torch reference backend on the same fp8 cache (bf16: a near-tie may flip a token, so the
    log-probabilities are compared up to each sequence's first difference)."""
    kernel, dot = decode.split(":")
    kw = {"dtype": "bfloat16", "device": "cuda", "kv_cache_dtype": "fp8", "max_num_seqs": 8}
    ref = LLM(tiny_llama, attention_backend="torch", **kw).generate(PROMPTS, greedy())
    llm = LLM(tiny_llama, attention_backend="triton", decode_kernel=kernel, fp8_decode_dot=dot,
              **kw)  # fmt: skip
    assert llm.engine.runner.graphs is not None
    assert llm.engine.ops.paged_attention.choice.spec() == decode  # type: ignore[attr-defined]
    outs = llm.generate(PROMPTS, greedy())
    assert agreeing_prefixes(ref, outs, 4, decode) >= 3
