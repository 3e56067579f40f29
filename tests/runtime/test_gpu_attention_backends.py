"""The engine on a CUDA GPU with each registered attention backend, eager and under CUDA graphs,
against the torch reference backend on the same device: mixed batches (decodes, prefills and a
cached prompt with one token left, which counts as a decode), prefix-cache hits and preemption.

The model is a small random Llama with FlashInfer-sized heads (head_dim 128, GQA group 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kernels import attention_backends
from runtime import LLM, SamplingParams
from runtime.outputs import RequestOutput

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
BACKENDS = attention_backends("cuda") if torch.cuda.is_available() else []
SHARED = [(7 * i) % 200 + 3 for i in range(48)]  # three 16-token blocks
PARAMS = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True, logprobs=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from runtime.tiny import make_tiny_model

    path = tmp_path_factory.mktemp("gpu_backends") / "llama_d128"
    kw = dict(hidden_size=512, intermediate_size=512, num_attention_heads=4, num_key_value_heads=1)
    return str(make_tiny_model(Path(path), arch="llama", seed=21, **kw))


def scenario(llm: LLM) -> list[RequestOutput]:
    """Warm the prefix cache, then one batch that mixes every kind of row."""
    llm.generate([SHARED[:32]], PARAMS)
    prompts = [
        [(11 * i) % 250 + 1 for i in range(60)],  # a plain prefill
        [*SHARED[:32], 5],  # cached but its last token: admitted as a decode
        [*SHARED, *range(30, 50)],  # a prefix hit with an extend
        [9],  # a one-token prompt
        [(5 * i) % 97 + 2 for i in range(20)],
    ]
    return llm.generate(prompts, PARAMS)


def preemption(llm: LLM) -> list[RequestOutput]:
    prompts = [list(range(10 + i, 50 + i)) for i in range(6)] + [SHARED[:40]]
    return llm.generate(prompts, SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True,
                                                logprobs=True))  # fmt: skip


def engine(model_dir: str, backend: str, eager: bool, **kw: object) -> LLM:
    return LLM(model_dir, dtype="bfloat16", device="cuda", attention_backend=backend,
               enforce_eager=eager, max_num_seqs=16, **kw)  # fmt: skip


def same(outs: list[RequestOutput], refs: list[RequestOutput]) -> None:
    """bf16 reduction orders differ between backends: a rare near-tie may flip late tokens, but
    the first token of every sequence and most whole sequences must agree (wrong attention
    changes them from the first token)."""
    assert [o.token_ids[0] for o in outs] == [r.token_ids[0] for r in refs]
    first = torch.tensor([o.logprobs[0] for o in outs])
    torch.testing.assert_close(first, torch.tensor([r.logprobs[0] for r in refs]), atol=0.1,
                               rtol=0)  # fmt: skip
    equal = sum(o.token_ids == r.token_ids for o, r in zip(outs, refs, strict=True))
    assert equal >= len(refs) - 1, ([o.token_ids for o in outs], [r.token_ids for r in refs])


@pytest.fixture(scope="module")
def references(model_dir: str) -> dict[str, list[RequestOutput]]:
    ref = engine(model_dir, "torch", eager=True)
    small = engine(model_dir, "torch", eager=True, kv_cache_memory_bytes=14 * 16 * 2 * 2 * 128 * 2,
                   admission_reserve_tokens=0, max_num_batched_tokens=48)  # fmt: skip
    out = {"scenario": scenario(ref), "preemption": preemption(small)}
    assert small.engine.stats.num_preemptions > 0
    return out


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "cuda-graphs"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_matches_reference_on_mixed_batches_and_prefix_hits(
    model_dir: str, references: dict[str, list[RequestOutput]], backend: str, eager: bool
) -> None:
    llm = engine(model_dir, backend, eager)
    assert llm.engine.ops.backends["paged_attention"] == backend
    uses_graphs = llm.engine.runner.graphs is not None
    assert uses_graphs == (not eager and backend != "torch")
    outs = scenario(llm)
    assert outs[1].num_cached_tokens == 32 and outs[2].num_cached_tokens == 32
    same(outs, references["scenario"])
    assert llm.engine.blocks.allocator.num_used == 0


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "cuda-graphs"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_matches_reference_under_preemption(
    model_dir: str, references: dict[str, list[RequestOutput]], backend: str, eager: bool
) -> None:
    llm = engine(model_dir, backend, eager, kv_cache_memory_bytes=14 * 16 * 2 * 2 * 128 * 2,
                 admission_reserve_tokens=0, max_num_batched_tokens=48)  # fmt: skip
    outs = preemption(llm)
    assert llm.engine.stats.num_preemptions > 0
    same(outs, references["preemption"])
    assert llm.engine.blocks.allocator.num_used == 0
