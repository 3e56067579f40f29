"""Triton top-k / top-p / min-p sampling against the torch reference, on the same noise."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
from triton_env import DEVICE, INTERPRET, needs_triton_device, seeded

from kernels import reference
from kernels.triton import sample

pytestmark = [pytest.mark.gpu, needs_triton_device]


def _inputs(batch: int, vocab: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = seeded(seed)
    logits = torch.randn(batch, vocab, generator=gen) * 4  # [B, V]
    noise = torch.empty(batch, vocab).exponential_(generator=gen)  # [B, V]
    temperature = torch.rand(batch, generator=gen) * 1.5 + 0.1
    temperature[::5] = 0.0  # greedy rows
    top_k = torch.randint(-1, 60, (batch,), generator=gen)
    top_k[1::4] = 0  # disabled
    top_p = torch.where(
        torch.rand(batch, generator=gen) < 0.5, 1.0, torch.rand(batch, generator=gen)
    )
    min_p = torch.where(
        torch.rand(batch, generator=gen) < 0.5, 0.0, torch.rand(batch, generator=gen) * 0.3
    )
    tensors = (logits, temperature, top_p, top_k, min_p, noise)
    return tuple(t.to(DEVICE) for t in tensors)


@pytest.mark.parametrize(("batch", "vocab"), [(1, 50), (40, 1000), (33, 32001), (64, 128256)])
def test_sample_matches_reference(batch: int, vocab: int) -> None:
    if INTERPRET and vocab > 1000:
        pytest.skip("too slow for the CPU interpreter")
    inputs = _inputs(batch, vocab, seed=vocab)
    out = sample(*inputs)
    expected = reference.sample(*inputs)
    assert out.dtype == torch.long
    assert torch.equal(out, expected), (out != expected).nonzero().flatten().tolist()


def test_sample_filters_alone() -> None:
    batch, vocab = (8, 512) if INTERPRET else (48, 4096)
    logits, _, _, _, _, noise = _inputs(batch, vocab, seed=1)
    ones = torch.ones(batch, device=DEVICE)
    zeros = torch.zeros(batch, device=DEVICE)
    no_k = torch.zeros(batch, dtype=torch.long, device=DEVICE)
    cases = {
        "top_k": (ones, ones, torch.full_like(no_k, 20), zeros),
        "top_p": (ones, torch.full_like(ones, 0.6), no_k, zeros),
        "min_p": (ones, ones, no_k, torch.full_like(ones, 0.05)),
        "none": (ones * 0.8, ones, no_k, zeros),
    }
    for name, (temperature, top_p, top_k, min_p) in cases.items():
        out = sample(logits, temperature, top_p, top_k, min_p, noise)
        expected = reference.sample(logits, temperature, top_p, top_k, min_p, noise)
        assert torch.equal(out, expected), name
