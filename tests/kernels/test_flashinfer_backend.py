"""FlashInfer paged attention (where installed) against the torch reference."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytest.importorskip("flashinfer")
from kernel_batches import make_paged_batch, relative_error

from kernels import get_ops, reference
from kernels.attention.flashinfer_attention import FlashInferAttention

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
BATCHES = {
    "decode": ([1] * 5, [1, 15, 16, 17, 3000], 5),
    "chunked_prefill": ([37, 5, 64], [290, 81, 64], 0),
    "mixed": ([1, 1, 1, 1, 33, 1, 70], [1000, 7, 64, 513, 133, 1, 70], 4),
}


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_flashinfer_paged_attention(name: str) -> None:
    batch = make_paged_batch(*BATCHES[name], 32, 8, 128, 16, torch.bfloat16, "cuda", seed=1)
    scale = 128**-0.5
    args = (batch.q, batch.k_cache, batch.v_cache, batch.meta, scale)
    expected = reference.paged_attention(*args)
    backend = FlashInferAttention(torch.device("cuda"))
    out = backend.forward(*args)
    assert relative_error(out, expected) < 1e-2
    torch.testing.assert_close(out.float(), expected.float(), rtol=0, atol=3e-2)
    again = backend.forward(*args)  # the cached plan
    assert torch.equal(again, out)


def test_registry_prefers_flashinfer_prefill_then_flashinfer_for_attention() -> None:
    """With Triton importable too, the registry picks "flashinfer-prefill" (Triton's decode,
    FlashInfer's prefill); "flashinfer" by name is FlashInfer's whole backend."""
    triton_too = importlib.util.find_spec("triton") is not None
    ops = get_ops("cuda")
    assert ops.backends["paged_attention"] == ("flashinfer-prefill" if triton_too else "flashinfer")
    whole = get_ops("cuda", "flashinfer")
    assert whole.backends["paged_attention"] == "flashinfer"
    assert isinstance(whole.paged_attention, FlashInferAttention)
