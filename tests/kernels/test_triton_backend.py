"""The Triton backend registers every operator (linear below torch), wins on CUDA,
and captures in graphs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

pytest.importorskip("triton")
from kernel_batches import make_paged_batch

from kernels import OPERATORS, get_ops, implementations, reference
from kernels.triton import paged_attention, sample

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_triton_backend_registers_every_operator_but_linear() -> None:
    """linear registers too, below the torch reference (opt-in)."""
    import kernels.triton_backend as backend

    assert set(backend.OPERATORS) == set(OPERATORS) - {"linear"}
    for op in OPERATORS:
        assert "triton" in implementations(op)


@pytest.mark.gpu
@needs_cuda
def test_get_ops_on_cuda_prefers_triton() -> None:
    """Triton's everywhere except linear (cuBLASLt's measured table where cuBLASLt loads, else
    torch's) and attention ("flashinfer-prefill", Triton's decode and FlashInfer's prefill, where
    FlashInfer is installed)."""
    from kernels import cublaslt

    backends = get_ops("cuda").backends
    assert backends["linear"] == ("cublaslt" if cublaslt.available() else "torch")
    for op in set(OPERATORS) - {"linear", "paged_attention"}:
        assert backends[op] == "triton", op
    assert backends["paged_attention"] in ("triton", "flashinfer-prefill")


def _captured(fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run fn once eagerly on a side stream (compiles), capture it in a graph, replay once."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    graph.replay()
    torch.cuda.synchronize()
    return out


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(
    "batch_args",
    [
        ([1, 1, 1], [4099, 2500, 31], 3),
        ([1, 1, 1, 1, 33, 1, 70], [1000, 7, 64, 513, 133, 1, 70], 4),
    ],
)
def test_paged_attention_captures_in_a_cuda_graph(
    batch_args: tuple[list[int], list[int], int],
) -> None:
    batch = make_paged_batch(*batch_args, 32, 8, 128, 16, torch.bfloat16, "cuda", seed=5)
    args = (batch.q, batch.k_cache, batch.v_cache, batch.meta, 128**-0.5)
    out = _captured(lambda: paged_attention(*args))
    torch.testing.assert_close(out, paged_attention(*args), rtol=0, atol=0)
    expected = reference.paged_attention(*args)
    torch.testing.assert_close(out.float(), expected.float(), rtol=0, atol=3e-2)


@pytest.mark.gpu
@needs_cuda
def test_sample_captures_in_a_cuda_graph() -> None:
    gen = torch.Generator().manual_seed(9)
    logits = (torch.randn(8, 5000, generator=gen) * 3).cuda()
    noise = torch.empty(8, 5000).exponential_(generator=gen).cuda()
    temperature = torch.tensor([0.0, 1.0, 0.5, 1.2, 1.0, 0.0, 0.9, 1.0]).cuda()
    top_p = torch.tensor([1.0, 0.9, 1.0, 0.5, 1.0, 1.0, 0.95, 0.3]).cuda()
    top_k = torch.tensor([0, 0, 40, 10, -1, 5, 100, 0]).cuda()
    min_p = torch.tensor([0.0, 0.0, 0.1, 0.0, 0.05, 0.0, 0.0, 0.2]).cuda()
    args = (logits, temperature, top_p, top_k, min_p, noise)
    out = _captured(lambda: sample(*args))
    assert torch.equal(out, reference.sample(*args))
