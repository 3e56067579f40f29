"""sgl-kernel's operators (where installed) against the torch reference on fresh random inputs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

pytest.importorskip("sgl_kernel")
from kernels import get_ops, reference, registry
from kernels import sgl_kernel_backend as sgl

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
DEVICE = "cuda"
DTYPES = [torch.float16, torch.bfloat16, torch.float32]
TOLERANCE = {
    torch.float16: {"rtol": 2e-3, "atol": 2e-3},
    torch.bfloat16: {"rtol": 1.6e-2, "atol": 1.6e-2},
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
}


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=_seeded(seed)) * scale).to(dtype).to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 64), (7, 4096), (3, 5, 1000), (129, 5120), (256, 4096)])
def test_rms_norm(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x = _randn(*shape, dtype=dtype, seed=sum(shape), scale=3.0)
    weight = _randn(shape[-1], dtype=dtype, seed=1)
    expected = reference.rms_norm(x, weight, 1e-5)
    out = sgl.rms_norm(x, weight, 1e-5)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 64), (7, 4096), (3, 5, 1000), (129, 5120), (2048, 4096)])
def test_add_rms_norm_in_place(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x = _randn(*shape, dtype=dtype, seed=2 + sum(shape))
    residual = _randn(*shape, dtype=dtype, seed=3 + sum(shape), scale=4.0)
    weight = _randn(shape[-1], dtype=dtype, seed=4)
    expected_sum = x + residual
    expected_out = reference.rms_norm(expected_sum, weight, 1e-6)
    out, summed = sgl.add_rms_norm(x, residual, weight, 1e-6)
    assert out is x and summed is residual  # written in place
    assert torch.equal(summed, expected_sum)
    torch.testing.assert_close(out, expected_out, **TOLERANCE[dtype])


def _cos_sin(max_pos: int, head_dim: int) -> torch.Tensor:
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.arange(max_pos).float()[:, None] * inv_freq[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=-1).to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("tokens", "num_q_heads", "num_kv_heads", "head_dim"),
    [(1, 32, 8, 128), (17, 4, 4, 64), (300, 12, 2, 128), (2048, 32, 8, 128)],
)
def test_rotary_in_place_on_views_of_the_fused_projection(
    tokens: int, num_q_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype
) -> None:
    q_size, kv_size = num_q_heads * head_dim, num_kv_heads * head_dim
    qkv = _randn(tokens, q_size + 2 * kv_size, dtype=dtype, seed=tokens + head_dim)
    q, k, v = qkv.split([q_size, kv_size, kv_size], -1)
    q = q.view(tokens, num_q_heads, head_dim)  # strided views, as the model passes them
    k = k.view(tokens, num_kv_heads, head_dim)
    v_before = v.clone()
    positions = torch.randint(0, 8192, (tokens,), generator=_seeded(tokens)).to(DEVICE)
    cos_sin = _cos_sin(8192, head_dim)
    exp_q, exp_k = reference.rotary(q, k, positions, cos_sin)
    out_q, out_k = sgl.rotary(q, k, positions, cos_sin)
    assert out_q is q and out_k is k
    assert torch.equal(v, v_before)
    if dtype == torch.float32:
        torch.testing.assert_close(out_q, exp_q, **TOLERANCE[dtype])
        torch.testing.assert_close(out_k, exp_k, **TOLERANCE[dtype])
        return
    # half precision: the kernel rounds cos/sin and each product to the activations' dtype
    for out, exp in ((out_q, exp_q), (out_k, exp_k)):
        err = (out.float() - exp.float()).abs()
        step = torch.finfo(dtype).eps  # one unit in the last place at 1.0
        assert err.max().item() <= 16 * step, err.max().item()
        assert err.mean().item() <= step, err.mean().item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 256), (37, 2 * 11008), (2, 3, 2 * 1000), (300, 2 * 14336)])
def test_silu_and_mul(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x = _randn(*shape, dtype=dtype, seed=7 + shape[0], scale=3.0)
    out = sgl.silu_and_mul(x)
    torch.testing.assert_close(out, reference.silu_and_mul(x), **TOLERANCE[dtype])


def test_silu_and_mul_on_a_strided_view() -> None:
    big = _randn(16, 3 * 512, dtype=torch.bfloat16, seed=8)
    x = big[:, 256 : 256 + 1024]
    out = sgl.silu_and_mul(x)
    torch.testing.assert_close(out, reference.silu_and_mul(x), **TOLERANCE[torch.bfloat16])


def _sampling_inputs(batch: int, vocab: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = _seeded(seed)
    logits = torch.randn(batch, vocab, generator=gen) * 4
    noise = torch.empty(batch, vocab).exponential_(generator=gen)
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
    inputs = _sampling_inputs(batch, vocab, seed=vocab)
    out = sgl.sample(*inputs)
    expected = reference.sample(*inputs)
    assert out.dtype == torch.long
    assert torch.equal(out, expected), (out != expected).nonzero().flatten().tolist()


def test_sample_filters_alone() -> None:
    batch, vocab = 48, 4096
    logits, _, _, _, _, noise = _sampling_inputs(batch, vocab, seed=1)
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
        out = sgl.sample(logits, temperature, top_p, top_k, min_p, noise)
        expected = reference.sample(logits, temperature, top_p, top_k, min_p, noise)
        assert torch.equal(out, expected), name


def _captured(fn: Callable[[], object]) -> object:
    """Run fn once on a side stream, capture it in a CUDA graph, replay once."""
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


def test_operators_capture_in_a_cuda_graph() -> None:
    tokens, hidden = 64, 4096
    x = _randn(tokens, hidden, dtype=torch.bfloat16, seed=10)
    residual = _randn(tokens, hidden, dtype=torch.bfloat16, seed=11)
    weight = _randn(hidden, dtype=torch.bfloat16, seed=12)
    gate_up = _randn(tokens, 2 * 1024, dtype=torch.bfloat16, seed=13)
    qkv = _randn(tokens, 48 * 128, dtype=torch.bfloat16, seed=14)
    positions = torch.arange(tokens, device=DEVICE) * 7
    cos_sin = _cos_sin(8192, 128)
    inputs = _sampling_inputs(8, 5000, seed=15)

    def step() -> tuple[torch.Tensor, ...]:
        normed = sgl.rms_norm(x, weight, 1e-5)
        # in-place operators get fresh copies so that every replay sees the same inputs
        xs, rs = x.clone(), residual.clone()
        added, summed = sgl.add_rms_norm(xs, rs, weight, 1e-5)
        qkv_copy = qkv.clone()
        q = qkv_copy[:, : 32 * 128].view(tokens, 32, 128)
        k = qkv_copy[:, 32 * 128 : 40 * 128].view(tokens, 8, 128)
        sgl.rotary(q, k, positions, cos_sin)
        act = sgl.silu_and_mul(gate_up)
        tokens_out = sgl.sample(*inputs)
        return normed, added, summed, qkv_copy, act, tokens_out

    eager = step()
    graphed = _captured(step)
    for a, b in zip(eager, graphed, strict=True):  # type: ignore[call-overload]
        assert torch.equal(a, b)


def test_registry_follows_the_measured_priorities() -> None:
    from kernels import triton_backend

    get_ops.cache_clear()
    try:
        backends = get_ops("cuda").backends
    finally:
        get_ops.cache_clear()
    for op, priority in sgl.PRIORITIES.items():
        assert "sgl_kernel" in [i.backend for i in registry._REGISTRY[op]]
        expected = "sgl_kernel" if priority > triton_backend.PRIORITY else "triton"
        assert backends[op] == expected, op
