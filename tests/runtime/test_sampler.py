"""Sampling from logits in the model's dtype: a greedy batch uploads no per-row parameters and
takes the argmax of the logits as they are; everything else is computed in float32."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kernels import get_ops
from runtime.sampler import SamplingBatch, SamplingSpec, sample

V = 512


def spec(temperature: list[float], bias: torch.Tensor | None = None) -> SamplingSpec:
    rows = len(temperature)
    keys = None if all(t == 0 for t in temperature) else [11 * (r + 1) for r in range(rows)]
    return SamplingSpec(temperature, [1.0] * rows, [0] * rows, [0.0] * rows, keys, None, bias)


def bf16_logits(rows: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, V, generator=g) * 4).to(torch.bfloat16)
    logits[0, 7] = logits[0, 300] = logits[0].max() + 1  # a tie: the first index wins
    return logits


def test_a_greedy_batch_has_no_per_row_parameters() -> None:
    batch = spec([0.0, 0.0]).to_batch(V, torch.device("cpu"))
    assert (batch.temperature, batch.top_p, batch.top_k, batch.min_p) == (None,) * 4
    assert batch.noise is None and not batch.adjusts
    mixed = spec([0.0, 0.7]).to_batch(V, torch.device("cpu"))
    assert mixed.temperature is not None and mixed.temperature.tolist() == pytest.approx([0, 0.7])
    assert mixed.top_k is not None and mixed.noise is not None and mixed.noise.shape == (2, V)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_on_model_dtype_logits_is_the_argmax_of_their_float32_widening(seed: int) -> None:
    ops = get_ops("cpu")
    logits = bf16_logits(6, seed)
    batch = spec([0.0] * 6).to_batch(V, torch.device("cpu"))
    out = sample(logits, batch, ops, want_logprobs=True, num_top=3)
    wide = logits.float()
    assert torch.equal(out.tokens, wide.argmax(dim=-1)) and out.tokens[0] == 7
    assert out.logprobs is not None and out.logprobs.dtype == torch.float32
    expected = torch.log_softmax(wide, dim=-1)
    torch.testing.assert_close(out.logprobs, expected.gather(1, out.tokens[:, None])[:, 0])
    assert out.top_logprobs is not None and out.top_logprobs.dtype == torch.float32
    torch.testing.assert_close(out.top_logprobs, expected.topk(3, dim=-1).values)
    plain = sample(logits, batch, ops, want_logprobs=False)
    assert plain.logprobs is None and torch.equal(plain.tokens, out.tokens)


def test_adjusted_and_random_rows_are_computed_in_float32() -> None:
    """A bias that moves the choice by less than bf16 can hold still moves it: the logits are
    widened before it is added; sampling rows get the same tokens from either dtype's logits."""
    ops = get_ops("cpu")
    logits = torch.zeros(2, V, dtype=torch.bfloat16)
    logits[:, 10] = 256.0
    bias = torch.zeros(2, V)
    bias[:, 11] = 256.5  # 256.5 is not a bfloat16: in bf16 the sum would round to 256
    batch = spec([0.0, 0.0], bias).to_batch(V, torch.device("cpu"))
    assert batch.adjusts
    assert sample(logits, batch, ops, want_logprobs=False).tokens.tolist() == [11, 11]
    noisy = spec([0.0, 0.8, 1.3]).to_batch(V, torch.device("cpu"))
    low = bf16_logits(3, 5)
    seen: list[torch.dtype] = []

    def kernel(logits: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        seen.append(logits.dtype)  # the sampling kernels' contract: float32 logits [R, V]
        return ops.sample(logits, *rest)

    spied = dataclasses.replace(ops, sample=kernel)
    tokens = sample(low, noisy, spied, want_logprobs=False).tokens
    assert seen == [torch.float32]
    assert torch.equal(tokens, sample(low.float(), noisy, ops, want_logprobs=False).tokens)


def test_a_batch_with_noise_but_no_parameters_is_refused() -> None:
    ops = get_ops("cpu")
    batch = SamplingBatch(None, None, None, None, torch.ones(1, V), None)
    with pytest.raises(AssertionError, match="noise without its parameters"):
        sample(torch.zeros(1, V), batch, ops, want_logprobs=False)


def test_a_greedy_batch_takes_the_argmax_operator() -> None:
    """The choice of a greedy batch is the ops' argmax (Triton's on CUDA), on the logits as
    they are."""
    seen: list[torch.Tensor] = []

    def spy(logits: torch.Tensor) -> torch.Tensor:
        seen.append(logits)
        return torch.full((logits.shape[0],), 5, dtype=torch.int64)

    ops = dataclasses.replace(get_ops("cpu"), argmax=spy)
    logits = bf16_logits(3, 0)
    out = sample(logits, spec([0.0] * 3).to_batch(V, torch.device("cpu")), ops)
    assert out.tokens.tolist() == [5, 5, 5] and len(seen) == 1 and seen[0] is logits
    assert out.logprobs is not None  # of the spy's tokens, from the raw logits
    torch.testing.assert_close(out.logprobs, torch.log_softmax(logits.float(), dim=-1)[:, 5])
