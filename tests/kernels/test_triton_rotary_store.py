"""Triton RoPE and KV-cache store against the torch reference."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
from triton_env import (
    DEVICE,
    needs_triton_device,
    randn,
    seeded,
    skip_if_interpreted,
    ulp_tolerance,
)

from kernels import reference
from kernels.triton import rotary, store_kv

pytestmark = [pytest.mark.gpu, needs_triton_device]


def _cos_sin(max_pos: int, head_dim: int) -> torch.Tensor:
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.arange(max_pos).float()[:, None] * inv_freq[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=-1).to(DEVICE)  # [max_pos, D]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    ("tokens", "num_q_heads", "num_kv_heads", "head_dim"),
    [(1, 32, 8, 128), (17, 4, 4, 64), (300, 12, 2, 128), (5, 6, 3, 96)],
)
def test_rotary(
    tokens: int, num_q_heads: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype
) -> None:
    skip_if_interpreted(tokens > 100)
    width = (num_q_heads + 2 * num_kv_heads) * head_dim
    qkv = randn(tokens, width, dtype=dtype, seed=tokens + head_dim)  # fused projection output
    q, k, _ = qkv.split(
        [num_q_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim], -1
    )
    q = q.view(tokens, num_q_heads, head_dim)  # strided views, as the model passes them
    k = k.view(tokens, num_kv_heads, head_dim)
    positions = torch.randint(0, 8192, (tokens,), generator=seeded(tokens)).to(DEVICE)
    cos_sin = _cos_sin(8192, head_dim)
    out_q, out_k = rotary(q, k, positions, cos_sin)
    exp_q, exp_k = reference.rotary(q, k, positions, cos_sin)
    torch.testing.assert_close(out_q, exp_q, **ulp_tolerance(dtype))
    torch.testing.assert_close(out_k, exp_k, **ulp_tolerance(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize(("tokens", "num_kv_heads", "head_dim"), [(1, 8, 128), (77, 2, 64)])
def test_store_kv(tokens: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> None:
    num_blocks, block_size = 40, 16
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    k_cache, v_cache = randn(*shape, dtype=dtype, seed=1), randn(*shape, dtype=dtype, seed=2)
    slots = torch.randperm(num_blocks * block_size, generator=seeded(tokens))[:tokens].to(DEVICE)
    kv = randn(tokens, 2, num_kv_heads, head_dim, dtype=dtype, seed=3)
    k, v = kv[:, 0], kv[:, 1]  # strided token dim
    exp_k, exp_v = k_cache.clone(), v_cache.clone()
    reference.store_kv(k, v, exp_k, exp_v, slots)
    store_kv(k, v, k_cache, v_cache, slots)
    assert torch.equal(k_cache, exp_k) and torch.equal(v_cache, exp_v)


def test_store_kv_skips_negative_slots() -> None:
    shape = (4, 16, 2, 64)
    k_cache = randn(*shape, dtype=torch.bfloat16, seed=4)
    v_cache = randn(*shape, dtype=torch.bfloat16, seed=5)
    before_k, before_v = k_cache.clone(), v_cache.clone()
    k, v = (
        randn(2, 2, 64, dtype=torch.bfloat16, seed=6),
        randn(2, 2, 64, dtype=torch.bfloat16, seed=7),
    )
    store_kv(k, v, k_cache, v_cache, torch.tensor([-1, 17], device=DEVICE))
    flat_k, flat_v = k_cache.view(-1, 2, 64), v_cache.view(-1, 2, 64)
    assert torch.equal(flat_k[17], k[1]) and torch.equal(flat_v[17], v[1])
    flat_k[17], flat_v[17] = before_k.view(-1, 2, 64)[17], before_v.view(-1, 2, 64)[17]
    assert torch.equal(k_cache, before_k) and torch.equal(v_cache, before_v)
