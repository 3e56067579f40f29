"""The engine with the sgl-kernel backend on (where installed): the same tokens as the reference."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

pytest.importorskip("sgl_kernel")
from kernels import get_ops
from kernels.sgl_kernel_backend import OPERATORS
from runtime import LLM, SamplingParams

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30]
MODELS = ["llama", "mistral", "qwen2", "llama3_rope"]


@contextmanager
def kernels(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """sgl-kernel's operators forced to ``backend``; the rest stay at the registry's choice."""
    monkeypatch.setenv("NANOLANG_KERNELS", ",".join(f"{op}={backend}" for op in OPERATORS))
    get_ops.cache_clear()
    try:
        yield
    finally:
        monkeypatch.delenv("NANOLANG_KERNELS")
        get_ops.cache_clear()


def greedy(n: int = 12) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, logprobs=True)


@pytest.mark.parametrize("model", MODELS)
def test_greedy_tokens_match_the_cpu_reference_in_float32(
    tiny_models: dict[str, str], model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tiny_models[model]
    expected = LLM(path, dtype="float32", device="cpu").generate(PROMPTS, greedy())
    with kernels("sgl_kernel", monkeypatch):
        llm = LLM(path, dtype="float32", device="cuda", max_num_seqs=8)  # CUDA graphs on
        assert all(llm.engine.ops.backends[op] == "sgl_kernel" for op in OPERATORS)
        outs = llm.generate(PROMPTS, greedy())
    for ref, out in zip(expected, outs, strict=True):
        assert out.token_ids == ref.token_ids
        torch.testing.assert_close(
            torch.tensor(out.logprobs), torch.tensor(ref.logprobs), atol=2e-3, rtol=0
        )


def _tokens(path: str, dtype: str, params: list[SamplingParams]) -> list[list[int]]:
    llm = LLM(path, dtype=dtype, device="cuda", max_num_seqs=8)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(params))]
    return [o.token_ids for o in llm.generate(prompts, params)]


def test_sampled_tokens_match_the_torch_sampler_in_float32(
    tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = [
        SamplingParams(max_tokens=16, seed=s, ignore_eos=True, temperature=0.7 + 0.1 * s,
                       top_k=[-1, 5, 40][s % 3], top_p=[1.0, 0.9, 0.6][s % 3], min_p=0.02 * s)
        for s in range(6)
    ]  # fmt: skip
    with kernels("torch", monkeypatch):
        expected = _tokens(tiny_llama, "float32", params)
    with kernels("sgl_kernel", monkeypatch):
        got = _tokens(tiny_llama, "float32", params)
    assert got == expected


def test_greedy_tokens_match_the_torch_operators_in_float16(
    tiny_models: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp16 runs every sgl-kernel operator (rms_norm too); kernels round differently from the
    reference, so a near-tie may flip one continuation: at most one prompt per model differs."""
    for model in ("llama", "qwen2"):
        params = [greedy(16)] * len(PROMPTS)
        with kernels("torch", monkeypatch):
            expected = _tokens(tiny_models[model], "float16", params)
        with kernels("sgl_kernel", monkeypatch):
            got = _tokens(tiny_models[model], "float16", params)
        same = sum(a == b for a, b in zip(got, expected, strict=True))
        assert same >= len(PROMPTS) - 1, (model, got, expected)
